"""SSSE security mechanisms: GET CHALLENGE (P5 §6.5), EXTERNAL AUTHENTICATE (P5 §6.4, P7 §6.6),
INTERNAL AUTHENTICATE (P5 §6.7), the command MAC (P4 §8.2-8.4) and the lifetime of security
states (P5 §6.11.1, P7 §6.6); docs/card/security.md. T1 and T2 are the real cards' traces of
tests/test_real_traces.py.

Every expected cryptogram comes from tests/oracle.py: card keys diversified from the
default profile's roots (docs/card/security.md §1) by P9 §7.3 (helpers.card_key), process keys P4 §8.4,
authentication data P4 §9.3, MAC P4 §8.2.4. Both families: "default" (SM4, flag 03) and
"default-3des" (DES family, flag 01). docs/decisions.md: S10 (3 tries per key, BK never counts),
S13 (P2 = key id), S16 (optional version byte, 01), S17 (8-byte inputs padded).
"""

import oracle
import pytest
from helpers import (
    EF06,
    KEY_ID,
    SELECT_DF04,
    SELECT_DF04_FID,
    SELECT_EF05,
    SELECT_EF06,
    SELECT_FIN,
    SELECT_MF,
    SELECT_SSSE,
    VERIFY_OK,
    Session,
    h,
)

R1 = bytes.fromhex("32D9E876ADB31BBF")  # T1 l.31-32's values, as shapes
R2 = bytes.fromhex("DBF7A936D0D18C9E")
ORIGINAL = bytes.fromhex("E603E2CAADAF02B6")
READ_EF06_08 = "00B2083014"  # identifier 08 in SFI 6: RKSSSE on 3.00 (SR §10.2)
ITEM_08 = EF06[0][1]
SSSE_KEYS = ["ssse_rk", "ssse_puk", "ssse_bk", "ssse_uk"]
DF04_KEYS = ["df04_rk1", "df04_uk1", "df04_uk2"]
COUNTED = ["ssse_rk", "ssse_puk", "ssse_uk", "df04_rk1", "df04_uk2"]


def enter(s: Session, name: str) -> None:
    """Be in the DF that holds key `name` (a key is found in the current DF, P5 §6.4)."""
    if name.startswith("df04"):
        assert s.tx(SELECT_DF04) == "6F088406D156000005039000"


def ef06_open(s: Session) -> bool:
    answer = s.tx(READ_EF06_08)
    assert answer in (ITEM_08 + "9000", "6982"), answer
    return answer != "6982"


# -- GET CHALLENGE (P5 §6.5, table 17) ---------------------------------------------------------------


@pytest.mark.parametrize("le", [4, 8, 16])
def test_get_challenge_lengths(s, le):
    answer = s.tx(f"00840000{le:02X}")
    assert len(answer) == 2 * le + 4 and answer[-4:] == "9000"


def test_get_challenge_comes_from_the_card_random_source(s):
    values = iter([bytes.fromhex("A1A2A3A4A5A6A7A8"), bytes.fromhex("B1B2B3B4")])
    asked = []
    s.card.random = lambda n: (asked.append(n), next(values))[1]
    assert s.tx("0084000008") == "A1A2A3A4A5A6A7A8" "9000"
    assert s.tx("0084000004") == "B1B2B3B4" "9000"
    assert asked == [8, 4]


@pytest.mark.parametrize("apdu", ["0084000005", "0084000000", "0084000002", "0084000020", "00840000",
                                  "008400000811"])
def test_get_challenge_wrong_length_6700(s, apdu):
    assert s.tx(apdu) == "6700"


@pytest.mark.parametrize("apdu", ["0084010008", "0084000108"])
def test_get_challenge_p1p2_6A86(s, apdu):
    assert s.tx(apdu) == "6A86"


# -- EXTERNAL AUTHENTICATE: the cryptogram (P4 §9.3, P7 §6.6) ------------------------------------------


@pytest.mark.parametrize("name", SSSE_KEYS + DF04_KEYS)
def test_external_authenticate_each_key(s, name):
    enter(s, name)
    challenge = s.challenge()
    auth8 = oracle.auth_data(s.family, oracle.process_key(s.family, s.key(name), challenge), ORIGINAL)
    apdu = f"008200{KEY_ID[name]:02X}10{h(auth8)}{h(ORIGINAL)}"  # auth8 || original8 (T1 l.54)
    assert s.tx(apdu) == "9000"


def test_rkssse_opens_ef06(s):
    assert not ef06_open(s)
    assert s.external_auth("ssse_rk") == "9000"
    assert ef06_open(s)
    assert s.tx("00200000") == "63C6"  # the PIN had nothing to do with it


