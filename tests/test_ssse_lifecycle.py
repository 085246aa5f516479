"""The SSSE lifecycle (SPEC §2.4, status words §4): issued -> active, loss lock, permanent block,
activation deadline, card block.

Every scenario drives the card through APDUs: the terminal side (`SsseTerminal`
with a PSAM card of its own) only produces the cryptograms and MACs. Tests that
involve the keys run on both shipped algorithms: "default" (SM4, flag 04) and
"default-3des" (3DES, flag 01).
"""

import dataclasses
import datetime

import pytest

from chip import Card, load_profile
from chip.pin import pack
from conftest import tx, activate_financial
from reader import SimReader
from reader.psam import Psam
from reader.ssse_terminal import SsseTerminal, TerminalError

D = datetime.date(2026, 11, 21)  # day of personalisation = issue date (EF05 item 05)
PROFILES = ["default", "default-3des"]

DDF_NAME = "7378312E73682EC9E7BBE1B1A3D5CF"
SELECT_SSSE = "00A404000F" + DDF_NAME
SELECT_SSSE_BY_FID = "00A4000002DDF1"
SELECT_DF04 = "00A4010C02DF04"
SELECT_MF = "00A40000023F00"
FCI = {
    "default": "6F19840F" + DDF_NAME + "A5069F0C03860104",
    "default-3des": "6F19840F" + DDF_NAME + "A5069F0C03860101",
}
IDENTIFICATION = "110100" "0000000001" "D156000005" "FFFFFF"  # EF05 item 01 (docs/decisions.md)
EF05 = {
    1: "0110" + IDENTIFICATION,
    2: "020133",  # "3"
    3: "0304332E3030",  # "3.00"
    4: "040C110100000000000000000001",
    5: "050420261121",  # issue date = D
    6: "060420361121",
    7: "0709543030303030303031",  # "T00000001"
}
ITEM_08 = "0812" + "110101199003071233".encode().hex().upper()

VERIFY_OK = "0020000003123456"
VERIFY_WRONG = "0020000003111111"
CHANGE_TO_NEW = "805E010007123456FF654321"
VERIFY_NEW = "0020000003654321"

# DF04 medical records (SPEC §2.4; layout chip.ssse.VISIT / PURCHASE): tag, len 0x15 = 21,
# code ASCII 12, kind/items 1 byte, date BCD 4, amount 4 bytes big-endian (fen)
H_CODE = "H11010100001".encode().hex().upper()
P_CODE = "P11010100001".encode().hex().upper()
VISIT_REG = "5115" + H_CODE + "01" + "20261121" + "000004D2"  # registration, 12.34 yuan
PURCHASE_3 = "5215" + P_CODE + "03" + "20261121" + "00000A14"  # 3 items, 25.80 yuan
APPEND_VISIT = "00E200A817"  # SFI 15 (0x15 << 3 = A8), Lc 0x17 = 23
APPEND_PURCHASE = "00E200B017"  # SFI 16
READ_VISIT = "00B2{:02X}AC00"  # record number P1 in SFI 15
READ_PURCHASE = "00B2{:02X}B400"


def visit(n: int) -> str:
    """A distinct outpatient VISIT record (amount n)."""
    return "5115" + H_CODE + "02" + "20261121" + f"{n:08X}"


def ssse_state(card):
    return card.applets["ssse"].describe()


# -- harness ------------------------------------------------------------------------------------


