"""The reader's activation (reader/link/activation.py) against LD/T 32 P2 §6.1.3, §8.1, §8.5 and
P8 §5.1.3, with the numbers written out here from the standard, not taken from the code:

- one initial etu is Fd / Dd = 372 clocks (P2 §7.1); RST is held low at least 400 clocks (tb, te);
- TS starts 400 to 40 000 clocks after RST rises; none by 40 000: deactivate (P2 §6.1.3.1, §6.1.3.2);
- consecutive characters start 12 to 9600 initial etu apart; more than 9600: deactivate at once;
- the whole ATR, TS's start edge to 12 etu after the last character's start edge, is at most
  19 200 etu; a cold ATR that is malformed or not finished gets one warm reset (P2 §8.5);
- P8 §5.1.3: TS 3B or 3F; TD1 names T=0 or T=1; TD2 T=1 or T=15; a TA3 after T=15 as P2 §8.3.3.10
  says (b8-b7 0-2, b2-b1 1-3, the rest 0), 01 assumed when absent; no TCK on a T=0-only ATR, a
  right one (XOR of T0..TCK = 00) otherwise;
- CCID rev 1.1 §6.2.6 bError: ICC_MUTE FE, XFR_PARITY_ERROR FD, BAD_ATR_TS F8, BAD_ATR_TCK F7,
  ICC_PROTOCOL_NOT_SUPPORTED F6, HW_ERROR FB.
"""

from functools import reduce
from operator import xor

import pytest
from helpers import CARD_DATE, DEFAULT_ATR, HISTORICAL, SELECT_SSSE, T1_ATR
from test_fault_injection import docstring_block
from test_wire import profile_with_atr

from chip import Card
from chip.contacts.activation import AtrSignal
from chip.faults import Fault, inject, parse_fault
from reader.ccid.activation_errors import berror
from reader.link.activation import AtrRejected, Ladder, accept, activate, global_ta3, read_answer
from reader.link.wire import ActivationError, LinkError, WireReader, explain_log

ETU = 372  # clocks per initial etu: Fd 372 / Dd 1 (P2 §7.1)
H = HISTORICAL.hex()  # the default card's 13 historical bytes (P2 table 16)
SELECT = bytes.fromhex(SELECT_SSSE)
OK = b"\x90\x00"


def with_tck(hexatr: str) -> bytes:
    """The ATR and its TCK: the byte that makes T0 ... TCK XOR to 00 (ISO/IEC 7816-3 §8.2.5)."""
    atr = bytes.fromhex(hexatr)
    return atr + bytes((reduce(xor, atr[1:], 0),))


def spaced(hexatr: str | bytes, first: int = 400, gaps_etu=()) -> AtrSignal:
    """The ATR with TS `first` clocks after RST rises, then each character `gaps_etu[i]` initial etu
    after the one before (12, the shortest P2 allows, for every gap not given)."""
    atr = bytes.fromhex(hexatr) if isinstance(hexatr, str) else hexatr
    gaps = list(gaps_etu) + [12] * (len(atr) - 1 - len(gaps_etu))
    starts = [first]
    for gap in gaps:
        starts.append(starts[-1] + gap * ETU)
    return AtrSignal(atr, tuple(starts))


DEFAULT = bytes.fromhex(DEFAULT_ATR)
T1 = bytes.fromhex(T1_ATR)


# -- P8 §5.1.3: accepted ---------------------------------------------------------------------------

