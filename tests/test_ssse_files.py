"""SSSE selection, files, READ RECORD and UPDATE RECORD, as LD/T 32 says.

Sources: P5 §6.10, §6.11, §6.13 (docs/card/files.md §4, §5); V2 tables 3, 9, 10
(docs/card/files.md §2, §3); SR §10.2 (3.0 cards: EF06 read under RKSSSE); docs/card/README.md
(generations); docs/decisions.md S12 (Le 00), S19 (DIR SFI 30). T1 and T2 are the real cards'
traces of tests/test_real_traces.py.
Record bytes are those of the default profile personalised on 2026-11-21.
Commands go to the card OS directly (`helpers.Session`), T=1 unless said.
"""

import dataclasses

import oracle
import pytest
from helpers import (
    CARD_DATE,
    DDF_NAME,
    EF05,
    EF06,
    IDENTIFICATION,
    SELECT_DF04,
    SELECT_EF05,
    SELECT_EF06,
    SELECT_EF07,
    SELECT_MF,
    SELECT_SSSE,
    VERIFY_OK,
    Session,
    generation2_profile,
    h,
)

from chip import Card

FREE_EF05 = range(1, 8)


def length(record: str) -> int:
    return len(record) // 2


def read(s: Session, p1: int, p2: int, expected: str) -> None:
    """READ RECORD with the exact Le (P5 §6.10; Le counts the record's tag and length bytes)."""
    assert s.tx(f"00B2{p1:02X}{p2:02X}{length(expected):02X}") == expected + "9000"


@pytest.fixture
def s(sm4):
    """This file is about the default (SM4, 3.00) card."""
    return sm4


# -- SELECT of the SSSE (P5 §6.11, table 36) ----------------------------------------------------


def test_fci_is_the_real_cards_fci_sm4():
    # P5 table 36 as the real cards answer it (T1 l.4, T2):
    # 6F 1C { 84 0F name, A5 09 { 88 01 1E, 9F0C 03 86 01 03 } }; SM4 = 03 (SR §10.1)
    s = Session("default")
    assert s.tx(SELECT_SSSE) == "6F1C840F" + DDF_NAME + "A50988011E9F0C03860103" "9000"


def test_fci_des_family_flag_01():
    # SR §10.1: 86 01 01 = DES family
    s = Session("default-3des")
    assert s.tx(SELECT_SSSE) == "6F1C840F" + DDF_NAME + "A50988011E9F0C03860101" "9000"


def test_select_with_le_00(both):
    # P5 §6.11: SELECT ... Lc data Le 00 (case 4)
    assert both.tx(SELECT_SSSE + "00") == both.fci + "9000"


def test_select_on_t0_answers_61xx_and_get_response_gives_the_fci(both):
    # T=0: a case 3/4 command cannot return data in its exchange: 61 1E, then GET RESPONSE (P5 §6.6)
    both.reset(protocol=0)
    assert both.tx(SELECT_SSSE) == "611E"
    assert both.tx("00C000001E") == both.fci + "9000"


def test_select_p2_0c_no_data_and_the_application_is_selected(s):
    s.reset()
    assert s.tx("00A4040C0F" + DDF_NAME) == "9000"
    assert s.tx("00B201" "2C" "12") == EF05[1] + "9000"  # SFI 5 of the SSSE reachable


def test_select_by_truncated_name(s):
    # P5 §6.11.5 (partial names, optional): the matching DF is selected with its FCI
    s.reset()
    assert s.tx("00A4040007" + DDF_NAME[:14]) == s.fci + "9000"
    # P2 02 next occurrence: the SSSE is the only match and is current -> 6A82
    assert s.tx("00A4040207" + DDF_NAME[:14]) == "6A82"


def test_select_unknown_name_6A82(s):
    assert s.tx("00A404000F" + DDF_NAME[:-2] + "CE") == "6A82"
    assert s.tx("00A4040006D15600000509") == "6A82"  # no such DF under the SSSE RID


# -- SELECT of EFs: no FCI (P5 §6.11.1, §6.11.4; T1 l.6-7, T2) -------------------------------------


@pytest.mark.parametrize("fid", ["EF05", "EF06", "EF07", "EF08"])
def test_select_ef_by_fid_is_9000_without_data(s, fid):
    assert s.tx("00A4020002" + fid) == "9000"
    assert s.tx("00A4000002" + fid) == "9000"  # readers also send P1 00 (docs/card/files.md §4)


