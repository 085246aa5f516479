"""The `sscard` command.

User mistakes (bad profile, missing image, bad hex) end with one line on
stderr and a non-zero exit status, never a traceback.
"""

import argparse
import datetime
import io
import math
import os
import random
import sys

from chip import Card, ImageError, ProfileError
from chip.kernel.store import StorageFailure
from chip.fleet import image_names
from chip.inputs import read_regular
from chip.personalization.profile import shipped_names

from chip.iso.sw import meaning

from reader.terminals import demo
from reader.terminals import flows
from reader.decode.decoder import Decoder
from reader.terminals.issuer import IssuerHost
from reader.terminals.payment import AAC, MAX_AMOUNT, KernelError, PaymentTerminal, script_name
from reader.pcsc.reader import PcscError, PcscReader, list_readers
from reader.traces.replay import Failure, RecordingReader, Result as ReplayResult, TraceWriter, card_from_image, junit_xml, \
    read_image, replay, replay_notes, seeded, sim_reader_for, start_directives, stderr_progress
from reader.traces.format import TraceError, command_is_fixed, date_problem, from_scriptor as trace_from_scriptor, \
    parse as parse_trace, to_scriptor, to_text as trace_to_text
from reader.terminals.psam import Psam, PsamError
from reader.report import exchange, parse_hex
from reader.pcsc.serve import DEFAULT_PORT, serve
from reader.sim import SimReader
from reader.terminals.ssse import SsseTerminal, TerminalError


class UsageError(Exception):
    """A mistake in what the user asked for; printed as one line."""


class _Recording:
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


_recording = None  # a _Recording while `sscard record` runs a command
_seed = None  # the running command's --seed


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


def _date(text: str) -> datetime.date:
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None
    problem = date_problem(day)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return day


def _seed_arg(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) >= 1 << 64:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to 2^64-1, not {text!r}")
    return int(text)


def _clock(text: str) -> float:
    """The card clock in MHz: ISO/IEC 7816-3 cards run at 1-20 MHz; anything in (0, 100] is simulated."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 100 and int(value * 1_000_000) > 0):
        raise argparse.ArgumentTypeError(f"a clock frequency in MHz, more than 0 and at most 100, not {text!r}")
    return value


def _pps_byte(text: str) -> int:
    if len(text) != 2 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise argparse.ArgumentTypeError(f"the TA1 to ask for is one byte in hex like 96, not {text!r}")
    return int(text, 16)


TEXT_NUL_SCAN = 8192  # a NUL byte in the first 8 KiB: a binary file


def _read_text(path: str, what: str) -> str:
    """A text file the user named (a trace, a scriptor script): its UTF-8 text, or one line naming the
    file and what is wrong with it."""
    data = read_regular(path, what, UsageError)
    if b"\0" in data[:TEXT_NUL_SCAN]:
        raise UsageError(f"{path}: a binary file (it has NUL bytes), not a {what} (UTF-8 text)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {data[exc.start]:02X} at offset {exc.start}); "
                         f"a {what} is UTF-8 text") from None


def _check_output(path: str, what: str) -> None:
    """Refuse, before any work is done, an output file that cannot be created (missing folder, a folder)."""
    folder = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a folder; give a file name for the {what}")
    if not os.path.isdir(folder):
        why = f"{folder} is not a folder" if os.path.exists(folder) else f"no such folder {folder}"
        raise UsageError(f"{path}: cannot write the {what}: {why}")


def _write_text(path: str, text: str, what: str) -> None:
    _check_output(path, what)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the {what} ({exc.strerror})") from None


def _link_failure(exc, command: bytes | None) -> int:
    """A LinkError on the simulated contacts: one line (what was being sent), exit status 1."""
    where = f" (sending {command[:5].hex(' ').upper()}{' ...' if len(command) > 5 else ''})" if command else ""
    print(f"sscard: error: link error on the simulated contacts{where}: {exc}", file=sys.stderr)
    return 1


def cmd_personalize(args) -> int:
    if os.path.lexists(args.state) and not args.force:
        raise UsageError(f"{args.state} already exists; add --force to replace it with a new card")
    card = Card.from_profile(args.profile, state=args.state, date=args.date, overwrite=args.force)
    info = card.applets["ssse"].describe()["records"]
    card.close()
    print(f"personalised {args.state} from profile {card.config.profile!r}: "
          f"card {info['card number']}, holder {info['name']}{info['name extension']}")
    return 0


def cmd_apdu(args) -> int:
    commands = [parse_hex(text) for text in args.hex]
    if (args.state is None) == (args.reader is None):
        raise UsageError("give either --state CARD.img (the simulator) or --reader NAME (PC/SC)")
    from reader.link.wire import LinkError

    if args.reader is not None:
        if args.seed is not None:
            raise UsageError("--seed seeds a simulated card's random source: give it with --state, not --reader")
        reader = card_reader(PcscReader(args.reader, get_response=not args.raw))
    elif args.wire:
        reader = card_reader(_wire_reader(Card.open(args.state, date=args.date), args.wire))
    else:
        card = Card.open(args.state, date=args.date)  # the card's own protocol (T=0 on the default card)
        reader = card_reader(SimReader(card, protocol="T=0" if args.t0 else None, get_response=not args.t0))
    command = None
    try:
        print(f"ATR {reader.reset().hex(' ').upper()}")
        decoder = None if args.no_decode else Decoder()
        for command in commands:
            print(exchange(command, reader.transmit(command), decoder=decoder))
    except LinkError as exc:  # the byte-level contacts failed (--wire): a timeout, a protocol error
        reader.power_off()
        return _link_failure(exc, command)
    reader.power_off()
    return 0


def cmd_atr(args) -> int:
    """Explain an ATR byte by byte: a card image's, a PC/SC reader's card's, or one given in hex."""
    from reader.link.atr import AtrError, explain

    given = [x is not None for x in (args.state, args.reader, args.hex)]
    if sum(given) != 1:
        raise UsageError("give one of --state CARD.img, --reader NAME or an ATR in hex")
    if args.state:
        atr = Card.open(args.state, date=args.date, read_only=True).atr
    elif args.reader:
        reader = PcscReader(args.reader)
        atr = reader.reset()
        reader.close()
    else:
        atr = args.hex
    try:
        lines = explain(atr)
    except AtrError as exc:
        raise UsageError(f"bad ATR: {exc}") from None
    print("\n".join(lines))
    return 0