class Env:
    """A card on D, its reader, and a terminal with a PSAM holding the profile's master keys."""

    def __init__(self, profile="default", state=None, date=D, card=None):
        self.profile = profile
        self.card = card or Card.from_profile(profile, state=state, date=date)
        self.reader = SimReader(self.card)
        self.psam = Psam(SimReader(Card.psam(profile)))
        # the identification code as the issuer's records hold it (a locked SSSE refuses READ RECORD)
        self.terminal = SsseTerminal(self.reader, self.psam, identification=bytes.fromhex(IDENTIFICATION))
        self.fci = FCI[profile]

    def tx(self, apdu: str) -> str:
        return tx(self.reader, apdu)

    def start(self) -> int:
        return self.terminal.start()

    def mac_apdu(self, cla, ins, p1, p2, body: bytes = b"", key: str = "stk", corrupt: bool = False) -> str:
        """GET CHALLENGE on the card, then the MAC-protected command built by hand (SPEC §5.1)."""
        t = self.terminal
        iv = t.challenge().ljust(t.block, b"\x00")
        header = bytes((cla, ins, p1, p2, len(body) + 4))
        mac = self.psam.mac4(key, t.algorithm_flag, t.diversification, iv, header + body)
        if corrupt:
            mac = bytes((mac[0] ^ 0x01,)) + mac[1:]
        return (header + body + mac).hex().upper()

    def ext_auth_apdu(self, corrupt: bool = False) -> str:
        t = self.terminal
        cryptogram = self.psam.external_auth_cryptogram(t.algorithm_flag, t.diversification, t.challenge())
        if corrupt:
            cryptogram = cryptogram[:-1] + bytes((cryptogram[-1] ^ 0x01,))
        return ("0082000A10" + cryptogram.hex()).upper()

    def lock_apdu(self, permanent=False, corrupt=False):
        return self.mac_apdu(0x84, 0x1E, 0x00, 0x01 if permanent else 0x00, corrupt=corrupt)

    def unlock_apdu(self, corrupt=False):
        return self.mac_apdu(0x84, 0x18, 0x00, 0x00, corrupt=corrupt)

    def card_block_apdu(self, corrupt=False):
        return self.mac_apdu(0x84, 0x16, 0x00, 0x00, corrupt=corrupt)

    def reload_apdu(self, new="246810"):
        return self.mac_apdu(0x80, 0x5E, 0x00, 0x00, pack(new))

    def pin_unblock_apdu(self):
        return self.mac_apdu(0x84, 0x24, 0x00, 0x00, key="puk")

    def fresh_session(self) -> None:
        """Reset and select the SSSE, expecting it open (FCI + 9000)."""
        self.reader.reset()
        assert self.tx(SELECT_SSSE) == self.fci + "9000"

    def read_medical(self, read: str, number: int) -> str:
        """In a fresh session: the record is protected (6982), VERIFY opens it; return its answer."""
        self.fresh_session()
        assert self.tx(SELECT_DF04) == "9000"
        assert self.tx(read.format(number)) == "6982"
        assert self.tx(VERIFY_OK) == "9000"
        return self.tx(read.format(number))


@pytest.fixture(params=PROFILES)
def env(request):
    return Env(request.param)


@pytest.fixture
def env_sm4():
    return Env("default")


# -- issued ---------------------------------------------------------------------------------------


def test_fresh_card_is_issued_and_unlocked(env):
    s = ssse_state(env.card)
    assert (s["lifecycle"], s["lock"], s["card"]) == ("issued", "none", "ok")


def test_issued_card_answers_queries(env):
    assert env.start() == 0x9000
    assert env.tx(SELECT_SSSE) == env.fci + "9000"
    for number in (1, 2, 3, 4, 7):  # SPEC §2.2: free records
        assert env.tx(f"00B2{number:02X}2C00") == EF05[number] + "9000"
    assert env.tx("00B2052C00") == "6982"
    assert env.tx("00B2083000") == "6982"
    assert env.tx(VERIFY_OK) == "9000"
    assert env.tx("00B2052C00") == EF05[5] + "9000"
    assert env.tx("00B2083000") == ITEM_08 + "9000"
    assert len(bytes.fromhex(env.tx("0084000008"))) == 10
    factor, random = bytes.fromhex("0102030405060708"), bytes.fromhex("1122334455667788")
    assert env.terminal.internal_authenticate(factor, random)
    assert env.terminal.external_authenticate() == 0x9000
    assert ssse_state(env.card)["lifecycle"] == "issued"  # queries do not activate
    env.fresh_session()
    assert ssse_state(env.card)["lifecycle"] == "issued"


@pytest.mark.parametrize("apdu", [APPEND_VISIT + VISIT_REG, APPEND_PURCHASE + PURCHASE_3])
def test_issued_medical_write_without_external_auth_is_6985(env, apdu):
    env.fresh_session()
    assert env.tx(SELECT_DF04) == "9000"
    assert env.tx(apdu) == "6985"
    assert env.tx(VERIFY_OK) == "9000"  # the PIN is not what a medical write needs
    assert env.tx(apdu) == "6985"
    assert env.tx("00DC01AC17" + VISIT_REG) == "6985"  # UPDATE RECORD alike
    s = ssse_state(env.card)
    assert (s["lifecycle"], s["medical visits"], s["pharmacy purchases"]) == ("issued", 0, 0)


