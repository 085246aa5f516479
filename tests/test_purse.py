"""The DF04 medical offline purse (chip/apps/purse.py; LD/T 32 P5 §7, P7 §11-12, §14-15).

The purse runs here over a small fake applet (the interface chip/apps/ssse.py gives
it: store, card.random, algorithm, card_key, pin_satisfied, medical_activation,
challenge) on a real chip.kernel.store.Store with a MemoryBackend, and a tiny card OS
that commits after a handler returns and rolls back when it raises CardError,
as chip/card.py does. Every expected MAC1, MAC2 and TAC comes from the
independent oracle tests/oracle.py, never from chip.kernel.crypto.
"""

import types

import oracle
import pytest
from helpers import CARD_DATE, HISTORICAL, PROFILE_FAMILY, REGION, ROOTS, SELECT_DF04, SELECT_SSSE, VERIFY_OK

from chip import Card
from chip.apps.purse import Purse
from chip.iso.apdu import parse
from chip.iso.sw import CardError
from chip.kernel.crypto import SM4, TDES
from chip.kernel.image import MemoryBackend
from chip.kernel.power import PowerLoss
from chip.kernel.secure import Challenge
from chip.kernel.store import Store
from reader import SimReader

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

FAMILIES = {"des": TDES, "sm4": SM4}
KEYS = {  # card keys of DF04 (16 bytes in both families: none is a short DES key)
    "df04_dpk": bytes(range(0xA0, 0xB0)),
    "df04_dlk": bytes(range(0xB0, 0xC0)),
    "df04_dtk": bytes(range(0xC0, 0xD0)),
    "df04_dsk": bytes(range(0xD0, 0xE0)),
}
TERMINAL = bytes.fromhex("110100000001")
T_LOAD, T_PURCHASE = 0x31, 0x32
ALG_FLAG = {"des": 0x01, "sm4": 0x03}


class FakeCard:
    def __init__(self):
        self.n = 0

    def random(self, length):
        self.n += 1
        return bytes((self.n * 37 + i * 11) & 0xFF for i in range(length))


class FakeApplet:
    """What the SSSE offers the purse (the brief's interface)."""

    def __init__(self, family, balance=10_000, start_day="0101"):
        self.family = family
        self.store = Store(MemoryBackend())
        Purse.personalize(self.store, types.SimpleNamespace(medical_balance=balance, medical_start_day=start_day))
        self.store.commit()
        self.card = FakeCard()
        self.algorithm = FAMILIES[family]
        self.challenge = Challenge()
        self.pin = True
        self.activations = 0
        self.activation_error = None
        self.purse = Purse(self)

    def card_key(self, name):
        return KEYS[name]

    def pin_satisfied(self):
        return self.pin

    def medical_activation(self):
        if self.activation_error is not None:
            raise CardError(self.activation_error)
        self.activations += 1

    # -- a tiny card OS ---------------------------------------------------------
    def send(self, apdu: str):
        """One command: (data, sw); commit on success, roll back on CardError."""
        cmd = parse(bytes.fromhex(apdu.replace(" ", "")))
        handler = getattr(self.purse, Purse.COMMANDS[cmd.cla << 8 | cmd.ins])
        try:
            data, sw = handler(cmd)
        except CardError as error:
            self.store.abort()
            return b"", error.sw
        self.store.commit()
        return data, sw

    @property
    def vars(self):
        return self.store["df04.purse"]

    @property
    def records(self):
        return self.store["df04.ef08"].records

    def snapshot(self):
        return dict(self.vars.dump()), self.records

    def set(self, **values):
        for name, value in values.items():
            self.store.write(self.vars, name, value)
        self.store.commit()


def h(data: bytes) -> str:
    return data.hex().upper()


def u32(n):
    return n.to_bytes(4, "big")


def u16(n):
    return n.to_bytes(2, "big")


# -- host and PSAM sides, from the oracle ---------------------------------------------------------

