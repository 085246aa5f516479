"""The card's Answer To Reset (ISO/IEC 7816-3 §8, LD/T 32 P2 §8): declared, built and parsed.

The ATR is declared once with `construct` (`ATR`): TS, then *interface
groups* - T0 or TDi followed by the TAi/TBi/TCi it announces - repeated while
a TD byte announces another group, then the K historical bytes and TCK (the
XOR of T0..the last historical byte, present unless only T=0 is offered).

`AtrConfig` describes the card's ATR (a profile's `[atr]` table fills it);
`build(config)` makes the bytes. The default is P2's basic ATR (Table 7: a
T=0 card without clock stop or class indication), `3B 6D 00 00` and the 13
historical bytes of P2 Table 16:

    TS 3B direct convention · T0 6D (TB1 TC1, K=13) · TB1 00 (no VPP, P2 §8.3.3.3)
    TC1 00 (no extra guard time) · no TA1: Fi/Di 372/1 for the whole session (P2 §8.3.3.2)
    no TD1: T=0 only (P2 §8.3.3.5) · no TCK (P2 §8.3.3.11)
    historical 00 81 | 53 53 43 | 86 99 | 11 01 | 00 00 00 01
               chip supplier, COS, card manufacturer, region 1101.., card serial

A profile may offer T=1 and a faster TA1 (the shipped `t1` profile:
`3B 9D 13 80 31 FE 45` + the same 13 bytes + TCK).

`parse_atr(data)` reads any ATR into an `Atr` (the values the contacts need:
protocols, Fi/Di, N, WI, IFSC, BWI/CWI, EDC, specific mode) or refuses a
malformed one with `AtrError` and the reason. `announced(data)` says how long the ATR
that `data` begins is, from its structure alone (for a reader taking it character by character). It is pure, so the reader side
(reader/link/atr.py) re-exports it; chip/ never imports reader/. The Fi/Di tables and the
times the parameters give (character, WWT, BWT, CWT) are chip/contacts/timing.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce
from operator import xor
from typing import Any, NamedTuple

from construct import (
    BitStruct,
    Bytes,
    Checksum,
    ChecksumError,
    ConstructError,
    Flag,
    If,
    Int8ub,
    Nibble,
    OneOf,
    RawCopy,
    RepeatUntil,
    Struct,
    Terminated,
    this,
)

from chip.contacts.t1 import IFS_DEFAULT
from chip.contacts.timing import (
    CARD_CHARACTER_ETU,
    DEFAULT_BWI,
    DEFAULT_CWI,
    DEFAULT_FI_DI,
    DEFAULT_WI,
    DI_TABLE,
    EDC_CRC,
    EDC_KINDS,
    EDC_LRC,
    FI_TABLE,
    bwt_etu,
    character_etu,
    cwt_etu,
    wwt_etu,
)

# P2 Table 16 (the default profile, docs/card/README.md): chip supplier 00 81, COS 53 53 43,
# manufacturer 86 99, region 11 01, serial 00 00 00 01
DEFAULT_HISTORICAL = bytes.fromhex("00815353438699110100000001")
# What the card said before its ATR followed P2 (an image made then, without the newer values, keeps it)
LEGACY_HISTORICAL = bytes.fromhex("805A") + b"SSCARD-SIM"  # category 80, issuer data (tag 5, len 10)

MAX_LENGTH = 33  # TS and at most 32 further characters (ISO 7816-3 §8.2.1; PC/SC MAX_ATR_SIZE)

TABLE16_LENGTH = 13  # P2 §8.4: the social-security card's historical bytes, first byte 00 (chip supplier 00 81)


class AtrError(ValueError):
    """A malformed ATR; the message is the reason."""


# -- the declaration --------------------------------------------------------------------------

# T0 and every TDi: which of TA/TB/TC/TD follow (b5..b8), and K (T0) or the protocol T (TDi).
_Y = BitStruct("td" / Flag, "tc" / Flag, "tb" / Flag, "ta" / Flag, "low" / Nibble)

# One interface group: T0 or TDi, then the TA(i+1) TB(i+1) TC(i+1) it announces. Its TD is
# the next group's first byte.
_Group = Struct(
    "y" / _Y,
    "ta" / If(this.y.ta, Int8ub),
    "tb" / If(this.y.tb, Int8ub),
    "tc" / If(this.y.tc, Int8ub),
)


def _needs_tck(ctx) -> bool:
    """TCK is present unless only T=0 is indicated (no TD, or every TD says T=0)."""
    return any(group["y"]["low"] != 0 for group in ctx.body.value.groups[1:])


ATR = Struct(
    "ts" / OneOf(Int8ub, (0x3B, 0x3F)),
    "body" / RawCopy(Struct(
        "groups" / RepeatUntil(lambda group, _, __: not group["y"]["td"], _Group),
        "historical" / Bytes(lambda ctx: ctx.groups[0]["y"]["low"]),
    )),
    "tck" / If(_needs_tck, Checksum(Int8ub, lambda data: reduce(xor, data, 0), this.body.data)),
    Terminated,
)


# -- the card's configuration -----------------------------------------------------------------

# The profile's and the image's names for the offered protocols (`[atr] protocols = "t0+t1"`).
PROTOCOL_NAMES = {(0,): "t0", (0, 1): "t0+t1", (1,): "t1"}
PROTOCOLS_BY_NAME = {name: protocols for protocols, name in PROTOCOL_NAMES.items()}


@dataclass(frozen=True)
class AtrConfig:
    """What the card says in its ATR. The defaults give P2's basic ATR `3B 6D 00 00` + 13 historical bytes.

    Every optional interface byte is None when absent.
    """

    fi_di: int | None = None  # TA1: Fi index (high nibble), Di index (low nibble); None: absent = 11 (372/1)
    tb1: int | None = 0x00  # TB1: 00 = no VPP (P2 §8.3.3.3, P10 §5.1.2); None: absent
    guard_time: int | None = 0  # TC1 extra guard time N; None: TC1 absent (N = 0)
    protocols: tuple = (0,)  # offered, in this order: TD1 says the first, TD2 the second
    wi: int | None = None  # TC2 (T=0 waiting integer); None: TC2 absent (WI = 10)
    ifsc: int = 254  # TA3 (only with T=1)
    bwi: int = 4  # TB3 high nibble (only with T=1)
    cwi: int = 5  # TB3 low nibble (only with T=1)
    edc: str = EDC_LRC  # TC3: absent = LRC, 01 = CRC (only with T=1)
    specific: int | None = None  # TA2: specific mode with this protocol; None: negotiable mode
    historical: bytes = DEFAULT_HISTORICAL

    def __post_init__(self):
        object.__setattr__(self, "protocols", tuple(self.protocols))
        object.__setattr__(self, "historical", bytes(self.historical))
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """Why this configuration cannot be an ATR (None when it can)."""
        if self.fi_di is not None:
            if not (isinstance(self.fi_di, int) and 0 <= self.fi_di <= 0xFF):
                return f"fi_di: must be one byte, got {self.fi_di!r}"
            if self.fi_di >> 4 not in FI_TABLE:
                return f"fi_di: Fi index {self.fi_di >> 4:X} is RFU"
            if self.fi_di & 0xF not in DI_TABLE:
                return f"fi_di: Di index {self.fi_di & 0xF:X} is RFU"
        if self.tb1 is not None and not (isinstance(self.tb1, int) and 0 <= self.tb1 <= 0x7F):
            return f"tb1: must be 00-7F (b8 = 0), got {self.tb1!r}"
        if self.guard_time is not None and not 0 <= self.guard_time <= 255:
            return f"guard_time: must be 0-255, got {self.guard_time}"
        if self.protocols not in PROTOCOL_NAMES:
            return f"protocols: must be (0,), (1,) or (0, 1), got {self.protocols}"
        if self.wi is not None and not 1 <= self.wi <= 255:
            return f"wi: must be 1-255, got {self.wi}"
        if not 1 <= self.ifsc <= 254:
            return f"ifsc: must be 1-254, got {self.ifsc}"
        if not 0 <= self.bwi <= 9:
            return f"bwi: must be 0-9, got {self.bwi}"
        if not 0 <= self.cwi <= 15:
            return f"cwi: must be 0-15, got {self.cwi}"
        if self.edc not in EDC_KINDS:
            return f"edc: must be 'lrc' or 'crc', got {self.edc!r}"
        if self.specific is not None and self.specific not in self.protocols:
            return f"specific: T={self.specific} is not among the offered protocols {self.protocols}"
        if len(self.historical) > 15:
            return f"historical: at most 15 bytes fit in an ATR, got {len(self.historical)}"
        return None

    # The card keeps these in its "card" Vars (ints and strings only; -1 = byte absent).
    def to_vars(self) -> dict:
        def byte(value):
            return -1 if value is None else value

        return {
            "atr_fi_di": byte(self.fi_di), "atr_tb1": byte(self.tb1), "atr_guard_time": byte(self.guard_time),
            "atr_protocols": PROTOCOL_NAMES[self.protocols], "atr_wi": byte(self.wi),
            "atr_ifsc": self.ifsc, "atr_bwi": self.bwi, "atr_cwi": self.cwi, "atr_edc": self.edc,
            "atr_specific": byte(self.specific), "atr_historical": self.historical,
        }

    @classmethod
    def from_vars(cls, values) -> AtrConfig:
        """From the card's Vars. A value an older image lacks gets what the card said before the value
        was stored (`LEGACY`: TA1 13, no TB1, no TC1, T=0 and T=1), so an old image keeps its ATR."""

        def get(name):
            value = getattr(values, name, LEGACY[name])
            return None if value == -1 else value

        return cls(
            fi_di=get("atr_fi_di"), tb1=get("atr_tb1"), guard_time=get("atr_guard_time"),
            protocols=PROTOCOLS_BY_NAME[get("atr_protocols")], wi=get("atr_wi"), ifsc=get("atr_ifsc"),
            bwi=get("atr_bwi"), cwi=get("atr_cwi"), edc=get("atr_edc"), specific=get("atr_specific"),
            historical=get("atr_historical"),
        )


# The ATR values of an image made before each was stored: the card's ATR before P2 (3B 9C 13 80 31 FE 45 ...).
LEGACY = {"atr_fi_di": 0x13, "atr_tb1": -1, "atr_guard_time": -1, "atr_protocols": "t0+t1", "atr_wi": -1,
          "atr_ifsc": 254, "atr_bwi": 4, "atr_cwi": 5, "atr_edc": EDC_LRC, "atr_specific": -1,
          "atr_historical": LEGACY_HISTORICAL}


def _y(ta=False, tb=False, tc=False, td=False, low=0) -> dict:
    return {"ta": ta, "tb": tb, "tc": tc, "td": td, "low": low}


def build(config: AtrConfig = AtrConfig()) -> bytes:
    """The ATR bytes for `config` (TCK computed when T=1 is offered).

    T0 announces TA1 TB1 TC1 as configured. TD1 is sent only when something follows it: another
    protocol than T=0, TA2 (specific mode) or TC2 (WI) - a T=0-only card at the defaults ends the
    interface bytes after TC1 (P2 §8.3.3.5). With T=1, TD2 announces TA3 (IFSC) TB3 (BWI, CWI)
    [TC3 (CRC)].
    """
    t1 = 1 in config.protocols
    td1 = config.protocols != (0,) or config.specific is not None or config.wi is not None
    groups = [
        {"y": _y(ta=config.fi_di is not None, tb=config.tb1 is not None, tc=config.guard_time is not None,
                 td=td1, low=len(config.historical)),
         "ta": config.fi_di, "tb": config.tb1, "tc": config.guard_time},
    ]
    if td1:
        groups.append({"y": _y(ta=config.specific is not None, tc=config.wi is not None, td=t1,
                               low=config.protocols[0]),
                       "ta": None if config.specific is None else 0x80 | config.specific, "tb": None,
                       "tc": config.wi})
    if t1:
        crc = config.edc == EDC_CRC
        groups.append({"y": _y(ta=True, tb=True, tc=crc, low=1),
                       "ta": config.ifsc, "tb": config.bwi << 4 | config.cwi, "tc": 1 if crc else None})
    return ATR.build({"ts": 0x3B, "body": {"value": {"groups": groups, "historical": config.historical}},
                      "tck": None})


def build_atr(historical: bytes) -> bytes:
    """The default ATR with other historical bytes (kept for older callers)."""
    if len(historical) > 15:
        raise ValueError("an ATR carries at most 15 historical bytes")
    return build(AtrConfig(historical=historical))


# -- the parsed ATR ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Atr:
    """A parsed, well-formed ATR and the parameters it sets."""

    raw: bytes
    ts: int
    t0: int
    k: int
    interface: dict  # "TA1" -> byte, in ATR order (TD bytes included)
    protocols: tuple  # offered protocols in the order of the TD bytes (T=15 excluded); (0,) without TD1
    fi_di: int  # TA1, or 11 when absent
    fi: int
    di: int
    f_max: int  # Hz
    n: int  # TC1 extra guard time (0 when absent)
    wi: int  # TC2 (10 when absent)
    ifsc: int  # first TA for T=1 (32 when absent)
    cwi: int  # first TB for T=1, low nibble (13 when absent)
    bwi: int  # first TB for T=1, high nibble (4 when absent)
    edc: str  # first TC for T=1: "lrc" or "crc"
    specific: int | None  # TA2's protocol (specific mode), None in negotiable mode
    specific_changeable: bool  # TA2 b8 = 0: a warm reset can bring negotiable mode
    historical: bytes
    tck: int | None
    lines: tuple = field(repr=False, compare=False, default=())

    def __getattr__(self, name: str):
        """Interface bytes by name: `atr.ta1`, `atr.td2`, ... (None when absent)."""
        if len(name) >= 3 and name[0] == "t" and name[1] in "abcd" and name[2:].isdigit():
            return self.__dict__.get("interface", {}).get(name.upper())
        raise AttributeError(name)

    @property
    def convention(self) -> str:
        return "direct" if self.ts == 0x3B else "inverse"

    @property
    def negotiable(self) -> bool:
        """Negotiable mode: the reader may send a PPS; else the card works in `specific` at once."""
        return self.specific is None

    @property
    def default_protocol(self) -> int:
        """The protocol used without PPS: the specific one, else the first offered."""
        return self.protocols[0] if self.specific is None else self.specific

    def guard_etu(self, protocol: int | None = None) -> int:
        """Start-to-start of two characters the reader sends, in etu (ISO 7816-3 §8.3, P2 §9.2.2.1):
        12 + N; N = 255 means the minimum, 12 on T=0 and 11 on T=1. TC1 binds the reader only:
        the card's own characters are `CARD_CHARACTER_ETU` apart."""
        return character_etu(self.n, self.default_protocol if protocol is None else protocol)

    def wwt_etu(self, di: int | None = None) -> int:
        """T=0 work waiting time in etu: 960 x WI x Di."""
        return wwt_etu(self.wi, self.di if di is None else di)

    @property
    def cwt_etu(self) -> int:
        """T=1 character waiting time: 11 + 2^CWI etu."""
        return cwt_etu(self.cwi)

    def bwt_etu(self, fi: int | None = None, di: int | None = None) -> int:
        """T=1 block waiting time in etu: 11 + 2^BWI x 960 x 372 x Di / Fi (rounded up)."""
        return bwt_etu(self.bwi, self.fi if fi is None else fi, self.di if di is None else di)

    def config(self) -> AtrConfig:
        """The AtrConfig that builds an ATR with these parameters (for ATRs `build` can make)."""
        t1 = 1 in self.protocols
        default = AtrConfig()
        return AtrConfig(
            fi_di=self.interface.get("TA1"), tb1=self.interface.get("TB1"), guard_time=self.interface.get("TC1"),
            protocols=self.protocols, wi=self.interface.get("TC2"), ifsc=self.ifsc if t1 else default.ifsc,
            bwi=self.bwi if t1 else default.bwi, cwi=self.cwi if t1 else default.cwi,
            edc=self.edc if t1 else default.edc, specific=self.specific, historical=self.historical)

    def explain(self) -> list[str]:
        """One line per byte (historical data objects grouped): name, hex, meaning."""
        return list(self.lines)


