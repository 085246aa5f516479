"""T=0 byte by byte (ISO/IEC 7816-3 §10, §12.2): `reader.link.t0.ReaderT0` against `chip.contacts.t0.CardT0`.

A tiny loop stands in for the wire: each end's output() goes to the other's
receive() until the reader is done, and timeout() is called when nothing
moves. Byte streams are asserted exactly as (TPDU sent, bytes received) pairs;
responses are compared with the in-process card (`SimReader`). The card is the default
profile, which offers T=0 only (LD/T 32 P2: no TA1, Fi/Di 372/1, WI 10); the photo (EF08) is
read after EXTERNAL AUTHENTICATE with RKSSSE, its cryptogram from the independent oracle
(tests/oracle.py, as tests/helpers.py).
"""


import oracle
import pytest
from helpers import CARD_DATE, DDF_NAME, EF05, EF06, FCI, KEY_ID, SELECT_FIN, SELECT_SSSE, VERIFY_OK, card_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chip import Card, CardNotPowered
from chip.apps.ssse_files import EF08
from chip.contacts.t0 import CardT0, envelope_complete
from chip.contacts.timing import nulls_for, wwt_etu
from reader.base import transmit_all
from reader.link.t0 import ReaderT0
from reader.link.t0 import envelope_complete as reader_envelope_complete
from reader.sim import SimReader

WWT = 960 * 10 * 1  # default WI 10, Di 1 (the default card: no TA1, no PPS; P2 §9.2.2.1)

SELECT_MF = "00A40000"
FCI_MF = "6F0483023F00"
# 6F { 84 DF name, A5 { 88 01 1E (DIR SFI 30), 9F0C 03 86 01 03 (SM4) } }: 30 = 0x1E bytes (P5 table 36)
FCI_SSSE = FCI["sm4"]
FCI_LENGTH = "1E"
EF05_01 = EF05[0x01]  # item 01, V2 table 10: 18 = 0x12 bytes
VERIFY = VERIFY_OK
FIN_RECORD_1 = "701E57106234560000000008D36112200000000F5F20064C492F4855419F1F00"  # SFI 1 record 1: 32 bytes
AUTH_RK = "external authentication with RKSSSE"  # a step of `in_process`: GET CHALLENGE + 00 82 00 0A
PHOTO = bytes(i & 0xFF for i in range(300))


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_constants_are_the_shared_ones():
    assert FCI_SSSE == FCI["sm4"] and EF05_01 == EF05[0x01] and int(FCI_LENGTH, 16) == len(h(FCI_SSSE))


def authenticate_rk(send) -> str:
    """GET CHALLENGE, then EXTERNAL AUTHENTICATE with RKSSSE (P5 §6.4.3, P4 §9.3) through `send`
    (hex command -> hex response); the cryptogram is the oracle's. Returns the card's answer."""
    answer = send("0084000008")
    assert answer[-4:] == "9000" and len(answer) == 20, answer
    ks = oracle.process_key("sm4", card_key("sm4", "ssse_rk"), h(answer[:-4]))
    original = bytes(range(1, 9))
    data = oracle.auth_data("sm4", ks, original) + original
    return send(f"008200{KEY_ID['ssse_rk']:02X}10" + data.hex().upper())


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


def in_process(apdus: list[str], protocol: str = "T=0", photo: bool = False, raw: bool = False,
               random=None) -> list[str]:
    """What a fresh card answers in-process (T=0: through transmit_all's 61xx/6Cxx handling; `raw`:
    T=1, every answer as the card gives it); an `AUTH_RK` step authenticates with RKSSSE."""
    card = Card.from_profile(date=CARD_DATE)
    if photo:
        store_photo(card)
    if random is not None:
        card.random = random
    reader = SimReader(card, protocol="T=1" if raw else protocol)
    reader.reset()

    def send(apdu: str) -> str:
        return (reader.transmit(h(apdu)) if raw else transmit_all(reader, h(apdu))).hex().upper()

    return [authenticate_rk(send) if apdu == AUTH_RK else send(apdu) for apdu in apdus]


def store_photo(card: Card) -> None:
    card.store.write(card.store["ssse.ef08"], "data", PHOTO)
    card.store.commit()


# -- parameters ---------------------------------------------------------------------------------------


