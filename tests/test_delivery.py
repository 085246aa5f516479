"""Response delivery: T=0 (61xx / GET RESPONSE / 6Cxx) and T=1, short and extended (P2 §9.3;
docs/decisions.md §3; chip/card.py docstring).

The SSSE FCI is 30 = 0x1E bytes: 6F 1C (the template's own length is 0x1C) plus
28 bytes of content (P5 table 36, as the real cards answer it). `61xx` and `6Cxx`
count every byte the card has to send, so they carry 1E, not 1C.
"""

import pytest
from helpers import CARD_DATE, DDF_NAME, EF05, FCI, SELECT_SSSE, tx

from chip import Card
from chip.contacts.atr import parse_atr
from reader import SimReader

FCI_SSSE = FCI["sm4"]
FCI_LEN = len(FCI_SSSE) // 2
EF05_01 = EF05[0x01]  # V2 table 10
EF05_07 = EF05[0x07]


def test_fci_length_is_0x1E():
    assert FCI_LEN == 0x1E


# -- the reader's protocol ------------------------------------------------------------------------


def test_simreader_uses_the_cards_protocol_t0_on_the_default_card(card):
    assert parse_atr(card.atr).protocols == (0,)
    r = SimReader(card)
    assert r.protocol == 0 and r.get_response
    r.reset()
    assert card.protocol == 0
    # P2 §9.3: 61xx never reaches the application - the reader fetches the data with GET RESPONSE
    log = []
    raw = r.card.transmit
    r.card.transmit = lambda apdu: log.append(apdu.hex().upper()) or raw(apdu)
    assert tx(r, SELECT_SSSE) == FCI_SSSE + "9000"
    assert log == [SELECT_SSSE, "00C000001E"]
    assert tx(r, "00B2012C10") == "6C12"  # the card's answer to a short Le, as on T=1: not re-issued
    assert log[2:] == ["00B2012C10"]
    assert tx(r, "00A40000") == "6F0483023F00" "9000"  # case 1 with data: 6106, then GET RESPONSE
    assert log[3:] == ["00A40000", "00C0000006"]


def test_simreader_t1_when_asked(card):
    r = SimReader(card, protocol="T=1")
    r.reset()
    assert r.protocol == card.protocol == 1
    assert tx(r, SELECT_SSSE) == FCI_SSSE + "9000"
    assert tx(r, "00B2012C10") == "6C12"  # T=1: the card's answer as it is


def test_simreader_t0_gives_what_t1_gives():
    session = [SELECT_SSSE, "00B2012C00", "00B2012C10", "00B2012C12", "00A40000", "0020000003111111",
               "00A4020002EF05", "00C0000000", "00B2012C", SELECT_SSSE + "00", "00A4040000000F" + DDF_NAME]
    answers = {}
    for protocol in ("T=0", "T=1"):
        r = SimReader(Card.from_profile(date=CARD_DATE), protocol=protocol)
        r.reset()
        answers[protocol] = [tx(r, apdu) for apdu in session]
    assert answers["T=0"] == answers["T=1"]


def test_simreader_raw_t0(card):
    r = SimReader(card, get_response=False)
    r.reset()
    assert tx(r, SELECT_SSSE) == "611E"
    assert tx(r, "00C000001E") == FCI_SSSE + "9000"


def test_simreader_on_the_t1_profile_starts_with_t0_the_first_offered():
    card = Card.from_profile("t1", date=CARD_DATE)
    assert parse_atr(card.atr).protocols == (0, 1)
    r = SimReader(card)
    r.reset()
    assert r.protocol == card.protocol == 0
    assert tx(r, SELECT_SSSE) == FCI_SSSE + "9000"
    r = SimReader(card, protocol=1)
    r.reset()
    assert card.protocol == 1 and tx(r, SELECT_SSSE) == FCI_SSSE + "9000"


# -- T=0 ---------------------------------------------------------------------------------------------


def test_t0_select_answers_61xx_then_get_response(t0reader):
    # P2 §9.3: on T=0 the card answers 61xx and the reader fetches the FCI with GET RESPONSE
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, "00C000001E") == FCI_SSSE + "9000"
    assert tx(t0reader, "00C000001E") == "6F00"  # delivered: nothing pending any more (P5 §6.6.4)


def test_t0_get_response_in_pieces(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611E"
    # ISO 7816-4: fewer bytes than available -> those bytes + 61xx (xx = what is left)
    assert tx(t0reader, "00C000000A") == FCI_SSSE[:20] + "6114"
    assert tx(t0reader, "00C0000014") == FCI_SSSE[20:] + "9000"


def test_t0_get_response_three_pieces_with_le_00_last(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, "00C0000001") == "6F" + "611D"
    assert tx(t0reader, "00C0000001") == "1C" + "611C"
    assert tx(t0reader, "00C0000000") == "6C1C"  # Le 00 with data waiting: its length (P5 §6.6.4)
    assert tx(t0reader, "00C000001C") == FCI_SSSE[4:] + "9000"


@pytest.mark.parametrize("le", [0x1F, 0x20, 0xFF])
def test_t0_get_response_le_too_long_gives_6Cxx(t0reader, le):
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, f"00C00000{le:02X}") == "6C1E"
    # the data is still there: a retry with the given Le gets it
    assert tx(t0reader, "00C000001E") == FCI_SSSE + "9000"


