"""`sscard ssse ...` and `sscard card-block` on a card image (SPEC §2.3, §2.4, §4, §5.1).

Each operation prints every APDU exchange with the card (`> ` command, `< `
data, `< SW  meaning`) and exits 0 on 9000; a refused operation prints
`refused: SW meaning` on stderr and exits 1. `sscard info` shows the state.
"""

import datetime
import re

import pytest
from conftest import activate_financial

from chip import Card
from chip.crypto import BY_FLAG
from chip.profile import SHIPPED
from chip.sw import meaning
from reader.cli import main

D = datetime.date(2026, 11, 21)
DAY_300, DAY_301 = (str(D + datetime.timedelta(days=n)) for n in (300, 301))
PROFILES = ["default", "default-3des"]
FLAG = {"default": 0x04, "default-3des": 0x01}


def spaced(hexstr: str) -> str:
    return bytes.fromhex(hexstr).hex(" ").upper()


DDF_NAME = "7378312E73682EC9E7BBE1B1A3D5CF"
SELECT = spaced("00A404000F" + DDF_NAME)
FCI = {p: spaced("6F19840F" + DDF_NAME + f"A5069F0C038601{f:02X}") for p, f in FLAG.items()}
READ_ID = spaced("00B2012C00")
IDENTIFICATION = "1101000000000001D156000005FFFFFF"
ID_RECORD = spaced("0110" + IDENTIFICATION)
GET_CHALLENGE = spaced("0084000008")
SELECT_DF04 = spaced("00A4010C02DF04")
STK = bytes.fromhex("606162636465666768696A6B6C6D6E6F")  # SPEC §5 test keys
PUK = bytes.fromhex("707172737475767778797A7B7C7D7E7F")
H_CODE = "H11010100001".encode().hex().upper()
P_CODE = "P11010100001".encode().hex().upper()

SW_LINE = re.compile(r"^< ([0-9A-F]{4})  (.+)$")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


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
        else:
            raise AssertionError(f"unexpected output line {line!r}")
    assert all(sw is not None for _, _, sw in result)
    return [tuple(x) for x in result]


def commands(out: str) -> list[str]:
    return [line[2:] for line in out.splitlines() if line.startswith("> ")]


def info(capsys, img, *date) -> dict:
    code, out, err = run(capsys, *date, "info", "--state", img)
    assert code == 0 and err == ""
    section = out[out.index("\n[ssse]\n"):]
    section = section[:section.find("\n\n[", 1) if "\n\n[" in section[1:] else len(section)]
    fields = {}
    for line in section.splitlines():
        match = re.match(r"^  (\S.*?) {2,}(.*)$", line)
        if match:
            fields[match.group(1)] = match.group(2)
    # the exact layout, e.g. "  lock                 locked (holder)"
    assert f"  {'lifecycle':<20} {fields['lifecycle']}\n" in section
    return fields


@pytest.fixture(params=PROFILES)
def card(request, tmp_path, capsys):
    """(image path, profile): a card personalised on D."""
    img = str(tmp_path / "card.img")
    assert run(capsys, "--date", D, "personalize", request.param, "--state", img)[0] == 0
    return img, request.param


@pytest.fixture
def img(tmp_path, capsys):
    path = str(tmp_path / "card.img")
    assert run(capsys, "--date", D, "personalize", "--state", path)[0] == 0
    return path


def expected_mac(flag: int, master: bytes, challenge: str, header_and_body: str) -> str:
    """MAC4 of SPEC §5.1 computed here from the master key (not by the PSAM the CLI uses)."""
    algorithm = BY_FLAG[flag]
    key = algorithm.diversify(master, bytes.fromhex(IDENTIFICATION)[:8])
    iv = bytes.fromhex(challenge).ljust(algorithm.block, b"\x00")
    return algorithm.mac4(key, bytes.fromhex(header_and_body), iv).hex(" ").upper()


def check_mac_exchange(ex, flag, master, header: str, body: str = ""):
    """ex = [GET CHALLENGE exchange, MAC command exchange]: the command carries the right MAC4."""
    (challenge_cmd, challenge, sw), (command, _, _) = ex
    assert (challenge_cmd, sw) == (GET_CHALLENGE, "9000") and len(bytes.fromhex(challenge)) == 8
    mac = expected_mac(flag, master, challenge, header + body)
    assert command == spaced(header + body) + " " + mac


# -- info -----------------------------------------------------------------------------------------


