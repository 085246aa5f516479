"""T=0 byte by byte (ISO/IEC 7816-3 §10, §12.2): `reader.t0.ReaderT0` against `chip.t0.CardT0`.

A tiny loop stands in for the wire: each end's output() goes to the other's
receive() until the reader is done, and timeout() is called when nothing
moves. Byte streams are asserted exactly as (TPDU sent, bytes received) pairs;
responses are compared with the in-process card (`SimReader`).
"""

import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chip import Card, CardNotPowered
from chip.t0 import CardT0, envelope_complete, nulls_for, wwt_etu
from reader.base import transmit_all
from reader.sim import SimReader
from reader.t0 import ReaderT0
from reader.t0 import envelope_complete as reader_envelope_complete

CARD_DATE = datetime.date(2026, 11, 21)
WWT = 960 * 10 * 4  # default WI 10, Di 4

SELECT_MF = "00A40000"
SSSE_NAME = "7378312E73682EC9E7BBE1B1A3D5CF"
SELECT_SSSE = "00A404000F" + SSSE_NAME
FCI_MF = "6F0483023F00"
FCI_SSSE = "6F19840F7378312E73682EC9E7BBE1B1A3D5CFA5069F0C03860104"
EF05_01 = "0110" "110100" "0000000001" "D156000005" "FFFFFF"  # 18 = 0x12 bytes
VERIFY = "0020000003123456"
PHOTO = bytes(i & 0xFF for i in range(300))


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def new_card() -> Card:
    card = Card.from_profile(date=CARD_DATE)
    card.power_on(0)
    return card


def run(reader_end: ReaderT0, card_end, apdu: bytes | str, rounds: int = 10_000) -> ReaderT0:
    """Carry bytes between the two ends until the reader is done (the wire, without time)."""
    reader_end.start(h(apdu) if isinstance(apdu, str) else apdu)
    for _ in range(rounds):
        moved = False
        sent = reader_end.output()
        if sent:
            moved = True
            card_end.receive(sent)
        answer = card_end.output()
        if answer:
            moved = True
            reader_end.receive(answer)
        if reader_end.done:
            return reader_end
        if not moved:
            reader_end.timeout()
            if reader_end.done:
                return reader_end
    raise AssertionError("the exchange did not finish")


def exchanges(reader_end: ReaderT0) -> list[tuple[str, str]]:
    return [(sent.hex().upper(), received.hex().upper()) for sent, received in reader_end.exchanges]


class Link:
    """A reader end and a card end on one card, with a `send(apdu) -> response hex` shortcut."""

    def __init__(self, card=None, **card_options):
        self.card = card or new_card()
        self.card_end = CardT0(self.card, **card_options)
        self.reader_end = ReaderT0()

    def send(self, apdu: str) -> str:
        end = run(self.reader_end, self.card_end, apdu)
        assert end.error is None, end.error
        return end.response.hex().upper()

    @property
    def exchanges(self):
        return exchanges(self.reader_end)


@pytest.fixture
def link():
    return Link()


def in_process(apdus: list[str], protocol: str = "T=0", photo: bool = False) -> list[str]:
    """What a fresh card answers in-process (T=0: through transmit_all's 61xx/6Cxx handling)."""
    card = Card.from_profile(date=CARD_DATE)
    if photo:
        store_photo(card)
    reader = SimReader(card, protocol=protocol)
    reader.reset()
    return [transmit_all(reader, h(apdu)).hex().upper() for apdu in apdus]


def store_photo(card: Card) -> None:
    card.store.write(card.store["ssse.ef08"], "data", PHOTO)
    card.store.commit()


# -- parameters ---------------------------------------------------------------------------------------


def test_wwt_and_wait():
    assert wwt_etu() == WWT == 38400
    assert ReaderT0().wait_etu == WWT
    assert ReaderT0(wi=20, di=1).wait_etu == 960 * 20
    assert CardT0(new_card(), wi=20, di=1).wwt == 960 * 20


