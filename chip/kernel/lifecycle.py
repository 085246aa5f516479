"""Every lifecycle transition of the card's applications, in one table (after h11's `_state.py`).

Each *machine* is one persistent field of one `Vars` object; its transitions
are `{state: {event: new state}}`. Applets fire events here and never set
lifecycle fields themselves. An event a state does not accept is refused with
the status word of `REFUSALS` (default `6985`) and changes nothing.

State-triggered rules (the SSSE activation deadline) are applied at power-up
by `apply_deadline`.
"""

import datetime

from chip.iso.sw import SW_APPLICATION_PERMANENTLY_BLOCKED, SW_CONDITIONS_NOT_SATISFIED, CardError

# machine name -> (Vars object in the store, field)
SSSE_LIFECYCLE = ("ssse.state", "lifecycle")  # issued -> active
SSSE_LOCK = ("ssse.state", "lock")  # none | locked (loss lock, temporary) | blocked (permanent)
CARD = ("card", "state")  # ok | blocked (CARD BLOCK, irreversible)
FIN_ACTIVATION = ("fin.state", "activation")  # not_activated <-> activated (issuer script PUT DATA DF7F)
FIN_LOCK = ("fin.state", "lock")  # none <-> blocked (issuer scripts APPLICATION BLOCK / UNBLOCK)

ACTIVATE = "activate"
LOCK = "lock"
LOCK_PERMANENT = "lock_permanent"
UNLOCK = "unlock"
CARD_BLOCK = "card_block"
DEACTIVATE = "deactivate"

TRANSITIONS = {
    SSSE_LIFECYCLE: {
        "issued": {ACTIVATE: "active"},
        "active": {ACTIVATE: "active"},
    },
    SSSE_LOCK: {
        "none": {LOCK: "locked", LOCK_PERMANENT: "blocked", UNLOCK: "none"},
        "locked": {UNLOCK: "none"},  # a locked SSSE answers no APPLICATION BLOCK (docs/card/lifecycle.md §3: 6985)
        "blocked": {},
    },
    CARD: {
        "ok": {CARD_BLOCK: "blocked"},
        "blocked": {},
    },
    FIN_ACTIVATION: {
        "not_activated": {ACTIVATE: "activated", DEACTIVATE: "not_activated"},
        "activated": {ACTIVATE: "activated", DEACTIVATE: "not_activated"},
    },
    FIN_LOCK: {
        "none": {LOCK: "blocked", UNLOCK: "none"},
        "blocked": {LOCK: "blocked", UNLOCK: "none"},
    },
}

REFUSALS = {
    (SSSE_LOCK, "blocked", UNLOCK): SW_APPLICATION_PERMANENTLY_BLOCKED,
}

INITIAL = {SSSE_LIFECYCLE: "issued", SSSE_LOCK: "none", CARD: "ok", FIN_ACTIVATION: "not_activated",
           FIN_LOCK: "none"}


def state(store, machine) -> str:
    name, field = machine
    return getattr(store[name], field)


def fire(store, machine, event) -> str:
    """Apply `event` to `machine` inside the current transaction; return the new state."""
    name, field = machine
    holder = store[name]
    current = getattr(holder, field)
    new = TRANSITIONS[machine][current].get(event)
    if new is None:
        raise CardError(REFUSALS.get((machine, current, event), SW_CONDITIONS_NOT_SATISFIED))
    if new != current:
        store.write(holder, field, new)
    return new


def deadline_passed(issue: datetime.date, days: int, today: datetime.date) -> bool:
    return today > issue + datetime.timedelta(days=days)


def apply_deadline(store, today: datetime.date, issue: datetime.date, days: int, financial_activated: bool) -> bool:
    """The SSSE activation-deadline rule (docs/card/lifecycle.md §2), applied at power-up.

    Past issue + `days` with the financial application not activated, an
    unlocked SSSE becomes loss-locked with reason `deadline`. Returns whether
    it fired (the caller commits).
    """
    if financial_activated or state(store, SSSE_LOCK) != "none" or not deadline_passed(issue, days, today):
        return False
    fire(store, SSSE_LOCK, LOCK)
    store.write(store["ssse.state"], "lock_reason", "deadline")
    return True
