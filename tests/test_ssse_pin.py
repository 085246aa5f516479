"""The SSSE PIN (SPEC §2.3, §1 volatile state): VERIFY, CHANGE PIN, try counter, session, chip.pin."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chip.pin import pack, unpack, valid_digits, well_formed
from conftest import tx

SELECT_SSSE = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF"
FCI_SSSE = "6F19840F7378312E73682EC9E7BBE1B1A3D5CFA5069F0C03860104"
VERIFY_OK = "0020000003123456"
VERIFY_BAD = "0020000003111111"
VERIFY_STATUS = "00200000"  # no data: ask the verification status (7816-4 VERIFY, case 1)
PROTECTED_READ = "00B2083000"  # EF06 item 08 by identifier (SPEC §2.1)
ITEM_08 = "0812" + "110101199003071233".encode().hex().upper()


@pytest.fixture
def ssse(reader):
    assert tx(reader, SELECT_SSSE) == FCI_SSSE + "9000"
    return reader


# -- VERIFY ---------------------------------------------------------------------------------


def test_verify_right_pin_opens_protected_reads(ssse):
    assert tx(ssse, PROTECTED_READ) == "6982"
    assert tx(ssse, VERIFY_OK) == "9000"
    assert tx(ssse, PROTECTED_READ) == ITEM_08 + "9000"
    assert tx(ssse, "00B2052C00") == "050420261121" "9000"


def test_six_wrong_pins_block(ssse):
    # SPEC §2.3: 6 tries by default, 63Cx = x tries left, then 6983 for every VERIFY
    for left in range(5, -1, -1):
        assert tx(ssse, VERIFY_BAD) == f"63C{left:X}"
    assert tx(ssse, VERIFY_OK) == "6983"
    assert tx(ssse, VERIFY_BAD) == "6983"
    assert tx(ssse, VERIFY_STATUS) == "6983"
    assert tx(ssse, PROTECTED_READ) == "6982"


def test_blocked_pin_stays_blocked_across_reset(ssse):
    for _ in range(6):
        tx(ssse, VERIFY_BAD)
    ssse.power_off()
    ssse.reset()
    assert tx(ssse, SELECT_SSSE) == FCI_SSSE + "9000"
    assert tx(ssse, VERIFY_OK) == "6983"


def test_right_pin_restores_the_counter(ssse):
    assert tx(ssse, VERIFY_BAD) == "63C5"
    assert tx(ssse, VERIFY_BAD) == "63C4"
    assert tx(ssse, VERIFY_BAD) == "63C3"
    assert tx(ssse, VERIFY_OK) == "9000"
    assert tx(ssse, VERIFY_BAD) == "63C5"


def test_right_pin_on_last_try(ssse):
    for left in range(5, 0, -1):
        assert tx(ssse, VERIFY_BAD) == f"63C{left:X}"
    assert tx(ssse, VERIFY_OK) == "9000"
    assert tx(ssse, VERIFY_STATUS) == "9000"
    assert tx(ssse, VERIFY_BAD) == "63C5"


def test_try_counter_is_persistent_across_reset(ssse):
    # SPEC §1: counters survive reset and power-down
    assert tx(ssse, VERIFY_BAD) == "63C5"
    ssse.power_off()
    ssse.reset()
    tx(ssse, SELECT_SSSE)
    assert tx(ssse, VERIFY_STATUS) == "63C5"
    assert tx(ssse, VERIFY_BAD) == "63C4"


def test_verify_without_data(ssse):
    assert tx(ssse, VERIFY_STATUS) == "63C6"
    assert tx(ssse, VERIFY_BAD) == "63C5"
    assert tx(ssse, VERIFY_STATUS) == "63C5"  # asking costs no try
    assert tx(ssse, VERIFY_STATUS) == "63C5"
    assert tx(ssse, VERIFY_OK) == "9000"
    assert tx(ssse, VERIFY_STATUS) == "9000"


def test_wrong_pin_after_success_drops_the_verified_state(ssse):
    assert tx(ssse, VERIFY_OK) == "9000"
    assert tx(ssse, VERIFY_BAD) == "63C5"
    assert tx(ssse, VERIFY_STATUS) == "63C5"
    assert tx(ssse, PROTECTED_READ) == "6982"


@pytest.mark.parametrize("pin", ["1234AB", "A23456", "12F456", "FFFFFF", "123F56"])
def test_non_bcd_pin_is_6A80_and_costs_no_try(ssse, pin):
    assert tx(ssse, "0020000003" + pin) == "6A80"
    assert tx(ssse, VERIFY_STATUS) == "63C6"
    assert tx(ssse, VERIFY_BAD) == "63C5"


@pytest.mark.parametrize("data", ["12", "12345678901234", "1234567890123456"])
def test_pin_length_out_of_range_is_6700(ssse, data):
    # SPEC §2.3: the PIN is 2-6 bytes of packed BCD
    assert tx(ssse, f"00200000{len(data) // 2:02X}{data}") == "6700"
    assert tx(ssse, VERIFY_STATUS) == "63C6"


@pytest.mark.parametrize("p2", ["01", "80", "81", "FF"])
def test_verify_unknown_reference_6A88(ssse, p2):
    assert tx(ssse, f"002000{p2}03123456") == "6A88"
    assert tx(ssse, VERIFY_STATUS) == "63C6"


def test_verify_at_mf_finds_no_pin(reader):
    assert tx(reader, VERIFY_OK) == "6A88"


def test_short_pins_compare_as_packed(ssse):
    # a 4-digit PIN is a well-formed candidate but not the PIN: a try is spent
    assert tx(ssse, "00200000021234") == "63C5"
    assert tx(ssse, "002000000312345F") == "63C4"  # 12345 is not 123456


# -- the verified state is volatile ----------------------------------------------------------


def test_reset_clears_verified_state(ssse):
    assert tx(ssse, VERIFY_OK) == "9000"
    ssse.reset()
    assert tx(ssse, SELECT_SSSE) == FCI_SSSE + "9000"
    assert tx(ssse, PROTECTED_READ) == "6982"
    assert tx(ssse, VERIFY_STATUS) == "63C6"


def test_power_off_then_reset_clears_verified_state(ssse):
    assert tx(ssse, VERIFY_OK) == "9000"
    ssse.power_off()
    ssse.reset()
    assert tx(ssse, SELECT_SSSE) == FCI_SSSE + "9000"
    assert tx(ssse, PROTECTED_READ) == "6982"


@pytest.mark.parametrize("leave", ["00A40000023F00", "00A4000000", "00A4000C023F00"])
def test_leaving_the_application_clears_verified_state(ssse, leave):
    assert tx(ssse, VERIFY_OK) == "9000"
    tx(ssse, leave)
    assert tx(ssse, SELECT_SSSE) == FCI_SSSE + "9000"
    assert tx(ssse, PROTECTED_READ) == "6982"
    assert tx(ssse, VERIFY_STATUS) == "63C6"


def test_selecting_an_ef_keeps_verified_state(ssse):
    assert tx(ssse, VERIFY_OK) == "9000"
    assert tx(ssse, "00A4020C02EF06") == "9000"
    assert tx(ssse, "00B2010400") == ITEM_08 + "9000"
    assert tx(ssse, "00A4020C02EF05") == "9000"
    assert tx(ssse, PROTECTED_READ) == ITEM_08 + "9000"


@pytest.mark.parametrize("leave", ["00A40000023F00", "00A4000000", "00A4030000"])
def test_leaving_then_coming_back_by_fid_clears_verified_state(ssse, leave):
    # coming back by FID (not by DF name): the session ended when the application was left
    assert tx(ssse, VERIFY_OK) == "9000"
    assert tx(ssse, leave) == "6F0483023F009000"
    assert tx(ssse, "00A4000002DDF1") == FCI_SSSE + "9000"
    assert tx(ssse, PROTECTED_READ) == "6982"
    assert tx(ssse, VERIFY_STATUS) == "63C6"


@pytest.mark.parametrize("reselect", [SELECT_SSSE, "00A4040C0F7378312E73682EC9E7BBE1B1A3D5CF",
                                      "00A40400077378312E73682E"])
def test_reselecting_the_application_by_name_clears_verified_state(ssse, reselect):
    # docs/decisions.md: re-selecting an application by its DF name starts a new session (Java Card)
    assert tx(ssse, VERIFY_OK) == "9000"
    assert tx(ssse, reselect)[-4:] == "9000"
    assert tx(ssse, PROTECTED_READ) == "6982"
    assert tx(ssse, VERIFY_STATUS) == "63C6"


@pytest.mark.parametrize("route", [
    ["00A4000002DDF1"],  # the DDF by FID while inside the SSSE
    ["00A4080C02DDF1"],  # the DDF by path from the MF
    ["00A4010002DF04", "00A4030000"],  # DF04, then back to the DDF by P1=03 (parent)
    ["00A4040006D15600000504", "00A4030000"],  # DF04 by its DF name (not the application's), then the parent
    ["00A4080004DDF1EF06"],  # an EF by path
    ["00A4090002EF05"],  # an EF by path from the current DF
    ["00A4000002EF06"],  # an EF by FID with P1=00
    ["00A4010002DF01", "00A4000002DDF1"],  # from DF01 to the DDF by FID
])
def test_moving_inside_the_application_keeps_verified_state(ssse, route):
    # docs/decisions.md: selecting files inside the application, by FID, path or P1=03, keeps the session
    assert tx(ssse, VERIFY_OK) == "9000"
    for apdu in route:
        assert tx(ssse, apdu)[-4:] == "9000", apdu
    assert tx(ssse, "00A4020C02EF06") == "9000"  # back to a place where EF06 is reachable
    assert tx(ssse, PROTECTED_READ) == ITEM_08 + "9000"
    assert tx(ssse, VERIFY_STATUS) == "9000"


def test_failed_command_keeps_verified_state(ssse):
    assert tx(ssse, VERIFY_OK) == "9000"
    assert tx(ssse, "00B2082C00") == "6A83"
    assert tx(ssse, "00FF000000") == "6D00"
    assert tx(ssse, PROTECTED_READ) == ITEM_08 + "9000"


# -- CHANGE PIN ----------------------------------------------------------------------------------


def test_change_pin(ssse):
    assert tx(ssse, "805E010007123456FF654321") == "9000"
    assert tx(ssse, VERIFY_OK) == "63C5"  # the old PIN is no longer the PIN
    assert tx(ssse, "0020000003654321") == "9000"  # the new one is; counter restored
    assert tx(ssse, VERIFY_BAD) == "63C5"


def test_change_pin_is_persistent(ssse):
    assert tx(ssse, "805E010007123456FF654321") == "9000"
    ssse.power_off()
    ssse.reset()
    tx(ssse, SELECT_SSSE)
    assert tx(ssse, "0020000003654321") == "9000"


def test_change_pin_with_wrong_old_pin(ssse):
    assert tx(ssse, "805E010007111111FF654321") == "63C5"
    assert tx(ssse, "805E010007111111FF654321") == "63C4"
    assert tx(ssse, "0020000003654321") == "63C3"  # not changed
    assert tx(ssse, VERIFY_OK) == "9000"
    assert tx(ssse, VERIFY_BAD) == "63C5"


def test_change_pin_when_blocked(ssse):
    for _ in range(6):
        tx(ssse, VERIFY_BAD)
    assert tx(ssse, "805E010007123456FF654321") == "6983"
    assert tx(ssse, "0020000003654321") == "6983"


def test_change_pin_restores_the_counter(ssse):
    assert tx(ssse, VERIFY_BAD) == "63C5"
    assert tx(ssse, VERIFY_BAD) == "63C4"
    assert tx(ssse, "805E010007123456FF654321") == "9000"
    assert tx(ssse, VERIFY_BAD) == "63C5"


def test_change_to_odd_length_pin(ssse):
    # 12345 packs as 12 34 5F (SPEC §2.3 packed BCD, F-padded)
    assert tx(ssse, "805E010007123456FF12345F") == "9000"
    assert tx(ssse, "002000000312345F") == "9000"
    assert tx(ssse, "0020000003123450") == "63C5"
    assert tx(ssse, "00200000021234") == "63C4"
    # and back, with the odd-length PIN as the old one
    assert tx(ssse, "805E01000712345FFF123456") == "9000"
    assert tx(ssse, VERIFY_OK) == "9000"


def test_change_pin_to_longest_and_shortest(ssse):
    assert tx(ssse, "805E01000A123456FF123456789012") == "9000"  # 12 digits
    assert tx(ssse, "0020000006123456789012") == "9000"
    assert tx(ssse, "805E010009123456789012FF1234") == "9000"  # 4 digits
    assert tx(ssse, "00200000021234") == "9000"


@pytest.mark.parametrize("apdu, sw", [
    ("805E0100", "6700"),  # no data at all
    ("805E010000", "6700"),
    ("805E010003123456", "6A80"),  # no FF separator
    ("805E01000412345FFF", "6A80"),  # empty new PIN
    ("805E010004FF123456", "6A80"),  # empty old PIN
    ("805E010007123456FF1234AB", "6A80"),
    ("805E010005123456FF12", "6A80"),  # new PIN of 2 digits
    ("805E010008123456FF12345F00", "6A80"),  # F pad before the end of the new PIN
    ("805E010007123456FF654321"[:-2], "6700"),  # Lc 7, 6 bytes of data
])
def test_change_pin_malformed(ssse, apdu, sw):
    assert tx(ssse, apdu) == sw
    assert tx(ssse, VERIFY_STATUS) == "63C6"  # nothing spent
    assert tx(ssse, VERIFY_OK) == "9000"  # nothing changed


def test_change_pin_outside_ssse(reader):
    assert tx(reader, "805E010007123456FF654321") == "6D00"


# -- chip.pin unit tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("digits, packed", [
    ("123456", "123456"), ("12345", "12345F"), ("1234", "1234"),
    ("888888", "888888"), ("123456789012", "123456789012"), ("1234567", "1234567F"),
])
def test_pack_unpack(digits, packed):
    assert pack(digits).hex().upper() == packed
    assert unpack(bytes.fromhex(packed)) == digits


@pytest.mark.parametrize("data", ["", "AB", "1A34", "F234", "12F4", "FF", "1234FF", "12345A"])
def test_unpack_rejects(data):
    assert unpack(bytes.fromhex(data)) is None


@pytest.mark.parametrize("data, ok", [
    ("1234", True), ("123456", True), ("12345F", True), ("123456789012", True), ("12345678901F", True),
    ("123F", False),  # 3 digits
    ("12", False), ("12345678901234", False),  # 1 and 7 bytes
    ("", False),
    ("1234AB", False), ("12F456", False), ("F23456", False), ("1234FF", False), ("12345A", False),
    ("0000", True), ("9999", True),
])
def test_well_formed(data, ok):
    assert well_formed(bytes.fromhex(data)) is ok


@settings(max_examples=300)
@given(st.text(alphabet="0123456789", min_size=4, max_size=12))
def test_pack_then_well_formed_and_unpack(digits):
    packed = pack(digits)
    assert len(packed) == (len(digits) + 1) // 2
    assert well_formed(packed)
    assert unpack(packed) == digits
    assert valid_digits(digits)


@settings(max_examples=500)
@given(st.binary(min_size=2, max_size=6))
def test_well_formed_iff_unpacks_to_4_to_12_digits(data):
    digits = unpack(data)
    assert well_formed(data) == (digits is not None and 4 <= len(digits) <= 12 and pack(digits) == data)
