"""Recording and replaying traces against any `Reader` (the I/O side of `reader.trace`)."""

import datetime
import random as random_module
import sys
import time
from dataclasses import dataclass
from xml.etree import ElementTree

from chip import Card
from chip.faults import CardMute, FaultPlan

from .base import Reader
from .sim import SimReader
from .report import spaced
from .trace import Trace, TraceError


def seeded(seed: int):
    """A deterministic random source for the card, so challenges repeat from replay to replay."""
    rng = random_module.Random(seed)
    return rng.randbytes


def fresh_card(trace: Trace) -> Card:
    """The card a trace starts from when no image or reader is given."""
    card = Card.from_profile(trace.profile, date=trace.issued or trace.date)
    card.set_date(trace.date)
    if trace.random is not None:
        card.random = seeded(trace.random)
    return card


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

    @property
    def ok(self) -> bool:
        return self.failure is None

    def report(self) -> str:
        if self.ok:
            return f"PASS {self.trace.path} ({self.apdus} APDUs, {self.seconds * 1000:.1f} ms)"
        return f"FAIL {self.trace.path}:{self.failure.line}: {self.failure.message}"


def replay(trace: Trace, reader: Reader, progress=None) -> Result:
    """Run `trace` on `reader`; stop at the first response that does not match.

    A trace with faults (`@fault`, `! fault`) needs a simulated card (`reader.card`: SimReader,
    WireReader): they are armed on it as a fresh `chip.faults.FaultPlan` for this replay only.
    """
    fault_lines = [step.line for step in trace.steps if step.kind == "fault"]
    if not trace.faults and not fault_lines:
        return _replay(trace, reader, progress, None)
    card = getattr(reader, "card", None)
    if not isinstance(card, Card):
        return Result(trace, Failure(fault_lines[0] if fault_lines else 0, "fault injection needs a simulated "
                                     "card (SimReader or WireReader), not a real reader"), 0, 0.0)
    previous, card.faults = card.faults, FaultPlan(trace.faults)
    try:
        return _replay(trace, reader, progress, card)
    finally:
        card.faults = previous


def _replay(trace: Trace, reader: Reader, progress, card) -> Result:
    captures: dict = {}
    apdus = 0
    start = time.perf_counter()
    total = trace.apdus

    def done(failure=None):
        return Result(trace, failure, apdus, time.perf_counter() - start)

    for step in trace.steps:
        if step.kind == "fault":
            if step.fault is None:
                card.faults.clear()
            else:
                card.faults.add(step.fault)
            continue
        if step.kind == "reset":
            atr = reader.reset()
            if step.expect is not None and step.expect.match(atr, captures) is None:
                index, want = step.expect.first_difference(atr, captures)
                return done(Failure(step.line, f"ATR byte {index} differs: expected {want}, "
                                               f"got {spaced(atr)} (expected {step.expect.text})"))
            continue
        if step.kind == "power-off":
            reader.power_off()
            continue
        try:
            command = step.command_bytes(captures)
        except TraceError as exc:
            return done(Failure(step.line, str(exc)))
        try:
            response = reader.transmit(command)
        except CardMute:
            return done(Failure(step.line, f"no answer (the card is mute) to {_short(command)}"))
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
                                           f"got {window(response, index)} to {_short(command)}"))
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
        started = datetime.datetime.now().isoformat(timespec="seconds")
        for line in header:
            self._write(f"# {line}" if line else "#")
        self._write(f"# recorded by sscard on {started}")
        for name, value in (directives or {}).items():
            if value is not None:
                self._write(f"@{name} {value}")

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def reset(self, atr: bytes) -> None:
        self._write(f"reset {spaced(atr)}")

    def exchange(self, apdu: bytes, response: bytes, seconds: float) -> None:
        stamp = datetime.datetime.now().isoformat(timespec="microseconds")
        self._write(f"> {spaced(apdu)}  # {stamp}")
        self._write(f"< {spaced(response)}  # {seconds * 1000:.3f} ms")

    def power_off(self) -> None:
        self._write("power-off")


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
    return ElementTree.tostring(suite, encoding="unicode")


def stderr_progress(trace: Trace, done: int, total: int) -> None:
    print(f"  {trace.path}: {done}/{total} APDUs", file=sys.stderr, flush=True)


def sim_reader_for(trace: Trace, card: Card | None = None) -> SimReader:
    card = card if card is not None else fresh_card(trace)
    if card is not None and trace.random is not None:
        card.random = seeded(trace.random)
    if trace.date is not None:
        card.set_date(trace.date)
    return SimReader(card, protocol=trace.protocol)
