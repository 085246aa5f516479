"""`python -m reader.ccid LINK --state card.img [--reader GemPCTwin]`: one card in a serial CCID reader.

The reader's serial port is a pty whose slave LINK names; the reader.conf entry for pcscd is
printed first (give it to `pcscd --config FILE`, or use `python -m reader.pcsc.pcscd run --ccid
LINK[:VARIANT] -- COMMAND`), then the firmware answers until SIGTERM or Ctrl-C. `--profile NAME`
serves a fresh card of that profile, in memory, instead of an image. On the two-slot SEC1210
(`--reader SEC1210`) `--psam IMAGE` puts a PSAM in the SAM slot, slot 1 (pcscd's `... 00 01`).
The cards stay in: `sscard serve --ccid LINK` serves them with a control channel (remove, insert,
switch, faults).
"""

import argparse
import contextlib
import logging
import signal
import sys

from chip import Card
from chip.kernel.image import ImageError
from reader.ccid.firmware import Firmware
from reader.ccid.pinpad import KEYPAD_READERS, Keypad
from reader.ccid.pty import PtyReader, stanza
from reader.ccid.serial import DEFAULT_VARIANT, VARIANTS, variant_of


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reader.ccid", description=__doc__.splitlines()[0])
    p.add_argument("link", metavar="LINK", help="the symlink to make to the pty's slave (the reader's serial port)")
    card = p.add_mutually_exclusive_group(required=True)
    card.add_argument("--state", metavar="IMAGE", help="the card image to serve (sscard personalize makes one)")
    card.add_argument("--profile", metavar="NAME", help="serve a fresh card of this profile, in memory")
    p.add_argument("--reader", default=DEFAULT_VARIANT, choices=sorted(VARIANTS), help="the reader variant")
    p.add_argument("--psam", metavar="IMAGE", help="on the SEC1210: the PSAM image for the SAM slot (slot 1)")
    p.add_argument("--realtime", action="store_true",
                   help="answer at a real card's pace (time on the contacts, time requests while the card works)")
    p.add_argument("--debug", action="store_true", help="log every CCID message to stderr")
    p.add_argument("--keypad", metavar="ENTRIES", default="",
                   help="for tests: the PIN pad's entries, in order, comma-separated (digits, cancel, timeout)")
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    keypad = None
    if args.reader in KEYPAD_READERS:
        try:
            keypad = Keypad(entry for entry in args.keypad.split(",") if entry)
        except ValueError as exc:
            p.error(str(exc))
    elif args.keypad:
        p.error(f"--keypad: the {args.reader} has no keypad")
    if args.psam and variant_of(args.reader).slots < 2:
        p.error(f"--psam: the {args.reader} has one slot (the SEC1210 has a SAM slot)")
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(message)s")
    with contextlib.ExitStack() as cards:
        try:
            card = cards.enter_context(Card.open(args.state) if args.state else Card.from_profile(args.profile))
            others = (cards.enter_context(Card.open(args.psam)),) if args.psam else ()
        except (ImageError, OSError, ValueError) as exc:
            print(f"python -m reader.ccid: {exc}", file=sys.stderr)
            return 1
        return serve(args, Firmware(card, keypad, args.reader, others))


def serve(args, firmware: Firmware) -> int:
    """The firmware on its pty until a signal stops it."""
    with PtyReader(args.link, firmware, args.reader, realtime=args.realtime) as reader:
        print(stanza(reader.link, args.reader), end="", flush=True)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: reader.stop())
        reader.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
