"""Real-world terminal flows: what a bank outlet, an agent's counter, a hospital, a
pharmacy, a city-services app, an HR-designated terminal and a service window do
with the card, in the order LD/T 32 part 7 gives the steps (docs/card/commands.md §5,
terminal sequences: P7 §5 card recognition, §6 query, §7 operator update, §9 change PIN, §12
medical purchase, §13 maintenance) and the project's extensions where the
standard is silent (docs/card/lifecycle.md: activation, the 300-day deadline, the loss lock).

Each flow is a plain function taking `Reader`s (the card's reader `reader`, a
PSAM reader `psam` where keys are needed) and an `IssuerHost` `host` where the
bank takes part, plus keyword parameters with defaults. It returns a
`FlowResult`: the steps it took, each with the SW or the outcome it got, and
whether it succeeded. Every step goes through APDUs (`SsseTerminal`,
`PaymentTerminal`, `Psam`); nothing edits card state. A flow that cannot go
on (a refused command, an ID that does not match, missing documents) ends
with `ok=False` and says why; a parameter that cannot be used at all (a PIN
that is not 4-12 digits, an unknown method, a parameter the standard's flow
no longer has) is an `InputError` before any APDU.

`run_flow(name, card, ...)` sets up the readers (the card, a PSAM from the
card's profile), the issuer host and the issuer's records, and runs one flow
of `FLOWS` by its CLI name.
"""

import datetime
import inspect
from dataclasses import dataclass, field

from chip import Card
from chip.apps import financial
from chip.apps.ssse import ACTIVATION_TAG
from chip.apps.ssse_files import DETAIL, DF04_EF08, ITEMS
from chip.iso.apdu import build
from chip.iso.ins import (
    APPLICATION_BLOCK,
    APPLICATION_UNBLOCK,
    CARD_BLOCK,
    GET_DATA,
    NAMES,
    PIN_CHANGE_UNBLOCK,
    PUT_DATA_SCRIPT,
    READ_RECORD,
    VERIFY,
    cla_ins,
    code,
)
from chip.iso.sw import (
    SW_APPLICATION_PERMANENTLY_BLOCKED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_OK,
    SW_WARNING_SELECTED_FILE_INVALIDATED,
    meaning,
    sw_of,
)
from chip.personalization import idnumber
from chip.personalization.profile import shipped_names
from reader.errors import InputError
from reader.sim import SimReader
from reader.terminals.issuer import IssuerHost
from reader.terminals.payment import KernelError, PaymentTerminal, find, script_name
from reader.terminals.psam import Psam, PsamError
from reader.terminals.ssse import SSSE_MAX_AMOUNT, SsseTerminal, TerminalError

DEFAULT_ID_NUMBER = "110101199003071233"  # the default profile's holder
DEFAULT_INITIAL_PIN = "123456"  # the default profile's initial SSSE PIN (docs/card/lifecycle.md §1)
DEFAULT_SSSE_PIN = "246810"  # the holder's new SSSE PIN (anything but the initial PIN)
DEFAULT_BANK_PIN = "135790"  # the holder's new bank PIN
PHARMACY_TIME = datetime.time(10, 0)  # a pharmacy purchase happens at 10:00 on the card's date
# A flow's step for each issuer script command, by its code (the PIN's script changes the PIN).
SCRIPT_STEPS = {PIN_CHANGE_UNBLOCK: "PIN CHANGE"} | {
    command: NAMES[command] for command in (PUT_DATA_SCRIPT, APPLICATION_BLOCK, APPLICATION_UNBLOCK, CARD_BLOCK)}
ID_ITEM = 0x08  # EF06 item 08: the citizen ID number (V2 table 9)
ID_RECORD_LENGTH = 2 + ITEMS[ID_ITEM].length  # the whole record: tag, length, value
# Parameters run_flow supplies (readers, host, the issuer's records, the simulated date): not user parameters.
SUPPLIED = ("reader", "psam", "host", "on_exchange", "date", "identification", "pan")
# Parameters the flows had before they followed LD/T 32, and why they are gone (one-line InputErrors).
REMOVED = {
    "hospital-activation": {
        "institution": "LD/T 32 has no hospital visit record; the hospital settles in DF04 EF06 items 92/93",
        "kind": "LD/T 32 has no registration kinds; the hospital settles in DF04 EF06 items 92/93",
    },
    "pharmacy-activation": {
        "pharmacy": "the pharmacy is named by its PSAM's terminal number (P9 EF 0016), not a parameter",
        "items": "LD/T 32's purchase (P7 §12) has no item count; give amount (and self_pay, fund) in fen",
    },
}
REMOVED_VALUES = {
    ("pin-reset", "method", "reload"): "RELOAD PIN is not in LD/T 32: use method=reset (PIN reset 84 24 00 01, "
                                       "P5 §6.8) or method=unblock",
}


