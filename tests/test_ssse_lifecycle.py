"""The SSSE lifecycle: APPLICATION BLOCK (P5 §6.1, P7 §13.2), CARD BLOCK (P5 §6.2, P7 §13.1),
and the project's extensions of docs/card/lifecycle.md: activation (§1), the loss lock
`84 1E 00 00` and its lift `84 18` (§3), the 300-day deadline lock (§2), GET DATA DF7E / DF7D (§6).

Maintenance follows docs/decisions.md S5: external authentication with BK (`05`), GET CHALLENGE,
the command with a MAC under the STK process key (P7 §13; docs/card/commands.md §5). S6: on an
already blocked application `9303`. Cryptograms come from tests/oracle.py (helpers.Session).
"""

import dataclasses
import datetime

import pytest
from helpers import (
    CARD_DATE,
    EF05,
    SELECT_DF04,
    SELECT_EF05,
    SELECT_FIN,
    SELECT_MF,
    SELECT_SSSE,
    VERIFY_BAD,
    VERIFY_OK,
    Session,
    activate_financial,
)

from chip import Card, load_profile
from chip.kernel.pin import pack

D = CARD_DATE  # issue date (EF05 item 05) = personalisation date
READ_01 = "00B2012C12"
CHANGE_TO_NEW = "805E010007123456FF654321"
ACTIVE, ISSUED = "DF7E0101" "9000", "DF7E0100" "9000"
REASON = {"none": "DF7D0100" "9000", "reported": "DF7D0101" "9000", "deadline": "DF7D0102" "9000"}
SETTLEMENT_TOTAL = "9204" "00001234"  # DF04 EF06 item 92, offline settlement total cn 4 (V2 table 9)
WRITE_SETTLEMENT = "00DC923006" + SETTLEMENT_TOTAL  # identifier 92 in SFI 6 of DF04 (P5 §6.13)


def gdata(s: Session, tag: str) -> str:
    return s.tx(f"80CA{tag}00")


# -- GET DATA DF7E / DF7D (docs/card/lifecycle.md §6) -------------------------------------------------


def test_fresh_card_is_issued_and_not_locked(s):
    assert gdata(s, "DF7E") == ISSUED
    assert gdata(s, "DF7D") == REASON["none"]


def test_get_data_unknown_tag_6A88(s):
    assert gdata(s, "DF7C") == "6A88"


# -- activation (docs/card/lifecycle.md §1) ----------------------------------------------------------


def test_queries_do_not_activate(s):
    assert s.tx(READ_01) == EF05[1] + "9000"
    assert s.tx(VERIFY_OK) == "9000"
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.external_auth("df04_rk1") == "9000"
    s.select()
    assert gdata(s, "DF7E") == ISSUED


def test_change_pin_activates(s):
    assert s.tx(CHANGE_TO_NEW) == "9000"
    assert gdata(s, "DF7E") == ACTIVE


def test_medical_write_of_an_issued_card_without_authentication_is_6985(s):
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.tx(WRITE_SETTLEMENT) == "6985"
    assert s.tx(VERIFY_OK) == "9000"  # the PIN is not the write condition (UK2DF04, V2 table 7)
    assert s.tx(WRITE_SETTLEMENT) == "6985"
    assert s.external_auth("df04_rk1") == "9000"  # nor the read key
    assert s.tx(WRITE_SETTLEMENT) == "6985"
    s.select()
    assert gdata(s, "DF7E") == ISSUED


def test_first_medical_write_after_uk2df04_activates(s):
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.external_auth("df04_uk2") == "9000"
    assert s.tx(WRITE_SETTLEMENT) == "9000"
    # read back: DF04 EF06 needs PIN & RK1DF04 (V2 table 7)
    assert s.tx("00B2923006") == "6982"
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx("00B2923006") == "6982"
    assert s.external_auth("df04_rk1") == "9000"
    assert s.tx("00B2923006") == SETTLEMENT_TOTAL + "9000"
    s.select()
    assert gdata(s, "DF7E") == ACTIVE


def test_once_active_a_write_without_authentication_is_6982(s):
    assert s.tx(CHANGE_TO_NEW) == "9000"
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.tx(WRITE_SETTLEMENT) == "6982"


