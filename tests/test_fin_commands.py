"""The financial application's commands, byte for byte (docs/decisions.md §6; EMV 4.x Book 1/3; ISO 7816-4).

PSE / PPSE directories, SELECT of the UnionPay debit AID, GET PROCESSING
OPTIONS, READ RECORD over the AFL, GET DATA, the plaintext offline PIN and the
first GENERATE AC of a card that is not activated (AAC, ATC). The cryptograms
themselves are checked independently in test_fin_crypto.py.

Every expected value here is written out or computed in this file (PIN blocks,
CDOL data); nothing is taken from chip.apps.financial.
"""

import re

import helpers
import pytest
from helpers import AID, CARD_DATE, CDOL1, DEFAULT_TOML, GPO_RESPONSE, PAN, PPSE, PSE, SELECT_SSSE, tx

from chip import Card
from chip.iso import ber
from reader import SimReader

CREDIT_AID = "A000000333010102"
LABEL = "UnionPay Debit".encode("ascii").hex().upper()

SELECT_PSE = helpers.SELECT_PSE + "00"
SELECT_PPSE = helpers.SELECT_PPSE + "00"
SELECT_AID = helpers.SELECT_FIN + "00"

PSE_FCI = "6F1A840E" + PSE + "A5088801015F2D027A68"
PSE_RECORD = "701F611D4F08" + AID + "500E" + LABEL + "870101"
PPSE_FCI = "6F34840E" + PPSE + "A522BF0C1F611D4F08" + AID + "500E" + LABEL + "870101"
AID_FCI = ("6F458408" + AID + "A539" + "500E" + LABEL + "870101" + "9F3809" + "9F02065F2A02DF6901"
           + "5F2D027A68" + "9F110101" + "9F120E" + LABEL)

ID_NUMBER = "110101199003071233"

# CDOL1: 9F02 06, 9F03 06, 9F1A 02, 95 05, 5F2A 02, 9A 03, 9C 01, 9F37 04 = 29 bytes
AMOUNT = "000000001000"  # 10.00 CNY
assert len(bytes.fromhex(CDOL1)) == 29 and CDOL1.startswith(AMOUNT)


def pin_block(digits: str) -> str:
    """Format-2 plaintext PIN block written out: '2', N, the digits, F to 16 nibbles."""
    text = "2" + format(len(digits), "X") + digits
    return text + "F" * (16 - len(text))


def gpo(amount: str = AMOUNT, currency: str = "0156", sm: str = "00") -> str:
    return "80A800000B8309" + amount + currency + sm + "00"