class Host:
    """The load host (P7 §11.3-11.5) and the purchase PSAM (P7 §12.3, §12.7), on the oracle."""

    def __init__(self, family, keys=None):
        self.family = family
        self.keys = keys or KEYS

    def init_load(self, amount, key_index=1):
        return f"B0280001 0B {key_index:02X}{h(u32(amount))}{h(TERMINAL)} 10"

    def check_init_load(self, answer, amount):
        balance, counter = answer[0:4], int.from_bytes(answer[4:6], "big")
        random, mac1 = answer[8:12], answer[12:16]
        ks = oracle.seslk(self.family, self.keys["df04_dlk"], random, counter)
        assert mac1 == oracle.mac4(self.family, ks, balance + u32(amount) + bytes((T_LOAD,)) + TERMINAL)
        return ks, counter

    def credit(self, ks, amount, host_time="20260315103000"):
        mac2 = oracle.mac4(self.family, ks, u32(amount) + bytes((T_LOAD,)) + TERMINAL + bytes.fromhex(host_time))
        return f"B02A0000 0B {host_time}{h(mac2)} 04", mac2

    def load_tac(self, new_balance, counter, amount, host_time="20260315103000"):
        return oracle.tac(self.family, self.keys["df04_dtk"], u32(new_balance) + u16(counter) + u32(amount)
                          + bytes((T_LOAD,)) + TERMINAL + bytes.fromhex(host_time))

    @staticmethod
    def init_purchase(account, self_pay=0, fund=0, key_index=1):
        return f"B0280101 13 {key_index:02X}{h(u32(account) + u32(self_pay) + u32(fund))}{h(TERMINAL)} 16"

    def debit(self, answer, account, self_pay=0, fund=0, time="20260315103000", tx_no="00001234", mac1=None):
        random, counter = answer[18:22], int.from_bytes(answer[14:16], "big")
        ks = oracle.sespk(self.family, self.keys["df04_dpk"], random, counter, bytes.fromhex(tx_no))
        amounts = u32(account) + u32(self_pay) + u32(fund)
        if mac1 is None:
            mac1 = oracle.mac4(self.family, ks, amounts + bytes((T_PURCHASE,)) + TERMINAL + bytes.fromhex(time))
        mac2 = oracle.mac4(self.family, ks, amounts)
        tac = oracle.tac(self.family, self.keys["df04_dtk"], amounts + bytes((T_PURCHASE,)) + TERMINAL
                         + bytes.fromhex(tx_no) + bytes.fromhex(time))
        return f"B02C0100 0F {tx_no}{time}{h(mac1)} 08", tac, mac2, counter


@pytest.fixture(params=["des", "sm4"])
def family(request):
    return request.param


@pytest.fixture
def card(family):
    return FakeApplet(family)


@pytest.fixture
def host(family):
    return Host(family)


def load(card, host, amount, host_time="20260315103000"):
    answer, sw = card.send(host.init_load(amount))
    assert sw == 0x9000
    ks, counter = host.check_init_load(answer, amount)
    command, _ = host.credit(ks, amount, host_time)
    tac, sw = card.send(command)
    assert sw == 0x9000
    return tac, counter


def purchase(card, host, account, self_pay=0, fund=0, time="20260315103000", tx_no="00001234"):
    answer, sw = card.send(host.init_purchase(account, self_pay, fund))
    assert sw == 0x9000, hex(sw)
    command, tac, mac2, counter = host.debit(answer, account, self_pay, fund, time, tx_no)
    data, sw = card.send(command)
    assert sw == 0x9000, hex(sw)
    assert data == tac + mac2
    return tac, mac2, counter


# -- end to end ---------------------------------------------------------------------------------

def test_load_then_purchase(card, host, family):
    # INITIALIZE FOR LOAD: balance 4 || counter 2 || key version || algorithm id || random 4 || MAC1 4
    answer, sw = card.send(host.init_load(5_000))
    assert sw == 0x9000 and len(answer) == 16
    assert answer[:4] == u32(10_000) and answer[4:6] == u16(0)
    assert answer[6] == 0x01 and answer[7] == ALG_FLAG[family]
    ks, _counter = host.check_init_load(answer, 5_000)
    command, host_mac2 = host.credit(ks, 5_000)
    tac, sw = card.send(command)
    assert (sw, tac) == (0x9000, host.load_tac(15_000, 0, 5_000))
    assert card.vars.balance == 15_000 and card.vars.online == 1
    assert card.send("B026000104") == (u32(15_000), 0x9000)

    # INITIALIZE FOR PURCHASE: CIA 4 || SPIP 4 || SPFP 4 || year 2 || counter 2 || version || alg || random 4
    answer, sw = card.send(host.init_purchase(3_000, 1_000, 2_000))
    assert sw == 0x9000 and len(answer) == 22
    assert answer[:14] == u32(15_000) + u32(0) + u32(0) + bytes(2)
    assert answer[14:16] == u16(0) and answer[16] == 0x01 and answer[17] == ALG_FLAG[family]
    command, tac, mac2, _ = host.debit(answer, 3_000, 1_000, 2_000, time="20260315103000", tx_no="0000ABCD")
    assert card.send(command) == (tac + mac2, 0x9000)
    assert card.activations == 1

    assert card.send("B026000104") == (u32(12_000), 0x9000)
    assert card.send("B026000206") == (u32(1_000) + bytes.fromhex("2026"), 0x9000)
    assert card.send("B026000306") == (u32(2_000) + bytes.fromhex("2026"), 0x9000)
    assert card.vars.offline == 1 and card.vars.online == 1

    # EF08, newest first, 28 bytes each
    time = bytes.fromhex("20260315103000")
    assert card.records == (
        u16(0) + bytes((T_PURCHASE,)) + TERMINAL + time + u32(3_000) + u32(1_000) + u32(2_000),
        u16(0) + bytes((T_LOAD,)) + TERMINAL + time + u32(5_000) + bytes(8),
    )
    assert all(len(r) == 28 for r in card.records)

    # GET TRANSACTION PROOF: MAC || TAC
    assert card.send("B02E003202000008") == (mac2 + tac, 0x9000)
    assert card.send("B02E003102000008") == (host_mac2 + host.load_tac(15_000, 0, 5_000), 0x9000)


