"""The curated traces of apdu_traces/: every flow has one, each explains its situation, replays green
against a fresh card (the plugin also collects them) and against a fresh default card personalised on
any day, and re-recording the flow gives the same bytes."""

import datetime

import pytest
from helpers import TRACES

from chip import Card
from reader.cli import main
from reader.terminals.flows import FLOWS
from reader.traces.curate import CURATED, ISSUED, RAW_RUNS, issue_date_bytes, record
from reader.traces.format import parse
from reader.traces.replay import replay, sim_reader_for


def exchanges(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line[:1] in "<>" or line.startswith("reset")]


def test_every_flow_has_a_curated_trace():
    covered = {name for entry in CURATED for name, _ in entry.runs if name not in RAW_RUNS}
    assert covered == set(FLOWS)
    assert sorted(p.stem for p in TRACES.glob("*.apdu")) == sorted(entry.name for entry in CURATED)


@pytest.mark.parametrize("entry", CURATED, ids=lambda e: e.name)
def test_curated_trace_is_current_and_replays(entry):
    text = (TRACES / f"{entry.name}.apdu").read_text(encoding="utf-8")
    trace = parse(text, entry.name)
    assert trace.header[:len(entry.situation)] == entry.situation  # the situation comes first
    assert exchanges(record(entry)) == exchanges(text)  # recording the flow again gives the same bytes
    result = replay(trace, sim_reader_for(trace))
    assert result.ok, result.report()
    assert result.apdus == trace.apdus >= 5


def test_an_edited_curated_trace_fails_precisely():
    text = (TRACES / "hospital-activation.apdu").read_text(encoding="utf-8")
    lines = text.splitlines()
    number = next(i for i, line in enumerate(lines) if line.startswith("< 01 10 11 01 00"))
    lines[number] = lines[number].replace("< 01 10 11 01 00", "< 01 10 11 01 01", 1)
    trace = parse("\n".join(lines), "edited.apdu")
    result = replay(trace, sim_reader_for(trace))
    assert not result.ok
    assert result.failure.line == number + 1
    assert result.failure.message.startswith("response byte 4 is 00, expected 01: got 01 10 11 01 [00] D1")


# -- on any fresh default card: relative dates, the issue-date bytes masked ---------------------------

CARD_DATES = [datetime.date.today(), datetime.date(1950, 1, 1), datetime.date(1999, 12, 31),
              datetime.date(2026, 12, 1), datetime.date(2028, 2, 29), datetime.date(2039, 6, 30)]


def test_curated_traces_date_the_card_by_its_issue_date_and_mask_what_it_decides():
    for entry in CURATED:
        trace = parse((TRACES / f"{entry.name}.apdu").read_text(encoding="utf-8"), entry.name)
        assert trace.date is None and trace.date_offset == entry.age and trace.issued == entry.issued
        for step in trace.steps:
            fixed = step.expect.fixed_bytes() if step.expect is not None and step.kind == "apdu" else None
            assert fixed is None or not issue_date_bytes(fixed), f"{entry.name}:{step.expect_line} is not masked"
    deadline = parse((TRACES / "deadline-unlock.apdu").read_text(encoding="utf-8"), "deadline-unlock")
    assert deadline.date_text == "issued+301"


@pytest.mark.parametrize("day", CARD_DATES, ids=str)
def test_curated_traces_replay_on_a_fresh_default_card_of_any_day(day):
    for entry in CURATED:
        trace = parse((TRACES / f"{entry.name}.apdu").read_text(encoding="utf-8"), entry.name)
        result = replay(trace, sim_reader_for(trace, Card.from_profile("default", date=day)))
        assert result.ok, f"card issued {day}: {result.report()}"


def test_the_readme_replay_on_a_card_personalised_today_passes_every_trace(tmp_path, capsys):
    """README: `sscard replay apdu_traces/*.apdu --state card.img`; each trace starts from the image as
    it is (a copy in memory), so the traces do not change the card for the next one, nor the file."""
    image = str(tmp_path / "card.img")
    assert main(["personalize", "--state", image]) == 0
    before = open(image, "rb").read()
    capsys.readouterr()
    code = main(["replay", *sorted(str(p) for p in TRACES.glob("*.apdu")), "--state", image])
    out = capsys.readouterr().out
    assert code == 0 and out.endswith(f"\n{len(CURATED)} passed, 0 failed\n"), out
    assert open(image, "rb").read() == before
    if datetime.date.today() != ISSUED:  # the one directive a card of another day cannot honour, said first
        first = out.splitlines()[0]
        assert first == f"note: {TRACES / 'bank-activation.apdu'}: trace recorded on a card issued {ISSUED}; " \
                        f"{image} was issued {datetime.date.today()}"