def test_info_of_a_fresh_card(capsys, card):
    img, _ = card
    fields = info(capsys, img)
    assert fields["lifecycle"] == "issued"
    assert fields["lock"] == "none"
    assert fields["card"] == "ok"
    assert fields["PIN tries left"] == "6 of 6"
    assert fields["RK tries left"] == "3 of 3"
    assert fields["medical visits"] == "0"
    assert fields["pharmacy purchases"] == "0"
    assert fields["algorithm"] == ("SM4 (flag 04)" if card[1] == "default" else "3DES (flag 01)")


# -- CHANGE PIN, VERIFY -------------------------------------------------------------------------


def test_change_pin_activates(capsys, card):
    img, profile = card
    code, out, err = run(capsys, "ssse", "change-pin", "--state", img, "123456", "654321")
    assert (code, err) == (0, "")
    assert exchanges(out) == [
        (SELECT, FCI[profile], "9000"),
        (READ_ID, ID_RECORD, "9000"),
        (spaced("805E010007123456FF654321"), "", "9000"),
    ]
    assert out.endswith("< 9000  OK\n")
    assert info(capsys, img)["lifecycle"] == "active"
    assert run(capsys, "ssse", "verify", "--state", img, "654321")[0] == 0


def test_change_pin_to_the_initial_pin_keeps_issued(capsys, img):
    code, out, err = run(capsys, "ssse", "change-pin", "--state", img, "123456", "123456")
    assert (code, err) == (0, "")
    assert commands(out)[-1] == spaced("805E010007123456FF123456")
    assert info(capsys, img)["lifecycle"] == "issued"


def test_change_pin_with_wrong_old_pin_is_refused(capsys, img):
    code, out, err = run(capsys, "ssse", "change-pin", "--state", img, "111111", "654321")
    assert code == 1
    assert err == "refused: 63C5 verification failed, 5 tries left\n"
    assert exchanges(out)[-1] == (spaced("805E010007111111FF654321"), "", "63C5")
    fields = info(capsys, img)
    assert (fields["lifecycle"], fields["PIN tries left"]) == ("issued", "5 of 6")


def test_verify(capsys, img):
    code, out, err = run(capsys, "ssse", "verify", "--state", img, "123456")
    assert (code, err) == (0, "")
    assert commands(out) == [SELECT, READ_ID, spaced("0020000003123456")]
    code, out, err = run(capsys, "ssse", "verify", "--state", img, "111111")
    assert code == 1
    assert err == "refused: 63C5 verification failed, 5 tries left\n"
    assert exchanges(out)[-1] == (spaced("0020000003111111"), "", "63C5")
    assert info(capsys, img)["PIN tries left"] == "5 of 6"


# -- lock, unlock ---------------------------------------------------------------------------------


def test_lock_then_verify_is_refused_then_unlock(capsys, card):
    img, profile = card
    flag = FLAG[profile]
    code, out, err = run(capsys, "ssse", "lock", "--state", img)
    assert (code, err) == (0, "")
    ex = exchanges(out)
    assert ex[:2] == [(SELECT, FCI[profile], "9000"), (READ_ID, ID_RECORD, "9000")]
    assert len(ex) == 4 and ex[3][1:] == ("", "9000")
    check_mac_exchange(ex[2:], flag, STK, "841E000004")
    assert info(capsys, img)["lock"] == "locked (holder)"

    code, out, err = run(capsys, "ssse", "verify", "--state", img, "123456")
    assert code == 1
    assert err == "refused: 6985 conditions of use not satisfied\n"
    assert exchanges(out) == [  # no READ RECORD: the SSSE is locked
        (SELECT, FCI[profile], "6283"),
        (spaced("0020000003123456"), "", "6985"),
    ]
    assert "< 6283  selected application invalidated (locked)" in out
    assert info(capsys, img)["PIN tries left"] == "6 of 6"

    code, out, err = run(capsys, "ssse", "unlock", "--state", img)
    assert (code, err) == (0, "")
    ex = exchanges(out)
    assert ex[0] == (SELECT, FCI[profile], "6283")
    assert len(ex) == 3 and ex[2][1:] == ("", "9000")
    check_mac_exchange(ex[1:], flag, STK, "8418000004")
    assert info(capsys, img)["lock"] == "none"
    assert run(capsys, "ssse", "verify", "--state", img, "123456")[0] == 0


def test_permanent_lock_then_unlock_is_9303(capsys, card):
    img, profile = card
    code, out, err = run(capsys, "ssse", "lock", "--permanent", "--state", img)
    assert (code, err) == (0, "")
    check_mac_exchange(exchanges(out)[2:], FLAG[profile], STK, "841E000104")
    assert info(capsys, img)["lock"] == "blocked (permanent)"
    code, out, err = run(capsys, "ssse", "unlock", "--state", img)
    assert code == 1
    assert err == "refused: 9303 application permanently blocked\n"
    ex = exchanges(out)
    assert ex[0][2] == "6283" and ex[-1][2] == "9303"
    check_mac_exchange(ex[1:], FLAG[profile], STK, "8418000004")
    assert info(capsys, img)["lock"] == "blocked (permanent)"


