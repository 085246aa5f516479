"""APDU traces: the `.apdu` text format, its parser, and pattern matching. Pure: no I/O.

    # comments start with '#', also at the end of a line
    @profile default            directives: the card a replay starts from (in memory)
    @date 2026-11-21            the simulated date; `@date issued+301`: 301 days after the card's issue
                                date, whichever card the trace is replayed on (`@date issued`: that day)
    @issued 2026-01-15          the day the card was personalised (default: @date)
    @random 1                   seed of the card's random source: challenges repeat, so replays are exact
    @protocol T=1               T=1 (default); `T=0`: T=0 behaviour, the reader fetching 61xx with GET
                                RESPONSE as a terminal's transport layer does; `T=0 raw`: every exchange
                                as on the contacts (61xx and GET RESPONSE are in the trace)
    @snapshot eJzt...           the starting card's image (zlib, base64, split over several @snapshot
                                lines) when it was not a fresh personalisation: the replay starts from it
    @fault sw 6A82 ins B2 nth 3 a fault armed on the card when the replay starts (see chip.faults;
                                repeatable; `nth` counts the trace's commands)
    reset                       power up the card (cold reset); `reset 3B 9C ...` also checks the ATR
    power-off                   remove power
    ! fault chunk 4 ins A4      arm a fault from this point of the replay on (`! fault clear`: none)
    keypad 123456               an entry typed on the reader's PIN pad for its next PIN entry (digits, the
                                validation key after them), `keypad cancel`, `keypad timeout`
    pinpad verify 00 20 00 ...  the host asks the reader's PIN pad for a PIN entry into this APDU template
                                (PC/SC part 10 FEATURE_VERIFY_PIN_DIRECT; `pinpad modify`: ..._MODIFY_...),
                                with the SSSE PIN's structure unless fields follow (`digits 4-12`, ...);
                                a `<` line after it expects the card's answer or the pad's 6400-6403
    > 00 A4 04 00 0F 73 78 ...  a command; `{name}` inserts bytes captured earlier
    < 6F XX ... 90 00           the expected response: hex bytes, `XX` any byte, `*` any run of bytes,
                                `|` between alternatives (`90 00 | 61 XX`), `{name:8}` captures 8 bytes
                                (`{name:*}` as many as the rest allows), `{name}` must equal a capture

A `<` line is optional: a command without one accepts any response. A trace
whose first command comes before any `reset` (a scriptor script, `serve
--record`) is replayed after an implicit cold reset, with a note. Parse
errors name the file, the line and what is wrong.

Dates: the simulated card keeps dates as YYMMDD (the financial records, EMV
two-digit years, read as 1950-2049), so `@date` and `@issued` must lie in
1950-01-01..2049-12-31.
"""

import base64
import binascii
import datetime
import re
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

from chip.faults import parse_fault
from reader.ccid import pinpad

HEX_BYTE = re.compile(r"^[0-9A-Fa-f]{2}$")
TOKEN = re.compile(r"\{[^}]*\}|\*|\||[0-9A-Fa-f]{2}|XX|xx|\S")
DIRECTIVES = ("profile", "date", "issued", "random", "protocol", "fault", "snapshot")
EARLIEST_DATE = datetime.date(1950, 1, 1)  # the EMV two-digit-year window (YY 50-99: 19YY, 00-49: 20YY)
LATEST_DATE = datetime.date(2049, 12, 31)
RELATIVE_DATE = re.compile(r"^issued\s*(?:\+\s*(\d{1,5}))?$")
SNAPSHOT_LIMIT = 1 << 20  # bytes of a decompressed @snapshot image (a card image is a few KiB)
SNAPSHOT_WIDTH = 76  # base64 characters per @snapshot line
PIN_OPERATIONS = {"verify": pinpad.VERIFY, "modify": pinpad.MODIFY}
# a `pinpad` line's fields after the template: word -> the structure's fields it sets (one hex byte each, or
# for digits and offsets two numbers), and whether only a modification has them
PIN_FIELDS = {"format": (("format_string",), False), "block": (("block_string",), False),
              "length": (("length_format",), False), "digits": (("min_digits", "max_digits"), False),
              "offsets": (("offset_old", "offset_new"), True), "confirm": (("confirm",), True)}
