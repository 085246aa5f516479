"""Real-world terminal flows: what a bank outlet, an agent's counter, a hospital, a
pharmacy, a city-services app, an HR-designated terminal and a service window do
with the card (SPEC §2.4, §3).

Each flow is a plain function taking `Reader`s (the card's reader `reader`, a
PSAM reader `psam` where keys are needed) and an `IssuerHost` `host` where the
bank takes part, plus keyword parameters with defaults. It returns a
`FlowResult`: the steps it took, each with the SW or the outcome it got, and
whether it succeeded. Every step goes through APDUs (`SsseTerminal`,
`PaymentTerminal`, `Psam`); nothing edits card state. A flow that cannot go
on (a refused command, an ID that does not match, missing documents) ends
with `ok=False` and says why; a parameter that cannot be used at all (a PIN
that is not 4-12 digits, an unknown method) is a `ValueError` before any APDU.

`run_flow(name, card, ...)` sets up the readers (the card, a PSAM from the
card's profile), the issuer host and the issuer's records, and runs one flow
of `FLOWS` by its CLI name.
"""

import datetime
import inspect
from dataclasses import dataclass, field

from chip import Card, idnumber
from chip.apdu import build
from chip.profile import shipped_names
from chip.sw import meaning

from .issuer import IssuerHost
from .payment_terminal import KernelError, PaymentTerminal, find
from .psam import Psam, PsamError
from .sim import SimReader
from .ssse_terminal import SsseTerminal, TerminalError, sw_of

OK = 0x9000
INVALIDATED = 0x6283  # SELECT of a locked SSSE / blocked financial application
DEFAULT_ID_NUMBER = "110101199003071233"  # the default profile's holder
DEFAULT_SSSE_PIN = "246810"  # the holder's new SSSE PIN (anything but the initial PIN)
DEFAULT_BANK_PIN = "135790"  # the holder's new bank PIN
SCRIPT_NAMES = {b"\x84\x24": "issuer script PIN CHANGE", b"\x04\xDA": "issuer script PUT DATA",
                b"\x84\x1E": "issuer script APPLICATION BLOCK", b"\x84\x18": "issuer script APPLICATION UNBLOCK",
                b"\x84\x16": "issuer script CARD BLOCK"}
# Parameters run_flow supplies (readers, host, the issuer's records, the simulated date): not user parameters.
SUPPLIED = ("reader", "psam", "host", "on_exchange", "date", "identification", "pan")


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
        if sw not in (accepted or (OK,)):
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


# -- parameter checks (ValueError before any APDU) -------------------------------------------
def _pin(name: str, pin: str) -> str:
    if not (isinstance(pin, str) and pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
        raise ValueError(f"{name} must be 4 to 12 digits, not {pin!r}")
    return pin


def _choice(name: str, value: str, choices: tuple) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}")
    return value


# -- shared steps ------------------------------------------------------------------------------
def _start_ssse(flow: _Flow, ssse: SsseTerminal, locked_ok: bool = False) -> int:
    sw = ssse.start()
    if sw == INVALIDATED and not locked_ok:
        flow.step("SELECT SSSE", sw)
        raise Refused("the SSSE application is locked (SELECT answered 6283): unlock it first")
    return flow.expect("SELECT SSSE", sw, OK, INVALIDATED) if locked_ok else flow.expect("SELECT SSSE", sw)


def _id_check(flow: _Flow, ssse: SsseTerminal, id_number: str, via: str, pin: str = "") -> None:
    """Compare the presented citizen ID number with EF06 item 08, read after VERIFY of the
    SSSE PIN (`via="pin"`) or external authentication by the terminal's PSAM (`via="auth"`)."""
    problem = idnumber.problem(id_number.upper())
    if problem is not None:
        flow.step("ID check", "invalid ID number")
        raise Refused(f"the presented ID number {id_number} is not valid: {problem}")
    if via == "pin":
        flow.expect("VERIFY SSSE PIN (to read the holder's ID)", ssse.verify(pin))
    else:
        flow.expect("EXTERNAL AUTHENTICATE (PSAM, to read the holder's ID)", ssse.external_authenticate())
    response = ssse.send(build(0x00, 0xB2, 0x08, 6 << 3, le=256))  # EF06 item 08 by identifier, SFI 6
    flow.expect("READ RECORD EF06 item 08 (ID number)", sw_of(response))
    on_card = response[2:-2].rstrip(b"\x00").decode("ascii", "replace")
    if on_card.upper() != id_number.upper():
        flow.step("ID check", "mismatch")
        raise Refused(f"the presented ID number {id_number} is not the card holder's (EF06 item 08)")
    flow.step("ID check", "match")


