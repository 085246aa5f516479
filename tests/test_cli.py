"""The `sscard` command line: each subcommand, and one-line errors with a non-zero exit."""

import subprocess
import sys

import pytest

from chip import Card
from chip.profile import SHIPPED
from reader.cli import main

SELECT_SSSE = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_personalize_then_info(tmp_path, capsys):
    img = str(tmp_path / "card.img")
    code, out, err = run(capsys, "--date", "2026-11-21", "personalize", "--state", img)
    assert code == 0 and err == ""
    assert "card T00000001, holder 李华" in out
    code, out, err = run(capsys, "info", "--state", img)
    assert code == 0
    assert "PIN tries left       6 of 6" in out
    assert "issue date                   2026-11-21" in out
    assert "expiry date                  2036-11-21" in out
    assert "name                         李华" in out
    assert "lifecycle            issued" in out


def test_personalize_refuses_to_overwrite(tmp_path, capsys):
    img = str(tmp_path / "card.img")
    assert run(capsys, "personalize", "--state", img)[0] == 0
    Card.open(img)  # stays a valid image
    code, out, err = run(capsys, "personalize", "--state", img)
    assert code == 2 and err.count("\n") == 1
    assert "already exists; add --force" in err
    assert run(capsys, "personalize", "--force", "--state", img)[0] == 0


def test_apdu_prints_command_data_sw_and_meaning(tmp_path, capsys):
    img = str(tmp_path / "card.img")
    run(capsys, "personalize", "--state", img)
    code, out, err = run(capsys, "apdu", "--state", img, SELECT_SSSE, "00 20 00 00 03 11 11 11", "00B2012C00")
    assert code == 0
    assert "> 00 20 00 00 03 11 11 11\n< 63C5  verification failed, 5 tries left" in out
    assert "< 01 10 11 01 00 00 00 00 00 01 D1 56 00 00 05 FF FF FF\n< 9000  OK" in out
    # the wrong PIN was counted in the image
    assert Card.open(img).store["ssse.pin"].tries == 5


def test_apdu_t0_answers_61xx(tmp_path, capsys):
    img = str(tmp_path / "card.img")
    run(capsys, "personalize", "--state", img)
    code, out, _ = run(capsys, "apdu", "--t0", "--state", img, SELECT_SSSE, "00C000001B")
    assert code == 0
    assert "< 611B  27 more bytes available (GET RESPONSE)" in out
    assert "< 6F 19 84 0F" in out


@pytest.mark.parametrize("argv, message", [
    (["apdu", "--state", "{img}", "zz"], "not hexadecimal: 'zz'"),
    (["apdu", "--state", "{missing}", "00A4000000"], "no such card image"),
    (["info", "--state", "{garbage}"], "not an sscard card image"),
    (["personalize", "nosuchprofile", "--state", "{new}"], "no shipped profile 'nosuchprofile'"),
    (["personalize", "{badprofile}", "--state", "{new}"], "holder.id_number"),
])
def test_errors_are_one_line(tmp_path, capsys, argv, message):
    img = str(tmp_path / "card.img")
    run(capsys, "personalize", "--state", img)
    (tmp_path / "garbage.img").write_bytes(b"hello")
    bad = tmp_path / "bad.toml"
    text = (SHIPPED / "default.toml").read_text(encoding="utf-8")
    bad.write_text(text.replace("110101199003071233", "110101199003071234"), encoding="utf-8")
    names = {"img": img, "missing": str(tmp_path / "none.img"), "garbage": str(tmp_path / "garbage.img"),
             "new": str(tmp_path / "new.img"), "badprofile": str(bad)}
    code, out, err = run(capsys, *[a.format(**names) for a in argv])
    assert code == 2
    assert err.startswith("sscard: error: ") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "new.img").exists()


def test_demo_runs_the_scripted_session(capsys):
    code, out, _ = run(capsys, "--date", "2026-11-21", "demo")
    assert code == 0
    # wrong PIN, right PIN, change PIN, old PIN refused, new PIN accepted - in that order
    expected = ["63C5  verification failed, 5 tries left", "9000  OK", "6982  security status not satisfied"]
    for text in expected:
        assert text in out
    assert out.index("VERIFY with a wrong PIN") < out.index("VERIFY with the initial PIN") < out.index("CHANGE PIN")
    tail = out[out.index("CHANGE PIN"):]
    assert tail.count("< 9000  OK") == 2 and "63C5" in tail
    assert "< 09 1E C0 EE BB AA 00" in out  # the holder name in GBK


def test_console_script_entry_point():
    # the installed `sscard` command is reader.cli:main
    result = subprocess.run([sys.executable, "-m", "reader.cli", "--date", "2026-11-21", "demo"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "VERIFY with the new PIN" in result.stdout


def test_apdu_output_is_decoded(tmp_path, capsys):
    img = str(tmp_path / "card.img")
    run(capsys, "--date", "2026-11-21", "personalize", "--state", img)
    code, out, _ = run(capsys, "apdu", "--state", img, SELECT_SSSE, "00B2072C00", "0020000003123456", "00B2093000")
    assert code == 0
    assert "    SELECT by DF name sx1.sh.社会保障 (SSSE)" in out
    assert "    READ RECORD 07 of EF05 (SFI 5) — card number" in out
    assert '07 card number: 543030303030303031 = "T00000001"' in out
    assert "PIN: 6 digits" in out and "12 34 56" in out.split("PIN:")[0]  # the PIN itself is only in the raw line
    code, plain, _ = run(capsys, "apdu", "--no-decode", "--state", img, "00B2072C00")
    assert "READ RECORD" not in plain


def test_decode_command_explains_a_trace(tmp_path, capsys):
    code, out, _ = run(capsys, "decode", str(SHIPPED.parent.parent / "apdu_traces" / "pharmacy-activation.apdu"))
    assert code == 0
    assert "SELECT by DF name sx1.sh.社会保障 (SSSE)" in out
    assert "APPEND RECORD pharmacy purchase to EF16 (SFI 16h)" in out
    assert "SW 9000 OK" in out


def test_atr_command_explains_every_byte(tmp_path, capsys):
    img = str(tmp_path / "card.img")
    run(capsys, "personalize", "--state", img)
    code, out, _ = run(capsys, "atr", "--state", img)
    assert code == 0
    assert out.splitlines()[0] == "ATR 3B 9C 13 80 31 FE 45 80 5A 53 53 43 41 52 44 2D 53 49 4D 31"
    assert "TA1     13  Fi=372 Di=4 f_max=5 MHz: 1 etu = 93 clock cycles" in out
    assert "TCK     31  check byte ok (XOR of T0..TCK is 00)" in out
    code, out, err = run(capsys, "atr", "3B9C138031FE45805A5353434152442D53494D30")
    assert code == 2 and err.startswith("sscard: error: bad ATR: ") and err.count("\n") == 1
    assert "TCK" in err