PAIR = re.compile(r"^(\d{1,3})-(\d{1,3})$")
TEMPLATE_WORD = re.compile(r"^(?:[0-9A-Fa-f]+|\{[^}]*\})$")  # a `pinpad` line's template: hex (or a capture, refused)


def date_problem(day: datetime.date) -> str | None:
    """Why the simulated card cannot use `day` as its date (None: it can)."""
    if EARLIEST_DATE <= day <= LATEST_DATE:
        return None
    return (f"{day} is a date the simulated card cannot use: it keeps dates as YYMMDD "
            f"(EMV two-digit years), so {EARLIEST_DATE} to {LATEST_DATE}")


class TraceError(ValueError):
    """A trace that cannot be parsed: `file:line: what is wrong`."""


COMMANDS = ("apdu", "pinpad")  # the step kinds that send the card a command (and may have a `<` line)


# -- patterns ---------------------------------------------------------------------------------------

ANY = "any"
CAPTURE = "capture"
SAME = "same"
BYTE = "byte"
STAR = "star"


@dataclass(frozen=True)
class Alternative:
    """One alternative of an expectation: a list of tokens, compiled for matching."""

    tokens: tuple  # (kind, value): (BYTE, int) (ANY, None) (STAR, None) (CAPTURE, (name, n|None)) (SAME, name)
    text: str

    @property
    def fixed(self) -> bool:
        return all(kind != STAR and not (kind == CAPTURE and value[1] is None) for kind, value in self.tokens)


@dataclass(frozen=True)
class Expectation:
    alternatives: tuple
    text: str

    def fixed_bytes(self) -> bytes | None:
        """The response bytes when the first alternative is plain hex (no masks or captures)."""
        tokens = self.alternatives[0].tokens
        if all(kind == BYTE for kind, _ in tokens):
            return bytes(value for _, value in tokens)
        return None

    def match(self, data: bytes, captures: dict) -> dict | None:
        """New captures when `data` matches one alternative, else None."""
        for alternative in self.alternatives:
            found = _match(alternative.tokens, data, captures)
            if found is not None:
                return found
        return None

    def first_difference(self, data: bytes, captures: dict) -> tuple[int, str]:
        """Where `data` first departs from the closest alternative: (byte index, expected text)."""
        best = (-1, "")
        for alternative in self.alternatives:
            index, expected = _difference(alternative.tokens, data, captures)
            if index > best[0]:
                best = (index, expected)
        return best


def _width(tokens, captures) -> int:
    total = 0
    for kind, value in tokens:
        if kind in (BYTE, ANY):
            total += 1
        elif kind == CAPTURE and value[1] is not None:
            total += value[1]
        elif kind == SAME:
            total += len(captures.get(value, b""))
    return total


def _match(tokens, data: bytes, captures: dict) -> dict | None:
    flexible = any(kind == STAR or (kind == CAPTURE and value[1] is None) for kind, value in tokens)
    spare = len(data) - _width(tokens, captures)  # what the one flexible token (if any) must take
    if spare < 0 or (not flexible and spare):
        return None
    new = {}
    i = 0
    for kind, value in tokens:
        if kind == BYTE:
            if data[i] != value:
                return None
            i += 1
        elif kind == ANY:
            i += 1
        elif kind == SAME:
            want = captures.get(value, new.get(value))
            if want is None or data[i:i + len(want)] != want:
                return None
            i += len(want)
        else:  # STAR or CAPTURE
            n = value[1] if kind == CAPTURE and value[1] is not None else spare
            if kind == CAPTURE:
                new[value[0]] = data[i:i + n]
            i += n
    return new


