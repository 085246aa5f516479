"""Property-based fuzzing (hypothesis) of everything that takes bytes or text from outside.

1. `Card.transmit`: random APDU sequences, biased toward the card's real CLA/INS values,
   SELECTs of every application and file, VERIFYs (right and wrong PINs, both
   applications), GET CHALLENGE + random MACs, GPO + GENERATE AC + random issuer
   scripts, resets in T=0 and T=1, on several personalised starting states. After
   every APDU:
   - no exception escapes `Card.transmit` and `6F00` (an internal error) never appears;
   - a command answered with an error SW (anything but 9000/61xx/62xx/63xx) changes no
     persistent state (`image.encode(card.store.objects, 0)` identical before/after);
   - 63Cx changes only one try counter, down by one; 6983 changes nothing;
   - every persistent change is one of the few a command without a MAC may make
     (try counter down; PIN tries back to the limit on a 9000 VERIFY / CHANGE PIN;
     the SSSE PIN value and activation on a 9000 CHANGE PIN; ATC +1 on GENERATE AC);
     in particular no lock (SSSE lock, card state, financial lock) is ever lifted
     and no try counter ever grows otherwise (random commands never carry a valid MAC);
   - no protected record (EF05 05/06, EF06, DF04 records, the transparent EF07/EF08)
     comes back without a verified PIN or external authentication in the session.
2. Parsers: the trace parser (TraceError or a Trace), the profile loader (ProfileError
   or a Profile), vpcd framing (events, never an exception), T=1 blocks (Block or
   Invalid), chip.ber.parse (ValueError or a list).

Counts are bounded so the file runs in well under a minute; `SSCARD_FUZZ_EXAMPLES=N`
multiplies them for long runs (N examples per property for the card). Run with
`pytest -s` to see the summary lines ("fuzz: N APDUs, 0 exceptions, 0 6F00").
"""

import collections
import copy
import datetime
import functools
import os
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chip import Card, ber, image
from chip.directory import PPSE_NAME, PSE_NAME
from chip.financial import AID, pin_block
from chip.fs import LINEAR
from chip.image import MemoryBackend
from chip.pin import pack, unpack
from chip.profile import SHIPPED, Profile, ProfileError, parse_profile
from chip.ssse import DDF_NAME
from chip.store import Store
from chip.t1 import CRC, LRC, Block, BlockReader, Invalid, edc, decode as t1_decode
from reader import SimReader
from reader.issuer import IssuerHost
from reader.payment_terminal import PaymentTerminal
from reader.psam import Psam
from reader.ssse_terminal import SsseTerminal
from reader.trace import Trace, TraceError, parse as parse_trace
from reader.vpcd import Apdu, GetAtr, PowerOff, PowerOn, Reset, Unknown, VpcdProtocol

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

LONG = int(os.environ.get("SSCARD_FUZZ_EXAMPLES", "0"))
CARD_EXAMPLES = LONG or 150
PARSER_EXAMPLES = LONG or 300
D = datetime.date(2026, 11, 21)


def fuzz_settings(n):
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- starting states ----------------------------------------------------------------------------------

SSSE_PIN, FIN_PIN = "123456", "000000"
CDOL1 = bytes.fromhex("000000001000" "000000000000" "0156" "0000000000" "0156" "261121" "00" "11223344")
GPO = bytes.fromhex("80A800000B830900000000100001560000")
GPO_SM4 = bytes.fromhex("80A800000B830900000000100001560001")


def _terminal(card):
    terminal = SsseTerminal(SimReader(card), Psam(SimReader(Card.psam("default", date=D))))
    assert terminal.start() == 0x9000
    return terminal


def _fresh(card):
    pass


def _active(card):
    """SSSE activated by a hospital registration (a DF04 record exists), financial application activated."""
    assert _terminal(card).register(date=D, amount=1234) == 0x9000
    host = IssuerHost("default")
    host.queue(host.profile.financial.pan, IssuerHost.activation(FIN_PIN))
    outcome = PaymentTerminal(SimReader(card), date=D).purchase(0, host=host)
    assert [sw for _, sw in outcome.script_results] == [0x9000, 0x9000]