def test_counters_go_up_and_the_second_transaction_uses_the_new_value(card, host):
    load(card, host, 100)
    tac, counter = load(card, host, 200)
    assert counter == 1 and tac == host.load_tac(10_300, 1, 200)
    purchase(card, host, 10)
    _, _, counter = purchase(card, host, 20, tx_no="FFFF0002")
    assert counter == 1
    assert card.vars.online == 2 and card.vars.offline == 2 and card.vars.balance == 10_270
    assert [int.from_bytes(r[:2], "big") for r in card.records] == [1, 0, 1, 0]


def test_sespk_takes_the_right_two_bytes_of_the_terminal_transaction_number(card, host):
    answer, _ = card.send(host.init_purchase(10))
    # a MAC1 from a session key made of the *left* two bytes fails
    random = answer[18:22]
    wrong_ks = oracle.process_key(host.family, KEYS["df04_dpk"], random + u16(0) + bytes.fromhex("1234"))
    mac1 = oracle.mac4(host.family, wrong_ks, u32(10) + bytes(8) + bytes((T_PURCHASE,)) + TERMINAL
                       + bytes.fromhex("20260315103000"))
    assert card.send(f"B02C01000F 12345678 20260315103000 {h(mac1)} 08") == (b"", 0x9302)


def test_le_00_and_missing_le_are_accepted(card, host):
    answer, sw = card.send(host.init_load(5).replace(" 10", ""))  # case 4 sent as case 3 (T=0)
    assert sw == 0x9000
    ks, _ = host.check_init_load(answer, 5)
    command, _ = host.credit(ks, 5)
    assert card.send(command[:-3] + " 00")[1] == 0x9000
    assert card.send("B026000100") == (u32(10_005), 0x9000)


# -- status words -------------------------------------------------------------------------------

@pytest.mark.parametrize("apdu", [
    "B02A00000B 20260315103000 00000000 04",
    "B02C01000F 00000001 20260315103000 00000000 08",
])
def test_6901_from_idle(card, apdu):
    assert card.send(apdu) == (b"", 0x6901)


def test_6901_credit_in_purchase_state_and_debit_in_load_state(card, host):
    answer, _ = card.send(host.init_purchase(10))
    command, *_ = host.debit(answer, 10)
    assert card.send("B02A00000B 20260315103000 00000000 04") == (b"", 0x6901)
    assert card.purse.state == "idle"
    assert card.send(command) == (b"", 0x6901)  # the purchase session is gone

    answer, _ = card.send(host.init_load(10))
    ks, _ = host.check_init_load(answer, 10)
    assert card.send("B02C01000F 00000001 20260315103000 00000000 08") == (b"", 0x6901)
    credit, _ = host.credit(ks, 10)
    assert card.send(credit) == (b"", 0x6901)
    assert card.vars.balance == 10_000


@pytest.mark.parametrize("apdu", [
    "B028000110 01 00000001 110100000001 00000000 00",  # INITIALIZE FOR LOAD, Lc 10
    "B02800010A 01 00000001 1101000000",
    "B028010112 01 00000001 00000000 00000000 1101000000",  # INITIALIZE FOR PURCHASE, Lc 12
    "B028010114 01 00000001 00000000 00000000 110100000001 00",
    "B0280001",
])
def test_initialize_6700(card, apdu):
    assert card.send(apdu) == (b"", 0x6700)