def test_wwt_and_wait():
    assert wwt_etu() == WWT == 9600
    assert wwt_etu(di=4) == 38400  # after a PPS to TA1 13 (the t1 profile)
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
    assert link.send("00B2012C") == EF05_01 + "9000"  # EF05 items are free to read
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
    # the financial application answers Le = 00 with what the record has (32 bytes): T=0 cannot send
    # fewer than P3, so the card end answers 6C20 and keeps the answer for the re-issued header
    seen = []
    link = Link(delay_etu=lambda apdu: seen.append(apdu.hex().upper()) or 0)
    link.send(SELECT_FIN)
    seen.clear()
    assert link.send("00B2010C00") == FIN_RECORD_1 + "9000"
    assert link.exchanges == [("00B2010C00", "6C20"), ("00B2010C20", "B2" + FIN_RECORD_1 + "9000")]
    assert seen == ["00B2010C00"]  # processed once, not again for the re-issued header
    assert in_process([SELECT_FIN, "00B2010C00"])[1] == FIN_RECORD_1 + "9000"


def test_ssse_le_00_is_answered_6cxx_by_the_card_os():
    # in the SSSE Le = 00 asks for the length (P5 §6.10.4): the 6C12 is the card OS's own answer, on
    # T=1 too, so the re-issued command is a new command, processed again
    seen = []
    link = Link(delay_etu=lambda apdu: seen.append(apdu.hex().upper()) or 0)
    link.send(SELECT_SSSE)
    seen.clear()
    assert link.send("00B2012C00") == EF05_01 + "9000"
    assert link.exchanges == [("00B2012C00", "6C12"), ("00B2012C12", "B2" + EF05_01 + "9000")]
    assert seen == ["00B2012C00", "00B2012C12"]
    assert in_process([SELECT_SSSE, "00B2012C00"], raw=True)[1] == "6C12"


def test_get_response_le_00_keeps_the_answer_it_consumed(link):
    # GET RESPONSE consumes the pending data: the 6C1E answer must be served without re-processing
    assert link.send(SELECT_SSSE + "00") == FCI_SSSE + "9000"
    link.card_end.receive(h(SELECT_SSSE[:10]))
    assert link.card_end.output() == h("A4")
    link.card_end.receive(h(DDF_NAME))
    assert link.card_end.output() == h("611E")
    assert link.send("00C0000000") == FCI_SSSE + "9000"
    assert link.exchanges == [("00C0000000", "6C1E"), ("00C000001E", "C0" + FCI_SSSE + "9000")]
    assert link.send("00C0000000") == "6F00"  # nothing waiting any more (P5 §6.6.4)


def test_another_header_drops_a_held_answer(link):
    link.send(SELECT_FIN)
    card_end = link.card_end
    card_end.receive(h("00B2010C00"))
    assert card_end.output() == h("6C20")  # held by the card end
    card_end.receive(h("00B2020C00"))  # another record, not the re-issue
    assert card_end.output()[:1] == b"\x6C"
    seen = []
    card_end.delay_etu = lambda apdu: seen.append(apdu.hex().upper()) or 0
    assert link.send("00B2010C20") == FIN_RECORD_1 + "9000"
    assert seen == ["00B2010C20"]  # the first answer was dropped: processed afresh


def test_sw_only_answer_6982(link):
    link.send(SELECT_SSSE)
    assert link.send(VERIFY) == "9000"
    assert link.send("00B0880000") == "6982"  # the photo needs RKSSSE, the PIN is not enough
    assert link.exchanges == [("00B0880000", "6982")]


def test_read_binary_past_the_end_is_the_cards_6cxx():
    card = new_card()
    store_photo(card)
    link = Link(card)
    link.send(SELECT_SSSE)
    assert authenticate_rk(link.send) == "9000"
    assert link.send("00A4020002EF08") == "9000"
    end = EF08.size - 8  # 8 bytes before the end of the photo's declared size
    apdu = f"00B0{end:04X}10"
    assert link.send(apdu) == "00" * 8 + "9000"  # P5 table 30: 6C08, re-issued with Le 08
    assert link.exchanges == [(apdu, "6C08"), (apdu[:-2] + "08", "B0" + "00" * 8 + "9000")]
    assert in_process([SELECT_SSSE, AUTH_RK, "00A4020002EF08", apdu], photo=True, raw=True)[3] == "6C08"


def test_a_held_answer_keeps_its_sw():
    # an answer with fewer bytes than P3 and a warning (7816-4 6282: end of file before Le bytes) is
    # held as it is: the re-issued header gets the same data and the same SW, the OS asked once
    card = new_card()
    asked = []

    def card_os(apdu):
        asked.append(apdu.hex().upper())
        return bytes(range(8)) + b"\x62\x82"

    card.transmit = card_os
    link = Link(card)
    assert link.send("00B0000010") == "0001020304050607" "6282"
    assert link.exchanges == [("00B0000010", "6C08"), ("00B0000008", "B0" "0001020304050607" "6282")]
    assert asked == ["00B0000010"]


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
        (SELECT_SSSE, "A4611E"),  # sent as case 3: no Le byte on the wire
        ("00C000001E", "C0" + FCI_SSSE + "9000"),
    ]
    assert in_process([SELECT_SSSE + "00"]) == [response] == in_process([SELECT_SSSE + "00"], "T=1")


