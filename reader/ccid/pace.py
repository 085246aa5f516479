"""A real card's pace on the firmware's line (`--realtime`): when an answer is due, and when the reader asks
the host for more time.

By default the firmware answers as soon as it has computed the answer: a bench wants speed. With
`--realtime` each answer waits for the time the exchange takes on the contacts at the parameters in
force - Fi/Di, the clock, the reader's character time 12 + N (TC1) and the card's 12 etu
(ISO/IEC 7816-3 §7.2, §8.3; LD/T 32 P2 §9.2.2.1), the card's processing time (a `delay` fault) - so
a terminal sees a real card's pace: a 300-byte response at 372/1 and 4 MHz takes about 0.34 s.

A card that works longer asks the reader for time: NULL `60` bytes on T=0, one per work waiting time
(§10.2), S(WTX request) on T=1 (§11.4.3). Where the firmware itself runs the protocol - T=0 at both
levels, T=1 at short APDU level - it passes each such request on to the host as a time-request byte
(`TIME_REQUEST`, 80-FF before an answer: libccid's ccid_serial.c restarts its read timeout on one),
so the driver, whose timeout is computed from the card's waiting times, never gives up on a card
that is merely slow. At TPDU level on T=1 the S(WTX request) block itself goes to the host, whose
T=1 engine answers it.

`Pace` is the schedule of one answer, in seconds from the command's arrival; the pty adapter keeps
it (reader/ccid/pty.py). Everything here is arithmetic: no clock is read.
"""

from dataclasses import dataclass

from chip.contacts.t0 import CardT0
from chip.contacts.t1 import CardT1
from chip.contacts.timing import CARD_CHARACTER_ETU, etu_seconds, nulls_for
from reader.ccid.levels import pass_block
from reader.link.t0 import ReaderT0
from reader.link.t1 import ReaderT1
from reader.link.wire import Wire

TIME_REQUEST = b"\x80"  # one byte 80-FF: "more time", which the driver reads and skips (ccid_serial.c ReadSerial)


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

    def pace(self, etu: int, requests_etu=()) -> Pace:
        return Pace(self.seconds(etu), tuple(self.seconds(at) for at in requests_etu))


class PacedWire(Wire):
    """The wire between the firmware's end and the card's, noting when the card asked for time: each
    stretch of processing is split evenly by the NULLs the card sends during it on T=0 (`nulls_for`); on
    T=1 the S(WTX request) that grants it comes at its start."""

    def __init__(self, reader_end: ReaderT0 | ReaderT1, card_end: CardT0 | CardT1, protocol: int, line: Line):
        super().__init__(reader_end, card_end, protocol, line.fi, line.di, line.clock,
                         to_card_etu=line.to_card_etu, to_reader_etu=CARD_CHARACTER_ETU)
        self.requests: list[int] = []

    def card_busy(self) -> None:
        busy = getattr(self.card_end, "busy_etu", 0)
        if busy:
            card = self.card_end
            if isinstance(card, CardT0):
                count = nulls_for(busy, card.wwt)
                self.requests += [self.etu + busy * k // (count + 1) for k in range(1, count + 1)]
            else:
                self.requests.append(self.etu)
        super().card_busy()


def paced_exchange(reader: ReaderT0 | ReaderT1 | None, card_end: CardT0 | CardT1, data: bytes, protocol: int,
                   line: Line) -> tuple[bytes | None, Pace]:
    """`levels.exchange` at the card's pace: the reply (None: the card is mute or the link failed) and
    its schedule. `LinkError` when the ends never finish."""
    if reader is None:  # TPDU level on T=1: one block there, one back, the card's processing between
        assert isinstance(card_end, CardT1)
        reply = pass_block(card_end, data)
        etu = len(data) * line.to_card_etu + card_end.busy_etu + len(reply or b"") * CARD_CHARACTER_ETU
        card_end.busy_etu = 0
        return reply, line.pace(etu)
    wire = PacedWire(reader, card_end, protocol, line)
    done = wire.run(data)
    return (None if done.error else done.response), line.pace(wire.etu, wire.requests)