@pytest.mark.parametrize("fid", ["EF05", "EF06"])
def test_select_ef_on_t0_is_9000_not_61xx(s, fid):
    s.reset(protocol=0)
    assert s.tx(SELECT_SSSE) == "611E"
    assert s.tx("00C000001E") == s.fci + "9000"
    assert s.tx("00A4020002" + fid) == "9000"  # a public reader (hdxj.cpp) tests for 9000 here
    assert s.tx("00C0000000") == "6F00"  # nothing waits (P5 §6.6.4; docs/decisions.md §3)


def test_select_ef_then_read_by_identifier_in_the_current_ef(s):
    # the real flow (T1 l.6-10): SELECT EF05, READ RECORD 01 with P2 00 (first occurrence, current EF)
    assert s.tx(SELECT_EF05) == "9000"
    assert s.tx("00B2010012") == "0110" + IDENTIFICATION + "9000"
    assert s.tx("00B2030006") == EF05[3] + "9000"
    assert s.tx("00B207000B") == EF05[7] + "9000"


def test_select_unknown_ef_6A82_keeps_the_current_ef(s):
    assert s.tx(SELECT_EF05) == "9000"
    assert s.tx("00A4020002EF09") == "6A82"
    assert s.tx("00B2010012") == EF05[1] + "9000"


@pytest.mark.parametrize("apdu", ["00A4020001EF", "00A4020003EF0506"])
def test_select_fid_wrong_length_6700(s, apdu):
    # P5 §6.11: Lc 02 for a FID; 6700 when P1/P2 and Lc disagree
    assert s.tx(apdu) == "6700"


# -- application DFs (V2 table 2; P5 table 38: an ADF's FCI is 6F { 84 name }) ------------------------


@pytest.mark.parametrize("pix, fid", [("00", "DF01"), ("01", "DF02"), ("02", "DF03"), ("03", "DF04"), ("04", "DF07")])
def test_select_application_df_by_aid(s, pix, fid):
    assert s.tx(f"00A4040006D156000005{pix}") == f"6F088406D156000005{pix}9000"


def test_select_df04_by_fid(s):
    # V2 §5.6: DF04 is the medical DF, AID D15600000503
    assert s.tx("00A4000002DF04") == "6F088406D156000005039000"


def test_mf_selection_leaves_the_ssse(s):
    # P5 §6.11.2: P1 00 with 3F00 (or no data) selects the MF; SFI 5 is then not the SSSE's EF05
    for apdu in (SELECT_MF, "00A4000000"):
        s.select()
        assert s.tx(apdu)[-4:] == "9000"
        assert s.tx("00B2012C12") == "6A82"


# -- the DIR file (P3 §5.1.4, tables 2-3; docs/decisions.md S19: SFI 30) -------------------------------

DIR_ENTRIES = [  # 61 { 4F AID, 50 label (GBK) }, one per application (V2 table 2)
    ("D15600000500", "公共应用信息区"), ("D15600000501", "就业与失业信息区"), ("D15600000502", "社会保险信息区1"),
    ("D15600000503", "社会保险信息区2"), ("D15600000504", "人事人才信息区"),
]


def dir_record(aid: str, label: str) -> str:
    label_bytes = label.encode("gbk")
    body = "4F06" + aid + f"50{len(label_bytes):02X}" + h(label_bytes)
    return f"61{len(body) // 2:02X}" + body


@pytest.mark.parametrize("number", range(1, 6))
def test_dir_records(s, number):
    read(s, number, 0x1E << 3 | 4, dir_record(*DIR_ENTRIES[number - 1]))


def test_dir_read_until_6A83(s):
    # P3 §6.3: the terminal reads records from 1 until 6A83
    assert s.tx("00B206F412") == "6A83"


# -- EF05: free in every generation (V2 table 3; SR §10.2 changes only EF06) -----------------------------


@pytest.mark.parametrize("number", FREE_EF05)
def test_ef05_records_free_by_number(both, number):
    read(both, number, 5 << 3 | 4, EF05[number])


def test_ef05_item_01_layout(s):
    # V2 table 10: region 110100 || RID D156000005 || serial 00000001 || authentication code 00000000
    assert EF05[1] == "0110" "110100" "D156000005" "00000001" "00000000"
    read(s, 1, 5 << 3 | 4, EF05[1])


@pytest.mark.parametrize("number", [5, 6])
def test_ef05_dates_need_neither_pin_nor_authentication(s, number):
    # docs/card/files.md §3: EF05 free; public readers (yiwu.cs, z390.cpp) read 05/06 without any authentication
    s.power_cycle()
    s.select()
    assert s.tx(SELECT_EF05) == "9000"
    assert s.tx(f"00B2{number:02X}0006") == EF05[number] + "9000"