# -- activation by CHANGE PIN ----------------------------------------------------------------------


def test_change_pin_away_from_initial_activates(env):
    env.fresh_session()
    assert env.tx(CHANGE_TO_NEW) == "9000"
    assert ssse_state(env.card)["lifecycle"] == "active"
    env.fresh_session()
    assert ssse_state(env.card)["lifecycle"] == "active"  # persistent
    assert env.tx(VERIFY_OK) == "63C5"
    assert env.tx(VERIFY_NEW) == "9000"
    # after activation a medical write without external authentication is 6982, not 6985
    assert env.tx(SELECT_DF04) == "9000"
    assert env.tx(APPEND_VISIT + VISIT_REG) == "6982"
    assert env.tx(APPEND_PURCHASE + PURCHASE_3) == "6982"
    assert ssse_state(env.card)["medical visits"] == 0


def test_change_pin_to_the_initial_pin_does_not_activate(env):
    env.fresh_session()
    assert env.tx("805E010007123456FF123456") == "9000"
    assert ssse_state(env.card)["lifecycle"] == "issued"
    assert env.tx(SELECT_DF04) == "9000"
    assert env.tx(APPEND_VISIT + VISIT_REG) == "6985"


@pytest.mark.parametrize("apdu, sw", [
    ("805E010007111111FF654321", "63C5"),  # wrong old PIN
    ("805E010003123456", "6A80"),  # no separator
    ("805E010007123456FF1234AB", "6A80"),  # malformed new PIN
])
def test_failed_change_pin_does_not_activate(env_sm4, apdu, sw):
    env_sm4.fresh_session()
    assert env_sm4.tx(apdu) == sw
    assert ssse_state(env_sm4.card)["lifecycle"] == "issued"
    assert ssse_state(env_sm4.card)["PIN tries left"] == ("5 of 6" if sw == "63C5" else "6 of 6")


def test_activation_is_one_way(env_sm4):
    env_sm4.fresh_session()
    assert env_sm4.tx(CHANGE_TO_NEW) == "9000"
    assert env_sm4.tx("805E010007654321FF123456") == "9000"  # back to the initial PIN
    assert ssse_state(env_sm4.card)["lifecycle"] == "active"
    assert env_sm4.tx(SELECT_DF04) == "9000"
    assert env_sm4.tx(APPEND_VISIT + VISIT_REG) == "6982"


def test_reload_pin_does_not_activate(env):
    # SPEC §2.4 lists CHANGE PIN and medical writes as the activating events, not the issuer's RELOAD PIN
    assert env.start() == 0x9000
    assert env.tx(env.reload_apdu("246810")) == "9000"
    assert ssse_state(env.card)["lifecycle"] == "issued"


# -- activation by a medical terminal -----------------------------------------------------------


def test_hospital_registration_activates(env):
    assert env.start() == 0x9000
    assert env.terminal.register(institution="H11010100001", kind=1, amount=1234, date=D) == 0x9000
    s = ssse_state(env.card)
    assert (s["lifecycle"], s["medical visits"], s["pharmacy purchases"]) == ("active", 1, 0)
    assert env.read_medical(READ_VISIT, 1) == VISIT_REG + "9000"
    assert env.tx("00B251A800") == VISIT_REG + "9000"  # by identifier (tag 51) in SFI 15
    assert env.tx(READ_VISIT.format(2)) == "6A83"
    # the card is active now: without external authentication a write is 6982
    assert env.tx(APPEND_VISIT + visit(1)) == "6982"


def test_pharmacy_purchase_activates(env):
    assert env.start() == 0x9000
    assert env.terminal.pharmacy_purchase(pharmacy="P11010100001", items=3, amount=2580, date=D) == 0x9000
    s = ssse_state(env.card)
    assert (s["lifecycle"], s["medical visits"], s["pharmacy purchases"]) == ("active", 0, 1)
    assert env.read_medical(READ_PURCHASE, 1) == PURCHASE_3 + "9000"