def test_case_4_answered_9000_alone_is_the_sw(link):
    # SELECT with P2 0C: no FCI, so no 61xx and no GET RESPONSE
    assert link.send("00A4040C0F" + DDF_NAME + "00") == "9000"
    assert link.exchanges == [("00A4040C0F" + DDF_NAME, "A49000")]


def test_case_4_select_ef_by_fid_answers_9000_without_data(link):
    # SELECT of an EF by FID answers 9000 alone in the SSSE: no 61xx, so no GET RESPONSE
    link.send(SELECT_SSSE)
    assert link.send("00A4020002EF0800") == "9000" == in_process([SELECT_SSSE, "00A4020002EF0800"])[1]
    assert link.exchanges == [("00A4020002EF08", "A49000")]
    assert link.send("00B2012C12") == EF05_01 + "9000"  # EF05 selected: the SFI still names it


# -- ~INS: one byte at a time ---------------------------------------------------------------------


def test_one_byte_at_a_time_incoming():
    link = Link(one_byte=True)
    link.send(SELECT_SSSE)
    assert link.send(VERIFY) == "9000"
    assert link.exchanges == [(VERIFY, "DF" "DF" "DF" "9000")]  # ~20 before each of 12 34 56


def test_one_byte_at_a_time_outgoing():
    link = Link(one_byte=True)
    assert link.send(SELECT_SSSE) == FCI_SSSE + "9000"
    assert link.exchanges[0] == (SELECT_SSSE, "5B" * 15 + "611E")
    fci = h(FCI_SSSE)
    assert link.exchanges[1] == ("00C000001E", "".join(f"3F{b:02X}" for b in fci) + "9000")
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
    assert pieces == [bytes((b,)) for b in h(DDF_NAME)]
    reader_end.receive(card_end.output())
    assert reader_end.exchanges[0] == (h(SELECT_SSSE), h("5B" * 15 + "611E"))


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
    apdu = "00A40400" "00000F" + DDF_NAME + "0000"
    assert link.send(apdu) == FCI_SSSE + "9000"
    assert link.exchanges == [
        ("00C2000018" + apdu, "C2611E"),
        ("00C000001E", "C0" + FCI_SSSE + "9000"),
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
    assert authenticate_rk(link.send) == "9000"
    apdu = "00B08800" "00012C"  # case 2E, Le = 300
    response = link.send(apdu)
    assert response == PHOTO.hex().upper() + "9000"
    assert link.exchanges == [
        ("00C2000007" + apdu, "C29000"),
        ("00C2000000", "6100"),  # 300 bytes: 61 00 (256 or more)
        ("00C0000000", "C0" + PHOTO[:256].hex().upper() + "612C"),
        ("00C000002C", "C0" + PHOTO[256:].hex().upper() + "9000"),
    ]
    expected = in_process([SELECT_SSSE, AUTH_RK, apdu], "T=1", photo=True)[2]
    assert response == expected == in_process([SELECT_SSSE, AUTH_RK, apdu], photo=True)[2]


def test_envelope_extended_le_0000_reads_everything():
    card = new_card()
    store_photo(card)
    link = Link(card, one_byte=True)
    link.send(SELECT_SSSE)
    assert authenticate_rk(link.send) == "9000"
    # the whole file: the photo written, then 00 to its declared size
    whole = PHOTO.ljust(EF08.size, b"\x00").hex().upper() + "9000"
    assert link.send("00B08800000000") == whole
    assert whole == in_process([SELECT_SSSE, AUTH_RK, "00B08800000000"], "T=1", photo=True)[2]


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


def _rk_authentication() -> str:
    """EXTERNAL AUTHENTICATE with RKSSSE for the challenge 00 01 .. 07 (the session cards' `random`)."""
    ks = oracle.process_key("sm4", card_key("sm4", "ssse_rk"), bytes(range(8)))
    original = bytes(range(1, 9))
    return f"008200{KEY_ID['ssse_rk']:02X}10" + (oracle.auth_data("sm4", ks, original) + original).hex().upper()


SESSION = [
    SELECT_MF, SELECT_SSSE, "00B2012C00", "00B2012C05", "00B2022C00", "00B0880000", "00B2013400",
    "0020000003111111", VERIFY, "00B2082C00", "00B20844", "00A4020002EF05", "00A4020002EF0500", "00B2010400",
    "00B2070400", "00C0000000", "00CA9F7F00", "80CA9F7900",
    "0084000008", _rk_authentication(), "00B2013400", "00B2013412", "00B0880010", "00B0880000",  # EF06, EF08
    "00A4040C0F" + DDF_NAME, "006D0000", "00B2012C000012", "00A40400000008A000000333010101" + "0000",
]


def test_the_session_reads_ef06_and_the_photo_after_rk():
    answers = in_process(SESSION, random=lambda n: bytes(range(n)))
    assert answers[6] == "6982" and answers[5] == "6982"  # EF06 and EF08 need RKSSSE on a 3.00 card
    assert answers[19] == "9000"  # the oracle's cryptogram is the card's
    assert answers[20] == answers[21] == EF06[0][1] + "9000"  # item 08, the social security number
    assert answers[22] == "00" * 16 + "9000"


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


# -- a command the card OS does not take: answered right after the header ---------------------------------


@pytest.mark.parametrize("apdu, sw", [
    ("08E0018108", "6E00"),  # case 2, a class the card does not speak: no ACK, no wait for data
    ("0012000008", "6D00"),  # case 2, an INS no applet has
    ("8012000002AABB", "6D00"),  # case 3: the data are never sent
    ("0CC2000004AABBCCDD", "6E00"),  # ENVELOPE is CLA 00 only
    ("0C612D0D00", "6E00"),  # INS 6X is invalid on T=0, but the class is checked first (as in-process)
    ("08E0018100", "6E00"),
])
def test_an_unsupported_command_is_answered_after_its_header(link, apdu, sw):
    assert link.send(apdu) == sw == in_process([apdu])[0] == in_process([apdu], "T=1")[0]
    assert link.exchanges == [(apdu[:10], sw)]  # the header, then only the SW: no ACK, no timeout


def test_an_unknown_ins_inside_an_application_is_answered_after_its_header(link):
    assert link.send(SELECT_SSSE)[-4:] == "9000"
    assert link.send("0012000008") == "6D00"
    assert link.exchanges == [("0012000008", "6D00")]
    assert link.send("00B2012C00")[-4:] == "9000"  # the application is still selected


def test_knows_asks_without_side_effects():
    card = new_card()
    assert card.transmit(h(SELECT_SSSE)) == h("61" + FCI_LENGTH)  # T=0: the FCI waits for GET RESPONSE
    assert [card.knows(cla, ins) for cla, ins in ((0x00, 0xA4), (0x00, 0xC0), (0x00, 0xB2), (0x00, 0x20))] \
        == [0, 0, 0, 0]
    assert (card.knows(0x08, 0xE0), card.knows(0x00, 0x12), card.knows(0x80, 0x12)) == (0x6E00, 0x6D00, 0x6D00)
    assert card.transmit(h("00C00000" + FCI_LENGTH)) == h(FCI_SSSE + "9000")  # nothing was dropped


def test_an_injected_fault_still_fires_on_an_unsupported_header(link):
    from chip.faults import FaultPlan

    link.card.faults = FaultPlan(["sw 6581 ins 12 once"])
    assert link.send("0012000008") == "6581"
    assert link.send("0012000008") == "6D00"


@pytest.mark.parametrize("apdu, sw", [
    ("08E0018105AA", "6E00"),  # Lc 5, one data byte, an unknown class: the class decides
    ("0012000005AA", "6D00"),  # an unknown INS in a known class
    ("00B2012C0000", "6700"),  # a known command: the length rules decide
])
def test_a_malformed_apdu_gets_one_sw_on_the_wire_and_in_process(link, apdu, sw):
    """On T=0 the card has only the header when it answers (7816-3 §10.3.3): class, then INS, then
    lengths. A firmware that sends a malformed APDU's header gets that SW at once; ours sends it
    by ENVELOPE; in-process decides in the same order."""
    assert link.send(apdu) == sw == in_process([apdu])[0] == in_process([apdu], "T=1")[0]
    if sw != "6700":
        card_end = CardT0(new_card())
        card_end.receive(h(apdu[:10]))  # the header alone
        assert card_end.output() == h(sw)


def test_a_blocked_card_answers_6a81_after_the_header():
    card = new_card()
    card.store.write(card.store["card"], "state", "blocked")
    card.store.commit()
    link = Link(card)
    assert link.send("0020000003123456") == "6A81"
    assert link.exchanges == [("0020000003", "6A81")]
