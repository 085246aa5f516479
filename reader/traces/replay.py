"""Recording and replaying traces against any `Reader` (the I/O side of `reader.traces.format`).

The card a trace starts from: without an image or a reader, a fresh card made
from the trace's directives (`@snapshot`, else `@profile` personalised on
`@issued`), on `@date`, its random source seeded with `@random`. On a card the
caller supplies, the directives that describe the starting card (`@profile`,
`@issued`, `@snapshot`) are compared with it and the ones that set it up
(`@date`, `@random`) are applied where they can be: `replay_notes` says, before
the first APDU, each one that cannot be honoured.

PIN-pad lines (`keypad`, `pinpad`): on a simulated card (SimReader, WireReader) the reader's
simulated PIN pad takes them, a fresh one for the replay if the reader has none (like the faults);
on a PC/SC reader `pinpad` goes to the reader's own pad (SCardControl) and `keypad` to the
`keypad` channel the caller gives (serve's control socket), without which that step fails.
"""

import datetime
import random as random_module
import sys
import time
from dataclasses import dataclass, field
from typing import Protocol
from xml.etree import ElementTree

from chip import Card, ImageError
from chip.card import CardNotPowered
from chip.faults import CardMute, FaultPlan
from chip.kernel import image as image_mod
from chip.kernel.store import Store
from chip.personalization.profile import shipped_names
from reader.base import PinPadError, Reader
from reader.ccid import pinpad
from reader.report import spaced
from reader.sim import SimReader
from reader.traces.format import Step, Trace, TraceError, pin_text, snapshot_lines


def seeded(seed: int):
    """A deterministic random source for the card, so challenges repeat from replay to replay."""
    rng = random_module.Random(seed)
    return rng.randbytes


# -- the starting card ------------------------------------------------------------------------------

def card_from_image(data: bytes, where: str, date: datetime.date | None = None) -> Card:
    """A card in memory from an image's bytes (a snapshot, or a copy of an image file)."""
    objects, _ = image_mod.decode(data, where)
    try:
        return Card(Store(image_mod.MemoryBackend(), objects), date)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ImageError(f"{where}: damaged card image ({type(exc).__name__}: {exc})") from None


def read_image(path: str) -> bytes:
    """An image file's bytes, for a replay that must not change it; ImageError names what is wrong."""
    return image_mod.read_bytes(path)


def load_image_copy(path: str, date: datetime.date | None = None) -> Card:
    """The card of an image file, in memory: a replay on it leaves the file as it was."""
    return card_from_image(read_image(path), path, date)


def image_bytes(card: Card) -> bytes:
    """The card's persistent state as image bytes (generation 0, so equal states give equal bytes)."""
    return image_mod.encode(card.store.objects, 0)


def issue_date(card: Card) -> datetime.date | None:
    ssse = card.applets.get("ssse")
    return ssse.issue_date() if ssse is not None else None


def is_fresh(card: Card) -> bool:
    """Whether `card` is exactly a fresh personalisation of its shipped profile on its issue date (so
    `@profile` and `@issued` describe it completely)."""
    name = card.config.profile
    if name not in shipped_names() or card.config.kind != "sscard":
        return False
    fresh = Card.from_profile(name, date=issue_date(card))
    return image_bytes(fresh) == image_bytes(card)


def start_directives(card: Card, seed: int | None, reader=None) -> dict:
    """The directives that let a replay start where a recording on `card` starts: profile, date,
    issue date, random seed, protocol, and a snapshot when the card is not a fresh personalisation."""
    protocol = None
    if reader is not None and getattr(reader, "protocol", None) == 0:
        protocol = "T=0" if getattr(reader, "get_response", True) else "T=0 raw"
    directives = {"profile": card.config.profile, "date": card.today, "issued": issue_date(card),
                  "random": seed, "protocol": protocol}
    if not is_fresh(card):
        directives["snapshot"] = image_bytes(card)
    return directives


def differing_objects(card: Card, image: bytes, where: str) -> list[str]:
    """The names of the persistent objects in which `card` differs from the image `image`."""
    theirs, _ = image_mod.decode(image, where)
    ours = card.store.objects
    names = sorted(set(theirs) | set(ours))
    return [name for name in names if name not in theirs or name not in ours
            or image_mod.encode({name: theirs[name]}, 0) != image_mod.encode({name: ours[name]}, 0)]


def fresh_card(trace: Trace) -> Card:
    """The card a trace starts from when no image or reader is given."""
    if trace.snapshot is not None:
        card = card_from_image(trace.snapshot, f"{trace.path}:{trace.given.get('snapshot', 0)}: @snapshot")
    else:
        card = Card.from_profile(trace.profile, date=trace.expected_issue)
    card.set_date(trace.today(issue_date(card)))
    if trace.random is not None:
        card.random = seeded(trace.random)
    return card