def test_wrong_le_6700(card, host):
    assert card.send(host.init_load(1)[:-2] + "08")[1] == 0x6700
    assert card.send(host.init_purchase(1)[:-2] + "10")[1] == 0x6700
    assert card.send("B026000106")[1] == 0x6700
    assert card.send("B026000204")[1] == 0x6700
    assert card.send("B0260001")[1] == 0x6700  # no Le at all
    assert card.send("B0260001 01 00 04")[1] == 0x6700  # data
    assert card.send("B02E0032 03 000000 08")[1] == 0x6700
    assert card.send("B02E0032 02 0000 04")[1] == 0x6700
    assert card.send("B056010004")[1] == 0x6700
    assert card.send("B0560000 03 010100")[1] == 0x6700


def test_credit_and_debit_6700(card, host):
    _answer, _ = card.send(host.init_load(10))
    assert card.send("B02A00000A 202603151030 00000000")[1] == 0x6700
    assert card.purse.state == "idle"
    card.send(host.init_purchase(10))
    assert card.send("B02C01000E 00000001 20260315103000 000000")[1] == 0x6700
    assert card.send("B02C01000F 00000001 20260315103000 00000000 04")[1] == 0x6901  # idle after the 6700


@pytest.mark.parametrize("apdu", [
    "B02802010B 01 00000001 110100000001",
    "B02800000B 01 00000001 110100000001",
    "B028010013 01 00000001 00000000 00000000 110100000001",
    "B0260000 04", "B0260004 06", "B0260101 04",
    "B02E0100 02 0000 08", "B02E0033 02 0000 08", "B02E0001 02 0000 08",
    "B0560200 02", "B0560101 02", "B0560001 06 0101 00000000",
])
def test_6a86(card, apdu):
    assert card.send(apdu) == (b"", 0x6A86)


def test_6a86_credit_debit_parameters(card, host):
    card.send(host.init_load(10))
    assert card.send("B02A01000B 20260315103000 00000000")[1] == 0x6A86
    card.send(host.init_purchase(10))
    assert card.send("B02C00000F 00000001 20260315103000 00000000")[1] == 0x6A86


def test_6982_without_pin(card, host):
    card.pin = False
    assert card.send(host.init_load(10)) == (b"", 0x6982)
    assert card.send(host.init_purchase(10)) == (b"", 0x6982)
    assert card.send("B026000104") == (b"", 0x6982)
    assert card.send("B026000206") == (b"", 0x6982)
    assert card.send("B056010002") == (bytes.fromhex("0101"), 0x9000)  # the start day is no secret


def test_9302_bad_mac2_changes_nothing(card, host):
    answer, _ = card.send(host.init_load(10))
    before = card.snapshot()
    assert card.send("B02A00000B 20260315103000 00000000 04") == (b"", 0x9302)
    assert card.snapshot() == before and card.purse.state == "idle"
    ks, _ = host.check_init_load(answer, 10)
    command, _ = host.credit(ks, 10)
    assert card.send(command) == (b"", 0x6901)  # the session ended with the failure


def test_failed_debit_changes_nothing(card, host):
    load(card, host, 500)
    answer, _ = card.send(host.init_purchase(300, 100, 200))
    before = card.snapshot()
    generation = card.store.backend.generation
    command, *_ = host.debit(answer, 300, 100, 200, mac1=bytes(4))
    assert card.send(command) == (b"", 0x9302)
    assert card.snapshot() == before
    assert card.store.backend.generation == generation and not card.store.journal
    assert card.activations == 0 and card.purse.state == "idle"
    good, *_ = host.debit(answer, 300, 100, 200)
    assert card.send(good) == (b"", 0x6901)
    assert card.send("B02E003202000008") == (b"", 0x9406)


def test_9401_account_amount_over_balance(card, host):
    assert card.send(host.init_purchase(10_001)) == (b"", 0x9401)
    assert card.send(host.init_purchase(10_000))[1] == 0x9000
    # self-pay and fund amounts are not paid from the account
    assert card.send(host.init_purchase(0, 99_999_999, 99_999_999))[1] == 0x9000


def test_9402_counters_at_ffff(card, host):
    card.set(online=0xFFFE, offline=0xFFFE)
    _tac, counter = load(card, host, 1)
    assert counter == 0xFFFE and card.vars.online == 0xFFFF
    assert card.send(host.init_load(1)) == (b"", 0x9402)
    purchase(card, host, 1)
    assert card.vars.offline == 0xFFFF
    assert card.send(host.init_purchase(1)) == (b"", 0x9402)
    assert card.vars.online == 0xFFFF and card.vars.offline == 0xFFFF


def test_9403_unknown_key_index(card, host):
    assert card.send(host.init_load(1, key_index=2)) == (b"", 0x9403)
    assert card.send(host.init_purchase(1, key_index=0)) == (b"", 0x9403)
    assert card.send(host.init_purchase(1, key_index=3)) == (b"", 0x9403)