def test_medical_write_by_apdus(env):
    """The terminal's flow spelled out: SELECT DF04, GET CHALLENGE, EXTERNAL AUTHENTICATE, APPEND RECORD."""
    assert env.start() == 0x9000
    assert env.tx(SELECT_DF04) == "9000"
    assert env.tx(env.ext_auth_apdu()) == "9000"
    assert env.tx(APPEND_VISIT + VISIT_REG) == "9000"
    assert env.tx(APPEND_PURCHASE + PURCHASE_3) == "9000"
    assert env.tx(READ_VISIT.format(1)) == VISIT_REG + "9000"  # external auth also opens the reads
    assert env.tx(READ_PURCHASE.format(1)) == PURCHASE_3 + "9000"
    assert ssse_state(env.card)["lifecycle"] == "active"


def test_failed_external_auth_gives_no_write(env_sm4):
    e = env_sm4
    assert e.start() == 0x9000
    assert e.tx(SELECT_DF04) == "9000"
    assert e.tx(e.ext_auth_apdu(corrupt=True)) == "63C2"
    assert e.tx(APPEND_VISIT + VISIT_REG) == "6985"
    assert ssse_state(e.card)["lifecycle"] == "issued"


@pytest.mark.parametrize("append, record, sw", [
    (APPEND_VISIT, PURCHASE_3, "6A80"),  # a purchase record in the visits file: wrong tag
    ("00E200A817", "5015" + VISIT_REG[4:], "6A80"),
    ("00E200A816", "5114" + VISIT_REG[4:-2], "6700"),  # length byte 20
    ("00E200A816", "5115" + VISIT_REG[4:-2], "6700"),  # length byte 21, 20 bytes follow
    ("00E200A818", VISIT_REG + "00", "6700"),  # one byte too many
    (APPEND_PURCHASE, VISIT_REG, "6A80"),
])
def test_medical_record_format_is_checked(env_sm4, append, record, sw):
    e = env_sm4
    assert e.start() == 0x9000
    assert e.tx(SELECT_DF04) == "9000"
    assert e.tx(e.ext_auth_apdu()) == "9000"
    assert e.tx(append + record) == sw
    s = ssse_state(e.card)
    # a refused write neither lands nor activates
    assert (s["lifecycle"], s["medical visits"], s["pharmacy purchases"]) == ("issued", 0, 0)


@pytest.mark.parametrize("append, read, make", [
    (APPEND_VISIT, READ_VISIT, visit),
    (APPEND_PURCHASE, READ_PURCHASE, lambda n: "5215" + P_CODE + "01" + "20261121" + f"{n:08X}"),
])
def test_medical_capacity_is_30(env_sm4, append, read, make):
    e = env_sm4
    assert e.start() == 0x9000
    assert e.tx(SELECT_DF04) == "9000"
    assert e.tx(e.ext_auth_apdu()) == "9000"
    for n in range(1, 31):
        assert e.tx(append + make(n)) == "9000", n
    assert e.tx(append + make(31)) == "6A84"
    assert e.tx(read.format(30)) == make(30) + "9000"
    assert e.tx(read.format(1)) == make(1) + "9000"
    assert e.tx(read.format(31)) == "6A83"
    e.fresh_session()
    assert e.tx(SELECT_DF04) == "9000"
    assert e.tx(e.ext_auth_apdu()) == "9000"
    assert e.tx(append + make(32)) == "6A84"  # still full in a new session


# -- loss lock --------------------------------------------------------------------------------------


def refused_while_locked(e):
    """Every SSSE command but GET CHALLENGE, APPLICATION UNBLOCK and CARD BLOCK, each well-formed
    and (for the keyed ones) with a valid cryptogram or MAC made just before it is sent:
    (name, function returning the APDU)."""
    return [
        ("READ RECORD EF05 01", lambda: "00B2012C00"),
        ("READ RECORD EF06 08", lambda: "00B2083000"),
        ("VERIFY", lambda: VERIFY_OK),
        ("VERIFY wrong", lambda: VERIFY_WRONG),
        ("VERIFY status", lambda: "00200000"),
        ("CHANGE PIN", lambda: CHANGE_TO_NEW),
        ("EXTERNAL AUTHENTICATE", e.ext_auth_apdu),
        ("INTERNAL AUTHENTICATE", lambda: "008800001001020304050607081122334455667788"),
        ("RELOAD PIN", e.reload_apdu),
        ("PIN UNBLOCK", e.pin_unblock_apdu),
        ("APPLICATION BLOCK", e.lock_apdu),
        ("APPLICATION BLOCK permanent", lambda: e.lock_apdu(permanent=True)),
        ("READ BINARY EF07", lambda: "00B0870000"),
    ]