@pytest.mark.parametrize("atr, fi, di", [
    (DEFAULT, 372, 1),  # P2 table 7: 3B 6D 00 00, no TA1: 372/1
    (T1, 372, 4),  # the t1 profile: TA1 13, T=0 then T=1, TCK
    (bytes.fromhex("3F6D0000" + H), 372, 1),  # TS 3F: the inverse convention (P8 §5.1.3.1)
    (bytes.fromhex("3B7D010000" + H), 372, 1),  # TA1 01: accepted, 372/1 (§5.1.3.3.1)
    (bytes.fromhex("3B7D110000" + H), 372, 1),  # TA1 11
    (bytes.fromhex("3B7D120000" + H), 372, 2),  # TA1 12: D = 2 decoded
    (bytes.fromhex("3B7D130000" + H), 372, 4),  # TA1 13: D = 4 decoded
    (bytes.fromhex("3B6D7F00" + H), 372, 1),  # any TB1 (§5.1.3.3.2)
    (bytes.fromhex("3B4D00" + H), 372, 1),  # no TB1: as 00
    (bytes.fromhex("3B2D00" + H), 372, 1),  # no TC1: as 00 (§5.1.3.3.3)
    (bytes.fromhex("3B8D400A" + H), 372, 1),  # TC2 0A: WI 10, the EMV value
    (bytes.fromhex("3B8D4010" + H), 372, 1),  # TC2 10, the value P8 §5.1.3.3.7 names
    (bytes.fromhex("3BED00001080" + H), 372, 1),  # TA2 80: specific mode T=0, which the reader runs
    (with_tck("3B8D8131FE45" + H), 372, 1),  # TD1 81: T=1 first; TD2 31 (TA3 IFSC, TB3)
    (with_tck("3B9D138071FE4501" + H), 372, 4),  # TB3 and TC3 (CRC) correct (§5.1.3.3.10)
], ids=["default", "t1-profile", "ts-3f", "ta1-01", "ta1-11", "ta1-12", "ta1-13", "tb1-7f", "no-tb1", "no-tc1",
        "tc2-0a", "tc2-10", "ta2-t0", "td1-t1", "tb3-tc3"])
def test_p8_accepts(atr, fi, di):
    params = accept(atr)
    assert params.raw == atr and (params.fi, params.di) == (fi, di)


def test_tc2_is_taken_as_the_waiting_integer_either_way():
    """TC2 = 10 (P8 §5.1.3.3.7) is accepted whether meant as hex (WI 16) or decimal (0A, WI 10)."""
    assert accept(bytes.fromhex("3B8D4010" + H)).wi == 0x10
    assert accept(bytes.fromhex("3B8D400A" + H)).wi == 10


def test_t15_ta3_kept_or_assumed_01():
    """P2 table 8 (TD1 80, TD2 1F, TA3, TCK) is accepted; T=15 without TA3 goes on as TA3 01 (P8 §5.1.3.3.9)."""
    table8 = with_tck("3BDD1100801F03" + H)  # TA1 TC1 TD1; T=15 TA3 03: no clock stop, classes A and B
    assert global_ta3(accept(table8)) == 0x03
    for ta3 in (0x01, 0x02, 0x41, 0x83):  # XI 0, 1 or 2 in b8-b7; UI 1-3 in b2-b1
        assert global_ta3(accept(with_tck(f"3BDD1100801F{ta3:02X}" + H))) == ta3
    assert global_ta3(accept(with_tck("3BCD00800F" + H))) == 0x01  # TD2 0F: T=15, no TA3
    assert global_ta3(accept(DEFAULT)) is None  # no T=15 at all


# -- P8 §5.1.3 and the structure: rejected, with the rule ----------------------------------------------