def test_a_refused_medical_write_does_not_activate(s):
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.external_auth("df04_uk2") == "9000"
    assert s.tx("00DC923006" "920500001234") == "6A85"  # TLV length 05 with 4 bytes
    s.select()
    assert gdata(s, "DF7E") == ISSUED


def test_activation_is_persistent_and_one_way(sm4):
    s = sm4
    assert s.tx(CHANGE_TO_NEW) == "9000"
    assert s.tx("805E010007654321FF123456") == "9000"  # back to the initial PIN
    s.power_cycle()
    s.select()
    assert gdata(s, "DF7E") == ACTIVE


# -- APPLICATION BLOCK 84 1E 00 01: permanent (P5 §6.1, P7 §13.2, docs/decisions.md S6) ----------------------


def blocked_commands(s: Session):
    """Well-formed SSSE commands of every kind (name, APDU)."""
    return [
        ("READ RECORD", READ_01),
        ("READ RECORD EF06", "00B2083014"),
        ("READ BINARY", "00B0870001"),
        ("VERIFY", VERIFY_OK),
        ("VERIFY status", "00200000"),
        ("CHANGE PIN", CHANGE_TO_NEW),
        ("GET CHALLENGE", "0084000008"),
        ("EXTERNAL AUTHENTICATE", "0082000510" + "00" * 16),
        ("INTERNAL AUTHENTICATE", "0088000010" + "00" * 16),
        ("GET DATA", "80CADF7E00"),
        ("APPLICATION BLOCK", "841E000104" + "00" * 4),
        ("APPLICATION UNBLOCK", "8418000004" + "00" * 4),
        ("CARD BLOCK", "8416000004" + "00" * 4),
        ("PIN CHANGE/UNBLOCK", "8424000004" + "00" * 4),
        ("UPDATE RECORD", "00DC072C0B0709" + "00" * 9),
    ]


def test_application_block(s):
    assert s.block_application() == "9000"
    # at once: the application is selected and every command answers 9303
    for name, apdu in blocked_commands(s):
        assert s.tx(apdu) == "9303", name
    assert s.tx(SELECT_SSSE) == "9303"  # SELECT of it: 9303, no FCI
    for name, apdu in blocked_commands(s):
        assert s.tx(apdu) == "9303", name


def test_get_response_on_a_blocked_application_9303(s):
    # P7 §13.2: every command but a SELECT elsewhere answers 9303 -- GET RESPONSE included, whose
    # own error list (P5 §6.6) carries 9303; 6F00 is for an open application
    assert s.block_application() == "9000"
    assert s.tx("00C0000000") == "9303"
    assert s.tx(SELECT_SSSE) == "9303"
    assert s.tx("00C0000008") == "9303"


def test_application_block_survives_power_off(s):
    assert s.block_application() == "9000"
    s.power_cycle()
    assert s.tx(SELECT_SSSE) == "9303"
    assert s.tx("00A4000C00")[-4:] == "9000"  # the MF is another application
    assert s.tx("00A4040C0F" + SELECT_SSSE[10:]) == "9303"
    assert s.tx(READ_01) == "9303"
    assert s.tx(SELECT_EF05) == "9303"  # a SELECT inside it is not a SELECT elsewhere


def test_application_block_on_t0(sm4):
    s = sm4
    assert s.block_application() == "9000"
    s.reset(protocol=0)
    assert s.tx(SELECT_SSSE) == "9303"  # no data: no 61xx
    assert s.tx(READ_01) == "9303"


def test_other_applications_still_work(s):
    assert s.block_application() == "9000"
    assert s.tx(SELECT_FIN)[-4:] == "9000"
    assert s.tx(SELECT_MF)[-4:] == "9000"
    assert s.tx(SELECT_SSSE) == "9303"


def test_application_block_needs_bk(s):
    assert s.tx(s.mac_apdu("841E0001")) == "6982"
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx(s.mac_apdu("841E0001")) == "6982"  # another key is not BK
    s.select()


def test_application_block_wrong_mac_6988_blocks_nothing(s):
    assert s.external_auth("ssse_bk") == "9000"
    assert s.tx(s.mac_apdu("841E0001", corrupt=True)) == "6988"
    assert s.tx(s.mac_apdu("841E0001", key="ssse_bk")) == "6988"  # the MAC key is STK, not BK
    s.select()
    assert s.tx(READ_01) == EF05[1] + "9000"


