"""TC1's extra guard time on the simulated contacts (reader/link/wire.py), counted in etu and checked
against ISO/IEC 7816-3 §8.3 as the test writes it out, not against the code's own table.

§8.3: TC1 holds N. For N = 0 to 254 the guard time GT before a character the interface device sends
is 12 etu + R × N / f, with R = F / D (no T=15): 12 + N etu start-to-start. N = 255 means the
minimum: 12 etu on T=0 and 11 etu on T=1. The extra guard time binds the interface device only
(LD/T 32 P2 §9.2.2.1): the card's characters, the ATR and the PPS answer included, stay 12 etu apart.
The PPS request (§9.1, P2 §8.7) is sent before any protocol runs: 12 + N, and 12 when N = 255.
"""

import pytest
from helpers import CARD_DATE, SELECT_SSSE

from chip import Card
from chip.personalization.profile import SHIPPED
from reader.link.wire import WireReader

SELECT = bytes.fromhex(SELECT_SSSE)
READ_RECORD = bytes.fromhex("00B2072C0B")
CARD_CHARACTER = 12  # 10 etu of character and 2 of guard time (§7.2, §8.3), whatever TC1 says


def to_card(n: int | None, protocol: int) -> int:
    """§8.3, written out: start-to-start of the interface device's characters, in etu."""
    if n is None:  # TC1 absent: N = 0
        n = 0
    if n == 255:
        return 11 if protocol == 1 else 12
    return 12 + n  # GT = 12 etu + R x N / f with R = F / D: N etu more


def card_for(tmp_path, protocols: str, tc1: int | None, fi_di: str | None = None) -> Card:
    atr = {"protocols": protocols, "guard_time": "absent" if tc1 is None else tc1}
    if fi_di is not None:
        atr["fi_di"] = fi_di
    table = "".join(f'{key} = {value!r}\n'.replace("'", '"') for key, value in atr.items())
    path = tmp_path / f"tc1-{tc1}-{protocols}-{fi_di}.toml"
    path.write_text((SHIPPED / "default.toml").read_text(encoding="utf-8") + f"\n[atr]\n{table}", encoding="utf-8")
    return Card.from_profile(str(path), date=CARD_DATE)


@pytest.mark.parametrize("tc1", [None, 0, 1, 2, 17, 128, 254, 255])
@pytest.mark.parametrize("protocol", ["T=0", "T=1"])
def test_every_exchange_counts_12_plus_n_to_the_card_and_12_from_it(tmp_path, tc1, protocol):
    log: list = []
    reader = WireReader(card_for(tmp_path, "t0+t1", tc1), protocol=protocol, log=log)
    reader.reset()
    start = len(log)
    assert reader.transmit(SELECT)[-2:] == b"\x90\x00"
    assert reader.transmit(READ_RECORD)[-2:] == b"\x90\x00"
    sent = sum(len(event.data) for event in log[start:] if event.direction == ">")
    received = sum(len(event.data) for event in log[start:] if event.direction == "<")
    assert sent and received
    t = 0 if protocol == "T=0" else 1
    assert reader.wire.etu == sent * to_card(tc1, t) + received * CARD_CHARACTER


@pytest.mark.parametrize("tc1", [255, 254, 3, None])
def test_n_255_is_the_minimum_not_255_etu_more(tmp_path, tc1):
    """N = 255 is no extra guard time of 255 etu: it is the least character time of the protocol."""
    for protocol, t in (("T=0", 0), ("T=1", 1)):
        reader = WireReader(card_for(tmp_path, "t0+t1", tc1), protocol=protocol)
        reader.reset()
        assert reader.wire.to_card_etu == to_card(tc1, t)
        assert reader.wire.to_reader_etu == CARD_CHARACTER


@pytest.mark.parametrize("tc1", [255, 0, 5, 254])
def test_the_activation_counts_the_atr_and_pps_answer_at_12_and_the_request_at_12_plus_n(tmp_path, tc1):
    """T=1 at TA1 13 needs a PPS: FF 11 13 FD out, its echo back (P2 §8.7)."""
    card = card_for(tmp_path, "t0+t1", tc1, fi_di="13")
    reader = WireReader(card, protocol="T=1")
    reader.reset()
    request = answer = 4
    per_request_character = 12 if tc1 == 255 else 12 + tc1
    assert reader.finished_etu == len(card.atr) * CARD_CHARACTER + request * per_request_character \
        + answer * CARD_CHARACTER


def test_the_seconds_follow_from_the_etu(tmp_path):
    """One etu is F / (D x f) seconds (§7.1): at Fd/Dd 372/1 and 4 MHz, 93 us."""
    reader = WireReader(card_for(tmp_path, "t0", 255), protocol="T=0")
    reader.reset()
    reader.transmit(SELECT)
    assert reader.wire.seconds == pytest.approx(reader.wire.etu * 372 / 4_000_000)
