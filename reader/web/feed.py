"""One served card's stream, from the serve thread to the page.

The serve thread only appends: `Feed.put` adds a raw event - an exchange, a power change, a
control line - to the card's bounded history (a deque of the newest `HISTORY` events; append is
atomic, so there is no lock) and, only while a page watches the card, asks the bench to wake the
web loop. It never waits. The web loop, woken at most every `DRAIN_DELAY`, copies the history
(`list()` of a deque is one atomic step), turns what is new into `Entry`s decoded with
`reader.decode.Decoder`, and keeps the newest `ENTRY_BOUND` for the pages. A page is a human: it
gets at most `DRAIN_MOST` new entries per drain (a thousand a second); the events past that are
counted in a `gap` entry, and only their SELECTs and power changes go through the decoder (so it
still knows the selection); events the history lost between two drains leave the decoder
knowing nothing, and it starts afresh. Each watcher (one Server-Sent Events stream)
gets what is new since its last batch. Nobody watching costs the serve thread one append per event
and the web loop nothing; the export (`export`) reads the history whenever asked.

The data of a PIN command never leaves the card's side of the view: `withheld` names the
commands whose data carries a PIN in plaintext (ISO/IEC 7816-4 §11.5.6 VERIFY, §11.5.7 CHANGE
REFERENCE DATA, §11.5.10 RESET RETRY COUNTER; LD/T 32 P5 §6.3 CHANGE PIN `80 5E`); the page
shows their header and length, the decoder's lines (which give a PIN's number of digits only)
and their answer, and the export writes them as comments.
"""

import asyncio
import collections
import datetime
import io

from chip.iso.ins import SELECT, cla_ins
from reader.decode.decoder import Decoder
from reader.report import spaced
from reader.traces.replay import TraceWriter

APDU, RESET, POWER_OFF, CONTROL, SWITCH, GAP = "apdu", "reset", "power-off", "control", "switch", "gap"
HISTORY = 1000  # raw events a card keeps (what an export holds)
ENTRY_BOUND = 500  # decoded entries kept for the pages (and rows a page keeps)
DRAIN_DELAY = 0.05  # a wake-up drains this much later, so that a burst is one drain
DRAIN_MOST = 50  # new entries a drain makes at most (1,000 a second): the rest are counted, not shown
SELECT_INS = cla_ins(SELECT)[1]
PIN_INS = {0x20: "VERIFY", 0x21: "VERIFY", 0x24: "CHANGE REFERENCE DATA", 0x2C: "RESET RETRY COUNTER",
           0x5E: "CHANGE PIN"}


def withheld(apdu: bytes) -> str | None:
    """Why `apdu`'s data is not shown (a PIN command's), or None when it may be."""
    if len(apdu) > 5 and apdu[1] in PIN_INS:
        return f"{len(apdu) - 5} data bytes withheld: {PIN_INS[apdu[1]]} carries a PIN"
    return None


def masked(apdu: bytes) -> bytes:
    """A PIN command as the view keeps it: every decimal nibble of its PIN made 0, the others (the F
    fillers, CHANGE PIN's FF separator) kept, and an EMV plaintext PIN block's first byte (VERIFY
    P2 80: control field 2 and the PIN's length, EMV Book 3 §6.5.12) kept whole. The decoder still
    counts the digits and tells the formats apart; the digits themselves never reach the view's
    memory - a PIN pad clears its buffers after each entry (LD/T 32 P8 §6.2.4), and a PIN typed on
    it must not live on in the stream."""
    if withheld(apdu) is None:
        return apdu
    start = 6 if apdu[1] == 0x20 and apdu[3] == 0x80 else 5
    data = bytes((0 if b >> 4 <= 9 else b & 0xF0) | (0 if b & 0x0F <= 9 else b & 0x0F) for b in apdu[start:])
    return bytes(apdu[:start]) + data


def shown_command(apdu: bytes) -> str:
    """The command in hex as the page shows it: a PIN command's header and Lc only."""
    why = withheld(apdu)
    return spaced(apdu) if why is None else f"{spaced(apdu[:5])} ({why})"


def clock(when: float) -> str:
    """Time of day to the millisecond, local time."""
    return datetime.datetime.fromtimestamp(when).strftime("%H:%M:%S.%f")[:-3]