def test_application_block_wrong_mac_and_failed_bk_lock_nothing(s):
    # P7 §13.1-13.2: failures around the block commands do not lock the keys
    for _ in range(4):
        assert s.external_auth("ssse_bk", corrupt=True) == "63C3"
    assert s.external_auth("ssse_bk") == "9000"
    for _ in range(4):
        assert s.tx(s.mac_apdu("841E0001", corrupt=True)) == "6988"
    assert s.tx(s.mac_apdu("841E0001")) == "9000"


def test_application_block_without_challenge_6984(s):
    # the external authentication consumed its challenge (P5 §6.5.1): no random for the MAC
    assert s.external_auth("ssse_bk") == "9000"
    assert s.tx("841E000104" "00000000") == "6984"
    s.select()


def test_application_block_mac_of_an_older_challenge_6988(s):
    assert s.external_auth("ssse_bk") == "9000"
    apdu = s.mac_apdu("841E0001")
    s.challenge()
    assert s.tx(apdu) == "6988"
    s.select()


@pytest.mark.parametrize("header", ["841E0100", "841E0002"])
def test_application_block_wrong_p1p2_6A86(s, header):
    assert s.bk_mac(header) == "6A86"


def test_application_block_with_a_body_6700(s):
    # P5 §6.1: Lc 04, the MAC alone
    assert s.bk_mac("841E0001", body=b"\x00") == "6700"


# -- CARD BLOCK 84 16 00 00 (P5 §6.2, P7 §13.1) -------------------------------------------------------------

EVERYTHING = [SELECT_SSSE, "00A4000002DDF1", SELECT_MF, "00A4000000", SELECT_DF04, "00A4080004DDF1EF05", SELECT_FIN,
              "00A404000E" + b"1PAY.SYS.DDF01".hex().upper(), "0084000008", "00C0000000", READ_01, VERIFY_OK,
              "80CADF7E00"]


def test_card_block(s):
    assert s.block_card() == "9000"
    for apdu in EVERYTHING:
        assert s.tx(apdu) == "6A81", apdu
    s.power_cycle()
    for apdu in EVERYTHING:
        assert s.tx(apdu) == "6A81", apdu


def test_card_block_on_t0(sm4):
    assert sm4.block_card() == "9000"
    sm4.reset(protocol=0)
    for apdu in EVERYTHING:
        assert sm4.tx(apdu) == "6A81", apdu


def test_card_block_needs_bk_and_the_right_mac(s):
    assert s.tx(s.mac_apdu("84160000")) == "6982"
    assert s.external_auth("ssse_bk") == "9000"
    assert s.tx(s.mac_apdu("84160000", corrupt=True)) == "6988"
    s.select()
    assert s.tx(READ_01) == EF05[1] + "9000"


def left_on_an_image(tmp_path, operation) -> str:
    """A new card image whose card ran `operation` (a Session method, answered 9000) and then left the
    simulator: the image is all that is left of it. Its path."""
    path = str(tmp_path / "card.img")
    s = Session(card=Card.from_profile(state=path, date=D))
    s.select()
    assert operation(s) == "9000"
    s.card.close()
    return path


def test_card_block_survives_reopening_the_image(tmp_path):
    path = left_on_an_image(tmp_path, Session.block_card)
    again = Session(card=Card.open(path, date=D + datetime.timedelta(days=5000)))
    assert again.tx(SELECT_SSSE) == "6A81"


# -- the loss lock 84 1E 00 00 and its lift 84 18 (docs/card/lifecycle.md §3) ---------------------------------


def allowed_while_locked(s: Session) -> None:
    """GET CHALLENGE, EXTERNAL AUTHENTICATE, GET DATA work while locked."""
    assert len(s.challenge()) == 8
    assert s.external_auth("ssse_rk") == "9000"
    assert gdata(s, "DF7E")[-4:] == "9000"


def refused_while_locked(s: Session):
    return [
        ("READ RECORD", lambda: READ_01),
        ("READ RECORD EF06", lambda: "00B2083014"),
        ("READ BINARY", lambda: "00B0870001"),
        ("VERIFY", lambda: VERIFY_OK),
        ("VERIFY wrong", lambda: VERIFY_BAD),
        ("VERIFY status", lambda: "00200000"),
        ("CHANGE PIN", lambda: CHANGE_TO_NEW),
        ("INTERNAL AUTHENTICATE", lambda: "0088000010" + "00" * 16),
        ("UPDATE RECORD", lambda: "00DC072C0B0709" + "00" * 9),
        ("PIN reset", lambda: s.pin_reset_apdu(pack("246810"))),
        ("PIN unblock", lambda: s.mac_apdu("84240000")),
        ("APPLICATION BLOCK loss", lambda: s.mac_apdu("841E0000")),
        ("APPLICATION BLOCK permanent", lambda: s.mac_apdu("841E0001")),
    ]