def _fmt(number) -> str:
    return f"{number:g}"


def _mhz(hz: int) -> str:
    return f"{hz / 1e6:g} MHz"


def _follow(y: int, index: int) -> str:
    names = [f"{letter}{index}" for bit, letter in ((0x10, "TA"), (0x20, "TB"), (0x40, "TC"), (0x80, "TD")) if y & bit]
    if not names:
        return "no interface bytes follow"
    return " ".join(names) + (" follows" if len(names) == 1 else " follow")


def _walk(data: bytes) -> tuple[int, list[int], str | None]:
    """Walk T0 and the TDi chain of `data` (TS first): (the position after the interface bytes, the
    protocols the TD bytes name, None) - or (position, protocols, what is missing) when `data` ends
    before the chain does."""
    if len(data) < 2:
        return len(data), [], "truncated: T0 missing"
    y, pos, index, announcer = data[1], 2, 1, "T0"
    protocols: list[int] = []
    while True:
        nxt: int | None = None
        for bit, letter in ((0x10, "TA"), (0x20, "TB"), (0x40, "TC"), (0x80, "TD")):
            if y & bit:
                if pos >= len(data):
                    return pos, protocols, f"truncated interface bytes: {letter}{index} announced by {announcer} is missing"
                nxt = data[pos]
                pos += 1
        if not y & 0x80:
            return pos, protocols, None
        assert nxt is not None  # y announced TD: the loop above read it or returned "truncated"
        y, announcer = nxt, f"TD{index}"
        protocols.append(y & 0xF)
        index += 1