class Entry:
    """One event of the stream as a page sees it, decoded."""

    __slots__ = ("_json", "answer", "fields", "id", "kind", "lines", "when")

    def __init__(self, id_: int, kind: str, when: float, fields: tuple, decoder: Decoder):
        self.id, self.kind, self.when, self.fields = id_, kind, when, fields
        self.lines: list[str] = []  # the decoder's lines for an exchange's command
        self.answer: list[str] = []  # ... and for its response
        self._json: dict | None = None
        if kind == APDU:
            self.lines = decoder.command(fields[0])
            self.answer = decoder.response(fields[1])
        elif kind in (RESET, POWER_OFF, SWITCH):
            decoder.reset()

    def json(self) -> dict:
        if self._json is None:
            data = {"id": self.id, "kind": self.kind, "t": clock(self.when)}
            kind, fields = self.kind, self.fields
            if kind == APDU:
                command, response, seconds = fields
                data.update(cmd=shown_command(command), rsp=spaced(response),
                            sw=response[-2:].hex().upper() if len(response) >= 2 else "", ms=f"{seconds * 1000:.3f}",
                            title=self.lines[0], detail=self.lines[1:], answer=self.answer)
            elif kind == RESET:
                data["atr"] = spaced(fields[0])
            elif kind in (CONTROL, SWITCH):
                data.update(text=fields[0], reply=fields[1])
            elif kind == GAP:
                data["dropped"] = fields[0]
            self._json = data
        return self._json


class Watcher:
    """One page's Server-Sent Events stream on a feed: what it has been sent so far."""

    def __init__(self):
        self.cursor = 0  # the id of the newest entry sent
        self.state_version = 0  # the version of the state sent
        self.ready = asyncio.Event()  # something new (or the view is closing)


