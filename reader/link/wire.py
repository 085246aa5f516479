"""The simulated contacts: a `Wire` joining the reader firmware and the card, and `WireReader`.

Both ends are sans-I/O state machines (docs/wire.md); the wire moves their
bytes, counts elementary time units (etu) and converts them to seconds from
Fi, Di and the clock frequency, so a bench can say how long a transaction
takes on a real card at a given TA1. It also injects faults: bit flips with a
seed, dropped or extra bytes, parity errors (a T=0 character repeated after
the receiver's error signal; for T=1 the block's EDC then fails), a mute card,
a slow card.

`Pump` is the loop that feeds bytes between a reader end and a card end until
the reader end is done; `Wire` is that loop with a line: time, faults, a log.
A test harness that wants the ends alone, without time, runs a `Pump`.

`WireReader` is a `Reader`: reset() activates the card (reader/link/activation.py:
the cold reset, a warm one when LD/T 32 P2 §8.5 calls for it, the ATR checked
against P2's timing and P8 §5.1.3's acceptance; `ActivationError` when the card
is deactivated), runs a PPS when the ATR calls for one, then every transmit()
goes through the reader firmware, the wire and the card's protocol handler over
T=0 or T=1, so every test and trace can run at the byte level.

Character timing (ISO 7816-3 §8.3, LD/T 32 P2 §9.2.2.1): the reader's
characters are 12 + N etu apart, N from TC1 (N = 255: the minimum, 12 etu on
T=0 and 11 on T=1); TC1 binds the reader only, so the card's characters are
12 etu apart whatever N is. The values are chip.contacts.timing's.
"""

import random
from dataclasses import dataclass, field

from chip import Card
from chip.contacts.atr import parse_atr
from chip.contacts.pps import CardPps
from chip.contacts.t0 import NULL, CardT0, in_sw1_range
from chip.contacts.t1 import IFS_MAX, CardT1
from chip.contacts.timing import (
    CARD_CHARACTER_ETU,
    DD,
    DEFAULT_CLOCK,
    FD,
    MIN_CHARACTER_ETU,
    REPEATED_CHARACTER_ETU,
    etu_seconds,
)
from reader.base import Reader
from reader.link.activation import COLD, Activation, activate
from reader.link.pps import ReaderPps
from reader.link.t0 import ReaderT0
from reader.link.t1 import ReaderT1
from reader.link.t1 import describe as describe_t1

MAX_ROUNDS = 100_000


class LinkError(Exception):
    """The link failed (the firmware gave up after its recovery rules): there is no response."""


class ActivationError(LinkError):
    """The card's activation failed and the reader deactivated it (LD/T 32 P2 §8.5): `.activation`
    holds every reset with the rule its answer broke (`.activation.rule`)."""

    def __init__(self, activation: Activation):
        super().__init__(f"activation failed: {activation.reason}")
        self.activation = activation


@dataclass
class Faults:
    """What the wire does wrong, reproducibly from `seed`.

    Rates are per byte; `limit` caps how many faults are injected in all (a
    property test keeps faults below the firmware's retry limit with it).
    `mute` silences the card; `slow_etu(apdu)` gives the card's processing
    time for a command (WTX on T=1, NULL bytes on T=0).
    """

    seed: int = 0
    flip: float = 0.0
    drop: float = 0.0
    extra: float = 0.0
    parity: float = 0.0
    to_card: bool = True
    to_reader: bool = True
    limit: int | None = None
    mute: bool = False
    slow_etu: object = None  # callable(apdu) -> etu, or None
    injected: int = field(default=0, init=False)

    def __post_init__(self):
        self._rng = random.Random(self.seed)

    def _allow(self) -> bool:
        return self.limit is None or self.injected < self.limit

    def apply(self, data: bytes, to_card: bool, protocol: int) -> tuple[bytes, int, bool, list[str]]:
        """What arrives: (bytes, extra etu spent on repetitions, a parity error seen, notes).

        A flipped bit or a parity fault is one bad character, which the receiver's parity
        check always sees: on T=0 it signals the error and the sender repeats the character
        (7816-3 §7.3), so the byte arrives intact, late; on T=1 the byte arrives wrong and
        the block is answered as an EDC error. An extra byte is line noise: on T=1 it also
        fails parity. A dropped byte is silently missing.
        """
        if not (self.to_card if to_card else self.to_reader):
            return data, 0, False, []
        out, extra_etu, parity_seen, notes = bytearray(), 0, False, []
        rng = self._rng
        for byte in data:
            if self.drop and self._allow() and rng.random() < self.drop:
                self.injected += 1
                notes.append(f"dropped {byte:02X}")
                continue
            bad = (self.parity and self._allow() and rng.random() < self.parity) or \
                (self.flip and self._allow() and rng.random() < self.flip)
            if bad:
                self.injected += 1
                if protocol == 0:
                    extra_etu += REPEATED_CHARACTER_ETU
                    notes.append(f"parity error on {byte:02X}: error signal, character repeated")
                else:
                    bit = 1 << rng.randrange(8)
                    notes.append(f"flipped {byte:02X} -> {byte ^ bit:02X} (parity error)")
                    byte ^= bit
                    parity_seen = True
            out.append(byte)
            if self.extra and self._allow() and rng.random() < self.extra:
                self.injected += 1
                junk = rng.randrange(256)
                notes.append(f"extra byte {junk:02X}")
                out.append(junk)
                parity_seen = parity_seen or protocol == 1
        return bytes(out), extra_etu, parity_seen, notes