@pytest.mark.parametrize("busy, nulls", [
    (0, 0), (1, 0), (WWT, 0), (WWT + 1, 1), (2 * WWT, 1), (2 * WWT + 1, 2), (5 * WWT + 7, 5),
])
def test_one_null_per_wwt_of_processing(busy, nulls):
    assert nulls_for(busy, WWT) == nulls


# -- case 1 -------------------------------------------------------------------------------------------


def test_case_1_is_p3_00_then_61xx_and_get_response(link):
    assert link.send(SELECT_MF) == FCI_MF + "9000"
    assert link.exchanges == [
        ("00A4000000", "6106"),
        ("00C0000006", "C0" + FCI_MF + "9000"),
    ]
    assert [FCI_MF + "9000"] == in_process([SELECT_MF]) == in_process([SELECT_MF], "T=1")


def test_case_1_to_an_outgoing_ins_is_le_256(link):
    # READ RECORD without Le: P3 = 00 asks for 256 bytes; the card has 18: 6C12, then the same header, P3 = 12
    assert link.send(SELECT_SSSE + "00").endswith("9000")
    assert link.send("00B2012C") == EF05_01 + "9000"
    assert link.exchanges == [("00B2012C00", "6C12"), ("00B2012C12", "B2" + EF05_01 + "9000")]


# -- case 2 -------------------------------------------------------------------------------------------


def test_case_2_ack_data_sw(link):
    link.send(SELECT_SSSE)
    assert link.send("00B2012C12") == EF05_01 + "9000"
    assert link.exchanges == [("00B2012C12", "B2" + EF05_01 + "9000")]


def test_case_2_wrong_le_6cxx_then_reissued(link):
    link.send(SELECT_SSSE)
    assert link.send("00B2012C05") == EF05_01 + "9000"
    assert link.exchanges == [("00B2012C05", "6C12"), ("00B2012C12", "B2" + EF05_01 + "9000")]
    assert in_process([SELECT_SSSE, "00B2012C05"])[1] == EF05_01 + "9000"


def test_case_2_le_00_with_fewer_bytes_is_answered_once():
    # Le = 00 asks for 256: the card answers 6C12 and keeps its answer for the re-issued header
    seen = []
    link = Link(delay_etu=lambda apdu: seen.append(apdu.hex().upper()) or 0)
    link.send(SELECT_SSSE)
    seen.clear()
    assert link.send("00B2012C00") == EF05_01 + "9000"
    assert link.exchanges == [("00B2012C00", "6C12"), ("00B2012C12", "B2" + EF05_01 + "9000")]
    assert seen == ["00B2012C00"]  # processed once, not again for the re-issued header


def test_get_response_le_00_keeps_the_answer_it_consumed(link):
    # GET RESPONSE consumes the pending data: the 6C1B answer must be served without re-processing
    assert link.send(SELECT_SSSE + "00") == FCI_SSSE + "9000"
    link.card_end.receive(h(SELECT_SSSE[:10]))
    assert link.card_end.output() == h("A4")
    link.card_end.receive(h(SSSE_NAME))
    assert link.card_end.output() == h("611B")
    assert link.send("00C0000000") == FCI_SSSE + "9000"
    assert link.exchanges == [("00C0000000", "6C1B"), ("00C000001B", "C0" + FCI_SSSE + "9000")]


def test_another_header_drops_a_held_answer(link):
    link.send(SELECT_SSSE)
    card_end = link.card_end
    card_end.receive(h("00B2012C00"))
    assert card_end.output() == h("6C12")
    card_end.receive(h("00B2022C00"))  # another record, not the re-issue
    assert card_end.output()[:1] == b"\x6C"
    assert link.send("00B2012C12") == EF05_01 + "9000"


def test_sw_only_answer_6982(link):
    link.send(SELECT_SSSE)
    assert link.send("00B0880000") == "6982"  # the photo needs the PIN
    assert link.exchanges == [("00B0880000", "6982")]


def test_read_binary_past_the_end_keeps_6282():
    card = new_card()
    card.store.write(card.store["ssse.ef08"], "data", bytes(range(40)))
    card.store.commit()
    link = Link(card)
    link.send(SELECT_SSSE)
    link.send(VERIFY)
    assert link.send("00B0882010") == bytes(range(32, 40)).hex().upper() + "6282"
    assert link.exchanges == [("00B0882010", "6C08"), ("00B0882008", "B0" + bytes(range(32, 40)).hex().upper() + "6282")]


