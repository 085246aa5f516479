"""SSSE selection and files (SPEC §2.1, §2.2): SELECT, FCI/FCP, READ RECORD and its access rules.

Record bytes are those of the shipped default profile (chip/profiles/default.toml)
personalised on 2026-11-21 (the conftest card date).
"""

import datetime

import pytest

from chip import Card
from chip.profile import SHIPPED
from reader import SimReader
from conftest import CARD_DATE, tx

SELECT_SSSE = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF"
DDF_NAME = "7378312E73682EC9E7BBE1B1A3D5CF"
# 6F FCI: 84 DF name, A5 proprietary { 9F0C 03 86 01 04 } (SPEC §2.1; default profile SM4 = 04)
FCI_SSSE = "6F19840F" + DDF_NAME + "A5069F0C03860104"
# 62 FCP of the DDF: 82 01 38 (DF), 83 02 DDF1 (FID), 84 DF name
FCP_SSSE = "6218820138" "8302DDF1" "840F" + DDF_NAME
VERIFY_OK = "0020000003123456"

EF05 = {
    0x01: "0110" "110100" "0000000001" "D156000005" "FFFFFF",  # region code || serial || RID || F-pad
    0x02: "0201" "33",  # '3'
    0x03: "0304" "332E3030",  # "3.00"
    0x04: "040C" "110100000000000000000001",  # initialising institution, 12 bytes binary
    0x05: "0504" "20261121",  # issue date = personalisation date, BCD
    0x06: "0604" "20361121",  # expiry = issue + validity_years (10)
    0x07: "0709" "543030303030303031",  # "T00000001"
}
# EF06: records 1-7 in this order, identifiers = item tags (SPEC §2.1)
EF06 = [
    (0x08, "0812" + "110101199003071233".encode("ascii").hex().upper()),
    (0x09, "091E" + "C0EEBBAA" + "00" * 26),  # 李华 in GBK, 00-padded to 30 bytes
    (0x4E, "4E14" + "00" * 20),  # name extension, empty
    (0x0A, "0A01" "31"),  # '1' male
    (0x0B, "0B01" "01"),  # Han
    (0x0C, "0C03" "110101"),  # birthplace BCD
    (0x0D, "0D04" "19900307"),  # birth date BCD
]
FREE_EF05 = (1, 2, 3, 4, 7)
PROTECTED_EF05 = (5, 6)


@pytest.fixture
def ssse(reader):
    """The reader with the SSSE selected."""
    assert tx(reader, SELECT_SSSE) == FCI_SSSE + "9000"
    return reader


@pytest.fixture
def verified(ssse):
    assert tx(ssse, VERIFY_OK) == "9000"
    return ssse


# -- SELECT -------------------------------------------------------------------------------


def test_select_by_name_gives_exact_fci(reader):
    assert tx(reader, SELECT_SSSE) == FCI_SSSE + "9000"


def test_select_by_name_p2_0c_gives_no_data(reader):
    assert tx(reader, "00A4040C0F" + DDF_NAME) == "9000"
    # ...and the application is selected: its records can be read
    assert tx(reader, "00B2012C00") == EF05[1] + "9000"


def test_select_by_name_p2_04_gives_fcp(reader):
    assert tx(reader, "00A404040F" + DDF_NAME) == FCP_SSSE + "9000"


def test_select_by_truncated_name(reader):
    # ISO 7816-4 SELECT by DF name: a right-truncated DF name selects the first matching DF
    assert tx(reader, "00A4040007" + DDF_NAME[:14]) == FCI_SSSE + "9000"


def test_select_by_name_next_occurrence_when_only_one(reader):
    tx(reader, SELECT_SSSE)
    # P2 = 02 (next occurrence): the SSSE is the only match and is already current
    assert tx(reader, "00A404020F" + DDF_NAME) == "6A82"


def test_select_unknown_name(reader):
    assert tx(reader, "00A404000F" + DDF_NAME[:-2] + "CE") == "6A82"
    assert tx(reader, "00A4040005A000000334") == "6A82"  # no application under this RID


