"""The reader's activation of a card: resets, ATR timing and ATR acceptance, sans-I/O.

LD/T 32 P2 §6.1.3 and §8.5 (Figure 9) give the order, P2 §8.1 the timing, P8 §5.1.3 what a
terminal accepts. The reader holds RST low for 400 clocks (tb; te on a warm reset: P2's minimum),
lets it rise and takes the card's answer, an `chip.contacts.activation.AtrSignal`, character by
character:

- no TS within 40 000 clocks of RST rising: deactivate (P2 §6.1.3.1 and §6.1.3.2 say so for the
  cold and the warm reset alike: no warm reset follows) - rule `mute`;
- more than 9600 initial etu (the initial waiting time) from one character's start to the next
  one's, or to a character the structure still announces: deactivate at once (P2 §8.5) - `gap`;
- anything else wrong gets the cold reset a warm reset (P2 §8.5, "Case = 2"), and the warm
  reset's ATR either passes or the card is deactivated: TS before 400 clocks (`early`, P2 §6.1.3:
  400 ... 40 000), two characters less than 12 etu apart (`spacing`, P2 §8.1), not finished within
  19 200 etu (`long`, P2 §8.1), a character with a parity error (`parity`, P2 Figure 9), and an
  ATR that P8 §5.1.3 rejects (`accept`): TS other than 3B or 3F (`TS`), a structure T0 and the
  TDi do not add up to (`malformed`: truncated, extra characters, RFU values), a TCK wrong or
  forbidden (`TCK`: P8 §5.1.3.4 rejects one on an ATR that offers T=0 only without T=15), a
  protocol other than T=0 and T=1 in TD1 (`TD1`), TD2 other than T=1 or T=15 (`TD2`), a TA2 the
  reader cannot honour (`TA2`), a T=15 TA3 outside P2 §8.3.3.10 (`TA3`).

Every choice the standard leaves open is in docs/decisions.md §5 (TA1 other than 01/11, TC2,
the card's answer time). `Ladder` is the order of resets as a state machine fed signals;
`activate(card)` runs it on a card in-process (`chip.contacts.activation.answer_to_reset`) and
returns an `Activation`: `.ok`, `.atr`, `.params` (the parsed ATR), `.rule` and `.reason` when it
failed, `.resets` (each reset with its times in clocks), `.clocks`, `.etu`.

    activation = activate(card)          # cold reset, and a warm one when P2 says so
    if not activation.ok:
        print(activation.rule, activation.reason)   # e.g. "TCK", "cold reset: ...; warm reset: ..."
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from operator import xor

from chip import Card
from chip.contacts.activation import (
    ATR_EARLIEST_CLOCKS,
    ATR_LATEST_CLOCKS,
    ATR_MAX_ETU,
    ATR_MIN_SPACING_ETU,
    INITIAL_ETU_CLOCKS,
    INITIAL_WAITING_ETU,
    RST_LOW_CLOCKS,
    AtrSignal,
    answer_to_reset,
)
from chip.contacts.atr import Atr, AtrError, announced, parse_atr
from chip.contacts.timing import CARD_CHARACTER_ETU

COLD, WARM = "cold", "warm"

# The rules an activation fails by (`Activation.rule`, `Failure.rule`): a CCID firmware maps them
# to bError (reader/ccid/activation_errors.py).
MUTE = "mute"
GAP = "gap"
EARLY = "early"
SPACING = "spacing"
LONG = "long"
PARITY = "parity"
TS = "TS"
MALFORMED = "malformed"
TCK = "TCK"
TD1 = "TD1"
TA2 = "TA2"
TD2 = "TD2"
TA3 = "TA3"
DEACTIVATE_AT_ONCE = (MUTE, GAP)  # P2 §6.1.3, §8.5: no warm reset after these

READER_PROTOCOLS = (0, 1)  # what the simulated reader runs (P8 §5.1 asks for T=0)
T15 = 15  # global interface bytes
TA3_ASSUMED = 0x01  # P8 §5.1.3.3.9: T=15 without TA3 - go on as with TA3 01 (no clock stop, class A)

_CHARACTER_CLOCKS = CARD_CHARACTER_ETU * INITIAL_ETU_CLOCKS  # an ATR character "ends" 12 etu after its start edge


@dataclass(frozen=True)
class Failure:
    """Why an ATR failed: the rule's name and a sentence naming the byte or the time and the section."""

    rule: str
    reason: str

    @property
    def deactivate(self) -> bool:
        """P2 deactivates at once after this one (no warm reset)."""
        return self.rule in DEACTIVATE_AT_ONCE


