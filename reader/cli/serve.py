"""`sscard serve`: card images on vpcd, so PC/SC applications see each in a reader of their own
(with --ccid, the first in the serial CCID reader that pcscd drives with libccidtwin instead; with
--psam, a PSAM in that reader's SAM slot)."""

from chip import Card
from chip.fleet import image_names
from reader.ccid.serial import variant_of
from reader.cli.errors import UsageError
from reader.cli.files import check_output
from reader.pcsc.serve import serve
from reader.traces.replay import TraceWriter


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


def check_psam(args) -> None:
    """--psam goes into the SAM slot of a --ccid reader that has one (the SEC1210's slot 1)."""
    if not args.psam:
        return
    if not args.ccid:
        raise UsageError("--psam puts a PSAM in the SAM slot of the --ccid reader: give --ccid LINK "
                         "--ccid-reader SEC1210")
    if variant_of(args.ccid_reader).slots < 2:
        raise UsageError(f"--psam: the {args.ccid_reader} has one slot; the SEC1210 has a SAM slot "
                         "(--ccid-reader SEC1210)")


def cmd_serve(args) -> int:
    images = serve_images(args)
    check_psam(args)
    for image in images + ([args.psam] if args.psam else []):
        Card.open(image, read_only=True)  # a bad or busy image is a one-line error before anything starts
    web = None
    if args.web:
        from reader.web.bench import Bench, parse_address  # the web stack loads only for --web

        web = Bench(*parse_address(args.web))  # InputError: not [HOST:]PORT
    on_apdu = None
    if args.realtime and not args.ccid:
        raise UsageError("--realtime paces the --ccid reader's answers: give --ccid LINK (vpcd has no wire)")
    if args.record and args.ccid:  # the driver runs the protocol there: no APDUs to record, only TPDUs
        raise UsageError("--record records the cards on vpcd; it does not combine with --ccid")
    if args.record:
        check_output(args.record, "trace")
    record = open(args.record, "w", encoding="utf-8") if args.record else None
    if record is not None:
        writer = TraceWriter(record, header=[f"every APDU the served card(s) answered: {', '.join(images)}"])
        on_apdu = lambda slot, apdu, response, seconds: writer.exchange(apdu, response, seconds)  # noqa: E731
    try:
        # InputError: a --port outside 1-65535, a --control socket or a --web address it cannot listen on
        return serve(images, list(args.port or []), host=args.host, control=args.control,
                     protocol=0 if args.t0 else 1 if args.t1 else None,  # None: each card's own
                     quickack=not args.no_quickack, date=args.date, use_stdin=not args.no_stdin,
                     on_apdu=on_apdu, ccid=args.ccid, ccid_variant=args.ccid_reader, psam=args.psam, web=web,
                     realtime=args.realtime)
    finally:
        if record is not None:
            record.close()