class Announced(NamedTuple):
    """What an ATR's structure announces of its length."""

    length: int  # characters, TS and TCK included
    tck: bool  # a TCK ends it: a TD names a protocol other than T=0 (ISO/IEC 7816-3 §8.2.5)


def announced(data: bytes) -> Announced | None:
    """How many characters the ATR that `data` begins has, from T0's and every TDi's indicators and
    K; None while `data` is too short to tell (T0 or an announced TD not there yet). A reader taking
    an ATR character by character knows from this whether to wait for another."""
    pos, protocols, missing = _walk(bytes(data))
    if missing is not None:
        return None
    tck = any(t != 0 for t in protocols)
    return Announced(pos + (data[1] & 0xF) + tck, tck)


def _diagnose(data: bytes) -> str:
    """The reason construct could not parse `data` (walks it the same way, naming what is missing)."""
    pos, protocols, missing = _walk(data)
    if missing is not None:
        return missing
    k = data[1] & 0xF
    left = len(data) - pos
    if left < k:
        return f"historical bytes missing: T0 announces K={k}, only {left} present"
    need_tck = any(t != 0 for t in protocols)
    if need_tck and left == k:
        return f"TCK missing: required when T={next(t for t in protocols if t != 0)} is offered"
    extra = left - k - need_tck
    if extra > 0:
        return f"{extra} byte(s) after the end of the ATR"
    return "malformed"  # pragma: no cover - the walk above mirrors every way the declaration fails


