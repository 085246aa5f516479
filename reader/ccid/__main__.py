"""`python -m reader.ccid LINK --state card.img [--reader GemPCTwin]`: one card in a serial CCID reader.

The reader's serial port is a pty whose slave LINK names; the reader.conf entry for pcscd is
printed first (give it to `pcscd --config FILE`, or use `python -m reader.pcsc.pcscd run --ccid
LINK -- COMMAND`), then the firmware answers until SIGTERM or Ctrl-C. `--profile NAME` serves a
fresh card of that profile, in memory, instead of an image.
"""

import argparse
import logging
import signal
import sys

from chip import Card
from chip.kernel.image import ImageError
from reader.ccid.firmware import Firmware
from reader.ccid.pty import PtyReader, stanza
from reader.ccid.serial import DEFAULT_VARIANT, ECHO


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reader.ccid", description=__doc__.splitlines()[0])
    p.add_argument("link", metavar="LINK", help="the symlink to make to the pty's slave (the reader's serial port)")
    card = p.add_mutually_exclusive_group(required=True)
    card.add_argument("--state", metavar="IMAGE", help="the card image to serve (sscard personalize makes one)")
    card.add_argument("--profile", metavar="NAME", help="serve a fresh card of this profile, in memory")
    p.add_argument("--reader", default=DEFAULT_VARIANT, choices=sorted(ECHO), help="the GemPC variant")
    p.add_argument("--debug", action="store_true", help="log every CCID message to stderr")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(message)s")
    try:
        card = Card.open(args.state) if args.state else Card.from_profile(args.profile)
    except (ImageError, OSError, ValueError) as exc:
        print(f"python -m reader.ccid: {exc}", file=sys.stderr)
        return 1
    with card, PtyReader(args.link, Firmware(card), args.reader) as reader:
        print(stanza(reader.link, args.reader), end="", flush=True)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: reader.stop())
        reader.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
