"""Fault injection on the card OS: a card that answers wrong on purpose, reproducibly.

A `FaultPlan` attached as `card.faults` (None by default: `Card.transmit` then
pays one `is not None` test and nothing else) watches every command and, when
one of its faults fires, changes what the card does with it:

    sw XXXX     answer this status word instead of running the command (state unchanged)
    mute        answer nothing: `Card.transmit` raises `CardMute` (command not run, state
                unchanged); `SimReader` propagates it, `sscard serve` sends no reply
    chunk N     run the command, then serve its response data through GET RESPONSE in
                pieces of at most N bytes (1-255): `61xx` first, even on T=1
    tlv         run the command, then flip (XOR FF) the first value byte of the first
                primitive BER-TLV or simple-TLV data object of the response data
                (the middle byte of data that is no TLV)
    delay ETU   run the command, with a simulated busy time: `card.last_delay_etu`
    write       run the command with its first persistent write failing (the backend
                raises OSError at the next write point, `chip.kernel.image` hooks): the card
                answers `6581` and keeps the old state
    atr KIND    not a command but a reset: the card's answer to reset goes wrong as KIND says
                (below, "Resets")

Matching (all optional, all must hold): `ins XX`, `cla XX` (hex), `nth N` (the
N-th command since the fault was added, 1-based). Triggers: `always`
(default), `once` (the first match only), `every N` (the N-th, 2N-th, ...
match), `random P [seed S]` (each match with probability P, from a
`random.Random(S)` of the fault's own: repeatable). `once` combines with the
others (the first time they fire).

Python:

    from chip.faults import FaultPlan, inject
    card.faults = FaultPlan()
    card.faults.add("sw", 0x6581, ins=0xB2, every=2)   # or a Fault, or the text form
    card.faults.add("tlv ins B2 once")
    inject(card, "mute", nth=3)                       # creates the plan when there is none
    card.faults.clear()                               # or card.faults = None

Text (`sscard serve` control line `fault [N] TEXT` / `fault [N] clear`, trace
directive `@fault TEXT`, inline trace line `! fault TEXT` / `! fault clear`),
parsed by `parse_fault` (ValueError naming the bad word): the action and its
value first, then the matching and trigger words in any order:

    sw 6581 ins B2 once
    chunk 4 ins A4
    mute random 0.3 seed 7 ins 20    # = mute ins 20 random 0.3 seed 7
    delay 20000 nth 2

(tests/test_fault_injection.py parses every line of this block and runs the
Python block above on a card.)

Resets (`atr KIND`). An `atr` fault spoils the card's answer to reset where a reader runs the
activation of LD/T 32 P2 §6.1.3 (`chip.contacts.activation.answer_to_reset`: `WireReader.reset`,
reader/link/activation.py). It counts resets, not commands - `nth N` is the N-th reset since the
fault was added, cold and warm alike - so with `once` only the cold reset's answer is spoilt, and
with `always` the warm reset's too. A reset has no CLA or INS: `ins` and `cla` are refused. The
kinds, against P2 §6.1.3 and §8.1, and what the reader does (P2 §8.5):

    mute        no ATR: I/O stays high. The reader deactivates 40 000 clocks after RST rose
    late        TS starts 40 001 clocks after RST rises, one more than P2 allows: as mute
    gap         T0 starts 9601 initial etu after TS, one more than the initial waiting time:
                the reader deactivates at once
    long        each character 9600 etu after the one before (the most P2 allows), so an ATR of
                three or more characters is not finished within 19 200 etu: a warm reset
    garbled     T0 arrives with a bit flipped, its parity wrong (no repetition during the ATR,
                P2 §9.2.3): a warm reset
    tck         the TCK is wrong (XOR FF); an ATR that offers T=0 only gets a TCK, which P8 §5.1.3.4
                rejects: a warm reset
    ts          every bit of TS flipped: neither 3B nor 3F. A warm reset

Reset examples (tests/test_activation.py parses each and runs it on a WireReader):

    atr tck once     # the cold reset's ATR is rejected, the warm reset's accepted
    atr garbled      # = atr garbled always: the warm reset's fails too, the card is deactivated
    atr late once    # no warm reset after a late ATR: deactivated
    atr mute nth 2   # the second reset gets no answer

Commands the plan makes itself (GET RESPONSE to collect `61xx` data before
`tlv`/`chunk`) and the GET RESPONSE pieces of `chunk` are not counted as
commands. The wire (`reader.wire.WireReader`) asks for a command's busy time
*before* the card runs it: pass `Faults(slow_etu=card.faults.slow_etu)`, which
decides the plan's faults for that APDU early (the following transmit uses
the same decision); `card.last_delay_etu` holds the delay of the last command
(0 when none) for anyone reading it afterwards.
"""