@dataclass
class FlowResult:
    name: str
    ok: bool
    steps: list[tuple[str, str]] = field(default_factory=list)  # (description, SW as 4 hex digits or outcome text)
    message: str = ""

    @property
    def final_line(self) -> str:
        return f"flow {self.name}: ok" if self.ok else f"flow {self.name}: refused: {self.message}"

    def results(self, description: str) -> list[str]:
        """What the steps with this description got, in order (for tests and reports)."""
        return [text for step, text in self.steps if step == description]


class Refused(Exception):
    """The flow stops here (the message says why)."""


class _Flow:
    """Records the steps; `with` turns a refusal (or a terminal that cannot go on) into ok=False."""

    def __init__(self, name: str):
        self.result = FlowResult(name, False)

    def step(self, description: str, outcome) -> None:
        self.result.steps.append((description, f"{outcome:04X}" if isinstance(outcome, int) else str(outcome)))

    def expect(self, description: str, sw: int, *accepted: int) -> int:
        """Record the step; refuse unless `sw` is one of `accepted` (default 9000)."""
        self.step(description, sw)
        if sw not in (accepted or (SW_OK,)):
            raise Refused(f"{description} answered {sw:04X} ({meaning(sw)})")
        return sw

    def done(self, message: str) -> None:
        self.result.ok, self.result.message = True, message

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if isinstance(error, (Refused, TerminalError, PsamError, KernelError)):
            self.result.ok, self.result.message = False, str(error)
            return True
        return False


# -- parameter checks (InputError before any APDU) -------------------------------------------
def _pin(name: str, pin: str) -> str:
    """A PIN the holder can type: 4 to 12 digits (the PIN pad, P8 §6.2.4)."""
    if not (isinstance(pin, str) and pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
        raise InputError(f"{name} must be 4 to 12 digits, not {pin!r}")
    return pin


def _choice(name: str, value: str, choices: tuple) -> str:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}")
    return value


def _fen(name: str, value: int) -> int:
    if not (isinstance(value, int) and 0 <= value <= SSSE_MAX_AMOUNT):
        raise InputError(f"{name} must be 0 to {SSSE_MAX_AMOUNT} fen, not {value!r}")
    return value


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d} yuan"


def check_removed(name: str, params) -> None:
    """A parameter (or value) the flow had before it followed LD/T 32: a one-line InputError."""
    for key in params:
        why = REMOVED.get(name, {}).get(key)
        if why is not None:
            raise InputError(f"flow {name} has no parameter {key} any more: {why}")
    if isinstance(params, dict):
        for (flow, key, value), why in REMOVED_VALUES.items():
            if flow == name and params.get(key) == value:
                raise InputError(f"flow {name}: {key}={value} is gone: {why}")


# -- shared steps ------------------------------------------------------------------------------
def _start_ssse(flow: _Flow, ssse: SsseTerminal, locked_ok: bool = False) -> int:
    """Card recognition (P7 §5.1-§5.3): reset, SELECT the SSSE, the algorithm, EF05 item 01."""
    sw = ssse.start()
    if sw == SW_WARNING_SELECTED_FILE_INVALIDATED and not locked_ok:
        flow.step("SELECT SSSE", sw)
        raise Refused("the SSSE application is locked (SELECT answered 6283): unlock it first")
    if sw == SW_APPLICATION_PERMANENTLY_BLOCKED:
        flow.step("SELECT SSSE", sw)
        raise Refused("the SSSE application is permanently blocked (SELECT answered 9303)")
    if locked_ok:
        return flow.expect("SELECT SSSE", sw, SW_OK, SW_WARNING_SELECTED_FILE_INVALIDATED)
    return flow.expect("SELECT SSSE", sw)


def _id_check(flow: _Flow, ssse: SsseTerminal, id_number: str, via: str, pin: str = "") -> None:
    """Compare the presented citizen ID number with EF06 item 08 (P7 §6: query application
    information). EF06 of a 3.00 card is read after external authentication with RKSSSE
    (P7 §6.2-§6.6, the PSAM computing the authentication data); `via="pin"` has the holder
    VERIFY the SSSE PIN first (P7 §5.6-§5.8), then the same authentication and read."""
    problem = idnumber.problem(id_number.upper())
    if problem is not None:
        flow.step("ID check", "invalid ID number")
        raise Refused(f"the presented ID number {id_number} is not valid: {problem}")
    if via == "pin":
        flow.expect("VERIFY SSSE PIN (the holder types it)", ssse.verify(pin))
    flow.expect("EXTERNAL AUTHENTICATE (PSAM, to read the holder's ID)", ssse.external_authenticate())
    # READ RECORD of EF06 by SFI 6, first record with identifier 08 (P5 §6.10; P2 = SFI << 3 | 000)
    response = ssse.send(build(*cla_ins(READ_RECORD), ID_ITEM, 6 << 3, le=ID_RECORD_LENGTH))
    flow.expect("READ RECORD EF06 item 08 (ID number)", sw_of(response))
    on_card = response[2:-2].rstrip(b"\x00").decode("ascii", "replace")
    if on_card.upper() != id_number.upper():
        flow.step("ID check", "mismatch")
        raise Refused(f"the presented ID number {id_number} is not the card holder's (EF06 item 08)")
    flow.step("ID check", "match")


