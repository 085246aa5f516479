"""Response delivery: T=0 (61xx / GET RESPONSE / 6Cxx) and T=1, short and extended (SPEC §2.1, card.py docstring).

The SSSE FCI is 27 = 0x1B bytes: 6F 19 (the template's own length is 0x19) plus
25 bytes of content. `61xx` and `6Cxx` count every byte the card has to send,
so they carry 1B, not 19.
"""

import pytest

from conftest import tx

SELECT_SSSE = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF"
FCI_SSSE = "6F19840F7378312E73682EC9E7BBE1B1A3D5CFA5069F0C03860104"
FCI_LEN = len(FCI_SSSE) // 2
EF05_01 = "0110" "110100" "0000000001" "D156000005" "FFFFFF"
EF05_07 = "0709" "543030303030303031"
ITEM_08 = "0812" + "110101199003071233".encode().hex().upper()


def test_fci_length_is_0x1B():
    assert FCI_LEN == 0x1B


# -- T=0 ---------------------------------------------------------------------------------------------


def test_t0_select_answers_61xx_then_get_response(t0reader):
    # SPEC §2.1: on T=0 the card answers 61xx and the reader fetches the FCI with GET RESPONSE
    assert tx(t0reader, SELECT_SSSE) == "611B"
    assert tx(t0reader, "00C000001B") == FCI_SSSE + "9000"
    assert tx(t0reader, "00C000001B") == "6985"  # delivered: nothing pending any more