def test_fci_algorithm_flag_follows_profile(tmp_path):
    # SPEC §2.1: 9F0C 03 86 01 <alg>, 01 = 3DES (profile `ssse.algorithm`)
    text = (SHIPPED / "default.toml").read_text(encoding="utf-8").replace('algorithm = "sm4"', 'algorithm = "3des"')
    assert 'algorithm = "3des"' in text
    path = tmp_path / "tdes.toml"
    path.write_text(text, encoding="utf-8")
    r = SimReader(Card.from_profile(str(path), date=CARD_DATE))
    r.reset()
    assert tx(r, SELECT_SSSE) == "6F19840F" + DDF_NAME + "A5069F0C03860101" + "9000"


def test_select_ddf_by_fid_from_mf(reader):
    assert tx(reader, "00A4000002DDF1") == FCI_SSSE + "9000"
    assert tx(reader, "00B2012C00") == EF05[1] + "9000"


@pytest.mark.parametrize("fid, sfi, descriptor", [
    ("EF05", "28", "0521"), ("EF06", "30", "0521"),  # linear variable, simple-TLV records (docs/decisions.md)
    ("EF07", "38", "0121"), ("EF08", "40", "0121"),  # transparent
])
def test_select_ef_by_fid_gives_its_fcp(ssse, fid, sfi, descriptor):
    # 62: 82 file descriptor + data coding 21, 83 FID, 88 SFI<<3 (ISO 7816-4 file control parameters)
    assert tx(ssse, "00A4020002" + fid) == f"620B8202{descriptor}8302{fid}8801{sfi}9000"


@pytest.mark.parametrize("fid", ["EF05", "EF06"])
def test_record_ef_descriptor_is_linear_variable(ssse, fid):
    # EF05/EF06 hold records of different lengths (simple-TLV): ISO 7816-4 file descriptor byte
    # b3-b1 100/101 = linear variable (101 = TLV records), not 010 = linear fixed
    response = bytes.fromhex(tx(ssse, "00A4020002" + fid))
    assert response[:4] == bytes.fromhex("620B8202")
    assert response[4] & 0x07 in (0x04, 0x05)


def test_select_ef_p2_0c(ssse):
    assert tx(ssse, "00A4020C02EF05") == "9000"
    assert tx(ssse, "00B2010400") == EF05[1] + "9000"


def test_select_ef_by_fid_p1_00(ssse):
    assert tx(ssse, "00A4000002EF05") == "620B820205218302EF058801289000"


def test_select_df04_by_fid_p1_01(ssse):
    # DF04 medical insurance, AID D156000005 04 (SPEC §2.1)
    assert tx(ssse, "00A4010002DF04") == "6F088406D156000005049000"
    assert tx(ssse, "00A4030C00") == "9000"  # back to the SSSE DDF
    # FCP: 82 01 38 (DF), 83 02 DF04, 84 06 DF name
    assert tx(ssse, "00A4010402DF04") == "620F8201388302DF048406D156000005049000"


@pytest.mark.parametrize("p1, fid", [("01", "EF05"), ("02", "DF04"), ("01", "DF09"), ("02", "EF09")])
def test_select_fid_of_wrong_kind_or_unknown(ssse, p1, fid):
    # P1=01 selects a child DF, P1=02 an EF under the current DF (ISO 7816-4 SELECT P1)
    assert tx(ssse, f"00A4{p1}0002{fid}") == "6A82"


def test_select_df_by_name_under_ssse(ssse):
    for n in range(1, 5):
        assert tx(ssse, f"00A4040006D1560000050{n}") == f"6F088406D1560000050{n}9000"


def test_select_parent_p1_03(ssse):
    assert tx(ssse, "00A4010002DF04") == "6F088406D156000005049000"
    assert tx(ssse, "00A4030000") == FCI_SSSE + "9000"  # DF04 -> the SSSE DDF
    assert tx(ssse, "00A4030000") == "6F0483023F009000"  # DDF -> MF (its FCI carries its FID)


@pytest.mark.parametrize("path, expected", [
    ("DDF1", FCI_SSSE),
    ("DDF1EF05", "620B820205218302EF05880128"),
    ("DDF1EF06", "620B820205218302EF06880130"),
    ("DDF1DF04", "6F088406D15600000504"),
    ("3F00DDF1EF05", "620B820205218302EF05880128"),  # tolerated: path written from the MF
])
def test_select_by_path_from_mf(reader, path, expected):
    assert tx(reader, f"00A40800{len(path) // 2:02X}{path}") == expected + "9000"