def cmd_readers(args) -> int:
    readers = list_readers()
    for name in readers:
        print(name)
    if not readers:
        print("no PC/SC readers (is pcscd running? 'sscard serve' puts a card on vpcd's readers)", file=sys.stderr)
        return 1
    return 0


def serve_images(args) -> list[str]:
    """The images `sscard serve` puts on vpcd: every --state, then every DIR/*.img of --fleet DIR (sorted)."""
    images = list(args.state or [])
    if args.fleet:
        fleet = image_names(args.fleet)
        if not fleet:
            raise UsageError(f"{args.fleet}: no card images (NAME.img) in this fleet folder")
        images += fleet
    if not images:
        raise UsageError("give --state CARD.img (repeatable) or --fleet DIR")
    return images


def cmd_serve(args) -> int:
    images = serve_images(args)
    for image in images:
        Card.open(image, read_only=True)  # a bad or busy image is a one-line error before anything starts
    on_apdu = None
    if args.record:
        _check_output(args.record, "trace")
    record = open(args.record, "w", encoding="utf-8") if args.record else None
    if record is not None:
        writer = TraceWriter(record, header=[f"every APDU the served card(s) answered: {', '.join(images)}"])
        on_apdu = lambda slot, apdu, response, seconds: writer.exchange(apdu, response, seconds)  # noqa: E731
    try:
        return serve(images, list(args.port or []), host=args.host, control=args.control,
                     protocol=0 if args.t0 else 1 if args.t1 else None,  # None: each card's own
                     quickack=not args.no_quickack, date=args.date, use_stdin=not args.no_stdin, on_apdu=on_apdu)
    finally:
        if record is not None:
            record.close()


def _load_trace(path: str):
    return parse_trace(_read_text(path, "trace"), path)


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
        reader = _wire_reader(reader.card, args.wire)
    return reader, notes


def cmd_replay(args) -> int:
    from reader.link.wire import LinkError

    if args.state and args.reader:
        raise UsageError("give --state CARD.img or --reader NAME, not both")
    if args.wire and args.reader:
        raise UsageError("--wire runs the simulated contacts: it cannot go with --reader")
    traces = [_load_trace(path) for path in args.traces]  # every parse error before anything runs
    if args.junit:
        _check_output(args.junit, "JUnit report")
    image = read_image(args.state) if args.state else None  # each trace starts from this state; the file stays
    if image is not None:
        card_from_image(image, args.state)  # a damaged image: one line before anything runs
    pcsc = PcscReader(args.reader) if args.reader else None
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
        if trace.apdus >= 1000:
            print(f"replaying {trace.path} ({trace.apdus} APDUs)", file=sys.stderr, flush=True)
        try:
            result = replay(trace, reader, progress=stderr_progress if trace.apdus >= 1000 else None)
        except LinkError as exc:  # the contacts failed (a card that does not speak the protocol asked, say)
            result = ReplayResult(trace, Failure(0, f"link error over the wire: {exc}"), 0, 0.0)
        result.notes = notes
        print(result.report(), flush=True)
        results.append(result)
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    if args.junit:
        _write_text(args.junit, junit_xml(results), "JUnit report")
    return 1 if failed else 0