@pytest.mark.parametrize("atr, rule, words", [
    (bytes.fromhex("3C6D0000" + H), "TS", "TS 3C"),
    (bytes.fromhex("036D0000" + H), "TS", "TS 03"),
    (with_tck("3B8D02" + H), "TD1", "T=2"),  # TD1 low nibble neither 0 nor 1
    (with_tck("3B8D0F" + H), "TD1", "T=15"),
    (bytes.fromhex("3B8D8000" + H), "TD2", "T=0"),  # TD2 low nibble neither 1 nor F
    (with_tck("3B8D8002" + H), "TD2", "T=2"),
    (with_tck("3BDD1100801F04" + H), "TA3", "TA3 04"),  # b3 set
    (with_tck("3BDD1100801FC1" + H), "TA3", "TA3 C1"),  # XI 3 ("either") is not in P2's basic ATR
    (with_tck("3BDD1100801F00" + H), "TA3", "TA3 00"),  # no class
    (DEFAULT + with_tck(DEFAULT.hex())[-1:], "TCK", "T=0 only"),  # a TCK on a T=0-only ATR
    (T1[:-1] + bytes((T1[-1] ^ 0xFF,)), "TCK", "TCK B7 wrong"),  # the t1 ATR's TCK 48 spoilt
    (bytes.fromhex("3BED00001090" + H), "TA2", "implicit"),  # TA2 b5: parameters the reader cannot know
    (bytes.fromhex("3BED00001082" + H), "TA2", "T=2"),  # TD1 says T=0 only: no TCK
    (bytes.fromhex("3B"), "malformed", "T0 missing"),
    (DEFAULT[:-1], "malformed", "K=13, only 12"),
    (T1[:-1], "malformed", "TCK missing"),
    (DEFAULT + b"\x00\x00", "malformed", "2 characters after the end"),
    (bytes.fromhex("3B7D710000" + H), "malformed", "Fi index 7 is RFU"),
    (bytes.fromhex("3B8D4000" + H), "malformed", "WI 0 is RFU"),
    (b"", "malformed", "TS missing"),
], ids=["ts-3c", "ts-03", "td1-t2", "td1-t15", "td2-t0", "td2-t2", "ta3-b3", "ta3-xi3", "ta3-no-class",
        "tck-on-t0-only", "tck-wrong", "ta2-implicit", "ta2-t2", "truncated", "historical-short", "tck-missing",
        "extra", "ta1-rfu", "tc2-00", "empty"])
def test_p8_rejects_with_the_rule(atr, rule, words):
    with pytest.raises(AtrRejected) as info:
        accept(atr)
    assert info.value.failure.rule == rule
    assert words in str(info.value) and "\n" not in str(info.value)


# -- P2 §6.1.3, §8.1: the timing at its edges ---------------------------------------------------------

def test_the_default_cards_answer_and_its_times():
    card = Card.from_profile(date=CARD_DATE)
    activation = activate(card)
    assert activation.ok and activation.atr == DEFAULT and len(activation.resets) == 1 and not activation.warm
    cold = activation.resets[0]
    assert cold.kind == "cold" and cold.rst_low >= 400 and 400 <= cold.atr_start <= 40_000
    assert cold.atr_etu == 17 * 12  # 17 characters, 12 etu start to start, the last 12 etu long
    assert activation.clocks == cold.rst_low + cold.atr_start + 17 * 12 * ETU
    assert activation.seconds(4_000_000) == pytest.approx(activation.clocks / 4e6)
    assert card.powered and activation.rule is None and activation.reason is None and berror(activation) is None


@pytest.mark.parametrize("first, rule", [(400, None), (399, "early"), (40_000, None), (40_001, "mute")])
def test_ts_between_400_and_40000_clocks_after_rst(first, rule):
    reset, params = read_answer(spaced(DEFAULT, first=first))
    assert (reset.failure.rule if reset.failure else None) == rule
    assert (params is not None) == (rule is None)
    if rule == "mute":  # the reader gave up at 40 000 clocks, having taken nothing
        assert reset.received == b"" and reset.end == 40_000 and reset.failure.deactivate


def test_no_answer_at_all_is_mute():
    reset, _ = read_answer(AtrSignal())
    assert reset.failure.rule == "mute" and reset.end == 40_000 and reset.atr_etu == 0


