"""A load generator for fleets (docs/fleets.md): many cards, mixed real-world flows, one process.

`load(fleet, cards, seconds=... | rounds=..., mix=...)` drives the cards of a
`chip.fleet.Fleet` round-robin (one thread) or split over a thread pool
(`threads=N`, each card always on the same worker: a card is never used by two
threads at once). Each visit of a card runs the next flow of the mix for that
card, every APDU through a `SimReader`:

- `ssse`: SELECT the SSSE, VERIFY the PIN (P7 §5.6-§5.8), READ RECORD x7 of
  EF05 with each record's exact Le (free to read; P7 §5 step 1.4b) - the bench
  mix, raw APDUs (on T=0 the SELECT's `61xx` is fetched with GET RESPONSE);
- `purchase`: a PBOC purchase through `PaymentTerminal` with the bank PIN,
  online to an `IssuerHost`; a card whose financial application is not yet
  activated first gets it activated online (the city-services app path: the
  declined transaction carries the issuer scripts), as a bank would;
- `hospital`: a hospital settlement (`SsseTerminal.register`): SELECT DF04,
  VERIFY, EXTERNAL AUTHENTICATE with RK1DF04 through the terminal's PSAM, READ
  RECORD of DF04 EF06 items 92/93 (total, count), EXTERNAL AUTHENTICATE with
  UK2DF04, UPDATE RECORD of both (P7 §7; V2 table 9).

Returns a `LoadResult`: APDUs sent to the cards (PSAM APDUs not counted),
seconds, errors (flows that did not end as expected, and visits to a card whose image cannot be
opened) and the first error messages. The mix is a dict `{flow: weight}` or a sequence of flow names; a
card visits them in a fixed order, so a run is reproducible.
"""

import datetime
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from chip import Card, ImageError
from chip.apps.ssse import DDF_NAME
from chip.apps.ssse_files import EF05_ITEMS
from chip.contacts.atr import parse_atr
from chip.iso.apdu import build
from chip.iso.ins import GET_RESPONSE, READ_RECORD, SELECT, VERIFY, cla_ins
from chip.iso.sw import SW1_MORE_DATA, SW_OK, sw_of
from reader.sim import SimReader
from reader.terminals.issuer import IssuerHost
from reader.terminals.payment import KernelError, PaymentTerminal
from reader.terminals.psam import Psam, PsamError
from reader.terminals.ssse import SsseTerminal, TerminalError

SSSE_PIN = "123456"  # the initial SSSE PIN of the shipped profiles
BANK_PIN = "135790"  # the bank PIN the load generator sets when it activates a card
SELECT_SSSE = build(*cla_ins(SELECT), 0x04, 0x00, DDF_NAME)
VERIFY_SSSE = build(*cla_ins(VERIFY), 0x00, 0x00, bytes.fromhex(SSSE_PIN))
# EF05 records 1-7 by number (SFI 5), each with its exact length as Le (tag, length, the item's value):
# Le 00 would be answered 6Cxx (P5 §6.10.4). EF06 is not in the mix: a 3.00 card opens it to RKSSSE only.
READS = tuple(build(*cla_ins(READ_RECORD), number, 5 << 3 | 4, le=2 + item.length)
              for number, item in enumerate(EF05_ITEMS, 1))
SSSE_COMMANDS = (SELECT_SSSE, VERIFY_SSSE) + READS  # the mix as a terminal's application sends it
FETCH = bytes((*cla_ins(GET_RESPONSE), 0x00, 0x00))  # GET RESPONSE without its Le
FCI_LENGTH = 0x1E  # the SSSE's FCI, 6F 1C ... (P5 table 36 as real cards answer it)
# The same mix as the default card (T=0, P2) sees it on its contacts: the SELECT answers 61 1E and the
# reader fetches the FCI with GET RESPONSE (P2 §9.3, P7 §5 step 1.2) - every exchange answers 9000.
SSSE_MIX = (SELECT_SSSE, FETCH + bytes((FCI_LENGTH,)), VERIFY_SSSE) + READS
HOSPITAL_AMOUNT = 500  # fen per hospital settlement
DEFAULT_MIX = {"ssse": 8, "purchase": 1, "hospital": 1}


