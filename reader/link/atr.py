"""Reading an ATR on the reader side (ISO/IEC 7816-3 §8).

The parser is pure and lives with the card's ATR declaration in chip/contacts/atr.py;
this module re-exports it and adds `explain(atr)`, the text a command-line
tool prints: every byte, then the parameters the contacts will use.
"""

from __future__ import annotations

from chip.contacts.atr import Atr, AtrError, parse_atr
from chip.contacts.timing import CARD_CHARACTER_ETU, DD, FD

__all__ = ["Atr", "AtrError", "explain", "parse_atr"]


def explain(atr: bytes | str | Atr) -> list[str]:
    """Lines describing an ATR (bytes, hex text with or without spaces/colons, or a parsed Atr).

    Raises AtrError (the reason) for a malformed ATR or text that is not hex.
    """
    if isinstance(atr, str):
        text = atr.replace(":", " ")
        try:
            atr = bytes.fromhex(text)
        except ValueError:
            raise AtrError(f"not hexadecimal: {text!r}") from None
    parsed = atr if isinstance(atr, Atr) else parse_atr(atr)
    lines = [f"ATR {parsed.raw.hex(' ').upper()}"] + parsed.explain()
    offered = ", ".join(f"T={t}" for t in parsed.protocols)
    if parsed.negotiable and parsed.ta1 is None:
        lines.append(f"protocols {offered}: negotiable mode; no TA1: T={parsed.default_protocol} at Fi/Di "
                     f"{FD}/{DD} for the whole session, no PPS needed")
    elif parsed.negotiable:
        lines.append(f"protocols {offered}: negotiable mode; without PPS T={parsed.default_protocol} at Fi/Di "
                     f"{FD}/{DD}, TA1 allows up to {parsed.fi}/{parsed.di}")
    else:
        lines.append(f"protocols {offered}: specific mode, T={parsed.specific} at Fi/Di {parsed.fi}/{parsed.di} "
                     f"at once (no PPS)")
    lines.append(f"characters: {parsed.guard_etu()} etu to the card (N={parsed.n}), "
                 f"{CARD_CHARACTER_ETU} etu from the card")
    if 0 in parsed.protocols:
        lines.append(f"T=0: WI {parsed.wi}, WWT {parsed.wwt_etu()} etu at Di {parsed.di}")
    if 1 in parsed.protocols:
        lines.append(f"T=1: IFSC {parsed.ifsc}, EDC {parsed.edc.upper()}, CWT {parsed.cwt_etu} etu, "
                     f"BWT {parsed.bwt_etu()} etu at Fi/Di {parsed.fi}/{parsed.di}")
    return lines