@pytest.mark.parametrize("number", FREE_EF05)
def test_ef05_by_identifier_via_sfi(s, number):
    # P2 = SFI 5 << 3 | 000: first record whose identifier is P1 (record identifier = tag, P3 §5.3.1)
    read(s, number, 5 << 3, EF05[number])


# -- EF06: RKSSSE on 3.00, free on 2.00 (SR §10.2; V2 table 3) --------------------------------------------


@pytest.mark.parametrize("number", range(1, 8))
def test_ef06_needs_rkssse_on_a_300_card(both, number):
    s = both
    tag, record = EF06[number - 1]
    assert s.tx(f"00B2{number:02X}34{length(record):02X}") == "6982"
    assert s.tx(f"00B2{tag:02X}30{length(record):02X}") == "6982"
    assert s.external_auth("ssse_rk") == "9000"
    read(s, number, 6 << 3 | 4, record)
    read(s, tag, 6 << 3, record)


def test_ef06_pin_is_no_alternative_on_a_300_card(s):
    # SR §10.2: EF06 on 3.0 is RKSSSE, no PIN alternative is stated
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx("00B2083014") == "6982"


def test_ef06_wrong_key_does_not_open_it(s):
    # only RKSSSE (0A) is EF06's read control; UKSSSE (04) is its write control (V2 table 3)
    assert s.external_auth("ssse_uk") == "9000"
    assert s.tx("00B2083014") == "6982"


def test_real_300_read_flow(s):
    # docs/card/files.md §3 (T1 l.3-81): SELECT EF05, READ 01 03 07; re-SELECT SSSE; challenges; EXTERNAL
    # AUTHENTICATE 0A; SELECT EF05, READ 03 05 06; SELECT EF06, READ 08 09 4E
    assert s.tx(SELECT_EF05) == "9000"
    for tag in (1, 3, 7):
        read(s, tag, 0, EF05[tag])
    s.select()
    s.challenge()  # the original data D, from the card's random (T1)
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx(SELECT_EF05) == "9000"
    for tag in (3, 5, 6):
        read(s, tag, 0, EF05[tag])
    assert s.tx(SELECT_EF06) == "9000"
    for tag, record in EF06[:3]:
        read(s, tag, 0, record)


def test_ef06_free_on_a_200_card():
    s = Session(card=Card.from_profile(generation2_profile(), date=CARD_DATE))
    s.select()
    assert s.tx("00B2033006") == "6A83"  # 03 is not an EF06 identifier
    for number, (tag, record) in enumerate(EF06, 1):
        read(s, number, 6 << 3 | 4, record)
        read(s, tag, 6 << 3, record)
    # item 03 says what the card is (V2 §8.1.1.3)
    read(s, 3, 5 << 3 | 4, "0304" + h(b"2.00"))


@pytest.mark.parametrize("ethnicity, byte", [(1, "01"), (10, "10"), (56, "56"), (99, "99")])
def test_ethnicity_is_cn(ethnicity, byte):
    # V2 table 9: item 0B is cn 1 (BCD of the 2-digit GB 3304 code): 朝鲜族 10 is byte 10, not 0A
    profile = dataclasses.replace(generation2_profile(), ethnicity=ethnicity)
    s = Session(card=Card.from_profile(profile, date=CARD_DATE))
    s.select()
    read(s, 0x0B, 6 << 3, "0B01" + byte)


# -- EF07 / EF08: RKSSSE (V2 table 3) --------------------------------------------------------------------


@pytest.mark.parametrize("fid, sfi", [("EF07", 7), ("EF08", 8)])
def test_transparent_efs_need_rkssse(s, fid, sfi):
    assert s.tx("00A4020002" + fid) == "9000"
    assert s.tx("00B0000001") == "6982"
    assert s.tx(f"00B0{0x80 | sfi:02X}0001") == "6982"
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx(f"00B0{0x80 | sfi:02X}0001") == "6982"  # the PIN is no alternative


# -- READ RECORD: Le (P5 §6.10.4, docs/decisions.md S12) ---------------------------------------------------


@pytest.mark.parametrize("number", FREE_EF05)
def test_le_00_answers_6Cxx_then_the_exact_le_works(s, number):
    record = EF05[number]
    assert s.tx(f"00B2{number:02X}2C00") == f"6C{length(record):02X}"
    assert s.tx(f"00B2{number:02X}2C{length(record):02X}") == record + "9000"