def _span(first: int, count: int) -> str:
    """The names of `count` historical bytes from H{first}: "H3" or "H3-H12"."""
    return f"H{first}" if count == 1 else f"H{first}-H{first + count - 1}"


def _compact_tlv(data: bytes, first: int) -> list[str]:
    """Lines for COMPACT-TLV objects in historical bytes H{first}..."""
    tags = {0x1: "country code", 0x2: "issuer identification number", 0x3: "card service data",
            0x4: "initial access data", 0x5: "card issuer's data", 0x6: "pre-issuing data",
            0x7: "card capabilities", 0x8: "status indicator", 0xF: "application identifier"}
    lines, pos = [], 0
    while pos < len(data):
        tag, length = data[pos] >> 4, data[pos] & 0xF
        value = data[pos + 1:pos + 1 + length]
        here = first + pos
        text = f"COMPACT-TLV tag {tag:X} ({tags.get(tag, 'RFU')}), length {length}"
        if len(value) < length:
            text += f", but only {len(value)} byte(s) left"
        lines.append(_line(f"H{here}", data[pos:pos + 1], text))
        if value:
            printable = all(32 <= b < 127 for b in value)
            lines.append(_line(_span(here + 1, len(value)), value, repr(value.decode("ascii")) if printable else "value"))
        pos += 1 + length
    return lines