# -- case 3 -------------------------------------------------------------------------------------------


def test_case_3_header_ack_data_sw(link):
    link.send(SELECT_SSSE)
    assert link.send(VERIFY) == "9000"
    assert link.exchanges == [(VERIFY, "209000")]


def test_case_3_wrong_pin_is_the_cards_sw(link):
    link.send(SELECT_SSSE)
    assert link.send("0020000003111111") == "63C5"
    assert link.exchanges == [("0020000003111111", "2063C5")]


# -- case 4 -------------------------------------------------------------------------------------------


def test_case_4_select_61xx_get_response_same_as_in_process(link):
    response = link.send(SELECT_SSSE + "00")
    assert response == FCI_SSSE + "9000"
    assert link.exchanges == [
        (SELECT_SSSE, "A4611B"),  # sent as case 3: no Le byte on the wire
        ("00C000001B", "C0" + FCI_SSSE + "9000"),
    ]
    assert in_process([SELECT_SSSE + "00"]) == [response] == in_process([SELECT_SSSE + "00"], "T=1")


def test_case_4_answered_9000_alone_is_the_sw(link):
    # SELECT with P2 0C: no FCI, so no 61xx and no GET RESPONSE
    assert link.send("00A4040C0F" + SSSE_NAME + "00") == "9000"
    assert link.exchanges == [("00A4040C0F" + SSSE_NAME, "A49000")]


def test_case_4_select_ef_by_fid_gives_its_fcp(link):
    link.send(SELECT_SSSE)
    fcp = "620B820201218302EF08880140"
    assert link.send("00A4020002EF0800") == fcp + "9000"
    assert link.exchanges == [("00A4020002EF08", "A4610D"), ("00C000000D", "C0" + fcp + "9000")]


# -- ~INS: one byte at a time ---------------------------------------------------------------------


def test_one_byte_at_a_time_incoming():
    link = Link(one_byte=True)
    link.send(SELECT_SSSE)
    assert link.send(VERIFY) == "9000"
    assert link.exchanges == [(VERIFY, "DF" "DF" "DF" "9000")]  # ~20 before each of 12 34 56


def test_one_byte_at_a_time_outgoing():
    link = Link(one_byte=True)
    assert link.send(SELECT_SSSE) == FCI_SSSE + "9000"
    assert link.exchanges[0] == (SELECT_SSSE, "5B" * 15 + "611B")
    fci = h(FCI_SSSE)
    assert link.exchanges[1] == ("00C000001B", "".join(f"3F{b:02X}" for b in fci) + "9000")
    assert link.send("00B2012C12") == EF05_01 + "9000"
    assert link.exchanges == [("00B2012C12", "".join(f"4D{b:02X}" for b in h(EF05_01)) + "9000")]


def test_reader_sends_one_byte_per_not_ins():
    card_end = CardT0(new_card(), one_byte=True)
    reader_end = ReaderT0()
    reader_end.start(h(SELECT_SSSE))
    assert reader_end.output() == h(SELECT_SSSE[:10])
    card_end.receive(h(SELECT_SSSE[:10]))
    pieces = []
    for _ in range(15):
        answer = card_end.output()
        assert answer == b"\x5B"
        reader_end.receive(answer)
        piece = reader_end.output()
        pieces.append(piece)
        card_end.receive(piece)
    assert pieces == [bytes((b,)) for b in h(SSSE_NAME)]
    reader_end.receive(card_end.output())
    assert reader_end.exchanges[0] == (h(SELECT_SSSE), h("5B" * 15 + "611B"))


# -- NULL: the card needs more time ---------------------------------------------------------------


@pytest.mark.parametrize("busy, nulls", [(WWT, 0), (WWT + 1, 1), (3 * WWT + 5, 3)])
def test_null_bytes_when_the_card_is_slow(busy, nulls):
    link = Link(delay_etu=lambda apdu: busy if apdu[1] == 0x20 else 0)
    link.send(SELECT_SSSE)
    assert link.send(VERIFY) == "9000"
    assert link.exchanges == [(VERIFY, "20" + "60" * nulls + "9000")]
    assert link.card_end.busy_etu == busy