def test_9406_no_proof(card, host):
    assert card.send("B02E003102000008") == (b"", 0x9406)
    assert card.send("B02E003202000008") == (b"", 0x9406)
    load(card, host, 10)
    assert card.send("B02E003102000108") == (b"", 0x9406)  # wrong sequence number
    assert card.send("B02E003202000008") == (b"", 0x9406)  # no purchase yet
    assert card.send("B02E003102000008")[1] == 0x9000


def test_proof_is_the_last_of_its_type_and_survives_a_new_session(card, host):
    _tac0, _mac20, _ = purchase(card, host, 10)
    tac1, mac21, _ = purchase(card, host, 20, tx_no="00000002")
    assert card.send("B02E003202000008") == (b"", 0x9406)  # replaced by the next purchase
    card.purse = Purse(card)  # the card was pulled and inserted again
    assert card.send("B02E003202000108") == (mac21 + tac1, 0x9000)


def test_6985_balance_would_pass_ffffffff(family, host):
    card = FakeApplet(family, balance=0xFFFFFFF0)
    assert card.send(host.init_load(0x10)) == (b"", 0x6985)
    load(card, host, 0x0F)
    assert card.vars.balance == 0xFFFFFFFF


def test_6985_annual_total_would_pass_ffffffff(card, host):
    card.set(year=2026, spip=0xFFFFFFFF)
    answer, _ = card.send(host.init_purchase(1, 1, 0))
    command, *_ = host.debit(answer, 1, 1, 0)
    before = card.snapshot()
    assert card.send(command) == (b"", 0x6985)
    assert card.snapshot() == before


def test_6a80_time_is_no_date(card, host):
    answer, _ = card.send(host.init_purchase(1))
    command, *_ = host.debit(answer, 1, time="20261301103000")  # a valid MAC1 over month 13
    assert card.send(command) == (b"", 0x6A80)
    answer, _ = card.send(host.init_load(1))
    ks, _ = host.check_init_load(answer, 1)
    command, _ = host.credit(ks, 1, host_time="2026031510300A")
    assert card.send(command) == (b"", 0x6A80)
    assert card.vars.balance == 10_000 and card.records == ()


# -- the state machine (P5 table 49) ------------------------------------------------------------

def test_get_balance_and_proof_keep_the_purchase_state(card, host):
    load(card, host, 10)
    answer, _ = card.send(host.init_purchase(5))
    assert card.send("B026000104")[1] == 0x9000
    assert card.send("B026000306")[1] == 0x9000
    assert card.send("B02E003102000008")[1] == 0x9000
    assert card.send("B056010002")[1] == 0x9000
    command, tac, mac2, _ = host.debit(answer, 5)
    assert card.send(command) == (tac + mac2, 0x9000)


def test_get_balance_keeps_the_load_state(card, host):
    answer, _ = card.send(host.init_load(7))
    assert card.send("B026000104")[1] == 0x9000
    assert card.send("B02E003202000008")[1] == 0x9406  # a failed read ends the session
    ks, _ = host.check_init_load(answer, 7)
    command, _ = host.credit(ks, 7)
    assert card.send(command) == (b"", 0x6901)


def test_failed_get_balance_returns_to_idle(card, host):
    answer, _ = card.send(host.init_purchase(5))
    card.pin = False
    assert card.send("B026000104")[1] == 0x6982
    command, *_ = host.debit(answer, 5)
    assert card.send(command) == (b"", 0x6901)


def test_initialize_switches_the_state(card, host):
    card.send(host.init_load(5))
    answer, _ = card.send(host.init_purchase(5))
    assert card.purse.state == "purchase"
    command, tac, mac2, _ = host.debit(answer, 5)
    assert card.send(command) == (tac + mac2, 0x9000)
    assert card.purse.state == "idle"
    assert card.send(command) == (b"", 0x6901)  # a DEBIT once only


def test_a_new_initialize_starts_a_new_session(card, host):
    first, _ = card.send(host.init_purchase(5))
    second, _ = card.send(host.init_purchase(5))
    assert first[18:22] != second[18:22]  # a fresh pseudo-random
    stale, *_ = host.debit(first, 5)
    assert card.send(stale) == (b"", 0x9302)
    assert card.vars.balance == 10_000


def test_failed_initialize_returns_to_idle(card, host):
    answer, _ = card.send(host.init_purchase(5))
    assert card.send(host.init_purchase(99_999)) == (b"", 0x9401)
    command, *_ = host.debit(answer, 5)
    assert card.send(command) == (b"", 0x6901)


def test_reset_returns_to_idle(card, host):
    answer, _ = card.send(host.init_purchase(5))
    card.purse.reset()
    command, *_ = host.debit(answer, 5)
    assert card.send(command) == (b"", 0x6901)


