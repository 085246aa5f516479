"""Every lifecycle transition of the card's applications, in one table, and its states' names.

Each *machine* is one persistent field of one `Vars` object; its transitions
are `{state: {event: new state}}`. Applets fire events here and never write
lifecycle fields themselves, nor the reason a machine records next to its
state (the SSSE lock's `lock_reason`): `fire` writes both. An event a state
does not accept is refused with the status word of `REFUSALS` (default
`6985`) and changes nothing. States and reasons are named constants here; the
strings are what card images store.

The project's SSSE extensions (docs/card/lifecycle.md): the activation
deadline, applied at power-up by `apply_deadline`, and its counterpart at
APPLICATION UNBLOCK, `lift_loss_lock`.
"""

import datetime

from chip.iso.sw import SW_APPLICATION_PERMANENTLY_BLOCKED, SW_CONDITIONS_NOT_SATISFIED, CardError

# machine name -> (Vars object in the store, field)
SSSE_LIFECYCLE = ("ssse.state", "lifecycle")  # ISSUED -> ACTIVE
SSSE_LOCK = ("ssse.state", "lock")  # NONE | LOCKED (loss lock, temporary) | BLOCKED (permanent)
CARD = ("card", "state")  # OK | BLOCKED (CARD BLOCK, irreversible)
FIN_ACTIVATION = ("fin.state", "activation")  # NOT_ACTIVATED <-> ACTIVATED (issuer script PUT DATA DF7F)
FIN_LOCK = ("fin.state", "lock")  # NONE <-> BLOCKED (issuer scripts APPLICATION BLOCK / UNBLOCK)

# The states. These strings are what card images store: they never change.
ISSUED, ACTIVE = "issued", "active"
NONE, LOCKED, BLOCKED = "none", "locked", "blocked"
OK = "ok"
NOT_ACTIVATED, ACTIVATED = "not_activated", "activated"

# Why a machine is in its state, for the machines that record it (stored strings too).
NO_REASON = ""
REPORTED = "reported"  # the holder's loss report: APPLICATION BLOCK P2 00 (docs/card/lifecycle.md §3)
DEADLINE = "deadline"  # the activation deadline passed (docs/card/lifecycle.md §2)
PERMANENT = "permanent"  # APPLICATION BLOCK P2 01 (P5 §6.1)
REASON_FIELDS = {SSSE_LOCK: "lock_reason"}  # machine -> the field of the same Vars object that says why

ACTIVATE = "activate"
LOCK = "lock"
LOCK_PERMANENT = "lock_permanent"
UNLOCK = "unlock"
CARD_BLOCK = "card_block"
DEACTIVATE = "deactivate"

TRANSITIONS = {
    SSSE_LIFECYCLE: {
        ISSUED: {ACTIVATE: ACTIVE},
        ACTIVE: {ACTIVATE: ACTIVE},
    },
    SSSE_LOCK: {
        NONE: {LOCK: LOCKED, LOCK_PERMANENT: BLOCKED, UNLOCK: NONE},
        LOCKED: {UNLOCK: NONE},  # a locked SSSE answers no APPLICATION BLOCK (docs/card/lifecycle.md §3: 6985)
        BLOCKED: {},
    },
    CARD: {
        OK: {CARD_BLOCK: BLOCKED},
        BLOCKED: {},
    },
    FIN_ACTIVATION: {
        NOT_ACTIVATED: {ACTIVATE: ACTIVATED, DEACTIVATE: NOT_ACTIVATED},
        ACTIVATED: {ACTIVATE: ACTIVATED, DEACTIVATE: NOT_ACTIVATED},
    },
    FIN_LOCK: {
        NONE: {LOCK: BLOCKED, UNLOCK: NONE},
        BLOCKED: {LOCK: BLOCKED, UNLOCK: NONE},
    },
}

REFUSALS = {
    (SSSE_LOCK, BLOCKED, UNLOCK): SW_APPLICATION_PERMANENTLY_BLOCKED,
}

INITIAL = {SSSE_LIFECYCLE: ISSUED, SSSE_LOCK: NONE, CARD: OK, FIN_ACTIVATION: NOT_ACTIVATED, FIN_LOCK: NONE}


def initial(name: str) -> dict:
    """The lifecycle fields of the store's Vars object `name` as personalisation writes them:
    each of its machines in its initial state, with no reason where the machine records one."""
    fields = {}
    for machine, start in INITIAL.items():
        if machine[0] == name:
            fields[machine[1]] = start
            why = REASON_FIELDS.get(machine)
            if why is not None:
                fields[why] = NO_REASON
    return fields


def state(store, machine) -> str:
    name, field = machine
    return getattr(store[name], field)


def reason_of(store, machine) -> str:
    """Why `machine` is in its state (NO_REASON when it records none now)."""
    return getattr(store[machine[0]], REASON_FIELDS[machine])


def fire(store, machine, event, reason: str = NO_REASON) -> str:
    """Apply `event` to `machine` inside the current transaction; return the new state.

    A machine that records why it is in its state (REASON_FIELDS) gets `reason` with the
    transition (NO_REASON, the default, clears it); a refused event changes neither.
    """
    name, field = machine
    why = REASON_FIELDS.get(machine)
    if why is None and reason:
        raise ValueError(f"{name}.{field} records no reason")
    holder = store[name]
    current = getattr(holder, field)
    new = TRANSITIONS[machine][current].get(event)
    if new is None:
        raise CardError(REFUSALS.get((machine, current, event), SW_CONDITIONS_NOT_SATISFIED))
    if new != current:
        store.write(holder, field, new)
    if why is not None and getattr(holder, why) != reason:
        store.write(holder, why, reason)
    return new


def deadline(issue: datetime.date, days: int) -> datetime.date:
    """The last day of the activation deadline: `days` after the issue date."""
    return issue + datetime.timedelta(days=days)


def apply_deadline(store, today: datetime.date, last_day: datetime.date, financial_activated) -> bool:
    """The SSSE activation-deadline rule (docs/card/lifecycle.md §2), applied at power-up.

    Past `last_day` (`deadline`) with the financial application not activated
    (`financial_activated()`), an unlocked SSSE becomes loss-locked with reason
    DEADLINE. Returns whether it fired (the caller commits). It runs at every
    reset: the cheap tests come first, and the financial application is asked
    only once the day has passed.
    """
    if state(store, SSSE_LOCK) != NONE or today <= last_day or financial_activated():
        return False
    fire(store, SSSE_LOCK, LOCK, reason=DEADLINE)
    return True


def lift_loss_lock(store, financial_activated: bool) -> None:
    """The SSSE's loss lock lifts and its reason goes (APPLICATION UNBLOCK, docs/card/lifecycle.md §3);
    a lock for the activation deadline only once the financial application is activated (6985)."""
    if reason_of(store, SSSE_LOCK) == DEADLINE and not financial_activated:
        raise CardError(SW_CONDITIONS_NOT_SATISFIED)
    fire(store, SSSE_LOCK, UNLOCK)