@dataclass
class Event:
    seconds: float  # simulated time since the reader was made
    direction: str  # ">" reader to card, "<" card to reader, "!" fault or timeout
    data: bytes
    note: str = ""


class Pump:
    """Feeds bytes between a reader end and a card end (docs/wire.md) until the reader end is done.

    Each round carries what the reader end sends to the card end, then what the card end answers
    back. A round in which nothing moves is silence: a card end waiting for the rest of a T=1
    block gives up first (its character waiting time is the shorter) and may answer at once;
    else the reader end's wait runs out (`timeout()`). The line is the four hooks, which here
    deliver every byte as sent and count no time; `Wire` makes them a line with time and faults.
    """

    def __init__(self, reader_end, card_end):
        self.reader_end = reader_end
        self.card_end = card_end

    def run(self, apdu: bytes):
        """One command APDU through both ends; returns the reader end, done (`response` or `error`).
        LinkError when the ends never finish (a protocol loop)."""
        reader, card = self.reader_end, self.card_end
        reader.start(apdu)
        for _ in range(MAX_ROUNDS):
            moved = False
            sent = reader.output()
            if sent:
                moved = True
                self.to_card(sent)
            self.card_busy()
            answer = card.output()
            if answer and self.to_reader(answer):
                moved = True
            if reader.done:
                return reader
            if not moved:
                if getattr(card, "wait_etu", 0) and hasattr(card, "timeout"):
                    card.timeout()
                    if card.has_output:  # it may answer at once (an R-block): the next round delivers it
                        continue
                self.silence(reader.wait_etu)
                reader.timeout()
                if reader.done:
                    return reader
        raise LinkError("the exchange did not finish (a protocol loop)")

    # -- the line ---------------------------------------------------------------------------
    def to_card(self, data: bytes) -> None:
        """Bytes the reader end sent, to the card end."""
        self.card_end.receive(data)

    def to_reader(self, data: bytes) -> bool:
        """Bytes the card end sent, to the reader end; False when they never reach it."""
        self.reader_end.receive(data)
        return True

    def card_busy(self) -> None:
        """The card end has processed what it received (its `busy_etu`, if any, is the time it took)."""

    def silence(self, wait_etu: int) -> None:
        """Nothing moved: the reader end's wait of `wait_etu` passes."""


class Wire(Pump):
    """Moves bytes between a reader end and a card end, counting etu."""

    def __init__(self, reader_end, card_end, protocol: int, fi: int = FD, di: int = 4,
                 clock: int = DEFAULT_CLOCK, to_card_etu: int = MIN_CHARACTER_ETU,
                 to_reader_etu: int = CARD_CHARACTER_ETU, faults: Faults | None = None, log=None,
                 log_offset: float = 0.0):
        super().__init__(reader_end, card_end)
        self.protocol = protocol
        self.fi, self.di, self.clock = fi, di, clock
        self.to_card_etu = to_card_etu  # start-to-start of the reader's characters: 12 + N (TC1)
        self.to_reader_etu = to_reader_etu  # of the card's characters: TC1 does not apply to them
        self.faults = faults or Faults()
        self.etu = 0
        self.log = log  # list of Event, or None
        self.log_offset = log_offset  # simulated seconds before this wire (log times are absolute)

    @property
    def seconds(self) -> float:
        """Simulated time: one etu is Fi / Di clock cycles."""
        return etu_seconds(self.etu, self.fi, self.di, self.clock)

    def _note(self, direction: str, data: bytes, note: str = "") -> None:
        if self.log is not None:
            self.log.append(Event(self.log_offset + self.seconds, direction, data, note))

    def _carry(self, data: bytes, end, to_card: bool) -> None:
        """Move `data` to `end` through the faults, counting its time on the line."""
        arrived, extra, parity, notes = self.faults.apply(data, to_card, self.protocol)
        self.etu += len(data) * (self.to_card_etu if to_card else self.to_reader_etu) + extra
        for note in notes:
            self._note("!", b"", note)
        if not arrived:
            return
        if parity:
            end.receive(arrived, parity_error=True)
        else:
            end.receive(arrived)

    def to_card(self, data: bytes) -> None:
        self._note(">", data)
        self._carry(data, self.card_end, to_card=True)

    def to_reader(self, data: bytes) -> bool:
        if self.faults.mute:
            return False
        self._note("<", data)
        self._carry(data, self.reader_end, to_card=False)
        return True

    def card_busy(self) -> None:
        card = self.card_end
        busy = getattr(card, "busy_etu", 0)
        if busy:
            self.etu += busy
            card.busy_etu = 0  # the wire consumes the processing time once

    def silence(self, wait_etu: int) -> None:
        self.etu += wait_etu
        self._note("!", b"", f"timeout after {wait_etu} etu")

    def exchange(self, apdu: bytes) -> bytes:
        """One command APDU through the reader firmware and the card; LinkError when it gives up."""
        reader = self.run(apdu)
        if reader.error:
            raise LinkError(reader.error)
        return reader.response