@pytest.mark.parametrize("gap, rule", [(9600, None), (9601, "gap")])
def test_at_most_9600_etu_between_characters(gap, rule):
    reset, _ = read_answer(spaced(DEFAULT, gaps_etu=[12, gap]))  # T0 on time, the third character late
    assert (reset.failure.rule if reset.failure else None) == rule
    if rule:  # deactivated at once, 9600 etu after the second character's start
        assert reset.failure.deactivate and reset.received == DEFAULT[:2]
        assert reset.end == 400 + 12 * ETU + 9600 * ETU


@pytest.mark.parametrize("spacing, rule", [(12, None), (11, "spacing")])
def test_at_least_12_etu_between_characters(spacing, rule):
    reset, _ = read_answer(spaced(DEFAULT, gaps_etu=[spacing]))
    assert (reset.failure.rule if reset.failure else None) == rule
    assert not (reset.failure and reset.failure.deactivate)  # a malformed ATR: a warm reset may follow


@pytest.mark.parametrize("last_gap, total, rule", [(9420, 19_200, None), (9421, 19_201, "long")])
def test_the_whole_atr_within_19200_etu(last_gap, total, rule):
    gaps = [9600, last_gap]  # no gap above 9600; 14 more of 12 etu
    assert sum(gaps) + 14 * 12 + 12 == total  # TS's start edge to 12 etu after the 17th character's
    reset, _ = read_answer(spaced(DEFAULT, gaps_etu=gaps))
    assert (reset.failure.rule if reset.failure else None) == rule
    if rule:  # the reader stopped 19 200 etu after TS
        assert reset.end == 400 + 19_200 * ETU and not reset.failure.deactivate
    else:
        assert reset.atr_etu == total


def test_a_character_the_structure_still_announces_is_waited_for_9600_etu():
    """The card stops one historical byte short: the reader waits the initial waiting time for it."""
    reset, _ = read_answer(spaced(DEFAULT[:-1]))
    assert reset.failure.rule == "gap" and reset.failure.deactivate
    assert reset.end == 400 + 15 * 12 * ETU + 9600 * ETU


def test_a_parity_error_stops_the_answer():
    signal = spaced(DEFAULT)
    reset, _ = read_answer(AtrSignal(signal.atr, signal.starts, {4}))
    assert reset.failure.rule == "parity" and reset.received == DEFAULT[:5]
    assert reset.end == signal.starts[4] + 12 * ETU and not reset.failure.deactivate


# -- P2 §8.5: the order of resets ---------------------------------------------------------------------

def test_ladder_cold_fails_warm_accepted():
    ladder = Ladder()
    assert ladder.next == "cold"
    ladder.answer(spaced(DEFAULT + b"\x00"))  # a TCK-like byte on a T=0-only ATR
    assert ladder.next == "warm" and not ladder.done
    with pytest.raises(RuntimeError):
        ladder.result()
    ladder.answer(spaced(DEFAULT))
    result = ladder.result()
    assert result.ok and result.warm and result.atr == DEFAULT
    assert [r.kind for r in result.resets] == ["cold", "warm"] and result.resets[0].failure.rule == "TCK"
    assert result.etu == 18 * 12 + 17 * 12
    with pytest.raises(RuntimeError):
        ladder.answer(spaced(DEFAULT))


def test_ladder_both_fail():
    ladder = Ladder()
    for _ in range(2):
        ladder.answer(spaced("3C" + DEFAULT.hex()[2:]))
    result = ladder.result()
    assert not result.ok and result.deactivated and result.rule == "TS" and result.atr == b""
    assert result.reason.startswith("cold reset: TS 3C") and "warm reset: TS 3C" in result.reason


@pytest.mark.parametrize("signal, rule", [(AtrSignal(), "mute"), (spaced(DEFAULT, gaps_etu=[9601]), "gap")])
def test_ladder_deactivates_at_once_without_a_warm_reset(signal, rule):
    ladder = Ladder()
    ladder.answer(signal)
    assert ladder.done and ladder.result().rule == rule and len(ladder.result().resets) == 1


# -- the fault words (chip.faults) -----------------------------------------------------------------------