def assert_locked(e, reason: str, lock: str = "locked"):
    """SELECT: FCI + 6283 and the SSSE is selected; only the three commands pass; nothing changes."""
    e.reader.reset()
    assert e.tx(SELECT_SSSE) == e.fci + "6283"
    assert e.tx(SELECT_SSSE_BY_FID) == e.fci + "6283"
    before = ssse_state(e.card)
    assert before["lock"] == f"{lock} ({reason})"
    for name, make in refused_while_locked(e):
        assert e.tx(make()) == "6985", name
    assert e.tx(SELECT_DF04) in ("6283", "6985")  # SPEC §2.4 does not say which; never 9000
    assert e.tx(APPEND_VISIT + VISIT_REG) == "6985"
    challenge = bytes.fromhex(e.tx("0084000008"))
    assert len(challenge) == 10 and challenge[-2:] == b"\x90\x00"
    after = ssse_state(e.card)
    assert after == before  # no try spent, no PIN changed, no record written
    assert after["PIN tries left"] == "6 of 6" and after["RK tries left"] == "3 of 3"


def test_loss_lock(env):
    assert env.start() == 0x9000
    assert env.terminal.lock() == 0x9000
    assert env.tx("00B2012C00") == "6985"  # at once, in the same session
    assert ssse_state(env.card)["lock"] == "locked (holder)"
    assert_locked(env, "holder")


def test_selected_while_locked_is_the_ssse_not_the_mf(env_sm4):
    e = env_sm4
    assert e.start() == 0x9000
    assert e.terminal.lock() == 0x9000
    e.reader.reset()
    # at the MF, VERIFY finds no PIN (6A88) and GET CHALLENGE does not exist (6D00)
    assert e.tx(VERIFY_OK) == "6A88"
    assert e.tx("0084000008") == "6D00"
    assert e.tx(SELECT_SSSE) == e.fci + "6283"
    assert e.tx(VERIFY_OK) == "6985"
    assert e.tx("0084000008")[-4:] == "9000"


def test_locked_select_on_t0(env_sm4):
    e = env_sm4
    assert e.start() == 0x9000
    assert e.terminal.lock() == 0x9000
    r = SimReader(e.card, protocol="T=0")
    r.reset()
    assert tx(r, SELECT_SSSE) == "611B"
    assert tx(r, "00C000001B") == e.fci + "6283"


def test_unlock_with_valid_mac(env):
    assert env.start() == 0x9000
    assert env.terminal.lock() == 0x9000
    env.reader.reset()
    assert env.tx(SELECT_SSSE) == env.fci + "6283"
    assert env.tx(env.unlock_apdu()) == "9000"
    assert ssse_state(env.card)["lock"] == "none"
    assert env.tx("00B2012C00") == EF05[1] + "9000"  # at once
    env.fresh_session()
    assert env.tx("00B2012C00") == EF05[1] + "9000"
    assert env.tx(VERIFY_OK) == "9000"
    assert env.tx("00B2083000") == ITEM_08 + "9000"
    assert env.terminal.register(date=D) == 0x9000
    assert env.tx(CHANGE_TO_NEW) == "9000"
    assert ssse_state(env.card)["lifecycle"] == "active"


def test_unlock_with_wrong_mac_keeps_the_lock(env):
    assert env.start() == 0x9000
    assert env.terminal.lock() == 0x9000
    env.reader.reset()
    assert env.tx(SELECT_SSSE) == env.fci + "6283"
    apdu = env.unlock_apdu(corrupt=True)
    assert env.tx(apdu) == "6988"
    right = apdu[:-8] + f"{int(apdu[-8:-6], 16) ^ 1:02X}" + apdu[-6:]
    assert env.tx(right) == "6984"  # the challenge was consumed by the failed attempt
    assert env.tx("00B2012C00") == "6985"
    assert ssse_state(env.card)["lock"] == "locked (holder)"
    assert_locked(env, "holder")


def test_lock_with_wrong_mac_does_not_lock(env):
    assert env.start() == 0x9000
    assert env.tx(env.lock_apdu(corrupt=True)) == "6988"
    assert env.tx(env.lock_apdu(permanent=True, corrupt=True)) == "6988"
    assert env.tx("841E000000") == "6987"  # no MAC at all
    assert ssse_state(env.card)["lock"] == "none"
    env.fresh_session()
    assert env.tx("00B2012C00") == EF05[1] + "9000"