def _activation_state(flow: _Flow, ssse: SsseTerminal) -> int | None:
    """GET DATA DF7E in the SSSE (docs/card/lifecycle.md §1): 1 active, 0 issued; None when the card does not answer it."""
    response = ssse.send(build(*cla_ins(GET_DATA), ACTIVATION_TAG >> 8, ACTIVATION_TAG & 0xFF, le=256))
    ok = sw_of(response) == SW_OK and response[:3] == ACTIVATION_TAG.to_bytes(2, "big") + b"\x01"
    flow.step("GET DATA DF7E (SSSE activation state)", f"{response[3]:02X}" if ok else sw_of(response))
    return response[3] if ok else None


def _genuine(flow: _Flow, ssse: SsseTerminal) -> None:
    """P7 §5.4: INTERNAL AUTHENTICATE with two terminal randoms, the PSAM checking the answer (IRK)."""
    genuine = ssse.internal_authenticate()
    flow.step("INTERNAL AUTHENTICATE (is the card genuine?)", "genuine" if genuine else "not genuine")
    if not genuine:
        raise Refused("the card failed internal authentication (not a genuine card of this issuer)")


def _read_pan(flow: _Flow, pos: PaymentTerminal) -> str:
    """The PAN from the card's application records (READ RECORD needs no GPO)."""
    _, select_sw = pos.select_application()
    flow.step("SELECT financial application (PSE, AID)", select_sw)
    for number in (1, 2, 3):
        response = pos.send(build(*cla_ins(READ_RECORD), number, (1 << 3) | 4, le=256))
        pan = find(response[:-2], 0x5A) if sw_of(response) == SW_OK else None
        if pan is not None:
            pan = pan.hex().upper().rstrip("F")
            flow.step("READ RECORD financial application (PAN)", pan)
            return pan
    raise Refused("the financial application's records carry no PAN (5A)")


def _activation_flag(flow: _Flow, pos: PaymentTerminal) -> int | None:
    """GET DATA DF7F: 1 activated, 0 not; None when the card does not answer it."""
    pos.select_application()
    response = pos.send(build(*cla_ins(GET_DATA), financial.ACTIVATION_TAG >> 8, financial.ACTIVATION_TAG & 0xFF, le=256))
    value = find(response[:-2], financial.ACTIVATION_TAG) if sw_of(response) == SW_OK else None
    flow.step("GET DATA DF7F (activation flag)", value.hex().upper() if value else sw_of(response))
    return value[0] if value else None


def _script_step(command: bytes) -> str:
    kind = code(command[0], command[1]) if len(command) >= 2 else None
    return f"issuer script {SCRIPT_STEPS[kind] if kind in SCRIPT_STEPS else command[:2].hex().upper()}"


def _deliver_activation(flow: _Flow, pos: PaymentTerminal, host: IssuerHost, amount: int = 0) -> None:
    """A transaction of `amount` fen carries the queued activation script (PIN CHANGE, then PUT DATA
    DF7F 01: the kernel sends the flag only once the card took the PIN); then GET DATA DF7F must give 01.
    A card not yet activated declines that transaction (AAC), as expected: the scripts follow the AAC."""
    outcome = pos.purchase(amount, host=host)
    summary = outcome.summary
    if outcome.first_cid == financial.AAC and outcome.script_results:
        summary += " (expected before activation: the issuer's scripts ran after this AAC)"
    flow.step(f"transaction of {amount / 100:.2f} yuan, online to the issuer host", summary)
    for command, sw in outcome.script_results:
        flow.step(_script_step(command), sw)
    for command in outcome.scripts_not_sent:
        flow.step(_script_step(command), "not sent (an earlier command of its script failed)")
    if not outcome.script_results:
        raise Refused("the transaction delivered no issuer scripts (the host did not accept the cryptogram)")
    failed = [(command, sw) for command, sw in outcome.script_results if sw != SW_OK]
    if failed:
        command, sw = failed[0]
        ran = ", ".join(f"{script_name(c)} {s:04X}" for c, s in outcome.script_results)
        not_sent = ", ".join(script_name(c) for c in outcome.scripts_not_sent)
        raise Refused(f"an issuer script answered {sw:04X} ({meaning(sw)}): the card ran {ran}"
                      + (f"; not sent: {not_sent}" if not_sent else "") + "; the card is not activated")
    if _activation_flag(flow, pos) != 1:
        raise Refused("the financial application is not activated (GET DATA DF7F is not 01)")


