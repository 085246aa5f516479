"""The `sscard` command line: each subcommand, and one-line errors with a non-zero exit."""

import subprocess
import sys

import pytest
from helpers import DEFAULT_ATR_EXPLAINED, SELECT_SSSE, TRACES, cli

from chip import Card
from chip.personalization.profile import SHIPPED


def test_personalize_then_info(tmp_path, capsys):
    img = str(tmp_path / "card.img")
    code, out, err = cli(capsys, "--date", "2026-11-21", "personalize", "--state", img)
    assert code == 0 and err == ""
    assert "card T00000001, holder 李华" in out
    code, out, err = cli(capsys, "info", "--state", img)
    assert code == 0
    assert "PIN tries left       6 of 6" in out
    assert "issue date                   2026-11-21" in out
    assert "expiry date                  2036-11-21" in out
    assert "name                         李华" in out
    assert "lifecycle            issued" in out


def test_personalize_refuses_to_overwrite(tmp_path, capsys):
    img = str(tmp_path / "card.img")
    assert cli(capsys, "personalize", "--state", img)[0] == 0
    Card.open(img)  # stays a valid image
    code, _out, err = cli(capsys, "personalize", "--state", img)
    assert code == 2 and err.count("\n") == 1
    assert "already exists; add --force" in err
    assert cli(capsys, "personalize", "--force", "--state", img)[0] == 0


def test_apdu_prints_command_data_sw_and_meaning(tmp_path, capsys):
    img = str(tmp_path / "card.img")
    cli(capsys, "personalize", "--state", img)
    code, out, _err = cli(capsys, "apdu", "--state", img, SELECT_SSSE, "00 20 00 00 03 11 11 11", "00B2012C00",
                         "00B2012C12")
    assert code == 0
    assert out.splitlines()[0] == "ATR 3B 6D 00 00 00 81 53 53 43 86 99 11 01 00 00 00 01"  # P2 table 16
    assert "> 00 20 00 00 03 11 11 11\n< 63C5  verification failed, 5 tries left" in out
    # Le 00: the card answers the record's length (P5 §6.10.4, docs/decisions.md S12); sscard apdu shows it as it is
    assert "> 00 B2 01 2C 00\n< 6C12  wrong Le: 18 bytes available" in out
    assert "> 00 B2 01 2C 12\n< 01 10 11 01 00 D1 56 00 00 05 00 00 00 01 00 00 00 00\n< 9000  OK" in out
    # the wrong PIN was counted in the image
    assert Card.open(img).store["ssse.pin"].tries == 5


def test_apdu_t0_answers_61xx(tmp_path, capsys):
    """The default card is T=0 (P2): `--t0` shows the transport's 61xx and GET RESPONSE (P2 §9.3);
    without it the reader fetches the data, as a terminal's transport layer does."""
    img = str(tmp_path / "card.img")
    cli(capsys, "personalize", "--state", img)
    code, out, _ = cli(capsys, "apdu", "--t0", "--no-decode", "--state", img, SELECT_SSSE, "00C000001E",
                       "00C000001E")
    assert code == 0
    assert "< 611E  30 more bytes available (GET RESPONSE)" in out
    assert "> 00 C0 00 00 1E\n< 6F 1C 84 0F" in out
    # nothing waiting: 6F00 (P5 §6.6.4; docs/decisions.md §3)
    assert out.rstrip().endswith("< 6F00  data invalid / nothing to fetch")
    code, out, _ = cli(capsys, "apdu", "--no-decode", "--state", img, SELECT_SSSE)
    assert code == 0 and out.splitlines()[-1] == "< 9000  OK" and "\n< 6F 1C 84 0F" in out and "00 C0" not in out


