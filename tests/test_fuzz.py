"""Property-based fuzzing (hypothesis) of everything that takes bytes or text from outside.

1. `Card.transmit`: random APDU sequences, biased toward the card's real CLA/INS values,
   SELECTs of every application and file of the LD/T 32 tree (DDF, DF01-DF04, DF07, their
   EFs), VERIFYs (right and wrong PINs, both applications), CHANGE PIN, GET CHALLENGE, EXTERNAL
   AUTHENTICATE with right cryptograms (RKSSSE, PUK, BK, UKSSSE, RK1DF04, UK2DF04: the card's
   random source is deterministic, so the oracle tests/oracle.py knows its challenge) and wrong
   ones, UPDATE RECORD / BINARY, the medical purse's B0 commands, MAC-protected commands with
   random MACs, GPO + GENERATE AC + random issuer scripts, GET RESPONSE, resets in T=0 and T=1,
   on several personalised starting states. After every APDU:
   - no exception escapes `Card.transmit`, and `6F00` appears only where the standard
     defines it: GET RESPONSE with nothing waiting (P5 §6.6.4; docs/decisions.md §3); any other `6F00`
     is an internal error;
   - a command answered with an error SW (anything but 9000/61xx/62xx/63xx) changes no
     persistent state (`image.encode(card.store.objects, 0)` identical before/after);
   - 63Cx changes only one try counter, down by one; 6983 changes nothing;
   - every persistent change is one a command without a valid MAC may make: a try counter
     down by one; PIN tries back to the limit on a 9000 VERIFY / CHANGE PIN, a key's tries back
     to the limit on a 9000 EXTERNAL AUTHENTICATE; the SSSE PIN value and activation on a 9000
     CHANGE PIN; a file's content (and, in DF04, the activation) on a 9000 plain UPDATE after an
     external authentication; the ATC +1 on GENERATE AC. In particular no lock (SSSE lock, card
     state, financial lock) is ever set or lifted, no purse amount or counter moves, and no try
     counter ever grows otherwise (random MACs are never valid);
   - no protected record or binary (every EF whose read rule needs the PIN or a key on this
     3.00 card: EF06, EF07, EF08, DF01-DF04, DF07) comes back without a verified PIN or an
     external authentication in the session.
2. Parsers: the trace parser (TraceError or a Trace), the profile loader (ProfileError
   or a Profile), vpcd framing (events, never an exception), T=1 blocks (Block or
   Invalid), chip.iso.ber.parse (ValueError or a list).

Counts are bounded so the file runs in well under a minute; `SSCARD_FUZZ_EXAMPLES=N`
multiplies them for long runs (N examples per property for the card). Run with
`pytest -s` to see the summary lines ("fuzz: N APDUs, 0 exceptions, 0 undesigned 6F00").
"""

import collections
import copy
import functools
import os
import tomllib

import helpers
import oracle
import pytest
import ssse_helpers as sh
from helpers import CARD_DATE, ROOT, TRACES, activate_financial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chip import Card
from chip.apps.directory import PPSE_NAME, PSE_NAME
from chip.apps.financial import AID, pin_block
from chip.apps.ssse import DDF_NAME
from chip.contacts.t1 import Block, BlockReader, Invalid
from chip.contacts.t1 import decode as t1_decode
from chip.contacts.timing import EDC_CRC as CRC
from chip.contacts.timing import EDC_LRC as LRC
from chip.contacts.timing import edc
from chip.iso import ber
from chip.kernel import image
from chip.kernel.fs import TRANSPARENT
from chip.kernel.image import MemoryBackend
from chip.kernel.pin import pack, unpack
from chip.kernel.store import Store
from chip.personalization.profile import SHIPPED, Profile, ProfileError, parse_profile
from reader import SimReader
from reader.pcsc.vpcd import Apdu, GetAtr, PowerOff, PowerOn, Reset, Unknown, VpcdProtocol
from reader.terminals.issuer import IssuerHost
from reader.terminals.payment import PaymentTerminal
from reader.traces.format import Trace, TraceError
from reader.traces.format import parse as parse_trace

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

LONG = int(os.environ.get("SSCARD_FUZZ_EXAMPLES", "0"))
CARD_EXAMPLES = LONG or 150
PARSER_EXAMPLES = LONG or 300


def fuzz_settings(n):
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- starting states ----------------------------------------------------------------------------------

SSSE_PIN, FIN_PIN = "123456", "000000"
CDOL1 = bytes.fromhex(helpers.CDOL1)
GPO = bytes.fromhex(helpers.GPO)
GPO_SM4 = bytes.fromhex("80A800000B830900000000100001560001")
FINGERPRINT = bytes(range(0x40, 0x80))  # EF07 content of the "active" card (64 bytes, protected by RKSSSE)
PHOTO = bytes.fromhex("FFD8FFE0") + bytes(range(0x80, 0xC0))  # EF08 content


def _terminal(card):
    reader = SimReader(card)
    reader.reset()
    terminal = sh.Terminal(card, reader.transmit)
    terminal.start()
    return terminal


def _fresh(card):
    pass


def _active(card):
    """SSSE activated by a medical settlement record (UK2DF04), one purchase in EF08, the fingerprint
    and photo written (UKSSSE), one special-settlement record; financial application activated."""
    t = _terminal(card)
    t.authenticate("ssse_uk")
    t.ok(sh.apdu(0x00, 0xD6, 0x87, 0x00, FINGERPRINT))
    t.ok(sh.apdu(0x00, 0xD6, 0x88, 0x00, PHOTO))
    t.ok(sh.verify(SSSE_PIN))
    t.ok(sh.SELECT_DF04)
    t.authenticate("df04_uk2")
    t.ok(t.settlement_total(1234))
    t.ok(t.settlement_count(1))
    t.ok(sh.apdu(0x00, 0xDC, 0x00, 0x15 << 3 | 3, bytes.fromhex("0A0B0C")))
    t.purchase(1234, 1000, 234)
    assert card.store["ssse.state"].lifecycle == "active"
    activate_financial(card, FIN_PIN)