def _difference(tokens, data: bytes, captures: dict) -> tuple[int, str]:
    i = 0
    for kind, value in tokens:
        if kind in (STAR,) or (kind == CAPTURE and value[1] is None):
            return i, "..."  # a flexible part: the length is where it went wrong
        if kind == BYTE:
            if i >= len(data) or data[i] != value:
                return i, f"{value:02X}"
            i += 1
        elif kind == ANY:
            if i >= len(data):
                return i, "XX"
            i += 1
        elif kind == CAPTURE:
            if i + value[1] > len(data):
                return len(data), f"{{{value[0]}:{value[1]}}}"
            i += value[1]
        elif kind == SAME:
            want = captures.get(value, b"")
            for j, b in enumerate(want):
                if i + j >= len(data) or data[i + j] != b:
                    return i + j, f"{b:02X} (from {{{value}}})"
            i += len(want)
    return i, "end of response"


def _tokens(text: str, where: str, allow_patterns: bool):
    out = []
    for token in TOKEN.findall(text):
        if HEX_BYTE.match(token):
            out.append((BYTE, int(token, 16)))
        elif token in ("XX", "xx") and allow_patterns:
            out.append((ANY, None))
        elif token == "*" and allow_patterns:
            out.append((STAR, None))
        elif token.startswith("{") and token.endswith("}"):
            name, _, size = token[1:-1].partition(":")
            name = name.strip()
            if not name.isidentifier():
                raise TraceError(f"{where}: {token!r} is not a valid capture name")
            if not size:
                out.append((SAME, name))
            elif not allow_patterns:
                raise TraceError(f"{where}: a command cannot capture ({token}); use {{{name}}} to insert")
            elif size.strip() == "*":
                out.append((CAPTURE, (name, None)))
            elif size.strip().isdigit() and int(size) > 0:
                out.append((CAPTURE, (name, int(size))))
            else:
                raise TraceError(f"{where}: capture size in {token!r} must be a number of bytes or *")
        else:
            raise TraceError(f"{where}: {token!r} is not a hex byte" + (", XX, * or {capture}" if allow_patterns
                                                                         else " or {capture}"))
    return out


def expectation(text: str, where: str = "expectation") -> Expectation:
    alternatives = []
    for part in text.split("|"):
        tokens = _tokens(part, where, True)
        if not tokens:
            raise TraceError(f"{where}: empty alternative in {text.strip()!r}")
        if sum(1 for k, v in tokens if k == STAR or (k == CAPTURE and v[1] is None)) > 1:
            raise TraceError(f"{where}: at most one '*' or {{name:*}} per alternative")
        alternatives.append(Alternative(tuple(tokens), part.strip()))
    return Expectation(tuple(alternatives), text.strip())


# -- traces -----------------------------------------------------------------------------------------------

@dataclass
class Step:
    kind: str  # "reset", "power-off", "apdu", "fault", "keypad", "pinpad"
    line: int
    command: tuple = ()  # tokens (BYTE/SAME) for "apdu"
    expect: Expectation | None = None  # the response (or the ATR for "reset")
    comment: str = ""
    expect_line: int = 0  # the line of the '<' expectation (the step's own line for a reset)
    fault: object = None  # a "fault" step's chip.faults.Fault (None: `! fault clear`)
    entry: str = ""  # a "keypad" step's entry: digits, cancel or timeout
    pin: pinpad.Operation | None = None  # a "pinpad" step's structure, its APDU template included

    @property
    def feature(self) -> int:
        """A "pinpad" step's PC/SC part 10 feature (FEATURE_VERIFY_PIN_DIRECT or ..._MODIFY_...)."""
        assert self.pin is not None
        return pinpad.feature_of(self.pin)

    def structure(self) -> bytes:
        """A "pinpad" step's PIN_VERIFY_STRUCTURE or PIN_MODIFY_STRUCTURE, as the host hands it to SCardControl."""
        assert self.pin is not None
        return pinpad.pcsc_structure(self.pin)

    def command_bytes(self, captures: dict) -> bytes:
        out = bytearray()
        for kind, value in self.command:
            if kind == BYTE:
                out.append(value)
            else:
                if value not in captures:
                    raise TraceError(f"line {self.line}: {{{value}}} was not captured by an earlier response")
                out += captures[value]
        return bytes(out)

    def command_text(self) -> str:
        return " ".join(f"{v:02X}" if k == BYTE else f"{{{v}}}" for k, v in self.command)