def replay_notes(trace: Trace, card: Card | None = None, name: str = "the card", pcsc: bool = False) -> list[str]:
    """What a replay on a supplied card (`card`, called `name`) or a PC/SC reader (`pcsc`) cannot
    honour, one line each, said before the first APDU; plus the implicit reset, if any."""
    notes = []
    given = trace.given
    if pcsc:
        for directive, why in (("profile", "cannot be checked through PC/SC"),
                               ("issued", "cannot be checked through PC/SC"),
                               ("snapshot", "cannot be loaded into a card in a PC/SC reader"),
                               ("date", "cannot be set on a card in a PC/SC reader: date-dependent answers may differ"),
                               ("random", "cannot seed a card in a PC/SC reader: challenges and what depends on "
                                          "them will differ")):
            if directive in given:
                notes.append(f"@{directive} (line {given[directive]}) {why}")
        if trace.raw:
            notes.append("@protocol T=0 raw: a PC/SC reader fetches 61xx itself; the trace's GET RESPONSE "
                         "commands will find nothing to fetch")
    elif card is not None:
        if trace.snapshot is not None:
            differ = differing_objects(card, trace.snapshot, f"{trace.path}: @snapshot")
            if differ:
                notes.append(f"trace starts from a snapshot of its card; {name} differs from it in "
                             f"{', '.join(differ)}")
        else:
            if "profile" in given and card.config.profile != trace.profile:
                notes.append(f"trace recorded on a card of profile {trace.profile!r}; {name} is of profile "
                             f"{card.config.profile!r}")
            issued, theirs = trace.expected_issue, issue_date(card)
            if issued is not None and theirs is not None and issued != theirs:
                notes.append(f"trace recorded on a card issued {issued}; {name} was issued {theirs}")
    line = trace.unpowered_command()
    if line is not None:
        notes.append(implicit_reset_note(line))
    return notes


def implicit_reset_note(line: int) -> str:
    return f"no reset before the first command (line {line}): the replay starts with a cold reset"


@dataclass
class Failure:
    line: int
    message: str


@dataclass
class Result:
    trace: Trace
    failure: Failure | None
    apdus: int
    seconds: float
    notes: list = field(default_factory=list)  # what the replay could not do as the trace says, or did for it

    @property
    def ok(self) -> bool:
        return self.failure is None

    def report(self) -> str:
        if self.ok:
            return f"PASS {self.trace.path} ({self.apdus} APDUs, {self.seconds * 1000:.1f} ms)"
        where = f"{self.trace.path}:{self.failure.line}" if self.failure.line else self.trace.path
        return f"FAIL {where}: {self.failure.message}"


class KeypadChannel(Protocol):
    """Where a trace's `keypad` lines go: the keys of the reader's PIN pad (reader.ccid.pinpad.Keypad),
    or a channel to them (reader.pcsc.reader.ServeKeypad). `press` raises ValueError or PinPadError."""

    def press(self, entry: str) -> None: ...


def replay(trace: Trace, reader: Reader, progress=None, keypad: KeypadChannel | None = None) -> Result:
    """Run `trace` on `reader`; stop at the first response that does not match.

    A trace with faults (`@fault`, `! fault`) needs a simulated card (`reader.card`: SimReader,
    WireReader): they are armed on it as a fresh `chip.faults.FaultPlan` for this replay only. A
    trace with PIN-pad lines on a simulated card without a keypad gets a fresh `Keypad` (the pad
    of LD/T 32 P8 §6.2.4, 4-12 digits) for this replay only; `keypad` is where the `keypad` lines
    go on a reader whose pad is not simulated.
    """
    card = getattr(reader, "card", None)
    simulated = isinstance(card, Card)
    padless = simulated and reader.keypad is None and any(step.kind in ("keypad", "pinpad") for step in trace.steps)
    if padless:
        reader.keypad = pinpad.Keypad()
    try:
        return _with_faults(trace, reader, progress, keypad)
    finally:
        if padless:
            reader.keypad = None


def _with_faults(trace: Trace, reader: Reader, progress, keypad: KeypadChannel | None) -> Result:
    fault_lines = [step.line for step in trace.steps if step.kind == "fault"]
    if not trace.faults and not fault_lines:
        return _replay(trace, reader, progress, None, keypad)
    card = getattr(reader, "card", None)
    if not isinstance(card, Card):
        return Result(trace, Failure(fault_lines[0] if fault_lines else 0, "fault injection needs a simulated "
                                     "card (SimReader or WireReader), not a real reader"), 0, 0.0)
    previous, card.faults = card.faults, FaultPlan(trace.faults)
    try:
        return _replay(trace, reader, progress, card, keypad)
    finally:
        card.faults = previous