def test_lock_with_the_wrong_keys_is_refused(capsys, img, tmp_path):
    other = tmp_path / "other.toml"
    text = (SHIPPED / "default.toml").read_text(encoding="utf-8")
    other.write_text(text.replace("606162636465666768696A6B6C6D6E6F", "00" * 16)
                     .replace("404142434445464748494A4B4C4D4E4F", "11" * 16), encoding="utf-8")
    code, out, err = run(capsys, "ssse", "lock", "--keys", other, "--state", img)
    assert code == 1
    assert err == "refused: 6988 secure messaging data object incorrect (bad MAC)\n"
    assert exchanges(out)[-1][0].startswith("84 1E 00 00 04 ")
    code, out, err = run(capsys, "ssse", "register", "--keys", other, "--state", img)
    assert code == 1
    assert err == "refused: 63C2 verification failed, 2 tries left\n"
    assert commands(out)[-1].startswith("00 82 00 0A 10 ")
    fields = info(capsys, img)
    assert (fields["lock"], fields["RK tries left"], fields["medical visits"], fields["lifecycle"]) == \
        ("none", "2 of 3", "0", "issued")


# -- PIN UNBLOCK, RELOAD PIN --------------------------------------------------------------------


def test_unblock_pin(capsys, card):
    img, profile = card
    for left in range(5, -1, -1):
        code, _, err = run(capsys, "ssse", "verify", "--state", img, "111111")
        assert code == 1 and err == f"refused: 63C{left:X} verification failed, {left} {'try' if left == 1 else 'tries'} left\n"
    code, _, err = run(capsys, "ssse", "verify", "--state", img, "123456")
    assert code == 1 and err == "refused: 6983 authentication method blocked\n"
    assert info(capsys, img)["PIN tries left"] == "0 of 6 (blocked)"
    code, out, err = run(capsys, "ssse", "unblock-pin", "--state", img)
    assert (code, err) == (0, "")
    ex = exchanges(out)
    assert len(ex) == 4 and ex[3][1:] == ("", "9000")
    check_mac_exchange(ex[2:], FLAG[profile], PUK, "8424000004")
    assert info(capsys, img)["PIN tries left"] == "6 of 6"
    assert run(capsys, "ssse", "verify", "--state", img, "123456")[0] == 0


def test_reload_pin(capsys, card):
    img, profile = card
    code, out, err = run(capsys, "ssse", "reload-pin", "--state", img, "246810")
    assert (code, err) == (0, "")
    ex = exchanges(out)
    assert len(ex) == 4 and ex[3][1:] == ("", "9000")
    check_mac_exchange(ex[2:], FLAG[profile], STK, "805E000007", "246810")
    assert run(capsys, "ssse", "verify", "--state", img, "246810")[0] == 0
    code, _, err = run(capsys, "ssse", "verify", "--state", img, "123456")
    assert code == 1 and err == "refused: 63C5 verification failed, 5 tries left\n"
    code, out, err = run(capsys, "ssse", "reload-pin", "--state", img, "13579")  # odd length, F-padded
    assert code == 0
    check_mac_exchange(exchanges(out)[2:], FLAG[profile], STK, "805E000007", "13579F")
    fields = info(capsys, img)
    assert (fields["PIN tries left"], fields["lifecycle"]) == ("6 of 6", "issued")


# -- medical business writes -----------------------------------------------------------------------


def test_register(capsys, card):
    img, profile = card
    code, out, err = run(capsys, "--date", D, "ssse", "register", "--state", img,
                         "--institution", "H11010100001", "--kind", "2", "--amount", "1500")
    assert (code, err) == (0, "")
    record = "5115" + H_CODE + "02" + "20261121" + "000005DC"
    ex = exchanges(out)
    assert [e[0] for e in ex[:4]] == [SELECT, READ_ID, SELECT_DF04, GET_CHALLENGE]
    assert ex[2][2] == "9000" and ex[4][0].startswith("00 82 00 0A 10 ") and ex[4][2] == "9000"
    assert ex[5] == (spaced("00E200A817" + record), "", "9000")
    assert len(ex) == 6
    fields = info(capsys, img)
    assert (fields["lifecycle"], fields["medical visits"], fields["pharmacy purchases"]) == ("active", "1", "0")
    assert Card.open(img).store["ssse.visits"].records == (bytes.fromhex(record),)
    # the record reads back with the PIN
    code, out, _ = run(capsys, "apdu", "--state", img, "00A404000F" + DDF_NAME, "0020000003123456",
                       "00A4010C02DF04", "00B201AC00")
    assert code == 0
    assert f"> {spaced('00B201AC00')}\n< {spaced(record)}\n< 9000  OK" in out