def _bank_outlet_activation(flow: _Flow, pos: PaymentTerminal, host: IssuerHost, bank_pin: str) -> None:
    """The bank counter: the card's account, the activation scripts, one transaction."""
    pan = _read_pan(flow, pos)
    host.queue(pan, IssuerHost.activation(bank_pin))
    flow.step(f"issuer host: PIN CHANGE + PUT DATA DF7F 01 queued for {pan}", "queued")
    _deliver_activation(flow, pos, host)


def _change_initial_pin(flow: _Flow, ssse: SsseTerminal, old_pin: str, new_pin: str) -> None:
    """P7 §9 (change PIN): CHANGE PIN `80 5E 01 00` away from the initial PIN activates the SSSE (docs/card/lifecycle.md §1)."""
    flow.expect("CHANGE PIN (initial SSSE PIN -> holder's PIN: activates the SSSE)", ssse.change_pin(old_pin, new_pin))


def _outlet(flow: _Flow, reader, psam, host, id_number, ssse_old_pin, ssse_new_pin, bank_pin, id_check, date,
            on_exchange) -> None:
    ssse = SsseTerminal(reader, Psam(psam), on_exchange)
    _start_ssse(flow, ssse)
    _id_check(flow, ssse, id_number, id_check, ssse_old_pin)
    _change_initial_pin(flow, ssse, ssse_old_pin, ssse_new_pin)
    _bank_outlet_activation(flow, PaymentTerminal(reader, on_exchange, date=date), host, bank_pin)
    flow.done("SSSE activated with the holder's PIN; financial application activated: bank PIN set, DF7F 01")


def _outlet_parameters(ssse_old_pin, ssse_new_pin, bank_pin, id_check) -> None:
    _pin("ssse_old_pin", ssse_old_pin)
    _pin("ssse_new_pin", ssse_new_pin)
    _pin("bank_pin", bank_pin)
    _choice("id_check", id_check, ("auth", "pin"))
    if ssse_new_pin == ssse_old_pin:
        raise InputError("ssse_new_pin must differ from ssse_old_pin (keeping the initial PIN does not activate)")


# -- the flows ---------------------------------------------------------------------------------
def bank_activation(reader, psam, host, *, id_number: str = DEFAULT_ID_NUMBER, ssse_old_pin: str = DEFAULT_INITIAL_PIN,
                    ssse_new_pin: str = DEFAULT_SSSE_PIN, bank_pin: str = DEFAULT_BANK_PIN, id_check: str = "auth",
                    date: datetime.date | None = None, on_exchange=None) -> FlowResult:
    """Bank outlet: ID check, SSSE PIN change (activates the SSSE), bank PIN + financial activation.

    P7 §5 (card recognition), §6 (EF06 item 08 read after external
    authentication with RKSSSE), §9 (CHANGE PIN), then the bank's issuer
    scripts (docs/decisions.md §6). `id_check`: "auth" (the outlet's PSAM authenticates,
    before the holder types anything) or "pin" (VERIFY of `ssse_old_pin`
    first, P7 §5.6-§5.8, then the same authentication and read)."""
    _outlet_parameters(ssse_old_pin, ssse_new_pin, bank_pin, id_check)
    with _Flow("bank-activation") as flow:
        _outlet(flow, reader, psam, host, id_number, ssse_old_pin, ssse_new_pin, bank_pin, id_check, date,
                on_exchange)
    return flow.result


def entrusted_activation(reader, psam, host, *, agent_id_number: str = "", power_of_attorney: str = "",
                         id_number: str = DEFAULT_ID_NUMBER, ssse_old_pin: str = DEFAULT_INITIAL_PIN,
                         ssse_new_pin: str = DEFAULT_SSSE_PIN, bank_pin: str = DEFAULT_BANK_PIN,
                         id_check: str = "auth", date: datetime.date | None = None, on_exchange=None) -> FlowResult:
    """An agent activates for the holder: needs the agent's ID number and a power of attorney.

    A terminal-side rule (docs/card/lifecycle.md): without both documents (the defaults:
    none presented) the flow is refused before any APDU; with both the chip
    sees exactly the bank-activation commands (P7 §5, §6, §9)."""
    _outlet_parameters(ssse_old_pin, ssse_new_pin, bank_pin, id_check)
    agent_id_number, power_of_attorney = agent_id_number.strip().upper(), power_of_attorney.strip()
    with _Flow("entrusted-activation") as flow:
        missing = [what for what, value in (("the agent's ID number", agent_id_number),
                                            ("a power-of-attorney reference", power_of_attorney))
                   if not value]
        if missing:
            flow.step("documents (agent ID, power of attorney)", "missing")
            raise Refused("entrusted activation needs " + " and ".join(missing))
        problem = idnumber.problem(agent_id_number)
        if problem is not None:
            flow.step("documents (agent ID, power of attorney)", "agent ID invalid")
            raise Refused(f"the agent's ID number {agent_id_number} is not valid: {problem}")
        if agent_id_number == id_number.upper():
            flow.step("documents (agent ID, power of attorney)", "agent is the holder")
            raise Refused("the agent's ID number is the holder's: the holder uses bank-activation")
        flow.step(f"documents: agent {agent_id_number}, power of attorney {power_of_attorney}", "checked")
        _outlet(flow, reader, psam, host, id_number, ssse_old_pin, ssse_new_pin, bank_pin, id_check, date,
                on_exchange)
    return flow.result