def _locked(card):
    """SSSE loss-locked (BK, 84 1E 00 00) after a medical write; financial application blocked by script."""
    t = _terminal(card)
    t.ok(sh.SELECT_DF04)
    t.authenticate("df04_uk2")
    t.ok(t.settlement_total(1234))
    t.ok(sh.SELECT_SSSE)
    t.do_lock()
    host = IssuerHost("default")
    host.queue(host.profile.financial.pan, IssuerHost.command(0x84, 0x1E))
    outcome = PaymentTerminal(SimReader(card), date=CARD_DATE).purchase(0, host=host)
    assert [sw for _, sw in outcome.script_results] == [0x9000]


def _blocked(card):
    """SSSE permanently blocked (BK, 84 1E 00 01): 9303 to everything in it."""
    _terminal(card).do_lock(permanent=True)
    assert card.store["ssse.state"].lock == "blocked"


def _last_tries(card):
    """One try left on both PINs, on RKSSSE and on PUK."""
    t = _terminal(card)
    for left in range(5, 0, -1):
        assert t.send(sh.verify("999999")) == bytes((0x63, 0xC0 | left))
    for key in ("ssse_rk", "ssse_puk"):
        for left in (2, 1):
            assert t.send(t.external_authenticate(key, wrong=True)) == bytes((0x63, 0xC0 | left))
    r = SimReader(card)
    r.reset()
    assert r.transmit(b"\x00\xA4\x04\x00\x08" + AID)[-2:] == b"\x90\x00"
    for left in (2, 1):
        assert r.transmit(b"\x00\x20\x00\x80\x08" + pin_block("999999")) == bytes((0x63, 0xC0 | left))


BASES = {"fresh": _fresh, "active": _active, "locked": _locked, "blocked": _blocked, "last-tries": _last_tries}


@functools.cache
def base_image(name: str) -> bytes:
    card = Card.from_profile("default", date=CARD_DATE)
    BASES[name](card)
    return image.encode(card.store.objects, 0)


def card_random(n: int) -> bytes:
    """The fuzzed cards' random source: deterministic (reproducible failures, and the oracle knows every
    challenge: GET CHALLENGE with Le n answers 01 02 .. n)."""
    return bytes(range(1, n + 1))


def card_from(blob: bytes) -> Card:
    objects, _ = image.decode(blob)
    card = Card(Store(MemoryBackend(), objects), CARD_DATE)
    card.random = card_random
    return card


@functools.cache
def terminal_keys() -> tuple[str, dict]:
    """The default card's family and card keys, from the oracle (tests/ssse_helpers.py)."""
    t = sh.Terminal(Card.from_profile("default", date=CARD_DATE))
    return t.family, t.keys


# -- what the fuzzer sends ------------------------------------------------------------------------------

CLAS = (0x00, 0x80, 0x84, 0x04, 0xB0)
INSES = (0xA4, 0xB0, 0xB2, 0xDC, 0xD6, 0x20, 0x5E, 0x84, 0x82, 0x88, 0x1E, 0x18, 0x16, 0x24, 0xA8, 0xAE,
         0xCA, 0xC0, 0xDA, 0x28, 0x2A, 0x2C, 0x26, 0x2E, 0x56)
P_VALUES = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0A, 0x0C, 0x14, 0x28, 0x2C, 0x30, 0x34,
            0x40, 0x44, 0x80, 0x84, 0x85, 0x86, 0x87, 0x88, 0x92, 0x93, 0x9F, 0xA8, 0xAB, 0xAC, 0xDF, 0x7F,
            0xFF)
DATA_LENGTHS = (0, 1, 2, 3, 4, 6, 8, 10, 11, 12, 15, 16, 17, 19, 20, 23, 29, 31, 33)


def select_name(name: bytes) -> bytes:
    return b"\x00\xA4\x04\x00" + bytes((len(name),)) + name


RID = bytes.fromhex("D156000005")
SELECTS = [select_name(n) for n in (DDF_NAME, PSE_NAME, PPSE_NAME, AID, RID + b"\x00", RID + b"\x01",
                                    RID + b"\x02", RID + b"\x03", RID + b"\x04", RID, DDF_NAME[:5], AID[:5])] + [
    bytes.fromhex(h) for h in (
        "00A4040000", "00A40000023F00", "00A4000C023F00", "00A4010C02DF04", "00A4000002DF04", "00A4000002DF01",
        "00A4020C02EF15", "00A4020002EF05", "00A4020C02EF06", "00A4020C02EF07", "00A4020002EF08",
        "00A4010002DDF1", "00A4080004DDF1DF04", "00A40804063F00DDF1EF06", "00A4030000", "00A4040201D1",
        "00A4000C02DDF1", "00A4040206D15600000500", "00A4040C06D15600000503",
    )]
MF_SELECTS = {bytes.fromhex("00A40000023F00"), bytes.fromhex("00A4000C023F00"), bytes.fromhex("00A4040000")}
OTHER_APP_NAMES = {PSE_NAME, PPSE_NAME, AID}  # selecting one of these leaves the SSSE
READS = [bytes.fromhex(h) for h in (
    "00B2012C12", "00B2012C00", "00B2032C06", "00B2052C06", "00B2072C0B", "00B2083014", "00B2093020",
    "00B20D3006", "00B2083400", "00B2013500", "00B2843000", "00B2842805", "00B2922806", "00B2013400",
    "00B2014400", "00B2014420", "00B2014C1C", "00B201AC03", "00B201AC00", "00B2012D00", "00B2010400",
    "00B2012404", "00B20B3403", "00B0870000", "00B0880040", "00B0870010", "00B0000000", "00B2010C00",
    "00B2000400", "00B2F13000",
)]
AUTH_KEYS = ("ssse_rk", "ssse_puk", "ssse_bk", "ssse_uk", "df04_rk1", "df04_uk2", "df04_uk1")
UPDATES = [bytes.fromhex(h) for h in (
    "00DC072C0B0709543030303030303039", "00DC07280B0709543030303030303039", "00DC0928" "22" "0920" + "41" * 32,
    "00DC922806920400009999", "00DC93280493023032", "00DC90280390013030", "00DC00AB03112233", "00DC01AC03445566",
    "00DC87281387" "11" + "31" * 17, "00D6870004DEADBEEF", "00D6880A02CAFE", "00D6000002ABCD", "00D60010020102",
    "00DC082C14" + "0812" + "31" * 18, "00DC012C0101", "00DC000403010203",
)]