def _wire_reader(card: Card, protocol: str | None, **kw):
    """A WireReader on `card` over "t0" or "t1"; None: the card's own protocol (the first its ATR offers)."""
    from reader.link.wire import WireReader

    return WireReader(card, protocol=None if protocol is None else "T=0" if protocol == "t0" else "T=1", **kw)


def cmd_wire_log(args) -> int:
    from reader.link.wire import LinkError, explain_log

    commands = [parse_hex(text) for text in args.hex]
    log: list = []
    pps = args.pps
    reader = _wire_reader(Card.open(args.state, date=args.date), args.wire, pps=pps, log=log,
                          clock=int(args.clock * 1_000_000))
    try:
        reader.reset()
    except LinkError as exc:  # the ATR or the PPS exchange failed
        for line in explain_log(log, reader.protocol):
            print(line)
        return _link_failure(exc, None)
    failed = False
    for command in commands:
        try:
            reader.transmit(command)
        except LinkError as exc:
            print(f"link error: {exc}", file=sys.stderr)
            failed = True
            break
    reader.power_off()
    for line in explain_log(log, reader.protocol):
        print(line)
    print(f"simulated time on the contacts: {reader.seconds * 1000:.3f} ms at {args.clock:g} MHz "
          f"({reader.total_etu} etu)")
    return 1 if failed else 0


def cmd_decode(args) -> int:
    """Explain a trace: each command, and each expected response that is fixed bytes."""
    trace = _load_trace(args.trace)
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
        else:
            print(f"{step.line:>4}  > {step.command_text()}")
            if command_is_fixed(step):
                print("\n".join("        " + line for line in decoder.command(step.command_bytes({}))))
            if step.expect is not None:
                print(f"{step.expect_line:>4}  < {step.expect.text}")
                fixed = step.expect.fixed_bytes()
                if fixed is not None:
                    print("\n".join("        " + line for line in decoder.response(fixed)))
    return 0


def cmd_record(args) -> int:
    """Run an sscard command that drives a card and write its APDUs as a trace that replays: the
    directives of the starting card (@profile, @date, @issued, @random with the seed set on the card,
    @protocol, and @snapshot when it is not a fresh personalisation). Nothing recorded is an error."""
    global _recording
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UsageError("record needs a command after --, e.g. sscard record -o t.apdu -- fin purchase 100 --state c.img")
    if command[0] in ("record", "serve", "replay"):
        raise UsageError(f"'{command[0]}' cannot be recorded this way (use 'sscard serve --record FILE')")
    if args.date is not None:  # a global --date given before `record` applies to the recorded command
        command = ["--date", args.date.isoformat()] + command
    try:
        inner = build_parser().parse_args(command)
    except SystemExit as exit_:  # the command's own usage error, already said in one line
        return exit_.code
    if not hasattr(inner, "seed") or getattr(inner, "list", False):
        raise UsageError(f"'{inner.command}' sends no APDU to a card, so there is nothing to record "
                         f"(record apdu, ssse, fin, flow or card-block)")
    _check_output(args.output, "trace")
    previous, _recording = _recording, _Recording(random.SystemRandom().randrange(1, 1 << 32), command)
    try:
        code = main(command)
        recording = _recording
    finally:
        _recording = previous
    if not recording.exchanges:
        if code:
            return code  # the command failed before its first APDU and said why
        raise UsageError(f"nothing recorded: '{' '.join(command)}' sent no APDU; {args.output} not written")
    _write_text(args.output, recording.out.getvalue(), "trace")
    return code


def cmd_scriptor(args) -> int:
    if args.direction == "import":
        trace = trace_from_scriptor(_read_text(args.input, "scriptor script"), args.input)
        text = trace_to_text(trace)
    else:
        trace = _load_trace(args.input)
        text = to_scriptor(trace)
    _write_text(args.output, text, "scriptor script" if args.direction == "export" else "trace")
    print(f"wrote {args.output} ({trace.apdus} commands)")
    return 0