@dataclass
class Trace:
    path: str
    steps: list = field(default_factory=list)
    profile: str = "default"
    date: datetime.date | None = None
    issued: datetime.date | None = None
    random: int | None = None
    protocol: str = "T=1"
    header: list = field(default_factory=list)  # the leading comment lines (what the trace is about)
    faults: list = field(default_factory=list)  # @fault directives: chip.faults.Fault, armed at the start
    date_offset: int | None = None  # `@date issued+N`: N days after the card's issue date (date is None)
    raw: bool = False  # `@protocol T=0 raw`: the trace holds every T=0 exchange (61xx, GET RESPONSE)
    snapshot: bytes | None = None  # `@snapshot`: the starting card's image
    given: dict = field(default_factory=dict)  # directive name -> line of its (first) occurrence

    @property
    def apdus(self) -> int:
        """The commands the host sends: `>` lines and PIN entries (`pinpad`, whose APDU the reader builds)."""
        return sum(1 for step in self.steps if step.kind in COMMANDS)

    @property
    def date_text(self) -> str | None:
        """@date as written: an ISO date, `issued` or `issued+N` (None: no @date)."""
        if self.date_offset is not None:
            return "issued" if self.date_offset == 0 else f"issued+{self.date_offset}"
        return None if self.date is None else self.date.isoformat()

    def today(self, issued: datetime.date | None) -> datetime.date | None:
        """The simulated date a replay sets on a card issued on `issued` (None: the host's today)."""
        if self.date_offset is None:
            return self.date
        day = (issued or datetime.date.today()) + datetime.timedelta(days=self.date_offset)
        problem = date_problem(day)
        if problem:
            raise TraceError(f"{self.path}:{self.given.get('date', 0)}: @date {self.date_text} on a card issued "
                             f"{issued} gives {problem}")
        return day

    @property
    def expected_issue(self) -> datetime.date | None:
        """The issue date the trace's card had (@issued, else an absolute @date; None: not stated)."""
        if self.issued is not None:
            return self.issued
        return self.date if self.date_offset is None else None

    def unpowered_command(self) -> int | None:
        """The line of a command that comes before any reset (it gets an implicit cold reset), or None."""
        for step in self.steps:
            if step.kind in ("reset", "power-off"):
                return None
            if step.kind in COMMANDS:
                return step.line
        return None


def parse(text: str, path: str = "<trace>") -> Trace:
    trace = Trace(path)
    pending = None  # the last apdu step, waiting for its '<' line
    in_header = True
    snapshot: list = []  # the @snapshot lines' base64 text
    for number, raw in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}"
        line, _, comment = raw.partition("#")
        line = line.strip()
        if not line:
            if in_header and raw.strip().startswith("#"):
                trace.header.append(comment.strip())
            continue
        in_header = False
        if line.startswith("@"):
            _directive(trace, line[1:], where, snapshot)
            trace.given.setdefault(line[1:].split(None, 1)[0] if line[1:].strip() else "", number)
            continue
        if line.startswith(">"):
            pending = Step("apdu", number, tuple(_tokens(line[1:], where, False)), comment=comment.strip())
            if not pending.command:
                raise TraceError(f"{where}: '>' needs a command APDU")
            trace.steps.append(pending)
            continue
        if line.startswith("<"):
            if pending is None:
                raise TraceError(f"{where}: '<' without a '>' command before it (nor a pinpad line)")
            if pending.expect is not None:
                raise TraceError(f"{where}: a second '<' for the command on line {pending.line}")
            pending.expect = expectation(line[1:], where)
            pending.expect_line = number
            continue
        if line.startswith("!"):
            trace.steps.append(_fault_step(line[1:], number, where, comment.strip()))
            pending = None
            continue
        word, _, rest = line.partition(" ")
        if word.lower() == "reset":
            atr = expectation(rest, where) if rest.strip() else None
            trace.steps.append(Step("reset", number, expect=atr, comment=comment.strip(), expect_line=number))
            pending = None
        elif word.lower() in ("power-off", "poweroff"):
            if rest.strip():
                raise TraceError(f"{where}: power-off takes nothing after it")
            trace.steps.append(Step("power-off", number, comment=comment.strip()))
            pending = None
        elif word.lower() == "keypad":
            trace.steps.append(Step("keypad", number, comment=comment.strip(), entry=_keypad_entry(rest, where)))
            pending = None
        elif word.lower() == "pinpad":
            pending = Step("pinpad", number, comment=comment.strip(), pin=_pin_operation(rest, where))
            trace.steps.append(pending)
        else:
            raise TraceError(f"{where}: {line[:30]!r} is not a trace line (>, <, reset, power-off, !, keypad, pinpad, "
                             "@directive, #)")
    if snapshot:
        trace.snapshot = _snapshot(snapshot, f"{path}:{trace.given['snapshot']}")
    return trace