def _locked(card):
    """SSSE loss-locked after a registration; financial application blocked by script."""
    terminal = _terminal(card)
    assert terminal.register(date=D) == 0x9000
    assert terminal.lock() == 0x9000
    host = IssuerHost("default")
    host.queue(host.profile.financial.pan, IssuerHost.command(0x84, 0x1E))
    outcome = PaymentTerminal(SimReader(card), date=D).purchase(0, host=host)
    assert [sw for _, sw in outcome.script_results] == [0x9000]


def _last_tries(card):
    """One try left on both PINs, and on RK."""
    r = SimReader(card)
    r.reset()
    assert r.transmit(b"\x00\xA4\x04\x00" + bytes((len(DDF_NAME),)) + DDF_NAME)[-2:] == b"\x90\x00"
    for left in range(5, 0, -1):
        assert r.transmit(bytes.fromhex("0020000003999999")) == bytes((0x63, 0xC0 | left))
    terminal = _terminal(card)
    for left in (2, 1):
        challenge = terminal.challenge()
        assert terminal.send(bytes.fromhex("0082000A10") + challenge * 2)[-2:] == bytes((0x63, 0xC0 | left))
    r.reset()
    assert r.transmit(b"\x00\xA4\x04\x00\x08" + AID)[-2:] == b"\x90\x00"
    for left in (2, 1):
        assert r.transmit(b"\x00\x20\x00\x80\x08" + pin_block("999999")) == bytes((0x63, 0xC0 | left))


BASES = {"fresh": _fresh, "active": _active, "locked": _locked, "last-tries": _last_tries}


@functools.cache
def base_image(name: str) -> bytes:
    card = Card.from_profile("default", date=D)
    BASES[name](card)
    return image.encode(card.store.objects, 0)


def card_from(blob: bytes) -> Card:
    objects, _ = image.decode(blob)
    card = Card(Store(MemoryBackend(), objects), D)
    card.random = lambda n: bytes(range(1, n + 1))  # deterministic challenges: reproducible failures
    return card


# -- what the fuzzer sends ------------------------------------------------------------------------------

CLAS = (0x00, 0x80, 0x84, 0x04)
INSES = (0xA4, 0xB0, 0xB2, 0xDC, 0xE2, 0x20, 0x5E, 0x84, 0x82, 0x88, 0x1E, 0x18, 0x16, 0x24, 0xA8, 0xAE,
         0xCA, 0xC0, 0xDA, 0x1A, 0xFA)
P_VALUES = (0x00, 0x01, 0x02, 0x03, 0x04, 0x08, 0x09, 0x0A, 0x0C, 0x14, 0x2C, 0x30, 0x34, 0x40, 0x80,
            0x9F, 0xA8, 0xAC, 0xB4, 0xDF, 0x7F, 0xFF)
DATA_LENGTHS = (0, 1, 2, 3, 4, 6, 8, 10, 11, 12, 16, 20, 23, 29, 31, 33)


def select_name(name: bytes) -> bytes:
    return b"\x00\xA4\x04\x00" + bytes((len(name),)) + name


SELECTS = [select_name(n) for n in (DDF_NAME, PSE_NAME, PPSE_NAME, AID, bytes.fromhex("D15600000504"),
                                    bytes.fromhex("D156000005"), DDF_NAME[:5], AID[:5])] + [
    bytes.fromhex(h) for h in (
        "00A4040000", "00A40000023F00", "00A4000C023F00", "00A4010C02DF04", "00A4000002DF04", "00A4020C02EF15",
        "00A4020002EF05", "00A4020C02EF06", "00A4020C02EF07", "00A4000002EF08", "00A4010002DDF1",
        "00A4080004DDF1DF04", "00A40804063F00DDF1EF06", "00A4030000", "00A4040201D1", "00A4000C02DDF1",
    )]