# -- the year rule of P7 §12.6 ------------------------------------------------------------------

def test_year_rule_across_the_year_boundary(family, host):
    card = FakeApplet(family, balance=100_000, start_day="0701")
    # first purchase: year 0000 recorded, so the settlement year is set: 2026-03-01 < 07-01 -> 2025
    purchase(card, host, 100, 10, 20, time="20260301090000")
    assert card.send("B026000206") == (u32(10) + bytes.fromhex("2025"), 0x9000)
    assert card.send("B026000306") == (u32(20) + bytes.fromhex("2025"), 0x9000)
    # 2026-06-30: n = 20260630 - 20250701 = 9929 < 10000 -> adds up
    purchase(card, host, 100, 1, 2, time="20260630235959", tx_no="00000002")
    assert (card.vars.year, card.vars.spip, card.vars.spfp) == (2025, 11, 22)
    # 2026-07-01: n = 10000 -> a new settlement year, totals restart
    purchase(card, host, 100, 5, 6, time="20260701000000", tx_no="00000003")
    assert (card.vars.year, card.vars.spip, card.vars.spfp) == (2026, 5, 6)
    answer, _ = card.send(host.init_purchase(0))
    assert answer[4:14] == u32(5) + u32(6) + bytes.fromhex("2026")
    assert card.vars.balance == 100_000 - 300


@pytest.mark.parametrize("year, start, today, expected", [
    (0, "0101", 20260315, (2026, 7, 8)),  # nothing recorded yet
    (2026, "0101", 20261231, (2026, 17, 28)),  # same year
    (2026, "0101", 20270101, (2027, 7, 8)),  # new year
    (2026, "0101", 20280601, (2028, 7, 8)),  # years later
    (2026, "0701", 20270630, (2026, 17, 28)),
    (2026, "0701", 20280101, (2027, 7, 8)),  # settlement year 2027 runs 2027-07-01 .. 2028-06-30
    (2026, "0101", 20251231, (2026, 17, 28)),  # n < 0: literally "n < 10000", adds up
])
def test_year_rule(year, start, today, expected):
    assert Purse.year_rule(year, start, today, 10, 20, 7, 8) == expected


# -- EF08 ---------------------------------------------------------------------------------------

def test_ef08_newest_first_and_capped_at_30(family, host):
    card = FakeApplet(family, balance=0)
    for i in range(17):
        load(card, host, 1_000 + i)
        purchase(card, host, 1, time="20260315103000", tx_no=f"{i:08X}")
    records = card.records
    assert len(records) == 30
    assert records[0][:3] == u16(16) + bytes((T_PURCHASE,))
    assert records[1][:3] == u16(16) + bytes((T_LOAD,)) and records[1][16:20] == u32(1_016)
    assert records[-1][:3] == u16(2) + bytes((T_LOAD,))  # the 4 oldest have dropped out
    assert card.vars.online == 17 and card.vars.offline == 17


# -- all or nothing -----------------------------------------------------------------------------

@pytest.mark.parametrize("landed", [False, True])
def test_power_cut_at_the_debit_commit(card, host, landed):
    load(card, host, 500)
    answer, _ = card.send(host.init_purchase(300, 1, 2))
    before = card.snapshot()
    command, tac, mac2, _ = host.debit(answer, 300, 1, 2)

    def cut(point, _):
        raise PowerLoss(point, landed)

    card.store.backend.write_point = cut
    with pytest.raises(PowerLoss):
        card.send(command)
    card.store.backend.write_point = None
    card.purse.reset()  # power-up
    v = card.vars
    if landed:
        assert (v.balance, v.offline, v.spip, v.spfp, len(card.records)) == (10_200, 1, 1, 2, 2)
        assert card.send("B02E003202000008") == (mac2 + tac, 0x9000)
    else:
        assert card.snapshot() == before
        assert card.send("B02E003202000008") == (b"", 0x9406)
        answer, _ = card.send(host.init_purchase(300, 1, 2))
        assert answer[14:16] == u16(0)  # the counter was never consumed: no transaction used it


def test_activation_refused_fails_the_debit(card, host):
    card.activation_error = 0x6985
    answer, _ = card.send(host.init_purchase(5))
    command, *_ = host.debit(answer, 5)
    before = card.snapshot()
    assert card.send(command) == (b"", 0x6985)
    assert card.snapshot() == before


# -- starting day -------------------------------------------------------------------------------

