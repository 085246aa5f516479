"""The .apdu trace format, replay, recording and scriptor conversion (reader.traces.format, reader.traces.replay)."""

import datetime
import io

import helpers
import pytest
from helpers import spaced

from chip import Card
from reader import SimReader
from reader.traces.format import TraceError, expectation, from_scriptor, parse, to_scriptor, to_text
from reader.traces.replay import RecordingReader, fresh_card, image_bytes, junit_xml, replay, replay_notes, seeded, sim_reader_for

SELECT = spaced(helpers.SELECT_SSSE)
# the SSSE's FCI: DF name, DIR SFI 88 01 1E, algorithm 9F0C 86 01 03 (P5 table 36, docs/decisions.md S9, S19)
FCI = spaced(helpers.FCI["sm4"])
HEADER = "@date 2026-11-21\n@random 7\nreset\n"


def run(text: str):
    trace = parse(text, "t.apdu")
    return replay(trace, sim_reader_for(trace))


# -- matching -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern, data, ok", [
    ("90 00", "9000", True),
    ("90 00", "9001", False),
    ("90 00", "900000", False),
    ("XX XX 90 00", "AB CD 90 00", True),
    ("* 90 00", "90 00", True),
    ("* 90 00", "01 02 03 90 00", True),
    ("* 90 00", "01 02 03 6A 82", False),
    ("90 00 | 61 XX", "61 1B", True),
    ("90 00 | 61 XX", "6C 1B", False),
    ("6F * 90 00 | 61 1B", "61 1B", True),
])
def test_patterns(pattern, data, ok):
    assert (expectation(pattern).match(bytes.fromhex(data.replace(" ", "")), {}) is not None) is ok


def test_captures_and_reuse():
    e = expectation("{challenge:8} 90 00")
    found = e.match(bytes.fromhex("1122334455667788 9000".replace(" ", "")), {})
    assert found == {"challenge": bytes.fromhex("1122334455667788")}
    greedy = expectation("01 {rest:*} 90 00").match(bytes.fromhex("01AABBCC9000"), {})
    assert greedy == {"rest": bytes.fromhex("AABBCC")}
    same = expectation("{challenge} 90 00")
    assert same.match(bytes.fromhex("11223344556677889000"), found) == {}
    assert same.match(bytes.fromhex("11223344556677009000"), found) is None


def test_first_difference_names_the_byte():
    index, want = expectation("6F 19 84 90 00").first_difference(bytes.fromhex("6F1985"), {})
    assert (index, want) == (2, "84")


# -- parsing errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("> 00 A4 GG", "t.apdu:1: 'G' is not a hex byte or {capture}"),
    ("< 90 00", "t.apdu:1: '<' without a '>' command before it"),
    ("> 00 84 00 00 08\n< 90 00\n< 90 00", "t.apdu:3: a second '<' for the command on line 1"),
    ("@colour red", "t.apdu:1: unknown directive @colour"),
    ("@date 21/11/2026", "t.apdu:1: @date needs YYYY-MM-DD"),
    ("@random x", "t.apdu:1: @random needs a whole number"),
    ("@protocol T=2", "t.apdu:1: @protocol is T=0 or T=1"),
    ("hello", "t.apdu:1: 'hello' is not a trace line"),
    ("> 00 84 00 00 08\n< {x:y} 90 00", "t.apdu:2: capture size in '{x:y}' must be a number of bytes or *"),
    ("> 00 {x:8}", "t.apdu:1: a command cannot capture"),
    ("> 00\n< * * 90 00", "t.apdu:2: at most one '*'"),
    ("power-off now", "t.apdu:1: power-off takes nothing after it"),
])
def test_parse_errors_name_file_line_and_problem(text, message):
    with pytest.raises(TraceError) as error:
        parse(text, "t.apdu")
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_header_and_directives():
    trace = parse("# Situation: a hospital\n# second line\n\n@profile default-3des\n@date 2026-01-02\n"
                  "@random 3\n@protocol T=0\nreset\n> 00 84 00 00 08 # a comment\n", "t.apdu")
    assert trace.header == ["Situation: a hospital", "second line"]
    assert (trace.profile, str(trace.date), trace.random, trace.protocol) == ("default-3des", "2026-01-02", 3, "T=0")
    assert [s.kind for s in trace.steps] == ["reset", "apdu"] and trace.steps[1].comment == "a comment"
    assert parse(to_text(trace), "again").steps[1].command_text() == "00 84 00 00 08"


# -- replay ------------------------------------------------------------------------------------------------