class WireReader(Reader):
    """A `Reader` that runs APDUs through the reader firmware, the wire and the card, over T=0 or T=1.

    `protocol`: "T=0" or "T=1"; by default the card's own, the first protocol its ATR offers (T=0
    on the default card). `pps`: ask for this TA1 byte (Fi/Di) by PPS after the ATR; by default
    the card's TA1. No PPS is sent when there is nothing to negotiate: the first offered protocol
    at Fd/Dd 372/1 (no TA1, or TA1 11) is what runs without one (ISO 7816-3 §6.3.1, P2 §8.7).
    `faults` and `clock` go to the wire; `log` collects every byte.
    """

    def __init__(self, card: Card, protocol: str | None = None, pps: int | None = None,
                 faults: Faults | None = None, clock: int = DEFAULT_CLOCK, log: list | None = None,
                 ifsd: int = IFS_MAX, one_byte: bool = False):
        if protocol not in (None, "T=0", "T=1"):
            raise ValueError(f"protocol must be 'T=0' or 'T=1', not {protocol!r}")
        self.card = card
        if protocol is None:
            self.protocol = parse_atr(card.atr).default_protocol
        else:
            self.protocol = 0 if protocol == "T=0" else 1
        self.pps = pps
        self.faults = faults or Faults()
        self.clock = clock
        self.log = log
        self.ifsd = ifsd
        self.one_byte = one_byte
        self.wire = None
        self.finished_etu = 0  # etu and seconds of the wires of earlier sessions (each reset makes a new one)
        self.finished_seconds = 0.0
        self.atr = None
        self.activation: Activation | None = None  # the last reset's (reader/link/activation.py)

    def reset(self) -> bytes:
        """Activate the card at the initial etu (Fi 372, Di 1), then PPS if needed, then the protocol.

        The activation (reader/link/activation.py) makes the cold reset and, when the cold ATR fails
        in a way P2 §8.5 lets a warm reset repair, a warm one; the log shows each ATR, and each failed
        one with its rule. A failed activation deactivates the card: ActivationError (a LinkError).
        The etu counted are the ATRs' own, on I/O from TS on (`Activation.etu`); the clocks before TS
        (RST low, the card's answer time) are in `self.activation.clocks` only."""
        self._finish()
        self.atr = None
        self.activation = result = activate(self.card, self.protocol)
        activation = Wire(None, None, self.protocol, FD, DD, self.clock, faults=Faults(), log=self.log,
                          log_offset=self.seconds)
        for answer in result.resets:
            if answer.received:
                activation._note("<", answer.received, "ATR" if answer.kind == COLD else "ATR (warm reset)")
            activation.etu += answer.atr_etu
            if not answer.ok:
                activation._note("!", b"", answer.describe())
        if result.params is None:
            self.finished_etu += activation.etu
            self.finished_seconds += activation.seconds
            raise ActivationError(result)
        atr, params = result.atr, result.params
        self.atr = params
        activation.to_card_etu = params.guard_etu(0)
        if params.specific is not None:  # specific mode (TA2): TA1's values apply at once, no PPS
            fi, di = params.fi, params.di
        else:
            fi, di = self._negotiate(params, activation)
        self.finished_etu += activation.etu
        self.finished_seconds += activation.seconds
        if self.protocol == 0:
            card_end = CardT0(self.card, wi=params.wi, di=di, one_byte=self.one_byte,
                              delay_etu=self.faults.slow_etu)
            reader_end = ReaderT0(wi=params.wi, di=di)
        else:
            card_end = CardT1(self.card, ifsc=params.ifsc, edc=params.edc, bwi=params.bwi, cwi=params.cwi,
                              fi=fi, di=di, delay_etu=self.faults.slow_etu)
            reader_end = ReaderT1(ifsc=params.ifsc, ifsd=self.ifsd, edc=params.edc, bwi=params.bwi,
                                  cwi=params.cwi, fi=fi, di=di)
        self.wire = Wire(reader_end, card_end, self.protocol, fi, di, self.clock,
                         to_card_etu=params.guard_etu(self.protocol), faults=self.faults, log=self.log,
                         log_offset=self.seconds)
        return atr

    def _negotiate(self, params, activation: Wire) -> tuple[int, int]:
        """PPS after the ATR: request the asked TA1 (or the card's own); keep the defaults if refused.

        Nothing to negotiate - the first offered protocol, and Fd/Dd (no TA1, or a TA1 of 372/1:
        11, or 01 which P8 §5.1.3.3.1 names too; no other value asked) - means no PPS at all: the
        card's default runs at once (the basic P2 card)."""
        fi_di = self.pps if self.pps is not None else params.ta1
        nothing_asked = fi_di is None or (self.pps is None and (params.fi, params.di) == (FD, DD))
        if self.protocol == params.default_protocol and nothing_asked:
            return FD, DD
        reader_pps = ReaderPps(self.protocol, fi_di)
        card_pps = CardPps(params)
        request = reader_pps.output()
        activation._note(">", request, "PPS request")
        activation.etu += len(request) * activation.to_card_etu
        card_pps.receive(request)
        answer = card_pps.output()
        if answer:
            activation._note("<", answer, "PPS response")
            activation.etu += len(answer) * activation.to_reader_etu
            reader_pps.receive(answer)
        else:
            offered = ", ".join(f"T={t}" for t in params.protocols)
            why = "" if self.protocol in params.protocols else \
                f" (the ATR offers {offered} only: a real reader would reset or reject the card)"
            activation._note("!", b"", f"no PPS response: the card refused{why}; default Fi/Di kept")
            activation.etu += reader_pps.wait_etu
            reader_pps.timeout()
        if reader_pps.accepted:
            return reader_pps.fi, reader_pps.di
        return FD, DD

    def _finish(self) -> None:
        if self.wire is not None:
            self.finished_etu += self.wire.etu
            self.finished_seconds += self.wire.seconds
            self.wire = None

    def transmit(self, apdu: bytes) -> bytes:
        if self.wire is None:
            self.reset()
        return self.wire.exchange(bytes(apdu))

    def power_off(self) -> None:
        self._finish()
        self.card.power_off()

    @property
    def total_etu(self) -> int:
        return self.finished_etu + (self.wire.etu if self.wire is not None else 0)

    @property
    def seconds(self) -> float:
        """Simulated time on the contacts since this reader was made (ATR, PPS and every exchange)."""
        return self.finished_seconds + (self.wire.seconds if self.wire is not None else 0.0)