def _snapshot(chunks: list, where: str) -> bytes:
    try:
        packed = base64.b64decode("".join(chunks), validate=True)
        inflater = zlib.decompressobj()
        data = inflater.decompress(packed, SNAPSHOT_LIMIT)
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise TraceError(f"{where}: @snapshot is not a zlib-compressed card image in base64 ({exc})") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise TraceError(f"{where}: @snapshot is truncated or larger than {SNAPSHOT_LIMIT} bytes")
    return data


def snapshot_lines(image: bytes) -> list[str]:
    """A card image as `@snapshot` lines."""
    text = base64.b64encode(zlib.compress(image, 9)).decode("ascii")
    return [f"@snapshot {text[i:i + SNAPSHOT_WIDTH]}" for i in range(0, len(text), SNAPSHOT_WIDTH)]


def _fault_step(text: str, number: int, where: str, comment: str) -> Step:
    word, _, rest = text.strip().partition(" ")
    if word.lower() != "fault":
        raise TraceError(f"{where}: '!' is followed by 'fault TEXT' or 'fault clear', not {word!r}")
    if rest.strip().lower() == "clear":
        return Step("fault", number, comment=comment)
    try:
        return Step("fault", number, comment=comment, fault=parse_fault(rest))
    except ValueError as exc:
        raise TraceError(f"{where}: ! fault: {exc}") from None


def _keypad_entry(text: str, where: str) -> str:
    words = text.split()
    if len(words) != 1:
        raise TraceError(f"{where}: keypad takes one entry: digits, {pinpad.CANCEL} or {pinpad.TIMEOUT}")
    try:
        return pinpad.check_entry(words[0])
    except ValueError as exc:
        raise TraceError(f"{where}: {exc}") from None


def _pin_operation(text: str, where: str) -> pinpad.Operation:
    """A `pinpad verify|modify TEMPLATE [FIELD VALUE]...` line's structure: the SSSE PIN's for the
    template (`reader.ccid.pinpad.ssse_operation`), with the fields given set, checked as the pad
    reads it (the pad's own PIN lengths are the replay's reader's: checked there)."""
    words = text.split()
    if not words or words[0].lower() not in PIN_OPERATIONS:
        raise TraceError(f"{where}: pinpad is followed by verify or modify, then the APDU template in hex")
    operation = PIN_OPERATIONS[words[0].lower()]
    at = next((i for i, word in enumerate(words) if i and not TEMPLATE_WORD.match(word)), len(words))
    tokens = _tokens(" ".join(words[1:at]), where, False)
    if any(kind != BYTE for kind, _ in tokens):
        raise TraceError(f"{where}: a PIN-pad template is hex bytes only (no {{capture}})")
    template = bytes(value for _, value in tokens)
    fields: dict[str, Any] = {}  # Operation's int fields, by name
    rest = words[at:]
    while rest:
        name = rest[0].lower()
        if name not in PIN_FIELDS:
            raise TraceError(f"{where}: pinpad: {rest[0]!r} is neither hex of the template nor a field "
                             f"({', '.join(PIN_FIELDS)})")
        attributes, modify_only = PIN_FIELDS[name]
        if modify_only and operation != pinpad.MODIFY:
            raise TraceError(f"{where}: pinpad verify: {name} belongs to a modification")
        if attributes[0] in fields:
            raise TraceError(f"{where}: pinpad: {name} given twice")
        count = 2 if name == "offsets" else 1  # the words of its value
        values = _pin_values(name, rest[1:1 + count], where)
        fields.update(zip(attributes, values, strict=True))
        rest = rest[1 + count:]
    if len(template) <= pinpad.HEADER or template[pinpad.HEADER] != len(template) - pinpad.HEADER - 1 \
            or not template[pinpad.HEADER]:
        raise TraceError(f"{where}: pinpad {words[0].lower()}: the template is a command APDU with the data field "
                         f"the PIN goes into (CLA INS P1 P2 Lc, then Lc bytes), got {len(template)} bytes")
    op = replace(pinpad.ssse_operation(operation, template), **fields)
    try:
        pinpad.parse(pinpad.ccid_data(pinpad.feature_of(op), pinpad.pcsc_structure(op)))
    except pinpad.StructureError as exc:
        raise TraceError(f"{where}: pinpad: {exc}") from None
    return op


