"""The commands that send APDUs the user typed: `apdu` (to a card image or a PC/SC reader, each
answer explained), `wire-log` (every byte on the simulated contacts, ISO/IEC 7816-3 T=0/T=1),
and `readers` (the PC/SC readers `apdu --reader` can name)."""

import sys

from chip import Card
from reader.cli.errors import UsageError, link_failure
from reader.cli.session import card_reader, wire_reader
from reader.decode.decoder import Decoder
from reader.pcsc.reader import PcscReader, list_readers
from reader.report import exchange, parse_hex
from reader.sim import SimReader


def _commands(texts: list[str]) -> list[bytes]:
    """The command APDUs of the HEX arguments; a bad one is an InputError naming it."""
    return [parse_hex(text) for text in texts]


def cmd_apdu(args) -> int:
    commands = _commands(args.hex)
    if (args.state is None) == (args.reader is None):
        raise UsageError("give either --state CARD.img (the simulator) or --reader NAME (PC/SC)")
    from reader.link.wire import LinkError

    if args.reader is not None:
        if args.seed is not None:
            raise UsageError("--seed seeds a simulated card's random source: give it with --state, not --reader")
        reader = card_reader(PcscReader(args.reader, get_response=not args.raw))
    elif args.wire:
        reader = card_reader(wire_reader(Card.open(args.state, date=args.date), args.wire))
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
        return link_failure(exc, command)
    reader.power_off()
    return 0


def cmd_wire_log(args) -> int:
    from reader.link.wire import LinkError, explain_log

    commands = _commands(args.hex)
    log: list = []
    reader = wire_reader(Card.open(args.state, date=args.date), args.wire, pps=args.pps, log=log,
                         clock=int(args.clock * 1_000_000))
    try:
        reader.reset()  # InputError: a --pps TA1 whose Fi or Di is RFU (ISO/IEC 7816-3 §8.3)
    except LinkError as exc:  # the ATR or the PPS exchange failed
        for line in explain_log(log, reader.protocol):
            print(line)
        return link_failure(exc, None)
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


def cmd_readers(args) -> int:
    readers = list_readers()
    for name in readers:
        print(name)
    if not readers:
        print("no PC/SC readers (is pcscd running? 'sscard serve' puts a card on vpcd's readers)", file=sys.stderr)
        return 1
    return 0