@st.composite
def raw_apdu(draw):
    """A random APDU, biased toward the card's classes and instructions, any length form."""
    cla = draw(st.sampled_from(CLAS) | st.integers(0, 255)) if draw(st.integers(0, 9)) else draw(st.integers(0, 255))
    ins = draw(st.sampled_from(INSES)) if draw(st.integers(0, 9)) else draw(st.integers(0, 255))
    p1 = draw(st.sampled_from(P_VALUES) | st.integers(0, 255))
    p2 = draw(st.sampled_from(P_VALUES) | st.integers(0, 255))
    head = bytes((cla, ins, p1, p2))
    form = draw(st.integers(0, 9))
    n = draw(st.sampled_from(DATA_LENGTHS) | st.integers(1, 255))
    data = draw(st.binary(min_size=n, max_size=n))
    le = draw(st.sampled_from((0, 1, 2, 4, 8, 0x10, 0x16, 0x20)) | st.integers(0, 255))
    if form == 0:
        return head
    if form == 1:
        return head + bytes((le,))
    if form in (2, 3) and data:
        return head + bytes((len(data),)) + data
    if form in (4, 5) and data:
        return head + bytes((len(data),)) + data + bytes((le,))
    if form == 6:  # extended
        lc = len(data)
        tail = draw(st.sampled_from((b"", b"\x00\x00", b"\x01\x00", b"\x00\x01")))
        return head + b"\x00" + lc.to_bytes(2, "big") + data + tail
    if form == 7:
        return head + b"\x00" + draw(st.binary(min_size=2, max_size=2))
    return head + draw(st.binary(max_size=40))  # anything, malformed lengths included


def digits(draw, right: str) -> str:
    if draw(st.integers(0, 3)) == 0:
        return right
    return draw(st.text("0123456789", min_size=4, max_size=12))


def external_authenticate(draw) -> bytes:
    """EXTERNAL AUTHENTICATE with one of the card's keys: mostly the right cryptogram for the challenge
    the card answers (its random source is known), sometimes a wrong one, a wrong version byte or a
    challenge of another length."""
    family, keys = terminal_keys()
    key = draw(st.sampled_from(AUTH_KEYS))
    challenge = card_random(draw(st.sampled_from((8, 8, 8, 4, 16))))
    original = draw(st.sampled_from((bytes(8), bytes.fromhex("0102030405060708"), b"\xA5" * 8)))
    auth = oracle.auth_data(family, oracle.process_key(family, keys[key], challenge), original)
    if draw(st.integers(0, 4)) == 0:
        auth = bytes((auth[0] ^ 0x80,)) + auth[1:]
    data = auth + original + draw(st.sampled_from((b"", b"", b"\x01", b"\x02")))
    return sh.apdu(0x00, 0x82, 0x00, sh.KEY[key].card_id, data)


def right_auth(key: str, challenge_length: int = 8) -> list[bytes]:
    """GET CHALLENGE, then EXTERNAL AUTHENTICATE with `key`'s right cryptogram for it."""
    family, keys = terminal_keys()
    challenge = card_random(challenge_length)
    original = bytes.fromhex("0102030405060708")
    auth = oracle.auth_data(family, oracle.process_key(family, keys[key], challenge), original)
    return [bytes((0x00, 0x84, 0x00, 0x00, challenge_length)), sh.apdu(0x00, 0x82, 0x00, sh.KEY[key].card_id,
                                                                       auth + original)]