@dataclass
class LoadResult:
    apdus: int = 0
    seconds: float = 0.0
    errors: int = 0
    flows: dict = field(default_factory=dict)  # flow name -> runs
    visits: int = 0  # flows run, all cards together
    samples: list = field(default_factory=list)  # the first error messages ("card-0003 purchase: ...")

    @property
    def apdus_per_second(self) -> float:
        return self.apdus / self.seconds if self.seconds else 0.0

    def merge(self, other: "LoadResult") -> None:
        self.apdus += other.apdus
        self.errors += other.errors
        self.visits += other.visits
        for name, runs in other.flows.items():
            self.flows[name] = self.flows.get(name, 0) + runs
        self.samples.extend(other.samples[:10 - len(self.samples)])

    def summary(self) -> str:
        flows = ", ".join(f"{name} {runs}" for name, runs in sorted(self.flows.items()))
        return (f"{self.apdus} APDUs in {self.seconds:.2f} s ({self.apdus_per_second:,.0f} APDU/s), "
                f"{self.visits} flows ({flows}), {self.errors} errors")


class CountingReader(SimReader):
    """A SimReader that counts the APDUs it sends (shared counter of one worker)."""

    def __init__(self, card: Card, counter: list):
        super().__init__(card)
        self.counter = counter

    def transmit(self, apdu: bytes) -> bytes:
        self.counter[0] += 1
        return self.card.transmit(bytes(apdu))


class FlowFailed(Exception):
    pass


class _Worker:
    """One thread's terminals: a PSAM, an issuer host, and the flows over its cards."""

    def __init__(self, fleet, profile, amount: int):
        self.fleet = fleet
        self.psam = Psam(SimReader(Card.psam(profile)))
        self.host = IssuerHost(profile)
        self.amount = amount
        self.counter = [0]
        self.result = LoadResult()

    # -- flows ------------------------------------------------------------------------------------
    def ssse(self, card: Card) -> None:
        if not card.powered:
            card.power_on(parse_atr(card.atr).default_protocol)  # the card's protocol: T=0 on the default card
        transmit = card.transmit
        sent = 0
        for apdu in SSSE_COMMANDS:
            response = transmit(apdu)
            sent += 1
            while response[-2] == SW1_MORE_DATA:  # T=0: the SELECT's FCI waits for GET RESPONSE (P2 §9.3)
                response = transmit(FETCH + response[-1:])
                sent += 1
            if sw_of(response) != SW_OK:
                self.counter[0] += sent
                raise FlowFailed(f"{apdu[:4].hex().upper()} answered {response[-2:].hex().upper()}")
        self.counter[0] += sent

    def purchase(self, card: Card) -> None:
        reader = CountingReader(card, self.counter)
        pos = PaymentTerminal(reader, date=card.today)
        if not card.financial_activated():  # the issuer's records say so: activate online first
            self.host.queue(_pan(card), IssuerHost.activation(BANK_PIN))
            outcome = pos.purchase(0, host=self.host)
            if not outcome.script_results or any(sw != SW_OK for _, sw in outcome.script_results):
                raise FlowFailed(f"online activation: scripts answered {outcome.script_results}")
        outcome = pos.purchase(self.amount, pin=BANK_PIN, host=self.host)
        if not outcome.approved or outcome.pin_sw != SW_OK:
            raise FlowFailed(f"purchase declined: {outcome.summary}, VERIFY {outcome.pin_sw:04X}")

    def hospital(self, card: Card) -> None:
        reader = CountingReader(card, self.counter)
        terminal = SsseTerminal(reader, self.psam)
        sw = terminal.start()
        if sw != SW_OK:
            raise FlowFailed(f"SELECT SSSE answered {sw:04X}")
        sw = terminal.register(SSSE_PIN, HOSPITAL_AMOUNT)
        if sw != SW_OK:
            raise FlowFailed(f"hospital settlement answered {sw:04X}")

    # -- the loop --------------------------------------------------------------------------------
    def run(self, names: list, schedule: list, deadline: float | None, rounds: int | None, stop) -> LoadResult:
        result = self.result
        fleet = self.fleet
        flows = {name: getattr(self, name) for name in set(schedule)}
        period = len(schedule)
        visits = dict.fromkeys(names, 0)
        for round_number in itertools.count():
            if rounds is not None and round_number >= rounds:
                break
            for name in names:
                if stop.is_set() or (deadline is not None and time.perf_counter() >= deadline):
                    stop.set()
                    break
                turn = visits[name]
                visits[name] = turn + 1
                flow = schedule[(turn + _offset(name)) % period]
                result.flows[flow] = result.flows.get(flow, 0) + 1
                result.visits += 1
                try:
                    flows[flow](fleet[name])  # an image-backed card is opened at its first visit
                except (FlowFailed, TerminalError, PsamError, KernelError, ValueError, ImageError) as error:
                    result.errors += 1  # an image that cannot be opened fails that visit, not the run
                    if len(result.samples) < 10:
                        result.samples.append(f"{name} {flow}: {error}")
            if stop.is_set():
                break
        result.apdus = self.counter[0]
        return result