def test_null_bytes_before_outgoing_data():
    link = Link(delay_etu=lambda apdu: 2 * WWT + 1 if apdu[1] == 0xB2 else 0)
    link.send(SELECT_SSSE)
    assert link.send("00B2012C12") == EF05_01 + "9000"
    assert link.exchanges == [("00B2012C12", "6060" + "B2" + EF05_01 + "9000")]


def test_null_bytes_arriving_one_by_one_restart_the_wait():
    reader_end = ReaderT0()
    reader_end.start(h(VERIFY))
    assert reader_end.output() == h(VERIFY[:10])
    reader_end.receive(h("20"))
    assert reader_end.output() == h("123456")
    for _ in range(50):
        reader_end.receive(b"\x60")
        assert not reader_end.done
    reader_end.receive(h("9000"))
    assert (reader_end.done, reader_end.error, reader_end.response) == (True, None, h("9000"))


def test_a_broken_delay_model_costs_nothing(link):
    link.card_end.delay_etu = lambda apdu: 1 // 0
    assert link.send(SELECT_MF) == FCI_MF + "9000"


# -- invalid INS, invalid procedure bytes, timeouts ----------------------------------------------


@pytest.mark.parametrize("apdu, sent", [
    ("006D0000", "006D000000"),
    ("00900000", "0090000000"),
    ("0060000002AABB", "0060000002"),  # 6D00 at once: the data are never sent
    ("009F000002AABB", "009F000002"),  # ~9F = 60 would be read as NULL
])
def test_ins_6x_9x_is_6d00_at_once(link, apdu, sent):
    assert link.send(apdu) == "6D00"
    assert link.exchanges == [(sent, "6D00")]


class ScriptedCard:
    """A broken card end: answers each header with the next scripted bytes."""

    def __init__(self, *answers: str):
        self.answers = [h(a) for a in answers]
        self.heard = bytearray()
        self._out = b""

    def receive(self, data: bytes) -> None:
        self.heard += data
        if self.answers:
            self._out += self.answers.pop(0)

    def output(self) -> bytes:
        out, self._out = self._out, b""
        return out


@pytest.mark.parametrize("answer, reason", [
    ("42", "invalid procedure byte 42"),
    ("A5", "invalid procedure byte A5"),
    ("00", "invalid procedure byte 00"),
])
def test_invalid_procedure_byte_is_an_error(answer, reason):
    end = run(ReaderT0(), ScriptedCard(answer), VERIFY)
    assert end.done and end.response is None
    assert end.error.startswith(reason)
    assert exchanges(end) == [(VERIFY[:10], answer)]


def test_ack_with_nothing_left_is_an_error():
    end = run(ReaderT0(), ScriptedCard("20", "20"), VERIFY)  # ACK again after all the data
    assert end.response is None
    assert "no data left" in end.error


def test_timeout_is_an_error_never_a_response():
    end = run(ReaderT0(), ScriptedCard(), VERIFY)  # a mute card
    assert (end.done, end.response) == (True, None)
    assert end.error.startswith("timeout")
    assert exchanges(end) == [(VERIFY[:10], "")]


def test_timeout_in_the_middle_of_the_data():
    end = run(ReaderT0(), ScriptedCard("B2" + EF05_01[:20]), "00B2012C12")  # 10 of 18 bytes, then silence
    assert end.response is None and end.error.startswith("timeout")


def test_timeout_waiting_for_sw2():
    end = run(ReaderT0(), ScriptedCard("2090"), VERIFY)
    assert end.response is None and end.error.startswith("timeout")


def test_bytes_after_the_end_are_ignored():
    end = run(ReaderT0(), ScriptedCard("2090001234"), VERIFY)
    assert (end.response, end.error) == (h("9000"), None)
    end.receive(b"\x42")
    assert (end.response, end.error) == (h("9000"), None)


