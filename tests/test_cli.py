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
    code, out, err = run(capsys, "apdu", "--state", img, SELECT_SSSE, "00 20 00 00 03 11 11 11", "00B2012C00",
                         "00B2012C12")
    assert code == 0
    assert out.splitlines()[0] == "ATR 3B 6D 00 00 00 81 53 53 43 86 99 11 01 00 00 00 01"  # P2 table 16
    assert "> 00 20 00 00 03 11 11 11\n< 63C5  verification failed, 5 tries left" in out
    # Le 00: the card answers the record's length (P5 §6.10.4, SPEC S12); sscard apdu shows it as it is
    assert "> 00 B2 01 2C 00\n< 6C12  wrong Le: 18 bytes available" in out
    assert "> 00 B2 01 2C 12\n< 01 10 11 01 00 D1 56 00 00 05 00 00 00 01 00 00 00 00\n< 9000  OK" in out
    # the wrong PIN was counted in the image
    assert Card.open(img).store["ssse.pin"].tries == 5


def test_apdu_t0_answers_61xx(tmp_path, capsys):
    """The default card is T=0 (P2): `--t0` shows the transport's 61xx and GET RESPONSE (P2 §9.3);
    without it the reader fetches the data, as a terminal's transport layer does."""
    img = str(tmp_path / "card.img")
    run(capsys, "personalize", "--state", img)
    code, out, _ = run(capsys, "apdu", "--t0", "--no-decode", "--state", img, SELECT_SSSE, "00C000001E",
                       "00C000001E")
    assert code == 0
    assert "< 611E  30 more bytes available (GET RESPONSE)" in out
    assert "> 00 C0 00 00 1E\n< 6F 1C 84 0F" in out
    assert out.rstrip().endswith("< 6F00  data invalid / nothing to fetch")  # nothing waiting: 6F00 (SPEC §2)
    code, out, _ = run(capsys, "apdu", "--no-decode", "--state", img, SELECT_SSSE)
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
    run(capsys, "--date", "2026-11-21", "personalize", "--state", img)
    code, out, _ = run(capsys, "apdu", "--state", img, SELECT_SSSE, "00B2072C0B", "0020000003123456", "00B2093020")
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
    assert "INTERNAL AUTHENTICATE with IRK (key 00)" in out
    assert "INITIALIZE FOR PURCHASE" in out and "DEBIT FOR PURCHASE" in out
    assert "personal account balance: 0000C350 = 50000 fen = 500.00" in out
    assert "SW 9000 OK" in out


def test_atr_command_explains_every_byte(tmp_path, capsys):
    img = str(tmp_path / "card.img")
    run(capsys, "personalize", "--state", img)
    code, out, _ = run(capsys, "atr", "--state", img)
    assert code == 0
    # LD/T 32 P2's basic ATR (Table 7: T=0 only, TB1 00, TC1 00, no TA1, no TCK) with the 13
    # historical bytes of Table 16, each field named
    assert out.splitlines() == [
        "ATR 3B 6D 00 00 00 81 53 53 43 86 99 11 01 00 00 00 01",
        "TS      3B  direct convention",
        "T0      6D  Y1=6: TB1 TC1 follow; K=13 historical bytes",
        "TB1     00  no VPP (P2 §8.3.3.3)",
        "TC1     00  extra guard time N=0: 12 etu per character to the card (the card's: 12)",
        "T1-T2   00 81  chip supplier registration number (P2 Table 16)",
        "T3-T5   53 53 43  chip / COS supplier's data (COS) 'SSC'",
        "T6-T7   86 99  card manufacturer registration number",
        "T8-T9   11 01  card serial part 1: region code 1101.. (first 4 digits, BCD)",
        "TA-TD   00 00 00 01  card serial part 2 (unique per card in the issuing area)",
        "protocols T=0: negotiable mode; no TA1: T=0 at Fi/Di 372/1 for the whole session, no PPS needed",
        "characters: 12 etu to the card (N=0), 12 etu from the card",
        "T=0: WI 10, WWT 9600 etu at Di 1",
    ]
    # the t1 profile's ATR given in hex: TA1 and the T=1 bytes, the same historical bytes, TCK
    code, out, _ = run(capsys, "atr", "3B 9D 13 80 31 FE 45 00 81 53 53 43 86 99 11 01 00 00 00 01 48")
    assert code == 0
    assert "TA1     13  Fi=372 Di=4 f_max=5 MHz: 1 etu = 93 clock cycles" in out
    assert "T6-T7   86 99  card manufacturer registration number" in out
    assert "TCK     48  check byte ok (XOR of T0..TCK is 00)" in out
    code, out, err = run(capsys, "atr", "3B9D138031FE45008153534386991101000000014A")
    assert code == 2 and err.startswith("sscard: error: bad ATR: ") and err.count("\n") == 1
    assert "TCK 4A wrong" in err and "TCK should be 48" in err
    code, out, err = run(capsys, "atr", "3B6D0000008153534386991101000000")  # one historical byte short
    assert code == 2 and err.count("\n") == 1 and "K=13, only 12 present" in err
