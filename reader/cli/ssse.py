"""`sscard ssse OPERATION` (and `sscard card-block`): one operation of the social-security
application (LD/T 32 P5 §6), run as a terminal does it, through the PSAM (P9) and APDUs."""

import datetime

from chip import Card
from chip.iso.sw import SW_OK, SW_WARNING_SELECTED_FILE_INVALIDATED
from reader.cli.errors import refused
from reader.cli.session import card_reader
from reader.report import exchange
from reader.sim import SimReader
from reader.terminals import flows
from reader.terminals.psam import Psam
from reader.terminals.ssse import SsseTerminal


def cmd_ssse(args) -> int:
    """Run one SSSE operation through the PSAM and APDUs, printing every exchange."""
    card = Card.open(args.state, date=args.date)
    psam = Psam(SimReader(Card.psam(args.keys or flows.keys_profile(card))))
    identification, _ = flows.issuer_records(card)  # a locked SSSE cannot be read: the back office knows it
    terminal = SsseTerminal(card_reader(SimReader(card)), psam, on_exchange=lambda c, r: print(exchange(c, r)),
                            identification=identification)
    select_sw = terminal.start()
    if select_sw not in (SW_OK, SW_WARNING_SELECTED_FILE_INVALIDATED):  # 6283: a locked SSSE still answers
        return refused(select_sw)
    if args.operation == "pharmacy":
        when = datetime.datetime.combine(card.today, flows.PHARMACY_TIME)
        outcome = terminal.pharmacy_purchase(args.pin, args.amount, when=when)
        terminal.reader.power_off()
        if outcome["sw"] != SW_OK:
            return refused(outcome["sw"])
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
    return 0 if sw == SW_OK else refused(sw)