def test_le_00_on_t0_also_6Cxx(s):
    s.reset(protocol=0)
    assert s.tx("00A4040C0F" + DDF_NAME) == "9000"
    assert s.tx("00B2012C00") == "6C12"
    assert s.tx("00B2012C12") == EF05[1] + "9000"


@pytest.mark.parametrize("le", [0x01, 0x10, 0x11])
def test_le_short_answers_6Cxx(s, le):
    # P5 table 33: 6Cxx, xx the right length
    assert s.tx(f"00B2012C{le:02X}") == "6C12"


def test_le_00_by_identifier_in_the_current_ef(s):
    assert s.tx(SELECT_EF05) == "9000"
    assert s.tx("00B2070000") == "6C0B"
    assert s.tx("00B207000B") == EF05[7] + "9000"


# -- READ RECORD: the modes of P2 b3-b1 (P5 table 32) -------------------------------------------------------


def test_mode_101_from_p1_to_the_last(s):
    records = EF05[5] + EF05[6] + EF05[7]
    assert s.tx("00B2052D00") == f"6C{length(records):02X}"
    read(s, 5, 5 << 3 | 5, records)
    read(s, 1, 5 << 3 | 5, "".join(EF05[n] for n in range(1, 8)))
    read(s, 7, 5 << 3 | 5, EF05[7])


def test_mode_110_from_the_last_down_to_p1(s):
    read(s, 5, 5 << 3 | 6, EF05[7] + EF05[6] + EF05[5])
    read(s, 7, 5 << 3 | 6, EF05[7])


def test_modes_101_110_past_the_last_record_6A83(s):
    assert s.tx("00B2082D00") == "6A83"
    assert s.tx("00B2082E00") == "6A83"


def test_identifier_modes_first_last_next_previous(s):
    # 000 first, 001 last, 010 next, 011 previous occurrence of identifier P1, in the current EF;
    # a search moves the record pointer, access by number does not (P3 §5.3.1)
    assert s.tx(SELECT_EF05) == "9000"
    read(s, 3, 0b000, EF05[3])  # pointer -> 3
    read(s, 2, 0b100, EF05[2])  # by number: pointer stays 3
    read(s, 6, 0b010, EF05[6])  # next 06 after record 3 -> record 6 (pointer 6)
    assert s.tx("00B2040200") == "6A83"  # no 04 after record 6
    read(s, 4, 0b011, EF05[4])  # previous 04 before record 6
    read(s, 1, 0b001, EF05[1])  # last 01 (the only one)
    assert s.tx("00B2010200") == "6A83"  # no 01 after record 1
    read(s, 7, 0b010, EF05[7])


def test_records_in_ef06_by_identifier_and_number_agree():
    s = Session(card=Card.from_profile(generation2_profile(), date=CARD_DATE))
    s.select()
    assert s.tx(SELECT_EF06) == "9000"
    for number, (tag, record) in enumerate(EF06, 1):
        read(s, number, 0b100, record)  # current EF by number
        read(s, tag, 0b000, record)  # current EF by identifier


def test_sfi_makes_its_ef_current(s):
    # P5 §6.10: an SFI in P2 names the EF; afterwards SFI 0 means that EF
    read(s, 1, 5 << 3 | 4, EF05[1])
    read(s, 2, 0b100, EF05[2])
    read(s, 3, 0b000, EF05[3])


# -- READ RECORD: errors (P5 table 33) -------------------------------------------------------------------------


@pytest.mark.parametrize("apdu", ["00B2082C12", "00B2FF2C12", "00B2082812", "00B2002812"])
def test_missing_record_6A83(s, apdu):
    assert s.tx(apdu) == "6A83"


@pytest.mark.parametrize("apdu", ["00B2010412", "00B2010012"])
def test_no_current_ef_6986(s, apdu):
    # right after selecting the DDF no EF is current
    assert s.tx(apdu) == "6986"


@pytest.mark.parametrize("sfi", [1, 2, 3, 4, 9, 0x1D])
def test_unknown_sfi_6A82(s, sfi):
    assert s.tx(f"00B201{sfi << 3 | 4:02X}12") == "6A82"


def test_read_record_on_a_transparent_ef_6981(s):
    assert s.tx(SELECT_EF07) == "9000"
    assert s.tx("00B2010412") == "6981"
    assert s.tx(f"00B201{7 << 3 | 4:02X}12") == "6981"