@pytest.mark.parametrize("length", [4, 8])
def test_challenge_of_4_or_8_bytes(s, length):
    # P4 §8.4.1-8.4.2: a 4-byte random is padded with 00 (to 8 or 16), an 8-byte one (SM4) to 16
    assert s.external_auth("ssse_rk", challenge_length=length) == "9000"


def test_challenge_of_16_bytes_sm4(sm4):
    # P4 §8.4.2: a 16-byte random is the process-key input as it is
    assert sm4.external_auth("ssse_rk", challenge_length=16) == "9000"


def test_optional_version_byte_01(s):
    # P5 §6.4.3: Lc 11, byte 17 = key version; the card's keys are version 01 (docs/decisions.md S16)
    apdu = s.external_auth_apdu("ssse_rk", version=0x01)
    assert apdu[8:10] == "11"
    assert s.tx(apdu) == "9000"


def test_unknown_version_6A88(s):
    assert s.external_auth("ssse_rk", version=0x02) == "6A88"


def test_original_data_is_what_the_card_encrypts(s):
    challenge = s.challenge()
    auth8 = s.auth("ssse_rk", challenge, ORIGINAL)
    other = bytes(b ^ 0x80 for b in ORIGINAL)
    assert s.tx(f"0082000A10{h(auth8)}{h(other)}") == "63C2"


def test_the_card_uses_its_last_challenge(s):
    first = s.challenge()
    s.challenge()
    auth8 = s.auth("ssse_rk", first, ORIGINAL)
    assert s.tx(f"0082000A10{h(auth8)}{h(ORIGINAL)}") == "63C2"


def test_two_challenges_like_the_real_terminals(s):
    # T1/T2: the terminal takes D from one GET CHALLENGE and R from the next (docs/card/commands.md §5)
    original = s.challenge()
    assert s.external_auth("ssse_rk", original=original) == "9000"


# -- EXTERNAL AUTHENTICATE: single-use challenge, try counters (P5 §6.5.1, P7 §6.6, docs/decisions.md S10)


def test_without_challenge_6984(s):
    assert s.tx("0082000A10" + "00" * 16) == "6984"
    s.challenge()
    assert s.tx("0082000A10" + "00" * 16) == "63C2"  # the 6984 cost no try


def test_challenge_consumed_by_success(s):
    apdu = s.external_auth_apdu("ssse_rk")
    assert s.tx(apdu) == "9000"
    assert s.tx(apdu) == "6984"


def test_challenge_consumed_by_failure(s):
    apdu = s.external_auth_apdu("ssse_rk", corrupt=True)
    assert s.tx(apdu) == "63C2"
    assert s.tx(apdu) == "6984"
    assert not ef06_open(s)


@pytest.mark.parametrize("name", COUNTED)
def test_wrong_cryptograms_count_down_then_6983(s, name):
    enter(s, name)
    for sw in ("63C2", "63C1", "63C0"):
        assert s.external_auth(name, corrupt=True) == sw
    assert s.external_auth(name) == "6983"  # even the right cryptogram
    assert s.external_auth(name) == "6983"


def test_blocked_key_stays_blocked_after_power_off(s):
    for _ in range(3):
        s.external_auth("ssse_rk", corrupt=True)
    s.power_cycle()
    s.select()
    assert s.external_auth("ssse_rk") == "6983"
    assert not ef06_open(s)


def test_success_restores_the_counter(s):
    assert s.external_auth("ssse_rk", corrupt=True) == "63C2"
    assert s.external_auth("ssse_rk", corrupt=True) == "63C1"
    assert s.external_auth("ssse_rk") == "9000"
    assert s.external_auth("ssse_rk", corrupt=True) == "63C2"


def test_counters_are_per_key(s):
    for _ in range(3):
        s.external_auth("ssse_rk", corrupt=True)
    assert s.external_auth("ssse_uk", corrupt=True) == "63C2"
    assert s.external_auth("ssse_puk") == "9000"
    assert s.tx(VERIFY_OK) == "9000"  # the PIN has its own counter


def test_counter_is_persistent(s):
    assert s.external_auth("ssse_rk", corrupt=True) == "63C2"
    s.power_cycle()
    s.select()
    assert s.external_auth("ssse_rk", corrupt=True) == "63C1"


def test_bk_failures_never_decrement(s):
    # docs/decisions.md S10 (P7 §13.1-13.2): a lost card can always be blocked
    for _ in range(6):
        assert s.external_auth("ssse_bk", corrupt=True) == "63C3"
    assert s.external_auth("ssse_bk") == "9000"


def test_failure_drops_an_earlier_success_of_that_key(s):
    assert s.external_auth("ssse_rk") == "9000"
    assert ef06_open(s)
    assert s.external_auth("ssse_rk", corrupt=True) == "63C2"
    assert not ef06_open(s)