def cmd_info(args) -> int:
    from chip.kernel.image import describe_holder, holder

    card = Card.open(args.state, date=args.date, read_only=True)  # only reads: never takes the image
    print(f"card image   {args.state}")
    owner = holder(args.state)
    if owner is not None:
        print(f"note         {args.state} is in use by {describe_holder(*owner)}: read-only snapshot")
    print(f"profile      {card.config.profile}")
    print(f"ATR          {card.atr.hex(' ').upper()}")
    for name, applet in card.applets.items():
        described = applet.describe()
        if not described:
            continue
        print(f"\n[{name}]")
        for key, value in described.items():
            if key != "records":
                _info_lines(key, value, "  ")
        for key, value in described.get("records", {}).items():
            print(f"  {key:<28} {value}")
    return 0


def _info_lines(key: str, value, indent: str) -> None:
    """One `key value` line, or the key then its parts indented (key counters, the medical purse)."""
    if isinstance(value, dict):
        print(f"{indent}{key}")
        for part, inner in value.items():
            _info_lines(str(part), inner, indent + "  ")
    elif isinstance(value, list):
        print(f"{indent}{key:<20} {len(value)}")
        for item in value:
            text = ", ".join(f"{k} {v}" for k, v in item.items()) if isinstance(item, dict) else str(item)
            print(f"{indent}  {text}")
    else:
        print(f"{indent}{key:<20} {value}")


def cmd_demo(args) -> int:
    return demo.run(date=args.date)


def cmd_ssse(args) -> int:
    """Run one SSSE operation through the PSAM and APDUs, printing every exchange."""
    card = Card.open(args.state, date=args.date)
    psam = Psam(SimReader(Card.psam(args.keys or flows.keys_profile(card))))
    identification, _ = flows.issuer_records(card)  # a locked SSSE cannot be read: the back office knows it
    terminal = SsseTerminal(card_reader(SimReader(card)), psam, on_exchange=lambda c, r: print(exchange(c, r)),
                            identification=identification)
    select_sw = terminal.start()
    if select_sw not in (0x9000, 0x6283):
        return _refused(select_sw)
    if args.operation == "pharmacy":
        when = datetime.datetime.combine(card.today, flows.PHARMACY_TIME)
        outcome = terminal.pharmacy_purchase(args.pin, args.amount, when=when)
        terminal.reader.power_off()
        if outcome["sw"] != 0x9000:
            return _refused(outcome["sw"])
        print(f"purchase: terminal transaction {outcome['terminal_tx'].hex().upper()}, "
              f"TAC {outcome['tac'].hex().upper()}")
        return 0
    operations = {
        "change-pin": lambda: terminal.change_pin(args.old, args.new),
        "verify": lambda: terminal.verify(args.pin),
        "lock": lambda: terminal.lock(permanent=args.permanent),
        "unlock": terminal.unlock,
        "unblock-pin": terminal.unblock_pin,
        "reset-pin": lambda: terminal.reset_pin(args.new),
        "register": lambda: terminal.register(args.pin, args.amount),
        "card-block": terminal.card_block,
    }
    sw = operations[args.operation]()
    terminal.reader.power_off()
    return 0 if sw == 0x9000 else _refused(sw)


def _pin_arg(text: str) -> str:
    """A PIN the holder can type: 4 to 12 digits (the PIN pad, P8 §6.2.4; the card takes 2-8 bytes cn,
    P5 §6.14)."""
    if not (text.isascii() and text.isdigit() and 4 <= len(text) <= 12):
        raise argparse.ArgumentTypeError(f"a PIN is 4 to 12 digits, not {text!r}")
    return text


AMOUNT_UNIT = "fen, a whole number (1234 = 12.34 yuan)"  # the one unit of every amount on the command line


def _amount_in_fen(text: str, maximum: int) -> int:
    """One amount as the CLI takes it everywhere: whole fen, ASCII digits only, 0 to `maximum`.

    Yuan with decimals (`12.34`) get a one-line hint with the fen value; a sign, an exponent,
    `inf`, `NaN`/`sNaN`, underscores or anything else are one line too (never a traceback)."""
    if text.isascii() and text.isdigit():
        value = int(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"an amount in fen is 0 to {maximum}, not {value}")
        return value
    whole, dot, cents = text.partition(".")
    if dot and whole.isascii() and whole.isdigit() and cents.isascii() and cents.isdigit() and len(cents) <= 2:
        fen = int(whole) * 100 + int(cents.ljust(2, "0"))
        raise argparse.ArgumentTypeError(f"amounts are in fen (whole numbers): {text} yuan is {fen} fen, "
                                         f"not {text!r}")
    if text.startswith("-") and text[1:].replace(".", "", 1).isdigit():
        raise argparse.ArgumentTypeError(f"an amount cannot be negative: {text!r}")
    raise argparse.ArgumentTypeError(f"not an amount in {AMOUNT_UNIT}: {text!r}")


