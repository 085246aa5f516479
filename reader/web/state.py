"""A served card's state as the bench view shows it, taken in the serve thread.

The card belongs to the serve thread, so its state is read there, between two commands (the
bench's tick), and handed to the web loop as a plain dict that nobody changes afterwards. What
each application says of itself is its own `describe()`, the text `sscard info` prints (the
lifecycle and lock with its reason, the PIN's and each key's tries left, the ATC, the activation
deadline with its days left, the medical purse and records); none of it is a key or a PIN. The
card adds what only a powered card has: the ATR and protocol, the selected application and file
(ISO/IEC 7816-4 §7.1), the simulated date, the faults armed.
"""

from reader.decode.files import describe, label
from reader.report import spaced
from reader.traces.replay import issue_date


def card_state(slot, simulated_date: bool) -> dict:
    """The state of the card in `slot` (a reader.pcsc.serve.CardSlot): JSON-ready, dates as dates."""
    card = slot.card
    state = {
        "index": slot.index,
        "image": slot.image,
        "status": slot.status(),
        "inserted": slot.inserted,
        "in_reader": slot.in_reader,
        "powered": card.powered,
        "atr": spaced(card.atr),
        "protocol": f"T={card.protocol}" if card.powered and card.protocol is not None else None,
        "date": card.today,
        "simulated_date": simulated_date,
        "profile": card.config.profile,
        "issued": issue_date(card),
        "keypad": getattr(slot, "keypad", None) is not None,
        "warning": card.power_up_warning,
        "faults": [],
        "selected": None,
        "applications": {},
    }
    plan = card.faults
    if plan is not None:
        state["faults"] = [f"{fault} (fired {plan.fired(fault)})" for fault in plan.faults]
    if card.powered:
        ef = card.current_ef
        state["selected"] = {"application": card.applet.NAME, "df": label(card.current_df),
                             "ef": describe(ef) if ef is not None else None}
    if not slot.closed:
        for name, applet in card.applets.items():
            described = applet.describe()
            if described:
                state["applications"][name] = described
    return state


def fingerprint(slot) -> tuple:
    """What changes a card's state without an event of the stream (a connection made or lost):
    cheap to compare at every tick."""
    return slot.card, slot.inserted, slot.in_reader, slot.card.powered, slot.image
