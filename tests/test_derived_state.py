"""Derived state follows the transaction: nothing cached from persistent state outlives an abort.

The SSSE's command table depends on its lock state (open, loss-locked, permanently blocked).
When the commit of a lock change fails (a `write` fault: the backend's next write fails, the
card answers 6581 and keeps the old state, chip.faults), the card must go on behaving as the
state it kept says: a failed APPLICATION UNBLOCK leaves the SSSE locked (READ RECORD and
VERIFY 6985), a failed APPLICATION BLOCK leaves it open (9000), for the rest of the session and
after a reset. Each state-changing command is armed with a `write` fault and the card's
behaviour afterwards is compared with a card on which the command was never sent.
"""

import pytest
from helpers import SELECT_SSSE, VERIFY_OK, Session

from chip.faults import FaultPlan

READ_EF05_01 = "00B2012C12"
VERIFY = VERIFY_OK


def behaviour(s: Session) -> tuple:
    """What the card answers to a few commands whose answers depend on the lock and lifecycle."""
    s.tx(SELECT_SSSE)
    return (s.tx(SELECT_SSSE)[-4:], s.tx(READ_EF05_01)[-4:], s.tx(VERIFY), s.tx("80CADF7E00"),
            s.tx("80CADF7D00"))


def failed(s: Session, apdu: str) -> str:
    s.card.faults = FaultPlan(["write once"])
    try:
        return s.tx(apdu)
    finally:
        s.card.faults = None


@pytest.mark.parametrize("profile", ["default", "default-3des"])
def test_failed_unblock_leaves_the_card_locked(profile):
    s = Session(profile)
    s.select()
    assert s.loss_lock() == "9000"
    locked = behaviour(s)
    assert locked[:3] == ("6283", "6985", "6985")
    # BK authentication, then the MAC'd unlock whose commit fails
    assert s.external_auth("ssse_bk") == "9000"
    assert failed(s, s.mac_apdu("84180000")) == "6581"
    assert behaviour(s) == locked
    s.reset()
    assert behaviour(s) == locked


@pytest.mark.parametrize("p2, name", [("00", "loss lock"), ("01", "permanent block")])
def test_failed_block_leaves_the_card_open(p2, name):
    s = Session("default")
    s.select()
    open_state = behaviour(s)
    assert open_state[:2] == ("9000", "9000")
    assert s.external_auth("ssse_bk") == "9000"
    assert failed(s, s.mac_apdu(f"841E00{p2}")) == "6581", name
    assert behaviour(s) == open_state
    s.reset()
    assert behaviour(s) == open_state


def test_failed_card_block_leaves_the_card_working():
    s = Session("default")
    s.select()
    before = behaviour(s)
    assert s.external_auth("ssse_bk") == "9000"
    assert failed(s, s.mac_apdu("84160000")) == "6581"
    assert behaviour(s) == before


def test_failed_activation_leaves_the_card_issued():
    """CHANGE PIN away from the initial PIN activates; its commit failing changes neither."""
    s = Session("default")
    s.select()
    assert failed(s, "80 5E 01 00 07 123456 FF 246810".replace(" ", "")) == "6581"
    assert s.tx("80CADF7E00") == "DF7E01009000"
    assert s.tx(VERIFY) == "9000"