@pytest.mark.parametrize("argv, message", [
    (["apdu", "--state", "{img}", "zz"], "not hexadecimal: 'zz'"),
    (["apdu", "--state", "{missing}", "00A4000000"], "no such card image"),
    (["info", "--state", "{garbage}"], "not an sscard card image"),
    (["personalize", "nosuchprofile", "--state", "{new}"], "no shipped profile 'nosuchprofile'"),
    (["personalize", "{badprofile}", "--state", "{new}"], "holder.id_number"),
])
def test_errors_are_one_line(tmp_path, capsys, argv, message):
    img = str(tmp_path / "card.img")
    cli(capsys, "personalize", "--state", img)
    (tmp_path / "garbage.img").write_bytes(b"hello")
    bad = tmp_path / "bad.toml"
    text = (SHIPPED / "default.toml").read_text(encoding="utf-8")
    bad.write_text(text.replace("110101199003071233", "110101199003071234"), encoding="utf-8")
    names = {"img": img, "missing": str(tmp_path / "none.img"), "garbage": str(tmp_path / "garbage.img"),
             "new": str(tmp_path / "new.img"), "badprofile": str(bad)}
    code, _out, err = cli(capsys, *[a.format(**names) for a in argv])
    assert code == 2
    assert err.startswith("sscard: error: ") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "new.img").exists()


def test_demo_runs_the_scripted_session(capsys):
    code, out, _ = cli(capsys, "--date", "2026-11-21", "demo")
    assert code == 0
    # wrong PIN, right PIN, change PIN, old PIN refused, new PIN accepted - in that order
    expected = ["63C5  verification failed, 5 tries left", "9000  OK", "6982  security status not satisfied"]
    for text in expected:
        assert text in out
    assert out.index("VERIFY with a wrong PIN") < out.index("VERIFY with the initial PIN") < out.index("CHANGE PIN")
    tail = out[out.index("CHANGE PIN"):]
    assert tail.count("< 9000  OK") == 2 and "63C5" in tail
    assert "< 09 1E C0 EE BB AA 00" in out  # the holder name in GBK
    # EF06 on a 3.00 card: refused after the PIN, read after external authentication with RKSSSE (P7 §6)
    assert out.index("6982") < out.index("> 00 82 00 0A 10 ") < out.index("< 09 1E C0 EE BB AA 00")
    assert "ATR 3B 6D 00 00 00 81 53 53 43 86 99 11 01 00 00 00 01" in out