def test_read_record_mode_111_6A86(s):
    assert s.tx("00B2012F12") == "6A86"


def test_sfi_is_relative_to_the_current_df(s):
    # SFIs are unique within an application (P3 §5.2.3): in DF01 the DIR's SFI 30 names nothing
    assert s.tx("00A4040006D15600000500") == "6F088406D156000005009000"  # DF01
    assert s.tx("00B201F412") == "6A82"
    s.select()
    read(s, 1, 0x1E << 3 | 4, dir_record(*DIR_ENTRIES[0]))


# -- UPDATE RECORD (P5 §6.13): SSSE EF05/EF06 under UKSSSE (V2 table 3), CLA 00 after external
# -- authentication (P7 §7.2-7.3), CLA 04 with a MAC under STK (P10 STK row, P7 §7.4) ------------------------

NEW_NUMBER = "0709" + h(b"D2143569X")  # V2 appendix A's example card number


def test_update_record_needs_ukssse(s):
    assert s.tx("00DC072C0B" + NEW_NUMBER) == "6982"
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx("00DC072C0B" + NEW_NUMBER) == "6982"  # RKSSSE is a read key
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx("00DC072C0B" + NEW_NUMBER) == "6982"
    read(s, 7, 5 << 3 | 4, EF05[7])


def test_update_record_by_number(s):
    assert s.external_auth("ssse_uk") == "9000"
    assert s.tx("00DC072C0B" + NEW_NUMBER) == "9000"
    read(s, 7, 5 << 3 | 4, NEW_NUMBER)
    s.power_cycle()
    s.select()
    read(s, 7, 5 << 3 | 4, NEW_NUMBER)  # persistent


def test_update_record_by_identifier_modes(s):
    assert s.external_auth("ssse_uk") == "9000"
    assert s.tx("00DC02280302" "0134") == "9000"  # first occurrence of 02 in SFI 5: card type '4'
    read(s, 2, 5 << 3 | 4, "020134")
    assert s.tx("00DC07290B" + NEW_NUMBER) == "9000"  # last occurrence of 07
    read(s, 7, 5 << 3 | 4, NEW_NUMBER)
    assert s.tx(SELECT_EF05) == "9000"
    read(s, 1, 0b000, EF05[1])  # pointer -> record 1
    assert s.tx("00DC02020302" "0131") == "9000"  # next occurrence of 02 after record 1, current EF
    read(s, 2, 0b100, "020131")
    read(s, 4, 0b000, EF05[4])  # pointer -> record 4
    assert s.tx("00DC02030302" "0132") == "9000"  # previous occurrence of 02 before record 4
    read(s, 2, 0b100, "020132")


def test_update_record_current_record(s):
    # P1 00 = the current record (P5 §6.13)
    assert s.external_auth("ssse_uk") == "9000"
    assert s.tx(SELECT_EF05) == "9000"
    read(s, 2, 0b000, EF05[2])
    assert s.tx("00DC0004030201" "32") == "9000"
    read(s, 2, 0b100, "020132")


def test_update_record_errors(s):
    assert s.external_auth("ssse_uk") == "9000"
    # 6A85: Lc inconsistent with the TLV (P5 tables 43-45)
    assert s.tx("00DC072C0B070A" + NEW_NUMBER[4:]) == "6A85"
    # 6A84: a record number one past the last adds a record, but EF05 holds its 7 items and no more
    assert s.tx("00DC082C030201" "33") == "6A84"
    # 6A80 (P5 table 5, incorrect data): the record's identifier is not the P1 of an identifier mode
    assert s.tx("00DC0728030201" "33") == "6A80"
    # nothing was written
    for number in (2, 7):
        read(s, number, 5 << 3 | 4, EF05[number])


def test_update_record_sm_cla_04_with_mac(both):
    s = both
    assert s.external_auth("ssse_uk") == "9000"
    good = s.mac_apdu("04DC072C", bytes.fromhex(NEW_NUMBER))
    assert good[8:10] == "0F"  # Lc = 11 + 4 MAC bytes (P4 §8.2.1)
    assert s.tx(good) == "9000"
    read(s, 7, 5 << 3 | 4, NEW_NUMBER)


def test_update_record_sm_wrong_mac_6988_writes_nothing(both):
    s = both
    assert s.external_auth("ssse_uk") == "9000"
    assert s.tx(s.mac_apdu("04DC072C", bytes.fromhex(NEW_NUMBER), corrupt=True)) == "6988"
    read(s, 7, 5 << 3 | 4, EF05[7])