def test_pharmacy(capsys, card):
    img, _ = card
    code, out, err = run(capsys, "--date", DAY_300, "ssse", "pharmacy", "--state", img,
                         "--pharmacy", "P11010100001", "--items", "3", "--amount", "2580")
    assert (code, err) == (0, "")
    record = "5215" + P_CODE + "03" + "20270917" + "00000A14"
    assert exchanges(out)[-1] == (spaced("00E200B017" + record), "", "9000")
    fields = info(capsys, img)
    assert (fields["lifecycle"], fields["medical visits"], fields["pharmacy purchases"]) == ("active", "0", "1")


def test_register_on_a_locked_card_is_refused(capsys, img):
    assert run(capsys, "ssse", "lock", "--state", img)[0] == 0
    code, out, err = run(capsys, "ssse", "register", "--state", img)
    # SPEC §2.4 gives 6283 to SELECT of the locked SSSE and 6985 to other commands; a SELECT of
    # DF04 inside it is not named: either refuses, and the operation stops there
    last = exchanges(out)[-1]
    assert last[:2] == (SELECT_DF04, "") and last[2] in ("6283", "6985")
    assert code == 1 and err == f"refused: {last[2]} {meaning(int(last[2], 16))}\n"
    assert info(capsys, img)["medical visits"] == "0"


@pytest.mark.parametrize("argv", [
    ["register", "--institution", "H110101000019"],  # 13 characters, 12 fit
    ["register", "--institution", "医院0000000001"],  # not ASCII
    ["register", "--amount", "-1"],
    ["pharmacy", "--items", "256"],
])
def test_bad_medical_option_is_a_one_line_error(capsys, img, argv):
    code, out, err = run(capsys, "ssse", argv[0], "--state", img, *argv[1:])
    assert code == 2
    assert err.startswith("sscard: error: ") and err.count("\n") == 1
    assert info(capsys, img)["medical visits"] == "0"


# -- card block -----------------------------------------------------------------------------------------


def test_card_block(capsys, card):
    img, profile = card
    code, out, err = run(capsys, "card-block", "--state", img)
    assert (code, err) == (0, "")
    ex = exchanges(out)
    assert ex[:2] == [(SELECT, FCI[profile], "9000"), (READ_ID, ID_RECORD, "9000")]
    assert len(ex) == 4 and ex[3][1:] == ("", "9000")
    check_mac_exchange(ex[2:], FLAG[profile], STK, "8416000004")
    assert info(capsys, img)["card"] == "blocked"
    for argv in (["ssse", "verify", "--state", img, "123456"], ["ssse", "unlock", "--state", img],
                 ["card-block", "--state", img]):
        code, out, err = run(capsys, *argv)
        assert code == 1
        assert err == "refused: 6A81 function not supported / card blocked\n"
        assert exchanges(out) == [(SELECT, "", "6A81")]
    code, out, _ = run(capsys, "apdu", "--state", img, "00A4000000", "00A4000002DDF1")
    assert code == 0 and out.count("< 6A81  function not supported / card blocked") == 2


# -- activation deadline --------------------------------------------------------------------------------


def test_deadline(capsys, card):
    img, profile = card
    assert run(capsys, "--date", DAY_300, "ssse", "verify", "--state", img, "123456")[0] == 0
    code, out, err = run(capsys, "--date", DAY_301, "ssse", "verify", "--state", img, "123456")
    assert code == 1 and err == "refused: 6985 conditions of use not satisfied\n"
    assert exchanges(out) == [(SELECT, FCI[profile], "6283"), (spaced("0020000003123456"), "", "6985")]
    assert info(capsys, img)["lock"] == "locked (deadline)"
    code, out, err = run(capsys, "--date", DAY_301, "ssse", "unlock", "--state", img)
    assert code == 1 and err == "refused: 6985 conditions of use not satisfied\n"
    check_mac_exchange(exchanges(out)[1:], FLAG[profile], STK, "8418000004")
    assert info(capsys, img)["lock"] == "locked (deadline)"
    activate_financial(Card.open(img))
    code, out, err = run(capsys, "--date", DAY_301, "ssse", "unlock", "--state", img)
    assert (code, err) == (0, "")
    assert info(capsys, img)["lock"] == "none"
    assert run(capsys, "--date", "2030-01-01", "ssse", "verify", "--state", img, "123456")[0] == 0