def _press(step: Step, reader: Reader, keypad: KeypadChannel | None) -> Failure | None:
    """A `keypad` line: its entry to the reader's simulated keys, else to the `keypad` channel."""
    channel = reader.keypad if reader.keypad is not None else keypad
    if channel is None:
        return Failure(step.line, f"keypad {step.entry}: no way to this reader's keypad (a PC/SC reader served by "
                                  "`sscard serve --ccid-reader GemPCPinPad`: give --keypad-control SOCKET)")
    try:
        channel.press(step.entry)
    except (ValueError, PinPadError) as exc:
        return Failure(step.line, f"keypad {step.entry}: {exc}")
    return None


def _replay(trace: Trace, reader: Reader, progress, card, keypad: KeypadChannel | None) -> Result:
    captures: dict = {}
    apdus = 0
    start = time.perf_counter()
    total = trace.apdus
    notes = []
    powered_off = None  # the line of the last power-off, while no reset has followed it

    def done(failure=None):
        return Result(trace, failure, apdus, time.perf_counter() - start, notes)

    unpowered = trace.unpowered_command()
    if unpowered is not None:  # a scriptor script or `serve --record`: the card is powered first
        notes.append(implicit_reset_note(unpowered))
        reader.reset()
    for step in trace.steps:
        if step.kind == "fault":
            if step.fault is None:
                card.faults.clear()
            else:
                card.faults.add(step.fault)
            continue
        if step.kind == "reset":
            powered_off = None
            atr = reader.reset()
            if step.expect is not None and step.expect.match(atr, captures) is None:
                index, want = step.expect.first_difference(atr, captures)
                return done(Failure(step.line, f"ATR byte {index} differs: expected {want}, "
                                               f"got {spaced(atr)} (expected {step.expect.text})"))
            continue
        if step.kind == "power-off":
            reader.power_off()
            powered_off = step.line
            continue
        if step.kind == "keypad":
            pressed = _press(step, reader, keypad)
            if pressed is not None:
                return done(pressed)
            continue
        try:
            if step.pin is not None:  # a PIN entry: the reader's pad builds the APDU from the template
                sent = f"the PIN entry into {_short(step.pin.apdu)}"
                response = reader.pin_entry(step.feature, step.structure())
            else:
                command = step.command_bytes(captures)
                sent = _short(command)
                response = reader.transmit(command)
        except TraceError as exc:
            return done(Failure(step.line, str(exc)))
        except PinPadError as exc:
            return done(Failure(step.line, f"pinpad: {exc}"))
        except CardMute:
            return done(Failure(step.line, f"no answer (the card is mute) to {sent}"))
        except CardNotPowered:
            since = f" (power-off on line {powered_off} and no reset since)" if powered_off else ""
            return done(Failure(step.line, f"the card is not powered{since}: {sent} needs a reset first"))
        apdus += 1
        if progress is not None and apdus % 1000 == 0:
            progress(trace, apdus, total)
        if step.expect is None:
            continue
        found = step.expect.match(response, captures)
        if found is None:
            index, want = step.expect.first_difference(response, captures)
            got = f"{response[index]:02X}" if index < len(response) else "the end of the response"
            return done(Failure(step.expect_line, f"response byte {index} is {got}, expected {want}: "
                                           f"got {window(response, index)} to {sent}"))
        captures.update(found)
    return done()


def window(data: bytes, index: int, width: int = 6) -> str:
    """The bytes around `index`, the differing one in brackets (whole responses can be long)."""
    if not data:
        return "(nothing)"
    start, end = max(0, index - width), min(len(data), index + width + 1)
    parts = [f"[{b:02X}]" if start + i == index else f"{b:02X}" for i, b in enumerate(data[start:end])]
    if index >= len(data):
        parts.append("[end]")
    return ("... " if start else "") + " ".join(parts) + (" ..." if end < len(data) else "")


def _short(command: bytes) -> str:
    return spaced(command[:5]) + (" ..." if len(command) > 5 else "")