def update_day(card, mmdd: str, challenge: bytes, mac: bytes | None = None):
    if mac is None:
        ks = oracle.process_key(card.family, KEYS["df04_dsk"], challenge)
        mac = oracle.mac4(card.family, ks, bytes.fromhex("B056000006" + mmdd))
    return card.send(f"B056000006 {mmdd} {h(mac)}")


@pytest.mark.parametrize("length", [4, 8, 16])
def test_update_starting_day_with_dsk(card, length):
    challenge = card.challenge.issue(card.card.random, length)
    assert update_day(card, "0701", challenge) == (b"", 0x9000)
    assert card.send("B056010002") == (bytes.fromhex("0701"), 0x9000)
    assert card.vars.start_day == "0701"
    assert update_day(card, "0801", challenge) == (b"", 0x6982)  # the challenge was used up


def test_update_starting_day_refusals(card):
    assert card.send("B056000002 0701") == (b"", 0x6982)  # table 73's form carries no DSK authentication
    assert update_day(card, "0701", b"\x00" * 8) == (b"", 0x6982)  # no challenge
    challenge = card.challenge.issue(card.card.random, 8)
    assert update_day(card, "0701", challenge, mac=bytes(4)) == (b"", 0x6982)
    assert card.challenge.value is None
    for bad in ("1301", "0230", "0000", "01AA"):
        challenge = card.challenge.issue(card.card.random, 8)
        assert update_day(card, bad, challenge) == (b"", 0x6A80)
    challenge = card.challenge.issue(card.card.random, 8)
    assert update_day(card, "0229", challenge)[1] == 0x9000
    assert card.vars.start_day == "0229"


def test_update_starting_day_ends_a_session(card, host):
    answer, _ = card.send(host.init_purchase(5))
    challenge = card.challenge.issue(card.card.random, 8)
    assert update_day(card, "0701", challenge)[1] == 0x9000
    command, *_ = host.debit(answer, 5)
    assert card.send(command) == (b"", 0x6901)


# -- personalisation ----------------------------------------------------------------------------

@pytest.mark.parametrize("balance, start", [(-1, "0101"), (1 << 32, "0101"), (0, "1301"), (0, "101")])
def test_personalize_refuses_bad_profiles(balance, start):
    store = Store(MemoryBackend())
    with pytest.raises(ValueError):
        Purse.personalize(store, types.SimpleNamespace(medical_balance=balance, medical_start_day=start))


def test_personalized_state(card):
    v = card.vars
    assert (v.balance, v.online, v.offline, v.spip, v.spfp, v.year, v.start_day) == (10_000, 0, 0, 0, 0, 0, "0101")
    assert card.store["df04.ef08"].capacity == 30 and card.records == ()
    assert card.purse.describe()["balance"] == 10_000


# -- end to end through the card (chip.Card + reader.SimReader) ---------------------------------

# the default profile's region, ATR historical bytes and DF04 purse roots (docs/card/security.md §1);
# DPK/DLK/DTK/DSK are one-level keys (P9 appendix B)
PURSE_KEYS = ("df04_dpk", "df04_dlk", "df04_dtk", "df04_dsk")


class CardHost(Host):
    """The host/PSAM side against a real card: keys diversified by the oracle from the profile's roots."""

    def __init__(self, family):
        super().__init__(family, {name: oracle.card_key(family, bytes.fromhex(ROOTS[name]), 1, REGION, HISTORICAL)
                                  for name in PURSE_KEYS})


class Terminal:
    def __init__(self, profile, protocol):
        self.card = Card.from_profile(profile, date=CARD_DATE)
        self.reader = SimReader(self.card, protocol=protocol)
        self.reader.reset()

    def send(self, apdu: str):
        response = self.reader.transmit(bytes.fromhex(apdu.replace(" ", "")))
        return response[:-2], int.from_bytes(response[-2:], "big")

    def enter_df04(self, pin=True):
        assert self.send(SELECT_SSSE)[1] == 0x9000
        if pin:
            assert self.send(VERIFY_OK)[1] == 0x9000
        assert self.send(SELECT_DF04)[1] == 0x9000


@pytest.fixture(params=list(PROFILE_FAMILY))
def profile(request):
    return request.param