@st.composite
def macro(draw):
    """A short terminal flow that reaches the authorised paths: authenticate, then update or transact."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return right_auth(draw(st.sampled_from(AUTH_KEYS)), draw(st.sampled_from((8, 8, 4, 16))))
    if kind == 1:  # a medical write in DF04
        return [sh.SELECT_DF04, *right_auth(draw(st.sampled_from(("df04_uk2", "df04_uk1")))),
                draw(st.sampled_from(UPDATES))]
    if kind == 2:  # an update of the SSSE's own files
        return [sh.SELECT_SSSE, *right_auth("ssse_uk"), draw(st.sampled_from(UPDATES))]
    if kind == 3:  # a purchase with a random MAC1
        return [sh.SELECT_DF04, sh.verify(SSSE_PIN), sh.Terminal.init_purchase(100, 50, 50),
                sh.apdu(0xB0, 0x2C, 0x01, 0x00, bytes.fromhex("0000123420261121103000") + draw(st.binary(
                    min_size=4, max_size=4)), le=0x08)]
    if kind == 4:  # a maintenance command with a random MAC after its control key
        key, command = draw(st.sampled_from((("ssse_bk", "841E000004"), ("ssse_bk", "841E000104"),
                                             ("ssse_bk", "8418000004"), ("ssse_bk", "8416000004"),
                                             ("ssse_puk", "8424000004"), ("ssse_puk", "842400010C"))))
        body = b"" if command.endswith("04") else bytes(8)
        return [sh.SELECT_SSSE, *right_auth(key), bytes((0x00, 0x84, 0x00, 0x00, 0x08)),
                bytes.fromhex(command) + body + draw(st.binary(min_size=4, max_size=4))]
    return [sh.SELECT_SSSE, *right_auth("ssse_rk"), draw(st.sampled_from(READS))]


@st.composite
def step(draw, card):
    """One step: ('reset', protocol) or ('apdus', [bytes, ...]). Drawn with the card's current state in
    view (the right PINs and cryptograms are the oracle's knowledge, to reach the authorised paths too)."""
    kind = draw(st.integers(0, 99))
    if kind >= 90:
        return ("apdus", draw(macro()))
    kind, value = draw(single(card))
    return ("reset", value) if kind == "reset" else ("apdus", [value])


START = st.sampled_from(([], [sh.SELECT_SSSE], [sh.SELECT_SSSE], [sh.SELECT_SSSE, sh.verify(SSSE_PIN)],
                         [sh.SELECT_DF04], [select_name(AID)]))


@st.composite
def single(draw, card):
    """One command (or a reset)."""
    kind = draw(st.integers(0, 89))
    if kind < 4:
        return ("reset", draw(st.sampled_from((0, 1, 1))))
    if kind < 20:
        return ("apdu", draw(st.sampled_from(SELECTS)))
    if kind < 28:
        pin = digits(draw, unpack(card.store["ssse.pin"].value))
        return ("apdu", bytes((0x00, 0x20, 0x00, 0x00, len(pack(pin)))) + pack(pin))
    if kind < 32:
        pin = digits(draw, FIN_PIN)
        return ("apdu", b"\x00\x20\x00\x80\x08" + pin_block(pin))
    if kind < 34:
        old = digits(draw, unpack(card.store["ssse.pin"].value))
        new = digits(draw, "246810")
        data = pack(old) + b"\xFF" + pack(new)
        return ("apdu", bytes((0x80, 0x5E, 0x01, 0x00, len(data))) + data)
    if kind < 44:
        return ("apdu", draw(st.sampled_from(READS)))
    if kind < 50:
        return ("apdu", bytes((0x00, 0x84, 0x00, 0x00, draw(st.sampled_from((8, 8, 4, 0x10, 0, 7))))))
    if kind < 56:
        return ("apdu", external_authenticate(draw))
    if kind < 60:
        return ("apdu", draw(st.sampled_from(UPDATES)))
    if kind < 66:  # a MAC-protected command with a random MAC (after GET CHALLENGE, or not)
        cla, ins, p1, p2 = draw(st.sampled_from((
            (0x84, 0x1E, 0, 0), (0x84, 0x1E, 0, 1), (0x84, 0x18, 0, 0), (0x84, 0x16, 0, 0), (0x84, 0x24, 0, 0),
            (0x84, 0x24, 0, 1), (0x84, 0x24, 0, 2), (0x04, 0xDA, 0xDF, 0x7F), (0x04, 0xDA, 0x9F, 0x14),
            (0x04, 0xDA, 0x9F, 0x23), (0x04, 0xDC, 0x07, 0x2C), (0x04, 0xDC, 0x92, 0x30), (0x04, 0xD6, 0x87, 0x00),
            (0xB0, 0x56, 0x00, 0x00), (0xB0, 0x2A, 0x00, 0x00), (0xB0, 0x2C, 0x01, 0x00))))
        body = draw(st.sampled_from((b"", b"\x01", b"\x07\x01", pack("246810"), bytes(16), bytes(7), bytes(11),
                                     bytes.fromhex("070954303030303030303039"))))
        mac = draw(st.binary(min_size=4, max_size=16))
        data = body + mac
        return ("apdu", bytes((cla, ins, p1, p2, len(data))) + data)
    if kind < 72:  # the medical purse
        return ("apdu", draw(st.sampled_from((
            sh.Terminal.init_purchase(100, 50, 50), sh.Terminal.init_purchase(10**9), sh.Terminal.init_load(500),
            bytes.fromhex("B0260001" "04"), bytes.fromhex("B0260002" "06"), bytes.fromhex("B0260003" "00"),
            bytes.fromhex("B02E0032" "02" "0000" "08"), bytes.fromhex("B02E0031" "02" "0000" "08"),
            bytes.fromhex("B056010002"), bytes.fromhex("B05600000207" "01"), bytes.fromhex("B0280101" "00"),
            bytes.fromhex("B02C0100" "0F" + "00" * 15 + "08"), bytes.fromhex("B02A0000" "0B" + "00" * 11 + "04"),
        ))))
    if kind < 76:
        return ("apdu", draw(st.sampled_from((GPO, GPO_SM4))))
    if kind < 80:
        p1 = draw(st.sampled_from((0x00, 0x40, 0x80, 0xC0, 0x90)))
        data = draw(st.sampled_from((CDOL1, b"00" + CDOL1, b"\x30\x35" + CDOL1, CDOL1[:20])))
        le = draw(st.sampled_from((b"\x00", b"", b"\x00", b"\x40")))
        return ("apdu", bytes((0x80, 0xAE, p1, 0x00, len(data))) + data + le)
    if kind < 82:
        return ("apdu", draw(st.sampled_from([bytes.fromhex("80CA" + t + "00") for t in
                                              ("9F36", "9F13", "9F17", "9F79", "9F4F", "9F14", "9F23", "DF7F",
                                               "DF7E", "DF7D")])))
    if kind < 85:
        return ("apdu", draw(st.sampled_from((bytes.fromhex("00C0000000"), bytes.fromhex("00C0000004"),
                                              bytes.fromhex("00C00000"), bytes.fromhex("00C0000100")))))
    if kind < 87:
        return ("apdu", bytes.fromhex("0088000010") + card_random(16) + draw(st.sampled_from((b"", b"\x00"))))
    return ("apdu", draw(raw_apdu()))


# -- the oracle -------------------------------------------------------------------------------------------

def is_secret(name: str) -> bool:
    """A PIN or key object of the store: the only holders of try counters."""
    return name.endswith(".pin") or ".key." in name


def _protected_efs():
    """Every EF whose read rule needs the PIN or a key on a 3.00 card (an alternative of nothing but
    the 3.00 generation grant would be free)."""
    card = Card.from_profile("default", date=CARD_DATE)
    return [node for node in card.mf.walk()
            if not node.is_df and node.read and not any(set(alt) <= {"gen3"} for alt in node.read)]


PROTECTED_EFS = _protected_efs()
assert {ef.key for ef in PROTECTED_EFS} >= {"ssse.ef06", "ssse.ef07", "ssse.ef08", "df04.ef05", "df04.ef06",
                                            "df04.ef08", "df04.ef15"}
WINDOW = 8


def dump(card) -> dict:
    return {name: copy.deepcopy(obj.dump()) for name, obj in card.store.objects.items()}


def protected_values(card) -> tuple[set, set]:
    """(records, 8-byte windows of transparent contents) that must not come back without authorisation."""
    records, windows = set(), set()
    for ef in PROTECTED_EFS:
        content = card.store.objects[ef.key]
        if ef.structure is TRANSPARENT:
            data = content.data
            windows.update(data[i:i + WINDOW] for i in range(len(data) - WINDOW + 1))
        else:
            records.update(content.records)
    return records, windows


def leaks(data: bytes, protected: tuple[set, set]) -> bool:
    records, windows = protected
    if data in records:
        return True
    if any(len(r) >= WINDOW and r in data for r in records):  # one record of a multi-record answer
        return True
    return any(data[i:i + WINDOW] in windows for i in range(len(data) - WINDOW + 1))


def is_error(sw: int) -> bool:
    return not (sw == 0x9000 or sw >> 8 in (0x61, 0x62, 0x63))


def changes(before: dict, after: dict) -> set:
    """(object, field) pairs that differ; a whole object for non-dict dumps."""
    out = set()
    for name in before.keys() | after.keys():
        a, b = before.get(name), after.get(name)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out.update((name, k) for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        else:
            out.add((name, None))
    return out


# the files a plain UPDATE may change after an external authentication (their update key's)
UPDATABLE = {"ssse.ef05", "ssse.ef06", "ssse.ef07", "ssse.ef08", "df04.ef05", "df04.ef06", "df04.ef15"}


class Session:
    """What the terminal side knows of the session: was a PIN verified / the terminal authenticated,
    and is response data waiting for GET RESPONSE?"""

    def __init__(self):
        self.pin = False
        self.ext = False
        self.waiting = False

    def reset(self):
        self.pin = self.ext = self.waiting = False


def is_get_response(apdu: bytes) -> bool:
    return len(apdu) >= 4 and apdu[0] == 0x00 and apdu[1] == 0xC0


def designed_6f00(apdu: bytes, session: Session) -> bool:
    """GET RESPONSE (P1 P2 00, no data: a case 1 or case 2 APDU) with nothing waiting: 6F00 (P5 §6.6.4)."""
    well_formed = len(apdu) in (4, 5) or (len(apdu) == 7 and apdu[4] == 0x00)
    return is_get_response(apdu) and apdu[2] == apdu[3] == 0 and well_formed and not session.waiting


def check_step(apdu: bytes, response: bytes, before: dict, after: dict, enc_before: bytes, enc_after: bytes,
               session: Session, protected, stats) -> None:
    sw = int.from_bytes(response[-2:], "big")
    data = response[:-2]
    assert len(response) >= 2
    if sw == 0x6F00:
        assert designed_6f00(apdu, session), f"internal error 6F00 on {apdu.hex().upper()}"
        stats["designed 6F00"] += 1
    cla, ins = (apdu[0], apdu[1]) if len(apdu) >= 2 else (None, None)
    p1, p2 = (apdu[2], apdu[3]) if len(apdu) >= 4 else (None, None)
    has_data = len(apdu) > 5
    diff = changes(before, after)

    if sw >> 8 == 0x6C:
        stats["6Cxx"] += 1
    if is_error(sw):
        assert enc_after == enc_before, f"error SW {sw:04X} changed the persistent state: {sorted(diff)}"
    if sw >> 8 == 0x63 and (sw & 0xF0) == 0xC0:
        for name, field in diff:
            assert is_secret(name) and field == "tries", (sw, diff)
            assert after[name]["tries"] == before[name]["tries"] - 1, (name, before[name], after[name])
        assert len(diff) <= 1
    if sw == 0x6983:
        assert not diff

    # every persistent change is one a command without a valid MAC may make
    verify_ok = sw == 0x9000 and cla == 0x00 and ins == 0x20 and has_data
    change_ok = sw == 0x9000 and cla == 0x80 and ins == 0x5E and p1 == 0x01
    auth_ok = sw == 0x9000 and cla == 0x00 and ins == 0x82 and p2 != 0x00
    update_ok = sw == 0x9000 and cla == 0x00 and ins in (0xDC, 0xD6) and session.ext
    for name, field in diff:
        if field == "tries":
            old, new = before[name]["tries"], after[name]["tries"]
            if new <= old:
                assert new == old - 1, (name, old, new)
                continue
            grows = ((name == "ssse.pin" and ((verify_ok and p2 == 0x00) or change_ok))
                     or (name == "fin.pin" and verify_ok and p2 == 0x80)
                     or (".key." in name and auth_ok))
            assert grows and new == after[name]["limit"], f"{name} tries grew {old} -> {new} on {apdu.hex()} {sw:04X}"
        elif (name, field) == ("ssse.pin", "value"):
            assert change_ok, (apdu.hex(), sw)
            assert apdu[5:].endswith(after[name]["value"])
        elif (name, field) == ("ssse.state", "lifecycle"):
            medical_write = update_ok and any(n.startswith("df04.") for n, _ in diff)
            assert (change_ok or medical_write) and (before[name][field], after[name][field]) == ("issued", "active")
        elif name in UPDATABLE:
            assert update_ok, f"{name} changed on {apdu.hex().upper()} -> {sw:04X} without authentication"
            stats["authorised updates"] += 1
        elif (name, field) == ("fin.state", "atc"):
            assert ins == 0xAE and cla == 0x80 and (sw == 0x9000 or sw >> 8 == 0x61)
            assert after[name][field] == before[name][field] + 1
        else:  # locks, card state, activation, purse, keys, limits: never without a valid MAC
            pytest.fail(f"{name}.{field} changed {before[name].get(field) if field else before.get(name)!r} -> "
                        f"{after[name].get(field) if field else after.get(name)!r} on {apdu.hex().upper()} -> {sw:04X}")

    # the session as the terminal sees it
    if (verify_ok and p2 == 0x00) or change_ok:
        session.pin = True
    if auth_ok:
        session.ext = True
    if (sw == 0x9000 or sw >> 8 in (0x61, 0x62)) and cla == 0x00 and ins == 0xA4:
        if apdu in MF_SELECTS or (p1 == 0x04 and apdu[5:5 + apdu[4]] in OTHER_APP_NAMES):
            session.ext = False  # the SSSE is left: its external authentications go (the PIN stays, P7 §5.8)
    if sw >> 8 == 0x61:
        session.waiting = True
    elif not (is_get_response(apdu) and (sw >> 8 == 0x6C or sw in (0x6A86, 0x6700, 0x6F00))):
        session.waiting = False  # a GET RESPONSE refused for its coding keeps what waits

    # no protected data without a verified PIN or an external authentication
    if (sw == 0x9000 or sw >> 8 == 0x61) and ins in (0xB0, 0xB2, 0xC0) and cla == 0x00 and data and not (
            session.pin or session.ext):
        assert not leaks(data, protected), f"protected data {data.hex()} read without authorisation by {apdu.hex()}"


def run_sequence(blob: bytes, steps_source, stats) -> None:
    card = card_from(blob)
    protected = protected_values(card)
    session = Session()
    card.power_on(1)
    for _ in range(steps_source.max_steps):
        kind, value = steps_source.next(card)
        if kind == "reset":
            card.power_on(value)
            session.reset()
            stats["resets"] += 1
            continue
        for apdu in value:
            before, enc_before = dump(card), image.encode(card.store.objects, 0)
            response = card.transmit(apdu)  # nothing may escape: a raise fails the property
            after, enc_after = dump(card), image.encode(card.store.objects, 0)
            stats["apdus"] += 1
            stats[f"sw{response[-2]:02X}"] += 1
            check_step(apdu, response, before, after, enc_before, enc_after, session, protected, stats)
            if after != before:
                protected = protected_values(card)  # an authorised UPDATE may have written a protected file


class Steps:
    """The steps of one sequence: first how the terminal starts (nothing, SELECT of an application,
    VERIFY), then drawn steps."""

    def __init__(self, data, max_steps):
        self.data = data
        self.max_steps = max_steps
        self.started = False

    def next(self, card):
        if not self.started:
            self.started = True
            return ("apdus", self.data.draw(START))
        return self.data.draw(step(card))


def test_card_transmit_fuzz():
    stats = collections.Counter()

    @fuzz_settings(CARD_EXAMPLES)
    @given(data=st.data(), base=st.sampled_from(sorted(BASES)), length=st.integers(1, 60))
    def run(data, base, length):
        run_sequence(base_image(base), Steps(data, length), stats)

    run()
    print(f"\nfuzz: {stats['apdus']} APDUs, 0 exceptions, 0 undesigned 6F00 "
          f"({stats['designed 6F00']} GET RESPONSE 6F00, {stats['resets']} resets, {stats['6Cxx']} 6Cxx, "
          f"{stats['authorised updates']} authorised updates; SW1 9000/61/62/63/67/69/6A/6D/6E/93: "
          + "/".join(str(stats[f'sw{s}']) for s in ('90', '61', '62', '63', '67', '69', '6A', '6D', '6E', '93'))
          + ")")
    test_card_transmit_fuzz.apdus = stats["apdus"]
    assert stats["apdus"] >= CARD_EXAMPLES * 5
    assert stats["sw90"] and stats["sw63"] and stats["sw69"] and stats["sw6A"] and stats["sw67"]


def test_decoder_and_os_on_pure_random_bytes():
    """Uniformly random bytes (no bias at all), in T=0 and T=1, on a fresh card."""
    stats = collections.Counter()
    blob = base_image("fresh")

    @fuzz_settings(PARSER_EXAMPLES)
    @given(st.lists(st.binary(max_size=300), min_size=1, max_size=20), st.sampled_from((0, 1)))
    def run(apdus, protocol):
        card = card_from(blob)
        protected = protected_values(card)
        card.power_on(protocol)
        session = Session()
        for apdu in apdus:
            before, enc_before = dump(card), image.encode(card.store.objects, 0)
            response = card.transmit(apdu)
            stats["apdus"] += 1
            check_step(apdu, response, before, dump(card), enc_before, image.encode(card.store.objects, 0),
                       session, protected, stats)

    run()
    print(f"\nfuzz (unbiased): {stats['apdus']} APDUs, 0 exceptions, 0 undesigned 6F00")
    assert stats["apdus"] >= PARSER_EXAMPLES


def test_get_response_with_nothing_waiting_is_the_one_designed_6f00():
    """The oracle's 6F00 exception is exactly P5 §6.6.4's case: with data waiting GET RESPONSE delivers it,
    with nothing waiting it answers 6F00, and a malformed GET RESPONSE is refused by its coding."""
    card = card_from(base_image("fresh"))
    card.power_on(0)
    session = Session()
    stats = collections.Counter()
    for command, expected in (
            (bytes.fromhex("00C0000000"), "6F00"),  # nothing waiting
            (select_name(DDF_NAME), "611E"),  # T=0: the FCI waits
            (bytes.fromhex("00C0000100"), "6A86"),
            (bytes.fromhex("00C000001E"), "6F1C840F" + DDF_NAME.hex().upper() + "A50988011E9F0C038601039000"),
            (bytes.fromhex("00C0000008"), "6F00")):  # delivered: nothing waits any more
        before, enc = dump(card), image.encode(card.store.objects, 0)
        response = card.transmit(command)
        assert response.hex().upper() == expected, command.hex()
        check_step(command, response, before, dump(card), enc, image.encode(card.store.objects, 0), session,
                   (set(), set()), stats)
    assert stats["designed 6F00"] == 2
    # any other 6F00 fails the oracle: on another command, or on GET RESPONSE while data waits
    waiting = Session()
    waiting.waiting = True
    for command, session in ((bytes.fromhex("00B2012C12"), Session()), (bytes.fromhex("00C0000000"), waiting),
                             (bytes.fromhex("00C0000100"), Session())):
        with pytest.raises(AssertionError, match="internal error 6F00"):
            check_step(command, b"\x6F\x00", {}, {}, b"", b"", session, (set(), set()), stats)


# -- a known bug the fuzzer found -------------------------------------------------------------------------

def test_short_le_on_generate_ac_keeps_the_answer_for_get_response():
    """Found by this fuzzer: the card used to answer 6Cxx after GENERATE AC had run and committed
    its ATC, so the retry with the Le it asked for was refused and an ATC was burnt. A command
    with data now gets the first Le bytes and 61xx; GET RESPONSE gives the rest (ISO 7816-4)."""
    card = card_from(base_image("active"))
    card.power_on(1)
    assert card.transmit(select_name(AID))[-2:] == b"\x90\x00"
    assert card.transmit(GPO)[-2:] == b"\x90\x00"
    atc = card.store["fin.state"].atc
    first = bytes((0x80, 0xAE, 0x80, 0x00, len(CDOL1))) + CDOL1
    response = card.transmit(first + b"\x01")
    assert len(response) == 3 and response[1] == 0x61
    rest = card.transmit(bytes((0x00, 0xC0, 0x00, 0x00, response[2])))
    assert rest[-2:] == b"\x90\x00"
    whole = response[:1] + rest[:-2]
    assert whole[0] == 0x77 and len(whole) == 2 + whole[1]  # the whole format-2 answer, nothing lost
    assert card.store["fin.state"].atc == atc + 1


# -- parsers -------------------------------------------------------------------------------------------

TRACE_SAMPLES = sorted(TRACES.glob("*.apdu"))
TRACE_TEXT = [p.read_text(encoding="utf-8") for p in TRACE_SAMPLES]
TRACE_ALPHABET = st.sampled_from(list("0123456789ABCDEFabcdefXx*{}:|<>@#- \n\t") + [
    "reset", "power-off", "@date ", "@random ", "@protocol T=0", "@profile default", "@issued ", "2026-11-21",
    "{c:8}", "{c}", "{c:*}", "{x:0}", "{1a}", "> 00 A4", "< 90 00", "\n> ", "\n< ", "XX", "|", "* 90 00", "\r\n",
    "\u00e9", "\x00"])


@st.composite
def trace_text(draw):
    if draw(st.booleans()) and TRACE_TEXT:
        text = draw(st.sampled_from(TRACE_TEXT))
        lines = text.splitlines()
        for _ in range(draw(st.integers(1, 4))):
            if not lines:
                break
            i = draw(st.integers(0, len(lines) - 1))
            op = draw(st.integers(0, 2))
            if op == 0:
                del lines[i]
            elif op == 1:
                lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))] + "".join(draw(st.lists(TRACE_ALPHABET, max_size=5)))
            else:
                lines.insert(i, "".join(draw(st.lists(TRACE_ALPHABET, max_size=8))))
        return "\n".join(lines)
    if draw(st.booleans()):
        return "".join(draw(st.lists(TRACE_ALPHABET, max_size=40)))
    return draw(st.text(max_size=200))


