"""The medical purse of DF04: its B0 commands and their answers, field by field (LD/T 32 P5 §7).

Each command's data and answer are untagged fixed layouts (P5 §7 tables 50-78,
docs/card/commands.md); a handler names the command from `chip.iso.ins`, shows its fields
and leaves the answer's layout for the response. The transaction types come from
`chip.apps.purse`.
"""

from chip.apps.purse import TYPES as PURSE_TYPES
from reader.decode.context import command_name
from reader.decode.fields import AMOUNTS, algorithm_id, cn_time, command, fen, uint
from reader.decode.values import digits


def _payment_year(value: bytes) -> str | None:
    d = digits(value)
    if d is None:
        return None
    return "none yet" if int(d) == 0 else d


def _mmdd(value: bytes) -> str | None:
    d = digits(value)
    return f"month {d[:2]}, day {d[2:]}" if d is not None and len(d) == 4 else None


# (request, answer) layouts of each command (P5 §7 tables 50-78).
_KEY_INDEX = ("key index", 1, None)
_TERMINAL = ("terminal number", 6, None)
_BALANCE = ("personal account balance", 4, fen)
_VERSION_ALGORITHM = (("key version", 1, None), ("algorithm", 1, algorithm_id))
INIT_LOAD = ((_KEY_INDEX, ("amount", 4, fen), _TERMINAL),
             (_BALANCE, ("load counter", 2, uint)) + _VERSION_ALGORITHM
             + (("pseudo-random", 4, None), ("MAC1", 4, None)))
INIT_PURCHASE = ((_KEY_INDEX, *AMOUNTS, _TERMINAL),
                 (_BALANCE, ("annual self-pay total", 4, fen), ("annual pooled-fund total", 4, fen),
                  ("payment year", 2, _payment_year), ("purchase counter", 2, uint)) + _VERSION_ALGORITHM
                 + (("pseudo-random", 4, None),))
_INITIALIZE = {0x00: INIT_LOAD, 0x01: INIT_PURCHASE}  # by P1
CREDIT = ((("host time", 7, cn_time), ("MAC2", 4, None)), (("TAC", 4, None),))
DEBIT = ((("terminal transaction number", 4, uint), ("terminal time", 7, cn_time), ("MAC1", 4, None)),
         (("TAC", 4, None), ("MAC2", 4, None)))
BALANCES = {  # GET BALANCE P2
    0x01: ("personal account (CIA)", (_BALANCE,)),
    0x02: ("annual self-pay total (SPIP)", (("annual self-pay total", 4, fen), ("payment year", 2, _payment_year))),
    0x03: ("annual pooled-fund total (SPFP)",
           (("annual pooled-fund total", 4, fen), ("payment year", 2, _payment_year))),
}
TRANSACTION_PROOF = ((("transaction sequence number", 2, uint),), (("MAC", 4, None), ("TAC", 4, None)))
STARTING_DAY = (("starting day", 2, _mmdd),)


def initialize(decoder, cmd):
    """INITIALIZE `B0 28`: P1 00 for load (P5 §7.5), 01 for purchase (§7.6)."""
    layouts = _INITIALIZE.get(cmd.p1)
    if layouts is not None:
        title, (request, answer) = command_name(cmd, by_p1=True), layouts
    else:
        title, request, answer = f"{command_name(cmd)} with P1 {cmd.p1:02X} (00 load, 01 purchase)", None, None
    if cmd.p2 != 0x01:
        title += f" (P2 {cmd.p2:02X}, P5 gives 01)"
    return command(title, cmd.data, request, answer)


def credit_for_load(decoder, cmd):
    return command(command_name(cmd), cmd.data, *CREDIT)


def debit_for_purchase(decoder, cmd):
    return command(command_name(cmd), cmd.data, *DEBIT)


def get_balance(decoder, cmd):
    what, answer = BALANCES.get(cmd.p2, (f"with P2 {cmd.p2:02X} (01 CIA, 02 SPIP, 03 SPFP)", None))
    return command(f"{command_name(cmd)} {what}", cmd.data, None, answer)


def get_transaction_proof(decoder, cmd):
    kind = PURSE_TYPES.get(cmd.p2)
    what = f"of the last {kind} (type {cmd.p2:02X})" if kind else f"with P2 {cmd.p2:02X} (not a transaction type)"
    return command(f"{command_name(cmd)} {what}", cmd.data, *TRANSACTION_PROOF)


def starting_day(decoder, cmd):
    """`B0 56`: P1 01 GET STARTING DAY (P5 §7.8), 00 UPDATE STARTING DAY (§7.7)."""
    if cmd.p1 == 0x01:
        return command(command_name(cmd, by_p1=True), cmd.data, None, STARTING_DAY)
    if cmd.p1 == 0x00:
        # P5 §7.7 table 73 gives the day alone; the card asks for DSK authentication as a MAC4 after it
        request = STARTING_DAY + ((("MAC4", 4, None),) if len(cmd.data) > 2 else ())
        return command(command_name(cmd, by_p1=True), cmd.data, request, None)
    return command(f"STARTING DAY with P1 {cmd.p1:02X} (00 update, 01 get)", cmd.data, None, None)