# -- EXTERNAL AUTHENTICATE: coding errors (P5 §6.4) --------------------------------------------------------


@pytest.mark.parametrize("p2", ["0B", "09", "84", "86"])
def test_unknown_key_in_the_ssse_6A88(s, p2):
    s.challenge()
    assert s.tx(f"008200{p2}10" + "00" * 16) == "6A88"


@pytest.mark.parametrize("p2", ["0A", "04", "06", "87"])
def test_unknown_key_in_df04_6A88(s, p2):
    # a key is found in the current DF: RKSSSE is not a DF04 key
    enter(s, "df04_rk1")
    s.challenge()
    assert s.tx(f"008200{p2}10" + "00" * 16) == "6A88"


@pytest.mark.parametrize("lc", [0x08, 0x0F, 0x12])
def test_wrong_lc_6700(s, lc):
    s.challenge()
    assert s.tx(f"0082000A{lc:02X}" + "00" * lc) == "6700"


def test_no_data_6700(s):
    s.challenge()
    assert s.tx("0082000A") == "6700"


def test_p1_6A86(s):
    apdu = s.external_auth_apdu("ssse_rk")
    assert s.tx(apdu[:4] + "01" + apdu[6:]) == "6A86"


# -- lifetime of the security state (P5 §6.11.1; P7 §6.6; docs/decisions.md §2.3) ----------------------------


def test_state_kept_across_ef_selections(s):
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx(SELECT_EF05) == "9000"
    assert s.tx(SELECT_EF06) == "9000"
    assert s.tx("00B2080014") == ITEM_08 + "9000"
    assert s.tx(SELECT_EF05) == "9000"
    assert ef06_open(s)


def test_state_kept_across_reselecting_the_ssse_by_name(s):
    assert s.external_auth("ssse_rk") == "9000"
    s.select()
    assert ef06_open(s)
    assert s.tx("00A4040C0F" + SELECT_SSSE[10:]) == "9000"
    assert ef06_open(s)


@pytest.mark.parametrize("elsewhere", [SELECT_DF04, SELECT_DF04_FID, SELECT_FIN])
def test_state_lost_by_selecting_another_application(s, elsewhere):
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx(elsewhere)[-4:] == "9000"
    s.select()
    assert not ef06_open(s)


def test_state_lost_at_the_mf(s):
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx(SELECT_MF)[-4:] == "9000"
    s.select()
    assert not ef06_open(s)


@pytest.mark.parametrize("how", ["warm", "power"])
def test_state_lost_at_reset(s, how):
    assert s.external_auth("ssse_rk") == "9000"
    s.reset() if how == "warm" else s.power_cycle()
    s.select()
    assert not ef06_open(s)


def test_df04_key_state_lost_when_leaving_df04(s):
    enter(s, "df04_rk1")
    assert s.external_auth("df04_rk1") == "9000"
    assert s.tx("00B2842805") == "8403110100" "9000"  # DF04 EF05: PIN or RK1DF04 (V2 table 7)
    s.select()
    enter(s, "df04_rk1")
    assert s.tx("00B2842805") == "6982"


def test_challenge_belongs_to_the_current_application(s):
    # P5 §6.5: the random is usable once in the current application
    challenge = s.challenge()
    enter(s, "df04_rk1")
    auth8 = s.auth("df04_rk1", challenge, ORIGINAL)
    assert s.tx(f"0082008410{h(auth8)}{h(ORIGINAL)}") == "6984"


def test_challenge_lost_at_reset(s):
    challenge = s.challenge()
    s.reset()
    s.select()
    auth8 = s.auth("ssse_rk", challenge, ORIGINAL)
    assert s.tx(f"0082000A10{h(auth8)}{h(ORIGINAL)}") == "6984"


# -- INTERNAL AUTHENTICATE (P5 §6.7.3, P4 §9.3) --------------------------------------------------------------


def expected_internal(s: Session, r1: bytes, r2: bytes) -> str:
    return h(oracle.auth_data(s.family, oracle.process_key(s.family, s.key("ssse_irk"), r1), r2))


@pytest.mark.parametrize("r1, r2", [
    (R1, R2),
    (bytes(8), bytes.fromhex("FFFFFFFFFFFFFFFF")),
    (bytes.fromhex("0102030405060708"), bytes.fromhex("1122334455667788")),
])
def test_internal_authenticate_8_byte_answer(s, r1, r2):
    expected = expected_internal(s, r1, r2)
    assert len(expected) == 16
    assert s.tx(f"0088000010{h(r1)}{h(r2)}") == expected + "9000"  # without Le, as T1 l.31 sends it
    assert s.tx(f"0088000010{h(r1)}{h(r2)}00") == expected + "9000"  # with Le 00
    assert s.tx(f"0088000010{h(r1)}{h(r2)}08") == expected + "9000"