def _bcd(data: bytes) -> str | None:
    text = data.hex()
    return text if text.isdigit() else None


def _table16_lines(data: bytes) -> list[str]:
    """The 13 historical bytes laid out as LD/T 32 P2 Table 16 (T1..TD)."""
    cos = data[2:5]
    cos_text = "chip / COS supplier's data (COS)"
    if all(32 <= b < 127 for b in cos):
        cos_text += f" {cos.decode('ascii')!r}"
    region = _bcd(data[7:9])
    region_text = f"region code {region}.. (first 4 digits, BCD)" if region else "region code (not BCD)"
    return [
        _line("T1-T2", data[0:2], "chip supplier registration number (P2 Table 16)"),
        _line("T3-T5", cos, cos_text),
        _line("T6-T7", data[5:7], "card manufacturer registration number"),
        _line("T8-T9", data[7:9], f"card serial part 1: {region_text}"),
        _line("TA-TD", data[9:13], "card serial part 2 (unique per card in the issuing area)"),
    ]


def _historical_lines(data: bytes) -> list[str]:
    if not data:
        return []
    category = data[0]
    if category == 0x00 and len(data) == TABLE16_LENGTH:
        return _table16_lines(data)
    if category == 0x80:
        return [_line("H1", data[:1], "category indicator 80: COMPACT-TLV data objects follow")] + _compact_tlv(data[1:], 2)
    if category == 0x00 and len(data) >= 4:
        lines = [_line("H1", data[:1], "category indicator 00: COMPACT-TLV objects, then a 3-byte status indicator")]
        lines += _compact_tlv(data[1:-3], 2)
        return lines + [_line(_span(len(data) - 2, 3), data[-3:], "status indicator (LCS, SW1 SW2)")]
    if category == 0x10 and len(data) >= 2:
        return [_line("H1", data[:1], "category indicator 10: DIR data reference follows"),
                _line(_span(2, len(data) - 1), data[1:], "DIR data reference")]
    rest = data[1:]
    lines = [_line("H1", data[:1], f"category indicator {category:02X}: proprietary")]
    if rest:
        lines.append(_line(_span(2, len(rest)), rest, "proprietary historical bytes"))
    return lines