MF_SELECTS = {bytes.fromhex("00A40000023F00"), bytes.fromhex("00A4000C023F00"), bytes.fromhex("00A4040000")}
APP_NAMES = {DDF_NAME, PSE_NAME, PPSE_NAME, AID}
READS = [bytes.fromhex(h) for h in (
    "00B2052C00", "00B2062C00", "00B2053400", "00B2083400", "00B2093400", "00B2013400", "00B2073400", "00B2012C00",
    "00B201AC00", "00B2510400", "00B201B400", "00B2010C00", "00B2020C00", "00B2030C00", "00B0870000", "00B0880000",
    "00B0000000", "00B2050400", "00B2010400", "00B2013C00",
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
    le = draw(st.sampled_from((0, 1, 2, 4, 8, 0x10, 0x20)) | st.integers(0, 255))
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


@st.composite
def step(draw, card):
    """One step: ('reset', protocol) or ('apdu', bytes). Drawn with the card's current state in view
    (the right PINs are the oracle's knowledge, to reach the authorised paths too)."""
    kind = draw(st.integers(0, 99))
    if kind < 4:
        return ("reset", draw(st.sampled_from((0, 1, 1))))
    if kind < 22:
        return ("apdu", draw(st.sampled_from(SELECTS)))
    if kind < 32:
        pin = digits(draw, unpack(card.store["ssse.pin"].value))
        return ("apdu", bytes((0x00, 0x20, 0x00, 0x00, len(pack(pin)))) + pack(pin))
    if kind < 38:
        pin = digits(draw, FIN_PIN)
        return ("apdu", b"\x00\x20\x00\x80\x08" + pin_block(pin))
    if kind < 41:
        old = digits(draw, unpack(card.store["ssse.pin"].value))
        new = digits(draw, "246810")
        data = pack(old) + b"\xFF" + pack(new)
        return ("apdu", bytes((0x80, 0x5E, 0x01, 0x00, len(data))) + data)
    if kind < 50:
        return ("apdu", draw(st.sampled_from(READS)))
    if kind < 55:
        return ("apdu", bytes.fromhex("0084000008"))
    if kind < 62:  # a MAC-protected command with a random MAC (after GET CHALLENGE, or not)
        cla, ins, p1, p2 = draw(st.sampled_from((
            (0x84, 0x1E, 0, 0), (0x84, 0x1E, 0, 1), (0x84, 0x18, 0, 0), (0x84, 0x16, 0, 0), (0x84, 0x24, 0, 0),
            (0x84, 0x24, 0, 2), (0x80, 0x5E, 0, 0), (0x04, 0xDA, 0xDF, 0x7F), (0x04, 0xDA, 0x9F, 0x14),
            (0x04, 0xDA, 0x9F, 0x23), (0x00, 0x82, 0x00, 0x0A), (0x00, 0x82, 0x00, 0x00), (0x00, 0xE2, 0x00, 0xA8),
            (0x00, 0xDC, 0x01, 0xAC))))
        body = draw(st.sampled_from((b"", b"\x01", pack("246810"), bytes(16), bytes(10), bytes(21))))
        mac = draw(st.binary(min_size=4, max_size=16))
        data = body + mac
        return ("apdu", bytes((cla, ins, p1, p2, len(data))) + data)
    if kind < 66:
        return ("apdu", draw(st.sampled_from((GPO, GPO_SM4))))
    if kind < 71:
        p1 = draw(st.sampled_from((0x00, 0x40, 0x80, 0xC0, 0x90)))
        data = draw(st.sampled_from((CDOL1, b"00" + CDOL1, b"\x30\x35" + CDOL1, CDOL1[:20])))
        le = draw(st.sampled_from((b"\x00", b"", b"\x00", b"\x40")))
        return ("apdu", bytes((0x80, 0xAE, p1, 0x00, len(data))) + data + le)
    if kind < 73:
        return ("apdu", draw(st.sampled_from([bytes.fromhex("80CA" + t + "00") for t in
                                              ("9F36", "9F13", "9F17", "9F79", "9F4F", "9F14", "9F23", "DF7F")])))
    if kind < 75:
        return ("apdu", bytes.fromhex("00C0000000"))
    return ("apdu", draw(raw_apdu()))


# -- the oracle -------------------------------------------------------------------------------------------

SECRETS = ("ssse.pin", "fin.pin", "ssse.rk", "ssse.irk", "ssse.stk", "ssse.puk")
PROTECTED_RECORD_OBJECTS = ("ssse.ef06", "ssse.visits", "ssse.purchases")
TRANSPARENT_EFS = [node for node in Card.from_profile().mf.walk() if not node.is_df and node.structure is not LINEAR]
# every transparent EF of the card is protected (EF07 fingerprint, EF08 photo): a READ BINARY that succeeds
# without authorisation is a leak
assert TRANSPARENT_EFS and all(ef.read for ef in TRANSPARENT_EFS)


def dump(card) -> dict:
    return {name: copy.deepcopy(obj.dump()) for name, obj in card.store.objects.items()}


def protected_values(card) -> set:
    objects = card.store.objects
    values = set(objects["ssse.ef05"].records[4:6])
    for name in PROTECTED_RECORD_OBJECTS:
        values.update(objects[name].records)
    return values


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


class Session:
    """What the terminal side knows of the session: was a PIN verified / the terminal authenticated?"""

    def __init__(self):
        self.pin = False
        self.ext = False

    def reset(self):
        self.pin = self.ext = False


def check_step(apdu: bytes, response: bytes, before: dict, after: dict, enc_before: bytes, enc_after: bytes,
               session: Session, protected: set, stats) -> None:
    sw = int.from_bytes(response[-2:], "big")
    data = response[:-2]
    assert len(response) >= 2
    assert sw != 0x6F00, "internal error 6F00"
    cla, ins = (apdu[0], apdu[1]) if len(apdu) >= 2 else (None, None)
    p1, p2 = (apdu[2], apdu[3]) if len(apdu) >= 4 else (None, None)
    has_data = len(apdu) > 5
    diff = changes(before, after)

    if sw >> 8 == 0x6C:
        # Known bug (test_short_le_on_generate_ac_is_answered_6cxx_after_committing): a state-changing
        # command answered 6Cxx has already committed. Allow only that ATC step here; everything else
        # must still hold.
        stats["6Cxx"] += 1
        assert diff <= {("fin.state", "atc")}, (diff, response.hex())
    elif is_error(sw):
        assert enc_after == enc_before, f"error SW {sw:04X} changed the persistent state: {sorted(diff)}"
    if sw >> 8 == 0x63 and (sw & 0xF0) == 0xC0:
        for name, field in diff:
            assert name in SECRETS and field == "tries", (sw, diff)
            assert after[name]["tries"] == before[name]["tries"] - 1, (name, before[name], after[name])
        assert len(diff) <= 1
    if sw == 0x6983:
        assert not diff

    # every persistent change is one a command without a MAC may make
    verify_ok = sw == 0x9000 and cla == 0x00 and ins == 0x20 and has_data
    change_ok = sw == 0x9000 and cla == 0x80 and ins == 0x5E and p1 == 0x01
    for name, field in diff:
        if field == "tries":
            old, new = before[name]["tries"], after[name]["tries"]
            if new <= old:
                assert new == old - 1, (name, old, new)
                continue
            grows = (name == "ssse.pin" and (verify_ok and p2 == 0x00 or change_ok)
                     or name == "fin.pin" and verify_ok and p2 == 0x80)
            assert grows and new == after[name]["limit"], f"{name} tries grew {old} -> {new} on {apdu.hex()} {sw:04X}"
        elif (name, field) == ("ssse.pin", "value"):
            assert change_ok, (apdu.hex(), sw)
            assert apdu[5:].endswith(after[name]["value"])
        elif (name, field) == ("ssse.state", "lifecycle"):
            assert change_ok and (before[name][field], after[name][field]) == ("issued", "active")
        elif (name, field) == ("fin.state", "atc"):
            assert ins == 0xAE and cla == 0x80 and (sw == 0x9000 or sw >> 8 == 0x6C)
            assert after[name][field] == before[name][field] + 1
        else:  # locks, card state, activation, records, keys, limits: never without a MAC
            pytest.fail(f"{name}.{field} changed {before[name].get(field) if field else before.get(name)!r} -> "
                        f"{after[name].get(field) if field else after.get(name)!r} on {apdu.hex().upper()} -> {sw:04X}")

    # the session as the terminal sees it
    if verify_ok and p2 == 0x00 or change_ok:
        session.pin = True
    if sw == 0x9000 and cla == 0x00 and ins == 0x82 and p2 == 0x0A:
        session.ext = True
    if (sw == 0x9000 or sw >> 8 in (0x61, 0x62)) and cla == 0x00 and ins == 0xA4:
        if apdu in MF_SELECTS or p1 == 0x04 and apdu[5:5 + apdu[4]] in APP_NAMES:
            session.reset()

    # no protected data without a verified PIN or an external authentication
    if sw in (0x9000, 0x6282) and ins in (0xB0, 0xB2) and cla == 0x00 and not (session.pin or session.ext):
        assert ins != 0xB0, f"READ BINARY of a protected transparent EF without authorisation: {apdu.hex()}"
        assert data not in protected, f"protected record {data.hex()} read without authorisation by {apdu.hex()}"


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
        before, enc_before = dump(card), image.encode(card.store.objects, 0)
        response = card.transmit(value)  # nothing may escape: a raise fails the property
        after, enc_after = dump(card), image.encode(card.store.objects, 0)
        stats["apdus"] += 1
        stats[f"sw{response[-2]:02X}"] += 1
        check_step(value, response, before, after, enc_before, enc_after, session, protected, stats)


class Steps:
    def __init__(self, data, max_steps):
        self.data = data
        self.max_steps = max_steps

    def next(self, card):
        return self.data.draw(step(card))


def test_card_transmit_fuzz():
    stats = collections.Counter()

    @fuzz_settings(CARD_EXAMPLES)
    @given(data=st.data(), base=st.sampled_from(sorted(BASES)), length=st.integers(1, 60))
    def run(data, base, length):
        run_sequence(base_image(base), Steps(data, length), stats)

    run()
    print(f"\nfuzz: {stats['apdus']} APDUs, 0 exceptions, 0 6F00 "
          f"({stats['resets']} resets, {stats['6Cxx']} 6Cxx; SW1 9000/61/62/63/67/69/6A/6D/6E: "
          + "/".join(str(stats[f'sw{s}']) for s in ('90', '61', '62', '63', '67', '69', '6A', '6D', '6E')) + ")")
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
    print(f"\nfuzz (unbiased): {stats['apdus']} APDUs, 0 exceptions, 0 6F00")
    assert stats["apdus"] >= PARSER_EXAMPLES


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

TRACE_SAMPLES = sorted((SHIPPED.parents[1] / "apdu_traces").glob("*.apdu"))
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


def test_trace_parser_fuzz():
    count = collections.Counter()

    @fuzz_settings(PARSER_EXAMPLES)
    @given(trace_text())
    def run(text):
        try:
            trace = parse_trace(text, "fuzz.apdu")
        except TraceError:
            count["refused"] += 1
            return
        assert isinstance(trace, Trace)
        count["parsed"] += 1

    run()
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
    count = collections.Counter()

    @fuzz_settings(PARSER_EXAMPLES)
    @given(profile_dict())
    def run(data):
        try:
            profile = parse_profile(data, "fuzz", "fuzz.toml")
        except ProfileError as error:
            assert str(error).startswith("fuzz.toml")
            count["refused"] += 1
            return
        assert isinstance(profile, Profile)
        count["loaded"] += 1

    run()
    print(f"\nfuzz profiles: {count['loaded']} loaded, {count['refused']} ProfileError, 0 other exceptions")
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

    harness = SHIPPED.parents[1] / "bench" / "fuzz_atheris.py"
    result = subprocess.run([sys.executable, str(harness), "-atheris_runs=300", "-seed=1"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Done 300 in" in result.stderr and "0 exceptions, 0 6F00" in result.stdout + result.stderr
