"""The commands on .apdu traces: `replay` (on a fresh card, a copy of an image, a PC/SC reader or
the simulated contacts, every response compared), `decode` (each exchange explained) and
`scriptor` (to and from pcsc-tools scriptor scripts)."""

import sys

from chip import ImageError, ProfileError
from reader.ccid.messages import PIN_CANCELLED, PIN_TIMEOUT
from reader.ccid.pinpad import CANCEL, ERROR_SW, SW_NEW_PINS_DIFFER, SW_WRONG_PIN_LENGTH, TIMEOUT
from reader.cli.errors import UsageError
from reader.cli.files import check_output, read_text, write_text
from reader.cli.session import wire_reader
from reader.decode.decoder import Decoder
from reader.pcsc.reader import PcscReader, ServeKeypad
from reader.traces.format import TraceError, command_is_fixed, pin_text, to_scriptor
from reader.traces.format import from_scriptor as trace_from_scriptor
from reader.traces.format import parse as parse_trace
from reader.traces.format import to_text as trace_to_text
from reader.traces.replay import (
    Failure,
    card_from_image,
    junit_xml,
    read_image,
    replay,
    replay_notes,
    sim_reader_for,
    stderr_progress,
)
from reader.traces.replay import Result as ReplayResult

KEYPAD_MEANINGS = {CANCEL: "the cancel key", TIMEOUT: "no key until the pad's time runs out"}
PAD_ANSWERS = {ERROR_SW[PIN_TIMEOUT]: "the time ran out", ERROR_SW[PIN_CANCELLED]: "cancelled on the keypad",
               SW_NEW_PINS_DIFFER: "the two new PINs differ", SW_WRONG_PIN_LENGTH: "a PIN too short or too long"}
LONG_TRACE = 1000  # APDUs: replaying a trace this long says so on stderr and shows its progress there


def load_trace(path: str):
    return parse_trace(read_text(path, "trace"), path)


def _replay_reader(trace, args, image: bytes | None, pcsc):
    """The reader `trace` replays on (a PC/SC reader, a copy of the --state image, or the fresh card
    of its directives) and the notes on what that replay cannot honour."""
    if pcsc is not None:
        pcsc.get_response = not trace.raw
        return pcsc, replay_notes(trace, pcsc=True)
    if image is not None:
        card = card_from_image(image, args.state, args.date)
        notes = replay_notes(trace, card, args.state)
        reader = sim_reader_for(trace, card)
    else:
        reader = sim_reader_for(trace)
        notes = replay_notes(trace)
    if args.wire:
        reader = wire_reader(reader.card, args.wire)
    return reader, notes


def cmd_replay(args) -> int:
    from reader.link.wire import LinkError

    if args.state and args.reader:
        raise UsageError("give --state CARD.img or --reader NAME, not both")
    if args.wire and args.reader:
        raise UsageError("--wire runs the simulated contacts: it cannot go with --reader")
    if args.keypad_control and not args.reader:
        raise UsageError("--keypad-control goes with --reader: on a simulated card the trace's keypad lines go "
                         "to its simulated PIN pad")
    traces = [load_trace(path) for path in args.traces]  # every parse error before anything runs
    if args.junit:
        check_output(args.junit, "JUnit report")
    image = read_image(args.state) if args.state else None  # each trace starts from this state; the file stays
    if image is not None:
        card_from_image(image, args.state)  # a damaged image: one line before anything runs
    pcsc = PcscReader(args.reader) if args.reader else None
    keypad = ServeKeypad(args.keypad_control) if args.keypad_control else None
    results = []
    for trace in traces:
        try:
            reader, notes = _replay_reader(trace, args, image, pcsc)
        except (TraceError, ProfileError, ImageError) as exc:  # this trace's card cannot be made: it fails alone
            line, _, message = str(exc).removeprefix(f"{trace.path}:").partition(": ")
            failure = Failure(int(line), message) if line.isdigit() else Failure(0, str(exc))
            results.append(ReplayResult(trace, failure, 0, 0.0))
            print(results[-1].report(), flush=True)
            continue
        for note in notes:  # before the first APDU: what this replay cannot do as the trace says
            print(f"note: {trace.path}: {note}", flush=True)
        if trace.apdus >= LONG_TRACE:
            print(f"replaying {trace.path} ({trace.apdus} APDUs)", file=sys.stderr, flush=True)
        try:
            result = replay(trace, reader, progress=stderr_progress if trace.apdus >= LONG_TRACE else None,
                            keypad=keypad)
        except LinkError as exc:  # the contacts failed (a card that does not speak the protocol asked, say)
            result = ReplayResult(trace, Failure(0, f"link error over the wire: {exc}"), 0, 0.0)
        result.notes = notes
        print(result.report(), flush=True)
        results.append(result)
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    if args.junit:
        write_text(args.junit, junit_xml(results), "JUnit report")
    return 1 if failed else 0


def cmd_decode(args) -> int:
    """Explain a trace: each command, and each expected response that is fixed bytes."""
    trace = load_trace(args.trace)
    decoder = Decoder()
    for line in trace.header:
        print(f"# {line}")
    for step in trace.steps:
        if step.kind == "reset":
            decoder.reset()
            print(f"{step.line:>4}  reset" + (f" (ATR {step.expect.text})" if step.expect else ""))
        elif step.kind == "power-off":
            decoder.reset()
            print(f"{step.line:>4}  power-off")
        elif step.kind == "fault":
            print(f"{step.line:>4}  ! fault {step.fault if step.fault is not None else 'clear'}")
        elif step.kind == "keypad":
            print(f"{step.line:>4}  keypad {step.entry}")
            print(f"        {KEYPAD_MEANINGS.get(step.entry, f'{len(step.entry)} digits and the validation key')}, "
                  "on the reader's PIN pad for its next PIN entry")
        else:
            if step.pin is not None:  # the template's data is the filler the PIN goes into: only its command is named
                print(f"{step.line:>4}  pinpad {pin_text(step.pin)}")
                print(f"        {decoder.command(step.pin.apdu)[0]}, the PIN typed on the reader's PIN pad put into "
                      "the template by the pad")
            else:
                print(f"{step.line:>4}  > {step.command_text()}")
                if command_is_fixed(step):
                    print("\n".join("        " + line for line in decoder.command(step.command_bytes({}))))
            if step.expect is not None:
                print(f"{step.expect_line:>4}  < {step.expect.text}")
                fixed = step.expect.fixed_bytes()
                if step.pin is not None and fixed in PAD_ANSWERS:  # the reader's own answer: the card saw nothing
                    print(f"        SW {fixed.hex().upper()} {PAD_ANSWERS[fixed]} (PC/SC part 10, the PIN pad's answer)")
                elif fixed is not None:
                    print("\n".join("        " + line for line in decoder.response(fixed)))
    return 0


def cmd_scriptor(args) -> int:
    if args.direction == "import":
        trace = trace_from_scriptor(read_text(args.input, "scriptor script"), args.input)
        text = trace_to_text(trace)
    else:
        trace = load_trace(args.input)
        text = to_scriptor(trace)
    write_text(args.output, text, "scriptor script" if args.direction == "export" else "trace")
    print(f"wrote {args.output} ({trace.apdus} commands)")
    return 0