def test_internal_authenticate_with_version_01(s):
    assert s.tx(f"0088000011{h(R1)}{h(R2)}01") == expected_internal(s, R1, R2) + "9000"


def test_internal_authenticate_unknown_version_6A88(s):
    assert s.tx(f"0088000011{h(R1)}{h(R2)}02") == "6A88"


def test_internal_authenticate_on_t0(s):
    # docs/card/commands.md §5 (genuine card): T=0: 61 08, then 00 C0 00 00 08
    s.reset(protocol=0)
    assert s.tx(SELECT_SSSE) == "611E"
    assert s.tx("00C000001E") == s.fci + "9000"
    assert s.tx(f"0088000010{h(R1)}{h(R2)}00") == "6108"
    assert s.tx("00C0000008") == expected_internal(s, R1, R2) + "9000"


def test_internal_authenticate_needs_no_challenge_and_keeps_one(s):
    # R1 and R2 travel in the command (P7 §5.4); a pending challenge is still there afterwards
    apdu = s.external_auth_apdu("ssse_rk")
    assert s.tx(f"0088000010{h(R1)}{h(R2)}") == expected_internal(s, R1, R2) + "9000"
    assert s.tx(apdu) == "9000"


@pytest.mark.parametrize("apdu", ["0088000008" + "00" * 8, "008800000F" + "00" * 15, "0088000012" + "00" * 18,
                                  "00880000"])
def test_internal_authenticate_wrong_length_6700(s, apdu):
    assert s.tx(apdu) == "6700"


def test_internal_authenticate_p1_6A86(s):
    assert s.tx("0088010010" + "00" * 16) == "6A86"


def test_internal_authenticate_with_the_challenges_of_the_real_flow(s):
    # T1 l.27-32: two GET CHALLENGEs give R2 and then R1
    r2 = s.challenge()
    r1 = s.challenge()
    assert s.tx(f"0088000010{h(r1)}{h(r2)}") == expected_internal(s, r1, r2) + "9000"


# -- the command MAC (P4 §8.2): shown with PIN UNBLOCK 84 24 00 00 after PUK (docs/decisions.md S4)


def unblock_with(s: Session, mac4: bytes) -> str:
    return s.tx("8424000004" + h(mac4))


def block_pin(s: Session) -> None:
    for _ in range(6):
        s.tx("0020000003111111")
    assert s.external_auth("ssse_puk") == "9000"


def test_mac_is_under_the_stk_process_key_of_the_challenge(s):
    block_pin(s)
    challenge = s.challenge()
    ks = oracle.process_key(s.family, s.key("ssse_stk"), challenge)
    assert unblock_with(s, oracle.mac4(s.family, ks, bytes.fromhex("8424000004"))) == "9000"
    assert s.tx(VERIFY_OK) == "9000"


def test_mac_input_carries_the_real_lc(s):
    # P4 footnotes 1-2: Lc 04 goes into the MAC, never 00
    block_pin(s)
    challenge = s.challenge()
    ks = oracle.process_key(s.family, s.key("ssse_stk"), challenge)
    assert unblock_with(s, oracle.mac4(s.family, ks, bytes.fromhex("8424000000"))) == "6988"


def test_mac_under_the_card_key_itself_is_wrong(s):
    # P4 §8.2.3: the MAC key is a process key, not STK itself
    block_pin(s)
    s.challenge()
    assert unblock_with(s, oracle.mac4(s.family, s.key("ssse_stk"), bytes.fromhex("8424000004"))) == "6988"


@pytest.mark.parametrize("length", [4, 8])
def test_mac_with_a_4_or_8_byte_challenge(s, length):
    block_pin(s)
    assert s.tx(s.mac_apdu("84240000", challenge_length=length)) == "9000"


def test_mac_with_a_16_byte_challenge_sm4(sm4):
    block_pin(sm4)
    assert sm4.tx(sm4.mac_apdu("84240000", challenge_length=16)) == "9000"


def test_mac_missing_6987(s):
    block_pin(s)
    s.challenge()
    assert s.tx("84240000") == "6987"


def test_mac_wrong_6988_then_the_challenge_is_gone(s):
    block_pin(s)
    bad = s.mac_apdu("84240000", corrupt=True)
    assert s.tx(bad) == "6988"
    good = bad[:-2] + f"{int(bad[-2:], 16) ^ 0x01:02X}"
    assert s.tx(good) == "6984"
    assert s.tx(VERIFY_OK) == "6983"