def generate_ac(p1: str, data: str = CDOL1) -> str:
    return "80AE" + p1 + "00" + format(len(data) // 2, "02X") + data + "00"


def select_fin(reader) -> None:
    assert tx(reader, SELECT_AID) == AID_FCI + "9000"


def start(reader, sm: str = "00") -> None:
    select_fin(reader)
    assert tx(reader, gpo(sm=sm)) == GPO_RESPONSE + "9000"


def atc(reader) -> int:
    response = tx(reader, "80CA9F3600")
    assert response[:6] == "9F3602" and response[-4:] == "9000", response
    return int(response[6:10], 16)


def objects(hexdata: str) -> dict:
    """One level of BER-TLV as {tag: value hex}; fails on a repeated tag."""
    out = {}
    for tag, value in ber.parse(bytes.fromhex(hexdata)):
        assert tag not in out, f"tag {tag:X} twice"
        out[tag] = value.hex().upper()
    return out


def ac_fields(response: str) -> dict:
    """The GENERATE AC format-2 response: template 77 with 9F27, 9F36, 9F26, 9F10 (in that order)."""
    assert response[-4:] == "9000", response
    top = ber.parse(bytes.fromhex(response[:-4]))
    assert [t for t, _ in top] == [0x77]
    inner = ber.parse(top[0][1])
    assert [t for t, _ in inner] == [0x9F27, 0x9F36, 0x9F26, 0x9F10]
    return {t: v.hex().upper() for t, v in inner}


# -- PSE / PPSE -------------------------------------------------------------------------------


def test_select_pse_fci(reader):
    assert tx(reader, SELECT_PSE) == PSE_FCI + "9000"


def test_pse_fci_structure(reader):
    fci = objects(tx(reader, SELECT_PSE)[:-4])
    assert list(fci) == [0x6F]
    body = objects(fci[0x6F])
    assert body[0x84] == PSE
    proprietary = objects(body[0xA5])
    assert proprietary == {0x88: "01", 0x5F2D: "7A68"}  # directory SFI 1, language "zh"


def test_pse_directory_record(reader):
    tx(reader, SELECT_PSE)
    response = tx(reader, "00B2010C00")
    assert response == PSE_RECORD + "9000"
    record = objects(response[:-4])
    entry = objects(objects(record[0x70])[0x61])
    assert entry == {0x4F: AID, 0x50: LABEL, 0x87: "01"}


def test_pse_directory_has_only_the_debit_application(reader):
    tx(reader, SELECT_PSE)
    assert tx(reader, "00B2020C00") == "6A83"
    assert tx(reader, "00B2011400") == "6A82"  # no SFI 2 in the PSE


def test_select_ppse_fci_lists_the_application(reader):
    response = tx(reader, SELECT_PPSE)
    assert response == PPSE_FCI + "9000"
    body = objects(objects(response[:-4])[0x6F])
    assert body[0x84] == PPSE
    directory = objects(objects(body[0xA5])[0xBF0C])
    assert list(directory) == [0x61]
    assert objects(directory[0x61]) == {0x4F: AID, 0x50: LABEL, 0x87: "01"}


# -- SELECT of the application ------------------------------------------------------------------


def test_select_aid_fci(reader):
    response = tx(reader, SELECT_AID)
    assert response == AID_FCI + "9000"
    body = objects(objects(response[:-4])[0x6F])
    assert body[0x84] == AID
    proprietary = objects(body[0xA5])
    assert proprietary == {
        0x50: LABEL,
        0x87: "01",
        0x9F38: "9F02065F2A02DF6901",  # PDOL: amount, currency, SM-algorithm indicator DF69
        0x5F2D: "7A68",
        0x9F11: "01",
        0x9F12: LABEL,
    }


def test_select_aid_by_partial_name(reader):
    assert tx(reader, "00A4040007A000000333010100") == AID_FCI + "9000"


@pytest.mark.parametrize("aid", [CREDIT_AID, "A000000333010103", "A000000333010201"])
def test_no_credit_application(reader, aid):
    assert tx(reader, "00A4040008" + aid + "00") == "6A82"


def test_debit_selects_again_after_a_failed_credit_select(reader):
    select_fin(reader)
    assert tx(reader, "00A4040008" + CREDIT_AID + "00") == "6A82"
    assert tx(reader, "00A4040008" + AID + "00") == AID_FCI + "9000"
    assert tx(reader, gpo()) == GPO_RESPONSE + "9000"


# -- GET PROCESSING OPTIONS -------------------------------------------------------------------------


@pytest.mark.parametrize("sm", ["00", "01"], ids=["3des", "sm4"])
def test_gpo_format_2(reader, sm):
    select_fin(reader)
    assert tx(reader, gpo(sm=sm)) == GPO_RESPONSE + "9000"


def test_gpo_response_fields(reader):
    select_fin(reader)
    response = tx(reader, gpo())
    template = objects(response[:-4])
    assert list(template) == [0x77]
    assert objects(template[0x77]) == {0x82: "1C00", 0x94: "08010300"}


@pytest.mark.parametrize("apdu, sw", [
    ("80A800000B8409" + AMOUNT + "015600" + "00", "6A80"),  # template tag 84, not 83
    ("80A800000B7009" + AMOUNT + "015600" + "00", "6A80"),
    ("80A800000A8308" + AMOUNT + "0156" + "00", "6700"),  # PDOL data one byte short
    ("80A800000C830A" + AMOUNT + "015600FF" + "00", "6700"),  # one byte too many
    ("80A800000B8308" + AMOUNT + "015600" + "00", "6700"),  # inner length disagrees with the data
    ("80A80000028300" + "00", "6700"),  # no PDOL data at all
    ("80A800000B8309" + AMOUNT + "015602" + "00", "6A80"),  # DF69 neither 00 (3DES) nor 01 (SM4)
    ("80A800000B8309" + AMOUNT + "0156FF" + "00", "6A80"),
    ("80A801000B8309" + AMOUNT + "015600" + "00", "6A86"),
    ("80A800010B8309" + AMOUNT + "015600" + "00", "6A86"),
])
def test_gpo_refused(reader, apdu, sw):
    select_fin(reader)
    assert tx(reader, apdu) == sw
    # a refused GPO starts no transaction: a correct one still works, and no ATC was spent
    assert tx(reader, gpo()) == GPO_RESPONSE + "9000"
    assert atc(reader) == 0


def test_gpo_twice_is_6985(reader):
    start(reader)
    assert tx(reader, gpo()) == "6985"
    assert tx(reader, gpo(sm="01")) == "6985"


def test_reselecting_starts_a_new_transaction(reader):
    start(reader)
    select_fin(reader)
    assert tx(reader, gpo()) == GPO_RESPONSE + "9000"
    reader.reset()
    assert tx(reader, gpo()) == "6D00"  # nothing selected after a reset: the MF has no GPO
    start(reader)


# -- READ RECORD over the AFL ----------------------------------------------------------------------------


RECORD_1 = ("701E" + "5710" + PAN + "D3611220" + "0000000F" + "5F2006" + b"LI/HUA".hex().upper() + "9F1F00")
RECORD_2 = ("70818A" + "5A08" + PAN + "5F2403361121" + "5F2503261121" + "5F28020156" + "5F340101"
            + "9F0702FF00" + "8E0E" + "00000000" + "00000000" + "4203" + "4103" + "1F03"
            + "9F0D05D84000A800" + "9F0E050010000000" + "9F0F05D84004F800"
            + "8C15" + "9F02069F03069F1A0295055F2A029A039C019F3704"
            + "8D17" + "8A02" + "9F02069F03069F1A0295055F2A029A039C019F3704"
            + "9F08020030" + "9F42020156" + "9F440102")
RECORD_3 = ("7019" + "9F6112" + ID_NUMBER.encode().hex().upper() + "9F620100")  # 5F20 is in record 1 only


@pytest.mark.parametrize("number, expected", [(1, RECORD_1), (2, RECORD_2), (3, RECORD_3)])
def test_read_record_exact_bytes(reader, number, expected):
    start(reader)
    assert tx(reader, f"00B20{number}0C00") == expected + "9000"


def afl_records(reader) -> dict:
    """All primitive objects of SFI 1 records 1-3, as a terminal collects them (last wins)."""
    start(reader)
    collected = {}
    for number in (1, 2, 3):
        response = tx(reader, f"00B20{number}0C00")
        assert response[-4:] == "9000"
        template = ber.parse(bytes.fromhex(response[:-4]))
        assert [t for t, _ in template] == [0x70]
        for tag, value in ber.parse(template[0][1]):
            collected[tag] = value.hex().upper()
    return collected


def test_application_data_values(reader):
    data = afl_records(reader)
    assert data[0x5A] == PAN
    assert data[0x5F24] == "361121"  # personalised 2026-11-21, valid 10 years
    assert data[0x5F25] == "261121"
    assert data[0x5F34] == "01"
    assert data[0x5F28] == "0156"
    assert data[0x9F42] == "0156"  # application currency CNY
    assert data[0x9F44] == "02"
    assert bytes.fromhex(data[0x5F20]) == b"LI/HUA"
    assert data[0x9F07] == "FF00"
    assert data[0x9F08] == "0030"
    assert data[0x9F0D] == "D84000A800"  # IAC default
    assert data[0x9F0E] == "0010000000"  # IAC denial
    assert data[0x9F0F] == "D84004F800"  # IAC online
    assert bytes.fromhex(data[0x9F61]).decode("ascii") == ID_NUMBER
    assert data[0x9F62] == "00"  # ID card


def test_cdols_and_cvm_list(reader):
    data = afl_records(reader)
    cdol1 = bytes.fromhex(data[0x8C])
    assert ber.parse_dol(cdol1) == [(0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x95, 5), (0x5F2A, 2), (0x9A, 3),
                                    (0x9C, 1), (0x9F37, 4)]
    assert sum(n for _, n in ber.parse_dol(cdol1)) == 29
    cdol2 = bytes.fromhex(data[0x8D])
    assert ber.parse_dol(cdol2) == [(0x8A, 2)] + ber.parse_dol(cdol1)
    # CVM list: X = Y = 0; online PIN, then offline plaintext PIN, then no CVM; each "if terminal supports"
    assert data[0x8E] == "00000000" "00000000" "4203" "4103" "1F03"


def test_track2_agrees_with_pan_and_expiry(reader):
    data = afl_records(reader)
    track2 = data[0x57].rstrip("F")
    pan, _, rest = track2.partition("D")
    assert pan == data[0x5A].rstrip("F")
    assert rest[:4] == data[0x5F24][:4]  # YYMM
    assert rest[4:7] == "220"  # service code: international chip card, online authorisation


def test_no_primitive_object_twice_across_afl_records(reader):
    start(reader)
    seen = {}
    for number in (1, 2, 3):
        response = tx(reader, f"00B20{number}0C00")
        for tag, _ in ber.parse(ber.parse(bytes.fromhex(response[:-4]))[0][1]):
            assert tag not in seen, f"{tag:X} in record {seen.get(tag)} and record {number}"
            seen[tag] = number


@pytest.mark.parametrize("apdu, sw", [
    ("00B2040C00", "6A83"),  # past the AFL's last record
    ("00B2000C00", "6A83"),
    ("00B2011400", "6A82"),  # SFI 2 does not exist
    ("00B2010D00", "6A86"),  # mode 5
])
def test_read_record_refused(reader, apdu, sw):
    start(reader)
    assert tx(reader, apdu) == sw


def test_read_record_before_gpo(reader):
    select_fin(reader)
    assert tx(reader, "00B2010C00") == RECORD_1 + "9000"


# -- GET DATA ---------------------------------------------------------------------------------------------


LOG_FORMAT = "9A039F21039F02069F03069F1A025F2A029F4E149C019F3602"


@pytest.mark.parametrize("apdu, expected", [
    ("80CA9F3600", "9F36020000"),
    ("80CA9F1300", "9F13020000"),
    ("80CA9F1700", "9F170103"),
    ("80CA9F7900", "9F7906000000000000"),
    ("80CA9F4F00", "9F4F19" + LOG_FORMAT),
    ("80CADF7F00", "DF7F0100"),  # activation flag: not activated
])
@pytest.mark.parametrize("when", ["before-gpo", "after-gpo"])
def test_get_data(reader, apdu, expected, when):
    select_fin(reader)
    if when == "after-gpo":
        assert tx(reader, gpo()) == GPO_RESPONSE + "9000"
    assert tx(reader, apdu) == expected + "9000"


def test_log_format_lists_29_bytes_of_log_entry(reader):
    select_fin(reader)
    dol = bytes.fromhex(tx(reader, "80CA9F4F00")[6:-4])
    assert ber.parse_dol(dol) == [(0x9A, 3), (0x9F21, 3), (0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x5F2A, 2),
                                  (0x9F4E, 20), (0x9C, 1), (0x9F36, 2)]


@pytest.mark.parametrize("tag", ["9F50", "9F5D", "5A00", "0000", "9F26", "9F10"])
def test_get_data_unknown_tag(reader, tag):
    select_fin(reader)
    assert tx(reader, "80CA" + tag + "00") == "6A88"


# -- VERIFY (plaintext offline PIN) --------------------------------------------------------------------------


INITIAL_PIN = "000000"


def verify(digits_or_block: str, raw: bool = False) -> str:
    block = digits_or_block if raw else pin_block(digits_or_block)
    return "0020008008" + block


def test_pin_block_of_the_initial_pin():
    # the format-2 block of "000000": 2, N = 6, six zeros, eight F
    assert pin_block(INITIAL_PIN) == "26000000FFFFFFFF"
    assert pin_block("1234") == "241234FFFFFFFFFF"
    assert pin_block("123456789012") == "2C123456789012FF"


@pytest.mark.parametrize("when", ["before-gpo", "after-gpo"])
def test_verify_initial_pin(reader, when):
    select_fin(reader)
    if when == "after-gpo":
        assert tx(reader, gpo()) == GPO_RESPONSE + "9000"
    assert tx(reader, "002000800826000000FFFFFFFF") == "9000"
    assert tx(reader, "80CA9F1700") == "9F1701039000"


def test_verify_brief_example_is_malformed(reader):
    """`0020008008 24000000FFFFFFFFFF` is a case-4 APDU (Le FF) whose block 24 0000 00FFFFFFFF
    has a 00 in the filler: not a format-2 block, so 6A80 and no try spent."""
    select_fin(reader)
    assert tx(reader, "0020008008" "24000000FFFFFFFFFF") == "6A80"
    assert tx(reader, "80CA9F1700") == "9F1701039000"


def test_wrong_pins_count_down_then_block(reader):
    select_fin(reader)
    # "0000" (a well-formed 4-digit block 24 0000 FF..) is not the PIN "000000"
    assert tx(reader, verify("240000FFFFFFFFFF", raw=True)) == "63C2"
    assert tx(reader, "80CA9F1700") == "9F1701029000"
    assert tx(reader, verify("123456")) == "63C1"
    assert tx(reader, verify("0000000")) == "63C0"
    assert tx(reader, "80CA9F1700") == "9F1701009000"
    assert tx(reader, verify(INITIAL_PIN)) == "6983"
    assert tx(reader, verify("999999")) == "6983"
    assert tx(reader, "0020008000") == "6983"
    assert tx(reader, "80CA9F1700") == "9F1701009000"
    # blocked for good: a reset changes nothing
    reader.reset()
    select_fin(reader)
    assert tx(reader, verify(INITIAL_PIN)) == "6983"


def test_right_pin_restores_the_counter(reader):
    select_fin(reader)
    assert tx(reader, verify("111111")) == "63C2"
    assert tx(reader, verify("222222")) == "63C1"
    assert tx(reader, verify(INITIAL_PIN)) == "9000"
    assert tx(reader, "80CA9F1700") == "9F1701039000"
    assert tx(reader, verify("111111")) == "63C2"


def test_try_counter_survives_reset(reader):
    select_fin(reader)
    assert tx(reader, verify("111111")) == "63C2"
    reader.reset()
    select_fin(reader)
    assert tx(reader, "80CA9F1700") == "9F1701029000"
    assert tx(reader, verify("111111")) == "63C1"


def test_verify_status_query(reader):
    select_fin(reader)
    assert tx(reader, "0020008000") == "63C3"
    assert tx(reader, verify(INITIAL_PIN)) == "9000"
    assert tx(reader, "0020008000") == "9000"
    select_fin(reader)  # re-selection starts a new session: not verified any more
    assert tx(reader, "0020008000") == "63C3"


@pytest.mark.parametrize("block", [
    "16000000FFFFFFFF",  # control field 1, not 2
    "06000000FFFFFFFF",
    "23123FFFFFFFFFFF",  # 3 digits: below 4
    "2D1234567890123F",  # 13 digits: above 12
    "2612345AFFFFFFFF",  # a non-digit among the digits
    "26123456FFFFFF0F",  # filler not all F
    "2612345600000000",
    "24123400FFFFFFFF",
])
def test_verify_bad_block_is_6A80_and_costs_no_try(reader, block):
    select_fin(reader)
    assert tx(reader, "0020008008" + block) == "6A80"
    assert tx(reader, "80CA9F1700") == "9F1701039000"


@pytest.mark.parametrize("apdu", [
    "0020008007" "26000000FFFFFF",
    "0020008009" "26000000FFFFFFFFFF",
    "0020008006" "000000FFFFFF",
    "0020008003" "000000",
])
def test_verify_wrong_lc_is_6700_and_costs_no_try(reader, apdu):
    select_fin(reader)
    assert tx(reader, apdu) == "6700"
    assert tx(reader, "80CA9F1700") == "9F1701039000"


@pytest.mark.parametrize("p2", ["00", "01", "81", "88"])
def test_verify_other_pin_reference_is_6A88(reader, p2):
    select_fin(reader)
    assert tx(reader, "002000" + p2 + "0826000000FFFFFFFF") == "6A88"
    assert tx(reader, "80CA9F1700") == "9F1701039000"


def test_verify_p1_not_00_is_6A86(reader):
    select_fin(reader)
    assert tx(reader, "002001800826000000FFFFFFFF") == "6A86"


def test_verify_at_the_mf_is_6A88(reader):
    assert tx(reader, "002000800826000000FFFFFFFF") == "6A88"


def test_fin_pin_is_separate_from_the_ssse_pin(reader):
    """Separate PINs and try counters behind the application firewall (P4 §5.5; docs/card/README.md)."""
    select_fin(reader)
    assert tx(reader, verify("111111")) == "63C2"
    assert tx(reader, SELECT_SSSE)[-4:] == "9000"  # SSSE
    assert tx(reader, "0020000003123456") == "9000"  # the SSSE PIN of the default profile
    select_fin(reader)
    assert tx(reader, "80CA9F1700") == "9F1701029000"


# -- GENERATE AC (first), on a card not yet activated -------------------------------------------------------------


def test_generate_ac_without_gpo_is_6985(reader):
    select_fin(reader)
    assert tx(reader, generate_ac("80")) == "6985"
    assert atc(reader) == 0


@pytest.mark.parametrize("data", [CDOL1[:-2], CDOL1 + "00", "", CDOL1[:20]])
def test_generate_ac_wrong_length_is_6700(reader, data):
    start(reader)
    apdu = "80AE800000" if not data else generate_ac("80", data)
    assert tx(reader, apdu) == "6700"
    assert atc(reader) == 0
    assert tx(reader, generate_ac("80"))[-4:] == "9000"  # the transaction goes on
    assert atc(reader) == 1


@pytest.mark.parametrize("p1p2", ["C000", "9000", "0100", "4100", "8001", "0001"])
def test_generate_ac_wrong_p1p2_is_6A86(reader, p1p2):
    start(reader)
    assert tx(reader, "80AE" + p1p2 + "1D" + CDOL1 + "00") == "6A86"
    assert atc(reader) == 0


@pytest.mark.parametrize("p1", ["00", "40", "80"], ids=["AAC", "TC", "ARQC"])
@pytest.mark.parametrize("sm, cvn, alg", [("00", "0A", "01"), ("01", "4A", "04")], ids=["3des", "sm4"])
def test_not_activated_card_answers_aac(reader, p1, sm, cvn, alg):
    start(reader, sm)
    fields = ac_fields(tx(reader, generate_ac(p1)))
    assert fields[0x9F27] == "00"  # AAC whatever was asked
    assert fields[0x9F36] == "0001"
    assert len(fields[0x9F26]) == 16
    iad = fields[0x9F10]
    assert iad[:6] == "0701" + cvn and iad[-2:] == alg and len(iad) == 16
    cvr = bytes.fromhex(iad[6:14])
    assert cvr[0] == 0x03
    assert cvr[3] & 0x04  # not activated (model)
    # byte 2: first AC = AAC (bits 6-5 00), second AC not requested (bits 8-7 10)
    assert cvr[1] & 0xF0 == 0x80
    assert cvr[2] & 0x10  # new card: never online
    assert cvr.hex().upper() == "03801004"


def test_not_activated_aac_response_layout(reader):
    start(reader)
    response = tx(reader, generate_ac("80"))
    ac = ac_fields(response)[0x9F26]
    assert response == "771F" "9F270100" "9F36020001" "9F2608" + ac + "9F1008" "07010A03801004" "01" "9000"


def test_offline_pin_shows_in_the_cvr(reader):
    select_fin(reader)
    assert tx(reader, verify(INITIAL_PIN)) == "9000"
    assert tx(reader, gpo()) == GPO_RESPONSE + "9000"
    cvr = bytes.fromhex(ac_fields(tx(reader, generate_ac("80")))[0x9F10][6:14])
    assert cvr.hex().upper() == "03841004"  # byte 2 bit 3: offline PIN performed


def test_failed_offline_pin_shows_in_the_cvr(reader):
    start(reader)
    assert tx(reader, verify("999999")) == "63C2"
    cvr = bytes.fromhex(ac_fields(tx(reader, generate_ac("80")))[0x9F10][6:14])
    assert cvr.hex().upper() == "03861004"  # offline PIN performed, and failed


def test_transaction_ends_after_aac(reader):
    start(reader)
    assert ac_fields(tx(reader, generate_ac("80")))[0x9F27] == "00"
    assert tx(reader, "80AE40001F3030" + CDOL1 + "00") == "6985"  # no second GENERATE AC
    assert tx(reader, "008200000A" + "00" * 8 + "3030") == "6985"  # no issuer authentication
    assert tx(reader, generate_ac("80")) == "6985"
    assert atc(reader) == 1


def test_atc_one_per_transaction(reader):
    for expected in (1, 2, 3):
        start(reader)
        assert atc(reader) == expected - 1
        assert ac_fields(tx(reader, generate_ac("80")))[0x9F36] == format(expected, "04X")
        assert atc(reader) == expected
        assert tx(reader, "80CA9F3600") == "9F3602" + format(expected, "04X") + "9000"
        reader.reset()
    start(reader, sm="01")  # the SM4 path counts on the same ATC
    assert ac_fields(tx(reader, generate_ac("00")))[0x9F36] == "0004"


def test_atc_survives_reset(reader):
    start(reader)
    tx(reader, generate_ac("80"))
    reader.reset()
    select_fin(reader)
    assert atc(reader) == 1


def test_atc_is_durable_in_the_image(tmp_path):
    path = str(tmp_path / "card.img")
    card = Card.from_profile(state=path, date=CARD_DATE)
    reader = SimReader(card)
    reader.reset()
    for _ in range(2):
        start(reader)
        assert ac_fields(tx(reader, generate_ac("80")))[0x9F27] == "00"
        reader.reset()
    card.close()  # the card leaves the simulator: the image is all that is left of it
    reopened = SimReader(Card.open(path, date=CARD_DATE))
    reopened.reset()
    select_fin(reopened)
    assert atc(reopened) == 2
    assert tx(reopened, gpo()) == GPO_RESPONSE + "9000"
    assert ac_fields(tx(reopened, generate_ac("80")))[0x9F36] == "0003"
    reopened.card.close()
    again = SimReader(Card.open(path, date=CARD_DATE))
    again.reset()
    select_fin(again)
    assert atc(again) == 3


def profile_with(tmp_path, **financial) -> str:
    """A copy of the default profile with [financial] fields changed."""
    text = DEFAULT_TOML.read_text(encoding="utf-8")
    for key, value in financial.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert n == 1, key
    path = tmp_path / "small-atc.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_atc_limit_then_6985(tmp_path):
    card = Card.from_profile(profile_with(tmp_path, atc_limit=2), date=CARD_DATE)
    reader = SimReader(card)
    reader.reset()
    for expected in ("0001", "0002"):
        start(reader)
        assert ac_fields(tx(reader, generate_ac("80")))[0x9F36] == expected
        reader.reset()
    start(reader)
    assert tx(reader, generate_ac("80")) == "6985"
    assert tx(reader, generate_ac("00")) == "6985"
    assert atc(reader) == 2
    reader.reset()
    start(reader, sm="01")
    assert tx(reader, generate_ac("40")) == "6985"
    assert atc(reader) == 2


def test_atc_limit_durable_in_the_image(tmp_path):
    path = str(tmp_path / "card.img")
    card = Card.from_profile(profile_with(tmp_path, atc_limit=1), state=path, date=CARD_DATE)
    reader = SimReader(card)
    reader.reset()
    start(reader)
    assert ac_fields(tx(reader, generate_ac("80")))[0x9F36] == "0001"
    card.close()  # the card leaves the simulator: the image is all that is left of it
    reopened = SimReader(Card.open(path, date=CARD_DATE))
    reopened.reset()
    start(reopened)
    assert tx(reopened, generate_ac("80")) == "6985"
    assert atc(reopened) == 1


# -- issuer scripts: APDU-level refusals that need no MAC ----------------------------------------------------------


def test_script_before_generate_ac_is_6985(reader):
    start(reader)
    assert tx(reader, "841E000004" "00000000") == "6985"
    assert tx(reader, "04DADF7F05" "01" "00000000") == "6985"


def test_script_with_wrong_mac_is_6988(reader):
    start(reader)
    tx(reader, generate_ac("80"))
    assert tx(reader, "841E000004" "00000000") == "6988"
    assert tx(reader, "04DADF7F05" "01" "00000000") == "6988"
    assert tx(reader, "80CADF7F00") == "DF7F01009000"
    select_fin(reader)
    assert tx(reader, SELECT_AID) == AID_FCI + "9000"  # not blocked


@pytest.mark.parametrize("apdu", [
    "841E000000012C" + "00" * 300,
    "04DADF7F00012C" + "00" * 300,
    "8424000200012C" + "00" * 300,
])
def test_oversized_script_is_a_wrong_length(reader, apdu):
    """An extended-length script command over 255 data bytes: its Lc cannot be the one-byte Lc of the
    MAC input, so 6700 (it once crashed the MAC input and answered 6F00)."""
    start(reader)
    tx(reader, generate_ac("80"))
    assert tx(reader, apdu) == "6700"


def test_script_of_255_bytes_reaches_the_mac_check(reader):
    """The largest short script command (Lc FF) is checked: wrong MAC 6988, not a length error."""
    start(reader)
    tx(reader, generate_ac("80"))
    assert tx(reader, "841E0000FF" + "00" * 255) == "6988"
    assert tx(reader, "841E00000000FF" + "00" * 255) == "6988"  # the same as an extended APDU
