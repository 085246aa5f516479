"""The curated traces of apdu_traces/: every flow has one, each explains its situation, replays green
against a fresh card (the plugin also collects them), and re-recording the flow gives the same bytes."""

import pathlib

import pytest

from reader.curate import CURATED, record
from reader.flows import FLOWS
from reader.replay import replay, sim_reader_for
from reader.trace import parse

FOLDER = pathlib.Path(__file__).resolve().parent.parent / "apdu_traces"


def exchanges(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line[:1] in "<>" or line.startswith("reset")]


def test_every_flow_has_a_curated_trace():
    covered = {name for entry in CURATED for name, _ in entry.runs if name != "apdu"}
    assert covered == set(FLOWS)
    assert sorted(p.stem for p in FOLDER.glob("*.apdu")) == sorted(entry.name for entry in CURATED)


@pytest.mark.parametrize("entry", CURATED, ids=lambda e: e.name)
def test_curated_trace_is_current_and_replays(entry):
    text = (FOLDER / f"{entry.name}.apdu").read_text(encoding="utf-8")
    trace = parse(text, entry.name)
    assert trace.header[:len(entry.situation)] == entry.situation  # the situation comes first
    assert exchanges(record(entry)) == exchanges(text)  # recording the flow again gives the same bytes
    result = replay(trace, sim_reader_for(trace))
    assert result.ok, result.report()
    assert result.apdus == trace.apdus >= 5


def test_an_edited_curated_trace_fails_precisely():
    text = (FOLDER / "hospital-activation.apdu").read_text(encoding="utf-8")
    lines = text.splitlines()
    number = next(i for i, line in enumerate(lines) if line.startswith("< 01 10 11 01 00"))
    lines[number] = lines[number].replace("< 01 10 11 01 00", "< 01 10 11 01 01", 1)
    trace = parse("\n".join(lines), "edited.apdu")
    result = replay(trace, sim_reader_for(trace))
    assert not result.ok
    assert result.failure.line == number + 1
    assert result.failure.message.startswith("response byte 4 is 00, expected 01: got 01 10 11 01 [00] D1")