def _pin_values(name: str, words: list[str], where: str) -> tuple[int, ...]:
    """The value(s) of one `pinpad` field: `digits N-M`, `offsets OLD NEW` (bytes into the data field,
    decimal), else one hex byte (the structure's own bits)."""
    if name == "digits":
        match = PAIR.match(words[0]) if words else None
        if match is None or int(match[1]) > int(match[2]) or int(match[2]) > 0xFF:
            raise TraceError(f"{where}: pinpad: digits needs FEWEST-MOST (wPINMaxExtraDigit, e.g. 4-12)")
        return int(match[1]), int(match[2])
    if name == "offsets":
        if len(words) != 2 or not all(word.isdigit() and int(word) <= 0xFF for word in words):
            raise TraceError(f"{where}: pinpad: offsets needs OLD NEW, bytes into the data field (e.g. 0 4)")
        return int(words[0]), int(words[1])
    if not words or not HEX_BYTE.match(words[0]):
        raise TraceError(f"{where}: pinpad: {name} needs one hex byte (the structure's field, e.g. 81)")
    return (int(words[0], 16),)


def pin_text(op: pinpad.Operation) -> str:
    """A `pinpad` line's text after the word pinpad: the operation, the template, and the fields in
    which `op` differs from the SSSE PIN's structure for that template (what `parse` reads back).
    The fields the pad does not use (bTimeOut, the messages, bTeoPrologue) are not written."""
    default = pinpad.ssse_operation(op.operation, op.apdu)
    words = ["verify" if op.operation == pinpad.VERIFY else "modify", _spaced(op.apdu)]
    for name, (attributes, modify_only) in PIN_FIELDS.items():
        values = tuple(getattr(op, attribute) for attribute in attributes)
        if (modify_only and op.operation != pinpad.MODIFY) or values == tuple(getattr(default, a) for a in attributes):
            continue
        if name == "digits":
            words.append(f"digits {values[0]}-{values[1]}")
        elif name == "offsets":
            words.append(f"offsets {values[0]} {values[1]}")
        else:
            words.append(f"{name} {values[0]:02X}")
    return " ".join(words)


def _spaced(data: bytes) -> str:
    return " ".join(f"{b:02X}" for b in data)


def _directive(trace: Trace, text: str, where: str, snapshot: list) -> None:
    name, _, value = text.strip().partition(" ")
    value = value.strip()
    if name not in DIRECTIVES:
        raise TraceError(f"{where}: unknown directive @{name} (known: {', '.join('@' + d for d in DIRECTIVES)})")
    if not value:
        raise TraceError(f"{where}: @{name} needs a value")
    if name == "profile":
        trace.profile = value
    elif name == "snapshot":
        snapshot.append(value)
    elif name == "date" and RELATIVE_DATE.match(value):
        trace.date, trace.date_offset = None, int(RELATIVE_DATE.match(value).group(1) or 0)
    elif name in ("date", "issued"):
        try:
            day = datetime.date.fromisoformat(value)
        except ValueError:
            relative = " or issued+DAYS" if name == "date" else ""
            raise TraceError(f"{where}: @{name} needs YYYY-MM-DD{relative}, got {value!r}") from None
        problem = date_problem(day)
        if problem:
            raise TraceError(f"{where}: @{name}: {problem}")
        setattr(trace, name, day)
        if name == "date":
            trace.date_offset = None
    elif name == "random":
        if not value.isdigit():
            raise TraceError(f"{where}: @random needs a whole number (a seed), got {value!r}")
        trace.random = int(value)
    elif name == "protocol":
        words = value.split()
        if words[0] not in ("T=0", "T=1") or words[1:] not in ([], ["raw"]) or words == ["T=1", "raw"]:
            raise TraceError(f"{where}: @protocol is T=0 or T=1 (or T=0 raw: every T=0 exchange), got {value!r}")
        trace.protocol, trace.raw = words[0], words[1:] == ["raw"]
    elif name == "fault":
        try:
            trace.faults.append(parse_fault(value))
        except ValueError as exc:
            raise TraceError(f"{where}: @fault: {exc}") from None


