"""The SSSE mix on the card core, as a terminal reads a 3.00 card (LD/T 32 P7; the real trace T1):

SELECT SSSE by name; READ RECORD EF05 items 01, 03, 05, 06, 07; VERIFY 123456; GET CHALLENGE +
EXTERNAL AUTHENTICATE (RKSSSE); READ RECORD EF06 items 08 and 09 - on the default card, which
runs T=0: the reader fetches the SELECT's FCI with GET RESPONSE (12 card exchanges per round).
Then the authentication and MAC-checked commands on their own, for both algorithm families.

Run with `make bench`. Each round is one whole mix; ops/s is mixes per second, APDU/s = card
exchanges per round / mean round time (`extra_info` carries the exchange count). The card's
random source is fixed, so the terminal's cryptograms (tests/oracle.py through
tests/ssse_helpers.py) are computed once, outside the timed loop. Figures are recorded in
bench/README.md.
"""

import pytest
import ssse_helpers as sh
from helpers import CARD_DATE, PROFILES, VERIFY_OK

from chip import Card
from reader import SimReader

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

SELECT = sh.SELECT_SSSE
VERIFY = bytes.fromhex(VERIFY_OK)
GET_CHALLENGE = bytes.fromhex("0084000008")
EF05_READS = [sh.read_record(n, 5, 4, le) for n, le in ((0x01, 18), (0x03, 6), (0x05, 6), (0x06, 6), (0x07, 11))]
EF06_READS = [sh.read_record(0x08, 6, 0, 20), sh.read_record(0x09, 6, 0, 32)]  # by identifier
CHALLENGE = bytes.fromhex("1122334455667788")


def fixed_challenge_card(profile="default", state=None):
    """A card whose random source is fixed, so the terminal's answers can be computed once."""
    card = Card.from_profile(profile, state=state, date=CARD_DATE)
    card.random = lambda n: CHALLENGE[:n]
    return card


def commands(card):
    """The terminal's authenticated commands for this card (the oracle's cryptograms)."""
    terminal = sh.Terminal(card)
    external_auth = terminal.auth_command("ssse_rk", CHALLENGE)
    puk_auth = terminal.auth_command("ssse_puk", CHALLENGE)
    header = bytes.fromhex("8424000004")
    pin_unblock = header + terminal.mac("ssse_stk", CHALLENGE, header, b"")
    return external_auth, puk_auth, pin_unblock


def mix_for(card) -> list[bytes]:
    external_auth = commands(card)[0]
    return [SELECT] + EF05_READS + [VERIFY, GET_CHALLENGE, external_auth] + EF06_READS


def run_mix(reader, mix):
    transmit = reader.transmit
    last = b""
    for apdu in mix:
        last = transmit(apdu)
    return last


def checked(reader, mix) -> int:
    """Run the mix once outside the timer: every command answers 9000; return the card exchanges it takes."""
    card = reader.card
    exchanges = []
    transmit = card.transmit
    card.transmit = lambda apdu: exchanges.append(apdu) or transmit(apdu)
    try:
        answers = [reader.transmit(apdu)[-2:] for apdu in mix]
    finally:
        del card.transmit
    assert answers == [b"\x90\x00"] * len(mix), [a.hex() for a in answers]
    return len(exchanges)


def powered(card):
    reader = SimReader(card)  # the card's own protocol: T=0 on the shipped profiles
    reader.reset()
    assert card.protocol == 0
    return reader


@pytest.mark.parametrize("profile", PROFILES)
def bench_ssse_mix_in_memory(benchmark, profile):
    card = fixed_challenge_card(profile)
    reader = powered(card)
    mix = mix_for(card)
    benchmark.extra_info["apdus_per_round"] = checked(reader, mix)
    result = benchmark(run_mix, reader, mix)
    assert result[-2:] == b"\x90\x00"


def bench_ssse_mix_with_image(benchmark, tmp_path):
    """The same mix on an image-backed card: VERIFY and EXTERNAL AUTHENTICATE make two durable commits each."""
    card = fixed_challenge_card(state=tmp_path / "card.img")
    reader = powered(card)
    mix = mix_for(card)
    benchmark.extra_info["apdus_per_round"] = checked(reader, mix)
    result = benchmark.pedantic(run_mix, args=(reader, mix), rounds=200, warmup_rounds=5)
    assert result[-2:] == b"\x90\x00"


def bench_read_record_only(benchmark):
    """One protected READ RECORD (EF06 item 08, after RKSSSE): the cheapest hot-path command."""
    card = fixed_challenge_card()
    reader = powered(card)
    checked(reader, mix_for(card))
    result = benchmark(reader.transmit, EF06_READS[0])
    assert result[-2:] == b"\x90\x00"


def bench_verify_only(benchmark):
    """VERIFY in memory: two commits (anti-tearing decrement, then restore)."""
    reader = powered(fixed_challenge_card())
    reader.transmit(SELECT)
    result = benchmark(reader.transmit, VERIFY)
    assert result == b"\x90\x00"


@pytest.mark.parametrize("profile", PROFILES)
def bench_ssse_mix_with_auth(benchmark, profile):
    """The mix, then the PIN-unblock step of a service window: GET CHALLENGE, EXTERNAL AUTHENTICATE
    (PUK), GET CHALLENGE, PIN UNBLOCK 84 24 00 00 (MAC-checked) - 16 card exchanges."""
    card = fixed_challenge_card(profile)
    reader = powered(card)
    _, puk_auth, pin_unblock = commands(card)
    mix = mix_for(card) + [GET_CHALLENGE, puk_auth, GET_CHALLENGE, pin_unblock]
    benchmark.extra_info["apdus_per_round"] = checked(reader, mix)
    result = benchmark(run_mix, reader, mix)
    assert result == b"\x90\x00"


@pytest.mark.parametrize("profile", PROFILES)
def bench_external_authenticate(benchmark, profile):
    """GET CHALLENGE + EXTERNAL AUTHENTICATE RKSSSE (two commits: the key's counter decrement, the restore)."""
    card = fixed_challenge_card(profile)
    reader = powered(card)
    external_auth = commands(card)[0]
    reader.transmit(SELECT)
    result = benchmark(run_mix, reader, [GET_CHALLENGE, external_auth])
    assert result == b"\x90\x00"


@pytest.mark.parametrize("profile", PROFILES)
def bench_mac_checked_command(benchmark, profile):
    """GET CHALLENGE + PIN UNBLOCK after PUK: one MAC4 check under the STK process key (P4 §8.2)."""
    card = fixed_challenge_card(profile)
    reader = powered(card)
    _, puk_auth, pin_unblock = commands(card)
    reader.transmit(SELECT)
    checked(reader, [GET_CHALLENGE, puk_auth])
    result = benchmark(run_mix, reader, [GET_CHALLENGE, pin_unblock])
    assert result == b"\x90\x00"