def test_lock_without_challenge_is_6984(env_sm4):
    e = env_sm4
    assert e.start() == 0x9000
    apdu = e.lock_apdu()
    assert e.tx(apdu) == "9000"
    assert e.tx(e.unlock_apdu()) == "9000"
    assert e.tx(apdu) == "6984"  # replay: no fresh challenge
    assert ssse_state(e.card)["lock"] == "none"


def test_lock_unlock_lock_again(env_sm4):
    e = env_sm4
    assert e.start() == 0x9000
    for _ in range(2):
        assert e.terminal.lock() == 0x9000
        assert ssse_state(e.card)["lock"] == "locked (holder)"
        assert e.terminal.unlock() == 0x9000
        assert ssse_state(e.card)["lock"] == "none"


def test_unlock_of_an_unlocked_card_changes_nothing(env_sm4):
    e = env_sm4
    assert e.start() == 0x9000
    assert e.terminal.unlock() == 0x9000
    assert ssse_state(e.card)["lock"] == "none"
    assert e.tx("00B2012C00") == EF05[1] + "9000"


def test_permanent_lock(env):
    assert env.start() == 0x9000
    assert env.terminal.lock(permanent=True) == 0x9000
    assert ssse_state(env.card)["lock"] == "blocked (permanent)"
    assert_locked(env, "permanent", lock="blocked")
    assert env.tx(env.unlock_apdu()) == "9303"
    assert env.tx(env.unlock_apdu(corrupt=True)) == "6988"
    env.reader.reset()
    assert env.tx(SELECT_SSSE) == env.fci + "6283"
    assert env.tx(env.unlock_apdu()) == "9303"
    assert env.tx("00B2012C00") == "6985"
    assert ssse_state(env.card)["lock"] == "blocked (permanent)"


def test_permanent_lock_of_a_loss_locked_card_is_refused(env_sm4):
    # SPEC §2.4: while locked only GET CHALLENGE, APPLICATION UNBLOCK and CARD BLOCK work
    e = env_sm4
    assert e.start() == 0x9000
    assert e.terminal.lock() == 0x9000
    assert e.tx(e.lock_apdu(permanent=True)) == "6985"
    assert ssse_state(e.card)["lock"] == "locked (holder)"
    assert e.terminal.unlock() == 0x9000


def test_lock_survives_reopening_the_image(tmp_path):
    path = str(tmp_path / "card.img")
    e = Env(state=path)
    assert e.start() == 0x9000
    assert e.terminal.lock() == 0x9000
    again = Env(card=Card.open(path, date=D))
    assert again.start() == 0x6283
    assert ssse_state(again.card)["lock"] == "locked (holder)"
    assert again.tx(again.unlock_apdu()) == "9000"
    assert ssse_state(Card.open(path))["lock"] == "none"


def test_permanent_lock_survives_reopening_the_image(tmp_path):
    path = str(tmp_path / "card.img")
    e = Env("default-3des", state=path)
    assert e.start() == 0x9000
    assert e.terminal.lock(permanent=True) == 0x9000
    again = Env("default-3des", card=Card.open(path, date=D))
    assert again.start() == 0x6283
    assert again.tx(again.unlock_apdu()) == "9303"


# -- activation deadline ----------------------------------------------------------------------------


def test_deadline_lock(env):
    env.card.set_date(D + datetime.timedelta(days=301))
    env.reader.reset()
    assert env.tx(SELECT_SSSE) == env.fci + "6283"
    assert ssse_state(env.card)["lock"] == "locked (deadline)"
    assert env.start() == 0x6283
    assert_locked(env, "deadline")
    # a valid MAC is not enough while the financial application is not activated
    assert env.tx(env.unlock_apdu()) == "6985"
    assert env.tx(env.unlock_apdu(corrupt=True)) == "6988"
    assert ssse_state(env.card)["lock"] == "locked (deadline)"
    activate_financial(env.card)  # at a bank outlet: the card is reset and the SSSE selected again
    assert env.start() == 0x6283
    assert env.tx(env.unlock_apdu()) == "9000"
    assert ssse_state(env.card)["lock"] == "none"
    env.fresh_session()  # no new deadline lock at power-up: the financial application is active
    assert env.tx("00B2012C00") == EF05[1] + "9000"
    assert env.tx(VERIFY_OK) == "9000"
    env.card.set_date(D + datetime.timedelta(days=3000))
    env.fresh_session()
    assert ssse_state(env.card)["lock"] == "none"


