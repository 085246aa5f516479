"""`sscard ssse ...` and `sscard card-block` on a card image (LD/T 32 P5, P7; docs/decisions.md §1,
docs/card/lifecycle.md).

Each operation starts with card recognition (P7 §5: SELECT the SSSE, SELECT
EF05, READ RECORD item 01, SELECT again), prints every APDU exchange with the
card (`> ` command, `< ` data, `< SW  meaning`) and exits 0 on 9000; a refused
operation prints `refused: SW meaning` on stderr and exits 1; a mistake in the
arguments is one line on stderr and exit status 2. `sscard info` shows the
state. Every cryptogram is recomputed here by the independent oracle
(tests/oracle.py through tests/ssse_helpers.py), never by the PSAM the CLI uses.
"""

import datetime
import re

import helpers
import oracle
import pytest
from helpers import CARD_DATE, EF05, PROFILE_FAMILY, PROFILES, VERIFY_OK, activate_financial, cli, spaced
from ssse_helpers import TERMINAL_NO, Terminal, cn

from chip import Card
from chip.iso.sw import meaning
from chip.personalization.profile import SHIPPED

DAY_300, DAY_301 = (str(CARD_DATE + datetime.timedelta(days=n)) for n in (300, 301))
PIN_RESET_LC = {"default": 0x14, "default-3des": 0x0C}  # 16 or 8 enciphered bytes + MAC4 (docs/decisions.md S2)


# as the CLI prints them
SELECT = spaced(helpers.SELECT_SSSE + "00")
FCI = {profile: spaced(helpers.FCI[family]) for profile, family in PROFILE_FAMILY.items()}
SELECT_EF05 = spaced(helpers.SELECT_EF05)
READ_ID = spaced("00B2010012")  # EF05 item 01 by identifier (P7 §5 step 1.4b)
ID_RECORD = spaced(EF05[0x01])  # V2 table 10: region, RID, serial, auth code
VERIFY = spaced(VERIFY_OK)
GET_CHALLENGE_8 = spaced("0084000008")
GET_CHALLENGE_4 = spaced("0084000004")
SELECT_DF04 = spaced(helpers.SELECT_DF04 + "00")
DF04_FCI = spaced("6F088406D15600000503")

SW_LINE = re.compile(r"^< ([0-9A-F]{4})  (.+)$")


def prelude(profile: str) -> list[tuple[str, str, str]]:
    """Card recognition of an open SSSE (P7 §5)."""
    return [(SELECT, FCI[profile], "9000"), (SELECT_EF05, "", "9000"), (READ_ID, ID_RECORD, "9000"),
            (SELECT, FCI[profile], "9000")]


def exchanges(out: str) -> list[tuple[str, str, str]]:
    """The printed exchanges as (command, response data, SW), all spaced upper-case hex."""
    result = []
    for line in out.splitlines():
        if line.startswith("> "):
            result.append([line[2:], "", None])
        elif line.startswith("< "):
            current = result[-1]
            assert current[2] is None, line
            match = SW_LINE.match(line)
            if match:
                current[2] = match.group(1)
            else:
                assert current[1] == "", line
                current[1] = line[2:]
        elif not line.startswith("purchase: "):
            raise AssertionError(f"unexpected output line {line!r}")
    assert all(sw is not None for _, _, sw in result)
    return [tuple(x) for x in result]


def commands(out: str) -> list[str]:
    return [line[2:] for line in out.splitlines() if line.startswith("> ")]


