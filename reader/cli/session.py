"""The reader through which a command drives its card: over the simulated contacts (--wire),
with the card's random source seeded (--seed), recorded while `sscard record` runs the command."""

import contextlib
import io
import random

from chip import Card
from reader.traces.replay import RecordingReader, TraceWriter, seeded, start_directives


class Recording:
    """What `sscard record` collects while its command runs: one trace, whose directives are taken
    from the card when the command first reaches it (before the first APDU)."""

    def __init__(self, seed: int, command: list):
        self.seed = seed  # set on the card unless the command has its own --seed
        self.command = command
        self.out = io.StringIO()
        self.writer = None

    def wrap(self, reader, card, seed):
        if self.writer is None:
            directives = start_directives(card, seed, reader) if card is not None else {}
            self.writer = TraceWriter(self.out, header=["sscard " + " ".join(self.command)], directives=directives)
        return RecordingReader(reader, writer=self.writer)

    @property
    def exchanges(self) -> int:
        return self.writer.exchanges if self.writer is not None else 0


_recording = None  # a Recording while `sscard record` runs a command
_seed = None  # the running command's --seed


def use_seed(seed: int | None) -> None:
    """The running command's --seed (None: none given), for `card_reader`."""
    global _seed
    _seed = seed


@contextlib.contextmanager
def recording(command: list):
    """Record the APDUs of `command` while it runs inside; the card's random source is seeded with a
    fresh seed the trace keeps (@random) unless the command gives its own --seed."""
    global _recording
    previous, _recording = _recording, Recording(random.SystemRandom().randrange(1, 1 << 32), command)
    try:
        yield _recording
    finally:
        _recording = previous


def card_reader(reader):
    """The reader of a command that drives a card: the card's random source seeded with --seed (or
    with the seed `sscard record` chose), and wrapped in a RecordingReader while `sscard record` runs."""
    card = getattr(reader, "card", None)
    seed = _seed if _seed is not None else _recording.seed if _recording is not None else None
    if card is not None and seed is not None:
        card.random = seeded(seed)
    if _recording is None:
        return reader
    return _recording.wrap(reader, card, seed)


def wire_reader(card: Card, protocol: str | None, **kw):
    """A WireReader on `card` over "t0" or "t1"; None: the card's own protocol (the first its ATR offers)."""
    from reader.link.wire import WireReader

    return WireReader(card, protocol=None if protocol is None else "T=0" if protocol == "t0" else "T=1", **kw)