KINDS = ("mute", "late", "gap", "long", "garbled", "tck", "ts")


@pytest.mark.parametrize("kind", KINDS)
def test_atr_fault_words_parse(kind):
    fault = parse_fault(f"atr {kind.upper()} once")
    assert fault == Fault("atr", kind, once=True) and parse_fault(str(fault)) == fault


@pytest.mark.parametrize("text, words", [
    ("atr", "'atr' needs a kind of bad ATR"),
    ("atr sideways", "'sideways' is no kind of bad ATR"),
    ("atr late ins B2", "a reset, which has no CLA or INS"),
    ("atr mute cla 80 once", "a reset, which has no CLA or INS"),
    ("atr gap nth 0", "nth counts from 1"),
])
def test_atr_fault_words_refused_in_one_line(text, words):
    with pytest.raises(ValueError) as info:
        parse_fault(text)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_atr_fault_refuses_a_command_match_in_python_too():
    for match in ({"ins": 0xB2}, {"cla": 0x00}):
        with pytest.raises(ValueError, match="no CLA or INS"):
            Fault("atr", "late", **match)


EXAMPLE_OUTCOMES = {  # what each reset example of chip.faults' docstring does to two activations in a row
    "atr tck once": [("ok", ["cold", "warm"]), ("ok", ["cold"])],
    "atr garbled": [("parity", ["cold", "warm"]), ("parity", ["cold", "warm"])],
    "atr late once": [("mute", ["cold"]), ("ok", ["cold"])],
    "atr mute nth 2": [("ok", ["cold"]), ("mute", ["cold"])],
}


def test_the_reset_examples_of_the_docstring_run_on_a_wire_reader():
    examples = [line.partition("#")[0].strip() for line in docstring_block("Reset examples")]
    assert examples == list(EXAMPLE_OUTCOMES)
    for text, outcomes in EXAMPLE_OUTCOMES.items():
        card = Card.from_profile(date=CARD_DATE)
        inject(card, text)
        reader = WireReader(card)
        for outcome, kinds in outcomes:
            if outcome == "ok":
                assert reader.reset() == DEFAULT and reader.transmit(SELECT)[-2:] == OK
            else:
                with pytest.raises(ActivationError):
                    reader.reset()
                assert reader.activation.rule == outcome and not card.powered
            assert [r.kind for r in reader.activation.resets] == kinds


def test_atr_faults_count_resets_and_command_faults_count_commands():
    card = Card.from_profile(date=CARD_DATE)
    inject(card, "atr tck once")
    inject(card, "sw 6A82 nth 1")
    reader = WireReader(card)
    reader.reset()  # two resets, no command
    assert reader.transmit(SELECT) == b"\x6a\x82"  # the first command since the sw fault was added
    assert card.faults.resets == 2 and card.faults.commands == 1
    assert card.faults.log == [(1, "atr tck once"), (1, "sw 6A82 nth 1")]


# -- WireReader with each fault -------------------------------------------------------------------------

# kind: (the cold ATR's time on I/O in etu, the rule, a warm reset may repair it) on the default card
COLD = {
    "mute": (0, "mute", False),
    "late": (0, "mute", False),
    "gap": (9600, "gap", False),  # TS, then 9600 etu without T0
    "long": (19_200, "long", True),
    "garbled": (2 * 12, "parity", True),  # TS, then T0 with its parity wrong
    "tck": (18 * 12, "TCK", True),  # the 17 characters and a TCK
    "ts": (12, "TS", True),
}
BERROR = {"mute": 0xFE, "gap": 0xFE, "long": 0xFE, "parity": 0xFD, "TS": 0xF8, "TCK": 0xF7}  # CCID §6.2.6