def test_6cxx_to_a_data_carrying_tpdu_ends_there():
    end = run(ReaderT0(), ScriptedCard("6C10"), VERIFY)
    assert end.response == h("6C10")


def test_a_card_that_keeps_asking_for_another_le_is_not_followed_forever():
    end = run(ReaderT0(), ScriptedCard("6C12", "6C12"), "00B2012C05")
    assert end.response == h("6C12")  # the card's own answer to P3 = 12
    assert exchanges(end) == [("00B2012C05", "6C12"), ("00B2012C12", "6C12")]


def test_an_endless_61xx_chain_is_cut():
    end = ReaderT0(max_tpdus=5)
    run(end, ScriptedCard(*["6101"] + ["C0AA6101"] * 10), SELECT_MF)
    assert end.response is None and "more than 5 TPDUs" in end.error


# -- ENVELOPE: extended lengths --------------------------------------------------------------------


def test_envelope_for_a_260_byte_4e_select(link):
    name = bytes(range(1, 252))  # 251 bytes: 4 + 3 + 251 + 2 = 260
    apdu = h("00A40400") + b"\x00" + len(name).to_bytes(2, "big") + name + b"\x00\x00"
    assert len(apdu) == 260
    end = run(link.reader_end, link.card_end, apdu)
    assert end.response == h("6A82")
    assert end.exchanges == [
        (h("00C20000FF") + apdu[:255], h("C29000")),
        (h("00C2000005") + apdu[255:], h("C26A82")),  # complete by its own Le: no empty ENVELOPE
    ]
    assert in_process([apdu.hex()]) == ["6A82"] == in_process([apdu.hex()], "T=1")


def test_envelope_4e_select_then_fci_by_get_response(link):
    apdu = "00A40400" "00000F" + SSSE_NAME + "0000"
    assert link.send(apdu) == FCI_SSSE + "9000"
    assert link.exchanges == [
        ("00C2000018" + apdu, "C2611B"),
        ("00C000001B", "C0" + FCI_SSSE + "9000"),
    ]
    assert in_process([apdu], "T=1") == [FCI_SSSE + "9000"]


def test_envelope_3e_verify_ends_with_an_empty_envelope(link):
    link.send(SELECT_SSSE)
    apdu = "00200000" "000003" "123456"
    assert link.send(apdu) == "9000"
    assert link.exchanges == [("00C200000A" + apdu, "C29000"), ("00C2000000", "9000")]


def test_envelope_response_over_256_bytes_through_get_response():
    card = new_card()
    store_photo(card)
    link = Link(card)
    link.send(SELECT_SSSE)
    link.send(VERIFY)
    apdu = "00B08800" "00012C"  # case 2E, Le = 300
    response = link.send(apdu)
    assert response == PHOTO.hex().upper() + "9000"
    assert link.exchanges == [
        ("00C2000007" + apdu, "C29000"),
        ("00C2000000", "6100"),  # 300 bytes: 61 00 (256 or more)
        ("00C0000000", "C0" + PHOTO[:256].hex().upper() + "612C"),
        ("00C000002C", "C0" + PHOTO[256:].hex().upper() + "9000"),
    ]
    expected = in_process([SELECT_SSSE, VERIFY, apdu], "T=1", photo=True)[2]
    assert response == expected == in_process([SELECT_SSSE, VERIFY, apdu], photo=True)[2]


def test_envelope_extended_le_0000_reads_everything():
    card = new_card()
    store_photo(card)
    link = Link(card, one_byte=True)
    link.send(SELECT_SSSE)
    link.send(VERIFY)
    assert link.send("00B08800000000") == PHOTO.hex().upper() + "9000"


def test_envelope_3e_long_data():
    # a 307-byte case 3E command the card does not know: 2 ENVELOPEs + the empty one, then the card's 6D00
    link = Link()
    apdu = "00DA0000" "00012C" + "AB" * 300
    assert link.send(apdu) == "6D00" == in_process([apdu], "T=1")[0]
    assert [sent[:10] for sent, _ in link.exchanges] == ["00C20000FF", "00C2000034", "00C2000000"]
    assert [received for _, received in link.exchanges] == ["C29000", "C29000", "6D00"]