@pytest.mark.parametrize("protocol", ["T=0", "T=1"])
def test_card_load_then_purchase(profile, protocol):
    family = PROFILE_FAMILY[profile]
    terminal = Terminal(profile, protocol)
    terminal.enter_df04()
    host = CardHost(family)
    assert terminal.send("80CADF7E04") == (bytes.fromhex("DF7E0100"), 0x9000)  # issued
    tac, counter = load(terminal, host, 1_000)
    assert (counter, tac) == (0, host.load_tac(51_000, 0, 1_000))
    tac, mac2, counter = purchase(terminal, host, 2_500, 700, 1_800, time="20261122143000", tx_no="0000BEEF")
    assert counter == 0
    assert terminal.send("B026000104") == (u32(48_500), 0x9000)
    assert terminal.send("B026000206") == (u32(700) + bytes.fromhex("2026"), 0x9000)
    assert terminal.send("B026000306") == (u32(1_800) + bytes.fromhex("2026"), 0x9000)
    assert terminal.send("B02E003202000008") == (mac2 + tac, 0x9000)
    # EF08 through READ RECORD (SFI 8), newest first
    record, sw = terminal.send("00B201441C")
    assert sw == 0x9000
    assert record == (u16(0) + bytes((T_PURCHASE,)) + TERMINAL + bytes.fromhex("20261122143000")
                      + u32(2_500) + u32(700) + u32(1_800))
    assert terminal.send("00B202441C")[0][:3] == u16(0) + bytes((T_LOAD,))
    # the first medical purchase activated the SSSE (docs/card/lifecycle.md §1)
    assert terminal.send("80CADF7E04") == (bytes.fromhex("DF7E0101"), 0x9000)


def test_card_purse_needs_the_pin_and_df04(profile):
    terminal = Terminal(profile, "T=1")
    terminal.enter_df04(pin=False)
    host = CardHost(PROFILE_FAMILY[profile])
    assert terminal.send(host.init_purchase(1))[1] == 0x6982
    assert terminal.send("B026000104")[1] == 0x6982
    assert terminal.send("B056010002") == (bytes.fromhex("0101"), 0x9000)
    assert terminal.send(VERIFY_OK)[1] == 0x9000
    assert terminal.send("B026000104") == (u32(50_000), 0x9000)
    assert terminal.send(SELECT_SSSE)[1] == 0x9000
    assert terminal.send("B026000104")[1] != 0x9000  # not outside DF04


def test_card_session_ends_on_leaving_df04_and_on_reset(profile):
    terminal = Terminal(profile, "T=1")
    terminal.enter_df04()
    host = CardHost(PROFILE_FAMILY[profile])
    answer, _ = terminal.send(host.init_purchase(10))
    command, *_ = host.debit(answer, 10)
    terminal.send(SELECT_SSSE)
    terminal.send(SELECT_DF04)
    assert terminal.send(command) == (b"", 0x6901)

    answer, _ = terminal.send(host.init_purchase(10))
    command, tac, mac2, _ = host.debit(answer, 10)
    terminal.reader.reset()
    terminal.enter_df04()
    assert terminal.send(command) == (b"", 0x6901)

    tac, mac2, _ = purchase(terminal, host, 10)
    terminal.reader.reset()  # pulled after the DEBIT: the proof is still there (P7 §14)
    terminal.enter_df04(pin=False)
    assert terminal.send("B02E003202000008") == (mac2 + tac, 0x9000)


def test_card_update_starting_day_with_dsk(profile):
    family = PROFILE_FAMILY[profile]
    terminal = Terminal(profile, "T=1")
    terminal.enter_df04()
    host = CardHost(family)
    challenge, sw = terminal.send("0084000008")
    assert sw == 0x9000
    ks = oracle.process_key(family, host.keys["df04_dsk"], challenge)
    mac = oracle.mac4(family, ks, bytes.fromhex("B0560000060701"))
    assert terminal.send(f"B0560000060701{h(mac)}") == (b"", 0x9000)
    assert terminal.send("B056010002") == (bytes.fromhex("0701"), 0x9000)
    assert terminal.send(f"B0560000060801{h(mac)}") == (b"", 0x6982)


def test_card_purse_survives_an_image_round_trip(profile, tmp_path):
    path = tmp_path / "card.img"
    card = Card.from_profile(profile, state=path, date=CARD_DATE)
    terminal = Terminal.__new__(Terminal)
    terminal.card, terminal.reader = card, SimReader(card, protocol="T=1")
    terminal.reader.reset()
    terminal.enter_df04()
    host = CardHost(PROFILE_FAMILY[profile])
    tac, mac2, _ = purchase(terminal, host, 123, 4, 5)
    card.close()  # the card leaves the simulator: the image is all that is left of it
    reopened = Card.open(path, date=CARD_DATE)
    terminal.card, terminal.reader = reopened, SimReader(reopened, protocol="T=1")
    terminal.reader.reset()
    terminal.enter_df04()
    assert terminal.send("B026000104") == (u32(50_000 - 123), 0x9000)
    assert terminal.send("B02E003202000008") == (mac2 + tac, 0x9000)
    assert terminal.send("00B201441C")[0][16:] == u32(123) + u32(4) + u32(5)
