"""The simulated contacts: WireReader over T=0 and T=1, ATR and PPS on the wire, faults, time, CLI.

The whole SSSE and financial flows run over the wire in both protocols: every curated trace and
every terminal flow gives exactly what it gives in-process. The default card is T=0 only (LD/T 32
P2); T=1 runs on the shipped `t1` profile, which offers both.
"""

import datetime
import os

import pytest
from helpers import CARD_DATE, DEFAULT_ATR, SELECT_SSSE, T1_ATR, TRACES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chip import Card
from chip.contacts.atr import parse_atr
from chip.personalization.profile import SHIPPED
from reader import SimReader
from reader.base import transmit_all
from reader.link.wire import Faults, LinkError, WireReader, explain_log
from reader.terminals.flows import FLOWS, run_flow
from reader.traces.format import parse
from reader.traces.replay import replay, sim_reader_for

SELECT = bytes.fromhex(SELECT_SSSE)
TRACE_FILES = sorted(str(path) for path in TRACES.glob("*.apdu"))
PROTOCOLS = ["T=0", "T=1"]
PROFILE = {"T=0": "default", "T=1": "t1"}  # a card that offers the protocol


def card_for(protocol: str, **kw) -> Card:
    return Card.from_profile(PROFILE[protocol], date=CARD_DATE, **kw)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("path", TRACE_FILES, ids=lambda p: os.path.basename(p))
def test_curated_traces_replay_over_the_wire(path, protocol):
    trace = parse(open(path, encoding="utf-8").read(), path)
    for step in trace.steps:  # the ATR is test_atr's subject (and test_curated checks the traces' own)
        if step.kind == "reset":
            step.expect = None
    reader = WireReader(sim_reader_for(trace).card, protocol=protocol)
    result = replay(trace, reader)
    assert result.ok, result.report()
    assert reader.seconds > 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", sorted(FLOWS))
def test_every_flow_over_the_wire(name, protocol):
    params = {"agent_id_number": "110105198506150022", "power_of_attorney": "POA-1"} \
        if name == "entrusted-activation" else {}
    card = card_for(protocol)
    if name in ("loss-unlock",):
        assert run_flow("loss-report", card).ok
    if name == "deadline-unlock":
        card.set_date(CARD_DATE + datetime.timedelta(days=301))
    if name == "pin-reset":
        reader = SimReader(card)
        reader.reset()
        reader.transmit(SELECT)
        for _ in range(6):
            reader.transmit(bytes.fromhex("0020000003000000"))
    result = run_flow(name, card, wrap=lambda r: WireReader(r.card, protocol=protocol), **params)
    assert result.ok, result.final_line


def test_same_bytes_as_in_process_for_a_session():
    commands = [SELECT, bytes.fromhex("00B2012C00"), bytes.fromhex("0020000003123456"),
                bytes.fromhex("00B2093000"), bytes.fromhex("0084000008"), bytes.fromhex("00B2FF2C00"),
                bytes.fromhex("00A4040008A000000333010101"), bytes.fromhex("80CA9F3600"), b"\x00\xA4"]
    expected = []
    card = Card.from_profile(date=CARD_DATE)
    card.random = lambda n: bytes(range(n))
    sim = SimReader(card, protocol="T=1")
    sim.reset()
    expected = [sim.transmit(c) for c in commands]
    for name in ("default", "t1"):
        card = Card.from_profile(name, date=CARD_DATE)
        card.random = lambda n: bytes(range(n))
        sim = SimReader(card)  # the card's own protocol, T=0 on both: 61xx fetched by the reader
        sim.reset()
        assert sim.protocol == 0 and [sim.transmit(c) for c in commands] == expected
    # the T=0 firmware is a terminal's transport layer (P2 §9.3): it also re-issues a case 2 command
    # with the Le a 6Cxx names, as transmit_all does
    card = Card.from_profile(date=CARD_DATE)
    card.random = lambda n: bytes(range(n))
    sim = SimReader(card, protocol="T=1")
    sim.reset()
    expected_t0 = [transmit_all(sim, c) for c in commands]
    for protocol in PROTOCOLS:
        card = card_for(protocol)
        card.random = lambda n: bytes(range(n))
        wire = WireReader(card, protocol=protocol)
        wire.reset()
        assert [wire.transmit(c) for c in commands] == (expected_t0 if protocol == "T=0" else expected)