class AtrRejected(AtrError):
    """An ATR the reader does not accept (P8 §5.1.3, or malformed): `.failure` names the rule."""

    def __init__(self, rule: str, reason: str):
        super().__init__(reason)
        self.failure = Failure(rule, reason)


# -- acceptance (P8 §5.1.3) ----------------------------------------------------------------------

def accept(atr: bytes) -> Atr:
    """The parsed ATR if the reader accepts these bytes (timing aside), else AtrRejected.

    TS, then the structure T0 and the TDi announce (`malformed` when characters are missing or
    follow its end; one that follows an ATR offering T=0 only is a TCK, which P8 rejects), the TCK,
    the values ISO/IEC 7816-3 leaves RFU (via parse_atr), then P8's rules on TD1, TA2, TD2, TA3.
    TA1, TB1, TC1, TB2, TC2, TB3, TC3 are taken as they come (docs/decisions.md §5)."""
    atr = bytes(atr)
    if not atr:
        raise AtrRejected(MALFORMED, "no character: TS missing")
    if atr[0] not in (0x3B, 0x3F):
        raise AtrRejected(TS, f"TS {atr[0]:02X}: P8 §5.1.3.1 accepts 3B (direct) and 3F (inverse convention) only")
    layout = announced(atr)
    if layout is None or len(atr) < layout.length:
        raise AtrRejected(MALFORMED, _parse_error(atr))
    if len(atr) > layout.length:
        extra = len(atr) - layout.length
        if extra == 1 and not layout.tck:
            raise AtrRejected(TCK, f"TCK {atr[-1]:02X} on an ATR that offers T=0 only, without T=15: "
                                   "P8 §5.1.3.4 rejects it")
        raise AtrRejected(MALFORMED, f"{extra} characters after the end T0 and the TD bytes announce")
    check = reduce(xor, atr[1:], 0)
    if layout.tck and check:
        raise AtrRejected(TCK, f"TCK {atr[-1]:02X} wrong: T0 ... TCK XOR to {check:02X}, not 00 "
                               f"(it should be {atr[-1] ^ check:02X}; P8 §5.1.3.4)")
    try:
        params = parse_atr(atr)
    except AtrError as error:
        raise AtrRejected(MALFORMED, str(error)) from None
    failure = _p8_rules(params)
    if failure is not None:
        raise AtrRejected(failure.rule, failure.reason)
    return params


def _parse_error(atr: bytes) -> str:
    try:
        parse_atr(atr)
    except AtrError as error:
        return str(error)
    raise AssertionError(f"{atr.hex()} parses, but its structure or TCK is wrong")  # pragma: no cover


def _p8_rules(params: Atr) -> Failure | None:
    """P8 §5.1.3.3's rejections, in the order of the bytes."""
    td1, ta2, td2, ta3 = params.td1, params.ta2, params.td2, params.ta3
    if td1 is not None and td1 & 0xF not in (0, 1):
        return Failure(TD1, f"TD1 {td1:02X} names T={td1 & 0xF}: P8 §5.1.3.3.4 accepts T=0 or T=1 only")
    if ta2 is not None:
        if ta2 & 0x10:
            return Failure(TA2, f"TA2 {ta2:02X}: specific mode with implicit parameters (b5 = 1), which the "
                                "reader cannot know (P8 §5.1.3.3.5)")
        if ta2 & 0xF not in READER_PROTOCOLS:
            return Failure(TA2, f"TA2 {ta2:02X}: specific mode in T={ta2 & 0xF}, which the reader does not run "
                                "(P8 §5.1.3.3.5)")
    if td2 is not None and td2 & 0xF not in (1, T15):
        return Failure(TD2, f"TD2 {td2:02X} names T={td2 & 0xF}: P8 §5.1.3.3.8 accepts T=1 or T=15 only")
    if td2 is not None and td2 & 0xF == T15 and ta3 is not None and not _p2_ta3(ta3):
        return Failure(TA3, f"TA3 {ta3:02X}: P2 §8.3.3.10 wants b8-b7 0 to 2, b2-b1 1 to 3 and the other "
                            "bits 0 (P8 §5.1.3.3.9)")
    return None