def service_window_activation(reader, psam, *, id_number: str = DEFAULT_ID_NUMBER,
                              old_pin: str = DEFAULT_INITIAL_PIN, new_pin: str = DEFAULT_SSSE_PIN,
                              id_check: str = "auth", on_exchange=None) -> FlowResult:
    """Service window: the holder changes the initial SSSE PIN, which activates the SSSE.

    P7 §5 (card recognition), §6 (ID check: EF06 item 08 after external
    authentication with RKSSSE; `id_check` "pin" has the holder VERIFY
    `old_pin` first), §9 (CHANGE PIN `80 5E 01 00`); GET DATA DF7E then
    answers 01 (docs/card/lifecycle.md §1). The bank application is not touched."""
    _pin("old_pin", old_pin)
    _pin("new_pin", new_pin)
    _choice("id_check", id_check, ("auth", "pin"))
    if new_pin == old_pin:
        raise InputError("new_pin must differ from old_pin (keeping the initial PIN does not activate)")
    with _Flow("service-window-activation") as flow:
        ssse = SsseTerminal(reader, Psam(psam), on_exchange)
        _start_ssse(flow, ssse)
        _id_check(flow, ssse, id_number, id_check, old_pin)
        _change_initial_pin(flow, ssse, old_pin, new_pin)
        if _activation_state(flow, ssse) != 1:
            raise Refused("the SSSE is not active after the PIN change (GET DATA DF7E is not 01)")
        flow.done("SSSE activated with the holder's PIN")
    return flow.result


def hospital_activation(reader, psam, *, pin: str = DEFAULT_INITIAL_PIN, amount: int = 0,
                        on_exchange=None) -> FlowResult:
    """Hospital first use: a settlement in DF04 EF06 (items 92/93) activates the SSSE.

    P7 §5.4 (INTERNAL AUTHENTICATE: is the card genuine?), then the hospital's
    temporary-offline settlement as an operator update (P7 §7): SELECT DF04,
    VERIFY `pin`, external authentication with RK1DF04 to read items 92 (total)
    and 93 (count), with UK2DF04 to write them one settlement (`amount` fen)
    further. The first such write of an authenticated terminal activates the
    SSSE (docs/card/lifecycle.md §1); GET DATA DF7E then answers 01."""
    _pin("pin", pin)
    _fen("amount", amount)
    with _Flow("hospital-activation") as flow:
        ssse = SsseTerminal(reader, Psam(psam), on_exchange)
        _start_ssse(flow, ssse)
        _genuine(flow, ssse)
        flow.expect("hospital settlement (DF04 EF06 items 92/93: SELECT DF04, VERIFY, RK1DF04 read, UK2DF04 write)",
                    ssse.register(pin, amount))
        if _activation_state(flow, ssse) != 1:
            raise Refused("the SSSE is not active after the settlement (GET DATA DF7E is not 01)")
        flow.done(f"settlement of {_yuan(amount)} written in DF04 EF06; the SSSE is active")
    return flow.result


