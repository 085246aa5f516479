"""The `sscard` command.

User mistakes (bad profile, missing image, bad hex) end with one line on
stderr and a non-zero exit status, never a traceback.
"""

import argparse
import datetime
import os
import sys

from chip import Card, ImageError, ProfileError
from chip.profile import shipped_names

from . import demo
from .report import exchange, parse_hex
from .sim import SimReader


class UsageError(Exception):
    """A mistake in what the user asked for; printed as one line."""


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
    card = Card.open(args.state, date=args.date)
    reader = SimReader(card, protocol="T=0" if args.t0 else "T=1")
    print(f"ATR {reader.reset().hex(' ').upper()}")
    for command in commands:
        print(exchange(command, reader.transmit(command)))
    reader.power_off()
    return 0


def cmd_info(args) -> int:
    card = Card.open(args.state, date=args.date)
    print(f"card image   {args.state}")
    print(f"profile      {card.config.profile}")
    print(f"ATR          {card.atr.hex(' ').upper()}")
    for name, applet in card.applets.items():
        described = applet.describe()
        print(f"\n[{name}]")
        for key, value in described.items():
            if key != "records":
                print(f"  {key:<16} {value}")
        for key, value in described.get("records", {}).items():
            print(f"  {key:<28} {value}")
    return 0


def cmd_demo(args) -> int:
    return demo.run(date=args.date)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sscard", description="Social-security card simulator")
    parser.add_argument("--date", type=_date, help="simulated date YYYY-MM-DD (default: today)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("personalize", help="personalise a new card image from a profile")
    p.add_argument("profile", nargs="?", default="default",
                   help=f"shipped profile ({', '.join(shipped_names())}) or a TOML path (default: default)")
    p.add_argument("--state", required=True, metavar="CARD.img", help="card image to create")
    p.add_argument("--force", action="store_true", help="replace an existing image")
    p.set_defaults(func=cmd_personalize)

    p = sub.add_parser("apdu", help="send APDUs to a card image and explain the answers")
    p.add_argument("--state", required=True, metavar="CARD.img")
    p.add_argument("--t0", action="store_true", help="T=0 behaviour: 61xx and GET RESPONSE")
    p.add_argument("hex", nargs="+", metavar="HEX", help="command APDU in hex, one per argument")
    p.set_defaults(func=cmd_apdu)

    p = sub.add_parser("info", help="show a card image: holder fields, PIN tries, application states")
    p.add_argument("--state", required=True, metavar="CARD.img")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="run a short scripted session on a fresh default card")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ProfileError, ImageError, ValueError) as exc:
        print(f"sscard: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