def _p2_ta3(ta3: int) -> bool:
    """P2 §8.3.3.10: clock stop XI in b8-b7 (0 none, 1 state L, 2 state H), class UI in b2-b1 (1 A,
    2 B, 3 A and B), every other bit 0."""
    return ta3 >> 6 <= 2 and 1 <= ta3 & 0x3 <= 3 and not ta3 & 0x3C


def global_ta3(params: Atr) -> int | None:
    """The T=15 TA3 the reader works with: the card's, 01 when TD2 says T=15 but sends no TA3
    (P8 §5.1.3.3.9), None when there is no T=15."""
    td2 = params.td2
    if td2 is None or td2 & 0xF != T15:
        return None
    return TA3_ASSUMED if params.ta3 is None else params.ta3


# -- one reset ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reset:
    """One reset and the answer the reader took. Times are clocks from RST's rising edge."""

    kind: str  # COLD or WARM
    received: bytes  # the characters the reader took before it accepted, or stopped
    atr_start: int | None  # tc (cold) or tf (warm): TS's start edge; None when no TS came in time
    end: int  # where the reader was done: 12 etu after the last character's start, or where it stopped
    failure: Failure | None
    rst_low: int = RST_LOW_CLOCKS  # tb (cold) or te (warm): RST held low before it rose

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def clocks(self) -> int:
        """The whole reset: RST low, then up to the end."""
        return self.rst_low + self.end

    @property
    def atr_etu(self) -> int:
        """Initial etu on I/O from TS's start edge to the end (0 without TS), rounded up."""
        if self.atr_start is None:
            return 0
        return -(-(self.end - self.atr_start) // INITIAL_ETU_CLOCKS)

    def describe(self) -> str:
        """One line for the wire log: which reset, and what the reader made of its answer."""
        if self.failure is None:
            return f"{self.kind} reset: ATR accepted"
        then = "deactivated" if self.failure.deactivate or self.kind == WARM else "warm reset (P2 §8.5, Case = 2)"
        return f"{self.kind} reset: {self.failure.reason}; {then}"


def read_answer(signal: AtrSignal, kind: str = COLD) -> tuple[Reset, Atr | None]:
    """Take the card's answer to a reset as a reader does, character by character: (the reset, the
    parsed ATR when accepted). Pure: the signal is data (chip.contacts.activation)."""
    atr, starts = signal.atr, signal.starts
    if not atr or starts[0] > ATR_LATEST_CLOCKS:
        return Reset(kind, b"", None, ATR_LATEST_CLOCKS, Failure(
            MUTE, f"no ATR within {ATR_LATEST_CLOCKS} clocks after RST rose (P2 §6.1.3)")), None
    first = starts[0]

    def stop(count: int, end: int, rule: str, reason: str) -> tuple[Reset, None]:
        return Reset(kind, atr[:count], first, end, Failure(rule, reason)), None

    if first < ATR_EARLIEST_CLOCKS:
        return stop(1, first + _CHARACTER_CLOCKS, EARLY, f"TS started {first} clocks after RST rose, before the "
                    f"{ATR_EARLIEST_CLOCKS} of P2 §6.1.3")
    i = 0
    while True:
        if i in signal.bad_parity:
            return stop(i + 1, starts[i] + _CHARACTER_CLOCKS, PARITY, f"character {i + 1} ({atr[i]:02X} as read) "
                        "has a parity error (P2 Figure 9)")
        if i == 0 and atr[0] not in (0x3B, 0x3F):
            break  # accept() names it: nothing after a wrong TS can be read
        layout = announced(atr[:i + 1])
        complete = layout is not None and i + 1 >= layout.length
        wait_until = starts[i] + INITIAL_WAITING_ETU * INITIAL_ETU_CLOCKS
        if i + 1 == len(atr) or starts[i + 1] > wait_until:
            if complete:
                break
            return stop(i + 1, wait_until, GAP, f"no character within {INITIAL_WAITING_ETU} etu after character "
                        f"{i + 1}, and the ATR is not complete (P2 §8.5)")
        spacing = starts[i + 1] - starts[i]
        if spacing < ATR_MIN_SPACING_ETU * INITIAL_ETU_CLOCKS:
            return stop(i + 2, starts[i + 1] + _CHARACTER_CLOCKS, SPACING, f"characters {i + 1} and {i + 2} "
                        f"start {spacing / INITIAL_ETU_CLOCKS:g} etu apart, less than {ATR_MIN_SPACING_ETU} (P2 §8.1)")
        if starts[i + 1] + _CHARACTER_CLOCKS - first > ATR_MAX_ETU * INITIAL_ETU_CLOCKS:
            return stop(i + 1, first + ATR_MAX_ETU * INITIAL_ETU_CLOCKS, LONG, f"the ATR is not finished within "
                        f"{ATR_MAX_ETU} etu of TS (P2 §8.1)")
        i += 1
    received = atr[:i + 1]
    end = starts[i] + _CHARACTER_CLOCKS
    try:
        params = accept(received)
    except AtrRejected as rejected:
        return Reset(kind, received, first, end, rejected.failure), None
    return Reset(kind, received, first, end, None), params


# -- the order of resets (P2 §8.5, Figure 9) ----------------------------------------------------------

@dataclass(frozen=True)
class Activation:
    """What the activation did: the resets in order, and the parsed ATR when one was accepted."""

    resets: tuple[Reset, ...]
    params: Atr | None = None

    @property
    def ok(self) -> bool:
        return self.params is not None

    @property
    def atr(self) -> bytes:
        """The accepted ATR (b"" when the activation failed)."""
        return self.resets[-1].received if self.ok else b""

    @property
    def failure(self) -> Failure | None:
        """What ended a failed activation (the last reset's failure); None when it succeeded."""
        return None if self.ok else self.resets[-1].failure

    @property
    def rule(self) -> str | None:
        failure = self.failure
        return None if failure is None else failure.rule

    @property
    def reason(self) -> str | None:
        """Every failed reset's line ("cold reset: ...; warm reset: ...") when the activation failed."""
        if self.ok:
            return None
        return "; ".join(reset.describe() for reset in self.resets)

    @property
    def warm(self) -> bool:
        """The ATR in use came after a warm reset (False when the activation failed)."""
        return self.ok and self.resets[-1].kind == WARM

    @property
    def deactivated(self) -> bool:
        """The reader deactivated the card (P2 §6.1.5): every failed activation ends so."""
        return not self.ok

    @property
    def clocks(self) -> int:
        """Clocks from the first reset's clock start (Ta) to the end of the last answer."""
        return sum(reset.clocks for reset in self.resets)

    @property
    def etu(self) -> int:
        """Initial etu the answers took on I/O (TS to the end of each): what `WireReader` counts."""
        return sum(reset.atr_etu for reset in self.resets)

    def seconds(self, clock: int) -> float:
        return self.clocks / clock


class Ladder:
    """The order of resets as a state machine: `next` is the reset to make (COLD, then WARM when
    P2 §8.5 calls for one; None when done), `answer(signal)` takes the card's answer to it."""

    def __init__(self) -> None:
        self.resets: list[Reset] = []
        self.params: Atr | None = None
        self.next: str | None = COLD

    def answer(self, signal: AtrSignal) -> Reset:
        if self.next is None:
            raise RuntimeError("the activation is over: no reset is due")
        reset, self.params = read_answer(signal, self.next)
        self.resets.append(reset)
        failure = reset.failure
        self.next = WARM if failure is not None and not failure.deactivate and reset.kind == COLD else None
        return reset

    @property
    def done(self) -> bool:
        return self.next is None

    def result(self) -> Activation:
        if not self.done:
            raise RuntimeError(f"the activation is not over: a {self.next} reset is due")
        return Activation(tuple(self.resets), self.params)


def activate(card: Card, protocol: int | None = None) -> Activation:
    """Activate `card` (in-process): cold reset, a warm one when the cold ATR fails in a way P2 lets
    a warm reset repair, and deactivation (`card.power_off()`) when the activation fails.
    `protocol`: how the card OS should behave (Card.power_on); None: the card's own."""
    ladder = Ladder()
    while not ladder.done:
        ladder.answer(answer_to_reset(card, protocol))
    result = ladder.result()
    if not result.ok:
        card.power_off()
    return result