def _read_pan(flow: _Flow, pos: PaymentTerminal) -> str:
    """The PAN from the card's application records (READ RECORD needs no GPO)."""
    _, select_sw = pos.select_application()
    flow.step("SELECT financial application (PSE, AID)", select_sw)
    for number in (1, 2, 3):
        response = pos.send(build(0x00, 0xB2, number, (1 << 3) | 4, le=256))
        pan = find(response[:-2], 0x5A) if sw_of(response) == OK else None
        if pan is not None:
            pan = pan.hex().upper().rstrip("F")
            flow.step("READ RECORD financial application (PAN)", pan)
            return pan
    raise Refused("the financial application's records carry no PAN (5A)")


def _activation_flag(flow: _Flow, pos: PaymentTerminal) -> int | None:
    """GET DATA DF7F: 1 activated, 0 not; None when the card does not answer it."""
    pos.select_application()
    response = pos.send(build(0x80, 0xCA, 0xDF, 0x7F, le=256))
    value = find(response[:-2], 0xDF7F) if sw_of(response) == OK else None
    flow.step("GET DATA DF7F (activation flag)", value.hex().upper() if value else sw_of(response))
    return value[0] if value else None


def _deliver_activation(flow: _Flow, pos: PaymentTerminal, host: IssuerHost, amount: int = 0) -> None:
    """A transaction carries the queued activation scripts (PIN CHANGE, PUT DATA DF7F 01); then
    GET DATA DF7F must give 01."""
    outcome = pos.purchase(amount, host=host)
    flow.step(f"transaction of {amount / 100:.2f} yuan, online to the issuer host", outcome.summary)
    for command, sw in outcome.script_results:
        flow.step(SCRIPT_NAMES.get(command[:2], f"issuer script {command[:2].hex().upper()}"), sw)
    if not outcome.script_results:
        raise Refused("the transaction delivered no issuer scripts (the host did not accept the cryptogram)")
    failed = [sw for _, sw in outcome.script_results if sw != OK]
    if failed:
        raise Refused(f"an issuer script answered {failed[0]:04X} ({meaning(failed[0])})")
    if _activation_flag(flow, pos) != 1:
        raise Refused("the financial application is not activated (GET DATA DF7F is not 01)")


def _bank_outlet_activation(flow: _Flow, pos: PaymentTerminal, host: IssuerHost, bank_pin: str) -> None:
    """The bank counter: the card's account, the activation scripts, one transaction."""
    pan = _read_pan(flow, pos)
    host.queue(pan, IssuerHost.activation(bank_pin))
    flow.step(f"issuer host: PIN CHANGE + PUT DATA DF7F 01 queued for {pan}", "queued")
    _deliver_activation(flow, pos, host)


def _outlet(flow: _Flow, reader, psam, host, id_number, ssse_old_pin, ssse_new_pin, bank_pin, id_check, date,
            on_exchange) -> None:
    ssse = SsseTerminal(reader, Psam(psam), on_exchange)
    _start_ssse(flow, ssse)
    _id_check(flow, ssse, id_number, id_check, ssse_old_pin)
    flow.expect("CHANGE PIN (initial SSSE PIN -> holder's PIN: activates the SSSE)",
                ssse.change_pin(ssse_old_pin, ssse_new_pin))
    _bank_outlet_activation(flow, PaymentTerminal(reader, on_exchange, date=date), host, bank_pin)
    flow.done("SSSE activated with the holder's PIN; financial application activated with the bank PIN")


def _outlet_parameters(ssse_old_pin, ssse_new_pin, bank_pin, id_check) -> None:
    _pin("ssse_old_pin", ssse_old_pin)
    _pin("ssse_new_pin", ssse_new_pin)
    _pin("bank_pin", bank_pin)
    _choice("id_check", id_check, ("auth", "pin"))
    if ssse_new_pin == ssse_old_pin:
        raise ValueError("ssse_new_pin must differ from ssse_old_pin (keeping the initial PIN does not activate)")


# -- the flows ---------------------------------------------------------------------------------
def bank_activation(reader, psam, host, *, id_number: str = DEFAULT_ID_NUMBER, ssse_old_pin: str = "123456",
                    ssse_new_pin: str = DEFAULT_SSSE_PIN, bank_pin: str = DEFAULT_BANK_PIN, id_check: str = "auth",
                    date: datetime.date | None = None, on_exchange=None) -> FlowResult:
    """Bank outlet: ID check, SSSE PIN change (activates the SSSE), bank PIN + financial activation.

    `id_check`: how EF06 item 08 is read for the comparison: "auth" (external
    authentication by the outlet's PSAM, before the holder types anything) or
    "pin" (VERIFY of `ssse_old_pin`)."""
    _outlet_parameters(ssse_old_pin, ssse_new_pin, bank_pin, id_check)
    with _Flow("bank-activation") as flow:
        _outlet(flow, reader, psam, host, id_number, ssse_old_pin, ssse_new_pin, bank_pin, id_check, date,
                on_exchange)
    return flow.result


