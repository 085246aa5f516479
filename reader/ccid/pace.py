"""A real card's pace on the firmware's line (`--realtime`): when an answer is due, and when the reader asks
the host for more time.

By default the firmware answers as soon as it has computed the answer: a bench wants speed. With
`--realtime` each answer waits for the time the exchange takes on the contacts at the parameters in
force - Fi/Di, the clock, the reader's character time 12 + N (TC1) and the card's 12 etu
(ISO/IEC 7816-3 §7.2, §8.3; LD/T 32 P2 §9.2.2.1), the card's processing time (a `delay` fault) - so
a terminal sees a real card's pace: a 300-byte response at 372/1 and 4 MHz takes about 0.34 s.

A card that works longer asks the reader for time - NULL `60` bytes on T=0, one per work waiting
time (§10.2), S(WTX request) on T=1 (§11.4.3) - and the reader, whose host is waiting too, keeps the
host's driver waiting with it: while the card works, a time-request byte (`TIME_REQUEST`, one byte
80-FF before an answer, which libccid's ccid_serial.c ReadSerial skips and then reads on with its
timeout restarted) every `TIME_REQUEST_INTERVAL`. The driver computes its read timeout from the
card's waiting times (ifdhandler.c T0_card_timeout, T1_card_timeout: at least 3 s on T=0, BWT and
1 s more on T=1), which a card busy for longer - a `delay` fault, or a real card computing a
cryptogram at a low clock - would exceed; a reader that stayed silent would lose the command.

`Pace` is the schedule of one answer, in seconds from the command's arrival; the pty adapter keeps
it (reader/ccid/pty.py). Everything here is arithmetic: no clock is read.
"""

from dataclasses import dataclass

from chip.contacts.t0 import CardT0
from chip.contacts.t1 import CardT1
from chip.contacts.timing import CARD_CHARACTER_ETU, etu_seconds
from reader.ccid.levels import pass_block
from reader.link.t0 import ReaderT0
from reader.link.t1 import ReaderT1
from reader.link.wire import Wire

TIME_REQUEST = b"\x80"  # one byte 80-FF: "more time", which the driver reads and skips (ccid_serial.c ReadSerial)
TIME_REQUEST_INTERVAL = 0.5  # seconds: half the least margin of libccid's timeouts (the 1 s it adds on T=1)


@dataclass(frozen=True)
class Pace:
    """When one answer is due (`seconds`) and when a time-request byte precedes it (`requests`), from
    the command's arrival."""

    seconds: float = 0.0
    requests: tuple[float, ...] = ()


INSTANT = Pace()  # a command the reader answers itself: no time on the contacts


@dataclass(frozen=True)
class Line:
    """The contacts' timing in force: Fi, Di, the clock (Hz) and the reader's character time (12 + N)."""

    fi: int
    di: int
    clock: int
    to_card_etu: int

    def seconds(self, etu: int) -> float:
        return etu_seconds(etu, self.fi, self.di, self.clock)

    def pace(self, etu: int, busy=()) -> Pace:
        """The schedule of an answer due after `etu`, the card working during each (start, length) of
        `busy` (etu): a time request every TIME_REQUEST_INTERVAL of that work."""
        requests = []
        for start, length in busy:
            begin, end = self.seconds(start), self.seconds(start + length)
            at = begin + TIME_REQUEST_INTERVAL
            while at < end:
                requests.append(at)
                at += TIME_REQUEST_INTERVAL
        return Pace(self.seconds(etu), tuple(requests))


class PacedWire(Wire):
    """The wire between the firmware's end and the card's, noting when the card works: each stretch of
    its processing time (`busy_etu`) as (start, length) in etu."""

    def __init__(self, reader_end: ReaderT0 | ReaderT1, card_end: CardT0 | CardT1, protocol: int, line: Line):
        super().__init__(reader_end, card_end, protocol, line.fi, line.di, line.clock,
                         to_card_etu=line.to_card_etu, to_reader_etu=CARD_CHARACTER_ETU)
        self.busy: list[tuple[int, int]] = []

    def card_busy(self) -> None:
        busy = getattr(self.card_end, "busy_etu", 0)
        if busy:
            self.busy.append((self.etu, busy))
        super().card_busy()


def paced_exchange(reader: ReaderT0 | ReaderT1 | None, card_end: CardT0 | CardT1, data: bytes, protocol: int,
                   line: Line) -> tuple[bytes | None, Pace]:
    """`levels.exchange` at the card's pace: the reply (None: the card is mute or the link failed) and
    its schedule. `LinkError` when the ends never finish."""
    if reader is None:  # TPDU level on T=1: one block there, one back, the card's processing between
        assert isinstance(card_end, CardT1)
        reply = pass_block(card_end, data)
        sent, busy = len(data) * line.to_card_etu, card_end.busy_etu
        card_end.busy_etu = 0
        return reply, line.pace(sent + busy + len(reply or b"") * CARD_CHARACTER_ETU, [(sent, busy)] if busy else [])
    wire = PacedWire(reader, card_end, protocol, line)
    done = wire.run(data)
    return (None if done.error else done.response), line.pace(wire.etu, wire.busy)