def _fen(text: str) -> int:
    """An SSSE amount in fen: 0 to 99999999 (the 8 digits of DF04 EF06 item 92, V2 table 9)."""
    return _amount_in_fen(text, 99_999_999)


def _amount(text: str) -> int:
    """A financial amount in fen: 0 to 999999999999 (the 12 digits of 9F02, n12)."""
    return _amount_in_fen(text, MAX_AMOUNT)


FIN_SCRIPTS = {
    "block": lambda args: IssuerHost.command(0x84, 0x1E),
    "unblock": lambda args: IssuerHost.command(0x84, 0x18),
    "card-block": lambda args: IssuerHost.command(0x84, 0x16),
    "unblock-pin": lambda args: IssuerHost.command(0x84, 0x24),
    "activate": lambda args: IssuerHost.activation(args.pin),
}
# (what the card did when every script command answered 9000, what the operation is called when it did not)
FIN_DONE = {
    "activate": ("activated: bank PIN set, DF7F 01", "not activated"),
    "block": ("blocked: APPLICATION BLOCK done (SELECT answers 6283, GENERATE AC only an AAC)", "not blocked"),
    "unblock": ("unblocked: APPLICATION UNBLOCK done", "not unblocked"),
    "unblock-pin": ("PIN unblocked: PIN UNBLOCK done (the try counter is full again; the PIN is unchanged)",
                    "PIN not unblocked"),
    "card-block": ("card blocked: CARD BLOCK done (final: every SELECT answers 6A81)", "card not blocked"),
}


def _script_lines(outcome) -> list[str]:
    """One line per issuer script command: what the card answered, or that it was never sent."""
    lines = [f"script {command[:2].hex().upper()} {script_name(command)}: {sw:04X} {meaning(sw)}"
             for command, sw in outcome.script_results]
    return lines + [f"script {command[:2].hex().upper()} {script_name(command)}: not sent "
                    "(an earlier command of its script failed)" for command in outcome.scripts_not_sent]


def cmd_fin(args) -> int:
    """Run a financial operation through a terminal kernel and the issuer host, printing every exchange.

    Every input is checked before the first APDU (argparse types, the script builders, the kernel);
    the last line says what the card did."""
    card = Card.open(args.state, date=args.date)
    host = IssuerHost(args.keys or flows.keys_profile(card))
    script = None
    if args.operation != "purchase":
        _, pan = flows.issuer_records(card)
        if pan is None:
            raise UsageError("this card image has no financial application")
        script = FIN_SCRIPTS[args.operation](args)  # ValueError for a bad input, before any APDU
    terminal = PaymentTerminal(card_reader(SimReader(card)), on_exchange=lambda c, r: print(exchange(c, r)), date=card.today)
    if script is None:
        outcome = terminal.purchase(args.amount, pin=args.pin, sm4=args.sm4, host=host)
    else:
        host.queue(pan, script)
        outcome = terminal.purchase(0, pin=None, sm4=args.sm4, host=host)
    terminal.reader.power_off()
    for line in _script_lines(outcome):
        print(line)
    if script is None:
        print(f"outcome: {outcome.summary}")
        return 0 if outcome.approved else 1
    note = ""
    if outcome.script_results and outcome.first_cid == AAC:
        note = (" (expected before activation: the issuer's scripts ran after the AAC)"
                if args.operation == "activate" else " (the issuer's scripts ran after the AAC)")
    print(f"transaction carrying the scripts: {outcome.summary}{note}")
    done, not_done = FIN_DONE[args.operation]
    if not outcome.script_results:
        print(f"{not_done}: the issuer host sent no scripts (it did not verify the card's cryptogram)")
        print("refused: no issuer script reached the card", file=sys.stderr)
        return 1
    failed = [(command, sw) for command, sw in outcome.script_results if sw != 0x9000]
    if not failed:
        print(done)
        return 0
    ran = ", ".join(f"{script_name(command)} ({sw:04X})" for command, sw in outcome.script_results)
    not_sent = ", ".join(script_name(command) for command in outcome.scripts_not_sent)
    print(f"{not_done}: the card ran {ran}" + (f"; not sent: {not_sent}" if not_sent else ""))
    return _refused(failed[0][1])