def raw(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def info(capsys, img, *date) -> dict:
    code, out, err = cli(capsys, *date, "info", "--state", img)
    assert code == 0 and err == ""
    section = out[out.index("\n[ssse]\n"):]
    section = section[:section.find("\n\n[", 1) if "\n\n[" in section[1:] else len(section)]
    fields = {}
    parent = ""
    for line in section.splitlines():
        match = re.match(r"^  (\S.*?)(?: {2,}(.*))?$", line)
        nested = re.match(r"^    (\S.*?) {2,}(.*)$", line)
        if match:
            parent = match.group(1)
            fields[parent] = match.group(2) or ""
        elif nested:  # a part of the key above it: "key tries left RKSSSE" -> "3 of 3"
            fields[f"{parent} {nested.group(1)}"] = nested.group(2)
    # the exact layout, e.g. "  lock                 locked (reported)"
    assert f"  {'lifecycle':<20} {fields['lifecycle']}\n" in section
    return fields


@pytest.fixture(params=PROFILES)
def card(request, tmp_path, capsys):
    """(image path, profile): a card personalised on CARD_DATE."""
    img = str(tmp_path / "card.img")
    assert cli(capsys, "--date", CARD_DATE, "personalize", request.param, "--state", img)[0] == 0
    return img, request.param


@pytest.fixture
def img(tmp_path, capsys):
    path = str(tmp_path / "card.img")
    assert cli(capsys, "--date", CARD_DATE, "personalize", "--state", path)[0] == 0
    return path


def check_authentication(img, ex, key: str, key_id: int) -> None:
    """ex = two GET CHALLENGE exchanges and EXTERNAL AUTHENTICATE `00 82 00 <key_id>` (P7 §6.2-§6.6):
    auth data of the first challenge (the original data) under the process key of the second."""
    (c1, r1, s1), (c2, r2, s2), (auth, _, sw) = ex
    assert (c1, s1, c2, s2, sw) == (GET_CHALLENGE_8, "9000", GET_CHALLENGE_8, "9000", "9000")
    expected = Terminal(Card.open(img)).auth_command(key, raw(r2), original=raw(r1))
    assert expected[3] == key_id and auth == expected.hex(" ").upper()


def check_mac_command(img, ex, key: str, key_id: int, header: str) -> str:
    """ex = external authentication with `key`, GET CHALLENGE 04, then `header` || MAC4 (P4 §8.2 under
    the STK process key of that challenge; P7 §13). Returns the command's SW."""
    check_authentication(img, ex[:3], key, key_id)
    (challenge_cmd, challenge, sw), (command, data, command_sw) = ex[3:]
    assert (challenge_cmd, sw) == (GET_CHALLENGE_4, "9000") and len(raw(challenge)) == 4
    mac = Terminal(Card.open(img)).mac("ssse_stk", raw(challenge), raw(header), b"")
    assert command == spaced(header + mac.hex()) and data == ""
    return command_sw


# -- info -----------------------------------------------------------------------------------------


def test_info_of_a_fresh_card(capsys, card):
    img, profile = card
    fields = info(capsys, img)
    assert fields["lifecycle"] == "issued"
    assert fields["lock"] == "none"
    assert fields["card"] == "ok"
    assert fields["PIN tries left"] == "6 of 6"
    assert fields["key tries left RKSSSE"] == fields["key tries left PUK"] == "3 of 3"
    assert "key tries left IRK" not in fields  # IRK has no counter: it never takes EXTERNAL AUTHENTICATE
    assert fields["medical purse balance"] == "50000"
    assert fields["algorithm"] == ("SM4 (flag 03)" if profile == "default" else "DES family (3DES) (flag 01)")


# -- CHANGE PIN, VERIFY -------------------------------------------------------------------------


def test_change_pin_activates(capsys, card):
    img, profile = card
    code, out, err = cli(capsys, "ssse", "change-pin", "--state", img, "123456", "654321")
    assert (code, err) == (0, "")
    assert exchanges(out) == prelude(profile) + [(spaced("805E010007123456FF654321"), "", "9000")]
    assert out.endswith("< 9000  OK\n")
    assert info(capsys, img)["lifecycle"] == "active"
    assert cli(capsys, "ssse", "verify", "--state", img, "654321")[0] == 0


def test_change_pin_to_the_initial_pin_keeps_issued(capsys, img):
    code, out, err = cli(capsys, "ssse", "change-pin", "--state", img, "123456", "123456")
    assert (code, err) == (0, "")
    assert commands(out)[-1] == spaced("805E010007123456FF123456")
    assert info(capsys, img)["lifecycle"] == "issued"


def test_change_pin_with_wrong_old_pin_is_refused(capsys, img):
    code, out, err = cli(capsys, "ssse", "change-pin", "--state", img, "111111", "654321")
    assert code == 1
    assert err == "refused: 63C5 verification failed, 5 tries left\n"
    assert exchanges(out)[-1] == (spaced("805E010007111111FF654321"), "", "63C5")
    fields = info(capsys, img)
    assert (fields["lifecycle"], fields["PIN tries left"]) == ("issued", "5 of 6")


def test_verify(capsys, img):
    code, out, err = cli(capsys, "ssse", "verify", "--state", img, "123456")
    assert (code, err) == (0, "")
    assert commands(out) == [SELECT, SELECT_EF05, READ_ID, SELECT, VERIFY]
    code, out, err = cli(capsys, "ssse", "verify", "--state", img, "111111")
    assert code == 1
    assert err == "refused: 63C5 verification failed, 5 tries left\n"
    assert exchanges(out)[-1] == (spaced("0020000003111111"), "", "63C5")
    assert info(capsys, img)["PIN tries left"] == "5 of 6"


# -- lock, unlock ---------------------------------------------------------------------------------


def test_lock_then_verify_is_refused_then_unlock(capsys, card):
    img, profile = card
    code, out, err = cli(capsys, "ssse", "lock", "--state", img)
    assert (code, err) == (0, "")
    ex = exchanges(out)
    assert ex[:4] == prelude(profile) and len(ex) == 9
    assert check_mac_command(img, ex[4:], "ssse_bk", 0x05, "841E000004") == "9000"  # BK (docs/decisions.md S5)
    assert info(capsys, img)["lock"] == "locked (reported)"

    code, out, err = cli(capsys, "ssse", "verify", "--state", img, "123456")
    assert code == 1
    assert err == "refused: 6985 conditions of use not satisfied\n"
    assert exchanges(out) == [  # the FCI with 6283, no READ RECORD: the SSSE is locked
        (SELECT, FCI[profile], "6283"),
        (VERIFY, "", "6985"),
    ]
    assert "< 6283  selected application invalidated (locked)" in out
    assert info(capsys, img)["PIN tries left"] == "6 of 6"

    code, out, err = cli(capsys, "ssse", "unlock", "--state", img)
    assert (code, err) == (0, "")
    ex = exchanges(out)
    assert ex[0] == (SELECT, FCI[profile], "6283") and len(ex) == 6
    assert check_mac_command(img, ex[1:], "ssse_bk", 0x05, "8418000004") == "9000"
    assert info(capsys, img)["lock"] == "none"
    assert cli(capsys, "ssse", "verify", "--state", img, "123456")[0] == 0


def test_permanent_lock_then_select_is_9303(capsys, card):
    """P5 §6.1, P7 §13.2: APPLICATION BLOCK 84 1E 00 01; afterwards SELECT of the SSSE answers 9303."""
    img, _profile = card
    code, out, err = cli(capsys, "ssse", "lock", "--permanent", "--state", img)
    assert (code, err) == (0, "")
    assert check_mac_command(img, exchanges(out)[4:], "ssse_bk", 0x05, "841E000104") == "9000"
    assert info(capsys, img)["lock"] == "blocked (permanent)"
    code, out, err = cli(capsys, "ssse", "unlock", "--state", img)
    assert code == 1
    assert err == "refused: 9303 application permanently blocked\n"
    assert exchanges(out) == [(SELECT, "", "9303")]
    assert info(capsys, img)["lock"] == "blocked (permanent)"


def test_lock_and_register_with_the_wrong_keys_are_refused(capsys, img, tmp_path):
    other = tmp_path / "other.toml"
    text = (SHIPPED / "default.toml").read_text(encoding="utf-8")
    other.write_text(text.replace("606162636465666768696A6B6C6D6E6F", "00" * 16)  # STK
                     .replace("E0E1E2E3E4E5E6E7E8E9EAEBECEDEEEF", "11" * 16), encoding="utf-8")  # RK1DF04
    code, out, err = cli(capsys, "ssse", "lock", "--keys", other, "--state", img)
    assert code == 1
    assert err == "refused: 6988 secure messaging data object incorrect (bad MAC)\n"  # docs/decisions.md S10: no try lost
    assert exchanges(out)[-1][0].startswith("84 1E 00 00 04 ") and exchanges(out)[-1][2] == "6988"
    code, out, err = cli(capsys, "ssse", "register", "--keys", other, "--state", img)
    assert code == 1
    assert err == "refused: 63C2 verification failed, 2 tries left\n"  # P7 §6.6: RK1DF04 loses a try
    assert commands(out)[-1].startswith("00 82 00 84 10 ")
    fields = info(capsys, img)
    assert (fields["lock"], fields["lifecycle"]) == ("none", "issued")
    assert fields["key tries left RK1DF04"] == "2 of 3"


# -- PIN UNBLOCK, PIN reset ---------------------------------------------------------------------


def test_unblock_pin(capsys, card):
    img, profile = card
    for left in range(5, -1, -1):
        code, _, err = cli(capsys, "ssse", "verify", "--state", img, "111111")
        assert code == 1 and err == f"refused: 63C{left:X} verification failed, {left} {'try' if left == 1 else 'tries'} left\n"
    code, _, err = cli(capsys, "ssse", "verify", "--state", img, "123456")
    assert code == 1 and err == "refused: 6983 authentication method blocked\n"
    assert info(capsys, img)["PIN tries left"] == "0 of 6 (blocked)"
    code, out, err = cli(capsys, "ssse", "unblock-pin", "--state", img)
    assert (code, err) == (0, "")
    ex = exchanges(out)
    assert ex[:4] == prelude(profile) and len(ex) == 9
    assert check_mac_command(img, ex[4:], "ssse_puk", 0x06, "8424000004") == "9000"  # docs/decisions.md S4
    assert info(capsys, img)["PIN tries left"] == "6 of 6"
    assert cli(capsys, "ssse", "verify", "--state", img, "123456")[0] == 0


@pytest.mark.parametrize("new", ["246810", "13579"])
def test_reset_pin(capsys, card, new):
    """docs/decisions.md S2/S3: PUK, GET CHALLENGE, 84 24 00 01 Lc || E(LD || PIN cn) || MAC4 under one STK process key."""
    img, profile = card
    code, out, err = cli(capsys, "ssse", "reset-pin", "--state", img, new)
    assert (code, err) == (0, "")
    ex = exchanges(out)
    assert ex[:4] == prelude(profile) and len(ex) == 9
    check_authentication(img, ex[4:7], "ssse_puk", 0x06)
    (challenge_cmd, challenge, _), (command, _, sw) = ex[7:]
    assert challenge_cmd == GET_CHALLENGE_4 and sw == "9000"
    terminal = Terminal(Card.open(img, read_only=True))  # a snapshot: the CLI opens the image next
    ks = terminal.process_key("ssse_stk", raw(challenge))
    enciphered = oracle.encipher(terminal.family, ks, cn(new))  # an odd digit count is F-padded (cn)
    header = bytes((0x84, 0x24, 0x00, 0x01, PIN_RESET_LC[profile]))
    assert command == spaced((header + enciphered + oracle.mac4(terminal.family, ks, header + enciphered)).hex())
    fields = info(capsys, img)
    assert (fields["PIN tries left"], fields["lifecycle"]) == ("6 of 6", "issued")  # a reset does not activate
    assert cli(capsys, "ssse", "verify", "--state", img, new)[0] == 0
    code, _, err = cli(capsys, "ssse", "verify", "--state", img, "123456")
    assert code == 1 and err == "refused: 63C5 verification failed, 5 tries left\n"


def test_reload_pin_is_gone(capsys, img):
    code, out, err = cli(capsys, "ssse", "reload-pin", "--state", img, "246810")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "invalid choice: 'reload-pin'" in err and "reset-pin" in err


# -- medical business: hospital settlement, pharmacy purchase ------------------------------------------


def medical(capsys, card, date, operation: str, amount: str):
    """`sscard --date DATE ssse OPERATION --amount AMOUNT` on `card`: exit 0, nothing on stderr, the
    recognition, then SELECT DF04 and VERIFY; (image path, the printed exchanges, stdout)."""
    img, profile = card
    code, out, err = cli(capsys, "--date", date, "ssse", operation, "--state", img, "--amount", amount)
    assert (code, err) == (0, "")
    ex = exchanges(out)
    assert ex[:4] == prelude(profile)
    assert ex[4:6] == [(SELECT_DF04, DF04_FCI, "9000"), (VERIFY, "", "9000")]
    return img, ex, out


def test_register(capsys, card):
    img, ex, _ = medical(capsys, card, CARD_DATE, "register", "1500")
    check_authentication(img, ex[6:9], "df04_rk1", 0x84)  # RK1DF04 to read EF06 (PIN and RK1DF04, V2 table 7)
    assert ex[9:11] == [(spaced("00B2923006"), spaced("92040FFFFFFF"), "9000"),
                        (spaced("00B2933004"), spaced("93023030"), "9000")]
    check_authentication(img, ex[11:14], "df04_uk2", 0x86)  # UK2DF04 to write it
    assert ex[14:] == [(spaced("00DC92300692041500FFFF"), "", "9000"), (spaced("00DC93300493023031"), "", "9000")]
    assert info(capsys, img)["lifecycle"] == "active"
    records = Card.open(img).store["df04.ef06"].records
    assert raw("92041500FFFF") in records and raw("93023031") in records


def test_pharmacy(capsys, card):
    img, ex, out = medical(capsys, card, DAY_300, "pharmacy", "2580")
    init_command, answer, sw = ex[6]
    assert init_command == spaced("B028010113" "01" "00000A14" "00000000" "00000000" + TERMINAL_NO.hex() + "16")
    assert sw == "9000" and raw(answer)[:4] == raw("0000C350")  # 500.00 yuan before
    expected_command, expected_answer, _ = Terminal(Card.open(img)).debit(
        raw(answer), 2580, time="20270917100000", tx_no=raw("00000001"))  # the card's date at 10:00
    assert ex[7] == (spaced(expected_command.hex()), spaced(expected_answer.hex()), "9000")  # TAC || MAC2
    assert len(ex) == 8
    assert out.splitlines()[-1] == f"purchase: terminal transaction 00000001, TAC {expected_answer[:4].hex().upper()}"
    fields = info(capsys, img, "--date", DAY_300)
    assert fields["lifecycle"] == "active" and fields["medical purse balance"] == str(50000 - 2580)


def test_pharmacy_beyond_the_balance_is_9401(capsys, img):
    code, out, err = cli(capsys, "ssse", "pharmacy", "--state", img, "--amount", "50001")
    assert code == 1 and err == "refused: 9401 insufficient funds\n"  # P5 table 72
    assert exchanges(out)[-1][0].startswith("B0 28 01 01 13 ") and exchanges(out)[-1][2] == "9401"
    assert info(capsys, img)["lifecycle"] == "issued"


def test_register_on_a_locked_card_is_refused(capsys, img):
    assert cli(capsys, "ssse", "lock", "--state", img)[0] == 0
    code, out, err = cli(capsys, "ssse", "register", "--state", img)
    # docs/card/lifecycle.md §3: the SSSE and its DFs answer SELECT with their FCI and 6283; the operation stops there
    last = exchanges(out)[-1]
    assert last == (SELECT_DF04, DF04_FCI, "6283")
    assert code == 1 and err == f"refused: 6283 {meaning(0x6283)}\n"
    assert info(capsys, img)["lifecycle"] == "issued"


@pytest.mark.parametrize("argv", [
    ["register", "--amount", "-1"],
    ["register", "--amount", "100000000"],
    ["register", "--amount", "12.5"],
    ["register", "--pin", "12"],
    ["register", "--institution", "H11010100001"],  # LD/T 32 has no hospital code on the card
    ["register", "--kind", "2"],
    ["pharmacy", "--amount", "x"],
    ["pharmacy", "--pin", "12ab"],
    ["pharmacy", "--items", "3"],
    ["reset-pin", "12"],
    ["change-pin", "123456", "1"],
])
def test_bad_option_is_a_one_line_error(capsys, img, argv):
    before = open(img, "rb").read()
    code, out, err = cli(capsys, "ssse", argv[0], "--state", img, *argv[1:])
    assert code == 2 and out == ""
    assert err.startswith("sscard: error: ") and err.count("\n") == 1
    assert open(img, "rb").read() == before


# -- card block -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["ssse", "card-block"], ["card-block"]])
def test_card_block(capsys, card, argv):
    img, profile = card
    code, out, err = cli(capsys, *argv, "--state", img)
    assert (code, err) == (0, "")
    ex = exchanges(out)
    assert ex[:4] == prelude(profile) and len(ex) == 9
    assert check_mac_command(img, ex[4:], "ssse_bk", 0x05, "8416000004") == "9000"  # P5 §6.2, P7 §13.1
    assert info(capsys, img)["card"] == "blocked"
    for again in (["ssse", "verify", "--state", img, "123456"], ["ssse", "unlock", "--state", img],
                  ["card-block", "--state", img]):
        code, out, err = cli(capsys, *again)
        assert code == 1
        assert err == "refused: 6A81 function not supported / card blocked\n"
        assert exchanges(out) == [(SELECT, "", "6A81")]
    code, out, _ = cli(capsys, "apdu", "--state", img, "00A4000000", "00A4000002DDF1")
    assert code == 0 and out.count("< 6A81  function not supported / card blocked") == 2


# -- activation deadline --------------------------------------------------------------------------------


def test_deadline(capsys, card):
    img, profile = card
    assert cli(capsys, "--date", DAY_300, "ssse", "verify", "--state", img, "123456")[0] == 0
    code, out, err = cli(capsys, "--date", DAY_301, "ssse", "verify", "--state", img, "123456")
    assert code == 1 and err == "refused: 6985 conditions of use not satisfied\n"
    assert exchanges(out) == [(SELECT, FCI[profile], "6283"), (VERIFY, "", "6985")]
    assert info(capsys, img)["lock"] == "locked (deadline)"
    code, out, err = cli(capsys, "--date", DAY_301, "ssse", "unlock", "--state", img)
    assert code == 1 and err == "refused: 6985 conditions of use not satisfied\n"
    assert check_mac_command(img, exchanges(out)[1:], "ssse_bk", 0x05, "8418000004") == "6985"  # docs/card/lifecycle.md §2
    assert info(capsys, img)["lock"] == "locked (deadline)"
    activate_financial(Card.open(img))
    code, out, err = cli(capsys, "--date", DAY_301, "ssse", "unlock", "--state", img)
    assert (code, err) == (0, "")
    assert info(capsys, img)["lock"] == "none"
    assert cli(capsys, "--date", "2030-01-01", "ssse", "verify", "--state", img, "123456")[0] == 0