def test_t0_get_response_in_pieces(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611B"
    # ISO 7816-4: fewer bytes than available -> those bytes + 61xx (xx = what is left)
    assert tx(t0reader, "00C000000A") == FCI_SSSE[:20] + "6111"
    assert tx(t0reader, "00C0000011") == FCI_SSSE[20:] + "9000"


def test_t0_get_response_three_pieces_with_le_00_last(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611B"
    assert tx(t0reader, "00C0000001") == "6F" + "611A"
    assert tx(t0reader, "00C0000001") == "19" + "6119"
    assert tx(t0reader, "00C0000000") == FCI_SSSE[4:] + "9000"


@pytest.mark.parametrize("le", [0x1C, 0x20, 0xFF])
def test_t0_get_response_le_too_long_gives_6Cxx(t0reader, le):
    assert tx(t0reader, SELECT_SSSE) == "611B"
    assert tx(t0reader, f"00C00000{le:02X}") == "6C1B"
    # the data is still there: a retry with the given Le gets it
    assert tx(t0reader, "00C000001B") == FCI_SSSE + "9000"


def test_t0_get_response_le_too_long_on_remainder(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611B"
    assert tx(t0reader, "00C000000A") == FCI_SSSE[:20] + "6111"
    assert tx(t0reader, "00C0000012") == "6C11"
    assert tx(t0reader, "00C0000011") == FCI_SSSE[20:] + "9000"


def test_t0_get_response_le_00_gives_everything(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611B"
    assert tx(t0reader, "00C0000000") == FCI_SSSE + "9000"


def test_get_response_with_nothing_pending(t0reader):
    assert tx(t0reader, "00C0000000") == "6985"
    assert tx(t0reader, "00C000001B") == "6985"


@pytest.mark.parametrize("other, response", [
    ("00B2012C00", EF05_01 + "9000"),  # a successful command
    ("00B2082C00", "6A83"),  # a failing one
    ("0020000003111111", "63C5"),
    ("80C000001B", "6D00"),  # GET RESPONSE in another class is another command
    ("00FF000000", "6D00"),
])
def test_t0_any_other_command_discards_pending_data(t0reader, other, response):
    assert tx(t0reader, SELECT_SSSE) == "611B"
    assert tx(t0reader, other) == response
    assert tx(t0reader, "00C000001B") == "6985"


@pytest.mark.parametrize("other", ["00B2012C0000", "00B2", "00A4020002EF"])
def test_t0_malformed_command_discards_pending_data(t0reader, other):
    assert tx(t0reader, SELECT_SSSE) == "611B"
    assert tx(t0reader, other) == "6700"
    assert tx(t0reader, "00C000001B") == "6985"


def test_t0_get_response_wrong_p1p2_or_data(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611B"
    assert tx(t0reader, "00C001001B") == "6A86"
    assert tx(t0reader, "00C000011B") == "6A86"
    assert tx(t0reader, "00C00000010000") == "6700"  # GET RESPONSE carries no data


def test_t0_select_p2_0c_has_nothing_to_fetch(t0reader):
    assert tx(t0reader, "00A4040C0F7378312E73682EC9E7BBE1B1A3D5CF") == "9000"
    assert tx(t0reader, "00C0000000") == "6985"


def test_t0_select_ef_by_fid(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611B"
    assert tx(t0reader, "00A4020002EF05") == "610D"
    assert tx(t0reader, "00C000000D") == "620B820205218302EF05880128" "9000"  # 05 21: linear variable, TLV records


def test_t0_select_with_le_still_61xx(t0reader):
    # on T=0 a case 4 command cannot return data in the same exchange (ISO 7816-3 T=0)
    assert tx(t0reader, SELECT_SSSE + "00") == "611B"
    assert tx(t0reader, "00C000001B") == FCI_SSSE + "9000"


def test_t0_read_record_case_2_returns_data_directly(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611B"
    assert tx(t0reader, "00C000001B") == FCI_SSSE + "9000"
    assert tx(t0reader, "00B2012C00") == EF05_01 + "9000"
    assert tx(t0reader, "00B2012C12") == EF05_01 + "9000"
    assert tx(t0reader, "00B2072C00") == EF05_07 + "9000"
    assert tx(t0reader, "00C0000000") == "6985"  # nothing was left behind


def test_t0_read_record_short_le_gives_6Cxx(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611B"
    assert tx(t0reader, "00B2012C10") == "6C12"
    assert tx(t0reader, "00B2012C12") == EF05_01 + "9000"


def test_t0_full_reader_flow(t0reader):
    # the sequence a T=0 reader sends for the holder's ID number
    assert tx(t0reader, SELECT_SSSE) == "611B"
    assert tx(t0reader, "00C000001B") == FCI_SSSE + "9000"
    assert tx(t0reader, "0020000003123456") == "9000"  # case 3, no data back
    assert tx(t0reader, "00B2083014") == ITEM_08 + "9000"


def test_t0_case_1_answers_61xx(t0reader):
    # docs/decisions.md: a case 1 command (no Lc, no Le) is treated like a missing Le; on T=0 through 61xx
    assert tx(t0reader, "00A40000") == "6106"
    assert tx(t0reader, "00C0000006") == "6F0483023F00" "9000"
    assert tx(t0reader, SELECT_SSSE) == "611B"
    assert tx(t0reader, "00C000001B") == FCI_SSSE + "9000"
    assert tx(t0reader, "00B2012C") == "6112"
    assert tx(t0reader, "00C0000012") == EF05_01 + "9000"
    assert tx(t0reader, "00C0000000") == "6985"


# -- T=1 ---------------------------------------------------------------------------------------------


def test_t1_case_1_returns_data_directly(reader):
    # docs/decisions.md: a case 1 command is treated like a missing Le: up to 256 bytes come back
    assert tx(reader, "00A40000") == "6F0483023F00" "9000"  # the MF's FCI
    assert tx(reader, SELECT_SSSE) == FCI_SSSE + "9000"
    assert tx(reader, "00B2012C") == EF05_01 + "9000"
    assert tx(reader, "00B2072C") == EF05_07 + "9000"
    assert tx(reader, "00C0000000") == "6985"  # nothing was left behind


def test_t1_select_case_3_and_case_4(reader):
    # SPEC §2.1: on T=1 the FCI comes with 9000 in the same response
    assert tx(reader, SELECT_SSSE) == FCI_SSSE + "9000"
    assert tx(reader, SELECT_SSSE + "00") == FCI_SSSE + "9000"
    assert tx(reader, SELECT_SSSE + "1B") == FCI_SSSE + "9000"


def test_t1_case4_short_le_gives_the_first_bytes_and_61xx(reader):
    # a command with data has run (it may have changed state): its answer is kept, not thrown
    # away with 6Cxx; the first Le bytes come at once and the rest by GET RESPONSE (ISO 7816-4)
    assert tx(reader, SELECT_SSSE + "10") == FCI_SSSE[:32] + "610B"
    assert tx(reader, "00C000000B") == FCI_SSSE[32:] + "9000"
    assert tx(reader, SELECT_SSSE + "1B") == FCI_SSSE + "9000"


def test_t1_case2_short_le_gives_6Cxx(reader):
    tx(reader, SELECT_SSSE)
    assert tx(reader, "00B2012C10") == "6C12"


def test_t1_nothing_to_get(reader):
    assert tx(reader, SELECT_SSSE) == FCI_SSSE + "9000"
    assert tx(reader, "00C0000000") == "6985"


def test_protocol_can_change_at_reset(card):
    from reader import SimReader

    r = SimReader(card, protocol="T=0")
    r.reset()
    assert tx(r, SELECT_SSSE) == "611B"
    card.reset(protocol=1)
    assert tx(r, SELECT_SSSE) == FCI_SSSE + "9000"
    card.reset()  # a warm reset keeps the protocol
    assert tx(r, SELECT_SSSE) == FCI_SSSE + "9000"


def test_reset_drops_pending_data(t0reader):
    # SPEC §1: reset clears the GET RESPONSE buffer
    assert tx(t0reader, SELECT_SSSE) == "611B"
    t0reader.reset()
    assert tx(t0reader, "00C000001B") == "6985"


def test_simreader_rejects_unknown_protocol(card):
    from reader import SimReader

    with pytest.raises(ValueError):
        SimReader(card, protocol="T=2")


def test_transmit_before_reset_raises(card):
    from chip import CardNotPowered
    from reader import SimReader

    with pytest.raises(CardNotPowered):
        SimReader(card).transmit(bytes.fromhex(SELECT_SSSE))


# -- extended length ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["reader", "t0reader"])
def test_extended_read_record(request, fixture):
    r = request.getfixturevalue(fixture)
    tx(r, "00A4040C0F7378312E73682EC9E7BBE1B1A3D5CF")
    assert tx(r, "00B2012C000000") == EF05_01 + "9000"  # Le 0000 = up to 65536
    assert tx(r, "00B2012C000100") == EF05_01 + "9000"
    assert tx(r, "00B2012C000012") == EF05_01 + "9000"
    assert tx(r, "00B2012C000010") == "6C12"


def test_extended_select_t1(reader):
    assert tx(reader, "00A4040000000F7378312E73682EC9E7BBE1B1A3D5CF") == FCI_SSSE + "9000"
    assert tx(reader, "00A4040000000F7378312E73682EC9E7BBE1B1A3D5CF0000") == FCI_SSSE + "9000"


def test_extended_select_t0_and_extended_get_response(t0reader):
    assert tx(t0reader, "00A4040000000F7378312E73682EC9E7BBE1B1A3D5CF0000") == "611B"
    assert tx(t0reader, "00C00000000000") == FCI_SSSE + "9000"  # extended Le 0000: all
    assert tx(t0reader, "00A4040000000F7378312E73682EC9E7BBE1B1A3D5CF") == "611B"
    assert tx(t0reader, "00C0000000000A") == FCI_SSSE[:20] + "6111"
    assert tx(t0reader, "00C0000000001B") == "6C11"
    assert tx(t0reader, "00C0000000") == FCI_SSSE[20:] + "9000"


def test_extended_verify(reader):
    tx(reader, "00A4040C0F7378312E73682EC9E7BBE1B1A3D5CF")
    assert tx(reader, "00200000000003123456") == "9000"
    assert tx(reader, "00B20830000000") == ITEM_08 + "9000"