def test_update_record_sm_mac_under_another_key_6988(s):
    assert s.external_auth("ssse_uk") == "9000"
    assert s.tx(s.mac_apdu("04DC072C", bytes.fromhex(NEW_NUMBER), key="ssse_puk")) == "6988"
    read(s, 7, 5 << 3 | 4, EF05[7])


def test_update_record_sm_without_challenge_6984(s):
    assert s.external_auth("ssse_uk") == "9000"
    apdu = s.mac_apdu("04DC072C", bytes.fromhex(NEW_NUMBER))
    assert s.tx(apdu) == "9000"
    assert s.tx(apdu) == "6984"  # the challenge is single-use (P5 §6.5.1)


def test_update_record_of_ef06_under_ukssse(s):
    name = "0A01" "32"  # gender '2'
    assert s.external_auth("ssse_uk") == "9000"
    assert s.tx("00DC0A3003" + name) == "9000"
    assert s.external_auth("ssse_rk") == "9000"
    read(s, 0x0A, 6 << 3, name)


def test_process_key_of_the_mac_comes_from_the_last_challenge(s):
    # P4 §8.2.3: the MAC key is the process key of the challenge just before; an older one fails
    assert s.external_auth("ssse_uk") == "9000"
    first = s.challenge()
    s.challenge()
    ks = oracle.process_key("sm4", s.key("ssse_stk"), first)
    header = bytes.fromhex("04DC072C0F") + bytes.fromhex(NEW_NUMBER)
    mac = oracle.mac4("sm4", ks, header)
    assert s.tx(h(header + mac)) == "6988"



def test_ef07_needs_rkssse_on_a_200_card_too():
    # V2 table 3: EF07/EF08 read under RKSSSE in generation 2 already; only EF06 differs (SR §10.2)
    s = Session(card=Card.from_profile(generation2_profile(), date=CARD_DATE))
    s.select()
    assert s.tx("00B0870001") == "6982"
    assert s.tx("00B0880001") == "6982"


# -- UPDATE RECORD on a cyclic file: DF04 EF15 special settlement (3-byte untagged records, >= 8; write
# -- UK2DF04, read PIN or RK1DF04; V2 tables 7 and 9, docs/card/files.md §2.4) --------------------------------------------

EF15_READ = 0x15 << 3 | 4  # record number in SFI 0x15
EF15_ADD = 0x15 << 3 | 3  # mode 011: on a cyclic file "previous occurrence" adds a record (P5 §6.13)


def test_cyclic_file_adds_newest_first(s):
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.external_auth("df04_uk2") == "9000"
    for n in range(1, 4):
        assert s.tx(f"00DC00{EF15_ADD:02X}03{n:04X}31") == "9000"  # seq n, category '1'
    assert s.external_auth("df04_rk1") == "9000"
    for number, seq in ((1, 3), (2, 2), (3, 1)):  # record 1 is the newest (P3 §5.3.2)
        read(s, number, EF15_READ, f"{seq:04X}31")
    assert s.tx(f"00B204{EF15_READ:02X}03") == "6A83"


def test_cyclic_file_keeps_its_depth(s):
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.external_auth("df04_uk2") == "9000"
    for n in range(1, 10):
        assert s.tx(f"00DC00{EF15_ADD:02X}03{n:04X}32") == "9000"
    assert s.external_auth("df04_rk1") == "9000"
    read(s, 1, EF15_READ, "000932")
    read(s, 8, EF15_READ, "000232")  # 8 records: the oldest dropped out
    assert s.tx(f"00B209{EF15_READ:02X}03") == "6A83"


def test_cyclic_record_of_the_wrong_length_6700(s):
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.external_auth("df04_uk2") == "9000"
    assert s.tx(f"00DC00{EF15_ADD:02X}04" "00013100") == "6700"


def test_update_record_sm_in_df04_uses_stkdf04(both):
    # P9 appendix B (docs/card/security.md §1): STKDF04 is DF04's MAC key (card id 82)
    s = both
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.external_auth("df04_uk2") == "9000"
    record = bytes.fromhex("9204" "00000500")
    assert s.tx(s.mac_apdu("04DC9230", record, key="ssse_stk")) == "6988"
    assert s.tx(s.mac_apdu("04DC9230", record, key="df04_stk")) == "9000"
    assert s.tx(VERIFY_OK) == "9000"
    assert s.external_auth("df04_rk1") == "9000"
    read(s, 0x92, 6 << 3, h(record))
