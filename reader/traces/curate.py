"""The curated traces of `apdu_traces/`: one per real-world flow, recorded from `reader.terminals.flows`,
and a PIN-pad session (VERIFY and CHANGE PIN typed on the simulated GemPC PinPad's keys).

    python -m reader.traces.curate [DIR]     (re)record every curated trace into DIR (default apdu_traces)

Each trace starts from a fresh card of the default profile issued on a fixed
day with a seeded random source (`@issued`, `@random`), its date given relative
to the issue date (`@date issued`, `@date issued+301`), so replaying it against
a freshly personalised card gives exactly the recorded bytes; the tests replay
every one (the pytest plugin collects them) and check that re-recording gives
the same exchanges.

They also replay on ANY fresh default card (`sscard replay apdu_traces/*.apdu
--state card.img`, whatever day card.img was personalised): the relative date
keeps the card's age (the activation deadline), and the bytes the issue date
decides are masked with XX: the financial records' expiry and effective dates
(5F24, 5F25) and the expiry YYMM of the track 2 equivalent data (57).
"""

import datetime
import io
import os
import sys
from dataclasses import dataclass

from chip import Card
from chip.apps.ssse_files import DDF_NAME
from chip.iso.apdu import build
from chip.iso.ber import read_length, read_tag
from chip.iso.ins import CHANGE_PIN, GET_DATA, SELECT, VERIFY, cla_ins
from reader.ccid import pinpad
from reader.sim import SimReader
from reader.terminals import flows
from reader.terminals.ssse import SsseTerminal
from reader.traces.replay import RecordingReader, TraceWriter, seeded

ISSUED = datetime.date(2026, 11, 21)
SEED = 20261121
AGENT_ID = "110105198506150022"  # a fictional agent, valid GB 11643
RAW_RUNS = ("apdu", "keypad", "pinpad")  # the runs that are one command or one key, not a flow
SELECT_SSSE = build(*cla_ins(SELECT), 0x04, 0x00, DDF_NAME, le=256)
# the PIN pad's templates for the SSSE's six-digit PIN (P5 §6.14 VERIFY, §6.3 CHANGE PIN: current FF new)
PAD_VERIFY = (pinpad.VERIFY, build(*cla_ins(VERIFY), 0x00, 0x00, b"\xff" * 3))
PAD_CHANGE = (pinpad.MODIFY, build(*cla_ins(CHANGE_PIN), 0x01, 0x00, b"\xff" * 7))
GET_STATE = build(*cla_ins(GET_DATA), 0xDF, 0x7E, le=256)  # the SSSE's activation state (docs/card/lifecycle.md §1)
OK, WRONG_PIN = b"\x90\x00", b"\x63\xc5"  # a wrong PIN: one of the default profile's 6 tries gone


def _pad(template: tuple, answer: bytes, *entries: str) -> list:
    """The runs of one PIN entry on the reader's pad: the entries typed, then the entry itself."""
    return [("keypad", entry) for entry in entries] + [("pinpad", (*template, answer))]


@dataclass
class Curated:
    name: str
    situation: list[str]
    runs: list  # (flow name, parameters), or ("apdu", command) for a raw command before the flows, or on the
    # reader's PIN pad ("keypad", entry) and ("pinpad", (bPINOperation, template, the answer it must give))
    age: int = 0  # the card's date: this many days after its issue date (`@date issued+N`)
    issued: datetime.date = ISSUED

    @property
    def date(self) -> datetime.date:
        return self.issued + datetime.timedelta(days=self.age)