def test_t0_get_response_le_too_long_on_remainder(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, "00C000000A") == FCI_SSSE[:20] + "6114"
    assert tx(t0reader, "00C0000015") == "6C14"
    assert tx(t0reader, "00C0000014") == FCI_SSSE[20:] + "9000"


def test_t0_get_response_le_00_names_the_length(t0reader):
    # P5 §6.6.4: to GET RESPONSE with Le 00 the SSSE answers 6Cxx when data is waiting
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, "00C0000000") == "6C1E"
    assert tx(t0reader, "00C000001E") == FCI_SSSE + "9000"


def test_get_response_with_nothing_pending(t0reader):
    # P5 §6.6.4 (docs/decisions.md §3): 6F00
    assert tx(t0reader, "00C0000000") == "6F00"
    assert tx(t0reader, "00C000001E") == "6F00"


@pytest.mark.parametrize("other, response", [
    ("00B2012C12", EF05_01 + "9000"),  # a successful command
    ("00B2082C00", "6A83"),  # a failing one
    ("0020000003111111", "63C5"),
    ("80C000001B", "6D00"),  # GET RESPONSE in another class is another command
    ("00FF000000", "6D00"),
])
def test_t0_any_other_command_discards_pending_data(t0reader, other, response):
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, other) == response
    assert tx(t0reader, "00C000001E") == "6F00"


@pytest.mark.parametrize("other", ["00B2012C0000", "00B2", "00A4020002EF"])
def test_t0_malformed_command_discards_pending_data(t0reader, other):
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, other) == "6700"
    assert tx(t0reader, "00C000001E") == "6F00"


def test_t0_get_response_wrong_p1p2_or_data(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, "00C001001B") == "6A86"
    assert tx(t0reader, "00C000011B") == "6A86"
    assert tx(t0reader, "00C00000010000") == "6700"  # GET RESPONSE carries no data


def test_t0_select_p2_0c_has_nothing_to_fetch(t0reader):
    assert tx(t0reader, "00A4040C0F" + DDF_NAME) == "9000"
    assert tx(t0reader, "00C0000000") == "6F00"


def test_t0_select_ef_by_fid(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611E"
    # P5 §6.11.1: an EF has no FCI: the status word only, no 61xx (as the real trace T1 answers)
    assert tx(t0reader, "00A4020002EF05") == "9000"
    assert tx(t0reader, "00C0000000") == "6F00"


def test_t0_select_with_le_still_61xx(t0reader):
    # on T=0 a case 4 command cannot return data in the same exchange (ISO 7816-3 T=0)
    assert tx(t0reader, SELECT_SSSE + "00") == "611E"
    assert tx(t0reader, "00C000001E") == FCI_SSSE + "9000"


def test_t0_read_record_case_2_returns_data_directly(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, "00C000001E") == FCI_SSSE + "9000"
    assert tx(t0reader, "00B2012C00") == "6C12"  # Le 00: the length (P5 §6.10.4, docs/decisions.md S12)
    assert tx(t0reader, "00B2012C12") == EF05_01 + "9000"
    assert tx(t0reader, "00B2072C0B") == EF05_07 + "9000"
    assert tx(t0reader, "00C0000000") == "6F00"  # nothing was left behind


def test_t0_read_record_short_le_gives_6Cxx(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, "00B2012C10") == "6C12"
    assert tx(t0reader, "00B2012C12") == EF05_01 + "9000"


def test_t0_full_reader_flow(t0reader):
    # the sequence a T=0 reader sends for the holder's ID number
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, "00C000001E") == FCI_SSSE + "9000"
    assert tx(t0reader, "0020000003123456") == "9000"  # case 3, no data back
    assert tx(t0reader, "00B2072C0B") == EF05_07 + "9000"  # EF06 needs RKSSSE on 3.00 (SR §10.2)


def test_t0_case_1_answers_61xx(t0reader):
    # docs/decisions.md: a case 1 command (no Lc, no Le) is treated like a missing Le; on T=0 through 61xx
    assert tx(t0reader, "00A40000") == "6106"
    assert tx(t0reader, "00C0000006") == "6F0483023F00" "9000"
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, "00C000001E") == FCI_SSSE + "9000"
    assert tx(t0reader, "00B2012C") == "6112"
    assert tx(t0reader, "00C0000012") == EF05_01 + "9000"
    assert tx(t0reader, "00C0000000") == "6F00"