def test_select_by_path_then_read_in_that_ef(reader):
    assert tx(reader, "00A4080004DDF1EF05") == "620B820205218302EF058801289000"
    assert tx(reader, "00B2070400") == EF05[7] + "9000"


def test_select_by_path_from_current_df(ssse):
    assert tx(ssse, "00A4090002EF06") == "620B820205218302EF068801309000"


@pytest.mark.parametrize("apdu, sw", [
    ("00A4000002EEEE", "6A82"),
    ("00A4020002EF09", "6A82"),
    ("00A4080004DDF1EF09", "6A82"),
    ("00A4080004DF04EF05", "6A82"),
    ("00A4080003DDF1EF", "6700"),  # a path is a sequence of 2-byte FIDs
    ("00A4000001EF", "6700"),  # a FID is 2 bytes
    ("00A4000003EF0506", "6700"),
])
def test_select_errors(ssse, apdu, sw):
    assert tx(ssse, apdu) == sw


def test_failed_select_keeps_current_ef(ssse):
    # ISO 7816-4 SELECT: when selection fails the current file is unchanged
    assert tx(ssse, "00A4020002EF05") == "620B820205218302EF058801289000"
    assert tx(ssse, "00A4020002EF09") == "6A82"
    assert tx(ssse, "00B2010400") == EF05[1] + "9000"


@pytest.mark.parametrize("apdu, expected", [
    # an FCI template '6F'; the MF has no DF name, so it carries its FID: 83 02 3F00 (docs/decisions.md)
    ("00A4000000", "6F0483023F009000"),  # P1=00 without data: the MF (ISO 7816-4 SELECT P1)
    ("00A40000023F00", "6F0483023F009000"),
    ("00A4000C023F00", "9000"),
    ("00A4000C00", "9000"),
])
def test_select_mf(ssse, apdu, expected):
    assert tx(ssse, apdu) == expected
    # the MF is current: SFI 5 does not reach the SSSE's EF05 from here
    assert tx(ssse, "00B2012C00") == "6A82"


def test_select_mf_p2_04_gives_fcp(reader):
    assert tx(reader, "00A40004023F00") == "620782013883023F009000"


# -- READ RECORD: exact bytes ---------------------------------------------------------------


@pytest.mark.parametrize("number", FREE_EF05)
def test_ef05_free_records(ssse, number):
    # SPEC §2.2: EF05 01-04 and 07 readable without PIN
    assert tx(ssse, f"00B2{number:02X}2C00") == EF05[number] + "9000"


@pytest.mark.parametrize("number", PROTECTED_EF05)
def test_ef05_protected_records(ssse, number):
    assert tx(ssse, f"00B2{number:02X}2C00") == "6982"
    assert tx(ssse, VERIFY_OK) == "9000"
    assert tx(ssse, f"00B2{number:02X}2C00") == EF05[number] + "9000"


@pytest.mark.parametrize("number", range(1, 8))
def test_ef06_needs_pin(ssse, number):
    tag, record = EF06[number - 1]
    assert tx(ssse, f"00B2{number:02X}3400") == "6982"
    assert tx(ssse, f"00B2{tag:02X}3000") == "6982"
    assert tx(ssse, VERIFY_OK) == "9000"
    assert tx(ssse, f"00B2{number:02X}3400") == record + "9000"


def test_ef06_read_item_08_by_identifier(verified):
    # SPEC §2.1: real readers send 00 B2 08 30 14; Le = 0x14 = 2 + 18 is the exact length
    assert tx(verified, "00B2083014") == EF06[0][1] + "9000"
    assert tx(verified, "00B2083000") == EF06[0][1] + "9000"


def test_issue_and_expiry_dates_follow_personalisation_date():
    r = SimReader(Card.from_profile(date=datetime.date(2024, 2, 29)))
    r.reset()
    tx(r, SELECT_SSSE)
    tx(r, VERIFY_OK)
    assert tx(r, "00B2052C00") == "050420240229" "9000"
    # 29 February + 10 years does not exist: the model takes 28 February
    assert tx(r, "00B2062C00") == "060420340228" "9000"


# -- READ RECORD: the four addressing modes --------------------------------------------------


