"""`sscard record` -> `sscard replay` round trips: every `sscard ssse` and `sscard fin`
operation and every flow of `sscard flow --list`, recorded on a card image, replays green on a
byte-identical copy of the image taken before the recording (`--state copy.img`) and on the card the
trace's own directives make (no `--state`); the copy is left as it was.

The trace carries what the replay needs: `@profile`, `@date`, `@issued`, `@random` with the seed that
`record` set on the card (or the command's own `--seed`), `@protocol`, and `@snapshot` when the card
the recording started from is not a fresh personalisation."""

import argparse
import shutil

import pytest
from helpers import SELECT_SSSE, cli

from reader.cli.parser import build_parser
from reader.terminals import flows
from reader.traces.format import parse

DATE = "2026-11-25"  # the simulated date of every command here (the card is issued on it)
SELECT_LE = SELECT_SSSE + "00"  # SELECT SSSE with Le 00 (case 4)
WRONG_PIN = "0020000003999999"

# operation -> (commands run first to bring the card where the operation means something, the operation)
SSSE = {
    "change-pin": ([], ["123456", "246810"]),
    "verify": ([], ["123456"]),
    "lock": ([], []),
    "unlock": ([["ssse", "lock"]], []),
    "unblock-pin": ([["apdu", SELECT_LE] + [WRONG_PIN] * 6], []),
    "reset-pin": ([["apdu", SELECT_LE] + [WRONG_PIN] * 6], ["135790"]),
    "register": ([], ["--amount", "1500"]),
    "pharmacy": ([], ["--amount", "1000"]),
    "card-block": ([], []),
}
SSSE_VARIANTS = [("lock --permanent", "lock", [], ["--permanent"]),
                 ("verify on a locked card", "verify", [["ssse", "lock"]], ["123456"])]
FIN = {
    "activate": ([], ["--pin", "246810"]),
    "purchase": ([["fin", "activate", "--pin", "246810"]], ["1234", "--pin", "246810"]),
    "block": ([], []),
    "unblock": ([["fin", "block"]], []),
    "unblock-pin": ([], []),
    "card-block": ([], []),
}
FLOW_PARAMS = {"entrusted-activation": ["agent_id_number=110105198506150022", "power_of_attorney=POA-2026-000123"]}
FLOW_BEFORE = {"loss-unlock": [["flow", "loss-report"]]}
FLOW_DATE = {"deadline-unlock": "2027-09-22"}  # past the 300-day activation deadline of a card issued on DATE


def operations(command: str) -> set[str]:
    """The operations `sscard COMMAND` offers, from the parser (a new one must join the tables above)."""
    parser = build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = top.choices[command]
    ops = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction))
    return set(ops.choices)


def test_the_tables_cover_every_operation_and_flow():
    assert set(SSSE) == operations("ssse")
    assert set(FIN) == operations("fin")
    assert set(flows.FLOWS) >= set(FLOW_PARAMS) | set(FLOW_BEFORE) | set(FLOW_DATE)


def with_state(argv: list, image: str) -> list:
    """`argv` with --state IMAGE in the right place (after the operation; apdu before its HEX)."""
    if argv[0] == "apdu":
        return ["apdu", "--state", image] + argv[1:]
    head = 2 if argv[0] in ("ssse", "fin", "flow") else 1
    return argv[:head] + ["--state", image] + argv[head:]


def round_trip(tmp_path, capsys, before: list, argv: list, date: str = DATE) -> str:
    """Make a card, run `before` on it, copy it, record `argv` on the original, replay the trace on the
    copy and on the trace's own card; returns the trace text."""
    folder = tmp_path / f"trip{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    image, copy, trace = (str(folder / name) for name in ("card.img", "copy.img", "t.apdu"))
    assert cli(capsys, "--date", DATE, "personalize", "--state", image)[0] == 0
    for command in before:
        code, out, err = cli(capsys, "--date", DATE, *with_state(command, image))
        assert code in (0, 1), err
    shutil.copyfile(image, copy)
    start = open(copy, "rb").read()
    code, out, err = cli(capsys, "record", "-o", trace, "--", "--date", date, *with_state(argv, image))
    assert code in (0, 1), err  # 1: the card or the terminal refused, which is recorded too
    text = open(trace, encoding="utf-8").read()
    recorded = parse(text, trace)
    assert recorded.apdus > 0 and recorded.random is not None
    assert (str(recorded.date), recorded.profile, str(recorded.issued)) == (date, "default", DATE)
    for state in (["--state", copy], []):
        code, out, err = cli(capsys, "replay", trace, *state)
        assert (code, err) == (0, ""), out
        assert out.endswith("1 passed, 0 failed\n") and "note:" not in out, out
    assert open(copy, "rb").read() == start  # a replay on a supplied image leaves the file as it was
    return text


@pytest.mark.parametrize("operation", sorted(SSSE))
def test_every_ssse_operation_round_trips(tmp_path, capsys, operation):
    before, args = SSSE[operation]
    text = round_trip(tmp_path, capsys, before, ["ssse", operation, *args])
    assert ("@snapshot " in text) == bool(before)  # a card that is not fresh travels with the trace


@pytest.mark.parametrize("name, operation, before, args", SSSE_VARIANTS, ids=[v[0] for v in SSSE_VARIANTS])
def test_ssse_variants_round_trip(tmp_path, capsys, name, operation, before, args):
    round_trip(tmp_path, capsys, before, ["ssse", operation, *args])