def test_console_script_entry_point():
    # the installed `sscard` command is reader.cli:main
    result = subprocess.run([sys.executable, "-m", "reader.cli", "--date", "2026-11-21", "demo"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "VERIFY with the new PIN" in result.stdout


def test_apdu_output_is_decoded(tmp_path, capsys):
    img = str(tmp_path / "card.img")
    cli(capsys, "--date", "2026-11-21", "personalize", "--state", img)
    code, out, _ = cli(capsys, "apdu", "--state", img, SELECT_SSSE, "00B2072C0B", "0020000003123456", "00B2093020")
    assert code == 0
    assert "    SELECT by DF name sx1.sh.社会保障 (SSSE)" in out
    assert "    READ RECORD 07 of EF05 (SFI 5) — card number" in out
    assert '07 card number: 543030303030303031 = "T00000001"' in out
    assert "PIN: 6 digits" in out and "12 34 56" in out.split("PIN:")[0]  # the PIN itself is only in the raw line
    code, plain, _ = cli(capsys, "apdu", "--no-decode", "--state", img, "00B2072C00")
    assert "READ RECORD" not in plain


def test_decode_command_explains_a_trace(tmp_path, capsys):
    code, out, _ = cli(capsys, "decode", str(TRACES / "pharmacy-activation.apdu"))
    assert code == 0
    assert "SELECT by DF name sx1.sh.社会保障 (SSSE)" in out
    assert "INTERNAL AUTHENTICATE with IRK (key 00)" in out
    assert "INITIALIZE FOR PURCHASE" in out and "DEBIT FOR PURCHASE" in out
    assert "personal account balance: 0000C350 = 50000 fen = 500.00" in out
    assert "SW 9000 OK" in out


def test_atr_command_explains_every_byte(tmp_path, capsys):
    img = str(tmp_path / "card.img")
    cli(capsys, "personalize", "--state", img)
    code, out, _ = cli(capsys, "atr", "--state", img)
    assert code == 0
    # LD/T 32 P2's basic ATR (Table 7: T=0 only, TB1 00, TC1 00, no TA1, no TCK) with the 13
    # historical bytes of Table 16, each field named
    assert out.splitlines() == [
        "ATR 3B 6D 00 00 00 81 53 53 43 86 99 11 01 00 00 00 01",
        *DEFAULT_ATR_EXPLAINED,
        "protocols T=0: negotiable mode; no TA1: T=0 at Fi/Di 372/1 for the whole session, no PPS needed",
        "characters: 12 etu to the card (N=0), 12 etu from the card",
        "T=0: WI 10, WWT 9600 etu at Di 1",
    ]
    # the t1 profile's ATR given in hex: TA1 and the T=1 bytes, the same historical bytes, TCK
    code, out, _ = cli(capsys, "atr", "3B 9D 13 80 31 FE 45 00 81 53 53 43 86 99 11 01 00 00 00 01 48")
    assert code == 0
    assert "TA1     13  Fi=372 Di=4 f_max=5 MHz: 1 etu = 93 clock cycles" in out
    assert "T6-T7   86 99  card manufacturer registration number" in out
    assert "TCK     48  check byte ok (XOR of T0..TCK is 00)" in out
    code, out, err = cli(capsys, "atr", "3B9D138031FE45008153534386991101000000014A")
    assert code == 2 and err.startswith("sscard: error: bad ATR: ") and err.count("\n") == 1
    assert "TCK 4A wrong" in err and "TCK should be 48" in err
    code, out, err = cli(capsys, "atr", "3B6D0000008153534386991101000000")  # one historical byte short
    assert code == 2 and err.count("\n") == 1 and "K=13, only 12 present" in err


# -- global options, and every file argument as one line ------------------------------------------------------

def test_date_is_accepted_before_or_after_the_command(tmp_path, capsys):
    img = str(tmp_path / "card.img")
    assert cli(capsys, "personalize", "--state", img, "--date", "2026-11-21")[0] == 0
    before = cli(capsys, "--date", "2027-01-01", "info", "--state", img)
    after = cli(capsys, "info", "--state", img, "--date", "2027-01-01")
    assert before == after and before[0] == 0 and "2027-09-17 (259 days left)" in before[1]
    code, _out, err = cli(capsys, "ssse", "verify", "123456", "--date", "2027-01-01", "--state", img)
    assert code == 0 and err == ""
    code, _out, err = cli(capsys, "flow", "service-window-activation", "--state", img, "--date", "2027-01-02")
    assert code == 0 and err == ""


def test_usage_errors_have_one_prefix(capsys):
    code, _out, err = cli(capsys, "bogus")
    assert code == 2 and err.startswith("sscard: error: argument COMMAND: invalid choice: 'bogus'")
    code, _out, err = cli(capsys, "info", "--state", "x.img", "--colour")
    assert err == "sscard: error: unrecognized arguments: --colour\n"
    code, _out, err = cli(capsys, "ssse", "register", "--amount", "x", "--state", "x.img")
    assert err.startswith("sscard: error: ssse register: argument --amount: ") and err.count("\n") == 1
    for argv in (["--date", "0001-01-01", "demo"], ["demo", "--date", "9999-12-31"]):
        code, _out, err = cli(capsys, *argv)
        assert code == 2 and err.count("\n") == 1 and "sscard: error: sscard:" not in err
        assert "is a date the simulated card cannot use" in err and "1950-01-01 to 2049-12-31" in err


def file_cases(tmp_path) -> dict:
    """Files that cannot be read or decoded, and an output folder that is not there."""
    (tmp_path / "binary.apdu").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00" + bytes(range(256)))
    (tmp_path / "latin1.apdu").write_bytes("# café\nreset\n".encode("latin-1"))
    (tmp_path / "latin1.toml").write_bytes('[holder]\nname = "李华"\n'.encode("gbk"))
    (tmp_path / "folder.toml").mkdir()
    (tmp_path / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    (tmp_path / "typo.toml").write_text((SHIPPED / "default.toml").read_text(encoding="utf-8").replace(
        "activation_deadline_days", "activation_deadline_dayz"), encoding="utf-8")
    (tmp_path / "script.txt").write_text(f"{SELECT_SSSE}\n", encoding="utf-8")
    (tmp_path / "good.apdu").write_text(f"reset\n> {SELECT_SSSE}\n", encoding="utf-8")
    return {"d": str(tmp_path), "img": str(tmp_path / "card.img")}


@pytest.mark.parametrize("argv, message", [
    (["scriptor", "import", "{d}/missing.txt", "-o", "{d}/t.apdu"],
     "{d}/missing.txt: cannot read scriptor script (No such file or directory)"),
    (["scriptor", "import", "{d}/binary.apdu", "-o", "{d}/t.apdu"], "{d}/binary.apdu: a binary file"),
    (["scriptor", "import", "{d}/script.txt", "-o", "{d}/nowhere/t.apdu"],
     "{d}/nowhere/t.apdu: cannot write the trace: no such folder {d}/nowhere"),
    (["scriptor", "export", "{d}/good.apdu", "-o", "{d}/nowhere/s.txt"], "cannot write the scriptor script"),
    (["replay", "{d}/binary.apdu"], "{d}/binary.apdu: a binary file (it has NUL bytes), not a trace"),
    (["replay", "{d}/latin1.apdu"], "{d}/latin1.apdu: not UTF-8 text (byte E9 at offset 5); a trace is UTF-8"),
    (["replay", "{d}"], "{d}: is a folder, not a trace"),
    (["replay", "/dev/null"], "/dev/null: is not a regular file, so not a trace"),
    (["decode", "{d}/latin1.apdu"], "{d}/latin1.apdu: not UTF-8 text"),
    (["replay", "{d}/good.apdu", "--junit", "{d}/nowhere/j.xml"], "{d}/nowhere/j.xml: cannot write the JUnit"),
    (["replay", "{d}/good.apdu", "--junit", "{d}"], "{d}: is a folder; give a file name for the JUnit report"),
    (["replay", "{d}/good.apdu", "--state", "{d}/missing.img"], "{d}/missing.img: no such card image"),
    (["record", "-o", "{d}/nowhere/t.apdu", "--", "apdu", "--state", "{img}", SELECT_SSSE],
     "{d}/nowhere/t.apdu: cannot write the trace: no such folder"),
    (["personalize", "{d}/folder.toml", "--state", "{d}/new.img"], "{d}/folder.toml: is a folder, not a profile"),
    (["personalize", "{d}/latin1.toml", "--state", "{d}/new.img"], "{d}/latin1.toml: not UTF-8 text (byte C0 at"),
    (["personalize", "{d}/deep.toml", "--state", "{d}/new.img"], "{d}/deep.toml: arrays or tables nested too deeply"),
    (["personalize", "{d}/typo.toml", "--state", "{d}/new.img"],
     "{d}/typo.toml: ssse.activation_deadline_dayz: unknown key; did you mean activation_deadline_days?"),
    (["wire-log", "--clock", "0", "--state", "{img}", SELECT_SSSE], "wire-log: argument --clock: a clock frequency"),
    (["wire-log", "--clock", "inf", "--state", "{img}", SELECT_SSSE], "more than 0 and at most 100, not 'inf'"),
    (["wire-log", "--clock", "nan", "--state", "{img}", SELECT_SSSE], "more than 0 and at most 100, not 'nan'"),
    (["wire-log", "--clock", "-4", "--state", "{img}", SELECT_SSSE], "more than 0 and at most 100, not '-4'"),
    (["wire-log", "--pps", "zz", "--state", "{img}", SELECT_SSSE], "argument --pps: the TA1 to ask for is one byte"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_file_arguments_that_cannot_be_used_are_one_line(tmp_path, capsys, argv, message):
    names = file_cases(tmp_path)
    cli(capsys, "--date", "2026-11-21", "personalize", "--state", names["img"])
    code, _out, err = cli(capsys, *[a.format(**names) for a in argv])
    assert code == 2 and err.startswith("sscard: error: ") and err.count("\n") == 1, err
    assert message.format(**names) in err
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "new.img").exists()


def test_an_unreadable_profile_is_one_line(tmp_path, capsys, monkeypatch):
    import chip.inputs

    path = tmp_path / "mine.toml"
    path.write_text((SHIPPED / "default.toml").read_text(encoding="utf-8"), encoding="utf-8")

    def refuse(file, *args, **kwargs):  # what chmod 000 gives a user who is not root
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(chip.inputs, "open", refuse, raising=False)
    code, _out, err = cli(capsys, "personalize", str(path), "--state", str(tmp_path / "new.img"))
    assert code == 2 and err == f"sscard: error: {path}: cannot read profile (Permission denied)\n"


def test_a_link_error_on_the_simulated_contacts_is_one_line(tmp_path, capsys, monkeypatch):
    from reader.link import wire

    img = str(tmp_path / "card.img")
    cli(capsys, "personalize", "--state", img)

    def silent(self, apdu):
        raise wire.LinkError("timeout: no byte from the card within WWT (9600 etu)")

    monkeypatch.setattr(wire.WireReader, "transmit", silent)
    code, out, err = cli(capsys, "apdu", "--wire", "t0", "--state", img, "0012000008")
    assert code == 1 and out.startswith("ATR 3B")
    assert err == ("sscard: error: link error on the simulated contacts (sending 00 12 00 00 08): timeout: no byte "
                   "from the card within WWT (9600 etu)\n")


def test_replay_of_a_trace_without_reset_says_so_and_passes(tmp_path, capsys):
    script, trace = tmp_path / "script.txt", str(tmp_path / "t.apdu")
    script.write_text(f"# what a scriptor user has\n{SELECT_SSSE}\n00B2072C0B\n", encoding="utf-8")
    assert cli(capsys, "scriptor", "import", str(script), "-o", trace)[0] == 0
    code, out, err = cli(capsys, "replay", trace)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"note: {trace}: no reset before the first command (line 2): the replay starts with a cold reset",
        f"PASS {trace} (2 APDUs, " + out.splitlines()[1].split("(2 APDUs, ")[1], "1 passed, 0 failed"]


@pytest.mark.parametrize("argv, message", [
    (["apdu", "00A4040000"], "give either --state CARD.img (the simulator) or --reader NAME (PC/SC)"),
    (["apdu", "--state", "{img}", "00A4ZZ"], "not hexadecimal: '00A4ZZ'"),
    (["wire-log", "--state", "{img}", "--pps", "00", SELECT_SSSE], "PPS1 00: Fi or Di index is RFU"),
    (["serve", "--state", "{img}", "--port", "70000", "--no-stdin"], "--port 70000: not a TCP port (1-65535)"),
    (["flow", "tea-ceremony", "--state", "{img}"], "unknown flow 'tea-ceremony'; flows: bank-activation, "),
    (["flow", "bank-activation", "--state", "{img}", "--param", "bank_pin=12"],
     "bank_pin must be 4 to 12 digits, not '12'"),
    (["ssse", "verify", "12", "--state", "{img}"], "ssse verify: argument pin: a PIN is 4 to 12 digits, not '12'"),
])
def test_a_users_mistake_is_one_line_and_exit_status_2(tmp_path, capsys, argv, message):
    """What the user got wrong (an option, a hex APDU, a TA1, a port, a flow parameter) is one line,
    in the words of the check that refused it, and exit status 2: never a traceback."""
    img = str(tmp_path / "card.img")
    cli(capsys, "personalize", "--state", img)
    code, _, err = cli(capsys, *[a.format(img=img) for a in argv])
    assert code == 2
    assert err.startswith(f"sscard: error: {message}") and err.count("\n") == 1


@pytest.mark.parametrize("bug", [KeyError("holder"), TypeError("unsupported operand"), AttributeError("no field"),
                                 ValueError("invalid literal for int()")])
def test_an_internal_bug_in_a_command_propagates(tmp_path, capsys, monkeypatch, bug):
    """A bug inside a command is not a user's mistake: main() lets it out as itself (a ValueError too,
    when no input of the user caused it), and says nothing as an sscard error."""
    import reader.cli.card as card_commands

    img = str(tmp_path / "card.img")
    cli(capsys, "personalize", "--state", img)

    def broken(args):
        raise bug

    monkeypatch.setattr(card_commands, "cmd_info", broken)
    with pytest.raises(type(bug)) as raised:
        cli(capsys, "info", "--state", img)
    assert raised.value is bug
    assert capsys.readouterr().err == ""


def test_sscard_shows_the_traceback_of_an_internal_bug(tmp_path):
    """`sscard` with a bug inside a command: Python's traceback and its exit status 1, not one line and 2."""
    from helpers import python_env

    program = ("import sys\n"
               "import reader.cli.card as card_commands\n"
               "def broken(args):\n"
               "    raise KeyError('holder')\n"
               "card_commands.cmd_info = broken\n"
               "from reader.cli import main\n"
               "sys.exit(main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", program, "info", "--state", str(tmp_path / "card.img")],
                            capture_output=True, text=True, env=python_env(), timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert result.stderr.rstrip().endswith("KeyError: 'holder'") and "sscard: error" not in result.stderr
