"""The `sscard` command line: the argparse tree, the global options, `main` (parse, run the
command, turn a user's error into one line) and `record` (which parses and runs another sscard
command under a recording)."""

import argparse
import os
import sys

from chip.personalization.profile import shipped_names
from reader.ccid.serial import DEFAULT_VARIANT, VARIANTS
from reader.cli import apdu, argtypes, card, fin, flow, serve, session, ssse, traces
from reader.cli.argtypes import AMOUNT_UNIT
from reader.cli.errors import USER_ERRORS, UsageError
from reader.cli.files import check_output, write_text
from reader.pcsc.serve import DEFAULT_PORT
from reader.terminals import flows
from reader.terminals.payment import MAX_AMOUNT
from reader.terminals.ssse import SSSE_MAX_AMOUNT


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line, like every other sscard error (`sscard: error: ssse register: ...`)."""

    def error(self, message):
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        print(f"sscard: error: {command + ': ' if command else ''}{message}", file=sys.stderr)
        raise SystemExit(2)


GLOBAL_DATE_HELP = "simulated date YYYY-MM-DD (default: today); before or after the command"
SEED_HELP = ("seed the card's random source (GET CHALLENGE and the like), so a run repeats exactly "
             "(sscard record sets one when none is given)")
PSAM_KEYS_HELP = "profile whose master keys the PSAM holds (default: the card's)"


def _global_options(parser: argparse.ArgumentParser) -> None:
    """Accept the global --date after any (sub)command too; absent there, it keeps the value given
    before the command (SUPPRESS: the subparser does not overwrite it with a default)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share one parser
                if not any("--date" in a.option_strings for a in sub._actions):
                    sub.add_argument("--date", type=argtypes.date, default=argparse.SUPPRESS, help=GLOBAL_DATE_HELP)
                _global_options(sub)


