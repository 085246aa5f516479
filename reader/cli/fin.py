"""`sscard fin OPERATION`: a purchase, or an issuer-script operation (activation, APPLICATION
BLOCK/UNBLOCK, PIN UNBLOCK, CARD BLOCK), on the financial application as a terminal kernel and
the issuer host run it (PBOC 3.0 / EMV 4.3 Book 3 §6.5, issuer scripts Book 3 §10.10)."""

import sys

from chip import Card
from chip.iso.ins import APPLICATION_BLOCK, APPLICATION_UNBLOCK, CARD_BLOCK, PIN_CHANGE_UNBLOCK, cla_ins
from chip.iso.sw import SW_OK, meaning
from reader.cli.errors import UsageError, refused
from reader.cli.session import card_reader
from reader.report import exchange
from reader.sim import SimReader
from reader.terminals import flows
from reader.terminals.issuer import IssuerHost
from reader.terminals.payment import AAC, PaymentTerminal, script_name

# the issuer script of each operation but the purchase
FIN_SCRIPTS = {
    "block": lambda args: IssuerHost.command(*cla_ins(APPLICATION_BLOCK)),
    "unblock": lambda args: IssuerHost.command(*cla_ins(APPLICATION_UNBLOCK)),
    "card-block": lambda args: IssuerHost.command(*cla_ins(CARD_BLOCK)),
    "unblock-pin": lambda args: IssuerHost.command(*cla_ins(PIN_CHANGE_UNBLOCK)),
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
        script = FIN_SCRIPTS[args.operation](args)  # InputError: the builder refuses a bad input before any APDU
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
    failed = [(command, sw) for command, sw in outcome.script_results if sw != SW_OK]
    if not failed:
        print(done)
        return 0
    ran = ", ".join(f"{script_name(command)} ({sw:04X})" for command, sw in outcome.script_results)
    not_sent = ", ".join(script_name(command) for command in outcome.scripts_not_sent)
    print(f"{not_done}: the card ran {ran}" + (f"; not sent: {not_sent}" if not_sent else ""))
    return refused(failed[0][1])