def parsed_or_refused(strategy, parse, error, kind, check_refusal=lambda refusal: None) -> collections.Counter:
    """`parse` on PARSER_EXAMPLES inputs drawn from `strategy`: each gives a `kind` or raises `error`
    (then `check_refusal(it)`), never anything else; the counts "parsed" and "refused"."""
    count = collections.Counter()

    @fuzz_settings(PARSER_EXAMPLES)
    @given(strategy)
    def run(value):
        try:
            result = parse(value)
        except error as refusal:
            check_refusal(refusal)
            count["refused"] += 1
            return
        assert isinstance(result, kind)
        count["parsed"] += 1

    run()
    return count


def test_trace_parser_fuzz():
    count = parsed_or_refused(trace_text(), lambda text: parse_trace(text, "fuzz.apdu"), TraceError, Trace)
    print(f"\nfuzz traces: {count['parsed']} parsed, {count['refused']} TraceError, 0 other exceptions")
    assert count["parsed"] and count["refused"]


DEFAULT_PROFILE = tomllib.loads((SHIPPED / "default.toml").read_text(encoding="utf-8"))
PROFILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 70000), st.text(max_size=30), st.floats(allow_nan=True),
    st.dates(), st.datetimes(), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                                      max_size=2),
    st.sampled_from(["", "00", "3des", "SM4", "personalisation", "1990-03-07", "2026-02-30", "FF" * 16, "G" * 32,
                     "110101199003071233", "11010119900307123X", "6234560000000008", "李华", "\x00", "lrc", "crc",
                     "13", "97", "0000000001", "123456789012"]))


