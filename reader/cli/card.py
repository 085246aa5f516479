"""The commands about one card and its image: `personalize`, `info`, `atr`, `demo`."""

import os

from chip import Card
from reader.cli.errors import UsageError
from reader.pcsc.reader import PcscReader
from reader.terminals import demo


def cmd_personalize(args) -> int:
    if os.path.lexists(args.state) and not args.force:
        raise UsageError(f"{args.state} already exists; add --force to replace it with a new card")
    if args.psam:
        Card.psam(args.profile, state=args.state, date=args.date, overwrite=args.force).close()
        print(f"personalised {args.state}: a PSAM (LD/T 32 P9) holding the master keys of profile {args.profile!r}")
        return 0
    card = Card.from_profile(args.profile, state=args.state, date=args.date, overwrite=args.force)
    info = card.applets["ssse"].describe()["records"]
    card.close()
    print(f"personalised {args.state} from profile {card.config.profile!r}: "
          f"card {info['card number']}, holder {info['name']}{info['name extension']}")
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


def cmd_atr(args) -> int:
    """Explain an ATR byte by byte (ISO/IEC 7816-3 §8): a card image's, a PC/SC reader's card's, or one given in hex."""
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


def cmd_demo(args) -> int:
    return demo.run(date=args.date)
