"""The card's ATR (ISO/IEC 7816-3 §8): built from the profile, parsed and explained, malformed ones refused."""

import copy
import dataclasses
import tomllib
from functools import reduce
from operator import xor

import helpers
import pytest
from helpers import DEFAULT_ATR_EXPLAINED, DEFAULT_TOML, HISTORICAL
from hypothesis import given, settings
from hypothesis import strategies as st

from chip import Card, ProfileError
from chip.contacts.atr import (
    DEFAULT_HISTORICAL,
    LEGACY_HISTORICAL,
    MAX_LENGTH,
    AtrConfig,
    AtrError,
    build,
    build_atr,
    parse_atr,
)
from chip.contacts.timing import DI_TABLE, FI_TABLE
from chip.kernel import image as image_mod
from chip.personalization.profile import parse_profile
from reader.link import atr as reader_atr

# LD/T 32 P2 Table 7 (T=0 only, TB1 00, TC1 00, no TA1, no TD1, no TCK) + the Table 16 historical bytes
DEFAULT_ATR = bytes.fromhex(helpers.DEFAULT_ATR)
# the shipped t1 profile: TA1 13, T=0 and T=1 (TD1 80, TD2 31, TA3 FE, TB3 45), the same historical bytes, TCK
T1_ATR = bytes.fromhex(helpers.T1_ATR)
T1_CONFIG = AtrConfig(fi_di=0x13, tb1=None, guard_time=None, protocols=(0, 1))
# the card's ATR before it followed P2 (an image made then keeps it)
LEGACY_ATR = bytes.fromhex("3B9C138031FE45805A5353434152442D53494D31")
LEGACY_CONFIG = dataclasses.replace(T1_CONFIG, historical=LEGACY_HISTORICAL)
# a real card's contact ATR (the real trace T1 of tests/test_real_traces.py)
REAL_ATR = bytes.fromhex("3B6D0000 00814A4446 8660 5199 000001AC".replace(" ", ""))