@pytest.mark.parametrize("apdu", ["", "00", "00B2", "00B2012C0000", "00A4020002EF", "00A4020002EF050000",
                                  "00A4040000000000", "00A40200000002EF0500"])
def test_malformed_apdu_goes_in_envelope_and_the_card_answers_6700(link, apdu):
    assert link.send(apdu) == "6700" == in_process([apdu], "T=1")[0]


def test_another_command_discards_an_unfinished_envelope(link):
    card_end = link.card_end
    card_end.receive(h("00C2000004" "00A40400"))
    assert card_end.output() == h("C29000")
    assert link.send(SELECT_MF) == FCI_MF + "9000"
    card_end.receive(h("00C2000000"))  # nothing buffered any more
    assert card_end.output() == h("6700")


def test_envelope_wrong_p1p2(link):
    assert link.send("00C2010000") == "6A86"


@pytest.mark.parametrize("hexstr, complete", [
    ("", False), ("00A40400", False), ("00A4040002", False), ("00A4040002EF05", False),
    ("00A4040002EF0500", True), ("00B0880000", False), ("00B08800000000", False),
    ("00A40400000002EF05", False), ("00A40400000002EF050000", True), ("00A4040000000000", True),
])
def test_envelope_completion_rule_is_the_same_on_both_sides(hexstr, complete):
    assert envelope_complete(h(hexstr)) is complete
    assert reader_envelope_complete(h(hexstr)) is complete


# -- the same card over T=0 as in-process --------------------------------------------------------------


SESSION = [
    SELECT_MF, SELECT_SSSE, "00B2012C00", "00B2012C05", "00B2022C00", "00B0880000", "0020000003111111",
    VERIFY, "00B2082C00", "00B20844", "00A4020002EF05", "00A4020002EF0500", "00B2010400", "00B2070400",
    "00C0000000", "00CA9F7F00", "80CA9F7900", "0084000008", "00A4040C0F" + SSSE_NAME, "006D0000",
    "00B2012C000012", "00A40400000008A000000333010101" + "0000",
]


def test_a_session_answers_as_in_process(link):
    link.card.random = lambda n: bytes(range(n))
    got = [link.send(apdu) for apdu in SESSION]
    card = Card.from_profile(date=CARD_DATE)
    card.random = lambda n: bytes(range(n))
    reader = SimReader(card, protocol="T=0")
    reader.reset()
    assert got == [transmit_all(reader, h(apdu)).hex().upper() for apdu in SESSION]


def test_one_byte_session_answers_the_same():
    normal, one = Link(), Link(one_byte=True)
    for side in (normal, one):
        side.card.random = lambda n: bytes(range(n))
    assert [one.send(apdu) for apdu in SESSION] == [normal.send(apdu) for apdu in SESSION]


# -- robustness -------------------------------------------------------------------------------------

CARD = new_card()  # shared by the property test below: any bytes, any state


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=40), max_size=8), st.booleans())
def test_the_card_end_never_raises_on_any_bytes(chunks, one_byte):
    card_end = CardT0(CARD, one_byte=one_byte)
    for chunk in chunks:
        card_end.receive(chunk)
        out = card_end.output()
        assert isinstance(out, bytes)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=20), st.lists(st.binary(max_size=30), max_size=6))
def test_the_reader_end_never_raises_and_never_answers_from_garbage_without_sw(apdu, answers):
    end = ReaderT0(max_tpdus=20)
    end.start(apdu)
    for answer in answers:
        end.output()
        end.receive(answer)
        if end.done:
            break
    if not end.done:
        end.timeout()
    assert end.done
    assert (end.response is None) != (end.error is None)
    if end.response is not None:
        assert len(end.response) >= 2 and end.response[-2] & 0xF0 in (0x60, 0x90)


def test_power_loss_and_unpowered_card_are_not_swallowed():
    card = new_card()
    card.power_off()
    card_end = CardT0(card)
    with pytest.raises(CardNotPowered):
        card_end.receive(h("00A4000000"))
    card.power_on(0)
    card_end.receive(h("00A4000000"))  # the half TPDU was forgotten: a clean start
    assert card_end.output() == h("6106")