def test_default_card_needs_no_pps():
    """P2: T=0 only at 372/1 - nothing to negotiate, so the reader sends no PPS and T=0 runs at once."""
    log = []
    reader = WireReader(Card.from_profile(date=CARD_DATE), log=log)
    atr = reader.reset()
    assert atr.hex().upper() == DEFAULT_ATR and reader.protocol == 0
    lines = explain_log(log, 0)
    assert lines[0].endswith("< 3B 6D 00 00 00 81 53 53 43 86 99 11 01 00 00 00 01    ATR")
    assert (reader.wire.protocol, reader.wire.fi, reader.wire.di) == (0, 372, 1)
    assert (reader.wire.to_card_etu, reader.wire.to_reader_etu) == (12, 12)  # TC1 00
    assert reader.transmit(SELECT)[-2:] == b"\x90\x00"
    assert not any("PPS" in line for line in explain_log(log, 0))
    # 17 ATR characters at 12 etu, 372 clocks each, 4 MHz
    assert reader.finished_etu == 17 * 12 and reader.finished_seconds == pytest.approx(17 * 12 * 372 / 4e6)


def test_default_card_confirms_t0_when_asked():
    log = []
    reader = WireReader(Card.from_profile(date=CARD_DATE), pps=0x13, log=log)
    reader.reset()
    lines = explain_log(log, 0)
    assert lines[1].endswith("> FF 10 13 FC    PPS request") and lines[2].endswith("< FF 00 FF    PPS response")
    assert (reader.wire.fi, reader.wire.di) == (372, 1)  # no TA1: the card keeps 372/1
    assert reader.transmit(SELECT)[-2:] == b"\x90\x00"


def test_default_card_refuses_t1_by_pps():
    log = []
    reader = WireReader(Card.from_profile(date=CARD_DATE), protocol="T=1", log=log)
    reader.reset()
    lines = explain_log(log, 1)
    assert lines[1].endswith("> FF 01 FE    PPS request")
    assert "no PPS response: the card refused (the ATR offers T=0 only" in lines[2]
    assert "timeout" not in lines[2] and (reader.wire.fi, reader.wire.di) == (372, 1)
    assert reader.finished_etu == 17 * 12 + 3 * 12 + 9600  # ATR, PPS request, the initial waiting time


def test_atr_and_pps_on_the_wire_t1_profile():
    for protocol, request in (("T=1", "FF 11 13 FD"), ("T=0", "FF 10 13 FC"), (None, "FF 10 13 FC")):
        log = []
        reader = WireReader(Card.from_profile("t1", date=CARD_DATE), protocol=protocol, log=log)
        atr = reader.reset()
        assert atr.hex().upper() == T1_ATR
        lines = explain_log(log, reader.protocol)
        assert lines[0].endswith("< 3B 9D 13 80 31 FE 45 00 81 53 53 43 86 99 11 01 00 00 00 01 48    ATR")
        assert lines[1].endswith(f"> {request}    PPS request") and lines[2].endswith(f"< {request}    PPS response")
        assert (reader.wire.fi, reader.wire.di) == (372, 4)
        assert reader.protocol == (1 if protocol == "T=1" else 0)  # the card's first offered: T=0
        assert reader.transmit(SELECT)[-2:] == b"\x90\x00"


def test_pps_refused_keeps_the_default_rate():
    log = []
    reader = WireReader(Card.from_profile("t1", date=CARD_DATE), protocol="T=1", pps=0x96, log=log)
    reader.reset()
    assert (reader.wire.fi, reader.wire.di) == (372, 1)  # the card answered without PPS1: 372/1
    assert reader.transmit(SELECT)[-2:] == b"\x90\x00"


def profile_with_atr(tmp_path, **atr) -> str:
    table = "".join(f"{key} = {value!r}\n".replace("'", '"') for key, value in atr.items())
    text = (SHIPPED / "default.toml").read_text(encoding="utf-8") + f"\n[atr]\n{table}"
    path = tmp_path / ("atr-" + "-".join(str(v) for v in atr.values()) + ".toml")
    path.write_text(text, encoding="utf-8")
    return str(path)


