"""The SSSE PIN: VERIFY (P5 §6.14), CHANGE PIN (P5 §6.3), PIN CHANGE/UNBLOCK `84 24` (P5 §6.8,
P7 §13.3), its lifetime (P7 §5.6-5.8), and chip.kernel.pin's coding helpers (cn, P5 §6.3.1).

docs/decisions.md: S10 (6 PIN tries, PUK tries 3), S11 (VERIFY without data), S2/S3/S4 (reset
and unblock after external authentication with PUK, enciphered LD||PIN cn and MAC under the
STK process key of the last challenge); docs/card/lifecycle.md §1 (CHANGE PIN away from 123456
activates). Ciphertexts and MACs come from tests/oracle.py (helpers.Session). T1 and T2 are the
real cards' traces of tests/test_real_traces.py.
"""

import pytest
from helpers import (
    SELECT_DF04,
    SELECT_EF05,
    SELECT_FIN,
    SELECT_SSSE,
    VERIFY_BAD,
    VERIFY_OK,
    VERIFY_STATUS,
    Session,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from chip.kernel.pin import pack, unpack, valid_digits, well_formed

CHANGE_TO_NEW = "805E010007123456FF654321"
VERIFY_NEW = "0020000003654321"
DF04_EF05_REGION = "8403110100"  # DF04 EF05 item 84, medical-insurance region cn 3 (V2 table 9)
READ_DF04_REGION = "00B2842805"  # identifier 84 in SFI 5 of DF04: PIN or RK1DF04 (V2 table 7)


@pytest.fixture
def s(sm4):
    """This file is about the default (SM4, 3.00) card."""
    return sm4


def gdata(s, tag: str) -> str:
    return s.tx(f"80CA{tag}00")


# -- VERIFY ------------------------------------------------------------------------------------------


def test_verify_right_pin(s):
    # T2: 00 20 00 00 03 123456 -> 9000 (the initial PIN of the default profile, docs/card/README.md)
    assert s.tx(VERIFY_OK) == "9000"


def test_six_wrong_pins_block(s):
    # P5 §6.14.5: 63Cx = x tries left, 63C0 no more; then 6983 for every VERIFY (P7 §5.8)
    for left in range(5, -1, -1):
        assert s.tx(VERIFY_BAD) == f"63C{left:X}"
    assert s.tx(VERIFY_OK) == "6983"
    assert s.tx(VERIFY_BAD) == "6983"
    assert s.tx(VERIFY_STATUS) == "6983"


def test_blocked_pin_stays_blocked_after_power_off(s):
    for _ in range(6):
        s.tx(VERIFY_BAD)
    s.power_cycle()
    s.select()
    assert s.tx(VERIFY_OK) == "6983"


def test_right_pin_restores_the_counter(s):
    assert s.tx(VERIFY_BAD) == "63C5"
    assert s.tx(VERIFY_BAD) == "63C4"
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx(VERIFY_BAD) == "63C5"


def test_right_pin_on_the_last_try(s):
    for left in range(5, 0, -1):
        assert s.tx(VERIFY_BAD) == f"63C{left:X}"
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx(VERIFY_STATUS) == "63C6"


def test_counter_is_persistent(s):
    assert s.tx(VERIFY_BAD) == "63C5"
    s.power_cycle()
    s.select()
    assert s.tx(VERIFY_STATUS) == "63C5"
    assert s.tx(VERIFY_BAD) == "63C4"


def test_verify_without_data_is_63Cx_verified_or_not(s):
    # P5 §6.14.5, P7 §5.6, docs/decisions.md S11: 63Cx with the counter whenever a PIN is stored, no try used
    assert s.tx(VERIFY_STATUS) == "63C6"
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx(VERIFY_STATUS) == "63C6"  # verified: still 63C6, never 9000
    assert s.tx(VERIFY_BAD) == "63C5"
    assert s.tx(VERIFY_STATUS) == "63C5"
    assert s.tx(VERIFY_STATUS) == "63C5"


def test_verify_without_data_keeps_the_verified_state(s):
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx(VERIFY_STATUS) == "63C6"
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.tx(READ_DF04_REGION) == DF04_EF05_REGION + "9000"


def test_verify_without_data_when_no_pin_is_stored_is_9000(s):
    # P5 §6.3: CHANGE PIN may leave no PIN; P5 §6.14.5: then VERIFY without data is 9000, and a
    # presented PIN fails ("包括卡中存放的个人密码为空的情况")
    assert s.tx("805E010004123456FF") == "9000"
    assert s.tx(VERIFY_STATUS) == "9000"
    assert s.tx(VERIFY_OK) == "63C5"
    assert s.tx(VERIFY_STATUS) == "9000"


@pytest.mark.parametrize("digits", ["1234", "12345", "1234567890123", "1234567890123456"])
def test_verify_accepts_4_to_16_digits(s, digits):
    # P5 table 46: Lc 02-08 (4-16 cn digits); P5 §6.3: CHANGE PIN Lc 03-11
    new = pack(digits).hex().upper()
    data = "123456FF" + new
    assert s.tx(f"805E0100{len(data) // 2:02X}{data}") == "9000"
    assert s.tx(f"00200000{len(new) // 2:02X}{new}") == "9000"


@pytest.mark.parametrize("data", ["12", "123456789012345678"])
def test_verify_lc_outside_02_08_is_6700(s, data):
    assert s.tx(f"00200000{len(data) // 2:02X}{data}") == "6700"
    assert s.tx(VERIFY_STATUS) == "63C6"  # no try spent


def test_short_pin_is_a_wrong_pin(s):
    assert s.tx("00200000021234") == "63C5"
    assert s.tx("002000000312345F") == "63C4"  # 12345 is not 123456


@pytest.mark.parametrize("pin", ["1234AB", "A23456", "12F456", "FFFFFF"])
def test_malformed_pin_never_verifies(s, pin):
    # cn: digits, only the last nibble may be F (P5 §6.3.1)
    assert s.tx("0020000003" + pin) != "9000"


def test_verify_p1_6A86(s):
    assert s.tx("0020010003123456") == "6A86"
    assert s.tx(VERIFY_STATUS) == "63C6"


@pytest.mark.parametrize("p2", ["01", "80"])
def test_verify_unknown_reference_6A88(s, p2):
    # P5 §6.14: P2 00; another reference names no PIN (6A88 in the VERIFY errors)
    assert s.tx(f"002000{p2}03123456") == "6A88"
    assert s.tx(VERIFY_STATUS) == "63C6"


# -- the PIN's lifetime: until power-off (P7 §5.8) ------------------------------------------------------


def test_pin_kept_across_selections_until_power_off(s):
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx(SELECT_EF05) == "9000"
    s.select()
    assert s.tx(SELECT_FIN)[-4:] == "9000"  # another application
    s.select()
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.tx(READ_DF04_REGION) == DF04_EF05_REGION + "9000"
    s.power_cycle()
    s.select()
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.tx(READ_DF04_REGION) == "6982"


def test_warm_reset_clears_the_pin(s):
    assert s.tx(VERIFY_OK) == "9000"
    s.reset()
    s.select()
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.tx(READ_DF04_REGION) == "6982"


def test_wrong_pin_after_success_drops_the_verified_state(s):
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx(VERIFY_BAD) == "63C5"
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.tx(READ_DF04_REGION) == "6982"


# -- CHANGE PIN (80 5E 01 00) ---------------------------------------------------------------------------


def test_change_pin(s):
    assert s.tx(CHANGE_TO_NEW) == "9000"
    assert s.tx(VERIFY_OK) == "63C5"
    assert s.tx(VERIFY_NEW) == "9000"


def test_change_pin_is_persistent(s):
    assert s.tx(CHANGE_TO_NEW) == "9000"
    s.power_cycle()
    s.select()
    assert s.tx(VERIFY_NEW) == "9000"


def test_change_pin_with_wrong_current_pin(s):
    assert s.tx("805E010007111111FF654321") == "63C5"
    assert s.tx("805E010007111111FF654321") == "63C4"
    assert s.tx(VERIFY_NEW) == "63C3"  # not changed
    assert s.tx(VERIFY_OK) == "9000"


def test_change_pin_when_blocked_6983(s):
    for _ in range(6):
        s.tx(VERIFY_BAD)
    assert s.tx(CHANGE_TO_NEW) == "6983"
    assert s.tx(VERIFY_NEW) == "6983"


def test_change_pin_restores_the_counter(s):
    # P5 §6.3: the new PIN is stored and the counter set to its maximum
    assert s.tx(VERIFY_BAD) == "63C5"
    assert s.tx(CHANGE_TO_NEW) == "9000"
    assert s.tx(VERIFY_STATUS) == "63C6"


def test_change_pin_to_an_odd_number_of_digits(s):
    assert s.tx("805E010007123456FF12345F") == "9000"
    assert s.tx("002000000312345F") == "9000"
    assert s.tx("805E01000712345FFF123456") == "9000"
    assert s.tx(VERIFY_OK) == "9000"


def test_change_pin_activates(s):
    # docs/card/lifecycle.md §1: CHANGE PIN away from the initial PIN activates; GET DATA DF7E shows it
    assert gdata(s, "DF7E") == "DF7E0100" "9000"
    assert s.tx(CHANGE_TO_NEW) == "9000"
    assert gdata(s, "DF7E") == "DF7E0101" "9000"
    s.power_cycle()
    s.select()
    assert gdata(s, "DF7E") == "DF7E0101" "9000"


def test_change_pin_to_the_initial_pin_does_not_activate(s):
    assert s.tx("805E010007123456FF123456") == "9000"
    assert gdata(s, "DF7E") == "DF7E0100" "9000"


def test_failed_change_pin_does_not_activate(s):
    assert s.tx("805E010007111111FF654321") == "63C5"
    assert gdata(s, "DF7E") == "DF7E0100" "9000"


@pytest.mark.parametrize("apdu, sw", [
    ("805E0100", "6700"),  # no data
    ("805E010002" "1234", "6700"),  # Lc below 03
    ("805E010012" + "123456FF" + "12" * 14, "6700"),  # Lc 12: above 11
])
def test_change_pin_wrong_length(s, apdu, sw):
    assert s.tx(apdu) == sw
    assert s.tx(VERIFY_STATUS) == "63C6"
    assert s.tx(VERIFY_OK) == "9000"


def test_change_pin_p1_00_is_not_a_pin_reload(s):
    # P5 §6.3: 80 5E P1 01; the old "RELOAD PIN" 80 5E 00 00 is not in P5
    assert s.tx("805E000003654321") == "6A86"
    assert s.tx(VERIFY_OK) == "9000"


def test_change_pin_outside_the_ssse(s):
    s.tx("00A40000023F00")
    assert s.tx(CHANGE_TO_NEW) == "6D00"


# -- PIN CHANGE/UNBLOCK 84 24 00 01 (reset): PUK, then STK (docs/decisions.md S2/S3) -------------------------


def reset_pin(s, pin_cn: bytes, **kwargs) -> str:
    assert s.external_auth("ssse_puk") == "9000"
    return s.tx(s.pin_reset_apdu(pin_cn, **kwargs))


def test_pin_reset_sm4_lc_14():
    s = Session("default")
    s.select()
    for sw in ("63C5", "63C4", "63C3"):
        assert s.tx(VERIFY_BAD) == sw
    assert s.external_auth("ssse_puk") == "9000"
    apdu = s.pin_reset_apdu(pack("246810"))
    assert apdu[8:10] == "14"  # one 16-byte block + MAC (P5 table 26; T1 step 19)
    assert s.tx(apdu) == "9000"
    assert s.tx(VERIFY_STATUS) == "63C6"  # counter reset
    assert s.tx(VERIFY_OK) == "63C5"  # PIN replaced
    assert s.tx("0020000003246810") == "9000"


def test_pin_reset_des_6_digits_lc_0C():
    s = Session("default-3des")
    s.select()
    assert s.external_auth("ssse_puk") == "9000"
    apdu = s.pin_reset_apdu(pack("246810"))
    assert apdu[8:10] == "0C"  # 03 24 68 10 80 00 00 00: one DES block + MAC (SR §8.25)
    assert s.tx(apdu) == "9000"
    assert s.tx("0020000003246810") == "9000"


def test_pin_reset_des_16_digits_two_blocks_lc_14():
    # P4 §8.3: LD || 8 bytes = 9 bytes -> two DES blocks, Lc 14
    s = Session("default-3des")
    s.select()
    assert s.external_auth("ssse_puk") == "9000"
    apdu = s.pin_reset_apdu(pack("1234567890123456"))
    assert apdu[8:10] == "14"
    assert s.tx(apdu) == "9000"
    assert s.tx("00200000081234567890123456") == "9000"


def test_pin_reset_unblocks_a_blocked_pin(both):
    s = both
    for _ in range(6):
        s.tx(VERIFY_BAD)
    assert s.tx(VERIFY_OK) == "6983"
    assert reset_pin(s, pack("1234")) == "9000"
    assert s.tx(VERIFY_STATUS) == "63C6"
    assert s.tx("00200000021234") == "9000"


def test_pin_reset_needs_puk_authentication(both):
    s = both
    assert s.tx(s.pin_reset_apdu(pack("246810"))) == "6982"
    assert s.external_auth("ssse_bk") == "9000"  # another key is not PUK
    assert s.tx(s.pin_reset_apdu(pack("246810"))) == "6982"
    assert s.tx(VERIFY_OK) == "9000"


def test_pin_reset_wrong_mac_6988_consumes_no_try(both):
    s = both
    assert s.tx(VERIFY_BAD) == "63C5"
    assert reset_pin(s, pack("246810"), corrupt=True) == "6988"
    assert s.tx(VERIFY_STATUS) == "63C5"  # PIN counter untouched, PIN unchanged
    assert s.tx("0020000003246810") == "63C4"
    assert s.tx(VERIFY_OK) == "9000"
    s.challenge()
    assert s.tx("0082000610" + "00" * 16) == "63C2"  # PUK still had all 3 tries (docs/decisions.md S10)


def test_pin_reset_ciphertext_under_another_challenge_fails(s):
    # the card deciphers and MACs with the process key of its *last* challenge (P4 §8.2.3, §8.3.1)
    assert s.external_auth("ssse_puk") == "9000"
    apdu = s.pin_reset_apdu(pack("246810"))
    s.challenge()
    assert s.tx(apdu) == "6988"
    assert s.tx(VERIFY_OK) == "9000"


def test_pin_reset_without_challenge_6984(s):
    assert s.external_auth("ssse_puk") == "9000"
    apdu = s.pin_reset_apdu(pack("246810"))
    assert s.tx(apdu) == "9000"
    assert s.tx(apdu) == "6984"  # replay: the challenge was single-use


def test_pin_reset_does_not_activate(s):
    # docs/card/lifecycle.md §1: activation is CHANGE PIN or a medical write, not the issuer's reset
    assert reset_pin(s, pack("246810")) == "9000"
    assert gdata(s, "DF7E") == "DF7E0100" "9000"


def test_pin_reset_survives_a_reselect_between_puk_and_reset(s):
    # T1 steps 16-19 (GWI re-selects the SSSE after PUK) and P5 §6.11.1: the state is kept
    assert s.external_auth("ssse_puk") == "9000"
    s.select()
    assert s.tx(s.pin_reset_apdu(pack("246810"))) == "9000"
    assert s.tx("0020000003246810") == "9000"


# -- PIN CHANGE/UNBLOCK 84 24 00 00 (unblock): MAC only (docs/decisions.md S4) -------------------------------


def test_pin_unblock_restores_the_counter_not_the_pin(both):
    s = both
    for _ in range(6):
        s.tx(VERIFY_BAD)
    assert s.external_auth("ssse_puk") == "9000"
    apdu = s.mac_apdu("84240000")
    assert apdu[8:10] == "04"
    assert s.tx(apdu) == "9000"
    assert s.tx(VERIFY_STATUS) == "63C6"
    assert s.tx(VERIFY_BAD) == "63C5"  # still 123456
    assert s.tx(VERIFY_OK) == "9000"


def test_pin_unblock_needs_puk(both):
    s = both
    for _ in range(6):
        s.tx(VERIFY_BAD)
    assert s.tx(s.mac_apdu("84240000")) == "6982"
    assert s.tx(VERIFY_OK) == "6983"


def test_pin_unblock_wrong_mac_6988(both):
    s = both
    for _ in range(6):
        s.tx(VERIFY_BAD)
    assert s.external_auth("ssse_puk") == "9000"
    assert s.tx(s.mac_apdu("84240000", corrupt=True)) == "6988"
    assert s.tx(VERIFY_OK) == "6983"


def test_pin_unblock_mac_under_puk_is_wrong(s):
    # docs/decisions.md S4: the MAC is under the STK process key, not under PUK itself
    for _ in range(6):
        s.tx(VERIFY_BAD)
    assert s.external_auth("ssse_puk") == "9000"
    assert s.tx(s.mac_apdu("84240000", key="ssse_puk")) == "6988"


@pytest.mark.parametrize("header", ["84240100", "84240002"])
def test_pin_change_unblock_wrong_p1p2_6A86(s, header):
    assert s.keyed_mac("ssse_puk", header) == "6A86"


def test_pin_unblock_with_a_body_is_6700(s):
    # P5 table 24: P2 00 carries the MAC alone (Lc 04)
    assert s.keyed_mac("ssse_puk", "84240000", body=b"\x00") == "6700"


def test_puk_blocks_after_its_tries(s):
    # P7 §13.3: the PIN-unblock key locks after failed tries (3, docs/decisions.md S10)
    for sw in ("63C2", "63C1", "63C0"):
        assert s.external_auth("ssse_puk", corrupt=True) == sw
    assert s.external_auth("ssse_puk") == "6983"
    assert s.tx(s.pin_reset_apdu(pack("246810"))) == "6982"


def test_select_ssse_again_keeps_the_pin(s):
    # P5 §6.11.1: re-selecting the current DF keeps its security state
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx(SELECT_SSSE) == s.fci + "9000"
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.tx(READ_DF04_REGION) == DF04_EF05_REGION + "9000"


# -- chip.kernel.pin unit tests (cn coding, P5 §6.3.1) -------------------------------------------------------------


@pytest.mark.parametrize("digits, packed", [
    ("123456", "123456"), ("12345", "12345F"), ("1234", "1234"),
    ("888888", "888888"), ("1234567890123456", "1234567890123456"), ("1234567", "1234567F"),
])
def test_pack_unpack(digits, packed):
    assert pack(digits).hex().upper() == packed
    assert unpack(bytes.fromhex(packed)) == digits


@pytest.mark.parametrize("data", ["", "AB", "1A34", "F234", "12F4", "FF", "1234FF", "12345A"])
def test_unpack_rejects(data):
    assert unpack(bytes.fromhex(data)) is None


@pytest.mark.parametrize("data, ok", [
    ("1234", True), ("123456", True), ("12345F", True), ("1234567890123456", True), ("123456789012345F", True),
    ("123F", False),  # 3 digits
    ("12", False), ("123456789012345678", False),  # 1 and 9 bytes
    ("", False),
    ("1234AB", False), ("12F456", False), ("F23456", False), ("1234FF", False), ("12345A", False),
    ("0000", True), ("9999", True),
])
def test_well_formed(data, ok):
    assert well_formed(bytes.fromhex(data)) is ok


@settings(max_examples=300)
@given(st.text(alphabet="0123456789", min_size=4, max_size=16))
def test_pack_then_well_formed_and_unpack(digits):
    packed = pack(digits)
    assert len(packed) == (len(digits) + 1) // 2
    assert well_formed(packed)
    assert unpack(packed) == digits
    assert valid_digits(digits, 4, 16)


@settings(max_examples=500)
@given(st.binary(min_size=1, max_size=9))
def test_well_formed_iff_4_to_16_cn_digits(data):
    digits = unpack(data)
    assert well_formed(data) == (digits is not None and 4 <= len(digits) <= 16 and pack(digits) == data)