@pytest.mark.parametrize("kind", KINDS)
def test_wire_reader_with_a_fault_on_the_cold_reset_only(kind):
    etu, rule, repaired = COLD[kind]
    card = Card.from_profile(date=CARD_DATE)
    inject(card, "atr", kind, once=True)
    log: list = []
    reader = WireReader(card, log=log)
    if repaired:
        assert reader.reset() == DEFAULT and reader.activation.warm
        assert reader.finished_etu == etu + 17 * 12  # the spoilt cold ATR, then the warm one
        assert reader.transmit(SELECT)[-2:] == OK
    else:
        with pytest.raises(ActivationError) as info:
            reader.reset()
        assert isinstance(info.value, LinkError) and info.value.activation.rule == rule
        assert len(reader.activation.resets) == 1 and not card.powered and reader.finished_etu == etu
    lines = explain_log(log, 0)
    failed = next(line for line in lines if "!! cold reset: " in line)
    assert reader.activation.resets[0].failure.reason in failed
    assert failed.endswith("warm reset (P2 §8.5, Case = 2)" if repaired else "deactivated")
    assert any(line.endswith("ATR (warm reset)") for line in lines) == repaired


@pytest.mark.parametrize("kind", KINDS)
def test_wire_reader_with_a_fault_on_every_reset(kind):
    _, rule, repaired = COLD[kind]
    card = Card.from_profile(date=CARD_DATE)
    inject(card, f"atr {kind}")
    reader = WireReader(card)
    with pytest.raises(ActivationError) as info:
        reader.reset()
    activation = info.value.activation
    assert activation.rule == rule and activation.deactivated and not card.powered
    assert [r.kind for r in activation.resets] == (["cold", "warm"] if repaired else ["cold"])
    assert str(info.value) == f"activation failed: {activation.reason}" and "\n" not in str(info.value)
    assert berror(activation) == BERROR[rule]
    with pytest.raises(LinkError):
        reader.transmit(SELECT)  # transmit resets again: the fault is still armed


def test_t1_profile_card_accepted_and_repaired_by_a_warm_reset():
    card = Card.from_profile("t1", date=CARD_DATE)
    assert activate(card).atr == T1
    inject(card, "atr tck once")  # the TCK 48 spoilt on the cold reset
    log: list = []
    reader = WireReader(card, protocol="T=1", log=log)
    assert reader.reset() == T1 and reader.activation.resets[0].failure.rule == "TCK"
    assert any("TCK B7 wrong" in line for line in explain_log(log, 1))
    assert (reader.wire.fi, reader.wire.di) == (372, 4)  # the PPS to TA1 13 after the warm ATR
    assert reader.transmit(SELECT)[-2:] == OK


def test_ta1_01_is_run_at_372_1_without_pps(tmp_path):
    """P8 §5.1.3.3.1: TA1 01 (F 372, D 1) accepted, 372/1 kept: nothing to negotiate."""
    card = Card.from_profile(profile_with_atr(tmp_path, fi_di="01"), date=CARD_DATE)
    log: list = []
    reader = WireReader(card, log=log)
    assert reader.reset()[:3] == bytes.fromhex("3B7D01")
    assert not any("PPS" in line for line in explain_log(log, 0)) and (reader.wire.fi, reader.wire.di) == (372, 1)
    assert reader.transmit(SELECT)[-2:] == OK


@pytest.mark.parametrize("atr, code", [
    (with_tck("3B8D02" + H), 0xF6),  # TD1 T=2: ICC_PROTOCOL_NOT_SUPPORTED
    (bytes.fromhex("3B7D710000" + H), 0xF6),  # TA1 RFU
])
def test_berror_of_a_rejected_atr(atr, code):
    ladder = Ladder()
    while not ladder.done:
        ladder.answer(spaced(atr))
    assert berror(ladder.result()) == code


def test_berror_of_a_timing_fault():
    ladder = Ladder()
    while not ladder.done:
        ladder.answer(spaced(DEFAULT, first=399))  # TS before 400 clocks: HW_ERROR
    assert berror(ladder.result()) == 0xFB
