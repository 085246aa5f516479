"""The bError a CCID reader answers a failed IccPowerOn with (CCID rev 1.1 §6.2.6), from the rule
that ended the activation (reader/link/activation.py).

CCID has one code per way an ATR fails, not per LD/T 32 rule; the map (docs/decisions.md §5):

- ICC_MUTE `FE`, the reader's wait ran out: `mute` (no TS within 40 000 clocks), `gap` (more
  than 9600 etu without a character), `long` (not finished within 19 200 etu);
- XFR_PARITY_ERROR `FD`: `parity`;
- BAD_ATR_TS `F8`: `TS`;
- BAD_ATR_TCK `F7`: `TCK` (wrong, or on a T=0-only ATR);
- ICC_PROTOCOL_NOT_SUPPORTED `F6`, the ATR asks for what the reader does not do: `TD1`, `TA2`,
  `TD2`, `TA3`, `malformed` (characters after its end, RFU values);
- HW_ERROR `FB`, the signal broke P2's timing: `early` (TS before 400 clocks), `spacing`
  (characters less than 12 etu apart).
"""

from reader.ccid.messages import (
    BAD_ATR_TCK,
    BAD_ATR_TS,
    HW_ERROR,
    ICC_MUTE,
    ICC_PROTOCOL_NOT_SUPPORTED,
    XFR_PARITY_ERROR,
)
from reader.link import activation as rules
from reader.link.activation import Activation

BERROR = {
    rules.MUTE: ICC_MUTE, rules.GAP: ICC_MUTE, rules.LONG: ICC_MUTE,
    rules.PARITY: XFR_PARITY_ERROR,
    rules.TS: BAD_ATR_TS,
    rules.TCK: BAD_ATR_TCK,
    rules.TD1: ICC_PROTOCOL_NOT_SUPPORTED, rules.TA2: ICC_PROTOCOL_NOT_SUPPORTED,
    rules.TD2: ICC_PROTOCOL_NOT_SUPPORTED, rules.TA3: ICC_PROTOCOL_NOT_SUPPORTED,
    rules.MALFORMED: ICC_PROTOCOL_NOT_SUPPORTED,
    rules.EARLY: HW_ERROR, rules.SPACING: HW_ERROR,
}


def berror(activation: Activation) -> int | None:
    """The bError for IccPowerOn's answer: None when the activation succeeded (bStatus processed)."""
    rule = activation.rule
    return None if rule is None else BERROR[rule]