@st.composite
def profile_dict(draw):
    data = copy.deepcopy(DEFAULT_PROFILE)
    data.setdefault("atr", {})
    for _ in range(draw(st.integers(1, 4))):
        table = draw(st.sampled_from(sorted(data)))
        op = draw(st.integers(0, 3))
        if op == 0:
            data[table] = draw(PROFILE_VALUES)  # a table replaced by a value
        elif not isinstance(data[table], dict):
            continue
        elif op == 1 and data[table]:
            del data[table][draw(st.sampled_from(sorted(data[table])))]
        else:
            keys = sorted(data[table]) + ["fi_di", "guard_time", "wi", "ifsc", "bwi", "cwi", "edc",
                                          "specific_protocol", "expiry_date", "issue_date", "psn", "unknown"]
            data[table][draw(st.sampled_from(keys))] = draw(PROFILE_VALUES)
    return data


def test_profile_loader_fuzz():
    def one_line(error):
        assert str(error).startswith("fuzz.toml")

    count = parsed_or_refused(profile_dict(), lambda data: parse_profile(data, "fuzz", "fuzz.toml"), ProfileError,
                              Profile, one_line)
    print(f"\nfuzz profiles: {count['parsed']} loaded, {count['refused']} ProfileError, 0 other exceptions")
    assert count["refused"]


