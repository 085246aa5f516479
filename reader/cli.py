"""The `sscard` command.

User mistakes (bad profile, missing image, bad hex) end with one line on
stderr and a non-zero exit status, never a traceback.
"""

import argparse
import datetime
import decimal
import os
import sys

from chip import Card, ImageError, ProfileError
from chip.fleet import image_names
from chip.profile import shipped_names

from chip.sw import meaning

from . import demo, flows
from .decode import Decoder
from .issuer import IssuerHost
from .payment_terminal import KernelError, PaymentTerminal
from .pcsc import PcscError, PcscReader, list_readers
from .replay import Failure, RecordingReader, Result as ReplayResult, TraceWriter, junit_xml, replay, \
    sim_reader_for, stderr_progress
from .trace import TraceError, command_is_fixed, from_scriptor as trace_from_scriptor, parse as parse_trace, to_scriptor, to_text as trace_to_text
from .psam import Psam, PsamError
from .report import exchange, parse_hex
from .serve import DEFAULT_PORT, serve
from .sim import SimReader
from .ssse_terminal import SsseTerminal, TerminalError


class UsageError(Exception):
    """A mistake in what the user asked for; printed as one line."""


_record_to = None  # the open trace file while `sscard record` runs a command


def card_reader(reader):
    """The card's reader, wrapped in a RecordingReader while `sscard record` runs a command."""
    if _record_to is None:
        return reader
    card = getattr(reader, "card", None)
    directives = {"profile": card.config.profile, "date": card.today} if card is not None else {}
    return RecordingReader(reader, _record_to, directives=directives)


def _date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def cmd_personalize(args) -> int:
    if os.path.exists(args.state) and not args.force:
        raise UsageError(f"{args.state} already exists; add --force to replace it with a new card")
    card = Card.from_profile(args.profile, state=args.state, date=args.date)
    info = card.applets["ssse"].describe()["records"]
    print(f"personalised {args.state} from profile {card.config.profile!r}: "
          f"card {info['card number']}, holder {info['name']}{info['name extension']}")
    return 0


def cmd_apdu(args) -> int:
    commands = [parse_hex(text) for text in args.hex]
    if (args.state is None) == (args.reader is None):
        raise UsageError("give either --state CARD.img (the simulator) or --reader NAME (PC/SC)")
    if args.reader is not None:
        reader = PcscReader(args.reader, get_response=not args.raw)
    elif args.wire:
        reader = card_reader(_wire_reader(Card.open(args.state, date=args.date), args.wire))
    else:
        card = Card.open(args.state, date=args.date)  # the card's own protocol (T=0 on the default card)
        reader = card_reader(SimReader(card, protocol="T=0" if args.t0 else None, get_response=not args.t0))
    print(f"ATR {reader.reset().hex(' ').upper()}")
    decoder = None if args.no_decode else Decoder()
    for command in commands:
        print(exchange(command, reader.transmit(command), decoder=decoder))
    reader.power_off()
    return 0


def cmd_atr(args) -> int:
    """Explain an ATR byte by byte: a card image's, a PC/SC reader's card's, or one given in hex."""
    from .atr import AtrError, explain

    given = [x is not None for x in (args.state, args.reader, args.hex)]
    if sum(given) != 1:
        raise UsageError("give one of --state CARD.img, --reader NAME or an ATR in hex")
    if args.state:
        atr = Card.open(args.state, date=args.date).atr
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
        Card.open(image)  # a bad image is a one-line error before anything starts
    on_apdu = None
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
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read trace ({exc.strerror})") from None
    return parse_trace(text, path)


def cmd_replay(args) -> int:
    from .wire import LinkError

    if args.state and args.reader:
        raise UsageError("give --state CARD.img or --reader NAME, not both")
    traces = [_load_trace(path) for path in args.traces]  # every parse error before anything runs
    pcsc = PcscReader(args.reader) if args.reader else None
    results = []
    for trace in traces:
        if pcsc is not None:
            reader = pcsc
        elif args.state:
            reader = sim_reader_for(trace, Card.open(args.state, date=args.date))
        else:
            reader = sim_reader_for(trace)
        if args.wire and pcsc is None:
            reader = _wire_reader(reader.card, args.wire)
        if trace.apdus >= 1000:
            print(f"replaying {trace.path} ({trace.apdus} APDUs)", file=sys.stderr, flush=True)
        try:
            result = replay(trace, reader, progress=stderr_progress if trace.apdus >= 1000 else None)
        except LinkError as exc:  # the contacts failed (a card that does not speak the protocol asked, say)
            result = ReplayResult(trace, Failure(0, f"link error over the wire: {exc}"), 0, 0.0)
        print(result.report(), flush=True)
        results.append(result)
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as f:
            f.write(junit_xml(results))
    return 1 if failed else 0