def cmd_flow(args) -> int:
    """Run a terminal flow (reader/terminals/flows.py) on a card image, printing every exchange, the steps and the result."""
    if args.list:
        for name, function in flows.FLOWS.items():
            print(f"{name:<22} {function.__doc__.strip().splitlines()[0]}")
            params = flows.parameters(name)
            print("  " + (" ".join(f"{key}={value if value != '' else '(none)'}" for key, value in params.items())
                          or "(no parameters)"))
        return 0
    if args.name is None or args.state is None:
        raise UsageError("give a flow NAME and --state CARD.img (or --list)")
    params = flows.parse_params(args.name, args.param or [])
    card = Card.open(args.state, date=args.date)
    result = flows.run_flow(args.name, card, profile=args.keys, on_exchange=lambda c, r: print(exchange(c, r)),
                            wrap=card_reader, **params)
    for description, outcome in result.steps:
        print(f"- {description}: {outcome}")
    print(result.final_line)
    return 0 if result.ok else 1


def _refused(sw: int) -> int:
    print(f"refused: {sw:04X} {meaning(sw)}", file=sys.stderr)
    return 1


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line, like every other sscard error (`sscard: error: ssse register: ...`)."""

    def error(self, message):
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        print(f"sscard: error: {command + ': ' if command else ''}{message}", file=sys.stderr)
        raise SystemExit(2)


GLOBAL_DATE_HELP = "simulated date YYYY-MM-DD (default: today); before or after the command"
SEED_HELP = ("seed the card's random source (GET CHALLENGE and the like), so a run repeats exactly "
             "(sscard record sets one when none is given)")


def _global_options(parser: argparse.ArgumentParser) -> None:
    """Accept the global --date after any (sub)command too; absent there, it keeps the value given
    before the command (SUPPRESS: the subparser does not overwrite it with a default)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share one parser
                if not any("--date" in a.option_strings for a in sub._actions):
                    sub.add_argument("--date", type=_date, default=argparse.SUPPRESS, help=GLOBAL_DATE_HELP)
                _global_options(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sscard", description="Social-security card simulator")
    parser.add_argument("--date", type=_date, help=GLOBAL_DATE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("personalize", help="personalise a new card image from a profile")
    p.add_argument("profile", nargs="?", default="default",
                   help=f"shipped profile ({', '.join(shipped_names())}) or a TOML path (default: default)")
    p.add_argument("--state", required=True, metavar="CARD.img", help="card image to create")
    p.add_argument("--force", action="store_true", help="replace an existing image")
    p.set_defaults(func=cmd_personalize)

    p = sub.add_parser("apdu", help="send APDUs to a card image or a PC/SC reader and explain the answers")
    p.add_argument("--state", metavar="CARD.img", help="the simulated card in this image")
    p.add_argument("--reader", metavar="NAME", help="a PC/SC reader (see 'sscard readers'), virtual or real")
    p.add_argument("--raw", action="store_true", help="with --reader: show 61xx/6Cxx instead of following them")
    p.add_argument("--no-decode", action="store_true", help="do not explain commands and decode responses")
    p.add_argument("--wire", choices=("t0", "t1"), help="run at the byte level: reader firmware, wire, card over T=0/T=1")
    p.add_argument("--t0", action="store_true", help="T=0 as on the contacts: show 61xx and GET RESPONSE")
    p.add_argument("--seed", type=_seed_arg, metavar="N", help=SEED_HELP)
    p.add_argument("hex", nargs="+", metavar="HEX", help="command APDU in hex, one per argument")
    p.set_defaults(func=cmd_apdu)

    p = sub.add_parser("replay", help="replay .apdu traces and compare every response")
    p.add_argument("traces", nargs="+", metavar="TRACE")
    p.add_argument("--state", metavar="CARD.img",
                   help="replay on a copy of this image in memory, each trace from its state; the file is left as "
                        "it is (default: a fresh card per trace, from its directives)")
    p.add_argument("--reader", metavar="NAME", help="replay on a PC/SC reader, virtual or real")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    p.add_argument("--wire", choices=("t0", "t1"), help="replay at the byte level over T=0 or T=1")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("wire-log", help="send APDUs over the simulated contacts and show every byte, explained")
    p.add_argument("--state", required=True, metavar="CARD.img")
    p.add_argument("--wire", choices=("t0", "t1"),
                   help="T=0 or T=1 (default: the card's own protocol, the first its ATR offers:"
                        " T=0 on the default card)")
    p.add_argument("--pps", type=_pps_byte, metavar="TA1", help="ask for these Fi/Di by PPS (hex, e.g. 96)")
    p.add_argument("--clock", type=_clock, default=4.0, metavar="MHZ", help="card clock in MHz (default 4)")
    p.add_argument("hex", nargs="+", metavar="HEX")
    p.set_defaults(func=cmd_wire_log)

    p = sub.add_parser("decode", help="explain a trace: command names, files, records, status words, TLV data")
    p.add_argument("trace", metavar="TRACE")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("record", help="run an sscard command and record the card's APDUs as a trace that replays")
    p.add_argument("-o", "--output", required=True, metavar="TRACE")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the sscard command to run")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("scriptor", help="convert between pcsc-tools scriptor scripts and .apdu traces")
    p.add_argument("direction", choices=("import", "export"))
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_scriptor)

    p = sub.add_parser("atr", help="explain an ATR byte by byte (of an image, a reader's card, or given in hex)")
    p.add_argument("hex", nargs="?", metavar="ATR", help="an ATR in hex")
    p.add_argument("--state", metavar="CARD.img")
    p.add_argument("--reader", metavar="NAME")
    p.set_defaults(func=cmd_atr)

    p = sub.add_parser("readers", help="list the PC/SC readers")
    p.set_defaults(func=cmd_readers)

    p = sub.add_parser("serve", help="serve card images on vpcd, so PC/SC applications see them in a reader")
    p.add_argument("--state", action="append", metavar="CARD.img",
                   help="card image (repeat for several cards, each on its own port)")
    p.add_argument("--fleet", metavar="DIR", help="also serve every DIR/*.img, one vpcd port each (counting up)")
    p.add_argument("--port", type=int, action="append", metavar="PORT",
                   help=f"vpcd port (default {DEFAULT_PORT}; repeat per card; missing ones count up)")
    p.add_argument("--host", default="127.0.0.1", help="where vpcd listens (default 127.0.0.1)")
    p.add_argument("--control", metavar="SOCKET", help="also take control lines on this Unix socket")
    protocol = p.add_mutually_exclusive_group()
    protocol.add_argument("--t0", action="store_true",
                          help="T=0 behaviour (61xx and GET RESPONSE) whatever the card's ATR offers")
    protocol.add_argument("--t1", action="store_true",
                          help="T=1 behaviour whatever the card's ATR offers (default: the card's own protocol,"
                               " the first its ATR offers: T=0 on the default card)")
    p.add_argument("--no-quickack", action="store_true", help="do not re-arm TCP_QUICKACK (to measure the 48 ms trap)")
    p.add_argument("--no-stdin", action="store_true", help="do not read control lines from stdin")
    p.add_argument("--record", metavar="TRACE", help="record every APDU the card(s) answered as a trace")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("info", help="show a card image: holder fields, PIN tries, application states")
    p.add_argument("--state", required=True, metavar="CARD.img")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="run a short scripted session on a fresh default card")
    p.set_defaults(func=cmd_demo)

    ssse = sub.add_parser("ssse", help="social-security application operations (through the PSAM and APDUs)")
    ops = ssse.add_subparsers(dest="operation", required=True, metavar="OPERATION")

    def op(name, help_text):
        q = ops.add_parser(name, help=help_text)
        q.add_argument("--state", required=True, metavar="CARD.img")
        q.add_argument("--keys", metavar="PROFILE", help="profile whose master keys the PSAM holds (default: the card's)")
        q.add_argument("--seed", type=_seed_arg, metavar="N", help=SEED_HELP)
        q.set_defaults(func=cmd_ssse)
        return q

    q = op("change-pin", "CHANGE PIN 80 5E 01 00 (activates an issued card when NEW is not the initial PIN)")
    q.add_argument("old", type=_pin_arg)
    q.add_argument("new", type=_pin_arg)
    q = op("verify", "VERIFY the SSSE PIN")
    q.add_argument("pin", type=_pin_arg)
    q = op("lock", "APPLICATION BLOCK with BK: loss lock 84 1E 00 00, or --permanent 84 1E 00 01")
    q.add_argument("--permanent", action="store_true")
    op("unlock", "APPLICATION UNBLOCK 84 18 00 00 with BK (an HR-designated terminal)")
    op("unblock-pin", "PIN UNBLOCK 84 24 00 00 with PUK: restore the PIN try counter")
    q = op("reset-pin", "PIN reset 84 24 00 01 with PUK: set a new PIN, enciphered (service window)")
    q.add_argument("new", type=_pin_arg)
    q = op("register", "a hospital settlement in DF04 EF06 items 92/93 (PIN, RK1DF04 read, UK2DF04 write)")
    q.add_argument("--pin", type=_pin_arg, default=flows.DEFAULT_INITIAL_PIN, help="the holder's SSSE PIN")
    q.add_argument("--amount", type=_fen, default=0, metavar="FEN",
                   help=f"amount in {AMOUNT_UNIT}, 0 to 99999999 (default 0)")
    q = op("pharmacy", "a designated-pharmacy offline purchase (B0 28 / 80 70 / B0 2C / 80 72) from DF04's purse")
    q.add_argument("--pin", type=_pin_arg, default=flows.DEFAULT_INITIAL_PIN, help="the holder's SSSE PIN")
    q.add_argument("--amount", type=_fen, default=1000, metavar="FEN",
                   help=f"amount in {AMOUNT_UNIT}, 0 to 99999999 (default 1000)")
    op("card-block", "CARD BLOCK 84 16 00 00 with BK: irreversible, every SELECT then answers 6A81")

    fin = sub.add_parser("fin", help="financial application operations (terminal kernel + issuer host, through APDUs)")
    fops = fin.add_subparsers(dest="operation", required=True, metavar="OPERATION")

    def fop(name, help_text):
        q = fops.add_parser(name, help=help_text)
        q.add_argument("--state", required=True, metavar="CARD.img")
        q.add_argument("--keys", metavar="PROFILE", help="profile whose issuer master keys the host holds")
        q.add_argument("--sm4", action="store_true", help="the terminal asks for SM4 (DF69 = 01)")
        q.add_argument("--seed", type=_seed_arg, metavar="N", help=SEED_HELP)
        q.set_defaults(func=cmd_fin)
        return q

    q = fop("activate", "bank-outlet activation: the issuer sets the PIN and the activation flag by script")
    q.add_argument("--pin", type=_pin_arg, default="123456",
                   help="the holder's new bank PIN, 4 to 12 digits (default 123456)")
    q = fop("purchase", f"a purchase of FEN fen (amounts are in {AMOUNT_UNIT}), online to the issuer host")
    q.add_argument("amount", type=_amount, metavar="FEN", help=f"the amount in {AMOUNT_UNIT}, 0 to {MAX_AMOUNT}")
    q.add_argument("--pin", type=_pin_arg, help="offline PIN to verify, 4 to 12 digits")
    fop("block", "issuer script APPLICATION BLOCK")
    fop("unblock", "issuer script APPLICATION UNBLOCK")
    fop("unblock-pin", "issuer script PIN UNBLOCK (counter only)")
    fop("card-block", "issuer script CARD BLOCK (final)")

    p = sub.add_parser("card-block", help="CARD BLOCK, as 'sscard ssse card-block' (irreversible: SELECT then 6A81)")
    p.add_argument("--state", required=True, metavar="CARD.img")
    p.add_argument("--keys", metavar="PROFILE", help="profile whose master keys the PSAM holds (default: the card's)")
    p.add_argument("--seed", type=_seed_arg, metavar="N", help=SEED_HELP)
    p.set_defaults(func=cmd_ssse, operation="card-block")

    p = sub.add_parser("flow", help="run a real-world terminal flow on a card image ('sscard flow --list')")
    p.add_argument("name", nargs="?", metavar="NAME", help="the flow (see --list)")
    p.add_argument("--state", metavar="CARD.img")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="a flow parameter (repeat; see --list)")
    p.add_argument("--keys", metavar="PROFILE", help="profile whose keys the PSAM and issuer hold (default: card's)")
    p.add_argument("--list", action="store_true", help="list the flows and their parameters with defaults")
    p.add_argument("--seed", type=_seed_arg, metavar="N", help=SEED_HELP)
    p.set_defaults(func=cmd_flow)
    _global_options(parser)
    return parser


def main(argv=None) -> int:
    global _seed
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code
    _seed = getattr(args, "seed", None)  # card_reader seeds the card with it
    try:
        return args.func(args)
    except (UsageError, ProfileError, ImageError, StorageFailure, ValueError, PsamError, TerminalError,
            KernelError, PcscError, TraceError) as exc:  # StorageFailure: a card image that cannot be written
        print(f"sscard: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")
        return 0