def profile_with_ta1(tmp_path, ta1: str) -> str:
    return profile_with_atr(tmp_path, protocols="t0+t1", fi_di=ta1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_faster_ta1_takes_less_simulated_time(tmp_path, protocol):
    times = {}
    for ta1 in ("11", "13", "18", "96"):
        reader = WireReader(Card.from_profile(profile_with_ta1(tmp_path, ta1), date=CARD_DATE), protocol=protocol)
        reader.reset()
        for _ in range(5):
            reader.transmit(SELECT)
        times[ta1] = reader.seconds
    assert times["11"] > times["13"] > times["18"] > times["96"]


# -- guard time: TC1 binds the reader only (ISO 7816-3 §8.3, P2 §9.2.2.1) ----------------------------

@pytest.mark.parametrize("tc1, protocols, protocol, to_card", [
    (0, "t0", "T=0", 12),
    (2, "t0", "T=0", 14),
    (254, "t0", "T=0", 266),
    (255, "t0", "T=0", 12),  # N = 255: the minimum, not 257
    (255, "t0+t1", "T=1", 11),  # on T=1 the minimum is 11 etu
    (255, "t0+t1", "T=0", 12),
    (2, "t0+t1", "T=1", 14),
    ("absent", "t0+t1", "T=1", 12),
], ids=["n0", "n2", "n254", "n255-t0", "n255-t1", "n255-t0-on-t1-card", "n2-t1", "no-tc1-t1"])
def test_guard_time_from_tc1(tmp_path, tc1, protocols, protocol, to_card):
    card = Card.from_profile(profile_with_atr(tmp_path, protocols=protocols, guard_time=tc1), date=CARD_DATE)
    log = []
    reader = WireReader(card, protocol=protocol, log=log)
    reader.reset()
    assert (reader.wire.to_card_etu, reader.wire.to_reader_etu) == (to_card, 12)
    start = len(log)
    assert reader.transmit(SELECT)[-2:] == b"\x90\x00"
    sent = sum(len(e.data) for e in log[start:] if e.direction == ">")
    received = sum(len(e.data) for e in log[start:] if e.direction == "<")
    if protocol == "T=0":  # header + data, GET RESPONSE header; ACK, 61 1B, ACK + the FCI + SW
        assert (sent, received) == (5 + 15 + 5, 1 + 2 + 1 + len(select_response()))
    assert reader.wire.etu == sent * to_card + received * 12


def test_guard_time_ff_on_the_pps_request(tmp_path):
    """P2 §8.7: the PPS request gets TC1's extra guard time, except for N = 255 (12 etu)."""
    for tc1, per_character in ((255, 12), (3, 15)):
        card = Card.from_profile(profile_with_atr(tmp_path, protocols="t0+t1", fi_di="13", guard_time=tc1),
                                 date=CARD_DATE)
        reader = WireReader(card, protocol="T=1")
        reader.reset()
        atr = parse_atr(card.atr)
        assert atr.n == tc1
        assert reader.finished_etu == len(card.atr) * 12 + 4 * per_character + 4 * 12


def test_mute_card_is_a_link_error_never_a_response():
    for protocol in PROTOCOLS:
        reader = WireReader(card_for(protocol), protocol=protocol, faults=Faults(mute=True))
        reader.reset()
        with pytest.raises(LinkError):
            reader.transmit(SELECT)


def test_slow_card_sends_wtx_on_t1_and_nulls_on_t0():
    slow = Faults(slow_etu=lambda apdu: 200_000 if apdu[1] == 0x20 else 0)
    for protocol, marker in (("T=1", "S(WTX request)"), ("T=0", "NULL")):
        log = []
        reader = WireReader(card_for(protocol), protocol=protocol, faults=slow, log=log)
        reader.reset()
        reader.transmit(SELECT)
        assert reader.transmit(bytes.fromhex("0020000003123456")) == b"\x90\x00"
        assert any(marker in line for line in explain_log(log, reader.protocol))


def test_t0_parity_errors_are_repeated_and_cost_time():
    clean = WireReader(Card.from_profile(date=CARD_DATE), protocol="T=0")
    noisy = WireReader(Card.from_profile(date=CARD_DATE), protocol="T=0", faults=Faults(seed=3, parity=0.05))
    for reader in (clean, noisy):
        reader.reset()
        assert reader.transmit(SELECT)[-2:] == b"\x90\x00"
    assert noisy.seconds > clean.seconds


def in_process_and_on_t1(command: str):
    """(the command, what the default card answers it in-process after SELECT SSSE, a T=1 WireReader
    on a t1 card with the SSSE selected and no faults yet)."""
    apdu = bytes.fromhex(command)
    sim = SimReader(Card.from_profile(date=CARD_DATE))
    sim.reset()
    sim.transmit(SELECT)
    expected = sim.transmit(apdu)
    reader = WireReader(card_for("T=1"), protocol="T=1")
    reader.reset()
    reader.transmit(SELECT)
    return apdu, expected, reader


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), flips=st.integers(0, 2),
       command=st.sampled_from(["00B2012C00", "00B2072C00", "0020000003999999", "00A40000", "80CA9F3600"]))
def test_t1_faults_below_the_limit_give_the_same_response(seed, flips, command):
    apdu, expected, reader = in_process_and_on_t1(command)
    reader.wire.faults = Faults(seed=seed, flip=0.05, limit=flips)
    assert reader.transmit(apdu) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), rate=st.floats(0.05, 0.9),
       command=st.sampled_from(["00B2072C00", "0020000003999999", "80CA9F3600", "00A40000"]))
