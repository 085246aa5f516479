"""`sscard fin ...` and the `[fin]` section of `sscard info` on a card image (the financial model of
docs/decisions.md §6).

Each operation runs a transaction through the terminal kernel and a fresh
issuer host, printing every exchange (`> ` command, `< ` data, `< SW  meaning`),
then one `script XXXX NAME: SW meaning` line per issuer script command (or
`not sent`). A purchase ends with `outcome: ...` (what the PIN got, approved or
declined, CID, ATC, CVR, why) and exits 0 when approved; a script operation
prints the transaction that carried the scripts, then what the card did
(`activated: bank PIN set, DF7F 01`), and exits 0 when every script command
answered 9000. Amounts are whole fen everywhere on the command line; every
input is checked before the first APDU.
"""

import helpers
import pytest
from helpers import CARD_DATE, SELECT_FIN, SELECT_SSSE

from chip import Card
from chip.apps.financial import pin_block
from chip.iso.sw import meaning
from chip.personalization.profile import SHIPPED
from reader.cli import main

DATE = CARD_DATE.isoformat()
AID = bytes.fromhex(helpers.AID).hex(" ").upper()  # as the CLI prints it
SELECT_FIN_HEX = SELECT_FIN + "00"


def run(capsys, *argv):
    """main(argv) -> (exit status, stdout, stderr); argparse's SystemExit counts as the status."""
    try:
        code = main(["--date", DATE, *[str(a) for a in argv]])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def img(tmp_path, capsys):
    path = str(tmp_path / "card.img")
    assert run(capsys, "personalize", "--state", path)[0] == 0
    return path


def fin(capsys, img, *argv):
    return run(capsys, "fin", *argv, "--state", img)


def tail(out: str, n: int) -> list[str]:
    return out.splitlines()[-n:]


def scripted(capsys, img, argv: list, last_lines: list[str], info_line: str) -> str:
    """`sscard fin ARGV` for a script operation: exit 0, nothing on stderr, output ending with
    `last_lines`, and `info_line` in the `[fin]` section of `sscard info` afterwards; its output."""
    code, out, err = fin(capsys, img, *argv)
    assert code == 0 and err == ""
    assert tail(out, len(last_lines)) == last_lines
    assert info_line in info_fin(capsys, img)
    return out