@pytest.mark.parametrize("operation", sorted(FIN))
def test_every_fin_operation_round_trips(tmp_path, capsys, operation):
    before, args = FIN[operation]
    round_trip(tmp_path, capsys, before, ["fin", operation, *args])


@pytest.mark.parametrize("name", sorted(flows.FLOWS))
def test_every_flow_round_trips(tmp_path, capsys, name):
    params = [arg for pair in FLOW_PARAMS.get(name, []) for arg in ("--param", pair)]
    round_trip(tmp_path, capsys, FLOW_BEFORE.get(name, []), ["flow", name, *params], FLOW_DATE.get(name, DATE))


def test_card_block_alias_and_raw_apdus_round_trip(tmp_path, capsys):
    round_trip(tmp_path, capsys, [], ["card-block"])
    text = round_trip(tmp_path, capsys, [], ["apdu", "--t0", SELECT_SSSE, "00C000001E", "0084000008"])
    assert "@protocol T=0 raw" in text and "< 61 1E" in text  # the raw T=0 exchanges, as --t0 showed them
    round_trip(tmp_path, capsys, [], ["apdu", "--wire", "t0", SELECT_LE, "0084000008", "0084000008"])


def test_record_uses_the_commands_own_seed(tmp_path, capsys):
    image, trace = str(tmp_path / "card.img"), str(tmp_path / "t.apdu")
    cli(capsys, "--date", DATE, "personalize", "--state", image)
    code, out, _ = cli(capsys, "record", "-o", trace, "--", "apdu", "--seed", "7", "--state", image, SELECT_LE,
                       "0084000008")
    assert code == 0 and parse(open(trace).read(), trace).random == 7
    challenge = out.split("> 00 84 00 00 08\n< ")[1].split("\n")[0]
    code, again, _ = cli(capsys, "apdu", "--seed", "7", "--state", image, SELECT_LE, "0084000008")
    assert again.split("> 00 84 00 00 08\n< ")[1].split("\n")[0] == challenge  # the same seed, the same challenge
    code, other, _ = cli(capsys, "apdu", "--seed", "8", "--state", image, SELECT_LE, "0084000008")
    assert other.split("> 00 84 00 00 08\n< ")[1].split("\n")[0] != challenge


def test_a_global_date_before_record_reaches_the_recorded_command(tmp_path, capsys):
    image, trace = str(tmp_path / "card.img"), str(tmp_path / "t.apdu")
    cli(capsys, "--date", DATE, "personalize", "--state", image)
    assert cli(capsys, "--date", "2027-01-02", "record", "-o", trace, "--", "ssse", "verify", "123456",
               "--state", image)[0] == 0
    assert str(parse(open(trace).read(), trace).date) == "2027-01-02"


def test_an_empty_recording_is_an_error(tmp_path, capsys):
    image, trace = str(tmp_path / "card.img"), str(tmp_path / "t.apdu")
    cli(capsys, "--date", DATE, "personalize", "--state", image)
    for argv in (["info", "--state", image], ["flow", "--list"], ["decode", trace]):
        code, _out, err = cli(capsys, "record", "-o", trace, "--", *argv)
        assert code == 2 and err.count("\n") == 1 and "nothing to record" in err, err
        assert not (tmp_path / "t.apdu").exists()
    # a command that fails before its first APDU: its own one-line error, and no trace
    code, _out, err = cli(capsys, "record", "-o", trace, "--", "ssse", "verify", "123456", "--state",
                         str(tmp_path / "none.img"))
    assert code == 2 and err.count("\n") == 1 and "no such card image" in err
    assert not (tmp_path / "t.apdu").exists()
    code, _out, err = cli(capsys, "record", "-o", trace, "--", "ssse", "verify", "12", "--state", image)
    assert code == 2 and err == "sscard: error: ssse verify: argument pin: a PIN is 4 to 12 digits, not '12'\n"


def test_replay_on_another_card_says_first_what_it_cannot_honour(tmp_path, capsys):
    image, other, trace = (str(tmp_path / name) for name in ("card.img", "other.img", "t.apdu"))
    cli(capsys, "--date", DATE, "personalize", "--state", image)
    cli(capsys, "--date", "2026-12-01", "personalize", "default-3des", "--state", other)
    cli(capsys, "record", "-o", trace, "--", "--date", DATE, "ssse", "register", "--state", image)
    code, out, _ = cli(capsys, "replay", trace, "--state", other)
    lines = out.splitlines()
    assert lines[0] == f"note: {trace}: trace recorded on a card of profile 'default'; {other} is of profile " \
                       "'default-3des'"
    assert lines[1] == f"note: {trace}: trace recorded on a card issued {DATE}; {other} was issued 2026-12-01"
    assert lines[2].startswith(f"FAIL {trace}:") and code == 1  # and then why it failed
    # a snapshot trace on a card in another state: which objects differ
    cli(capsys, "record", "-o", trace, "--", "--date", DATE, "ssse", "verify", "123456", "--state", image)
    assert "@snapshot" in open(trace).read()  # card.img was activated by the settlement above
    fresh = str(tmp_path / "fresh.img")
    cli(capsys, "--date", DATE, "personalize", "--state", fresh)
    code, out, _ = cli(capsys, "replay", trace, "--state", fresh)
    assert out.splitlines()[0].startswith(f"note: {trace}: trace starts from a snapshot of its card; {fresh} "
                                          "differs from it in ")
    assert "ssse.state" in out.splitlines()[0]