def _wire_reader(card: Card, protocol: str | None, **kw):
    """A WireReader on `card` over "t0" or "t1"; None: the card's own protocol (the first its ATR offers)."""
    from .wire import WireReader

    return WireReader(card, protocol=None if protocol is None else "T=0" if protocol == "t0" else "T=1", **kw)


def cmd_wire_log(args) -> int:
    from .wire import LinkError, explain_log

    commands = [parse_hex(text) for text in args.hex]
    log: list = []
    pps = int(args.pps, 16) if args.pps else None
    reader = _wire_reader(Card.open(args.state, date=args.date), args.wire, pps=pps, log=log,
                          clock=int(args.clock * 1_000_000))
    reader.reset()
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
    global _record_to
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UsageError("record needs a command after --, e.g. sscard record -o t.apdu -- fin purchase 1 --state c.img")
    if command[0] in ("record", "serve", "replay"):
        raise UsageError(f"'{command[0]}' cannot be recorded this way (use 'sscard serve --record FILE')")
    with open(args.output, "w", encoding="utf-8") as out:
        _record_to = out
        try:
            return main(command)
        finally:
            _record_to = None


def cmd_scriptor(args) -> int:
    trace = _load_trace(args.input) if args.direction == "export" else None
    if args.direction == "import":
        with open(args.input, encoding="utf-8") as f:
            trace = trace_from_scriptor(f.read(), args.input)
        text = trace_to_text(trace)
    else:
        text = to_scriptor(trace)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output} ({trace.apdus} commands)")
    return 0


def cmd_info(args) -> int:
    card = Card.open(args.state, date=args.date)
    print(f"card image   {args.state}")
    print(f"profile      {card.config.profile}")
    print(f"ATR          {card.atr.hex(' ').upper()}")
    for name, applet in card.applets.items():
        described = applet.describe()
        if not described:
            continue
        print(f"\n[{name}]")
        for key, value in described.items():
            if key != "records":
                print(f"  {key:<20} {value}")
        for key, value in described.get("records", {}).items():
            print(f"  {key:<28} {value}")
    return 0


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