def test_deadline_day_300_is_inside_the_window(env):
    env.card.set_date(D + datetime.timedelta(days=300))
    env.fresh_session()
    assert ssse_state(env.card)["lock"] == "none"
    assert env.tx("00B2012C00") == EF05[1] + "9000"
    env.card.set_date(D + datetime.timedelta(days=301))
    env.reader.reset()
    assert env.tx(SELECT_SSSE) == env.fci + "6283"


def test_deadline_applies_at_power_up_not_mid_session(env_sm4):
    e = env_sm4
    e.fresh_session()
    e.card.set_date(D + datetime.timedelta(days=301))
    assert e.tx("00B2012C00") == EF05[1] + "9000"  # the card has no clock: nothing happens until power-up
    e.reader.reset()
    assert e.tx(SELECT_SSSE) == e.fci + "6283"


def test_financial_activation_before_the_deadline_prevents_the_lock(env):
    env.card.set_date(D + datetime.timedelta(days=30))
    env.fresh_session()
    activate_financial(env.card)
    for days in (300, 301, 3650):
        env.card.set_date(D + datetime.timedelta(days=days))
        env.fresh_session()
        assert ssse_state(env.card)["lock"] == "none"
        assert env.tx("00B2012C00") == EF05[1] + "9000"


def test_deadline_locks_an_activated_ssse_too(env_sm4):
    # the rule is about the financial application: an SSSE activated by CHANGE PIN is locked all the same
    e = env_sm4
    e.fresh_session()
    assert e.tx(CHANGE_TO_NEW) == "9000"
    e.card.set_date(D + datetime.timedelta(days=301))
    e.reader.reset()
    assert e.tx(SELECT_SSSE) == e.fci + "6283"
    s = ssse_state(e.card)
    assert (s["lifecycle"], s["lock"]) == ("active", "locked (deadline)")


def test_holder_lock_lifted_past_the_deadline_becomes_a_deadline_lock(env_sm4):
    e = env_sm4
    assert e.start() == 0x9000
    assert e.terminal.lock() == 0x9000
    e.card.set_date(D + datetime.timedelta(days=301))
    e.reader.reset()
    assert ssse_state(e.card)["lock"] == "locked (holder)"  # the holder's lock stays what it was
    assert e.tx(SELECT_SSSE) == e.fci + "6283"
    assert e.tx(e.unlock_apdu()) == "9000"
    e.reader.reset()  # next power-up: the deadline rule applies
    assert e.tx(SELECT_SSSE) == e.fci + "6283"
    assert ssse_state(e.card)["lock"] == "locked (deadline)"
    assert e.tx(e.unlock_apdu()) == "6985"


def test_card_block_works_on_a_deadline_locked_ssse(env_sm4):
    e = env_sm4
    e.card.set_date(D + datetime.timedelta(days=301))
    assert e.start() == 0x6283
    assert e.tx(e.card_block_apdu()) == "9000"
    e.reader.reset()
    assert e.tx(SELECT_SSSE) == "6A81"


@pytest.mark.parametrize("days", [180, 181])
def test_deadline_is_a_profile_setting(days):
    profile = dataclasses.replace(load_profile("default"), activation_deadline_days=180)
    card = Card.from_profile(profile, date=D)
    card.set_date(D + datetime.timedelta(days=days))
    r = SimReader(card)
    r.reset()
    locked = days > 180
    assert tx(r, SELECT_SSSE) == FCI["default"] + ("6283" if locked else "9000")
    assert ssse_state(card)["lock"] == ("locked (deadline)" if locked else "none")


def test_profile_with_an_old_issue_date_is_locked_at_first_power_up():
    profile = dataclasses.replace(load_profile("default"), issue_date=datetime.date(2025, 1, 1))
    card = Card.from_profile(profile, date=D)  # personalised 689 days after its issue date
    r = SimReader(card)
    r.reset()
    assert tx(r, SELECT_SSSE) == FCI["default"] + "6283"
    assert ssse_state(card)["lock"] == "locked (deadline)"
    assert card.store["ssse.ef05"].records[4].hex().upper() == "050420250101"


