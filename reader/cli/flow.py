"""`sscard flow NAME`: a real-world terminal flow (reader/terminals/flows.py) on a card image."""

from chip import Card
from reader.cli.errors import UsageError
from reader.cli.session import card_reader
from reader.report import exchange
from reader.terminals import flows


def cmd_flow(args) -> int:
    """Run a terminal flow on a card image, printing every exchange, the steps and the result."""
    if args.list:
        for name, function in flows.FLOWS.items():
            print(f"{name:<22} {function.__doc__.strip().splitlines()[0]}")
            params = flows.parameters(name)
            print("  " + (" ".join(f"{key}={value if value != '' else '(none)'}" for key, value in params.items())
                          or "(no parameters)"))
        return 0
    if args.name is None or args.state is None:
        raise UsageError("give a flow NAME and --state CARD.img (or --list)")
    params = flows.parse_params(args.name, args.param or [])  # InputError: an unknown flow, a bad KEY=VALUE
    card = Card.open(args.state, date=args.date)
    # InputError: the flow checks its parameters before its first APDU
    result = flows.run_flow(args.name, card, profile=args.keys, on_exchange=lambda c, r: print(exchange(c, r)),
                            wrap=card_reader, **params)
    for description, outcome in result.steps:
        print(f"- {description}: {outcome}")
    print(result.final_line)
    return 0 if result.ok else 1