def _card_operation(parsers, name: str, help_text: str, keys_help: str, sm4: bool = False, **defaults):
    """A command that runs one operation on a card image as a terminal: --state, --keys (the
    profile of the PSAM or issuer keys), --sm4 for a payment terminal, --seed."""
    q = parsers.add_parser(name, help=help_text)
    q.add_argument("--state", required=True, metavar="CARD.img")
    q.add_argument("--keys", metavar="PROFILE", help=keys_help)
    if sm4:
        q.add_argument("--sm4", action="store_true", help="the terminal asks for SM4 (DF69 = 01)")
    q.add_argument("--seed", type=argtypes.seed, metavar="N", help=SEED_HELP)
    q.set_defaults(**defaults)
    return q


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sscard", description="Social-security card simulator")
    parser.add_argument("--date", type=argtypes.date, help=GLOBAL_DATE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("personalize", help="personalise a new card image from a profile")
    p.add_argument("profile", nargs="?", default="default",
                   help=f"shipped profile ({', '.join(shipped_names())}) or a TOML path (default: default)")
    p.add_argument("--state", required=True, metavar="CARD.img", help="card image to create")
    p.add_argument("--force", action="store_true", help="replace an existing image")
    p.add_argument("--psam", action="store_true",
                   help="a terminal's PSAM (LD/T 32 P9) holding the profile's master keys, not a user card")
    p.set_defaults(func=card.cmd_personalize)

    p = sub.add_parser("apdu", help="send APDUs to a card image or a PC/SC reader and explain the answers")
    p.add_argument("--state", metavar="CARD.img", help="the simulated card in this image")
    p.add_argument("--reader", metavar="NAME", help="a PC/SC reader (see 'sscard readers'), virtual or real")
    p.add_argument("--raw", action="store_true", help="with --reader: show 61xx/6Cxx instead of following them")
    p.add_argument("--no-decode", action="store_true", help="do not explain commands and decode responses")
    p.add_argument("--wire", choices=("t0", "t1"), help="run at the byte level: reader firmware, wire, card over T=0/T=1")
    p.add_argument("--t0", action="store_true", help="T=0 as on the contacts: show 61xx and GET RESPONSE")
    p.add_argument("--seed", type=argtypes.seed, metavar="N", help=SEED_HELP)
    p.add_argument("hex", nargs="+", metavar="HEX", help="command APDU in hex, one per argument")
    p.set_defaults(func=apdu.cmd_apdu)

    p = sub.add_parser("replay", help="replay .apdu traces and compare every response")
    p.add_argument("traces", nargs="+", metavar="TRACE")
    p.add_argument("--state", metavar="CARD.img",
                   help="replay on a copy of this image in memory, each trace from its state; the file is left as "
                        "it is (default: a fresh card per trace, from its directives)")
    p.add_argument("--reader", metavar="NAME", help="replay on a PC/SC reader, virtual or real")
    p.add_argument("--keypad-control", metavar="SOCKET",
                   help="with --reader: send the traces' keypad lines to this control socket of `sscard serve "
                        "--ccid-reader GemPCPinPad` (its PIN pad's keys)")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    p.add_argument("--wire", choices=("t0", "t1"), help="replay at the byte level over T=0 or T=1")
    p.set_defaults(func=traces.cmd_replay)

    p = sub.add_parser("wire-log", help="send APDUs over the simulated contacts and show every byte, explained")
    p.add_argument("--state", required=True, metavar="CARD.img")
    p.add_argument("--wire", choices=("t0", "t1"),
                   help="T=0 or T=1 (default: the card's own protocol, the first its ATR offers:"
                        " T=0 on the default card)")
    p.add_argument("--pps", type=argtypes.pps_byte, metavar="TA1", help="ask for these Fi/Di by PPS (hex, e.g. 96)")
    p.add_argument("--clock", type=argtypes.clock, default=4.0, metavar="MHZ", help="card clock in MHz (default 4)")
    p.add_argument("hex", nargs="+", metavar="HEX")
    p.set_defaults(func=apdu.cmd_wire_log)

    p = sub.add_parser("decode", help="explain a trace: command names, files, records, status words, TLV data")
    p.add_argument("trace", metavar="TRACE")
    p.set_defaults(func=traces.cmd_decode)

    p = sub.add_parser("record", help="run an sscard command and record the card's APDUs as a trace that replays")
    p.add_argument("-o", "--output", required=True, metavar="TRACE")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the sscard command to run")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("scriptor", help="convert between pcsc-tools scriptor scripts and .apdu traces")
    p.add_argument("direction", choices=("import", "export"))
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=traces.cmd_scriptor)

    p = sub.add_parser("atr", help="explain an ATR byte by byte (of an image, a reader's card, or given in hex)")
    p.add_argument("hex", nargs="?", metavar="ATR", help="an ATR in hex")
    p.add_argument("--state", metavar="CARD.img")
    p.add_argument("--reader", metavar="NAME")
    p.set_defaults(func=card.cmd_atr)

    p = sub.add_parser("readers", help="list the PC/SC readers")
    p.set_defaults(func=apdu.cmd_readers)

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
    p.add_argument("--web", metavar="[HOST:]PORT",
                   help="also serve the bench view, a live page per card: state, decoded APDUs, controls "
                        "(HOST default 127.0.0.1; the URL printed carries the token its controls need)")
    p.add_argument("--ccid", metavar="LINK",
                   help="put the first card in a serial CCID reader instead of on vpcd: a pty whose slave the "
                        "symlink LINK names, for pcscd and libccidtwin (the reader.conf entry is printed)")
    p.add_argument("--ccid-reader", default=DEFAULT_VARIANT, choices=sorted(VARIANTS), metavar="VARIANT",
                   help=f"the serial reader variant of the --ccid reader: {', '.join(sorted(VARIANTS))} (default "
                        f"{DEFAULT_VARIANT}; GemPCPinPad has a PIN pad, whose keys the control line keypad ENTRY "
                        "presses; SEC1210 has a card slot and a SAM slot)")
    p.add_argument("--psam", metavar="PSAM.img",
                   help="with --ccid-reader SEC1210: the PSAM image for its SAM slot, served as card 1 (sscard "
                        "personalize --psam makes one; without it the SAM slot is empty)")
    p.add_argument("--realtime", action="store_true",
                   help="the --ccid reader answers at a real card's pace: each exchange's time on the contacts at "
                        "the Fi/Di, clock and guard time in force, time-request bytes while the card works")
    p.set_defaults(func=serve.cmd_serve)

    p = sub.add_parser("info", help="show a card image: holder fields, PIN tries, application states")
    p.add_argument("--state", required=True, metavar="CARD.img")
    p.set_defaults(func=card.cmd_info)

    p = sub.add_parser("demo", help="run a short scripted session on a fresh default card")
    p.set_defaults(func=card.cmd_demo)

    p = sub.add_parser("ssse", help="social-security application operations (through the PSAM and APDUs)")
    ops = p.add_subparsers(dest="operation", required=True, metavar="OPERATION")

    def op(name, help_text):
        return _card_operation(ops, name, help_text, PSAM_KEYS_HELP, func=ssse.cmd_ssse)

    q = op("change-pin", "CHANGE PIN 80 5E 01 00 (activates an issued card when NEW is not the initial PIN)")
    q.add_argument("old", type=argtypes.pin)
    q.add_argument("new", type=argtypes.pin)
    q = op("verify", "VERIFY the SSSE PIN")
    q.add_argument("pin", type=argtypes.pin)
    q = op("lock", "APPLICATION BLOCK with BK: loss lock 84 1E 00 00, or --permanent 84 1E 00 01")
    q.add_argument("--permanent", action="store_true")
    op("unlock", "APPLICATION UNBLOCK 84 18 00 00 with BK (an HR-designated terminal)")
    op("unblock-pin", "PIN UNBLOCK 84 24 00 00 with PUK: restore the PIN try counter")
    q = op("reset-pin", "PIN reset 84 24 00 01 with PUK: set a new PIN, enciphered (service window)")
    q.add_argument("new", type=argtypes.pin)
    q = op("register", "a hospital settlement in DF04 EF06 items 92/93 (PIN, RK1DF04 read, UK2DF04 write)")
    q.add_argument("--pin", type=argtypes.pin, default=flows.DEFAULT_INITIAL_PIN, help="the holder's SSSE PIN")
    q.add_argument("--amount", type=argtypes.ssse_amount, default=0, metavar="FEN",
                   help=f"amount in {AMOUNT_UNIT}, 0 to {SSSE_MAX_AMOUNT} (default 0)")
    q = op("pharmacy", "a designated-pharmacy offline purchase (B0 28 / 80 70 / B0 2C / 80 72) from DF04's purse")
    q.add_argument("--pin", type=argtypes.pin, default=flows.DEFAULT_INITIAL_PIN, help="the holder's SSSE PIN")
    q.add_argument("--amount", type=argtypes.ssse_amount, default=1000, metavar="FEN",
                   help=f"amount in {AMOUNT_UNIT}, 0 to {SSSE_MAX_AMOUNT} (default 1000)")
    op("card-block", "CARD BLOCK 84 16 00 00 with BK: irreversible, every SELECT then answers 6A81")

    p = sub.add_parser("fin", help="financial application operations (terminal kernel + issuer host, through APDUs)")
    fops = p.add_subparsers(dest="operation", required=True, metavar="OPERATION")

    def fop(name, help_text):
        return _card_operation(fops, name, help_text, "profile whose issuer master keys the host holds", sm4=True,
                               func=fin.cmd_fin)

    q = fop("activate", "bank-outlet activation: the issuer sets the PIN and the activation flag by script")
    q.add_argument("--pin", type=argtypes.pin, default="123456",
                   help="the holder's new bank PIN, 4 to 12 digits (default 123456)")
    q = fop("purchase", f"a purchase of FEN fen (amounts are in {AMOUNT_UNIT}), online to the issuer host")
    q.add_argument("amount", type=argtypes.fin_amount, metavar="FEN", help=f"the amount in {AMOUNT_UNIT}, 0 to {MAX_AMOUNT}")
    q.add_argument("--pin", type=argtypes.pin, help="offline PIN to verify, 4 to 12 digits")
    fop("block", "issuer script APPLICATION BLOCK")
    fop("unblock", "issuer script APPLICATION UNBLOCK")
    fop("unblock-pin", "issuer script PIN UNBLOCK (counter only)")
    fop("card-block", "issuer script CARD BLOCK (final)")

    _card_operation(sub, "card-block", "CARD BLOCK, as 'sscard ssse card-block' (irreversible: SELECT then 6A81)",
                    PSAM_KEYS_HELP, func=ssse.cmd_ssse, operation="card-block")

    p = sub.add_parser("flow", help="run a real-world terminal flow on a card image ('sscard flow --list')")
    p.add_argument("name", nargs="?", metavar="NAME", help="the flow (see --list)")
    p.add_argument("--state", metavar="CARD.img")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="a flow parameter (repeat; see --list)")
    p.add_argument("--keys", metavar="PROFILE", help="profile whose keys the PSAM and issuer hold (default: card's)")
    p.add_argument("--list", action="store_true", help="list the flows and their parameters with defaults")
    p.add_argument("--seed", type=argtypes.seed, metavar="N", help=SEED_HELP)
    p.set_defaults(func=flow.cmd_flow)
    _global_options(parser)
    return parser


def cmd_record(args) -> int:
    """Run an sscard command that drives a card and write its APDUs as a trace that replays: the
    directives of the starting card (@profile, @date, @issued, @random with the seed set on the card,
    @protocol, and @snapshot when it is not a fresh personalisation). Nothing recorded is an error."""
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
    check_output(args.output, "trace")
    with session.recording(command) as recording:
        code = main(command)
    if not recording.exchanges:
        if code:
            return code  # the command failed before its first APDU and said why
        raise UsageError(f"nothing recorded: '{' '.join(command)}' sent no APDU; {args.output} not written")
    write_text(args.output, recording.out.getvalue(), "trace")
    return code


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code
    session.use_seed(getattr(args, "seed", None))  # card_reader seeds the card with it
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"sscard: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")
        return 0