def test_deadline_lock_is_durable(tmp_path):
    path = str(tmp_path / "card.img")
    card = Card.from_profile(state=path, date=D)
    card.set_date(D + datetime.timedelta(days=301))
    SimReader(card).reset()
    # reopened on the issue date (an earlier clock): the lock pushed to the card stays
    e = Env(card=Card.open(path, date=D))
    assert e.start() == 0x6283
    assert ssse_state(e.card)["lock"] == "locked (deadline)"
    assert e.tx(e.unlock_apdu()) == "6985"
    activate_financial(e.card)
    assert ssse_state(Card.open(path))["lock"] == "locked (deadline)"  # the activation alone unlocks nothing
    assert e.start() == 0x6283
    assert e.tx(e.unlock_apdu()) == "9000"
    reopened = Card.open(path, date=D + datetime.timedelta(days=999))
    SimReader(reopened).reset()
    assert ssse_state(reopened)["lock"] == "none"


# -- card block --------------------------------------------------------------------------------------

SELECTS = [
    SELECT_SSSE,  # by name
    SELECT_SSSE_BY_FID,  # by FID
    SELECT_MF,  # MF by FID
    "00A4000000",  # MF, no data
    "00A4040000",  # MF by empty name
    "00A4040006D15600000504",  # DF04 by name
    "00A4080004DDF1EF05",  # by path
    "00A4040008" + "A000000333010101",  # the financial application (SPEC §3)
    "00A404000E" + b"1PAY.SYS.DDF01".hex().upper(),  # PSE
]


def assert_card_blocked(reader):
    for apdu in SELECTS:
        assert tx(reader, apdu) == "6A81", apdu


def test_card_block(env):
    assert env.start() == 0x9000
    assert env.terminal.card_block() == 0x9000
    assert ssse_state(env.card)["card"] == "blocked"
    assert_card_blocked(env.reader)
    env.reader.reset()
    assert_card_blocked(env.reader)
    env.reader.power_off()
    env.reader.reset()
    assert_card_blocked(env.reader)
    # final: no challenge, so no MAC-protected command can undo it
    with pytest.raises(TerminalError):
        env.terminal.unlock()
    assert env.start() == 0x6A81


def test_card_block_with_wrong_mac_does_nothing(env):
    assert env.start() == 0x9000
    assert env.tx(env.card_block_apdu(corrupt=True)) == "6988"
    assert ssse_state(env.card)["card"] == "ok"
    env.fresh_session()


@pytest.mark.parametrize("permanent", [False, True])
def test_card_block_works_on_a_locked_ssse(env_sm4, permanent):
    e = env_sm4
    assert e.start() == 0x9000
    assert e.terminal.lock(permanent=permanent) == 0x9000
    e.reader.reset()
    assert e.tx(SELECT_SSSE) == e.fci + "6283"
    assert e.tx(e.card_block_apdu()) == "9000"
    assert_card_blocked(e.reader)


@pytest.mark.parametrize("profile", PROFILES)
def test_card_block_survives_reopening_the_image(tmp_path, profile):
    path = str(tmp_path / "card.img")
    e = Env(profile, state=path)
    assert e.start() == 0x9000
    assert e.terminal.card_block() == 0x9000
    for _ in range(2):
        card = Card.open(path, date=D + datetime.timedelta(days=5000))
        r = SimReader(card)
        r.reset()
        assert_card_blocked(r)
        assert ssse_state(card)["card"] == "blocked"


# -- the financial application is not affected by SSSE locks (SPEC §2.4) -----------------------------

SELECT_FIN = "00A4040008A000000333010101"


@pytest.mark.parametrize("how", ["holder", "permanent", "deadline"])
def test_financial_application_unaffected_by_ssse_locks(env_sm4, how):
    e = env_sm4
    if "fin" not in e.card.applets:
        pytest.skip("no financial application on this card yet")
    e.reader.reset()
    fin_fci = e.tx(SELECT_FIN)
    assert fin_fci.endswith("9000")
    if how == "deadline":
        e.card.set_date(D + datetime.timedelta(days=301))
    else:
        assert e.start() == 0x9000
        assert e.terminal.lock(permanent=how == "permanent") == 0x9000
    e.reader.reset()
    assert e.tx(SELECT_SSSE) == e.fci + "6283"
    assert e.tx(SELECT_FIN) == fin_fci
    e.reader.reset()
    assert e.tx(SELECT_FIN) == fin_fci