def assert_locked(s: Session, reason: str) -> None:
    s.power_cycle()
    s.select("6283")  # FCI + 6283: the SSSE is selected
    assert gdata(s, "DF7D") == REASON[reason]
    assert s.external_auth("ssse_puk") == "9000"
    assert s.external_auth("ssse_uk") == "9000"
    for name, make in refused_while_locked(s):
        assert s.tx(make()) == "6985", name
    allowed_while_locked(s)
    # nothing was spent or changed by the refused commands
    s.power_cycle()
    s.select("6283")
    assert s.tx("0082000A10" + "00" * 16) == "6984"
    assert s.external_auth("ssse_rk", corrupt=True) == "63C2"


def test_loss_lock(s):
    assert s.loss_lock() == "9000"
    assert s.tx(READ_01) == "6985"  # at once
    assert gdata(s, "DF7D") == REASON["reported"]
    assert_locked(s, "reported")
    s.power_cycle()
    s.select("6283")
    assert s.unlock() == "9000"
    assert s.tx(VERIFY_OK) == "9000"


def test_unlock_lifts_at_once_and_for_good(s):
    assert s.loss_lock() == "9000"
    s.power_cycle()
    s.select("6283")
    assert s.unlock() == "9000"
    assert gdata(s, "DF7D") == REASON["none"]
    assert s.tx(READ_01) == EF05[1] + "9000"
    s.power_cycle()
    s.select()
    assert s.tx(VERIFY_OK) == "9000"


def test_locked_select_on_t0_61xx_and_the_last_piece_carries_6283(s):
    assert s.loss_lock() == "9000"
    s.reset(protocol=0)
    assert s.tx(SELECT_SSSE) == "611E"
    assert s.tx("00C0000010") == s.fci[:32] + "610E"
    assert s.tx("00C000000E") == s.fci[32:] + "6283"


def test_locked_select_on_t0_in_one_get_response(s):
    assert s.loss_lock() == "9000"
    s.reset(protocol=0)
    assert s.tx(SELECT_SSSE) == "611E"
    assert s.tx("00C000001E") == s.fci + "6283"


def test_unlock_needs_bk(s):
    assert s.loss_lock() == "9000"
    s.power_cycle()
    s.select("6283")
    assert s.tx(s.mac_apdu("84180000")) == "6982"
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx(s.mac_apdu("84180000")) == "6982"
    assert gdata(s, "DF7D") == REASON["reported"]


def test_unlock_wrong_mac_keeps_the_lock(s):
    assert s.loss_lock() == "9000"
    assert s.external_auth("ssse_bk") == "9000"
    assert s.tx(s.mac_apdu("84180000", corrupt=True)) == "6988"
    assert gdata(s, "DF7D") == REASON["reported"]
    assert_locked(s, "reported")


def test_loss_lock_needs_bk_and_the_right_mac(s):
    assert s.tx(s.mac_apdu("841E0000")) == "6982"
    assert s.external_auth("ssse_bk") == "9000"
    assert s.tx(s.mac_apdu("841E0000", corrupt=True)) == "6988"
    assert s.tx("841E0000") == "6987"  # no MAC at all
    assert gdata(s, "DF7D") == REASON["none"]
    s.power_cycle()
    s.select()


def test_lock_unlock_lock_again(sm4):
    for _ in range(2):
        assert sm4.loss_lock() == "9000"
        assert gdata(sm4, "DF7D") == REASON["reported"]
        assert sm4.unlock() == "9000"
        assert gdata(sm4, "DF7D") == REASON["none"]


def test_card_block_works_while_locked(s):
    assert s.loss_lock() == "9000"
    s.power_cycle()
    s.select("6283")
    assert s.block_card() == "9000"
    assert s.tx(SELECT_SSSE) == "6A81"