@st.composite
def vpcd_stream(draw):
    frames = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            payload = bytes((draw(st.integers(0, 255)),))
        elif kind == 1:
            payload = draw(st.binary(max_size=300))
        else:
            payload = draw(st.binary(max_size=20))
        frames.append(len(payload).to_bytes(2, "big") + payload)
    stream = b"".join(frames) + draw(st.binary(max_size=10))
    if draw(st.booleans()):
        stream = draw(st.binary(max_size=400))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    return stream, cuts


def test_vpcd_framing_fuzz():
    count = collections.Counter()

    @fuzz_settings(PARSER_EXAMPLES)
    @given(vpcd_stream())
    def run(case):
        stream, cuts = case
        protocol = VpcdProtocol()
        events = []
        last = 0
        for cut in cuts + [len(stream)]:
            protocol.receive_data(stream[last:cut])
            last = cut
            events += list(protocol.events())
        for event in events:
            assert isinstance(event, (Apdu, GetAtr, PowerOff, PowerOn, Reset, Unknown))
        # the same stream in one piece gives the same events: framing is independent of the reads
        whole = VpcdProtocol()
        whole.receive_data(stream)
        assert list(whole.events()) == events
        assert protocol.pending == whole.pending
        count["events"] += len(events)
        count["streams"] += 1

    run()
    print(f"\nfuzz vpcd: {count['streams']} streams, {count['events']} events, 0 exceptions")