def test_t1_heavy_faults_give_a_link_error_or_the_right_response(seed, rate, command):
    """Never a wrong response, even for a command that must not run twice (a wrong PIN counts)."""
    apdu, expected, reader = in_process_and_on_t1(command)
    reader.wire.faults = Faults(seed=seed, flip=rate, drop=rate / 3, extra=rate / 3)
    try:
        assert reader.transmit(apdu) == expected
    except LinkError:
        pass


def select_response() -> bytes:
    """What the default card answers SELECT SSSE in-process (FCI + SW)."""
    reader = SimReader(Card.from_profile(date=CARD_DATE), protocol="T=1")
    reader.reset()
    return reader.transmit(SELECT)


def test_cli_apdu_replay_and_wire_log(tmp_path, capsys):
    from reader.cli import main

    image = str(tmp_path / "card.img")
    assert main(["--date", "2026-11-21", "personalize", "--state", image]) == 0
    capsys.readouterr()
    assert main(["apdu", "--wire", "t0", "--no-decode", "--state", image, SELECT.hex()]) == 0
    assert "< 6F " in capsys.readouterr().out
    trace = tmp_path / "select.apdu"
    trace.write_text(f"@profile t1\nreset {T1_ATR}\n> {SELECT.hex()}\n< 6F * 90 00\n", encoding="utf-8")
    for wire in ("t0", "t1"):
        assert main(["replay", "--wire", wire, str(trace)]) == 0
        assert capsys.readouterr().out.endswith("1 passed, 0 failed\n")
    image = str(tmp_path / "t1.img")
    assert main(["--date", "2026-11-21", "personalize", "t1", "--state", image]) == 0
    capsys.readouterr()
    assert main(["wire-log", "--state", image, "--wire", "t1", SELECT.hex()]) == 0
    out = capsys.readouterr().out
    assert "> 00 C1 01 FE 3E    S(IFS request) 254" in out
    assert "I(0, M=0) 20 bytes" in out and out.splitlines()[-1].startswith("simulated time on the contacts:")


def test_wire_log_defaults_to_the_cards_protocol(tmp_path, capsys):
    """`sscard wire-log` without --wire runs the card's own protocol: T=0 at 372/1 with no PPS on the
    default card (61xx then GET RESPONSE on the contacts, 6Cxx re-issued), T=0 after a PPS to TA1 13
    on the t1 profile; `--wire t1` still overrides."""
    from reader.cli import main

    fci = select_response()
    image = str(tmp_path / "card.img")
    assert main(["--date", "2026-11-21", "personalize", "--state", image]) == 0
    capsys.readouterr()
    assert main(["wire-log", "--state", image, SELECT.hex(), "00B2012C00"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("ms  ", 1)[1] for line in lines[:-1]] == [
        "< 3B 6D 00 00 00 81 53 53 43 86 99 11 01 00 00 00 01    ATR",
        "> 00 A4 04 00 0F    header CLA INS P1 P2 P3",
        "< A4    ACK",
        "> 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF    data (15 bytes)",
        f"< 61 {len(fci) - 2:02X}    SW1 SW2",
        f"> 00 C0 00 00 {len(fci) - 2:02X}    header CLA INS P1 P2 P3",
        f"< C0 {fci.hex(' ').upper()}    ACK, data ({len(fci) - 2} bytes), SW",
        "> 00 B2 01 2C 00    header CLA INS P1 P2 P3",
        "< 6C 12    SW1 SW2",  # Le 00 in the SSSE: the card names the length (P5 §6.10.4)
        "> 00 B2 01 2C 12    header CLA INS P1 P2 P3",
        "< B2 01 10 11 01 00 D1 56 00 00 05 00 00 00 01 00 00 00 00 90 00    ACK, data (18 bytes), SW",
    ]
    assert lines[-1].startswith("simulated time on the contacts:")
    image = str(tmp_path / "t1.img")
    assert main(["--date", "2026-11-21", "personalize", "t1", "--state", image]) == 0
    capsys.readouterr()
    assert main(["wire-log", "--state", image, SELECT.hex()]) == 0
    out = capsys.readouterr().out
    assert "> FF 10 13 FC    PPS request" in out and "< FF 10 13 FC    PPS response" in out
    assert f"< 61 {len(fci) - 2:02X}    SW1 SW2" in out and "S(IFS" not in out
    # --wire t1 overrides: the default card offers T=0 only and refuses the PPS, which the log says
    image = str(tmp_path / "card.img")
    assert main(["wire-log", "--state", image, "--wire", "t1", SELECT.hex()]) == 0
    out = capsys.readouterr().out
    assert "> FF 01 FE    PPS request" in out
    assert "no PPS response: the card refused (the ATR offers T=0 only" in out