def entrusted_activation(reader, psam, host, *, agent_id_number: str = "", power_of_attorney: str = "",
                         id_number: str = DEFAULT_ID_NUMBER, ssse_old_pin: str = "123456",
                         ssse_new_pin: str = DEFAULT_SSSE_PIN, bank_pin: str = DEFAULT_BANK_PIN,
                         id_check: str = "auth", date: datetime.date | None = None, on_exchange=None) -> FlowResult:
    """An agent activates for the holder: needs the agent's ID number and a power of attorney.

    Without both (the defaults: none presented) the flow is refused before any
    APDU; with both the chip sees exactly the bank-activation commands (SPEC §2.4)."""
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


def _medical(name: str, reader, psam, write, what: str, on_exchange) -> FlowResult:
    with _Flow(name) as flow:
        ssse = SsseTerminal(reader, Psam(psam), on_exchange)
        _start_ssse(flow, ssse)
        genuine = ssse.internal_authenticate(b"TERMINAL")
        flow.step("INTERNAL AUTHENTICATE (is the card genuine?)", "genuine" if genuine else "not genuine")
        if not genuine:
            raise Refused("the card failed internal authentication (not a genuine card of this issuer)")
        flow.expect(f"{what} (SELECT DF04, EXTERNAL AUTHENTICATE, APPEND RECORD)", write(ssse))
        flow.done(f"{what} written; the SSSE is active")
    return flow.result


def hospital_activation(reader, psam, *, institution: str = "H11010100001", kind: int = 1, amount: int = 0,
                        date: datetime.date | None = None, on_exchange=None) -> FlowResult:
    """Hospital first use: external authentication + a registration record in DF04 (activates the SSSE).

    `kind` 1 registration, 2 outpatient, 3 inpatient; `amount` in fen."""
    _choice("kind", kind, (1, 2, 3))
    return _medical("hospital-activation", reader, psam,
                    lambda ssse: ssse.register(institution=institution, kind=kind, amount=amount, date=date),
                    "hospital visit record (DF04 EF15)", on_exchange)


def pharmacy_activation(reader, psam, *, pharmacy: str = "P11010100001", items: int = 1, amount: int = 0,
                        date: datetime.date | None = None, on_exchange=None) -> FlowResult:
    """Designated pharmacy first purchase: a purchase record in DF04 (activates the SSSE). `amount` in fen."""
    return _medical("pharmacy-activation", reader, psam,
                    lambda ssse: ssse.pharmacy_purchase(pharmacy=pharmacy, items=items, amount=amount, date=date),
                    "pharmacy purchase record (DF04 EF16)", on_exchange)


def online_activation(reader, host, *, pan: str | None = None, bank_pin: str = DEFAULT_BANK_PIN, amount: int = 100,
                      date: datetime.date | None = None, on_exchange=None) -> FlowResult:
    """City-services app: the host queues the activation; the next online purchase delivers it.

    The card is not activated yet, so it declines that purchase (AAC); the host
    answers the AAC with the scripts. `pan` is the account from the issuer's
    records (the app knows its user, the card is not present); `amount` in fen."""
    _pin("bank_pin", bank_pin)
    if not pan:
        raise ValueError("online-activation needs the account's PAN from the issuer's records")
    with _Flow("online-activation") as flow:
        host.queue(pan, IssuerHost.activation(bank_pin))
        flow.step(f"city-services app: activation requested, scripts queued for {pan}", "queued")
        _deliver_activation(flow, PaymentTerminal(reader, on_exchange, date=date), host, amount)
        flow.done("financial application activated by the next online transaction")
    return flow.result


def loss_report(reader, psam, *, id_number: str = DEFAULT_ID_NUMBER, identification: bytes | None = None,
                on_exchange=None) -> FlowResult:
    """HR-designated terminal: ID check, then the loss lock (APPLICATION BLOCK temporary)."""
    with _Flow("loss-report") as flow:
        ssse = SsseTerminal(reader, Psam(psam), on_exchange, identification=identification)
        if _start_ssse(flow, ssse, locked_ok=True) == INVALIDATED:
            raise Refused("the SSSE application is already locked")
        _id_check(flow, ssse, id_number, "auth")
        flow.expect("APPLICATION BLOCK (loss lock, temporary)", ssse.lock())
        flow.expect("SELECT SSSE (locked: 6283)", ssse.start(), INVALIDATED)
        flow.done("SSSE loss-locked")
    return flow.result


