"""sscard's card OS against a peer's, in-process, side by side in one run: vsmartcard's vpicc.

vpicc (virtualsmartcard, Debian's `python3-virtualsmartcard`) is the card emulator that talks to
the same vpcd reader as `sscard serve`; its ISO 7816 card OS is `Iso7816OS.execute(apdu) ->
response`. Its card is built here as its own `vicc --type iso7816` builds it
(`CardGenerator("iso7816")`: an MF and a SAM with the PIN 1234), with one transparent EF added
to the MF to read. Its mix: SELECT MF, SELECT EF, READ BINARY (32 bytes), VERIFY 1234 (4
APDUs). Its SELECT asks for no FCI (P2 0C): this package's FCI encoding raises a TypeError.

sscard's counterpart is `Card.transmit(apdu) -> response` on the default card (T=0: the SELECT's
FCI waits for GET RESPONSE, which the round sends as its own exchange), in two mixes:

- the free path: SELECT SSSE by name (+ GET RESPONSE), READ RECORD EF05 items 01, 03, 05, 06,
  07 (free under LD/T 32: V2 table 3), VERIFY 123456 - 8 exchanges;
- the protected path: the same, then GET CHALLENGE, EXTERNAL AUTHENTICATE with RKSSSE and READ
  RECORD EF06 items 08 and 09 (RKSSSE on a 3.00 card) - 12 exchanges.

vpicc logs every APDU at INFO (dropped at pytest's default WARNING level, but its arguments - a
hexdump, the decoded APDU as text - are made before the logger looks at the level: that is part
of its execute). sscard's random source is fixed, as in bench_ssse.py, so the terminal's EXTERNAL
AUTHENTICATE is computed once; the card still derives the process key and checks the
authentication data in every round.

Every round of every mix is a new card session: a warm reset first (the card's `reset`,
vpicc's `reset`), so each round's SELECT opens a new application session with no PIN verified
and no key authenticated, as a terminal meets a card it has just been given (a SELECT of the
SSSE that is already selected keeps its security states, LD/T 32 P5 §6.11.1, and a verified PIN
holds until power-off, P7 §5.8). The reset is inside the timed round.

Each benchmark's extra_info carries its exchanges per round, APDU/s (exchanges / median round)
and, for sscard, the ratio to vpicc's APDU/s in the same run; the figures are printed at the end
of the module. bench/README.md records them. vpicc's package is loaded from its own folder
(VPICC_PATH: it holds the one package `virtualsmartcard`), not from Debian's dist-packages,
whose other modules would shadow the venv's; the `Crypto` it imports (pycryptodome) comes from
the venv, as `make bench` installs it (Debian's pycryptodome names its copy `Cryptodome`).
"""

import os
import sys

import pytest
from bench_ssse import EF05_READS, EF06_READS, GET_CHALLENGE, SELECT, VERIFY, commands, fixed_challenge_card
from helpers import unavailable

from chip.iso.sw import SW1_MORE_DATA
from chip.kernel.delivery import get_response

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

VPICC_PATH = "/usr/lib/python3/site-packages/virtualsmartcard"  # `dpkg -L python3-virtualsmartcard`
VPICC_EF = bytes(range(32))  # the content of the EF 2F00 its READ BINARY reads
VPICC_MIX = [bytes.fromhex(apdu) for apdu in (
    "00A4000C023F00",  # SELECT MF, no response data
    "00A4020C022F00",  # SELECT EF 2F00 (a child EF of the current DF)
    "00B0000020",  # READ BINARY, 32 bytes from offset 0
    "002000000431323334",  # VERIFY 1234 (its SAM's default PIN, ASCII)
)]
GROUP = "peer: sscard vs vpicc in-process (APDU/s)"
RESULTS: dict[str, float] = {}  # benchmark -> APDU/s, for the ratios


def vpicc_card():
    """vpicc's ISO 7816 card OS with an EF to read and a PIN to verify, as `vicc --type iso7816` builds it."""
    if not os.path.isdir(os.path.join(VPICC_PATH, "virtualsmartcard")):
        unavailable(f"vpicc's card OS: no {VPICC_PATH} (Debian package python3-virtualsmartcard; `make bench` "
                    f"installs it as root)")
    if VPICC_PATH not in sys.path:
        sys.path.append(VPICC_PATH)  # last: it can shadow nothing of the venv's
    try:
        from virtualsmartcard.CardGenerator import CardGenerator
        from virtualsmartcard.SmartcardFilesystem import TransparentStructureEF
        from virtualsmartcard.VirtualSmartcard import Iso7816OS
    except ImportError as exc:
        unavailable(f"vpicc's card OS does not import ({exc}): its `Crypto` is pycryptodome "
                    f"(`.venv/bin/pip install pycryptodome`; `make bench` installs it)")
    mf, sam = CardGenerator("iso7816").getCard()
    mf.append(TransparentStructureEF(parent=mf, fid=0x2F00, shortfid=0x1E, data=VPICC_EF))
    return Iso7816OS(mf, sam)


def free_mix(card) -> list[bytes]:
    """SELECT SSSE by name, GET RESPONSE for its FCI (T=0), the free EF05 reads, VERIFY."""
    card.reset()
    answer = card.transmit(SELECT)
    assert answer[0] == SW1_MORE_DATA, answer.hex()
    return [SELECT, get_response(answer[1]), *EF05_READS, VERIFY]