def atr(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def with_tck(text: str) -> bytes:
    """TS..last historical byte + the right TCK."""
    data = atr(text)
    return data + bytes((reduce(xor, data[1:], 0),))


# -- the default ATR: P2's basic ATR -------------------------------------------------------------

def test_default_atr_bytes_are_p2_basic_atr():
    assert DEFAULT_HISTORICAL == HISTORICAL
    assert build() == DEFAULT_ATR == atr("3B 6D 00 00 00 81 53 53 43 86 99 11 01 00 00 00 01")
    assert build(AtrConfig()) == DEFAULT_ATR
    assert build_atr(DEFAULT_HISTORICAL) == DEFAULT_ATR
    assert Card.from_profile().atr == DEFAULT_ATR
    assert Card.psam().atr == DEFAULT_ATR


def test_default_atr_explained_byte_by_byte():
    assert parse_atr(DEFAULT_ATR).explain() == DEFAULT_ATR_EXPLAINED


def test_default_atr_parameters():
    parsed = parse_atr(DEFAULT_ATR)
    assert (parsed.ts, parsed.convention, parsed.t0, parsed.k) == (0x3B, "direct", 0x6D, 13)
    assert parsed.interface == {"TB1": 0x00, "TC1": 0x00}
    assert parsed.ta1 is parsed.td1 is parsed.ta2 is parsed.tc2 is None
    with pytest.raises(AttributeError):
        _ = parsed.te1
    assert parsed.protocols == (0,) and parsed.default_protocol == 0 and parsed.negotiable
    assert (parsed.fi_di, parsed.fi, parsed.di, parsed.f_max) == (0x11, 372, 1, 5_000_000)
    assert (parsed.n, parsed.wi) == (0, 10)
    assert parsed.specific is None
    assert parsed.historical == HISTORICAL
    assert parsed.tck is None  # T=0 only: no TCK (P2 §8.3.3.11)
    assert parsed.config() == AtrConfig()
    assert parsed.guard_etu() == 12
    assert parsed.wwt_etu() == 9600  # 960 x WI 10 x D 1 (P2 §9.2.2.1)


def test_real_card_atr_parsed_and_explained():
    parsed = parse_atr(REAL_ATR)
    assert parsed.protocols == (0,) and (parsed.fi, parsed.di) == (372, 1) and parsed.tck is None
    assert parsed.interface == {"TB1": 0x00, "TC1": 0x00} and parsed.k == 13
    assert parsed.config() == AtrConfig(historical=REAL_ATR[4:])
    assert parsed.explain()[4:] == [
        "T1-T2   00 81  chip supplier registration number (P2 Table 16)",
        "T3-T5   4A 44 46  chip / COS supplier's data (COS) 'JDF'",
        "T6-T7   86 60  card manufacturer registration number",
        "T8-T9   51 99  card serial part 1: region code 5199.. (first 4 digits, BCD)",
        "TA-TD   00 00 01 AC  card serial part 2 (unique per card in the issuing area)",
    ]
    lines = reader_atr.explain(REAL_ATR)
    assert lines[0] == "ATR 3B 6D 00 00 00 81 4A 44 46 86 60 51 99 00 00 01 AC"
    assert lines[-3:] == [
        "protocols T=0: negotiable mode; no TA1: T=0 at Fi/Di 372/1 for the whole session, no PPS needed",
        "characters: 12 etu to the card (N=0), 12 etu from the card",
        "T=0: WI 10, WWT 9600 etu at Di 1",
    ]


def test_table16_naming_needs_first_byte_00_and_13_bytes():
    not_bcd = parse_atr(DEFAULT_ATR[:11] + bytes.fromhex("AB01") + DEFAULT_ATR[13:]).explain()
    assert "T8-T9   AB 01  card serial part 1: region code (not BCD)" in not_bcd
    short = parse_atr(build(AtrConfig(historical=HISTORICAL[:12]))).explain()
    assert not any(line.startswith("T1-T2") for line in short)
    assert short[4].startswith("H1      00  category indicator 00")


def test_reader_explain_adds_the_parameters():
    lines = reader_atr.explain(DEFAULT_ATR.hex(":"))
    assert lines[0] == "ATR 3B 6D 00 00 00 81 53 53 43 86 99 11 01 00 00 00 01"
    assert lines[1:10] == parse_atr(DEFAULT_ATR).explain()
    assert lines[10:] == [
        "protocols T=0: negotiable mode; no TA1: T=0 at Fi/Di 372/1 for the whole session, no PPS needed",
        "characters: 12 etu to the card (N=0), 12 etu from the card",
        "T=0: WI 10, WWT 9600 etu at Di 1",
    ]
    assert reader_atr.explain(DEFAULT_ATR) == lines
    assert reader_atr.parse_atr is parse_atr and reader_atr.AtrError is AtrError


def test_reader_explain_refuses_text_that_is_not_hex():
    with pytest.raises(AtrError, match="not hexadecimal"):
        reader_atr.explain("3B 9G")


# -- the t1 profile: T=0 and T=1, TA1 13 ------------------------------------------------------------

def test_t1_profile_atr():
    card = Card.from_profile("t1")
    assert card.atr == T1_ATR == build(dataclasses.replace(T1_CONFIG, historical=HISTORICAL))
    assert card.atr_config == dataclasses.replace(T1_CONFIG, historical=HISTORICAL)
    assert T1_ATR.hex(" ").upper() == "3B 9D 13 80 31 FE 45 00 81 53 53 43 86 99 11 01 00 00 00 01 48"


def test_t1_profile_atr_explained():
    parsed = parse_atr(T1_ATR)
    assert parsed.explain()[:7] == [
        "TS      3B  direct convention",
        "T0      9D  Y1=9: TA1 TD1 follow; K=13 historical bytes",
        "TA1     13  Fi=372 Di=4 f_max=5 MHz: 1 etu = 93 clock cycles",
        "TD1     80  T=0 offered; TD2 follows",
        "TD2     31  T=1 offered; TA3 TB3 follow",
        "TA3     FE  T=1 IFSC 254",
        "TB3     45  T=1 BWI 4, CWI 5: BWT = 11 + 16 x 960 x 372 x Di / Fi etu, CWT = 43 etu",
    ]
    assert parsed.explain()[7:] == parse_atr(DEFAULT_ATR).explain()[4:] + [
        "TCK     48  check byte ok (XOR of T0..TCK is 00)"]
    assert reader_atr.explain(T1_ATR)[-4:] == [
        "protocols T=0, T=1: negotiable mode; without PPS T=0 at Fi/Di 372/1, TA1 allows up to 372/4",
        "characters: 12 etu to the card (N=0), 12 etu from the card",
        "T=0: WI 10, WWT 38400 etu at Di 4",
        "T=1: IFSC 254, EDC LRC, CWT 43 etu, BWT 61451 etu at Fi/Di 372/4",
    ]


def test_t1_profile_atr_parameters():
    parsed = parse_atr(T1_ATR)
    assert (parsed.ts, parsed.t0, parsed.k) == (0x3B, 0x9D, 13)
    assert parsed.interface == {"TA1": 0x13, "TD1": 0x80, "TD2": 0x31, "TA3": 0xFE, "TB3": 0x45}
    assert (parsed.ta1, parsed.td1, parsed.td2, parsed.ta3, parsed.tb3) == (0x13, 0x80, 0x31, 0xFE, 0x45)
    assert parsed.tb1 is parsed.tc1 is parsed.ta2 is parsed.tc3 is parsed.td3 is None
    assert parsed.protocols == (0, 1) and parsed.default_protocol == 0 and parsed.negotiable
    assert (parsed.fi_di, parsed.fi, parsed.di, parsed.f_max) == (0x13, 372, 4, 5_000_000)
    assert (parsed.n, parsed.wi) == (0, 10)
    assert (parsed.ifsc, parsed.bwi, parsed.cwi, parsed.edc) == (254, 4, 5, "lrc")
    assert parsed.tck == 0x48
    assert parsed.config() == dataclasses.replace(T1_CONFIG, historical=HISTORICAL)
    # the timing values the wire uses (docs/wire.md)
    assert parsed.guard_etu() == 12
    assert parsed.wwt_etu() == 960 * 10 * 4
    assert parsed.cwt_etu == 11 + 32
    assert parsed.bwt_etu() == 11 + 16 * 960 * 4  # Fi = 372: 2^BWI x 960 x Di
    assert parsed.bwt_etu(fi=372, di=1) == 11 + 16 * 960


# -- variations ----------------------------------------------------------------------------------

H = HISTORICAL.hex()


@pytest.mark.parametrize("config, expected", [
    (AtrConfig(fi_di=0x13), "3B7D 13 00 00" + H),  # TA1 TB1 TC1 (P2 Table 7, T0 7K)
    (AtrConfig(fi_di=0x13, tb1=None, guard_time=None), "3B1D 13" + H),
    (AtrConfig(guard_time=None), "3B2D 00" + H),  # TB1 only (T0 2K)
    (AtrConfig(tb1=None), "3B4D 00" + H),
    (AtrConfig(tb1=None, guard_time=None), "3B0D" + H),
    (AtrConfig(guard_time=255), "3B6D 00 FF" + H),
    (AtrConfig(wi=20), "3BED 00 00 40 14" + H),  # TD1 only for TC2: T=0, still no TCK
    (AtrConfig(specific=0), "3BED 00 00 10 80" + H),
    (AtrConfig(protocols=(0, 1)), "3BED 00 00 80 31 FE 45" + H + "2B"),
    (AtrConfig(protocols=(1,)), "3BED 00 00 81 31 FE 45" + H + "2A"),
    (AtrConfig(historical=b""), "3B60 00 00"),
], ids=["ta1-13", "ta1-only", "tb1-only", "tc1-only", "no-interface-bytes", "tc1-ff", "wi-20", "specific-t0",
        "t0-t1", "t1-only", "no-historical"])
def test_default_variations_build_exact_bytes_and_read_back(config, expected):
    data = build(config)
    assert data == atr(expected)
    assert parse_atr(data).config() == config
    assert (parse_atr(data).tck is None) == (1 not in config.protocols)


# variations on the card's earlier ATR (T=0 and T=1, TA1 13, no TB1/TC1, historical 80 5A "SSCARD-SIM")
@pytest.mark.parametrize("changes, expected", [
    ({}, "3B9C138031FE45805A5353434152442D53494D 31"),
    ({"edc": "crc"}, "3B9C13807 1FE4501 805A5353434152442D53494D 70"),
    ({"fi_di": 0x96}, "3B9C968031FE45805A5353434152442D53494D B4"),
    ({"specific": 1}, "3B9C1390 81 31FE45805A5353434152442D53494D A0"),
    ({"specific": 0}, "3B9C1390 80 31FE45805A5353434152442D53494D A1"),
    ({"guard_time": 2}, "3BDC13 02 8031FE45805A5353434152442D53494D 73"),
    ({"wi": 20}, "3B9C13C0 14 31FE45805A5353434152442D53494D 65"),
    ({"ifsc": 32, "bwi": 7, "cwi": 13}, "3B9C138031 20 7D 805A5353434152442D53494D D7"),
    ({"protocols": (0,)}, "3B1C13 805A5353434152442D53494D"),
    ({"protocols": (1,)}, "3B9C138131FE45805A5353434152442D53494D30"),
    ({"historical": b""}, "3B90138031FE45 89"),
], ids=["legacy", "crc", "ta1-96", "specific-t1", "specific-t0", "guard-time-2", "wi-20", "t1-iso-defaults",
        "t0-only", "t1-only", "no-historical"])
def test_t1_variations_build_exact_bytes_and_read_back(changes, expected):
    config = dataclasses.replace(LEGACY_CONFIG, **changes)
    data = build(config)
    assert data == atr(expected)
    parsed = parse_atr(data)
    expected_config = config if 1 in config.protocols else dataclasses.replace(config, ifsc=254, bwi=4, cwi=5)
    assert parsed.config() == expected_config
    assert parsed.specific == config.specific
    assert parsed.edc == config.edc
    assert (parsed.fi, parsed.di) == (FI_TABLE[config.fi_di >> 4][0], DI_TABLE[config.fi_di & 0xF])


def test_t0_only_atr_has_no_tck():
    parsed = parse_atr(build(AtrConfig()))
    assert parsed.tck is None and parsed.protocols == (0,)
    assert parsed.explain()[-1].startswith("TA-TD")


def test_specific_mode_explained():
    parsed = parse_atr(build(dataclasses.replace(T1_CONFIG, specific=1, fi_di=0x96)))
    assert not parsed.negotiable and parsed.default_protocol == 1 and not parsed.specific_changeable
    assert "TA2     81  specific mode: T=1, Fi/Di from TA1; cannot change mode" in parsed.explain()
    assert reader_atr.explain(parsed)[-4] == "protocols T=0, T=1: specific mode, T=1 at Fi/Di 512/32 at once (no PPS)"


def test_crc_guard_time_and_wi_explained():
    lines = parse_atr(build(dataclasses.replace(T1_CONFIG, edc="crc", guard_time=2, wi=20))).explain()
    assert "TC1     02  extra guard time N=2: 14 etu per character to the card (the card's: 12)" in lines
    assert "TC2     14  T=0 WI=20: WWT = 960 x 20 x Di etu" in lines
    assert "TC3     01  T=1 EDC: CRC" in lines


def test_guard_time_255_is_the_minimum():
    """ISO 7816-3 §8.3: N = 255 is the minimum character duration, 12 etu on T=0 and 11 on T=1, not 257."""
    parsed = parse_atr(build(AtrConfig(guard_time=255, protocols=(0, 1))))
    assert parsed.guard_etu(0) == 12 and parsed.guard_etu(1) == 11 and parsed.guard_etu() == 12
    assert "TC1     FF  N=255: minimum guard time (12 etu per character on T=0, 11 on T=1)" in parsed.explain()
    assert "characters: 12 etu to the card (N=255), 12 etu from the card" in reader_atr.explain(parsed)
    assert parse_atr(build(AtrConfig(guard_time=254))).guard_etu(0) == 266


@pytest.mark.parametrize("changes, reason", [
    ({"fi_di": 0x73}, "fi_di: Fi index 7 is RFU"),
    ({"fi_di": 0x1A}, "fi_di: Di index A is RFU"),
    ({"tb1": 0x80}, "tb1: must be 00-7F"),
    ({"guard_time": 256}, "guard_time: must be 0-255"),
    ({"protocols": (1, 0)}, "protocols: must be"),
    ({"wi": 0}, "wi: must be 1-255"),
    ({"ifsc": 255}, "ifsc: must be 1-254"),
    ({"bwi": 10}, "bwi: must be 0-9"),
    ({"cwi": 16}, "cwi: must be 0-15"),
    ({"edc": "sum"}, "edc: must be 'lrc' or 'crc'"),
    ({"specific": 1}, "specific: T=1 is not among the offered protocols"),
    ({"historical": bytes(16)}, "historical: at most 15 bytes"),
])
def test_impossible_config_is_refused(changes, reason):
    with pytest.raises(ValueError, match=reason):
        AtrConfig(**changes)


# -- real-world ATRs the parser must read --------------------------------------------------------

def test_t0_card_with_tb1_tc1_and_status_indicator():
    parsed = parse_atr(atr("3B6E00008031806 6B08412016E0183009000".replace(" ", "")))
    assert parsed.protocols == (0,) and parsed.tck is None and (parsed.fi, parsed.di) == (372, 1)
    assert parsed.explain()[2:4] == ["TB1     00  no VPP (P2 §8.3.3.3)",
                                     "TC1     00  extra guard time N=0: 12 etu per character to the card (the card's: 12)"]
    assert parsed.explain()[-2:] == ["H11     83  COMPACT-TLV tag 8 (status indicator), length 3",
                                     "H12-H14 00 90 00  value"]


def test_t1_only_card_with_proprietary_historical_bytes():
    parsed = parse_atr(atr("3BF81300008131FE454A434F5076323431B7"))
    assert parsed.protocols == (1,) and (parsed.ifsc, parsed.bwi, parsed.cwi) == (254, 4, 5)
    assert parsed.explain()[-3:] == ["H1      4A  category indicator 4A: proprietary",
                                     "H2-H8   43 4F 50 76 32 34 31  proprietary historical bytes",
                                     "TCK     B7  check byte ok (XOR of T0..TCK is 00)"]


def test_global_interface_bytes_t15():
    parsed = parse_atr(with_tck("3B 80 80 1F 07"))
    assert parsed.protocols == (0,) and parsed.tck == 0x18
    assert parsed.explain()[3:5] == ["TD2     1F  global interface bytes (T=15); TA3 follows",
                                     "TA3     07  clock stop not supported; classes ABC"]


def test_inverse_convention_ts():
    parsed = parse_atr(atr("3F") + DEFAULT_ATR[1:])
    assert parsed.convention == "inverse" and parsed.explain()[0] == "TS      3F  inverse convention"


def test_ifsc_is_the_first_ta_after_a_t1_td_only():
    # TD2 T=1 with TA3 (IFSC 32), TD3 T=1 with TA4 (a later T=1 byte, not IFSC)
    parsed = parse_atr(with_tck("3B 80 80 91 20 11 80"))
    assert parsed.ifsc == 32 and parsed.protocols == (0, 1)
    assert parsed.explain()[-2] == "TA4     80  T=1 specific byte"


# -- malformed ATRs ------------------------------------------------------------------------------

MALFORMED = [
    ("empty", "", "empty: no TS"),
    ("ts-3a", "3A" + LEGACY_ATR[1:].hex(), "TS 3A is neither 3B (direct convention) nor 3F (inverse convention)"),
    ("ts-only", "3B", "truncated: T0 missing"),
    ("td1-missing", "3B9C13", "truncated interface bytes: TD1 announced by T0 is missing"),
    ("ta3-missing", "3B9C138031", "truncated interface bytes: TA3 announced by TD2 is missing"),
    ("tb3-missing", "3B9C138031FE", "truncated interface bytes: TB3 announced by TD2 is missing"),
    ("historical-short", "3B9C138031FE45805A", "historical bytes missing: T0 announces K=12, only 2 present"),
    ("tck-missing", LEGACY_ATR[:-1].hex(), "TCK missing: required when T=1 is offered"),
    ("tck-wrong", LEGACY_ATR[:-1].hex() + "30",
     "TCK 30 wrong: XOR of T0..TCK is 01, must be 00 (TCK should be 31)"),
    ("t1-tck-missing", T1_ATR[:-1].hex(), "TCK missing: required when T=1 is offered"),
    ("byte-after-tck", LEGACY_ATR.hex() + "00", "1 byte(s) after the end of the ATR"),
    ("byte-after-default", DEFAULT_ATR.hex() + "00", "1 byte(s) after the end of the ATR"),
    ("default-historical-short", DEFAULT_ATR[:-1].hex(), "historical bytes missing: T0 announces K=13, only 12 present"),
    ("default-tc1-missing", "3B6D00", "truncated interface bytes: TC1 announced by T0 is missing"),
    ("byte-after-t0-only", "3B00" + "00", "1 byte(s) after the end of the ATR"),
    ("fi-rfu", with_tck("3B 9C 73 80 31 FE 45 805A5353434152442D53494D").hex(), "TA1 73: Fi index 7 is RFU"),
    ("fi-rfu-e", with_tck("3B 9C E3 80 31 FE 45 805A5353434152442D53494D").hex(), "TA1 E3: Fi index E is RFU"),
    ("di-rfu-0", with_tck("3B 9C 10 80 31 FE 45 805A5353434152442D53494D").hex(), "TA1 10: Di index 0 is RFU"),
    ("di-rfu-a", with_tck("3B 9C 1A 80 31 FE 45 805A5353434152442D53494D").hex(), "TA1 1A: Di index A is RFU"),
    ("ifsc-00", with_tck("3B 80 80 31 00 45").hex(), "TA3 00: IFSC 0 is RFU"),
    ("ifsc-ff", with_tck("3B 80 80 31 FF 45").hex(), "TA3 FF: IFSC 255 is RFU"),
    ("bwi-a", with_tck("3B 80 80 31 FE A5").hex(), "TB3 A5: BWI 10 is RFU"),
    ("wi-0", "3B 80 40 00".replace(" ", ""), "TC2 00: WI 0 is RFU"),
    ("34-bytes", "3B0F" + "00" * 32, "34 bytes: an ATR is TS and at most 32 more bytes"),
]


@pytest.mark.parametrize("data, reason", [pytest.param(d, r, id=i) for i, d, r in MALFORMED])
def test_malformed_atr_refused_with_its_reason(data, reason):
    with pytest.raises(AtrError) as excinfo:
        parse_atr(bytes.fromhex(data))
    assert str(excinfo.value) == reason


def test_longest_legal_atr_is_33_bytes():
    # TS T0(TD1, K=15) TD1(TD2, T=1) TD2..TD15 (T=1, TD follows), TD16 T=1 alone; 15 historical; TCK
    data = with_tck("3B 8F" + "81" * 15 + "01" + "00" * 15)
    assert len(data) == MAX_LENGTH + 1
    with pytest.raises(AtrError, match="34 bytes"):
        parse_atr(data)
    data = with_tck("3B 8F" + "81" * 14 + "01" + "00" * 15)
    assert len(data) == MAX_LENGTH and parse_atr(data).protocols == (1,)


# -- property: every configuration builds an ATR that reads back to it ---------------------------

configs = st.builds(
    AtrConfig,
    fi_di=st.none() | st.tuples(st.sampled_from(sorted(FI_TABLE)), st.sampled_from(sorted(DI_TABLE))).map(
        lambda p: p[0] << 4 | p[1]),
    tb1=st.none() | st.integers(0, 0x7F),
    guard_time=st.none() | st.integers(0, 255),
    protocols=st.sampled_from([(0, 1), (0,), (1,)]),
    wi=st.none() | st.integers(1, 255),
    ifsc=st.integers(1, 254),
    bwi=st.integers(0, 9),
    cwi=st.integers(0, 15),
    edc=st.sampled_from(["lrc", "crc"]),
    historical=st.binary(max_size=15),
).flatmap(lambda c: st.sampled_from([None, *c.protocols]).map(lambda s: dataclasses.replace(c, specific=s)))


@settings(max_examples=300, deadline=None)
@given(configs)
def test_any_config_round_trips(config):
    data = build(config)
    assert len(data) <= MAX_LENGTH
    parsed = parse_atr(data)
    expected = config if 1 in config.protocols else dataclasses.replace(config, ifsc=254, bwi=4, cwi=5, edc="lrc")
    assert parsed.config() == expected
    assert parsed.protocols == config.protocols
    assert parsed.n == (config.guard_time or 0) and parsed.wi == (config.wi or 10)
    assert (parsed.tck is None) == (config.protocols == (0,))
    assert reduce(xor, data[1:], 0) == 0 or parsed.tck is None
    assert len(parsed.explain()) >= 2  # TS, T0 (3B 00: nothing else)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_any_bytes_parse_or_are_refused_with_a_reason(data):
    try:
        parsed = parse_atr(data)
    except AtrError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert parsed.raw == data and parsed.explain()


# -- the profile's [atr] table ---------------------------------------------------------------------

def profile_data(atr_table: dict | None = None) -> dict:
    with open(DEFAULT_TOML, "rb") as f:
        data = tomllib.load(f)
    data = copy.deepcopy(data)
    if atr_table is not None:
        data["atr"] = atr_table
    return data


def test_default_profile_gives_p2_basic_atr():
    profile = parse_profile(profile_data())
    assert profile.atr == AtrConfig(historical=profile.atr_historical)
    assert build(profile.atr_config()) == DEFAULT_ATR


T1_TABLE = {"protocols": "t0+t1", "fi_di": "13", "tb1": "absent", "guard_time": "absent"}


@pytest.mark.parametrize("table, expected", [
    ({}, AtrConfig()),
    ({"protocols": "t0"}, AtrConfig()),
    ({"protocols": "T0+T1"}, AtrConfig(protocols=(0, 1))),
    ({"protocols": "t1"}, AtrConfig(protocols=(1,))),
    (T1_TABLE, T1_CONFIG),
    ({**T1_TABLE, "edc": "crc"}, dataclasses.replace(T1_CONFIG, edc="crc")),
    ({**T1_TABLE, "edc": "CRC"}, dataclasses.replace(T1_CONFIG, edc="crc")),
    ({"fi_di": "96"}, AtrConfig(fi_di=0x96)),
    ({"fi_di": "absent"}, AtrConfig()),
    ({"tb1": "00", "guard_time": 0}, AtrConfig()),
    ({"tb1": "ABSENT"}, AtrConfig(tb1=None)),
    ({"protocols": "t0+t1", "specific_protocol": 1}, AtrConfig(protocols=(0, 1), specific=1)),
    ({"specific_protocol": 0}, AtrConfig(specific=0)),
    ({"guard_time": 255, "wi": 10}, AtrConfig(guard_time=255, wi=10)),
    ({"protocols": "t1", "ifsc": 1, "bwi": 0, "cwi": 0}, AtrConfig(protocols=(1,), ifsc=1, bwi=0, cwi=0)),
    ({**T1_TABLE, "ifsc": 254, "bwi": 9, "cwi": 15, "guard_time": 255, "wi": 255},
     dataclasses.replace(T1_CONFIG, ifsc=254, bwi=9, cwi=15, guard_time=255, wi=255)),
], ids=["empty", "t0", "t0-t1", "t1", "t1-profile", "crc", "crc-upper", "ta1-96", "ta1-absent", "tb1-tc1-00",
        "tb1-absent", "specific-t1", "specific-t0", "tc1-tc2", "minimum", "maximum"])
def test_profile_atr_table_sets_the_card_atr(table, expected):
    profile = parse_profile(profile_data(table))
    expected = dataclasses.replace(expected, historical=profile.atr_historical)
    assert profile.atr_config() == expected
    card = Card.from_profile(profile)
    assert card.atr == build(expected) and card.atr_config == expected
    assert parse_atr(card.atr).config() == expected


@pytest.mark.parametrize("table, protocol", [
    ({}, 0),  # the default card: T=0 only
    (T1_TABLE, 0),  # T=0 and T=1: without PPS the first offered runs (P2 §8.7)
    ({"protocols": "t1"}, 1),
    ({"protocols": "t0+t1", "specific_protocol": 1}, 1),  # specific mode: TA2's protocol at once
    ({"specific_protocol": 0}, 0),
], ids=["t0", "t0-t1", "t1", "specific-t1", "specific-t0"])
def test_power_on_runs_the_protocol_the_atr_gives_without_pps(table, protocol):
    card = Card.from_profile(parse_profile(profile_data(table)))
    assert card.power_on() == card.atr and card.protocol == protocol == parse_atr(card.atr).default_protocol
    other = 1 - protocol
    card.power_on(other)  # told otherwise (a PPS, or a reader that insists): that one
    assert card.protocol == other
    card.reset()  # a warm reset keeps what runs
    assert card.protocol == other
    card.power_off()
    card.power_on()
    assert card.protocol == protocol


def test_shipped_t1_profile_is_the_default_with_an_atr_table():
    with open(DEFAULT_TOML.with_name("t1.toml"), "rb") as f:
        t1 = tomllib.load(f)
    atr_table = t1.pop("atr")
    assert t1 == profile_data()  # the same card otherwise
    assert parse_profile(profile_data(atr_table)).atr_config() == dataclasses.replace(T1_CONFIG, historical=HISTORICAL)
    assert sorted(atr_table) == ["bwi", "cwi", "edc", "fi_di", "guard_time", "ifsc", "protocols", "tb1"]


BAD_ATR_FIELDS = [
    ({"protocols": "t2"}, "atr.protocols", "must be one of 't0', 't0+t1', 't1', got 't2'"),
    ({"protocols": ["t0", "t1"]}, "atr.protocols", "must be str, got list"),
    ({"fi_di": "1"}, "atr.fi_di",
     "must be the TA1 byte like '13' (Fi index, Di index) as 2 hex digits or 'absent', got '1'"),
    ({"fi_di": "1G"}, "atr.fi_di", "got '1G'"),
    ({"fi_di": 0x13}, "atr.fi_di", "must be str, got int 19"),
    ({"fi_di": "73"}, "atr.fi_di", "Fi index 7 (TA1 73) is RFU"),
    ({"fi_di": "10"}, "atr.fi_di", "Di index 0 (TA1 10) is RFU"),
    ({"tb1": "0"}, "atr.tb1", "must be the TB1 byte like '00' (no VPP) as 2 hex digits or 'absent', got '0'"),
    ({"tb1": 0}, "atr.tb1", "must be str, got int 0"),
    ({"tb1": "80"}, "atr.tb1", "b8 must be 0 (P2 §8.3.3.3), got 80"),
    ({"guard_time": 256}, "atr.guard_time", "must be 0-255 (TC1 extra guard time N) or 'absent', got int 256"),
    ({"guard_time": -1}, "atr.guard_time", "got int -1"),
    ({"guard_time": "none"}, "atr.guard_time", "got str 'none'"),
    ({"guard_time": True}, "atr.guard_time", "got bool True"),
    ({"guard_time": 1.5}, "atr.guard_time", "got float 1.5"),
    ({"ifsc": 0}, "atr.ifsc", "must be 1-254 (TA3), got 0"),
    ({"ifsc": 255}, "atr.ifsc", "got 255"),
    ({"bwi": 10}, "atr.bwi", "must be 0-9 (TB3 high nibble; A-F are RFU), got 10"),
    ({"cwi": 16}, "atr.cwi", "must be 0-15 (TB3 low nibble), got 16"),
    ({"cwi": "5"}, "atr.cwi", "must be int, got str '5'"),
    ({"edc": "sum"}, "atr.edc", "must be 'lrc' or 'crc', got 'sum'"),
    ({"ifsc": 32}, "atr.ifsc", "is a T=1 parameter, but atr.protocols is 't0' (T=1 needs 't0+t1' or 't1')"),
    ({"edc": "crc"}, "atr.edc", "is a T=1 parameter, but atr.protocols is 't0'"),
    ({"specific_protocol": 2}, "atr.specific_protocol", "must be 0 (T=0) or 1 (T=1), got 2"),
    ({"specific_protocol": 1}, "atr.specific_protocol", "T=1 is not offered (atr.protocols is 't0')"),
    ({"protocols": "t1", "specific_protocol": 0}, "atr.specific_protocol", "T=0 is not offered (atr.protocols is 't1')"),
    ({"specific_protocol": True}, "atr.specific_protocol", "must be int, got bool True"),
    ({"wi": 0}, "atr.wi", "must be 1-255 (TC2), got 0"),
    ({"wi": 256}, "atr.wi", "got 256"),
]


@pytest.mark.parametrize("table, field, reason", BAD_ATR_FIELDS,
                         ids=[f"{f}-{list(t.values())[-1]}" for t, f, _ in BAD_ATR_FIELDS])
def test_bad_atr_field_is_one_line_error_naming_it(table, field, reason):
    with pytest.raises(ProfileError) as excinfo:
        parse_profile(profile_data(table), source="under-test.toml")
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith(f"under-test.toml: {field}: ")
    assert reason in message


def test_atr_not_a_table():
    with pytest.raises(ProfileError, match=r"under-test\.toml: atr: must be a table"):
        parse_profile(profile_data("13"), source="under-test.toml")


def test_atr_values_persist_in_the_image(tmp_path):
    for table, config in (({"fi_di": "96", "tb1": "absent", "specific_protocol": 0}, AtrConfig(fi_di=0x96, tb1=None,
                                                                                                specific=0)),
                          ({**T1_TABLE, "edc": "crc", "specific_protocol": 1},
                           dataclasses.replace(T1_CONFIG, edc="crc", specific=1))):
        path = tmp_path / "card.img"  # the same image each time: the second card replaces the first
        made = Card.from_profile(parse_profile(profile_data(table)), state=path, overwrite=True)
        made.close()  # the image's one owner gives it up: reopening it is what is tested
        config = dataclasses.replace(config, historical=made.atr_config.historical)
        assert made.atr_config == config
        with Card.open(path) as reopened:
            assert reopened.atr == made.atr == build(config) and reopened.atr_config == config


def test_default_card_stores_absent_bytes_as_minus_one(tmp_path):
    path = tmp_path / "card.img"
    Card.from_profile(state=path)
    objects, _ = image_mod.decode(path.read_bytes())
    values = objects["card"].__dict__
    assert (values["atr_fi_di"], values["atr_tb1"], values["atr_guard_time"]) == (-1, 0, 0)
    assert (values["atr_protocols"], values["atr_wi"], values["atr_specific"]) == ("t0", -1, -1)


def test_image_made_before_the_atr_values_keeps_its_atr(tmp_path):
    """An image made before a value was stored opens with what the card said then: T=0 and T=1 at TA1 13,
    no TB1/TC1 (and, before the historical bytes were stored, 80 5A "SSCARD-SIM")."""
    path = tmp_path / "old.img"
    Card.from_profile(state=path)
    objects, generation = image_mod.decode(path.read_bytes())
    values = objects["card"].__dict__
    for key in [k for k in values if k.startswith("atr_") and k != "atr_historical"]:
        del values[key]
    path.write_bytes(image_mod.encode(objects, generation))
    with Card.open(path) as card:
        assert card.atr_config == dataclasses.replace(T1_CONFIG, historical=HISTORICAL)
        assert card.atr == T1_ATR
    del values["atr_historical"]
    path.write_bytes(image_mod.encode(objects, generation + 1))
    card = Card.open(path)
    assert card.atr == LEGACY_ATR and card.atr_config == LEGACY_CONFIG


def test_image_made_before_tb1_and_protocols_were_stored(tmp_path):
    """The [atr] table's values of that time (TA1, TC1, ...) are kept; TB1 absent, T=0 and T=1 offered."""
    path = tmp_path / "old.img"
    Card.from_profile(parse_profile(profile_data({"fi_di": "96", "guard_time": 2})), state=path)
    objects, generation = image_mod.decode(path.read_bytes())
    values = objects["card"].__dict__
    del values["atr_tb1"], values["atr_protocols"]
    path.write_bytes(image_mod.encode(objects, generation))
    card = Card.open(path)
    assert card.atr_config == dataclasses.replace(T1_CONFIG, fi_di=0x96, guard_time=2, historical=HISTORICAL)


def test_custom_historical_bytes_still_used():
    profile = parse_profile(profile_data())
    other = REAL_ATR[4:]  # 13 bytes: the card keys' diversification factor comes from them (P9 §7.3.3)
    card = Card.from_profile(dataclasses.replace(profile, atr_historical=other))
    assert card.atr == build(AtrConfig(historical=other)) == REAL_ATR
    assert parse_atr(card.atr).explain()[5] == "T3-T5   4A 44 46  chip / COS supplier's data (COS) 'JDF'"