def command_is_fixed(step: "Step") -> bool:
    return all(kind == BYTE for kind, _ in step.command)


def to_text(trace: Trace) -> str:
    """A trace back as `.apdu` text (comments other than the header are not kept)."""
    out = [f"# {line}" if line else "#" for line in trace.header]
    for name, value, default in (("profile", trace.profile, "default"), ("date", trace.date_text, None),
                                 ("issued", trace.issued, None), ("random", trace.random, None),
                                 ("protocol", trace.protocol + (" raw" if trace.raw else ""), "T=1")):
        if value != default:
            out.append(f"@{name} {value}")
    out += [f"@fault {fault}" for fault in trace.faults]
    if trace.snapshot is not None:
        out += snapshot_lines(trace.snapshot)
    for step in trace.steps:
        if step.kind == "reset":
            out.append("reset" + (f" {step.expect.text}" if step.expect else ""))
        elif step.kind == "power-off":
            out.append("power-off")
        elif step.kind == "fault":
            out.append(f"! fault {step.fault if step.fault is not None else 'clear'}")
        elif step.kind == "keypad":
            out.append(f"keypad {step.entry}")
        else:
            out.append(f"pinpad {pin_text(step.pin)}" if step.pin is not None else f"> {step.command_text()}")
            if step.expect is not None:
                out.append(f"< {step.expect.text}")
    return "\n".join(out) + "\n"


# -- pcsc-tools scriptor scripts ----------------------------------------------------------------------------

def from_scriptor(text: str, path: str = "<scriptor>") -> Trace:
    """A scriptor script (commands, `reset`, `#` comments) or a scriptor log (with `>`/`<` lines and
    `: Normal processing.` status texts) as a trace; a log's responses become expectations."""
    if any(line.startswith("> ") for line in text.splitlines()):
        return _from_scriptor_log(text, path)
    lines = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            lines.append(raw)
        elif stripped.lower() == "reset":
            lines.append("reset")
        elif stripped.lower() in ("exit", "quit"):
            break
        else:
            lines.append("> " + stripped)
    return parse("\n".join(lines), path)


def _from_scriptor_log(text: str, path: str) -> Trace:
    lines, response = [], None
    for raw in text.splitlines():
        if raw.strip().upper() == "> RESET":
            lines.append("reset")
            response = "skip"
        elif raw.startswith("> "):
            lines.append(raw)
            response = None
        elif response == "skip":  # scriptor's "< OK: <ATR>" after a reset
            response = None
        elif raw.startswith("< "):
            response = raw[2:]
        elif response is not None:
            response += " " + raw
        else:
            continue
        if response not in (None, "skip") and ":" in response:
            lines.append("< " + response.split(":")[0].strip())
            response = None
    return parse("\n".join(lines), path)


def to_scriptor(trace: Trace) -> str:
    """A scriptor script: the commands (captures cannot be expressed, so a command using one fails)."""
    out = [f"# {line}" if line else "#" for line in trace.header]
    for step in trace.steps:
        if step.kind in ("keypad", "pinpad"):
            raise TraceError(f"{trace.path}:{step.line}: scriptor has no PIN pad ({step.kind} line)")
        if step.kind == "reset":
            out.append("reset")
        elif step.kind == "apdu":
            if any(kind != BYTE for kind, _ in step.command):
                raise TraceError(f"{trace.path}:{step.line}: scriptor cannot insert captured values ({step.command_text()})")
            out.append(step.command_text())
    return "\n".join(out) + "\n"
