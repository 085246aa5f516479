"""PPS (ISO/IEC 7816-3 §9): the card's answer and the reader's check, byte by byte."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chip import Card
from chip.contacts.atr import AtrConfig, build, parse_atr
from chip.contacts.pps import CardPps, pck, request_length
from chip.contacts.timing import DI_TABLE, FI_TABLE
from reader.link.pps import ReaderPps, pps_request

BASIC = build()  # the default card, P2's basic ATR: T=0 only, no TA1 (Fi/Di 372/1 only)
T1_CONFIG = AtrConfig(fi_di=0x13, tb1=None, guard_time=None, protocols=(0, 1))
DEFAULT = build(T1_CONFIG)  # the t1 profile: T=0 and T=1, TA1 13: Fi 372, Di 4
TA1_96 = build(dataclasses.replace(T1_CONFIG, fi_di=0x96))  # Fi 512, Di 32
SPECIFIC_T1 = build(dataclasses.replace(T1_CONFIG, specific=1))
T0_ONLY = build(dataclasses.replace(T1_CONFIG, protocols=(0,)))


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def card_answer(atr: bytes, request: bytes, *, bytewise: bool = False) -> CardPps:
    card = CardPps(atr)
    if bytewise:
        for byte in request:
            assert not card.done
            card.receive(bytes((byte,)))
    else:
        card.receive(request)
    return card


def exchange(atr: bytes, reader: ReaderPps) -> tuple[CardPps, ReaderPps]:
    """Run one PPS exchange the way the wire does: request out, answer back or a timeout."""
    card = CardPps(atr)
    card.receive(reader.output())
    answer = card.output()
    if answer:
        reader.receive(answer)
    else:
        reader.timeout()
    return card, reader


# -- the default card (P2 basic ATR): nothing to negotiate ----------------------------------------

@pytest.mark.parametrize("request_hex, answer_hex", [
    ("FF 00 FF", "FF 00 FF"),  # T=0, no PPS1: confirms the default
    ("FF 10 11 FE", "FF 10 11 FE"),  # T=0 at 11: the only Fi/Di it has
    ("FF 10 13 FC", "FF 00 FF"),  # Di 4 asked: no TA1, so answered without PPS1 (372/1)
    ("FF 10 96 79", "FF 00 FF"),
], ids=["t0", "t0-11", "t0-13", "t0-96"])
def test_basic_card_confirms_t0_at_372_1(request_hex, answer_hex):
    card, reader = exchange(BASIC, ReaderPps(0, split_pps1(request_hex)))
    assert reader.request == h(request_hex) and card.answer == h(answer_hex)
    assert (card.accepted, card.protocol, card.fi, card.di) == (True, 0, 372, 1)
    assert (reader.accepted, reader.protocol, reader.fi, reader.di) == (True, 0, 372, 1)


def test_basic_card_refuses_t1():
    card, reader = exchange(BASIC, ReaderPps(1, 0x13))
    assert card.error == "T=1 is not offered (ATR offers T=0); no answer"
    assert not reader.accepted and reader.error.startswith("no PPS answer")


def split_pps1(request_hex: str) -> int | None:
    request = h(request_hex)
    return request[2] if request[1] & 0x10 else None


# -- accepted (the t1 profile: TA1 13) -----------------------------------------------------------------

def test_default_card_echoes_t0_at_its_ta1():
    card = card_answer(DEFAULT, h("FF 10 13 FC"))
    assert card.done and card.accepted and card.error is None
    assert card.output() == h("FF 10 13 FC") and card.output() == b""
    assert (card.protocol, card.fi, card.di) == (0, 372, 4)


def test_ta1_96_card_echoes_t1_at_512_32():
    card = card_answer(TA1_96, h("FF 11 96 78"))
    assert card.output() == h("FF 11 96 78")
    assert (card.accepted, card.protocol, card.fi, card.di) == (True, 1, 512, 32)


@pytest.mark.parametrize("request_hex, answer_hex, fi, di", [
    ("FF 00 FF", "FF 00 FF", 372, 1),  # no PPS1: the default Fd/Dd
    ("FF 01 FE", "FF 01 FE", 372, 1),
    ("FF 11 11 FF", "FF 11 11 FF", 372, 1),  # PPS1 11 (the default) always supported
    ("FF 11 12 FC", "FF 11 12 FC", 372, 2),  # a lower Di than TA1's
    ("FF 11 03 ED", "FF 11 03 ED", 372, 4),  # Fi 372 at f_max 4 MHz (below TA1's 5 MHz)
], ids=["t0-no-pps1", "t1-no-pps1", "pps1-11", "lower-di", "lower-fmax"])
def test_supported_requests_are_echoed(request_hex, answer_hex, fi, di):
    card = card_answer(DEFAULT, h(request_hex), bytewise=True)
    assert card.output() == h(answer_hex)
    assert (card.accepted, card.fi, card.di) == (True, fi, di)


def test_pps2_and_pps3_are_left_out_of_the_answer():
    # PPS0 70: PPS1, PPS2 and PPS3 follow; the card has no SPU and knows no PPS3
    request = h("FF 70 13 00 00") + bytes((pck(h("FF 70 13 00 00")),))
    assert request == h("FF 70 13 00 00 9C") and request_length(0x70) == 6
    card = card_answer(DEFAULT, request, bytewise=True)
    assert card.output() == h("FF 10 13 FC") and card.accepted and (card.fi, card.di) == (372, 4)
    # PPS0 20 (PPS2 only) and 40 (PPS3 only)
    assert card_answer(DEFAULT, h("FF 21 02 DC")).output() == h("FF 01 FE")
    assert card_answer(DEFAULT, h("FF 40 01 BE")).output() == h("FF 00 FF")


def test_reader_accepts_an_answer_without_pps2_pps3():
    reader = ReaderPps(0, 0x13, pps2=0x00, pps3=0x00)
    assert reader.request == h("FF 70 13 00 00 9C")
    exchange(DEFAULT, reader)
    assert (reader.done, reader.accepted, reader.protocol, reader.fi, reader.di) == (True, True, 0, 372, 4)


# -- refused -------------------------------------------------------------------------------------

@pytest.mark.parametrize("request_hex, answer_hex", [
    ("FF 10 14 FB", "FF 00 FF"),  # Di 8 above TA1's Di 4
    ("FF 11 96 78", "FF 01 FE"),  # Fi 512: another Fi
    ("FF 11 23 CD", "FF 01 FE"),  # Fi 558
    ("FF 10 1A F5", "FF 00 FF"),  # Di index A is RFU
], ids=["di-8", "fi-512", "fi-558", "di-rfu"])
def test_unsupported_fi_di_answered_without_pps1(request_hex, answer_hex):
    """§9.3: the card keeps the protocol and answers PPS1 absent: Fd = 372, Dd = 1."""
    card = card_answer(DEFAULT, h(request_hex))
    assert card.output() == h(answer_hex)
    assert (card.accepted, card.fi, card.di) == (True, 372, 1)
    if request_hex != "FF 10 1A F5":  # the reader end never sends an RFU Di
        reader = ReaderPps(h(request_hex)[1] & 0xF, h(request_hex)[2])
        assert reader.output() == h(request_hex)
        reader.receive(h(answer_hex))
        assert (reader.accepted, reader.fi, reader.di) == (True, 372, 1)


def test_ta1_96_card_refuses_di_64():
    assert card_answer(TA1_96, pps_request(1, 0x97)).output() == h("FF 01 FE")


def test_wrong_pck_gets_silence_and_the_reader_times_out():
    card = card_answer(DEFAULT, h("FF 10 13 FD"))
    assert card.done and not card.accepted and card.output() == b""
    assert card.error == "PCK wrong (XOR of the request is 01): no answer"
    assert (card.protocol, card.fi, card.di) == (None, None, None)
    reader = ReaderPps(0, 0x13)
    reader.output()
    assert not reader.done and reader.wait_etu == 9600
    reader.timeout()
    assert reader.done and not reader.accepted and reader.error == "no PPS answer within 9600 etu: the card refused"


@pytest.mark.parametrize("atr, request_hex, reason", [
    (DEFAULT, "FF 12 13 FE", "T=2 is not offered (ATR offers T=0, T=1); no answer"),
    (T0_ONLY, "FF 11 13 FD", "T=1 is not offered (ATR offers T=0); no answer"),
    (DEFAULT, "FF 80 7F", "PPS0 80: b8 must be 0; no answer"),
    (SPECIFIC_T1, "FF 10 13 FC", "specific mode T=1 at TA1 13: refused T=0 at 13; no answer"),
    (SPECIFIC_T1, "FF 11 12 FC", "specific mode T=1 at TA1 13: refused T=1 at 12; no answer"),
    (SPECIFIC_T1, "FF 01 FE", "specific mode T=1 at TA1 13: refused T=1 at 11; no answer"),
], ids=["t2", "t1-on-t0-card", "pps0-b8", "specific-other-t", "specific-other-di", "specific-default"])
def test_refused_requests_get_silence(atr, request_hex, reason):
    card = card_answer(atr, h(request_hex))
    assert card.done and not card.accepted and card.output() == b"" and card.error == reason


def test_specific_mode_echoes_only_its_own_protocol_and_parameters():
    card = card_answer(SPECIFIC_T1, h("FF 11 13 FD"))
    assert card.output() == h("FF 11 13 FD") and (card.protocol, card.fi, card.di) == (1, 372, 4)
    _, reader = exchange(SPECIFIC_T1, ReaderPps(0, 0x13))
    assert not reader.accepted and reader.error.startswith("no PPS answer")


# -- the card end's framing ----------------------------------------------------------------------

def test_not_a_pps_is_handed_back():
    card = CardPps(DEFAULT)
    card.receive(h("00 A4 04 00 0F"))
    assert card.done and not card.accepted and card.output() == b""
    assert card.error == "not a PPS request: first byte 00, PPSS must be FF"
    assert card.leftover == h("00 A4 04 00 0F")


def test_bytes_after_pck_are_kept():
    card = card_answer(DEFAULT, h("FF 10 13 FC 00 C1"))
    assert card.accepted and card.leftover == h("00 C1") and card.busy_etu == 0
    card.receive(h("00"))
    assert card.leftover == h("00 C1 00")


def test_card_end_accepts_parsed_atr_and_empty_input():
    card = CardPps(parse_atr(Card.from_profile("t1").atr))
    card.receive(b"")
    assert not card.done
    card.receive(h("FF"))
    card.receive(h("10"))
    card.receive(h("13"))
    assert not card.done
    card.receive(h("FC"))
    assert card.output() == h("FF 10 13 FC")


# -- the reader end ------------------------------------------------------------------------------

def test_reader_request_bytes():
    assert ReaderPps(0, 0x13).output() == h("FF 10 13 FC")
    assert ReaderPps(1, 0x96).output() == h("FF 11 96 78")
    assert ReaderPps(1).output() == h("FF 01 FE")
    reader = ReaderPps(0)
    assert reader.output() == h("FF 00 FF") and reader.output() == b""
    assert ReaderPps(0, wi=20).wait_etu == 19200
    with pytest.raises(ValueError, match="RFU"):
        ReaderPps(0, 0x10)
    with pytest.raises(ValueError, match="protocol"):
        ReaderPps(15)


@pytest.mark.parametrize("answer_hex, reason", [
    ("FF 11 13 FD", "answer T=1, requested T=0"),
    ("FF 10 12 FD", "answer PPS1 12 differs from the request (requested 13)"),
    ("FF 10 13 FD", "answer FF 10 13 FD: PCK wrong"),
    ("FF 30 13 00 DC", "answer PPS2 00 differs from the request (not requested)"),
    ("FF 90 13 7C", "answer PPS0 90: b8 must be 0"),
    ("3B", "answer starts 3B, PPSS must be FF"),
], ids=["other-t", "other-pps1", "pck", "pps2-not-asked", "b8", "ppss"])
def test_reader_rejects_an_inconsistent_answer(answer_hex, reason):
    reader = ReaderPps(0, 0x13)
    reader.output()
    reader.receive(h(answer_hex))
    assert reader.done and not reader.accepted and reader.error == reason
    assert (reader.protocol, reader.fi, reader.di) == (None, None, None)


def test_reader_takes_pps1_absent_as_the_default():
    reader = ReaderPps(1, 0x13)
    for byte in h("FF 01 FE"):
        assert not reader.done
        reader.receive(bytes((byte,)))
    assert (reader.accepted, reader.protocol, reader.fi, reader.di) == (True, 1, 372, 1)


def test_reader_accepts_an_echoed_pps2():
    reader = ReaderPps(1, 0x13, pps2=0x00)
    assert reader.request == h("FF 31 13 00 DD")
    reader.receive(h("FF 31 13 00 DD"))
    assert reader.accepted and (reader.fi, reader.di) == (372, 4)


def test_reader_timeout_after_a_partial_answer():
    reader = ReaderPps(0, 0x13)
    reader.receive(h("FF 10"))
    reader.timeout()
    assert reader.error == "no PPS answer within 9600 etu (only FF 10 arrived): the card refused"
    reader.timeout()  # already done: nothing changes
    assert reader.error.startswith("no PPS answer")


# -- property: the two ends always agree -------------------------------------------------------------

fi_di_bytes = st.tuples(st.sampled_from(sorted(FI_TABLE)), st.sampled_from(sorted(DI_TABLE))).map(
    lambda p: p[0] << 4 | p[1])


@settings(max_examples=300, deadline=None)
@given(card_fi_di=st.none() | fi_di_bytes, protocols=st.sampled_from([(0, 1), (0,), (1,)]), specific=st.booleans(),
       protocol=st.integers(0, 2), fi_di=st.none() | fi_di_bytes, pps2=st.none() | st.integers(0, 255),
       pps3=st.none() | st.integers(0, 255))
def test_card_and_reader_agree(card_fi_di, protocols, specific, protocol, fi_di, pps2, pps3):
    atr = build(AtrConfig(fi_di=card_fi_di, protocols=protocols, specific=protocols[-1] if specific else None))
    card_fi_di = 0x11 if card_fi_di is None else card_fi_di  # no TA1: Fd/Dd
    card, reader = exchange(atr, ReaderPps(protocol, fi_di, pps2=pps2, pps3=pps3))
    assert card.done and reader.done
    assert card.accepted == reader.accepted
    assert (card.protocol, card.fi, card.di) == (reader.protocol, reader.fi, reader.di)
    if reader.accepted:
        assert reader.protocol == protocol and reader.protocol in protocols
        fi, di = FI_TABLE[card_fi_di >> 4][0], DI_TABLE[card_fi_di & 0xF]
        assert (reader.fi, reader.di) == (372, 1) or (reader.fi == fi and reader.di <= di)
        if specific:
            assert protocol == protocols[-1] and (fi_di or 0x11) == card_fi_di
    else:
        assert card.answer == b"" and reader.error.startswith("no PPS answer")
