"""The card's pace on the CCID firmware's line (reader/ccid/pace.py): the time an exchange takes on the
contacts, computed here from ISO/IEC 7816-3's character times (12 etu a character with N = 0, §7.2 and
§8.3; one etu = 372 clock cycles at Fd/Dd, §7.1), and the time requests a slow card causes (NULLs on
T=0 every work waiting time, 960 × WI × Di etu, §10.2; S(WTX) on T=1, §11.4.3)."""

from functools import reduce
from operator import xor

import pytest
from helpers import CARD_DATE, SELECT_SSSE

from chip import Card
from chip.contacts.t0 import CardT0
from chip.contacts.t1 import CardT1
from chip.faults import FaultPlan
from reader.ccid.pace import Line, paced_exchange
from reader.link.t0 import ReaderT0
from reader.link.t1 import ReaderT1

CLOCK = 4_000_000
ETU = 372 / CLOCK  # seconds, at Fd/Dd 372/1
LINE = Line(fi=372, di=1, clock=CLOCK, to_card_etu=12)


def t0_card(fault: str | None = None) -> tuple[Card, CardT0]:
    card = Card.from_profile("default", date=CARD_DATE)
    card.power_on()
    if fault:
        card.faults = FaultPlan([fault])
    return card, CardT0(card, delay_etu=card.faults.slow_etu if card.faults else None)


def test_a_record_read_takes_its_characters_time():
    _, end = t0_card()
    paced_exchange(ReaderT0(), end, bytes.fromhex(SELECT_SSSE), 0, LINE)
    reply, pace = paced_exchange(ReaderT0(), end, bytes.fromhex("00B2072C0B"), 0, LINE)
    assert reply is not None and reply[-2:] == b"\x90\x00"
    # header 5 characters to the card; ACK, 11 data bytes, SW1 SW2 back: 19 characters of 12 etu
    assert pace.seconds == pytest.approx(19 * 12 * ETU)
    assert pace.requests == ()


def test_the_fci_fetched_by_get_response_counts_both_tpdus():
    _, end = t0_card()
    reply, pace = paced_exchange(ReaderT0(), end, bytes.fromhex(SELECT_SSSE), 0, LINE)
    assert reply is not None and len(reply) == 0x1E + 2
    # SELECT: header 5 + ACK 1 + 15 data + SW 2; GET RESPONSE: header 5 + ACK 1 + 30 data + SW 2
    assert pace.seconds == pytest.approx((5 + 1 + 15 + 2 + 5 + 1 + 30 + 2) * 12 * ETU)


def test_a_slow_t0_card_keeps_the_host_waiting_while_it_works():
    _, end = t0_card("delay 30000 ins B2 once")
    paced_exchange(ReaderT0(), end, bytes.fromhex(SELECT_SSSE), 0, LINE)
    _, pace = paced_exchange(ReaderT0(), end, bytes.fromhex("00B2072C0B"), 0, LINE)
    nulls = 30000 // (960 * 10)  # 3: the card lets at most one WWT (WI 10, Di 1) pass in silence
    # the 3 NULLs, the ACK, 11 data bytes, SW1 SW2 back, and the 30,000 etu of processing
    assert pace.seconds == pytest.approx((5 * 12 + 30000 + (nulls + 1 + 11 + 2) * 12) * ETU)
    works = 5 * 12 * ETU  # the card starts working once the header is in
    assert pace.requests == pytest.approx([works + 0.5 * k for k in range(1, 6)])  # 2.79 s of work: 5


def test_a_slow_t1_card_at_apdu_level_keeps_the_host_waiting_while_it_works():
    card = Card.from_profile("t1", date=CARD_DATE)
    card.power_on(1)
    card.faults = FaultPlan(["delay 100000 ins B2 once"])
    end = CardT1(card, ifsc=254, edc="lrc", bwi=4, cwi=5, fi=372, di=1, delay_etu=card.faults.slow_etu)
    reader = ReaderT1(ifsc=254, ifsd=254, edc="lrc", bwi=4, cwi=5, fi=372, di=1)
    paced_exchange(reader, end, bytes.fromhex(SELECT_SSSE), 1, LINE)
    reply, pace = paced_exchange(reader, end, bytes.fromhex("00B2072C0B"), 1, LINE)
    assert reply is not None and reply[-2:] == b"\x90\x00"
    assert pace.seconds > 100000 * ETU  # the S(WTX) exchange, then 100,000 etu of work: 9.3 s
    assert len(pace.requests) == 18 and pace.requests[-1] - pace.requests[0] == pytest.approx(17 * 0.5)


def test_at_tpdu_level_on_t1_the_block_and_its_answer():
    card = Card.from_profile("t1", date=CARD_DATE)
    card.power_on(1)
    end = CardT1(card, ifsc=254, edc="lrc", bwi=4, cwi=5, fi=372, di=1)
    block = bytes((0x00, 0x00, 20)) + bytes.fromhex(SELECT_SSSE)  # NAD, PCB I(0), LEN, the SELECT
    block += bytes((reduce(xor, block),))  # LRC
    reply, pace = paced_exchange(None, end, block, 1, LINE)
    assert reply is not None and len(reply) == 3 + 0x1E + 2 + 1  # an I-block: the FCI, SW, LRC
    assert pace.seconds == pytest.approx((len(block) + len(reply)) * 12 * ETU)