class Feed:
    """The stream of card `index`: the serve thread puts, the web loop drains and serves."""

    def __init__(self, index: int, wake=None):
        self.index = index
        self.wake = wake or (lambda: None)  # asks the web loop to drain (thread-safe, never blocks)
        # written by the serve thread
        self.history: collections.deque = collections.deque(maxlen=HISTORY)  # (number, kind, when, *fields)
        self.put_count = 0  # the number of the last event put
        self.latest_state: dict | None = None  # the newest state snapshot (assigned whole)
        # written by the web loop (`watched` and `want_state` are read by the serve thread)
        self.watched = False  # a page watches: wake the web loop, take state snapshots
        self.want_state = False  # a snapshot is wanted even though no page watches
        self.entries: collections.deque[Entry] = collections.deque(maxlen=ENTRY_BOUND)
        self.seen = 0  # the number of the last event made into an entry (or counted as not shown)
        self.next_id = 1
        self.decoder = Decoder()
        self.watchers: set[Watcher] = set()
        self.state: dict | None = None
        self.state_version = 0
        self.dropped = 0  # events not shown to the pages since they first watched

    # -- the serve thread ---------------------------------------------------------------------
    def put(self, kind: str, when: float, *fields) -> None:
        """Hand one event over (serve thread only; O(1), no lock, no wait)."""
        self.put_count += 1
        self.history.append((self.put_count, kind, when, fields))
        if self.watched:
            self.wake()

    def put_state(self, state: dict) -> None:
        self.latest_state = state
        self.wake()

    # -- the web loop ----------------------------------------------------------------------------
    def drain(self) -> bool:
        """Make entries of the events new since the last drain (while watched), pick up the newest
        state, wake the watchers. True if anything was new."""
        new = False
        if self.watched:
            new = self._take(list(self.history), DRAIN_MOST)
        state = self.latest_state
        if state is not None and state is not self.state:
            self.state = state
            self.state_version += 1
            new = True
        if new:
            for watcher in self.watchers:
                watcher.ready.set()
        return new

    def _take(self, events: list, most: int | None) -> bool:
        """Entries for the `events` not seen yet, the newest `most` at most (None: all). Those past
        `most` are not shown but still move the decoder's selection (`_follow`); those the history
        lost meanwhile leave it knowing nothing: it starts afresh."""
        events = [event for event in events if event[0] > self.seen]
        if not events:
            return False
        lost = events[0][0] - self.seen - 1  # past the history's bound since the last drain
        if lost:
            self.decoder = Decoder()
        skipped = []
        if most is not None and len(events) > most:
            skipped, events = events[:-most], events[-most:]
            for event in skipped:
                self._follow(event)
        if lost or skipped:
            self.dropped += lost + len(skipped)
            self._add(GAP, events[0][2], (lost + len(skipped),))
        for _, kind, when, fields in events:
            self._add(kind, when, fields)
        self.seen = events[-1][0]
        return True

    def _follow(self, event: tuple) -> None:
        """Let the decoder see what changes where the card is - a SELECT (ISO/IEC 7816-4 §7.1.1), a
        power change - of an event not shown (a cheap subset: the rest would cost a decode each)."""
        _, kind, _, fields = event
        if kind == APDU and len(fields[0]) >= 4 and fields[0][1] == SELECT_INS:
            self.decoder.command(fields[0])
            self.decoder.response(fields[1])
        elif kind in (RESET, POWER_OFF, SWITCH):
            self.decoder.reset()

    def _add(self, kind: str, when: float, fields: tuple) -> None:
        self.entries.append(Entry(self.next_id, kind, when, fields, self.decoder))
        self.next_id += 1

    # -- watchers --------------------------------------------------------------------------------
    def watch(self) -> Watcher:
        """A new watcher; the first one decodes the history kept, from a fresh decoder."""
        if not self.watched:
            self.entries.clear()
            self.decoder = Decoder()
            history = list(self.history)
            self.seen = history[0][0] - 1 if history else self.put_count
            self._take(history, None)
            self.watched = True
        watcher = Watcher()
        self.watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)
        if not self.watchers:
            self.watched = False

    def news(self, watcher: Watcher) -> tuple[dict | None, list[dict], int]:
        """What `watcher` has not had: the state (None if unchanged), the new entries (the newest
        ENTRY_BOUND at most) and how many newer-than-cursor entries the bound had already dropped."""
        state = None
        if self.state is not None and watcher.state_version != self.state_version:
            state, watcher.state_version = self.state, self.state_version
        fresh = [entry for entry in self.entries if entry.id > watcher.cursor]
        skipped = 0
        if fresh:
            skipped = fresh[0].id - watcher.cursor - 1 if watcher.cursor else 0
            watcher.cursor = fresh[-1].id
        return state, [entry.json() for entry in fresh], skipped

    # -- export ----------------------------------------------------------------------------------
    def exported(self) -> list[tuple]:
        """The events an export holds: those kept since the card was last switched."""
        events = list(self.history)
        for i in range(len(events) - 1, -1, -1):
            if events[i][1] == SWITCH:
                return events[i + 1:]
        return events

    def export(self, header: list[str], state: dict | None) -> str:
        """The exported events as an .apdu trace (docs/traces.md) that replays on the card as it
        was at the first of them: its profile and issue date, the date then in force (`@date`: a
        date set later is a comment, as a trace has one date), the protocol of its first power-up
        (`T=0 raw` on T=0: the client's GET RESPONSE commands are in the stream)."""
        events = self.exported()
        date = state["date"] if state else None
        protocol = state["protocol"] if state else None
        for _, kind, _, fields in events:
            if kind == CONTROL and fields[2] is not None:  # a `date` line: the date before it
                date = fields[2]
                break
        for _, kind, _, fields in events:
            if kind == RESET and fields[1] is not None:
                protocol = f"T={fields[1]}"
                break
        directives = {"profile": state["profile"] if state else None, "issued": state["issued"] if state else None,
                      "date": date, "protocol": "T=0 raw" if protocol == "T=0" else None}
        out = io.StringIO()
        writer = TraceWriter(out, header=header, directives=directives)
        for _, kind, when, fields in events:
            if kind == APDU:
                command, response, seconds = fields
                if withheld(command) is not None:  # a PIN command: comments, never its data
                    out.write(f"# > {shown_command(command)}\n# < {spaced(response)}\n")
                else:
                    writer.exchange(command, response, seconds, datetime.datetime.fromtimestamp(when))
            elif kind == RESET:
                writer.reset(fields[0])
            elif kind == POWER_OFF:
                writer.power_off()
            elif kind == CONTROL:
                out.write("\n".join(control_trace(fields[0], fields[1])) + "\n")
            elif kind == SWITCH:
                out.write(f"# the card was switched: {fields[0]}\n")
        return out.getvalue()


def control_trace(line: str, reply: str) -> list[str]:
    """A control line in the .apdu format: a fault armed or cleared is a `! fault` line (what
    the card does from there on); anything else, and every refusal, a comment (the power changes
    a `remove` or `reset` makes are events of their own)."""
    words = line.split()
    args = words[1:]
    if args and args[0].isdigit():
        args = args[1:]
    if reply.startswith("ok") and words and words[0].lower() == "fault" and args:
        return [f"! fault {' '.join(args)}"]
    return [f"# {line}: {reply}"]