def pharmacy_activation(reader, psam, *, pin: str = DEFAULT_INITIAL_PIN, amount: int = 1000, self_pay: int = 0,
                        fund: int = 0, date: datetime.date | None = None, on_exchange=None) -> FlowResult:
    """Designated pharmacy first purchase, offline through the medical purse: activates the SSSE.

    P7 §5.4 (INTERNAL AUTHENTICATE), then P7 §12 (medical purchase): SELECT
    DF04, VERIFY `pin`, INITIALIZE FOR PURCHASE `B0 28 01 01` (the balance),
    the PSAM's INIT SAM FOR PURCHASE `80 70` (terminal transaction number,
    MAC1), DEBIT FOR PURCHASE `B0 2C 01 00` (TAC, MAC2), CREDIT SAM FOR
    PURCHASE `80 72` (the PSAM checks MAC2); the detail query (P7 §10, 6.5)
    reads the COS's newest DF04 EF08 record: this purchase, `amount` fen off
    the balance the INITIALIZE answer gave. The purchase is at 10:00 on the
    card's date. The first purchase activates the SSSE (docs/card/lifecycle.md §1)."""
    _pin("pin", pin)
    for name, value in (("amount", amount), ("self_pay", self_pay), ("fund", fund)):
        _fen(name, value)
    when = datetime.datetime.combine(date or datetime.date.today(), PHARMACY_TIME)
    seen: dict = {}

    def watch(command: bytes, response: bytes) -> None:
        """Keep the card's INITIALIZE FOR PURCHASE answer (its balance; 61xx: the GET RESPONSE that follows)."""
        if command[:4] == b"\xB0\x28\x01\x01" or (command[:2] == b"\x00\xC0" and seen.get("pending")):
            seen["pending"] = response[-2:-1] == b"\x61"
            seen["init"] = seen.get("init", b"") + response[:-2] if command[:2] == b"\x00\xC0" else response[:-2]
        if on_exchange is not None:
            on_exchange(command, response)

    with _Flow("pharmacy-activation") as flow:
        ssse = SsseTerminal(reader, Psam(psam), watch)
        _start_ssse(flow, ssse)
        _genuine(flow, ssse)
        outcome = ssse.pharmacy_purchase(pin, amount, when=when, self_pay=self_pay, fund=fund)
        init = seen.get("init", b"")
        balance = int.from_bytes(init[:4], "big") if len(init) >= 4 else None
        if balance is not None:
            flow.step("INITIALIZE FOR PURCHASE (personal account balance)", _yuan(balance))
        if outcome["sw"] != SW_OK or "tac" not in outcome:
            flow.step("medical purchase (SELECT DF04, VERIFY, B0 28, 80 70, B0 2C, 80 72)", outcome["sw"])
            raise Refused(f"the medical purchase answered {outcome['sw']:04X} ({meaning(outcome['sw'])})")
        tx_number, tac = outcome["terminal_tx"].hex().upper(), outcome["tac"].hex().upper()
        flow.step(f"DEBIT FOR PURCHASE of {_yuan(amount)} (terminal transaction number, TAC)",
                  f"{tx_number}, TAC {tac}")
        flow.step("CREDIT SAM FOR PURCHASE (the PSAM checked MAC2)", SW_OK)
        # the detail query of P7 §10 (6.5): the COS's newest EF08 record is this purchase (seq, type, amounts)
        detail = ssse.send(build(*cla_ins(READ_RECORD), 0x01, DF04_EF08.sfi << 3 | 4, le=DF04_EF08.size))
        if sw_of(detail) != SW_OK:
            flow.expect("READ RECORD DF04 EF08 record 1 (newest transaction detail)", sw_of(detail))
        record = DETAIL.parse(detail[:-2])
        flow.step("READ RECORD DF04 EF08 record 1 (newest transaction detail)",
                  f"seq {record.seq:04X}, type {record.type:02X}, {_yuan(record.account)} at {record.time.hex()}")
        after = balance - record.account if balance is not None else None
        if _activation_state(flow, ssse) != 1:
            raise Refused("the SSSE is not active after the purchase (GET DATA DF7E is not 01)")
        flow.done(f"purchase of {_yuan(amount)} settled offline (terminal transaction {tx_number}, TAC {tac})"
                  + (f"; balance {_yuan(balance)} -> {_yuan(after)}" if after is not None else "")
                  + "; the SSSE is active")
    return flow.result


def online_activation(reader, host, *, pan: str | None = None, bank_pin: str = DEFAULT_BANK_PIN, amount: int = 100,
                      date: datetime.date | None = None, on_exchange=None) -> FlowResult:
    """City-services app: the host queues the activation; the next online purchase delivers it.

    Financial application only (docs/decisions.md §6; no P7 flow touches the bank
    application, P7 §5.9). The card is not activated yet, so it declines that
    purchase (AAC); the host answers the AAC with the scripts. `pan` is the
    account from the issuer's records (the app knows its user, the card is not
    present); `amount` in fen."""
    _pin("bank_pin", bank_pin)
    if not pan:
        raise InputError("online-activation needs the account's PAN from the issuer's records")
    with _Flow("online-activation") as flow:
        host.queue(pan, IssuerHost.activation(bank_pin))
        flow.step(f"city-services app: activation requested, scripts queued for {pan}", "queued")
        _deliver_activation(flow, PaymentTerminal(reader, on_exchange, date=date), host, amount)
        flow.done("financial application activated: bank PIN set, DF7F 01 (by the next online transaction)")
    return flow.result