# -- T=1 ---------------------------------------------------------------------------------------------


def test_t1_case_1_returns_data_directly(reader):
    # docs/decisions.md: a case 1 command is treated like a missing Le: up to 256 bytes come back
    assert tx(reader, "00A40000") == "6F0483023F00" "9000"  # the MF's FCI
    assert tx(reader, SELECT_SSSE) == FCI_SSSE + "9000"
    assert tx(reader, "00B2012C") == EF05_01 + "9000"
    assert tx(reader, "00B2072C") == EF05_07 + "9000"
    assert tx(reader, "00C0000000") == "6F00"  # nothing was left behind


def test_t1_select_case_3_and_case_4(reader):
    # on T=1 the FCI comes with 9000 in the same response (docs/card/commands.md §0)
    assert tx(reader, SELECT_SSSE) == FCI_SSSE + "9000"
    assert tx(reader, SELECT_SSSE + "00") == FCI_SSSE + "9000"
    assert tx(reader, SELECT_SSSE + "1E") == FCI_SSSE + "9000"


def test_t1_case4_short_le_gives_the_first_bytes_and_61xx(reader):
    # a command with data has run (it may have changed state): its answer is kept, not thrown
    # away with 6Cxx; the first Le bytes come at once and the rest by GET RESPONSE (ISO 7816-4)
    assert tx(reader, SELECT_SSSE + "10") == FCI_SSSE[:32] + "610E"
    assert tx(reader, "00C000000E") == FCI_SSSE[32:] + "9000"
    assert tx(reader, SELECT_SSSE + "1E") == FCI_SSSE + "9000"


def test_t1_case2_short_le_gives_6Cxx(reader):
    tx(reader, SELECT_SSSE)
    assert tx(reader, "00B2012C10") == "6C12"


def test_t1_nothing_to_get(reader):
    assert tx(reader, SELECT_SSSE) == FCI_SSSE + "9000"
    assert tx(reader, "00C0000000") == "6F00"


def test_protocol_can_change_at_reset(card):
    r = SimReader(card, protocol="T=0", get_response=False)
    r.reset()
    assert tx(r, SELECT_SSSE) == "611E"
    card.reset(protocol=1)
    assert tx(r, SELECT_SSSE) == FCI_SSSE + "9000"
    card.reset()  # a warm reset keeps the protocol
    assert tx(r, SELECT_SSSE) == FCI_SSSE + "9000"


def test_reset_drops_pending_data(t0reader):
    # a reset clears the waiting data with the rest of the volatile state (docs/card/commands.md §0)
    assert tx(t0reader, SELECT_SSSE) == "611E"
    t0reader.reset()
    assert tx(t0reader, "00C000001E") == "6F00"


def test_simreader_rejects_unknown_protocol(card):
    with pytest.raises(ValueError):
        SimReader(card, protocol="T=2")


def test_transmit_before_reset_raises(card):
    from chip import CardNotPowered

    with pytest.raises(CardNotPowered):
        SimReader(card).transmit(bytes.fromhex(SELECT_SSSE))


# -- extended length ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["reader", "t0reader"])
def test_extended_read_record(request, fixture):
    r = request.getfixturevalue(fixture)
    tx(r, "00A4040C0F" + DDF_NAME)
    assert tx(r, "00B2012C000000") == EF05_01 + "9000"  # Le 0000 = up to 65536
    assert tx(r, "00B2012C000100") == EF05_01 + "9000"
    assert tx(r, "00B2012C000012") == EF05_01 + "9000"
    assert tx(r, "00B2012C000010") == "6C12"


def test_extended_select_t1(reader):
    assert tx(reader, "00A4040000000F" + DDF_NAME) == FCI_SSSE + "9000"
    assert tx(reader, "00A4040000000F" + DDF_NAME + "0000") == FCI_SSSE + "9000"


def test_extended_select_t0_and_extended_get_response(t0reader):
    assert tx(t0reader, "00A4040000000F" + DDF_NAME + "0000") == "611E"
    assert tx(t0reader, "00C00000000000") == FCI_SSSE + "9000"  # extended Le 0000: all
    assert tx(t0reader, "00A4040000000F" + DDF_NAME) == "611E"
    assert tx(t0reader, "00C0000000000A") == FCI_SSSE[:20] + "6114"
    assert tx(t0reader, "00C0000000001E") == "6C14"
    assert tx(t0reader, "00C0000000") == "6C14"
    assert tx(t0reader, "00C0000014") == FCI_SSSE[20:] + "9000"


def test_extended_verify(reader):
    tx(reader, "00A4040C0F" + DDF_NAME)
    assert tx(reader, "00200000000003123456") == "9000"
    assert tx(reader, "00B2072C000000") == EF05_07 + "9000"