import errno
import random
from dataclasses import dataclass, replace
from functools import reduce
from operator import xor

from chip.contacts.activation import ATR_LATEST_CLOCKS, INITIAL_ETU_CLOCKS, INITIAL_WAITING_ETU, AtrSignal
from chip.contacts.atr import parse_atr
from chip.contacts.timing import CARD_CHARACTER_ETU
from chip.iso.apdu import parse
from chip.iso.ber import read_tag
from chip.iso.sw import SW1_MORE_DATA, SW_WRONG_P1P2, CardError
from chip.kernel.delivery import GET_RESPONSE_HEADER, get_response, more_data, status
from chip.kernel.power import CardMute

ACTIONS = ("sw", "mute", "chunk", "tlv", "delay", "write", "atr")
ATR_KINDS = ("mute", "late", "gap", "long", "garbled", "tck", "ts")  # what an `atr` fault does (docstring)
_WITH_VALUE = {"sw": "a status word (4 hex digits)", "chunk": "a piece size (1-255)",
               "delay": "a busy time in etu", "atr": f"a kind of bad ATR ({', '.join(ATR_KINDS)})"}
_GET_RESPONSE = GET_RESPONSE_HEADER[:2]


@dataclass(frozen=True)
class Fault:
    """What to do (`action`, `value`), to which commands, and when. Immutable: the counting
    lives in the plan, so one Fault can be added to several plans (a trace replayed twice)."""

    action: str
    value: int | str | None = None  # a number; for `atr` one of ATR_KINDS
    ins: int | None = None
    cla: int | None = None
    nth: int | None = None
    once: bool = False
    every: int = 1
    probability: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r} (known: {', '.join(ACTIONS)})")
        if self.action in _WITH_VALUE:
            if self.value is None:
                raise ValueError(f"fault {self.action} needs {_WITH_VALUE[self.action]}")
        elif self.value is not None:
            raise ValueError(f"fault {self.action} takes no value")
        if self.action == "atr":
            if self.value not in ATR_KINDS:
                raise ValueError(f"fault atr: {self.value!r} is no kind of bad ATR (known: {', '.join(ATR_KINDS)})")
            if self.ins is not None or self.cla is not None:
                raise ValueError("fault atr acts on a reset, which has no CLA or INS: "
                                 "match it with nth, once, always, every or random")
        elif self.value is not None and not isinstance(self.value, int):
            raise ValueError(f"fault {self.action} needs {_WITH_VALUE[self.action]}, not {self.value!r}")
        limits = {"sw": (0, 0xFFFF), "chunk": (1, 255), "delay": (0, 1 << 40)}.get(self.action)
        if limits and not limits[0] <= _value(self) <= limits[1]:
            raise ValueError(f"fault {self.action}: {self.value} is out of range")
        for name in ("ins", "cla"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 0xFF:
                raise ValueError(f"fault {name} must be one byte, not {v}")
        if self.nth is not None and self.nth < 1:
            raise ValueError("fault nth counts from 1")
        if self.every < 1:
            raise ValueError("fault every needs a count of 1 or more")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("fault random needs a probability between 0 and 1")

    def __str__(self) -> str:
        words = [self.action]
        if self.value is not None:
            words.append(f"{self.value:04X}" if self.action == "sw" else str(self.value))
        if self.ins is not None:
            words += ["ins", f"{self.ins:02X}"]
        if self.cla is not None:
            words += ["cla", f"{self.cla:02X}"]
        if self.nth is not None:
            words += ["nth", str(self.nth)]
        if self.probability is not None:
            words += ["random", repr(self.probability), "seed", str(self.seed)]
        elif self.every != 1:
            words += ["every", str(self.every)]
        if self.once:
            words.append("once")
        return " ".join(words)


def parse_fault(text: str) -> Fault:
    """`ACTION [VALUE] [ins XX] [cla XX] [nth N] [once|always|every N|random P [seed S]]`."""
    words = text.split()
    if not words:
        raise ValueError("empty fault: expected one of " + ", ".join(ACTIONS))
    action = words[0].lower()
    if action not in ACTIONS:
        raise ValueError(f"unknown fault action {words[0]!r} (known: {', '.join(ACTIONS)})")
    kw: dict = {}
    i = 1

    def take(what: str, convert):
        nonlocal i
        word = words[i - 1]
        if i >= len(words):
            raise ValueError(f"{word!r} needs {what}")
        value = words[i]
        i += 1
        try:
            return convert(value)
        except ValueError:
            raise ValueError(f"bad word {value!r}: {word} needs {what}") from None

    if action in _WITH_VALUE:
        if action == "sw":
            kw["value"] = take("a status word (4 hex digits)", _hex(4))
        elif action == "atr":
            kw["value"] = take(_WITH_VALUE[action], str.lower)
        else:
            kw["value"] = take(_WITH_VALUE[action], int)
    while i < len(words):
        word = words[i].lower()
        i += 1
        if word in ("ins", "cla"):
            kw[word] = take("a hex byte", _hex(2))
        elif word in ("nth", "every"):
            kw[word] = take("a whole number", int)
        elif word == "seed":
            kw["seed"] = take("a whole number", int)
        elif word == "random":
            kw["probability"] = take("a probability (0-1)", float)
        elif word == "once":
            kw["once"] = True
        elif word != "always":
            raise ValueError(f"bad word {words[i - 1]!r} in fault {text.strip()!r} "
                             "(expected ins, cla, nth, once, always, every, random, seed)")
    try:
        return Fault(action, **kw)
    except ValueError as exc:
        raise ValueError(f"{exc} (in {text.strip()!r})") from None


def _hex(digits: int):
    def convert(word: str) -> int:
        if len(word) != digits:
            raise ValueError(word)
        return int(word, 16)
    return convert


class _Armed:
    """A fault in a plan, with its counters and random source."""

    def __init__(self, fault: Fault, base: int):
        self.fault = fault
        self.base = base  # plan.commands when added: nth counts from there
        self.matches = 0
        self.fired = 0
        self.rng = random.Random(fault.seed)

    def fires(self, n: int, cla, ins) -> bool:
        f = self.fault
        if f.nth is not None and n - self.base != f.nth:
            return False
        if (f.ins is not None and ins != f.ins) or (f.cla is not None and cla != f.cla):
            return False
        self.matches += 1
        if f.once and self.fired:
            return False
        if f.probability is not None:
            hit = self.rng.random() < f.probability
        else:
            hit = self.matches % f.every == 0
        self.fired += hit
        return hit


class FaultPlan:
    """The faults attached to one card (`card.faults = FaultPlan()`); see the module docstring."""

    def __init__(self, faults=()):
        self._armed: list[_Armed] = []
        self.commands = 0  # commands seen since the plan was made or cleared
        self.resets = 0  # resets seen (answer_to_reset) since then: what `atr` faults count
        self.log: list[tuple[int, str]] = []  # (command number - reset number for `atr` -, fault) for every fault that fired
        self._held: tuple[bytes, bytes, int] | None = None  # (data, final SW bytes, piece size) a `chunk` fault is serving
        self._early: tuple[bytes, list[Fault]] | None = None  # (apdu, decision) made by slow_etu() before the transmit
        for fault in faults:
            self.add(fault)

    @property
    def faults(self) -> list[Fault]:
        return [armed.fault for armed in self._armed]

    def add(self, fault, value=None, **kw) -> Fault:
        """Add a `Fault`, a text form (`"sw 6581 ins B2 once"`), or an action with its value and
        keywords (`add("sw", 0x6581, ins=0xB2, every=2)`); returns the Fault."""
        if not isinstance(fault, Fault):
            fault = Fault(fault, value, **kw) if value is not None or kw else parse_fault(fault)
        self._armed.append(_Armed(fault, self.resets if fault.action == "atr" else self.commands))
        return fault

    def clear(self) -> None:
        """Remove every fault and start counting commands again."""
        FaultPlan.__init__(self)

    def fired(self, fault: Fault | None = None) -> int:
        """How many times `fault` (any fault: None) fired."""
        return sum(1 for _, f in self.log if fault is None or f == str(fault))

    # -- deciding ------------------------------------------------------------------------
    def _decide(self, apdu: bytes) -> list[Fault]:
        self.commands += 1
        n = self.commands
        cla, ins = (apdu[0], apdu[1]) if len(apdu) >= 2 else (None, None)
        fired = [armed.fault for armed in self._armed if armed.fault.action != "atr" and armed.fires(n, cla, ins)]
        self.log += [(n, str(f)) for f in fired]
        return fired

    def answer_to_reset(self, signal: AtrSignal) -> AtrSignal:
        """The card's answer to this reset (chip.contacts.activation.answer_to_reset calls it): `signal`,
        or what the first `atr` fault that fires makes of it (the module docstring's kinds)."""
        self.resets += 1
        n = self.resets
        fired = [armed.fault for armed in self._armed if armed.fault.action == "atr" and armed.fires(n, None, None)]
        self.log += [(n, str(f)) for f in fired]
        return bad_atr(signal, str(fired[0].value)) if fired else signal

    def slow_etu(self, apdu: bytes) -> int:
        """The busy time the plan gives `apdu` (for `reader.wire.Faults(slow_etu=...)`): decides
        this command's faults now; the card's next transmit of the same APDU uses that decision."""
        if self._held is not None and bytes(apdu[:2]) == _GET_RESPONSE:
            return 0
        decision = self._decide(bytes(apdu))
        self._early = (bytes(apdu), decision)
        return sum(_value(f) for f in decision if f.action == "delay")

    # -- acting (called by Card.transmit when card.faults is set) --------------------------
    def transmit(self, card, apdu: bytes) -> bytes:
        card.faults = None  # the card's own transmit runs without the plan (and what the plan sends)
        try:
            return self._transmit(card, bytes(apdu))
        finally:
            card.faults = self

    def _transmit(self, card, apdu: bytes) -> bytes:
        if not card.powered:
            return card.transmit(apdu)  # raises CardNotPowered
        if self._held is not None and apdu[:2] == _GET_RESPONSE:
            return self._piece(apdu)
        self._held = None
        early, self._early = self._early, None
        fired = early[1] if early is not None and early[0] == apdu else self._decide(apdu)
        card.last_delay_etu = sum(_value(f) for f in fired if f.action == "delay")
        if not fired:
            return card.transmit(apdu)
        actions = {f.action: f for f in fired}  # the first of each action wins
        if "mute" in actions:
            raise CardMute(f"injected fault: no answer to {apdu[:5].hex(' ').upper()}")
        if "sw" in actions:
            return status(_value(actions["sw"]))
        if "write" in actions:
            response = _with_failed_write(card, apdu)
        else:
            response = card.transmit(apdu)
        if "tlv" not in actions and "chunk" not in actions:
            return response
        data, sw = _collect(card, response)
        if not data:
            return response
        if "tlv" in actions:
            data = corrupt_tlv(data)
        if "chunk" in actions:
            n = _value(actions["chunk"])
            self._held = (data, sw, n)
            return more_data(min(n, len(data)))
        if response[-2] == SW1_MORE_DATA:  # T=0: the data stays behind 61xx as it was
            return card.hold_response(data, sw)
        return data + sw

    def _piece(self, apdu: bytes) -> bytes:
        """GET RESPONSE for the data a `chunk` fault holds: at most its piece size each time."""
        try:
            cmd = parse(apdu)
        except CardError as error:
            return status(error.sw)
        if cmd.p1 or cmd.p2:
            return status(SW_WRONG_P1P2)
        assert self._held is not None  # _transmit serves GET RESPONSE here only while it holds data
        data, sw, n = self._held
        k = min(n, cmd.ne, len(data))
        piece, left = data[:k], data[k:]
        if left:
            self._held = (left, sw, n)
            return piece + more_data(min(n, len(left)))
        self._held = None
        return piece + sw


def _value(fault: Fault) -> int:
    """The number of a fault whose action needs one (`sw`, `chunk`, `delay`: Fault requires it)."""
    assert isinstance(fault.value, int), fault
    return fault.value


def bad_atr(signal: AtrSignal, kind: str) -> AtrSignal:
    """`signal` spoilt as the `atr` fault `kind` says (ATR_KINDS; the module docstring gives each)."""
    atr, starts = signal.atr, signal.starts
    if kind == "mute" or not atr:
        return AtrSignal()
    if kind == "late":
        shift = ATR_LATEST_CLOCKS + 1 - starts[0]
        return replace(signal, starts=tuple(start + shift for start in starts))
    if kind == "gap":
        shift = starts[0] + (INITIAL_WAITING_ETU + 1) * INITIAL_ETU_CLOCKS - starts[1]
        return replace(signal, starts=starts[:1] + tuple(start + shift for start in starts[1:]))
    if kind == "long":
        step = INITIAL_WAITING_ETU * INITIAL_ETU_CLOCKS
        return replace(signal, starts=tuple(starts[0] + i * step for i in range(len(atr))))
    if kind == "garbled":
        return AtrSignal(atr[:1] + bytes((atr[1] ^ 0x01,)) + atr[2:], starts, signal.bad_parity | {1})
    if kind == "ts":  # all eight bits flipped: the parity stays right, the value is wrong
        return replace(signal, atr=bytes((atr[0] ^ 0xFF,)) + atr[1:])
    if kind == "tck":
        if parse_atr(atr).tck is not None:
            return replace(signal, atr=atr[:-1] + bytes((atr[-1] ^ 0xFF,)))
        tck = reduce(xor, atr[1:], 0)  # what a TCK would be: T0 ... TCK XOR to 00
        return AtrSignal(atr + bytes((tck,)), (*starts, starts[-1] + CARD_CHARACTER_ETU * INITIAL_ETU_CLOCKS),
                         signal.bad_parity)
    raise ValueError(f"{kind!r} is no kind of bad ATR (known: {', '.join(ATR_KINDS)})")


def inject(card, action, value=None, **kw) -> Fault:
    """Add a fault to `card.faults`, making the plan when the card has none."""
    if card.faults is None:
        card.faults = FaultPlan()
    return card.faults.add(action, value, **kw)


def _with_failed_write(card, apdu: bytes) -> bytes:
    backend = card.store.backend
    previous = backend.write_point

    def fail(point: str, landed: bool) -> None:
        backend.write_point = previous
        raise OSError(errno.EIO, f"injected write failure at {point}")

    backend.write_point = fail
    try:
        return card.transmit(apdu)
    finally:
        backend.write_point = previous


def _collect(card, response: bytes) -> tuple[bytes, bytes]:
    """All the response data (fetching what the card holds behind `61xx`) and the final SW."""
    data, sw = response[:-2], response[-2:]
    while sw[0] == SW1_MORE_DATA:
        more = card.transmit(get_response(sw[1]))
        data, sw = data + more[:-2], more[-2:]
    return data, sw


def corrupt_tlv(data: bytes) -> bytes:
    """`data` with the first value byte of its first primitive data object flipped (XOR FF)."""
    out = bytearray(data)
    try:
        start = _first_value(out, 0, len(out))
    except (ValueError, IndexError):
        start = None
    out[len(out) // 2 if start is None else start] ^= 0xFF
    return bytes(out)


def _first_value(data, i: int, end: int) -> int:
    """Index of the first value byte of the first primitive object in data[i:end]."""
    while i < end and data[i] in (0x00, 0xFF):  # padding
        i += 1
    constructed = data[i] & 0x20
    _, i = read_tag(data, i)
    if data[i] == 0xFF:  # simple-TLV three-byte length
        length, i = data[i + 1] << 8 | data[i + 2], i + 3
    elif data[i] < 0x80:
        length, i = data[i], i + 1
    else:
        count = data[i] & 0x7F
        if not 1 <= count <= 3:
            raise ValueError("bad length")
        length, i = int.from_bytes(data[i + 1:i + 1 + count], "big"), i + 1 + count
    if not length or i + length > end:
        raise ValueError("no value")
    if constructed:
        try:
            return _first_value(data, i, i + length)
        except (ValueError, IndexError):
            pass
    return i