def loss_report(reader, psam, *, id_number: str = DEFAULT_ID_NUMBER, identification: bytes | None = None,
                on_exchange=None) -> FlowResult:
    """HR-designated terminal: ID check, then the loss lock (APPLICATION BLOCK 84 1E 00 00 with BK).

    P7 §5, §6 (ID check after external authentication with RKSSSE), then the
    maintenance pattern of P7 §13.2 with the project's temporary block (docs/card/lifecycle.md
    §3): external authentication with BK, GET CHALLENGE, `84 1E 00 00 04`
    with the PSAM's MAC under the STK process key. SELECT then answers its FCI
    with 6283."""
    with _Flow("loss-report") as flow:
        ssse = SsseTerminal(reader, Psam(psam), on_exchange, identification=identification)
        if _start_ssse(flow, ssse, locked_ok=True) == SW_WARNING_SELECTED_FILE_INVALIDATED:
            raise Refused("the SSSE application is already locked")
        _id_check(flow, ssse, id_number, "auth")
        flow.expect("APPLICATION BLOCK (loss lock, temporary)", ssse.lock())
        flow.expect("SELECT SSSE (locked: 6283)", ssse.start(), SW_WARNING_SELECTED_FILE_INVALIDATED)
        flow.done("SSSE loss-locked")
    return flow.result


def loss_unlock(reader, psam, *, identification: bytes | None = None, on_exchange=None) -> FlowResult:
    """HR-designated terminal: APPLICATION UNBLOCK 84 18 00 00 of a loss lock, with BK.

    The maintenance pattern of P7 §13 (external authentication with BK, GET
    CHALLENGE, the PSAM's MAC) on the project's unblock (docs/card/lifecycle.md §3). A locked
    SSSE refuses READ RECORD, so the card identification code (for the keys)
    comes from the issuer's records (`identification`)."""
    with _Flow("loss-unlock") as flow:
        ssse = SsseTerminal(reader, Psam(psam), on_exchange, identification=identification)
        if _start_ssse(flow, ssse, locked_ok=True) == SW_OK:
            raise Refused("the SSSE application is not locked")
        flow.expect("APPLICATION UNBLOCK", ssse.unlock())
        flow.expect("SELECT SSSE (unlocked: 9000)", ssse.start())
        flow.done("SSSE unlocked")
    return flow.result


def deadline_unlock(reader, psam, host, *, bank_pin: str = DEFAULT_BANK_PIN, identification: bytes | None = None,
                    date: datetime.date | None = None, on_exchange=None) -> FlowResult:
    """A card past its activation deadline: activate the financial application, then unlock the SSSE.

    docs/card/lifecycle.md §2 (the 300-day rule, an extension). An unlock tried first (P7 §13
    pattern: BK, GET CHALLENGE, `84 18` with the PSAM's MAC), while the
    financial application is not activated, is answered 6985; the flow shows
    it, then activates at the bank outlet (scripts in a transaction) and
    unlocks at an HR terminal."""
    _pin("bank_pin", bank_pin)
    with _Flow("deadline-unlock") as flow:
        ssse = SsseTerminal(reader, Psam(psam), on_exchange, identification=identification)
        if _start_ssse(flow, ssse, locked_ok=True) == SW_OK:
            raise Refused("the SSSE application is not locked")
        pos = PaymentTerminal(reader, on_exchange, date=date)
        if _activation_flag(flow, pos) != 1:
            flow.step("SELECT SSSE", ssse.start())
            sw = ssse.unlock()
            flow.step("APPLICATION UNBLOCK before the financial activation", sw)
            # 9000: a holder's loss lock; the deadline still needs the activation
            if sw not in (SW_CONDITIONS_NOT_SATISFIED, SW_OK):
                raise Refused(f"APPLICATION UNBLOCK answered {sw:04X} ({meaning(sw)})")
            _bank_outlet_activation(flow, pos, host, bank_pin)
        if _start_ssse(flow, ssse, locked_ok=True) == SW_WARNING_SELECTED_FILE_INVALIDATED:
            flow.expect("APPLICATION UNBLOCK (HR terminal)", ssse.unlock())
            flow.expect("SELECT SSSE (unlocked: 9000)", ssse.start())
        flow.done("financial application activated and SSSE unlocked")
    return flow.result