def _four_modes(reader, fid, sfi, number, tag):
    """Read one record in the four modes of SPEC §2.1 and return the four responses."""
    out = [tx(reader, f"00B2{number:02X}{sfi << 3 | 4:02X}00")]  # record number in EF SFI
    assert tx(reader, SELECT_SSSE) == FCI_SSSE + "9000"  # no current EF any more
    assert tx(reader, f"00A4020C02{fid}") == "9000"
    out.append(tx(reader, f"00B2{number:02X}0400"))  # record number in the current EF
    out.append(tx(reader, f"00B2{tag:02X}0000"))  # identifier in the current EF
    assert tx(reader, SELECT_SSSE) == FCI_SSSE + "9000"
    out.append(tx(reader, f"00B2{tag:02X}{sfi << 3:02X}00"))  # identifier in EF SFI
    return out


@pytest.mark.parametrize("number", FREE_EF05)
def test_four_modes_ef05(ssse, number):
    assert _four_modes(ssse, "EF05", 5, number, number) == [EF05[number] + "9000"] * 4


@pytest.mark.parametrize("number", range(1, 8))
def test_four_modes_ef06(ssse, number):
    # EF06 needs the PIN; re-selecting the SSSE ends the PIN session, so the EF is
    # made current with an EF-level SELECT instead, which keeps the session
    tag, record = EF06[number - 1]
    assert tx(ssse, VERIFY_OK) == "9000"
    responses = [tx(ssse, f"00B2{number:02X}3400")]  # record number in EF SFI 6
    assert tx(ssse, "00A4020C02EF06") == "9000"
    responses.append(tx(ssse, f"00B2{number:02X}0400"))  # record number in the current EF
    responses.append(tx(ssse, f"00B2{tag:02X}0000"))  # identifier in the current EF
    assert tx(ssse, "00A4020C02EF05") == "9000"  # another EF current: SFI 6 must still find EF06
    responses.append(tx(ssse, f"00B2{tag:02X}3000"))  # identifier in EF SFI 6
    assert responses == [record + "9000"] * 4


def test_sfi_addressing_makes_the_ef_current(ssse):
    # ISO 7816-4 READ RECORD with an SFI: that EF becomes the current EF
    assert tx(ssse, "00B2012C00") == EF05[1] + "9000"
    assert tx(ssse, "00B2020400") == EF05[2] + "9000"
    assert tx(ssse, "00B2030000") == EF05[3] + "9000"


# -- READ RECORD: Le handling --------------------------------------------------------------------


@pytest.mark.parametrize("number", FREE_EF05)
def test_le_exact_longer_zero(ssse, number):
    record = EF05[number]
    n = len(record) // 2  # Le counts the 2 header bytes (SPEC §2.1)
    assert tx(ssse, f"00B2{number:02X}2C{n:02X}") == record + "9000"
    assert tx(ssse, f"00B2{number:02X}2C{n + 1:02X}") == record + "9000"
    assert tx(ssse, f"00B2{number:02X}2CFF") == record + "9000"
    assert tx(ssse, f"00B2{number:02X}2C00") == record + "9000"


@pytest.mark.parametrize("number", FREE_EF05)
def test_le_short_gives_6Cxx_then_retry(ssse, number):
    record = EF05[number]
    n = len(record) // 2
    for le in (1, n - 2, n - 1):
        assert tx(ssse, f"00B2{number:02X}2C{le:02X}") == f"6C{n:02X}"
    assert tx(ssse, f"00B2{number:02X}2C{n:02X}") == record + "9000"


def test_le_short_on_long_ef06_record(verified):
    # item 09: 2 + 30 bytes
    assert tx(verified, "00B2093010") == "6C20"
    assert tx(verified, "00B2093020") == EF06[1][1] + "9000"


# -- READ RECORD: errors -------------------------------------------------------------------


@pytest.mark.parametrize("apdu", [
    "00B2082C00",  # EF05 has 7 records
    "00B2FF2C00",
    "00B2083400",  # EF06 has 7 records
    "00B2003000",  # no record with identifier 00 in EF06
    "00B20E3000",
])
def test_missing_record_6A83(verified, apdu):
    assert tx(verified, apdu) == "6A83"