def test_other_applications_unaffected_by_the_loss_lock(s):
    assert s.tx(SELECT_FIN)[-4:] == "9000"
    fin_fci = s.tx(SELECT_FIN)
    s.select()
    assert s.loss_lock() == "9000"
    s.power_cycle()
    assert s.tx(SELECT_FIN) == fin_fci


def test_lock_survives_reopening_the_image(tmp_path):
    path = left_on_an_image(tmp_path, Session.loss_lock)
    again = Session(card=Card.open(path, date=D))
    again.select("6283")
    assert again.unlock() == "9000"
    again.card.close()
    third = Session(card=Card.open(path, date=D))
    third.select()


# -- the deadline lock (docs/card/lifecycle.md §2): at power-up, lifted only after the financial activation ----------------------


def days_later(s: Session, days: int) -> None:
    s.card.set_date(D + datetime.timedelta(days=days))
    s.power_cycle()


def test_deadline_day_300_is_inside_the_window(s):
    days_later(s, 300)
    s.select()
    assert gdata(s, "DF7D") == REASON["none"]


def test_deadline_lock_at_power_up(s):
    days_later(s, 301)
    s.select("6283")
    assert gdata(s, "DF7D") == REASON["deadline"]
    assert_locked(s, "deadline")


def test_deadline_applies_at_power_up_not_mid_session(sm4):
    sm4.card.set_date(D + datetime.timedelta(days=301))
    assert sm4.tx(READ_01) == EF05[1] + "9000"  # the chip has no clock
    sm4.power_cycle()
    sm4.select("6283")


def test_deadline_lock_lifted_only_after_financial_activation(s):
    days_later(s, 301)
    s.select("6283")
    assert s.unlock() == "6985"  # BK and a valid MAC, but the financial application is not active
    assert gdata(s, "DF7D") == REASON["deadline"]
    activate_financial(s.card)
    s.reset()
    s.select("6283")  # activating the financial application alone unlocks nothing
    assert s.unlock() == "9000"
    assert gdata(s, "DF7D") == REASON["none"]
    s.power_cycle()  # no new deadline lock at power-up: the financial application is active
    s.select()
    assert s.tx(READ_01) == EF05[1] + "9000"


def test_financial_activation_before_the_deadline_prevents_the_lock(s):
    s.card.set_date(D + datetime.timedelta(days=30))
    activate_financial(s.card)
    for days in (301, 3650):
        days_later(s, days)
        s.select()


def test_deadline_locks_an_activated_ssse_too(sm4):
    # the rule is about the financial application (docs/card/lifecycle.md §2)
    assert sm4.tx(CHANGE_TO_NEW) == "9000"
    days_later(sm4, 301)
    sm4.select("6283")
    assert gdata(sm4, "DF7E") == ACTIVE
    assert gdata(sm4, "DF7D") == REASON["deadline"]


def test_reported_lock_lifted_past_the_deadline_becomes_a_deadline_lock(sm4):
    s = sm4
    assert s.loss_lock() == "9000"
    days_later(s, 301)
    s.select("6283")
    assert gdata(s, "DF7D") == REASON["reported"]  # the holder's lock stays what it was
    assert s.unlock() == "9000"
    s.power_cycle()  # next power-up: the deadline rule applies
    s.select("6283")
    assert gdata(s, "DF7D") == REASON["deadline"]
    assert s.unlock() == "6985"


@pytest.mark.parametrize("days, locked", [(180, False), (181, True)])
def test_deadline_is_a_profile_setting(days, locked):
    profile = dataclasses.replace(load_profile("default"), activation_deadline_days=180)
    s = Session(card=Card.from_profile(profile, date=D))
    days_later(s, days)
    s.select("6283" if locked else "9000")


def test_deadline_lock_is_durable(tmp_path):
    path = str(tmp_path / "card.img")
    s = Session(card=Card.from_profile(state=path, date=D))
    days_later(s, 301)
    s.card.close()  # the card leaves the simulator: the image is all that is left of it
    again = Session(card=Card.open(path, date=D))  # reopened on an earlier clock: the lock stays
    again.select("6283")
    assert gdata(again, "DF7D") == REASON["deadline"]


def test_card_block_works_on_a_deadline_locked_ssse(sm4):
    days_later(sm4, 301)
    sm4.select("6283")
    assert sm4.block_card() == "9000"
    assert sm4.tx(SELECT_SSSE) == "6A81"