def _pan(card: Card) -> str:
    from reader.terminals.flows import issuer_records

    return issuer_records(card)[1]


def _offset(name: str) -> int:
    """Spread the cards over the schedule, so that not every card runs the same flow in the same round."""
    return sum(name.encode())


def schedule_of(mix) -> list[str]:
    """`{flow: weight}` or a sequence of flow names -> the per-card order of flows (interleaved)."""
    if isinstance(mix, str):
        mix = [mix]
    weights = dict(mix) if isinstance(mix, dict) else dict.fromkeys(mix, 1)
    unknown = set(weights) - set(DEFAULT_MIX)
    if unknown:
        raise ValueError(f"unknown flow {sorted(unknown)[0]!r} (flows: {', '.join(DEFAULT_MIX)})")
    if not weights or any(not isinstance(w, int) or w < 0 for w in weights.values()) or not sum(weights.values()):
        raise ValueError(f"the mix needs flows with whole, non-negative weights, not {mix!r}")
    schedule, left = [], dict(weights)
    while any(left.values()):  # round-robin over the flows still owed: ssse, purchase, hospital, ssse, ssse...
        for name in weights:
            if left[name]:
                schedule.append(name)
                left[name] -= 1
    return schedule


def load(fleet, cards=None, seconds: float | None = None, rounds: int | None = None, mix=None,
         threads: int = 1, profile: str = "default", amount: int = 1234) -> LoadResult:
    """Drive `cards` (names; default every card of `fleet`, or the first N when an int) with `mix`.

    Stops after `seconds`, or after `rounds` visits of every card (one of them
    must be given). `threads` > 1 splits the cards over a thread pool (the GIL
    serialises them: this measures contention, not extra throughput).
    `profile` names the keys of the PSAM and the issuer host.
    """
    if (seconds is None) == (rounds is None):
        raise ValueError("give seconds or rounds (one of them)")
    names = fleet.names() if cards is None else (fleet.names()[:cards] if isinstance(cards, int) else list(cards))
    if not names:
        raise ValueError("no cards to drive")
    schedule = schedule_of(DEFAULT_MIX if mix is None else mix)
    threads = max(1, min(threads, len(names)))
    workers = [_Worker(fleet, profile, amount) for _ in range(threads)]
    shares = [names[i::threads] for i in range(threads)]
    stop = threading.Event()
    start = time.perf_counter()
    deadline = None if seconds is None else start + seconds
    if threads == 1:
        results = [workers[0].run(shares[0], schedule, deadline, rounds, stop)]
    else:
        with ThreadPoolExecutor(threads, thread_name_prefix="sscard-load") as pool:
            futures = [pool.submit(w.run, share, schedule, deadline, rounds, stop) for w, share in zip(workers, shares)]
            results = [f.result() for f in futures]
    total = LoadResult(seconds=time.perf_counter() - start)
    for result in results:
        total.merge(result)
    return total


def main(argv=None) -> int:
    """`python -m reader.terminals.fleet_load [N] [SECONDS]`: N in-memory cards under the default mix."""
    import sys

    from chip.fleet import Fleet

    args = list(sys.argv[1:] if argv is None else argv)
    n = int(args[0]) if args else 100
    seconds = float(args[1]) if len(args) > 1 else 5.0
    fleet = Fleet(date=datetime.date.today())
    fleet.personalize(n)
    result = load(fleet, seconds=seconds)
    print(result.summary())
    for sample in result.samples:
        print(f"  {sample}")
    return 1 if result.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