@pytest.mark.parametrize("apdu", ["00B2102C00", "00B2082800", "00B2092800", "00B20E2800"])
def test_missing_record_identifier_in_ef05(ssse, apdu):
    # identifiers in EF05 are 01-07; 08/09 belong to EF06
    assert tx(ssse, apdu) == "6A83"


def test_missing_record_in_current_ef(ssse):
    assert tx(ssse, "00A4020C02EF05") == "9000"
    assert tx(ssse, "00B2080400") == "6A83"
    assert tx(ssse, "00B2080000") == "6A83"


@pytest.mark.parametrize("apdu", ["00B2010400", "00B2010000"])
def test_no_current_ef_6986(ssse, apdu):
    # just after selecting the DDF no EF is current (SPEC §4: 6986 no current EF)
    assert tx(ssse, apdu) == "6986"


@pytest.mark.parametrize("apdu", ["00B2010400", "00B2010000"])
def test_no_current_ef_at_mf(reader, apdu):
    assert tx(reader, apdu) == "6986"


@pytest.mark.parametrize("fid, sfi", [("EF07", 7), ("EF08", 8)])
def test_read_record_on_transparent_ef_6981(verified, fid, sfi):
    assert tx(verified, f"00A4020C02{fid}") == "9000"
    assert tx(verified, "00B2010400") == "6981"
    assert tx(verified, f"00B201{sfi << 3 | 4:02X}00") == "6981"


@pytest.mark.parametrize("sfi", [1, 2, 3, 4, 9, 0x1E])
def test_unknown_sfi_6A82(ssse, sfi):
    assert tx(ssse, f"00B201{sfi << 3 | 4:02X}00") == "6A82"
    assert tx(ssse, f"00B201{sfi << 3:02X}00") == "6A82"


def test_sfi_is_relative_to_current_df(reader):
    # from the MF, SFI 5 does not name the SSSE's EF05
    assert tx(reader, "00B2012C00") == "6A82"
    # nor from DF01 inside the SSSE
    assert tx(reader, "00A4040006D15600000501") == "6F088406D156000005019000"
    assert tx(reader, "00B2012C00") == "6A82"


def test_protected_reads_before_verify(ssse):
    for number in PROTECTED_EF05:
        assert tx(ssse, f"00B2{number:02X}2C00") == "6982"
        assert tx(ssse, f"00B2{number:02X}2800") == "6982"  # by identifier too
    for number, (tag, _) in enumerate(EF06, 1):
        assert tx(ssse, f"00B2{number:02X}3400") == "6982"
        assert tx(ssse, f"00B2{tag:02X}3000") == "6982"
    assert tx(ssse, "00A4020C02EF06") == "9000"
    assert tx(ssse, "00B2010400") == "6982"
    assert tx(ssse, "00B2080000") == "6982"



# -- READ BINARY (00 B0): the transparent EFs EF07/EF08 (empty in the default profile) -----------------


@pytest.mark.parametrize("fid, sfi", [("EF07", 7), ("EF08", 8)])
def test_read_binary_needs_pin(ssse, fid, sfi):
    assert tx(ssse, f"00A4020C02{fid}") == "9000"
    assert tx(ssse, "00B0000000") == "6982"
    assert tx(ssse, f"00B0{0x80 | sfi:02X}0000") == "6982"


@pytest.mark.parametrize("fid, sfi", [("EF07", 7), ("EF08", 8)])
def test_read_binary_offset_past_the_end_6B00(verified, fid, sfi):
    assert tx(verified, f"00A4020C02{fid}") == "9000"
    assert tx(verified, "00B0000100") == "6B00"
    assert tx(verified, f"00B0{0x80 | sfi:02X}0100") == "6B00"


@pytest.mark.parametrize("apdu", ["00B0850000", "00B0860000"])
def test_read_binary_on_record_ef_6981(verified, apdu):
    assert tx(verified, apdu) == "6981"


def test_read_binary_errors(ssse):
    assert tx(ssse, "00B0000000") == "6986"  # no current EF just after selecting the DDF
    assert tx(ssse, "00B0890000") == "6A82"  # no EF with SFI 9
    assert tx(ssse, "00A4020C02EF07") == "9000"
    assert tx(ssse, "00B0000001AA") == "6700"  # READ BINARY (B0) carries no command data
