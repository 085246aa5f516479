"""The simulated contacts: WireReader over T=0 and T=1, ATR and PPS on the wire, faults, time, CLI.

The whole SSSE and financial flows run over the wire in both protocols: every curated trace and
every terminal flow gives exactly what it gives in-process.
"""

import datetime
import glob
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chip import Card
from chip.profile import SHIPPED
from reader import SimReader
from reader.flows import FLOWS, run_flow
from reader.replay import replay, sim_reader_for
from reader.trace import parse
from reader.wire import Faults, LinkError, WireReader, explain_log

DATE = datetime.date(2026, 11, 21)
SELECT = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
TRACES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "apdu_traces", "*.apdu")))
PROTOCOLS = ["T=0", "T=1"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("path", TRACES, ids=lambda p: os.path.basename(p))
def test_curated_traces_replay_over_the_wire(path, protocol):
    trace = parse(open(path, encoding="utf-8").read(), path)
    reader = WireReader(sim_reader_for(trace).card, protocol=protocol)
    result = replay(trace, reader)
    assert result.ok, result.report()
    assert reader.seconds > 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", sorted(FLOWS))
def test_every_flow_over_the_wire(name, protocol):
    params = {"agent_id_number": "110105198506150022", "power_of_attorney": "POA-1"} \
        if name == "entrusted-activation" else {}
    card = Card.from_profile(date=DATE)
    if name in ("loss-unlock",):
        assert run_flow("loss-report", card).ok
    if name == "deadline-unlock":
        card.set_date(DATE + datetime.timedelta(days=301))
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
    card = Card.from_profile(date=DATE)
    card.random = lambda n: bytes(range(n))
    sim = SimReader(card)
    sim.reset()
    expected = [sim.transmit(c) for c in commands]
    for protocol in PROTOCOLS:
        card = Card.from_profile(date=DATE)
        card.random = lambda n: bytes(range(n))
        wire = WireReader(card, protocol=protocol)
        wire.reset()
        assert [wire.transmit(c) for c in commands] == expected


def test_atr_and_pps_on_the_wire():
    log = []
    reader = WireReader(Card.from_profile(date=DATE), protocol="T=1", log=log)
    atr = reader.reset()
    assert atr.hex().upper() == "3B9C138031FE45805A5353434152442D53494D31"
    lines = explain_log(log, 1)
    assert lines[0].endswith("< 3B 9C 13 80 31 FE 45 80 5A 53 53 43 41 52 44 2D 53 49 4D 31    ATR")
    assert lines[1].endswith("> FF 11 13 FD    PPS request") and lines[2].endswith("< FF 11 13 FD    PPS response")
    assert (reader.wire.fi, reader.wire.di) == (372, 4)


def test_pps_refused_keeps_the_default_rate():
    log = []
    reader = WireReader(Card.from_profile(date=DATE), protocol="T=1", pps=0x96, log=log)
    reader.reset()
    assert (reader.wire.fi, reader.wire.di) == (372, 1)  # the card answered without PPS1: 372/1
    assert reader.transmit(SELECT)[-2:] == b"\x90\x00"


def profile_with_ta1(tmp_path, ta1: str) -> str:
    text = (SHIPPED / "default.toml").read_text(encoding="utf-8") + f'\n[atr]\nfi_di = "{ta1}"\n'
    path = tmp_path / f"ta1-{ta1}.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_faster_ta1_takes_less_simulated_time(tmp_path):
    times = {}
    for ta1 in ("11", "13", "18", "96"):
        reader = WireReader(Card.from_profile(profile_with_ta1(tmp_path, ta1), date=DATE), protocol="T=1")
        reader.reset()
        for _ in range(5):
            reader.transmit(SELECT)
        times[ta1] = reader.seconds
    assert times["11"] > times["13"] > times["18"] > times["96"]


def test_mute_card_is_a_link_error_never_a_response():
    for protocol in PROTOCOLS:
        reader = WireReader(Card.from_profile(date=DATE), protocol=protocol, faults=Faults(mute=True))
        reader.reset()
        with pytest.raises(LinkError):
            reader.transmit(SELECT)


def test_slow_card_sends_wtx_on_t1_and_nulls_on_t0():
    slow = Faults(slow_etu=lambda apdu: 200_000 if apdu[1] == 0x20 else 0)
    for protocol, marker in (("T=1", "S(WTX request)"), ("T=0", "NULL")):
        log = []
        reader = WireReader(Card.from_profile(date=DATE), protocol=protocol, faults=slow, log=log)
        reader.reset()
        reader.transmit(SELECT)
        assert reader.transmit(bytes.fromhex("0020000003123456")) == b"\x90\x00"
        assert any(marker in line for line in explain_log(log, reader.protocol))


def test_t0_parity_errors_are_repeated_and_cost_time():
    clean = WireReader(Card.from_profile(date=DATE), protocol="T=0")
    noisy = WireReader(Card.from_profile(date=DATE), protocol="T=0", faults=Faults(seed=3, parity=0.05))
    for reader in (clean, noisy):
        reader.reset()
        assert reader.transmit(SELECT)[-2:] == b"\x90\x00"
    assert noisy.seconds > clean.seconds


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), flips=st.integers(0, 2),
       command=st.sampled_from(["00B2012C00", "00B2072C00", "0020000003999999", "00A40000", "80CA9F3600"]))
