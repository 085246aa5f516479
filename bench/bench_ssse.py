"""The SSSE mix on the card core: SELECT, VERIFY, READ RECORD x7 (+ GET RESPONSE on T=0).

Run with `make bench`. Each round is one whole mix; APDU/s = APDUs per round /
mean round time (pytest-benchmark prints the mean; `extra_info` carries the
APDU count). Figures are recorded in bench/README.md.
"""

import datetime

import pytest

from chip import Card
from reader import SimReader

SELECT = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
GET_FCI = bytes.fromhex("00C000001B")
VERIFY = bytes.fromhex("0020000003123456")
READS = [bytes.fromhex(h) for h in (
    "00B2012C00", "00B2052C00", "00B2062C00", "00B2072C00",  # EF05 by record number
    "00B2083000", "00B2093000", "00B20D3000",  # EF06 by identifier
)]
DATE = datetime.date(2026, 11, 21)


def mix_for(protocol: str) -> list[bytes]:
    head = [SELECT, GET_FCI] if protocol == "T=0" else [SELECT]
    return head + [VERIFY] + READS


def run_mix(reader, mix):
    transmit = reader.transmit
    last = b""
    for apdu in mix:
        last = transmit(apdu)
    return last


@pytest.mark.parametrize("protocol", ["T=1", "T=0"])
def bench_ssse_mix_in_memory(benchmark, protocol):
    reader = SimReader(Card.from_profile(date=DATE), protocol=protocol)
    reader.reset()
    mix = mix_for(protocol)
    benchmark.extra_info["apdus_per_round"] = len(mix)
    assert run_mix(reader, mix)[-2:] == b"\x90\x00"
    result = benchmark(run_mix, reader, mix)
    assert result[-2:] == b"\x90\x00"


def bench_ssse_mix_with_image(benchmark, tmp_path):
    reader = SimReader(Card.from_profile(state=tmp_path / "card.img", date=DATE))
    reader.reset()
    mix = mix_for("T=1")
    benchmark.extra_info["apdus_per_round"] = len(mix)
    result = benchmark.pedantic(run_mix, args=(reader, mix), rounds=200, warmup_rounds=5)
    assert result[-2:] == b"\x90\x00"


def bench_read_record_only(benchmark):
    """One protected READ RECORD after VERIFY: the cheapest hot-path command."""
    reader = SimReader(Card.from_profile(date=DATE))
    reader.reset()
    reader.transmit(SELECT)
    reader.transmit(VERIFY)
    result = benchmark(reader.transmit, READS[4])
    assert result[-2:] == b"\x90\x00"


def bench_verify_only(benchmark):
    """VERIFY in memory: two commits (anti-tearing decrement, then restore)."""
    reader = SimReader(Card.from_profile(date=DATE))
    reader.reset()
    reader.transmit(SELECT)
    result = benchmark(reader.transmit, VERIFY)
    assert result == b"\x90\x00"


# -- issue 3: authentication and MAC-checked commands ------------------------------------------
CHALLENGE = bytes.fromhex("1122334455667788")


def _fixed_challenge_card(profile="default"):
    """A card whose random source is fixed, so the PSAM's answers can be computed once."""
    card = Card.from_profile(profile, date=DATE)
    card.random = lambda n: CHALLENGE[:n]
    return card


def _auth_apdus(profile):
    from chip.apdu import build
    from reader.psam import Psam
    from reader.ssse_terminal import SsseTerminal

    card = _fixed_challenge_card(profile)
    terminal = SsseTerminal(SimReader(card), Psam(SimReader(Card.psam(profile))))
    terminal.start()
    d, flag, block = terminal.diversification, terminal.algorithm_flag, terminal.block
    cryptogram = terminal.psam.external_auth_cryptogram(flag, d, CHALLENGE)
    mac = terminal.psam.mac4("puk", flag, d, CHALLENGE.ljust(block, b"\0"), bytes.fromhex("8424000004"))
    get_challenge = bytes.fromhex("0084000008")
    external_auth = build(0x00, 0x82, 0x00, 0x0A, cryptogram)
    pin_unblock = bytes.fromhex("8424000004") + mac
    return get_challenge, external_auth, pin_unblock


@pytest.mark.parametrize("profile", ["default", "default-3des"])
def bench_ssse_mix_with_auth(benchmark, profile):
    """The SSSE mix with a terminal's authentication: SELECT, GET CHALLENGE, EXTERNAL
    AUTHENTICATE, READ RECORD x7, GET CHALLENGE, PIN UNBLOCK (MAC-checked) - 12 APDUs."""
    get_challenge, external_auth, pin_unblock = _auth_apdus(profile)
    reader = SimReader(_fixed_challenge_card(profile))
    reader.reset()
    mix = [SELECT, get_challenge, external_auth] + READS + [get_challenge, pin_unblock]
    benchmark.extra_info["apdus_per_round"] = len(mix)
    assert [reader.transmit(a)[-2:] for a in mix] == [b"\x90\x00"] * len(mix)
    result = benchmark(run_mix, reader, mix)
    assert result == b"\x90\x00"


@pytest.mark.parametrize("profile", ["default", "default-3des"])
def bench_external_authenticate(benchmark, profile):
    """GET CHALLENGE + EXTERNAL AUTHENTICATE (two commits: RK counter decrement, restore)."""
    get_challenge, external_auth, _ = _auth_apdus(profile)
    reader = SimReader(_fixed_challenge_card(profile))
    reader.reset()
    reader.transmit(SELECT)
    result = benchmark(run_mix, reader, [get_challenge, external_auth])
    assert result == b"\x90\x00"


@pytest.mark.parametrize("profile", ["default", "default-3des"])
def bench_mac_checked_command(benchmark, profile):
    """GET CHALLENGE + PIN UNBLOCK: one MAC4 check (ISO 9797-1 alg 3 or SM4 CBC-MAC)."""
    get_challenge, _, pin_unblock = _auth_apdus(profile)
    reader = SimReader(_fixed_challenge_card(profile))
    reader.reset()
    reader.transmit(SELECT)
    result = benchmark(run_mix, reader, [get_challenge, pin_unblock])
    assert result == b"\x90\x00"