def describe_t0(data: bytes, direction: str, ins: int | None) -> str:
    """What a run of T=0 bytes is, given the INS of the current header."""
    if direction == ">":
        return "header CLA INS P1 P2 P3" if len(data) == 5 and ins is None else f"data ({len(data)} bytes)"
    first = data[0]
    if ins is not None and first == ins:
        return "ACK" + (f", data ({len(data) - 3} bytes), SW" if len(data) > 3 else "")
    if ins is not None and first == ins ^ 0xFF:
        return "~INS (one byte)"
    if first == NULL:
        return "NULL (the card needs more time)" + (", ..." if len(data) > 1 else "")
    if len(data) == 2 and in_sw1_range(first):
        return "SW1 SW2"
    return ""


def explain_log(events: list, protocol: int) -> list[str]:
    """The byte stream with each block explained (`sscard wire-log`), times in simulated ms."""
    lines, ins, expect_header = [], None, True
    for event in events:
        stamp = f"{event.seconds * 1000:10.3f} ms"
        if event.direction == "!":
            lines.append(f"{stamp}  !! {event.note}")
            continue
        note = event.note
        if not note and protocol == 1:
            note = describe_t1(event.data)
        elif not note and protocol == 0:
            if event.direction == ">" and expect_header and len(event.data) == 5:
                ins, expect_header = event.data[1], False
                note = "header CLA INS P1 P2 P3"
            else:
                note = describe_t0(event.data, event.direction, ins)
                if event.direction == "<" and event.data[-2:][:1] and len(event.data) >= 2 \
                        and in_sw1_range(event.data[-2]) and event.data[-2] != NULL:
                    expect_header = True  # SW1 SW2 end the command
        lines.append(f"{stamp}  {event.direction} {event.data.hex(' ').upper()}" + (f"    {note}" if note else ""))
    return lines
