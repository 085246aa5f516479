"""The card's end of activation (LD/T 32 P2 §6.1.3, §8.1): what it puts on I/O after RST rises, as data.

After the reader holds RST low for at least 400 clocks (tb on a cold reset, te on a warm one) and
lets it rise, the card answers to reset: its first character, TS, starts 400 to 40 000 clocks
after the rising edge (tc, tf); consecutive characters start 12 to 9600 initial etu apart (9600
is the "initial waiting time"); the whole ATR, from TS's start edge to 12 etu after the last
character's start edge, lasts at most 19 200 initial etu. One initial etu is Fd / Dd = 372 clocks
(P2 §7.1): the ATR runs at the default rate whatever TA1 says.

`AtrSignal` is that answer as data: the ATR bytes, the clock at which each character's start edge
comes (counted from RST's rising edge) and the characters whose parity is wrong. The reader's
side (reader/link/activation.py) judges it; a fault plan (chip.faults, `atr ...`) may change it
first. The limits are P2's, in one place for both ends.

`answer_to_reset(card, protocol)` resets the card OS and gives its signal: the ATR at
`CARD_ATR_START_CLOCKS`, its characters `CARD_CHARACTER_ETU` apart (a well-behaved card), passed
through the card's fault plan when it has one.
"""

from __future__ import annotations

from dataclasses import dataclass

from chip.contacts.end import CardOS
from chip.contacts.timing import CARD_CHARACTER_ETU, DD, FD

INITIAL_ETU_CLOCKS = FD // DD  # clocks in one initial etu: 372 (P2 §7.1, §8.1)
RST_LOW_CLOCKS = 400  # tb, te: the reader holds RST low at least this long (P2 §6.1.3.1, §6.1.3.2)
ATR_EARLIEST_CLOCKS = 400  # tc, tf: TS starts 400 ...
ATR_LATEST_CLOCKS = 40_000  # ... to 40 000 clocks after RST rises; none by then: deactivate
ATR_MIN_SPACING_ETU = 12  # start-to-start of consecutive ATR characters: at least 12 initial etu ...
INITIAL_WAITING_ETU = 9600  # ... and at most 9600 (the initial waiting time, P2 §8.1)
ATR_MAX_ETU = 19_200  # TS's start edge to 12 etu after the last character's start edge (P2 §8.1)

CARD_ATR_START_CLOCKS = ATR_EARLIEST_CLOCKS  # the simulated card answers as early as P2 lets it


@dataclass(frozen=True)
class AtrSignal:
    """What the card sends on I/O after RST rises. `atr` empty: the card stays silent (I/O high).

    `starts[i]` is the clock, counted from RST's rising edge, at which character i's start edge
    comes; `bad_parity` holds the indices of the characters whose parity bit is wrong (P2 §9.2.3:
    no error signal and no repetition during the ATR, so the reader just sees them)."""

    atr: bytes = b""
    starts: tuple[int, ...] = ()
    bad_parity: frozenset[int] = frozenset()

    def __post_init__(self):
        object.__setattr__(self, "atr", bytes(self.atr))
        object.__setattr__(self, "starts", tuple(self.starts))
        object.__setattr__(self, "bad_parity", frozenset(self.bad_parity))
        if len(self.starts) != len(self.atr):
            raise ValueError(f"an ATR signal needs one start per character: {len(self.atr)} characters, "
                             f"{len(self.starts)} starts")
        if any(later <= earlier for earlier, later in zip(self.starts, self.starts[1:])):
            raise ValueError("an ATR signal's characters must start one after the other")
        if self.starts and self.starts[0] < 0:
            raise ValueError("an ATR signal's characters start after RST rises (clock 0)")
        if not all(0 <= i < len(self.atr) for i in self.bad_parity):
            raise ValueError("bad_parity names a character the signal does not have")

    @classmethod
    def of(cls, atr: bytes, start: int = CARD_ATR_START_CLOCKS, spacing_etu: int = CARD_CHARACTER_ETU) -> AtrSignal:
        """`atr` sent from `start` clocks after RST rises, one character every `spacing_etu` initial etu."""
        step = spacing_etu * INITIAL_ETU_CLOCKS
        return cls(bytes(atr), tuple(start + i * step for i in range(len(atr))))


def answer_to_reset(card: CardOS, protocol: int | None = None) -> AtrSignal:
    """Reset `card` and give what it sends on I/O. A cold and a warm reset do the same to the card OS
    (powered, volatile state cleared, persistent state kept: `Card.reset` is `Card.power_on`), so
    this serves both; the reader knows which one it made.

    A card with a fault plan (`card.faults`, chip.faults: the contacts never import it) passes its
    signal through `faults.answer_to_reset(signal)`, which may make it late, mute or garbled."""
    signal = AtrSignal.of(card.power_on(protocol))
    plan = getattr(card, "faults", None)
    return signal if plan is None else plan.answer_to_reset(signal)