def _fen(text: str) -> int:
    """An amount in fen: 0 to 99999999 (the 8 digits of DF04 EF06 item 92, V2 table 9)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an amount in fen (a whole number): {text!r}") from None
    if not 0 <= value <= 99_999_999:
        raise argparse.ArgumentTypeError(f"an amount in fen is 0 to 99999999, not {value}")
    return value


def _amount(text: str) -> int:
    """'12.34' (yuan) -> 1234 fen."""
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount in yuan: {text!r}") from None
    fen = value * 100
    if fen != fen.to_integral_value() or not 0 <= fen < 10**12:
        raise argparse.ArgumentTypeError(f"not an amount in yuan with at most 2 decimals: {text!r}")
    return int(fen)


FIN_SCRIPTS = {
    "block": lambda args: IssuerHost.command(0x84, 0x1E),
    "unblock": lambda args: IssuerHost.command(0x84, 0x18),
    "card-block": lambda args: IssuerHost.command(0x84, 0x16),
    "unblock-pin": lambda args: IssuerHost.command(0x84, 0x24),
    "activate": lambda args: IssuerHost.activation(args.pin),
}


def cmd_fin(args) -> int:
    """Run a financial operation through a terminal kernel and the issuer host, printing every exchange."""
    card = Card.open(args.state, date=args.date)
    host = IssuerHost(args.keys or flows.keys_profile(card))
    terminal = PaymentTerminal(card_reader(SimReader(card)), on_exchange=lambda c, r: print(exchange(c, r)), date=card.today)
    if args.operation == "purchase":
        outcome = terminal.purchase(args.amount, pin=args.pin, sm4=args.sm4, host=host)
    else:
        _, pan = flows.issuer_records(card)
        if pan is None:
            raise UsageError("this card image has no financial application")
        host.queue(pan, FIN_SCRIPTS[args.operation](args))
        outcome = terminal.purchase(0, pin=None, sm4=args.sm4, host=host)
    terminal.reader.power_off()
    for command, sw in outcome.script_results:
        print(f"script {command[:2].hex().upper()}: {sw:04X} {meaning(sw)}")
    print(f"outcome: {outcome.summary}")
    if args.operation == "purchase":
        return 0 if outcome.approved else 1
    failed = [sw for _, sw in outcome.script_results if sw != 0x9000]
    if not outcome.script_results:
        return _refused(0x6985)
    return _refused(failed[0]) if failed else 0


def cmd_flow(args) -> int:
    """Run a terminal flow (reader/flows.py) on a card image, printing every exchange, the steps and the result."""
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
    """Usage mistakes are one line, like every other sscard error."""

    def error(self, message):
        print(f"sscard: error: {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sscard", description="Social-security card simulator")
    parser.add_argument("--date", type=_date, help="simulated date YYYY-MM-DD (default: today)")
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
    p.add_argument("hex", nargs="+", metavar="HEX", help="command APDU in hex, one per argument")
    p.set_defaults(func=cmd_apdu)

    p = sub.add_parser("replay", help="replay .apdu traces and compare every response")
    p.add_argument("traces", nargs="+", metavar="TRACE")
    p.add_argument("--state", metavar="CARD.img", help="replay on this image (default: a fresh card per trace)")
    p.add_argument("--reader", metavar="NAME", help="replay on a PC/SC reader, virtual or real")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    p.add_argument("--wire", choices=("t0", "t1"), help="replay at the byte level over T=0 or T=1")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("wire-log", help="send APDUs over the simulated contacts and show every byte, explained")
    p.add_argument("--state", required=True, metavar="CARD.img")
    p.add_argument("--wire", choices=("t0", "t1"),
                   help="T=0 or T=1 (default: the card's own protocol, the first its ATR offers:"
                        " T=0 on the default card)")
    p.add_argument("--pps", metavar="TA1", help="ask for these Fi/Di by PPS (hex, e.g. 96)")
    p.add_argument("--clock", type=float, default=4.0, metavar="MHZ", help="card clock (default 4 MHz)")
    p.add_argument("hex", nargs="+", metavar="HEX")
    p.set_defaults(func=cmd_wire_log)

    p = sub.add_parser("decode", help="explain a trace: command names, files, records, status words, TLV data")
    p.add_argument("trace", metavar="TRACE")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("record", help="run an sscard command and record the card's APDUs as a trace")
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
    q.add_argument("--amount", type=_fen, default=0, metavar="FEN", help="amount in fen (default 0)")
    q = op("pharmacy", "a designated-pharmacy offline purchase (B0 28 / 80 70 / B0 2C / 80 72) from DF04's purse")
    q.add_argument("--pin", type=_pin_arg, default=flows.DEFAULT_INITIAL_PIN, help="the holder's SSSE PIN")
    q.add_argument("--amount", type=_fen, default=1000, metavar="FEN", help="amount in fen (default 1000)")
    op("card-block", "CARD BLOCK 84 16 00 00 with BK: irreversible, every SELECT then answers 6A81")

    fin = sub.add_parser("fin", help="financial application operations (terminal kernel + issuer host, through APDUs)")
    fops = fin.add_subparsers(dest="operation", required=True, metavar="OPERATION")

    def fop(name, help_text):
        q = fops.add_parser(name, help=help_text)
        q.add_argument("--state", required=True, metavar="CARD.img")
        q.add_argument("--keys", metavar="PROFILE", help="profile whose issuer master keys the host holds")
        q.add_argument("--sm4", action="store_true", help="the terminal asks for SM4 (DF69 = 01)")
        q.set_defaults(func=cmd_fin)
        return q

    q = fop("activate", "bank-outlet activation: the issuer sets the PIN and the activation flag by script")
    q.add_argument("--pin", default="123456", help="the holder's new bank PIN (default 123456)")
    q = fop("purchase", "a purchase of AMOUNT yuan, online to the issuer host")
    q.add_argument("amount", type=_amount, metavar="AMOUNT")
    q.add_argument("--pin", help="offline PIN to verify")
    fop("block", "issuer script APPLICATION BLOCK")
    fop("unblock", "issuer script APPLICATION UNBLOCK")
    fop("unblock-pin", "issuer script PIN UNBLOCK (counter only)")
    fop("card-block", "issuer script CARD BLOCK (final)")

    p = sub.add_parser("card-block", help="CARD BLOCK, as 'sscard ssse card-block' (irreversible: SELECT then 6A81)")
    p.add_argument("--state", required=True, metavar="CARD.img")
    p.add_argument("--keys", metavar="PROFILE", help="profile whose master keys the PSAM holds (default: the card's)")
    p.set_defaults(func=cmd_ssse, operation="card-block")

    p = sub.add_parser("flow", help="run a real-world terminal flow on a card image ('sscard flow --list')")
    p.add_argument("name", nargs="?", metavar="NAME", help="the flow (see --list)")
    p.add_argument("--state", metavar="CARD.img")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="a flow parameter (repeat; see --list)")
    p.add_argument("--keys", metavar="PROFILE", help="profile whose keys the PSAM and issuer hold (default: card's)")
    p.add_argument("--list", action="store_true", help="list the flows and their parameters with defaults")
    p.set_defaults(func=cmd_flow)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code
    try:
        return args.func(args)
    except (UsageError, ProfileError, ImageError, ValueError, PsamError, TerminalError, KernelError,
            PcscError, TraceError) as exc:
        print(f"sscard: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