def _line(name: str, data: bytes, text: str) -> str:
    return f"{name:<8}{data.hex(' ').upper()}  {text}"


def parse_atr(data: bytes) -> Atr:
    """Parse an ATR (as received: TS first, TCK last), or raise AtrError with the reason."""
    data = bytes(data)
    if not data:
        raise AtrError("empty: no TS")
    if data[0] not in (0x3B, 0x3F):
        raise AtrError(f"TS {data[0]:02X} is neither 3B (direct convention) nor 3F (inverse convention)")
    if len(data) > MAX_LENGTH:
        raise AtrError(f"{len(data)} bytes: an ATR is TS and at most 32 more bytes")
    try:
        parsed = ATR.parse(data)
    except ChecksumError:
        total = reduce(xor, data[1:], 0)
        raise AtrError(f"TCK {data[-1]:02X} wrong: XOR of T0..TCK is {total:02X}, must be 00 "
                       f"(TCK should be {data[-1] ^ total:02X})") from None
    except ConstructError:
        raise AtrError(_diagnose(data)) from None

    groups = parsed.body.value.groups
    lines = [_line("TS", data[:1], f"{'direct' if data[0] == 0x3B else 'inverse'} convention")]
    y0 = data[1]
    lines.append(_line("T0", data[1:2], f"Y1={y0 >> 4:X}: {_follow(y0, 1)}; K={y0 & 0xF} historical bytes"))
    interface: dict[str, int] = {}
    protocols: list[int] = []
    values: dict[str, Any] = {"fi_di": DEFAULT_FI_DI, "n": 0, "wi": DEFAULT_WI, "ifsc": IFS_DEFAULT, "cwi": DEFAULT_CWI,
              "bwi": DEFAULT_BWI, "edc": EDC_LRC, "specific": None, "specific_changeable": False}
    seen_t1: set[str] = set()  # which of TA/TB/TC for T=1 have been met (the first of each counts)
    seen_t15: set[str] = set()
    problems: list[str] = []

    for j, group in enumerate(groups):
        i = j + 1  # this group's TA/TB/TC are TAi/TBi/TCi
        protocol = group.y.low if j else None
        if j:
            td = data[1 + len(interface) + 1]  # the TD byte: after TS, T0 and the bytes so far
            interface[f"TD{j}"] = td
            if protocol is not None and protocol != 15 and protocol not in protocols:
                protocols.append(protocol)
            kind = "global interface bytes (T=15)" if protocol == 15 else f"T={protocol} offered"
            lines.append(_line(f"TD{j}", bytes((td,)), f"{kind}; {_follow(td, i)}"))
        for letter in ("ta", "tb", "tc"):
            byte = group[letter]
            if byte is None:
                continue
            name = f"{letter.upper()}{i}"
            interface[name] = byte
            lines.append(_line(name, bytes((byte,)), _interface_text(name, byte, protocol, values, seen_t1,
                                                                      seen_t15, problems)))
    if problems:
        raise AtrError(problems[0])
    if not protocols:
        protocols = [0]
    fi, f_max = FI_TABLE[values["fi_di"] >> 4]
    di = DI_TABLE[values["fi_di"] & 0xF]
    historical = parsed.body.value.historical
    lines += _historical_lines(historical)
    if parsed.tck is not None:
        lines.append(_line("TCK", data[-1:], "check byte ok (XOR of T0..TCK is 00)"))
    return Atr(raw=data, ts=data[0], t0=y0, k=y0 & 0xF, interface=interface, protocols=tuple(protocols),
               fi=fi, di=di, f_max=f_max, historical=historical, tck=parsed.tck, lines=tuple(lines), **values)