def pin_reset(reader, psam, *, id_number: str = DEFAULT_ID_NUMBER, new_pin: str = DEFAULT_SSSE_PIN,
              method: str = "reset", old_pin: str = "", on_exchange=None) -> FlowResult:
    """Service window: the holder forgot (and blocked) the SSSE PIN; ID check, then a new PIN.

    P7 §5, §6 (ID check), P7 §13.3 (PIN unblock/reset: external
    authentication with PUK, GET CHALLENGE, the command with the PSAM's MAC
    under the STK process key, P5 §6.8). `method` "reset": `84 24 00 01`
    with `new_pin` enciphered (docs/decisions.md S2/S3), a full try counter. "unblock":
    `84 24 00 00` restores the counter only, for a holder who remembers
    `old_pin` after all; CHANGE PIN (P7 §9) then sets `new_pin`. Either way
    VERIFY of `new_pin` must then give 9000 in a new session."""
    check_removed("pin-reset", {"method": method})
    _choice("method", method, ("reset", "unblock"))
    _pin("new_pin", new_pin)
    if method == "unblock":
        _pin("old_pin (the PIN the holder remembers; or use method=reset)", old_pin)
    with _Flow("pin-reset") as flow:
        ssse = SsseTerminal(reader, Psam(psam), on_exchange)
        _start_ssse(flow, ssse)
        _id_check(flow, ssse, id_number, "auth")
        flow.step("VERIFY without data (PIN state)", sw_of(ssse.send(build(*cla_ins(VERIFY), 0x00, 0x00))))
        if method == "reset":
            flow.expect("PIN RESET 84 24 00 01 (PUK, new PIN enciphered, PSAM MAC)", ssse.reset_pin(new_pin))
        else:
            flow.expect("PIN UNBLOCK 84 24 00 00 (PUK, PSAM MAC)", ssse.unblock_pin())
            if new_pin != old_pin:
                flow.expect("CHANGE PIN (remembered PIN -> new PIN)", ssse.change_pin(old_pin, new_pin))
        ssse.start()  # a fresh session: the new PIN must verify on its own
        flow.expect("VERIFY new PIN", ssse.verify(new_pin))
        flow.done("the new SSSE PIN verifies")
    return flow.result


FLOWS = {
    "bank-activation": bank_activation,
    "entrusted-activation": entrusted_activation,
    "service-window-activation": service_window_activation,
    "hospital-activation": hospital_activation,
    "pharmacy-activation": pharmacy_activation,
    "online-activation": online_activation,
    "loss-report": loss_report,
    "loss-unlock": loss_unlock,
    "deadline-unlock": deadline_unlock,
    "pin-reset": pin_reset,
}


# -- running a flow on a card ---------------------------------------------------------------------
def parameters(name: str) -> dict:
    """A flow's user parameters and their defaults."""
    return {key: p.default for key, p in inspect.signature(_flow(name)).parameters.items() if key not in SUPPLIED}


def parse_params(name: str, pairs) -> dict:
    """'KEY=VALUE' strings (as `sscard flow --param` gives them) -> typed keyword arguments."""
    known = parameters(name)
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        check_removed(name, [key])
        if not sep or key not in known:
            raise InputError(f"flow {name} takes KEY=VALUE with KEY one of {', '.join(known) or 'nothing'}: "
                             f"not {pair!r}")
        if isinstance(known[key], int):
            try:
                value = int(value)
            except ValueError:
                raise InputError(f"{key} must be a whole number, not {value!r}") from None
        params[key] = value
    check_removed(name, params)
    return params


def _flow(name: str):
    if name not in FLOWS:
        raise InputError(f"unknown flow {name!r}; flows: {', '.join(FLOWS)}")
    return FLOWS[name]


def keys_profile(card: Card) -> str:
    """The profile whose keys the PSAM and the issuer host hold: the card's if shipped, else default."""
    return card.config.profile if card.config.profile in shipped_names() else "default"


def issuer_records(card: Card) -> tuple[bytes, str | None]:
    """(card identification code, PAN) as the issuer's back office holds them; the simulator's
    records are the card image (a locked SSSE cannot be read for its identification code)."""
    identification = card.store["ssse.ef05"].records[0][2:]
    records = card.store.get("fin.records")
    for record in records.records if records is not None else ():
        value = find(record, 0x5A)
        if value is not None:
            return identification, value.hex().upper().rstrip("F")
    return identification, None


def run_flow(name: str, card: Card, profile=None, on_exchange=None, wrap=None, **params) -> FlowResult:
    """Run flow `name` on `card`: SimReaders on the card and on a PSAM of `profile` (default:
    `keys_profile(card)`), an issuer host of that profile, the issuer's records, the card's date.
    `wrap` may wrap the card's reader (a RecordingReader, say)."""
    function = _flow(name)
    check_removed(name, params)
    unknown = set(params) - set(parameters(name))
    if unknown:
        raise InputError(f"flow {name} has no parameter {', '.join(sorted(unknown))} "
                         f"(it takes {', '.join(parameters(name)) or 'none'})")
    profile = profile or keys_profile(card)
    identification, pan = issuer_records(card)
    supplied = {
        "reader": lambda: (wrap or (lambda r: r))(SimReader(card)),
        "psam": lambda: SimReader(Card.psam(profile)),
        "host": lambda: IssuerHost(profile),
        "on_exchange": lambda: on_exchange,
        "date": lambda: card.today,
        "identification": lambda: identification,
        "pan": lambda: pan,
    }
    accepted = inspect.signature(function).parameters
    kwargs = {key: make() for key, make in supplied.items() if key in accepted}
    try:
        return function(**kwargs, **params)
    finally:
        card.power_off()