def sw_after(out: str, command_prefix: str) -> str:
    """The `< SW  meaning` line answering the first printed command starting with `command_prefix`."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("> " + command_prefix):
            for answer in lines[i + 1:]:
                if answer.startswith("< ") and len(answer) > 6 and answer[6:8] == "  ":
                    return answer
    raise AssertionError(f"no command {command_prefix!r} in the output")


def response_after(out: str, command_prefix: str, occurrence: int = 0) -> str:
    """The data line answering the `occurrence`-th printed command starting with `command_prefix`."""
    lines = out.splitlines()
    hits = [i for i, line in enumerate(lines) if line.startswith("> " + command_prefix)]
    return lines[hits[occurrence] + 1]


def info_fin(capsys, img) -> str:
    code, out, _ = run(capsys, "info", "--state", img)
    assert code == 0
    return out[out.index("\n[fin]\n") + 1:]


ALGS = pytest.mark.parametrize("sm4", [False, True], ids=["3des", "sm4"])


def sm4_flag(sm4: bool) -> list[str]:
    return ["--sm4"] if sm4 else []


# -- purchase ----------------------------------------------------------------------------------

@ALGS
def test_purchase_on_a_new_card_is_declined(img, capsys, sm4):
    code, out, err = fin(capsys, img, "purchase", "1234", *sm4_flag(sm4))
    assert code == 1 and err == ""
    df69 = "01" if sm4 else "00"
    assert f"> 80 A8 00 00 0B 83 09 00 00 00 00 12 34 01 56 {df69} 00\n< 77 0A 82 02 1C 00 94 04 08 01 03 00\n" \
           "< 9000  OK" in out
    assert ("> 80 AE 80 00 1D 00 00 00 00 12 34 00 00 00 00 00 00 01 56 00 00 00 00 00 01 56 26 11 21 00 "
            "11 22 33 44 00") in out
    cvn, alg = ("4A", "04") if sm4 else ("0A", "01")
    ac = response_after(out, "80 AE")
    assert ac.startswith("< 77 1F 9F 27 01 00 9F 36 02 00 01 9F 26 08 ")
    assert ac.endswith(f"9F 10 08 07 01 {cvn} 03 80 10 04 {alg}")
    assert "> 00 82" not in out and "script" not in out
    assert tail(out, 1) == ["outcome: declined (AAC, ATC 1, CVR 03801004): the financial application is not activated"]
    assert Card.open(img).store["fin.state"].atc == 1


@pytest.mark.parametrize("amount, bcd", [("1230", "00 00 00 00 12 30"), ("1", "00 00 00 00 00 01"),
                                         ("0", "00 00 00 00 00 00"), ("001200", "00 00 00 00 12 00"),
                                         ("999999999999", "99 99 99 99 99 99")])
def test_purchase_amount_is_in_fen(img, capsys, amount, bcd):
    code, out, _ = fin(capsys, img, "purchase", amount)
    assert code == 1
    assert f"> 80 A8 00 00 0B 83 09 {bcd} 01 56 00 00" in out
    assert f"> 80 AE 80 00 1D {bcd} 00 00 00 00 00 00 01 56" in out


@pytest.mark.parametrize("amount, words", [
    ("12.34", "amounts are in fen (whole numbers): 12.34 yuan is 1234 fen"),  # yuan: the hint
    ("0.5", "0.5 yuan is 50 fen"),
    ("12.", "not an amount in fen"),
    ("12.345", "not an amount in fen"),
    ("abc", "not an amount in fen"),
    ("-1", "cannot be negative"),
    ("-0.01", "cannot be negative"),
    ("1e20", "not an amount in fen"),
    ("sNaN", "not an amount in fen"),  # was a decimal.InvalidOperation traceback
    ("NaN", "not an amount in fen"),
    ("inf", "not an amount in fen"),
    ("1_000", "not an amount in fen"),
    ("+5", "not an amount in fen"),
    (" 5", "not an amount in fen"),
    ("１２", "not an amount in fen"),  # full-width digits
    ("", "not an amount in fen"),
    ("1000000000000", "0 to 999999999999"),
])
def test_bad_amount_is_one_line_before_any_apdu(img, capsys, amount, words):
    before = open(img, "rb").read()
    code, out, err = fin(capsys, img, "purchase", amount)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("sscard: error: "), err
    assert words in err
    if "0 to" not in words:
        assert err.rstrip("\n").endswith(f"{amount!r}")
    assert open(img, "rb").read() == before  # the card was never touched


def test_minus_inf_is_an_option_to_argparse_and_still_one_line(img, capsys):
    code, out, err = fin(capsys, img, "purchase", "-inf")
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("sscard: error: ")
    code, out, err = run(capsys, "fin", "purchase", "--state", img, "--", "-inf")
    assert code == 2 and out == "" and "not an amount in fen" in err and err.count("\n") == 1


def test_every_amount_help_says_fen(capsys):
    for argv in (["fin", "purchase"], ["ssse", "register"], ["ssse", "pharmacy"]):
        code, out, _ = run(capsys, *argv, "--help")
        assert code == 0
        assert "fen, a whole number (1234 = 12.34 yuan)" in " ".join(out.split()), argv
    assert "yuan" not in " ".join(run(capsys, "fin", "--help")[1].split()).replace("12.34 yuan", "")


@pytest.mark.parametrize("argv", [["ssse", "register", "--amount", "12.34"], ["ssse", "pharmacy", "--amount", "0.5"]])
def test_ssse_amounts_take_the_same_unit(img, capsys, argv):
    code, out, err = run(capsys, *argv, "--state", img)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "amounts are in fen (whole numbers)" in err and "yuan is" in err


# -- activation, then purchases -------------------------------------------------------------------------

@ALGS
def test_activate_prints_the_scripts_and_exits_0(img, capsys, sm4):
    code, out, err = fin(capsys, img, "activate", "--pin", "246810", *sm4_flag(sm4))
    assert code == 0 and err == ""
    assert sw_after(out, "84 24 00 02 14 ") == "< 9000  OK"
    assert sw_after(out, "04 DA DF 7F 05 01 ") == "< 9000  OK"
    assert tail(out, 4) == [
        "script 8424 PIN CHANGE: 9000 OK", "script 04DA PUT DATA DF7F: 9000 OK",
        "transaction carrying the scripts: declined (AAC, ATC 1, CVR 03801004): the financial application is "
        "not activated (expected before activation: the issuer's scripts ran after the AAC)",
        "activated: bank PIN set, DF7F 01"]
    assert "outcome: declined" not in out
    card = Card.open(img)
    assert card.financial_activated()
    assert card.store["fin.pin"].value == pin_block("246810")


def test_activate_default_pin_is_123456(img, capsys):
    assert fin(capsys, img, "activate")[0] == 0
    assert Card.open(img).store["fin.pin"].value == pin_block("123456")


@ALGS
def test_purchase_after_activation_is_approved_online(img, capsys, sm4):
    assert fin(capsys, img, "activate", "--pin", "246810")[0] == 0
    code, out, err = fin(capsys, img, "purchase", "1234", "--pin", "246810", *sm4_flag(sm4))
    assert code == 0 and err == ""
    assert "> 00 20 00 80 08 26 24 68 10 FF FF FF FF\n< 9000  OK" in out
    first = response_after(out, "80 AE 80 00 1D ")
    second = response_after(out, "80 AE 40 00 1F 30 30 00 00 00 00 12 34 ")
    assert first.startswith("< 77 1F 9F 27 01 80 9F 36 02 00 02 ")
    assert second.startswith("< 77 1F 9F 27 01 40 9F 36 02 00 02 ")
    assert sw_after(out, "00 82 00 00 0A ") == "< 9000  OK"
    cvn, alg = ("4A", "04") if sm4 else ("0A", "01")
    assert first.endswith(f"9F 10 08 07 01 {cvn} 03 A4 10 00 {alg}")
    assert second.endswith(f"9F 10 08 07 01 {cvn} 03 64 10 00 {alg}")
    assert "script" not in out
    assert tail(out, 1) == ["outcome: PIN verified, purchase approved (TC, ATC 2, CVR 03641000)"]


def test_sm4_changes_only_the_cryptogram_version_and_values(tmp_path, capsys):
    outs = {}
    for name, flags in (("3des", []), ("sm4", ["--sm4"])):
        path = str(tmp_path / f"{name}.img")
        assert run(capsys, "personalize", "--state", path)[0] == 0
        assert fin(capsys, path, "activate")[0] == 0
        code, out, _ = fin(capsys, path, "purchase", "1", *flags)
        assert code == 0
        outs[name] = out
    a, b = outs["3des"], outs["sm4"]
    assert response_after(a, "80 AE", 0).split(" 9F 10 ")[1] == "08 07 01 0A 03 A0 10 00 01"
    assert response_after(b, "80 AE", 0).split(" 9F 10 ")[1] == "08 07 01 4A 03 A0 10 00 04"
    # same ATC and CVR, different cryptograms and ARPC
    assert response_after(a, "80 AE", 0)[:35] == response_after(b, "80 AE", 0)[:35]
    assert response_after(a, "80 AE", 0) != response_after(b, "80 AE", 0)
    arpc_a = [line for line in a.splitlines() if line.startswith("> 00 82")]
    arpc_b = [line for line in b.splitlines() if line.startswith("> 00 82")]
    assert len(arpc_a) == len(arpc_b) == 1 and arpc_a != arpc_b
    assert tail(a, 1) == tail(b, 1) == ["outcome: approved (TC, ATC 2, CVR 03601000)"]


def test_wrong_offline_pin_is_printed_and_counted(img, capsys):
    assert fin(capsys, img, "activate", "--pin", "246810")[0] == 0
    code, out, _ = fin(capsys, img, "purchase", "1", "--pin", "111111")
    assert "> 00 20 00 80 08 26 11 11 11 FF FF FF FF\n< 63C2  verification failed, 2 tries left" in out
    # the kernel went on (the CVM list falls through to "no CVM required"): said, not hidden
    assert code == 0
    assert tail(out, 1) == [
        "outcome: PIN refused (63C2), purchase approved offline-PIN-failed (TC, ATC 2, CVR 03661000)"]
    assert "  PIN tries left       2 of 3\n" in info_fin(capsys, img)


def test_blocked_offline_pin_is_named_in_the_outcome(img, capsys):
    assert fin(capsys, img, "activate", "--pin", "246810")[0] == 0
    for left in (2, 1, 0):
        _code, out, _ = fin(capsys, img, "purchase", "1", "--pin", "111111")
        assert tail(out, 1)[0].startswith(f"outcome: PIN refused (63C{left}), purchase approved offline-PIN-failed (TC")
    _code, out, _ = fin(capsys, img, "purchase", "1", "--pin", "111111")
    assert "< 6983  authentication method blocked" in out
    assert tail(out, 1)[0].startswith("outcome: PIN blocked (6983), purchase approved offline-PIN-failed (TC")


@pytest.mark.parametrize("pin", ["abcdef", "123", "1234567890123", "12 34", "١٢٣٤"])
@pytest.mark.parametrize("operation", [["purchase", "1"], ["activate"]])
def test_bad_pin_is_one_line_before_any_apdu(img, capsys, operation, pin):
    before = open(img, "rb").read()
    code, out, err = fin(capsys, img, *operation, "--pin", pin)
    assert code == 2 and out == ""  # no exchange printed: nothing was sent
    assert err.count("\n") == 1 and "a PIN is 4 to 12 digits" in err and repr(pin) in err
    assert open(img, "rb").read() == before


# -- script operations -------------------------------------------------------------------------------------

@ALGS
def test_block_then_unblock(img, capsys, sm4):
    assert fin(capsys, img, "activate", *sm4_flag(sm4))[0] == 0
    out = scripted(capsys, img, ["block", *sm4_flag(sm4)], [
        "script 841E APPLICATION BLOCK: 9000 OK",
        "transaction carrying the scripts: declined (AAC, ATC 2, CVR 03201000): the card declined at the second "
        "GENERATE AC",
        "blocked: APPLICATION BLOCK done (SELECT answers 6283, GENERATE AC only an AAC)"], "  lock                 blocked\n")
    assert sw_after(out, "84 1E 00 00 04 ") == "< 9000  OK"

    code, out, _ = fin(capsys, img, "purchase", "1", *sm4_flag(sm4))
    assert code == 1
    assert f"> 00 A4 04 00 08 {AID} 00\n< 6F 45 " in out
    assert sw_after(out, f"00 A4 04 00 08 {AID}") == "< 6283  selected application invalidated (locked)"
    assert tail(out, 1) == ["outcome: declined (AAC, ATC 3, CVR 03800002): the financial application is blocked"]

    scripted(capsys, img, ["unblock", *sm4_flag(sm4)], [
        "script 8418 APPLICATION UNBLOCK: 9000 OK",
        "transaction carrying the scripts: declined (AAC, ATC 4, CVR 03800002): the financial application is "
        "blocked (the issuer's scripts ran after the AAC)",
        "unblocked: APPLICATION UNBLOCK done"], "  lock                 none\n")

    code, out, _ = fin(capsys, img, "purchase", "1", *sm4_flag(sm4))
    assert code == 0
    assert tail(out, 1) == ["outcome: approved (TC, ATC 5, CVR 03600000)"]


def test_unblock_pin(img, capsys):
    assert fin(capsys, img, "activate", "--pin", "246810")[0] == 0
    wrong, right = "002000800826111111FFFFFFFF", "002000800826246810FFFFFFFF"
    code, out, _ = run(capsys, "apdu", "--state", img, SELECT_FIN_HEX, wrong, wrong, wrong, right)
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("< ") and line[6:8] == "  "] == [
        "< 9000  OK", "< 63C2  verification failed, 2 tries left", "< 63C1  verification failed, 1 try left",
        "< 63C0  verification failed, 0 tries left", "< 6983  authentication method blocked"]
    assert "  PIN tries left       0 of 3 (blocked)\n" in info_fin(capsys, img)
    code, out, err = fin(capsys, img, "unblock-pin")
    assert code == 0 and err == ""
    assert sw_after(out, "84 24 00 00 04 ") == "< 9000  OK"
    assert tail(out, 3)[0] == "script 8424 PIN UNBLOCK: 9000 OK"
    assert tail(out, 1) == ["PIN unblocked: PIN UNBLOCK done (the try counter is full again; the PIN is unchanged)"]
    assert "  PIN tries left       3 of 3\n" in info_fin(capsys, img)
    code, out, _ = fin(capsys, img, "purchase", "1", "--pin", "246810")
    assert code == 0 and "< 9000  OK" in out.split("> 00 20 00 80 08 ")[1].splitlines()[1]


def test_card_block_on_a_new_card_is_final(img, capsys):
    code, out, err = fin(capsys, img, "card-block")
    assert code == 0 and err == ""
    assert tail(out, 3) == [
        "script 8416 CARD BLOCK: 9000 OK",
        "transaction carrying the scripts: declined (AAC, ATC 1, CVR 03801004): the financial application is not "
        "activated (the issuer's scripts ran after the AAC)",
        "card blocked: CARD BLOCK done (final: every SELECT answers 6A81)"]
    section = info_fin(capsys, img)
    assert "  card                 blocked\n" in section
    code, out, err = fin(capsys, img, "purchase", "1")
    assert code == 2
    assert "< 6A81  function not supported / card blocked" in out
    assert err == "sscard: error: SELECT PSE answered 6A81\n"
    code, out, _ = run(capsys, "apdu", "--state", img, SELECT_FIN_HEX, SELECT_SSSE)
    assert out.count("< 6A81  function not supported / card blocked") == 2


def test_card_block_on_an_activated_card(img, capsys):
    assert fin(capsys, img, "activate")[0] == 0
    code, out, _err = fin(capsys, img, "card-block")
    assert "script 8416 CARD BLOCK: 9000 OK" in out
    assert code == 0
    assert Card.open(img).store["card"].state == "blocked"


def other_keys(tmp_path, key: str, value: str) -> str:
    """A profile like the default one, with the issuer master key `key` replaced by `value`."""
    text = (SHIPPED / "default.toml").read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
    other = tmp_path / f"other-{key}.toml"
    other.write_text(text.replace(line, f'{key} = "{value}"'), encoding="utf-8")
    return str(other)


def test_a_refused_pin_script_stops_the_activation_script(img, capsys, tmp_path):
    """The host's script MAC key differs: the card refuses PIN CHANGE (6988) and the kernel never sends
    PUT DATA DF7F 01 after it, so the card is not activated with its old PIN."""
    keys = other_keys(tmp_path, "fin_imk_smi", "00112233445566778899AABBCCDDEEFF")
    code, out, err = fin(capsys, img, "activate", "--pin", "246810", "--keys", keys)
    assert code == 1
    assert "> 84 24 00 02 14 " in out and "> 04 DA" not in out
    assert tail(out, 4) == [
        f"script 8424 PIN CHANGE: 6988 {meaning(0x6988)}",
        "script 04DA PUT DATA DF7F: not sent (an earlier command of its script failed)",
        "transaction carrying the scripts: declined (AAC, ATC 1, CVR 03801004): the financial application is "
        "not activated (expected before activation: the issuer's scripts ran after the AAC)",
        "not activated: the card ran PIN CHANGE (6988); not sent: PUT DATA DF7F"]
    assert err == f"refused: 6988 {meaning(0x6988)}\n"
    card = Card.open(img)
    assert not card.financial_activated()
    assert card.store["fin.pin"].value == pin_block("000000")


def test_host_with_other_keys_delivers_no_script(img, capsys, tmp_path):
    keys = other_keys(tmp_path, "fin_imk_ac", "00112233445566778899AABBCCDDEEFF")
    code, out, err = fin(capsys, img, "activate", "--keys", keys)
    assert code == 1
    assert "script " not in out
    assert tail(out, 2) == [
        "transaction carrying the scripts: declined (AAC, ATC 1, CVR 03801004): the financial application is "
        "not activated",
        "not activated: the issuer host sent no scripts (it did not verify the card's cryptogram)"]
    assert err == "refused: no issuer script reached the card\n"
    assert not Card.open(img).financial_activated()


# -- sscard info ---------------------------------------------------------------------------------------------

def test_info_fin_section_of_a_new_card(img, capsys):
    assert info_fin(capsys, img) == (
        "[fin]\n"
        "  activation           not activated\n"
        "  lock                 none\n"
        "  card                 ok\n"
        "  ATC                  0 (limit 65535, last online 0)\n"
        "  PIN tries left       3 of 3\n"
        "  offline limits       lower 0, upper 0\n")


def test_info_fin_section_follows_the_card(img, capsys):
    assert fin(capsys, img, "activate", "--pin", "246810", "--sm4")[0] == 0
    assert fin(capsys, img, "purchase", "5", "--sm4")[0] == 0
    section = info_fin(capsys, img)
    assert "  activation           activated\n" in section
    assert "  lock                 none\n" in section
    assert "  ATC                  2 (limit 65535, last online 2)\n" in section
    assert "  PIN tries left       3 of 3\n" in section
    _code, out, _ = run(capsys, "info", "--state", img)
    assert "activation deadline  2027-09-17 (met: financial application activated)" in out