def _interface_text(name, byte, protocol, values, seen_t1, seen_t15, problems) -> str:
    """Interpret one TA/TB/TC byte (recording its value in `values`, a violation in `problems`)."""
    if name == "TA1":
        fi_index, di_index = byte >> 4, byte & 0xF
        if fi_index not in FI_TABLE:
            problems.append(f"TA1 {byte:02X}: Fi index {fi_index:X} is RFU")
            return "Fi RFU"
        if di_index not in DI_TABLE:
            problems.append(f"TA1 {byte:02X}: Di index {di_index:X} is RFU")
            return "Di RFU"
        values["fi_di"] = byte
        fi, f_max = FI_TABLE[fi_index]
        di = DI_TABLE[di_index]
        return f"Fi={fi} Di={di} f_max={_mhz(f_max)}: 1 etu = {_fmt(fi / di)} clock cycles"
    if name == "TB1" and byte == 0:
        return "no VPP (P2 §8.3.3.3)"
    if name in ("TB1", "TB2"):
        return "VPP programming (deprecated, ignored)"
    if name == "TC1":
        values["n"] = byte
        if byte == 255:
            return (f"N=255: minimum guard time ({character_etu(255, 0)} etu per character on T=0, "
                    f"{character_etu(255, 1)} on T=1)")
        return (f"extra guard time N={byte}: {character_etu(byte, 0)} etu per character to the card "
                f"(the card's: {CARD_CHARACTER_ETU})")
    if name == "TA2":
        values["specific"] = byte & 0xF
        values["specific_changeable"] = not byte & 0x80
        change = "a warm reset can switch to negotiable mode" if not byte & 0x80 else "cannot change mode"
        source = "implicit parameters (not TA1)" if byte & 0x10 else "Fi/Di from TA1"
        return f"specific mode: T={byte & 0xF}, {source}; {change}"
    if name == "TC2":
        if byte == 0:
            problems.append("TC2 00: WI 0 is RFU")
            return "WI RFU"
        values["wi"] = byte
        return f"T=0 WI={byte}: WWT = 960 x {byte} x Di etu"
    letter = name[:2]
    if protocol == 1 and letter not in seen_t1:
        seen_t1.add(letter)
        if letter == "TA":
            if byte in (0x00, 0xFF):
                problems.append(f"{name} {byte:02X}: IFSC {byte} is RFU")
                return "IFSC RFU"
            values["ifsc"] = byte
            return f"T=1 IFSC {byte}"
        if letter == "TB":
            bwi, cwi = byte >> 4, byte & 0xF
            if bwi > 9:
                problems.append(f"{name} {byte:02X}: BWI {bwi} is RFU")
                return "BWI RFU"
            values["bwi"], values["cwi"] = bwi, cwi
            return f"T=1 BWI {bwi}, CWI {cwi}: BWT = 11 + {2 ** bwi} x 960 x 372 x Di / Fi etu, CWT = {cwt_etu(cwi)} etu"
        values["edc"] = EDC_CRC if byte & 1 else EDC_LRC
        return f"T=1 EDC: {'CRC' if byte & 1 else 'LRC'}"
    if protocol == 15 and letter not in seen_t15:
        seen_t15.add(letter)
        if letter == "TA":
            stop = ("not supported", "state L", "state H", "no preference")[byte >> 6]
            classes = "".join(c for bit, c in ((1, "A"), (2, "B"), (4, "C")) if byte & bit) or "none"
            return f"clock stop {stop}; classes {classes}"
        if letter == "TB":
            return "SPU use" if byte else "SPU not used"
    return f"T={protocol} specific byte"