class TraceWriter:
    """Writes exchanges as `.apdu` lines, with timestamps and durations, as they happen."""

    def __init__(self, out, header=(), directives: dict | None = None):
        self.out = out
        self.exchanges = 0
        started = datetime.datetime.now().isoformat(timespec="seconds")
        for line in header:
            self._write(f"# {line}" if line else "#")
        self._write(f"# recorded by sscard on {started}")
        for name, value in (directives or {}).items():
            if value is None:
                continue
            if name == "snapshot":  # the starting card's image (bytes)
                for line in snapshot_lines(value):
                    self._write(line)
            else:
                self._write(f"@{name} {value}")

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def reset(self, atr: bytes) -> None:
        self._write(f"reset {spaced(atr)}")

    def exchange(self, apdu: bytes, response: bytes, seconds: float, when: datetime.datetime | None = None) -> None:
        """One exchange: the command stamped with `when` it was answered (None: now, as it is recorded)
        and the response with the card's time."""
        stamp = (when or datetime.datetime.now()).isoformat(timespec="microseconds")
        self.exchanges += 1
        self._write(f"> {spaced(apdu)}  # {stamp}")
        self._write(f"< {spaced(response)}  # {seconds * 1000:.3f} ms")

    def power_off(self) -> None:
        self._write("power-off")

    def pin_entry(self, feature: int, structure: bytes, response: bytes, seconds: float,
                  typed: list[str] | None) -> None:
        """A PIN entry on the reader's pad: the entries it took (`typed`; None: typed on a pad the host
        cannot see, so a replay needs them given again), the `pinpad` line, and the answer."""
        stamp = datetime.datetime.now().isoformat(timespec="microseconds")
        self.exchanges += 1
        if typed is None:
            self._write("# keypad: typed on the reader's own PIN pad, which never shows the host the entries")
        for entry in typed or ():
            self._write(f"keypad {entry}")
        self._write(f"pinpad {pin_text(pinpad.parse(pinpad.ccid_data(feature, structure)))}  # {stamp}")
        self._write(f"< {spaced(response)}  # {seconds * 1000:.3f} ms")


class RecordingReader(Reader):
    """Wraps any `Reader` and writes every exchange as a trace, with timestamps and durations."""

    def __init__(self, reader: Reader, out=None, header=(), directives: dict | None = None,
                 writer: TraceWriter | None = None):
        self.reader = reader
        self.writer = writer or TraceWriter(out, header, directives)

    def reset(self) -> bytes:
        atr = self.reader.reset()
        self.writer.reset(atr)
        return atr

    def transmit(self, apdu: bytes) -> bytes:
        start = time.perf_counter()
        response = self.reader.transmit(apdu)
        self.writer.exchange(apdu, response, time.perf_counter() - start)
        return response

    def power_off(self) -> None:
        self.reader.power_off()
        self.writer.power_off()

    @property
    def keypad(self) -> pinpad.Keypad | None:
        """The wrapped reader's simulated keys (pressing them is recorded at the PIN entry that takes them)."""
        return self.reader.keypad

    @keypad.setter
    def keypad(self, keys: pinpad.Keypad | None) -> None:
        self.reader.keypad = keys

    def pin_entry(self, feature: int, structure: bytes) -> bytes:
        """The wrapped reader's PIN entry, written as the `keypad` lines of the entries its pad took and a
        `pinpad` line (a refused structure raises PinPadError and writes nothing)."""
        keys = self.reader.keypad
        waiting = keys.pending() if keys is not None else None
        start = time.perf_counter()
        response = self.reader.pin_entry(feature, structure)
        typed = None if keys is None or waiting is None else waiting[:len(waiting) - len(keys)]
        self.writer.pin_entry(feature, structure, response, time.perf_counter() - start, typed)
        return response


def junit_xml(results: list[Result], name: str = "sscard replay") -> str:
    suite = ElementTree.Element("testsuite", name=name, tests=str(len(results)),
                                failures=str(sum(not r.ok for r in results)),
                                time=f"{sum(r.seconds for r in results):.6f}")
    for result in results:
        case = ElementTree.SubElement(suite, "testcase", classname="sscard.trace", name=result.trace.path,
                                      time=f"{result.seconds:.6f}")
        if not result.ok:
            failure = ElementTree.SubElement(case, "failure", message=result.failure.message)
            failure.text = f"{result.trace.path}:{result.failure.line}: {result.failure.message}"
        if result.notes:
            ElementTree.SubElement(case, "system-out").text = "\n".join(f"note: {n}" for n in result.notes)
    return ElementTree.tostring(suite, encoding="unicode")


def stderr_progress(trace: Trace, done: int, total: int) -> None:
    print(f"  {trace.path}: {done}/{total} APDUs", file=sys.stderr, flush=True)


def sim_reader_for(trace: Trace, card: Card | None = None) -> SimReader:
    """An in-process reader for `trace`: on `card` (its date and random source set from @date and
    @random), or on the fresh card the directives describe."""
    if card is None:
        card = fresh_card(trace)
    else:
        if trace.random is not None:
            card.random = seeded(trace.random)
        today = trace.today(issue_date(card))
        if today is not None:
            card.set_date(today)
    return SimReader(card, protocol=trace.protocol, get_response=not trace.raw)