def loss_unlock(reader, psam, *, identification: bytes | None = None, on_exchange=None) -> FlowResult:
    """HR-designated terminal: APPLICATION UNBLOCK of a loss lock.

    A locked SSSE refuses READ RECORD, so the card identification code (for
    the keys) comes from the issuer's records (`identification`)."""
    with _Flow("loss-unlock") as flow:
        ssse = SsseTerminal(reader, Psam(psam), on_exchange, identification=identification)
        if _start_ssse(flow, ssse, locked_ok=True) == OK:
            raise Refused("the SSSE application is not locked")
        flow.expect("APPLICATION UNBLOCK", ssse.unlock())
        flow.expect("SELECT SSSE (unlocked: 9000)", ssse.start())
        flow.done("SSSE unlocked")
    return flow.result


def deadline_unlock(reader, psam, host, *, bank_pin: str = DEFAULT_BANK_PIN, identification: bytes | None = None,
                    date: datetime.date | None = None, on_exchange=None) -> FlowResult:
    """A card past its activation deadline: activate the financial application, then unlock the SSSE.

    An unlock tried first, while the financial application is not activated,
    is answered 6985 (SPEC §2.4); the flow shows it, then activates at the
    bank outlet (scripts in a transaction) and unlocks at an HR terminal."""
    _pin("bank_pin", bank_pin)
    with _Flow("deadline-unlock") as flow:
        ssse = SsseTerminal(reader, Psam(psam), on_exchange, identification=identification)
        if _start_ssse(flow, ssse, locked_ok=True) == OK:
            raise Refused("the SSSE application is not locked")
        pos = PaymentTerminal(reader, on_exchange, date=date)
        if _activation_flag(flow, pos) != 1:
            flow.step("SELECT SSSE", ssse.start())
            sw = ssse.unlock()
            flow.step("APPLICATION UNBLOCK before the financial activation", sw)
            if sw not in (0x6985, OK):  # OK: a holder's loss lock; the deadline still needs the activation
                raise Refused(f"APPLICATION UNBLOCK answered {sw:04X} ({meaning(sw)})")
            _bank_outlet_activation(flow, pos, host, bank_pin)
        if _start_ssse(flow, ssse, locked_ok=True) == INVALIDATED:
            flow.expect("APPLICATION UNBLOCK (HR terminal)", ssse.unlock())
            flow.expect("SELECT SSSE (unlocked: 9000)", ssse.start())
        flow.done("financial application activated and SSSE unlocked")
    return flow.result


def pin_reset(reader, psam, *, id_number: str = DEFAULT_ID_NUMBER, new_pin: str = DEFAULT_SSSE_PIN,
              method: str = "reload", old_pin: str = "", on_exchange=None) -> FlowResult:
    """Service window: the holder forgot (and blocked) the SSSE PIN; ID check, then a new PIN.

    `method` "reload": RELOAD PIN sets `new_pin` with a full try counter (PSAM
    MAC under STK). "unblock": PIN UNBLOCK restores the counter only (MAC
    under PUK), for a holder who remembers `old_pin` after all; CHANGE PIN
    then sets `new_pin`. Either way VERIFY of `new_pin` must then give 9000."""
    _choice("method", method, ("reload", "unblock"))
    _pin("new_pin", new_pin)
    if method == "unblock":
        _pin("old_pin (the PIN the holder remembers; or use method=reload)", old_pin)
    with _Flow("pin-reset") as flow:
        ssse = SsseTerminal(reader, Psam(psam), on_exchange)
        _start_ssse(flow, ssse)
        _id_check(flow, ssse, id_number, "auth")
        flow.step("VERIFY without data (PIN state)", sw_of(ssse.send(build(0x00, 0x20, 0x00, 0x00))))
        if method == "reload":
            flow.expect("RELOAD PIN (new PIN, PSAM MAC)", ssse.reload_pin(new_pin))
        else:
            flow.expect("PIN UNBLOCK (try counter, PSAM MAC)", ssse.unblock_pin())
            if new_pin != old_pin:
                flow.expect("CHANGE PIN (remembered PIN -> new PIN)", ssse.change_pin(old_pin, new_pin))
        ssse.start()  # a fresh session: the new PIN must verify on its own
        flow.expect("VERIFY new PIN", ssse.verify(new_pin))
        flow.done("the new SSSE PIN verifies")
    return flow.result


FLOWS = {
    "bank-activation": bank_activation,
    "entrusted-activation": entrusted_activation,
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
        if not sep or key not in known:
            raise ValueError(f"flow {name} takes KEY=VALUE with KEY one of {', '.join(known) or 'nothing'}: "
                             f"not {pair!r}")
        if isinstance(known[key], int):
            try:
                value = int(value)
            except ValueError:
                raise ValueError(f"{key} must be a whole number, not {value!r}") from None
        params[key] = value
    return params


def _flow(name: str):
    if name not in FLOWS:
        raise ValueError(f"unknown flow {name!r}; flows: {', '.join(FLOWS)}")
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
    unknown = set(params) - set(parameters(name))
    if unknown:
        raise ValueError(f"flow {name} has no parameter {', '.join(sorted(unknown))} "
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