CURATED = [
    Curated("bank-activation", [
        "Bank outlet: the holder activates both applications at once.",
        "Card recognition (P7 §5: SELECT the SSSE, EF05 item 01). The clerk checks the holder's ID",
        "against the card: EF06 item 08, read after external authentication with RKSSSE computed by",
        "the outlet's PSAM (P7 §6; a 3.00 card opens EF06 to RKSSSE only). The holder changes the",
        "initial SSSE PIN 123456 (CHANGE PIN 80 5E 01 00, P7 §9), which activates the social-security",
        "application; then the bank sets the bank PIN and activates the financial application by",
        "issuer scripts (PIN CHANGE, PUT DATA DF7F 01) delivered in a transaction that the",
        "not-yet-activated card declines (AAC)."],
        [("bank-activation", {})]),
    Curated("entrusted-activation", [
        "Bank outlet, entrusted activation: an agent activates the card for the holder.",
        "The terminal refuses without the agent's ID number and a power of attorney; with both, the",
        "chip sees exactly the commands of a bank-outlet activation (P7 §5, §6, §9)."],
        [("entrusted-activation", {"agent_id_number": AGENT_ID, "power_of_attorney": "POA-2026-000123"})]),
    Curated("service-window-activation", [
        "Service window: the holder changes the initial SSSE PIN, which activates the card.",
        "Card recognition (P7 §5), the ID check (EF06 item 08 after external authentication with",
        "RKSSSE, P7 §6), CHANGE PIN 123456 -> the holder's PIN (80 5E 01 00, P7 §9); GET DATA DF7E",
        "then answers 01 (active). The financial application is not touched."],
        [("service-window-activation", {})]),
    Curated("hospital-activation", [
        "Hospital, first use: a settlement in DF04 (medical insurance) activates the card.",
        "The hospital terminal checks the card is genuine (INTERNAL AUTHENTICATE with two terminal",
        "randoms, the PSAM computing the expected answer, P7 §5.4), selects DF04, has the holder",
        "VERIFY the PIN, authenticates with RK1DF04 to read DF04 EF06 items 92/93 (offline settlement",
        "total and count) and with UK2DF04 to write them one settlement further (P7 §7). That first",
        "medical business write activates the SSSE: GET DATA DF7E answers 01."],
        [("hospital-activation", {})]),
    Curated("pharmacy-activation", [
        "Designated pharmacy, first purchase: an offline medical purchase activates the card.",
        "INTERNAL AUTHENTICATE (P7 §5.4), SELECT DF04, VERIFY, then the medical purchase of P7 §12:",
        "INITIALIZE FOR PURCHASE B0 28 01 01 (the card's balance and random), the PSAM's INIT SAM FOR",
        "PURCHASE 80 70 (terminal transaction number, MAC1), DEBIT FOR PURCHASE B0 2C 01 00 (TAC,",
        "MAC2), the PSAM's CREDIT SAM FOR PURCHASE 80 72 (MAC2 checked; PSAM exchanges are not in",
        "this trace). The detail query reads the COS's newest DF04 EF08 record: this purchase,",
        "10.00 yuan off the 500.00 yuan the INITIALIZE answer showed. GET DATA DF7E then answers 01."],
        [("pharmacy-activation", {})]),
    Curated("online-activation", [
        "Online activation: the holder activated the bank account in a city-services app.",
        "The issuer host queued the activation scripts; at the card's next online contact (a small",
        "purchase the not-yet-activated card declines with an AAC) the host sends them back and",
        "the card is activated (GET DATA DF7F = 01)."],
        [("online-activation", {})]),
    Curated("loss-report-and-unlock", [
        "HR-designated terminal: the holder reports the card lost, then finds it again.",
        "Loss report (docs/card/lifecycle.md §3, the project's temporary block): ID check, external authentication",
        "with BK, GET CHALLENGE, APPLICATION BLOCK 84 1E 00 00 with the PSAM's MAC under the STK",
        "process key (the P7 §13.2 pattern). The SSSE then answers its FCI with 6283 to SELECT and",
        "6985 to everything but GET CHALLENGE, EXTERNAL AUTHENTICATE, GET DATA, APPLICATION UNBLOCK",
        "and CARD BLOCK. The unlock, APPLICATION UNBLOCK 84 18 00 00 with BK and a MAC, is done at",
        "the same kind of terminal."],
        [("loss-report", {}), ("loss-unlock", {})]),
    Curated("deadline-unlock", [
        "Activation deadline: the card was issued on 2026-11-21 and its financial application was",
        "not activated within 300 days, so at power-up on 2027-09-18 the SSSE is loss-locked",
        "(reason: deadline). An HR terminal's unlock (BK, 84 18 00 00 with a MAC) is refused (6985)",
        "until the bank activates the financial application; then the same unlock succeeds."],
        [("deadline-unlock", {})], age=301),
    Curated("pin-reset", [
        "Service window, PIN reset: the holder forgot the SSSE PIN and blocked it with six wrong",
        "tries (63C5 ... 63C0, then 6983). After an ID check the window resets the PIN (P7 §13.3):",
        "external authentication with PUK, GET CHALLENGE, PIN reset 84 24 00 01 with the new PIN",
        "enciphered and MACed under the STK process key by its PSAM; VERIFY with the new PIN works."],
        [("apdu", SELECT_SSSE)]
        + [("apdu", build(*cla_ins(VERIFY), 0x00, 0x00, bytes(3)))] * 7  # PIN 000000
        + [("pin-reset", {})]),
    Curated("pinpad-verify-and-change", [
        "Counter with a PIN pad reader: the holder types the PIN on the reader's own keys.",
        "The terminal asks the reader (PC/SC part 10 FEATURE_VERIFY_PIN_DIRECT, a GemPC PinPad) to",
        "verify into the template 00 20 00 00 03 FF FF FF: the pad packs the digits typed in BCD",
        "(P5 §6.14) and sends the VERIFY itself; the PIN never reaches the host (P8 §6.2.4). The",
        "initial PIN 123456 passes, 111111 costs a try (63C5), the cancel key answers 6401 and the",
        "card sees nothing. FEATURE_MODIFY_PIN_DIRECT into 80 5E 01 00 07 + seven FF: the current PIN",
        "and the new one twice give CHANGE PIN 123456 FF 654321 (P5 §6.3), which activates the issued",
        "card (GET DATA DF7E 00, then 01); VERIFY by the pad with 654321 passes."],
        [("apdu", SELECT_SSSE)]
        + _pad(PAD_VERIFY, OK, "123456") + _pad(PAD_VERIFY, WRONG_PIN, "111111")
        + _pad(PAD_VERIFY, pinpad.ERROR_SW[pinpad.PIN_CANCELLED], pinpad.CANCEL)
        + [("apdu", GET_STATE)] + _pad(PAD_CHANGE, OK, "123456", "654321", "654321") + [("apdu", GET_STATE)]
        + _pad(PAD_VERIFY, OK, "654321")),
]