def test_replay_passes_and_uses_captures():
    result = run(HEADER + f"> {SELECT}\n< {FCI} 90 00\n> 00 84 00 00 08\n< {{ch:8}} 90 00\n"
                          "> 00 B2 01 2C 12\n< 01 10 11 01 00 D1 56 00 00 05 {serial:4} {auth:4} 90 00\n"
                          "> 00 B2 07 2C 0B\n< 07 09 * 90 00\n")
    assert result.ok and result.apdus == 4


def test_replay_reports_the_first_differing_byte():
    result = run(HEADER + f"> {SELECT}\n< {FCI} 90 00\n> 00 B2 07 2C 0B\n< 07 09 54 30 30 30 30 30 30 30 32 90 00\n")
    assert not result.ok
    assert result.failure.line == 7  # the '<' line that expected something else
    assert result.failure.message == ("response byte 10 is 31, expected 32: got ... 30 30 30 30 30 30 [31] 90 00 "
                                      "to 00 B2 07 2C 0B")
    assert result.report().startswith("FAIL t.apdu:7: response byte 10 is 31, expected 32")


def test_replay_checks_the_atr():
    atr = Card.from_profile().atr
    assert run(f"reset {atr.hex(' ')}\n").ok
    bad = run("reset 3B 00\n")
    assert not bad.ok and bad.failure.message.startswith("ATR byte 1 differs: expected 00")


def test_seeded_random_makes_challenges_repeat():
    first = seeded(5)(8)
    assert seeded(5)(8) == first and seeded(6)(8) != first
    text = HEADER + f"> {SELECT}\n> 00 84 00 00 08\n< {{c:8}} 90 00\n"
    trace = parse(text, "t")
    a, b = sim_reader_for(trace), sim_reader_for(trace)
    a.reset(), b.reset()
    for r in (a, b):
        r.transmit(bytes.fromhex(SELECT.replace(" ", "")))
    assert a.transmit(bytes.fromhex("0084000008")) == b.transmit(bytes.fromhex("0084000008"))


def test_record_then_replay_is_identical():
    trace_for_card = parse(HEADER, "h")
    reader = sim_reader_for(trace_for_card)
    out = io.StringIO()
    rec = RecordingReader(reader, out, header=["round trip"], directives={"date": "2026-11-21", "random": 7})
    rec.reset()
    for apdu in (SELECT, "00 84 00 00 08", "00 20 00 00 03 12 34 56", "00 B2 09 30 00", "00 B2 05 2C 10"):
        rec.transmit(bytes.fromhex(apdu.replace(" ", "")))
    rec.power_off()
    recorded = parse(out.getvalue(), "rec.apdu")
    assert recorded.header[0] == "round trip" and recorded.apdus == 5
    result = replay(recorded, sim_reader_for(recorded))
    assert result.ok, result.report()
    # and replaying it again through a recorder gives the same exchanges
    again = io.StringIO()
    replay(recorded, RecordingReader(sim_reader_for(recorded), again))
    strip = lambda text: [line.split("#")[0].strip() for line in text.splitlines() if line[:1] in "<>"]  # noqa
    assert strip(again.getvalue()) == strip(out.getvalue())


def test_junit_xml():
    ok = run(HEADER + f"> {SELECT}\n< {FCI} 90 00\n")
    bad = run(HEADER + f"> {SELECT}\n< 90 00\n")
    xml = junit_xml([ok, bad])
    assert xml.startswith('<testsuite name="sscard replay" tests="2" failures="1"')
    assert "<failure message=\"response byte 0 is 6F, expected 90" in xml


# -- scriptor ---------------------------------------------------------------------------------------------

SCRIPT = f"# read EF05\nreset\n{SELECT}\n00 B2 01 2C 00\n"
LOG = ("Using T=0 protocol\nreset\n> RESET\n< OK: 3B 6D 00 00\n"
       f"> {SELECT}\n< 6F 1C 84 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 \n"
       "A3 D5 CF A5 09 88 01 1E 9F 0C 03 86 01 03 90 00 : Normal processing.\n"
       "> 00 B2 07 2C 0B\n< 07 09 54 30 30 30 30 30 30 30 31 90 00 : Normal processing.\n")


def test_scriptor_script_round_trip():
    trace = from_scriptor(SCRIPT, "s.txt")
    assert [s.kind for s in trace.steps] == ["reset", "apdu", "apdu"]
    assert to_scriptor(trace) == SCRIPT
    assert from_scriptor(to_scriptor(trace)).steps[2].command_text() == "00 B2 01 2C 00"