def protected_mix(card) -> list[bytes]:
    """The free mix, then GET CHALLENGE, EXTERNAL AUTHENTICATE (RKSSSE) and the EF06 reads it opens."""
    return [*free_mix(card), GET_CHALLENGE, commands(card)[0], *EF06_READS]


def session(reset, execute, mix) -> bytes:
    """One round: a warm reset (a new card session), then the mix's exchanges; the last response."""
    reset()
    last = b""
    for apdu in mix:
        last = execute(apdu)
    return last


def checked(reset, execute, mix) -> None:
    """One round outside the timer: every exchange answers 9000 but the SELECT (61xx: T=0)."""
    reset()
    answers = [execute(apdu)[-2:] for apdu in mix]
    expected = [b"\x90\x00"] * len(mix)
    if mix[0] == SELECT:  # T=0: 61xx, xx the length of the FCI its GET RESPONSE fetches
        expected[0] = bytes((SW1_MORE_DATA, mix[1][4]))
    assert answers == expected, [a.hex() for a in answers]


def measure(benchmark, name: str, reset, execute, mix) -> None:
    checked(reset, execute, mix)
    benchmark.group = GROUP
    benchmark.extra_info["apdus_per_round"] = len(mix)
    result = benchmark(session, reset, execute, mix)
    assert result[-2:] == b"\x90\x00"
    if benchmark.stats is None:  # --benchmark-disable (make test): the round ran once, untimed
        return
    rate = RESULTS[name] = len(mix) / benchmark.stats.stats.median
    benchmark.extra_info["apdu_per_s"] = round(rate)
    if name != "vpicc" and "vpicc" in RESULTS:
        benchmark.extra_info["ratio_to_vpicc"] = round(rate / RESULTS["vpicc"], 1)


@pytest.fixture(scope="module", autouse=True)
def report(request):
    """Print each mix's APDU/s and its ratio to vpicc's once the module's benchmarks ran."""
    yield
    if not RESULTS:
        return
    plugins = request.config.pluginmanager
    peer = RESULTS.get("vpicc")
    with plugins.get_plugin("capturemanager").global_and_fixture_disabled():  # shown without -s too
        for name, rate in RESULTS.items():
            ratio = f", {rate / peer:.1f}x vpicc" if peer and name != "vpicc" else ""
            plugins.get_plugin("terminalreporter").write_line(f"{name}: {rate:,.0f} APDU/s (median round){ratio}")


def bench_vpicc_mix(benchmark):
    """vpicc's Iso7816OS: SELECT MF, SELECT EF, READ BINARY, VERIFY, after a reset."""
    os_ = vpicc_card()
    measure(benchmark, "vpicc", os_.reset, os_.execute, VPICC_MIX)


def bench_sscard_free_mix(benchmark):
    """sscard's Card.transmit: SELECT SSSE (+ GET RESPONSE), READ RECORD EF05 x5, VERIFY, after a reset."""
    card = fixed_challenge_card()
    measure(benchmark, "sscard free path", card.reset, card.transmit, free_mix(card))


def bench_sscard_protected_mix(benchmark):
    """The free mix + GET CHALLENGE, EXTERNAL AUTHENTICATE (RKSSSE), READ RECORD EF06 08, 09."""
    card = fixed_challenge_card()
    measure(benchmark, "sscard protected path", card.reset, card.transmit, protected_mix(card))


def profile(mix_name: str, rounds: int = 20000, top: int = 10) -> None:
    """cProfile of `rounds` rounds of one of sscard's mixes ("free" or "protected"), warmed up first:
    the `top` entries by tottime (what bench/README.md quotes for each change)."""
    import cProfile
    import pstats

    card = fixed_challenge_card()
    mix = protected_mix(card) if mix_name == "protected" else free_mix(card)
    checked(card.reset, card.transmit, mix)
    for _ in range(rounds // 10):
        session(card.reset, card.transmit, mix)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(rounds):
        session(card.reset, card.transmit, mix)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def steps(number: int = 4000, repeat: int = 25) -> None:
    """What each exchange of the protected round costs where it stands in the round: round prefixes
    (the reset, then the first 1, 2, ... exchanges) timed with timeit, best of `repeat` x `number`, and
    each exchange's share the difference between its prefix and the one before."""
    import functools
    import timeit

    from chip.iso.ins import name

    card = fixed_challenge_card()
    mix = protected_mix(card)
    checked(card.reset, card.transmit, mix)
    before = 0.0
    for n in range(len(mix) + 1):
        rounds = functools.partial(session, card.reset, card.transmit, mix[:n])
        best = min(timeit.repeat(rounds, number=number, repeat=repeat)) / number
        label = "reset" if n == 0 else f"{name(mix[n - 1][0] << 8 | mix[n - 1][1])} {mix[n - 1][:5].hex().upper()}"
        print(f"{label:45s} {(best - before) * 1e6:6.2f} us")
        before = best
    print(f"{'the round':45s} {before * 1e6:6.2f} us")


if __name__ == "__main__":  # PYTHONPATH=tests .venv/bin/python bench/bench_peer.py free|protected [TOP] | steps
    if sys.argv[1:2] == ["steps"]:
        steps()
    else:
        profile(sys.argv[1] if len(sys.argv) > 1 else "protected", top=int(sys.argv[2]) if len(sys.argv) > 2 else 10)