def record(entry: Curated) -> str:
    """Record one curated trace on a fresh card; raise if a flow does not end as expected."""
    card = Card.from_profile("default", date=entry.issued)
    card.set_date(entry.date)
    card.random = seeded(SEED)
    out = io.StringIO()
    directives = {"profile": "default", "date": f"issued+{entry.age}" if entry.age else "issued",
                  "issued": entry.issued, "random": SEED}
    writer = TraceWriter(out, header=entry.situation, directives=directives)
    wrap = lambda reader: RecordingReader(reader, writer=writer)  # noqa: E731
    terminal_random, SsseTerminal.random = SsseTerminal.random, staticmethod(seeded(SEED + 1))
    try:
        _run(entry, card, wrap)
    finally:
        SsseTerminal.random = terminal_random
    return mask_issue_dates(out.getvalue())


ISSUE_DATE_TAGS = (0x5F24, 0x5F25)  # application expiration and effective dates, YYMMDD from the issue date
TRACK2 = 0x57


def issue_date_bytes(response: bytes) -> set[int]:
    """The indices of the response bytes that depend on the card's issue date: the values of 5F24
    and 5F25 and the bytes holding the expiry YYMM of track 2 equivalent data (57), wherever they
    are in the response's BER-TLV (the SW excluded). Not BER-TLV: nothing."""
    found: set[int] = set()

    def walk(start: int, end: int) -> None:
        i = start
        while i < end:
            if response[i] in (0x00, 0xFF):  # padding between data objects
                i += 1
                continue
            tag, j = read_tag(response, i)
            length, k = read_length(response, j)
            if k + length > end:
                raise ValueError("data object runs past its template")
            first = tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")[0]
            if first & 0x20:  # constructed: look inside
                walk(k, k + length)
            elif tag in ISSUE_DATE_TAGS:
                found.update(range(k, k + length))
            elif tag == TRACK2:
                digits = response[k:k + length].hex().upper()
                separator = digits.find("D")
                if separator >= 0:  # YYMM: the 4 nibbles after the separator
                    found.update(range(k + (separator + 1) // 2, k + (separator + 4) // 2 + 1))
            i = k + length

    try:
        walk(0, len(response) - 2)
    except (IndexError, ValueError):
        return set()
    return found


def mask_issue_dates(text: str) -> str:
    """The recorded trace with XX for every response byte the issue date decides (see issue_date_bytes)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("< "):
            body, hash_, comment = line[2:].partition("#")
            response = bytes.fromhex(body)
            masked = issue_date_bytes(response)
            if masked:
                tokens = ["XX" if i in masked else f"{b:02X}" for i, b in enumerate(response)]
                line = "< " + " ".join(tokens) + ("  " + hash_ + comment if hash_ else "")
        lines.append(line)
    return "\n".join(lines) + "\n"


def _run(entry: Curated, card: Card, wrap) -> None:
    reader = None
    for flow, params in entry.runs:
        if flow in RAW_RUNS:
            if reader is None:
                reader = wrap(SimReader(card, keypad=pinpad.Keypad()))
                reader.reset()
            if flow == "apdu":
                reader.transmit(params)
            elif flow == "keypad":
                reader.keypad.press(params)
            else:
                operation, template, answer = params
                op = pinpad.ssse_operation(operation, template)
                got = reader.pin_entry(pinpad.feature_of(op), pinpad.pcsc_structure(op))
                if got != answer:
                    raise RuntimeError(f"curated trace {entry.name}: the PIN entry into {template.hex()} answered "
                                       f"{got.hex()}, not {answer.hex()}")
            continue
        reader = None
        result = flows.run_flow(flow, card, wrap=wrap, **params)
        if not result.ok:
            raise RuntimeError(f"curated trace {entry.name}: flow {flow} refused: {result.message}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = argv[0] if argv else "apdu_traces"
    os.makedirs(folder, exist_ok=True)
    for entry in CURATED:
        path = os.path.join(folder, f"{entry.name}.apdu")
        with open(path, "w", encoding="utf-8") as f:
            f.write(record(entry))
        print(f"recorded {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