def test_t1_faults_below_the_limit_give_the_same_response(seed, flips, command):
    apdu = bytes.fromhex(command)
    sim = SimReader(Card.from_profile(date=DATE))
    sim.reset()
    sim.transmit(SELECT)
    expected = sim.transmit(apdu)
    reader = WireReader(Card.from_profile(date=DATE), protocol="T=1")
    reader.reset()
    reader.transmit(SELECT)
    reader.wire.faults = Faults(seed=seed, flip=0.05, limit=flips)
    assert reader.transmit(apdu) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), rate=st.floats(0.05, 0.9),
       command=st.sampled_from(["00B2072C00", "0020000003999999", "80CA9F3600", "00A40000"]))
def test_t1_heavy_faults_give_a_link_error_or_the_right_response(seed, rate, command):
    """Never a wrong response, even for a command that must not run twice (a wrong PIN counts)."""
    apdu = bytes.fromhex(command)
    sim = SimReader(Card.from_profile(date=DATE))
    sim.reset()
    sim.transmit(SELECT)
    expected = sim.transmit(apdu)
    reader = WireReader(Card.from_profile(date=DATE), protocol="T=1")
    reader.reset()
    reader.transmit(SELECT)
    reader.wire.faults = Faults(seed=seed, flip=rate, drop=rate / 3, extra=rate / 3)
    try:
        assert reader.transmit(apdu) == expected
    except LinkError:
        pass


def test_cli_apdu_replay_and_wire_log(tmp_path, capsys):
    from reader.cli import main

    image = str(tmp_path / "card.img")
    assert main(["--date", "2026-11-21", "personalize", "--state", image]) == 0
    capsys.readouterr()
    assert main(["apdu", "--wire", "t0", "--no-decode", "--state", image, SELECT.hex()]) == 0
    assert "< 6F 19 84 0F 73 78" in capsys.readouterr().out
    assert main(["replay", "--wire", "t1", TRACES[0]]) == 0
    assert capsys.readouterr().out.endswith("1 passed, 0 failed\n")
    assert main(["wire-log", "--state", image, "--wire", "t1", SELECT.hex()]) == 0
    out = capsys.readouterr().out
    assert "> 00 C1 01 FE 3E    S(IFS request) 254" in out
    assert "I(0, M=0) 20 bytes" in out and out.splitlines()[-1].startswith("simulated time on the contacts:")