def test_scriptor_log_becomes_expectations_that_replay():
    trace = from_scriptor(LOG, "log.txt")
    assert [s.kind for s in trace.steps] == ["reset", "apdu", "apdu"]
    assert trace.steps[2].expect.text == "07 09 54 30 30 30 30 30 30 30 31 90 00"
    card = Card.from_profile()
    reader = SimReader(card)
    reader.reset()
    assert replay(trace, reader).ok


def test_scriptor_export_refuses_captures():
    trace = parse("> 00 84 00 00 08\n< {c:8} 90 00\n> 00 82 00 0A 10 {c} {c}\n", "t.apdu")
    with pytest.raises(TraceError, match=r"t\.apdu:3: scriptor cannot insert captured values"):
        to_scriptor(trace)


# -- the CLI ----------------------------------------------------------------------------------------------

def test_cli_replay_record_and_scriptor(tmp_path, capsys):
    from reader.cli import main

    image = str(tmp_path / "card.img")
    assert main(["--date", "2026-11-21", "personalize", "--state", image]) == 0
    fresh = str(tmp_path / "fresh.img")
    assert main(["--date", "2026-11-21", "personalize", "--state", fresh]) == 0
    trace = str(tmp_path / "t.apdu")
    assert main(["record", "-o", trace, "--", "--date", "2026-11-21", "apdu", "--state", image, SELECT.replace(" ", ""),
                 "0020000003123456", "00B2072C0B"]) == 0
    capsys.readouterr()
    assert main(["replay", trace, "--state", fresh, "--junit", str(tmp_path / "j.xml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"PASS {trace} (3 APDUs") and out.endswith("1 passed, 0 failed\n")
    text = open(trace).read().replace("< 07 09 54 30", "< 07 09 54 31")
    edited = str(tmp_path / "edited.apdu")
    open(edited, "w").write(text)
    assert main(["replay", edited, "--state", fresh]) == 1
    assert "response byte 3 is 30, expected 31" in capsys.readouterr().out
    script = str(tmp_path / "t.scriptor")
    assert main(["scriptor", "export", trace, "-o", script]) == 0
    back = str(tmp_path / "back.apdu")
    assert main(["scriptor", "import", script, "-o", back]) == 0
    assert [s.command_text() for s in parse(open(back).read(), "b").steps if s.kind == "apdu"] == \
        [s.command_text() for s in parse(open(trace).read(), "a").steps if s.kind == "apdu"]
    bad = str(tmp_path / "bad.apdu")
    open(bad, "w").write("> 00 A4 ZZ\n")
    capsys.readouterr()
    assert main(["replay", bad]) == 2
    assert capsys.readouterr().err == f"sscard: error: {bad}:1: 'Z' is not a hex byte or {{capture}}\n"


# -- directives for replays on any card, snapshots, implicit reset -------------------------------------------

def test_relative_date_raw_protocol_and_their_text():
    trace = parse("@issued 2026-11-21\n@date issued+301\n@protocol T=0 raw\nreset\n", "t.apdu")
    assert (trace.date, trace.date_offset, trace.raw, trace.protocol) == (None, 301, True, "T=0")
    assert str(trace.today(datetime.date(2026, 11, 21))) == "2027-09-18"
    assert str(trace.today(datetime.date(2030, 1, 1))) == "2030-10-29"  # relative to whichever card
    assert to_text(trace) == "@date issued+301\n@issued 2026-11-21\n@protocol T=0 raw\nreset\n"
    assert parse("@date issued\n", "t").date_offset == 0
    card = sim_reader_for(trace).card
    assert str(card.today) == "2027-09-18" and str(card.applets["ssse"].issue_date()) == "2026-11-21"
    on_other = sim_reader_for(trace, Card.from_profile(date=datetime.date(2028, 2, 29))).card
    assert str(on_other.today) == "2028-12-26"
    with pytest.raises(TraceError, match=r"t.apdu:1: @protocol is T=0 or T=1"):
        parse("@protocol T=1 raw\n", "t.apdu")


@pytest.mark.parametrize("text", ["@date 0001-01-01", "@date 9999-12-31", "@issued 1949-12-31", "@issued 2050-01-01"])
def test_dates_the_card_cannot_use_are_named_as_such(text):
    with pytest.raises(TraceError) as error:
        parse(text + "\nreset\n", "t.apdu")
    message = str(error.value)
    assert message.startswith(f"t.apdu:1: {text.split()[0]}: {text.split()[1]} is a date the simulated card "
                              "cannot use") and "1950-01-01 to 2049-12-31" in message and "\n" not in message


def test_a_relative_date_past_the_range_is_a_trace_error_not_a_traceback():
    trace = parse("@issued 2049-12-01\n@date issued+301\nreset\n", "t.apdu")
    with pytest.raises(TraceError, match=r"t.apdu:2: @date issued\+301 on a card issued 2049-12-01 gives "
                                         r"2050-09-28 is a date the simulated card cannot use"):
        sim_reader_for(trace)


def test_a_trace_without_reset_gets_an_implicit_cold_reset_with_a_note():
    trace = parse(f"# serve --record\n> {SELECT}\n< {FCI} 90 00\n> 00 B2 07 2C 0B\n< 07 09 * 90 00\n", "t.apdu")
    assert trace.unpowered_command() == 2
    result = replay(trace, sim_reader_for(trace))
    assert result.ok, result.report()
    assert result.notes == ["no reset before the first command (line 2): the replay starts with a cold reset"]
    assert run(HEADER + f"> {SELECT}\n").notes == []  # a trace that resets: nothing to say


def test_a_command_after_power_off_fails_at_its_line():
    result = run(HEADER + f"> {SELECT}\npower-off\n> 00 B2 07 2C 0B\n")
    assert not result.ok and result.failure.line == 6
    assert result.failure.message == ("the card is not powered (power-off on line 5 and no reset since): "
                                      "00 B2 07 2C 0B needs a reset first")


def test_an_imported_scriptor_script_replays():
    trace = from_scriptor(f"# no reset in this script\n{SELECT}\n00 B2 07 2C 0B\n", "s.txt")
    result = replay(trace, SimReader(Card.from_profile()))
    assert result.ok and result.apdus == 2 and "cold reset" in result.notes[0]


def test_snapshot_directive_carries_the_starting_card():
    card = Card.from_profile(date=datetime.date(2026, 11, 21))
    reader = SimReader(card)
    reader.reset()
    reader.transmit(bytes.fromhex(SELECT.replace(" ", "")))
    reader.transmit(bytes.fromhex("0020000003999999"))  # a wrong PIN: 5 tries left
    reader.power_off()
    out = io.StringIO()
    rec = RecordingReader(SimReader(card), out, directives={"date": "2026-11-21", "random": 3,
                                                            "snapshot": image_bytes(card)})
    rec.reset()
    rec.transmit(bytes.fromhex(SELECT.replace(" ", "")))
    rec.transmit(bytes.fromhex("0020000003999999"))
    text = out.getvalue()
    assert text.count("@snapshot ") > 10 and max(len(line) for line in text.splitlines() if line[0] == "@") < 90
    trace = parse(text, "snap.apdu")
    assert trace.snapshot != image_bytes(Card.from_profile(date=datetime.date(2026, 11, 21)))  # not a fresh card
    assert fresh_card(trace).store["ssse.pin"].tries == 5  # the fresh card of the trace is the snapshot
    result = replay(trace, sim_reader_for(trace))
    assert result.ok, result.report()  # 63C4 again: the replay starts where the recording did
    assert parse(to_text(trace), "again").snapshot == trace.snapshot
    lines = text.splitlines()
    broken = "\n".join(line if not line.startswith("@snapshot") else line[:-4] + "!!!!" for line in lines)
    with pytest.raises(TraceError, match=r"snap.apdu:\d+: @snapshot is not a zlib-compressed card image"):
        parse(broken, "snap.apdu")


def test_replay_notes_for_a_pcsc_reader_and_another_card():
    trace = parse("@profile default-3des\n@date 2026-11-21\n@random 3\nreset\n", "t.apdu")
    notes = replay_notes(trace, pcsc=True)
    assert [note.split(" (")[0] for note in notes] == ["@profile", "@date", "@random"]
    assert "challenges and what depends on them will differ" in notes[2]
    card = Card.from_profile(date=datetime.date(2026, 12, 1))
    assert replay_notes(trace, card, "card.img") == [
        "trace recorded on a card of profile 'default-3des'; card.img is of profile 'default'",
        "trace recorded on a card issued 2026-11-21; card.img was issued 2026-12-01"]
    assert replay_notes(parse("@date issued+3\nreset\n", "t"), card, "card.img") == []  # nothing fixed: all honoured


def test_the_pytest_plugin_replays_a_trace_without_reset(pytester):
    """What `scriptor import` and `serve --record` write has no reset: the plugin's item passes after
    an implicit cold reset, and says so in the item's report (never a CardNotPowered traceback)."""
    pytester.makefile(".apdu", served=f"# every APDU the served card answered\n> {SELECT}\n< {FCI} 90 00\n")
    pytester.makefile(".apdu", bad=f"> {SELECT}\n< 90 00\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    assert "CardNotPowered" not in text
    assert "note: served.apdu: no reset before the first command (line 2): the replay starts with a cold reset" in text
    assert "bad.apdu:2: response byte 0 is 6F, expected 90" in text