@st.composite
def t1_bytes(draw, kind):
    """Random bytes, or a block with the right LEN and EDC (PCB of any kind), maybe damaged."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=270))
    pcb = draw(st.sampled_from((0x00, 0x40, 0x20, 0x60, 0x80, 0x90, 0x81, 0x82, 0x83, 0xC0, 0xC1, 0xE1, 0xC2,
                                0xE2, 0xC3, 0xE3, 0xC4, 0xFF)) | st.integers(0, 255))
    inf = draw(st.binary(max_size=20) | st.binary(min_size=254, max_size=254))
    nad = draw(st.sampled_from((0x00, 0x12, 0x21)) | st.integers(0, 255))
    body = bytes((nad, pcb, len(inf))) + inf
    block = bytearray(body + edc(body, kind))
    damage = draw(st.integers(0, 5))
    if damage == 1 and block:
        i = draw(st.integers(0, len(block) - 1))
        block[i] ^= 1 << draw(st.integers(0, 7))
    elif damage == 2:
        block = block[:draw(st.integers(0, len(block)))]
    elif damage == 3:
        block += draw(st.binary(min_size=1, max_size=4))
    return bytes(block)


def test_t1_blocks_fuzz():
    count = collections.Counter()

    @fuzz_settings(PARSER_EXAMPLES)
    @given(st.sampled_from((LRC, CRC)).flatmap(lambda kind: st.tuples(st.just(kind), t1_bytes(kind))),
           st.lists(st.integers(1, 40), max_size=5), st.booleans())
    def run(case, pieces, parity):
        kind, data = case
        decoded = t1_decode(data, kind)
        assert isinstance(decoded, (Block, Invalid))
        count["decoded " + type(decoded).__name__] += 1
        reader = BlockReader(kind)
        i = 0
        for size in pieces + [len(data)]:
            chunk = data[i:i + size]
            i += size
            got = reader.feed(chunk, parity_error=parity and size == 3)
            assert got is None or isinstance(got, (Block, Invalid))
            if got is not None:
                count[type(got).__name__] += 1
        expired = reader.expire()
        assert expired is None or isinstance(expired, Invalid)

    run()
    print(f"\nfuzz T=1: decode {count['decoded Block']} blocks / {count['decoded Invalid']} invalid; "
          f"BlockReader {count['Block']} blocks / {count['Invalid']} invalid; 0 exceptions")
    assert count["decoded Block"] and count["decoded Invalid"] and count["Block"] and count["Invalid"]


def test_ber_parse_fuzz():
    count = collections.Counter()

    @fuzz_settings(PARSER_EXAMPLES)
    @given(st.binary(max_size=100) | st.lists(st.sampled_from(
        [b"\x9F", b"\x1F", b"\x5F\x2D", b"\x81", b"\x82", b"\x83", b"\x84", b"\x80", b"\x02", b"\x00", b"\xFF",
         b"\x70", b"\x6F\x03", b"\xBF\x0C\x81\x01"]) | st.binary(max_size=4), max_size=20).map(b"".join))
    def run(data):
        try:
            objects = ber.parse(data)
        except ValueError:
            count["refused"] += 1
            return
        assert isinstance(objects, list)
        for tag, value in objects:
            assert isinstance(tag, int) and isinstance(value, bytes)
        count["parsed"] += 1

    run()
    print(f"\nfuzz BER: {count['parsed']} parsed, {count['refused']} ValueError, 0 other exceptions")
    assert count["parsed"] and count["refused"]


def test_atheris_harness_runs_briefly(tmp_path):
    """The coverage-guided harness (bench/fuzz_atheris.py) runs a short burst where atheris installs
    (`make test` installs it best-effort); long runs are on demand."""
    pytest.importorskip("atheris")
    import subprocess
    import sys

    harness = ROOT / "bench" / "fuzz_atheris.py"
    result = subprocess.run([sys.executable, str(harness), "-atheris_runs=300", "-seed=1"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Done 300 in" in result.stderr and "0 exceptions, 0 6F00" in result.stdout + result.stderr
