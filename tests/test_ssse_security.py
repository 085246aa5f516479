"""SSSE security commands (SPEC §2.2-2.4, §4, §5.1) and the PSAM, exact bytes, SM4 and 3DES.

Every expected cryptogram and MAC is computed here from SPEC §5.1 with
`cryptography`'s primitives directly (nothing from chip.crypto): the card keys
are diversified from the SPEC §5 master keys with D = the first 8 bytes of the
card identification code (EF05 record 01 = 110100 0000000001 D156000005 FFFFFF),
so D = 1101000000000001. Tests that run on the card are parametrized over the
shipped profiles "default" (SM4, flag 04) and "default-3des" (3DES, flag 01).
"""

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pyemv.mac import mac_iso9797_3

from chip import Card
from reader import SimReader
from reader.psam import Psam
from reader.ssse_terminal import SsseTerminal
from conftest import CARD_DATE, tx

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

DDF_NAME = "7378312E73682EC9E7BBE1B1A3D5CF"
SELECT_SSSE = "00A404000F" + DDF_NAME
CHALLENGE = bytes.fromhex("1122334455667788")
D = bytes.fromhex("1101000000000001")
MASTERS = {  # SPEC §5 table
    "rk": bytes.fromhex("404142434445464748494A4B4C4D4E4F"),
    "irk": bytes.fromhex("505152535455565758595A5B5C5D5E5F"),
    "stk": bytes.fromhex("606162636465666768696A6B6C6D6E6F"),
    "puk": bytes.fromhex("707172737475767778797A7B7C7D7E7F"),
}
PROFILES = {"default": "sm4", "default-3des": "3des"}
FLAG = {"sm4": 0x04, "3des": 0x01}

VERIFY_OK = "0020000003123456"
VERIFY_BAD = "0020000003111111"
VERIFY_STATUS = "00200000"
EF05 = {
    0x01: "0110" "1101000000000001" "D156000005" "FFFFFF",
    0x05: "0504" "20261121",
    0x06: "0604" "20361121",
}
EF06 = [  # (identifier, record) in record order
    (0x08, "0812" + "110101199003071233".encode("ascii").hex().upper()),
    (0x09, "091E" + "C0EEBBAA" + "00" * 26),
    (0x4E, "4E14" + "00" * 20),
    (0x0A, "0A01" "31"),
    (0x0B, "0B01" "01"),
    (0x0C, "0C03" "110101"),
    (0x0D, "0D04" "19900307"),
]
PROTECTED_READS = {  # APDU -> the record it answers once PIN or external authentication is satisfied
    "00B2052C00": EF05[0x05],
    "00B2062C00": EF05[0x06],
    "00B2083000": EF06[0][1],
    **{f"00B2{n:02X}3400": record for n, (_, record) in enumerate(EF06, 1)},
}


# -- the independent implementation of SPEC §5 / §5.1 --------------------------------------------


def ecb(alg: str, key: bytes, data: bytes) -> bytes:
    """E_K: SM4-ECB, or 3DES-EDE2-ECB with the double-length key used as K1 K2 K1."""
    cipher = algorithms.SM4(key) if alg == "sm4" else TripleDES(key + key[:8])
    e = Cipher(cipher, modes.ECB()).encryptor()
    return e.update(data) + e.finalize()


def des(key8: bytes, block: bytes, decrypt: bool = False) -> bytes:
    c = Cipher(TripleDES(key8 * 3), modes.ECB())
    ctx = c.decryptor() if decrypt else c.encryptor()
    return ctx.update(block) + ctx.finalize()


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def mac(alg: str, key: bytes, iv: bytes, m: bytes) -> bytes:
    """MAC_K(iv, m): m padded by ISO 9797-1 method 2; SM4 CBC-MAC, or 3DES ISO 9797-1 MAC algorithm 3."""
    block = 16 if alg == "sm4" else 8
    m = m + b"\x80" + bytes(-(len(m) + 1) % block)
    h = iv
    for i in range(0, len(m), block):
        chunk = xor(h, m[i:i + block])
        h = ecb("sm4", key, chunk) if alg == "sm4" else des(key[:8], chunk)
    if alg == "sm4":
        return h
    return des(key[:8], des(key[8:], h, decrypt=True))  # output transformation on the last block


def diversify(alg: str, master: bytes, d: bytes) -> bytes:
    not_d = bytes(b ^ 0xFF for b in d)
    return ecb(alg, master, d + not_d) if alg == "sm4" else ecb(alg, master, d) + ecb(alg, master, not_d)


def card_keys(alg: str) -> dict:
    return {name: diversify(alg, master, D) for name, master in MASTERS.items()}


def fci(alg: str) -> str:
    return f"6F19840F{DDF_NAME}A5069F0C038601{FLAG[alg]:02X}"


def h(data: bytes) -> str:
    return data.hex().upper()


# Pinned once from the functions above, so a slip in them shows up here and not as a card bug.
PINNED_KEYS = {
    "sm4": {
        "rk": "C9FBD30A3209BE94424F6E5CB28E2E51", "irk": "EA64B2EA52E86C48D8A0F884A0313FDD",
        "stk": "DC48DC98C2947F82CD399FBD8FF2F295", "puk": "EA9B5CCCCCFB65AC6F22A9E010F9FB60",
    },
    "3des": {
        "rk": "8848552FD6791440F62FA6C2DA1115C0", "irk": "B163AFC970F13F6A6730652750CC9CAF",
        "stk": "C0123AC35B4A047834FD4263DFA65B53", "puk": "896AC12FFBF170BA20CF6B377DF2A2D3",
    },
}


@pytest.mark.parametrize("alg", ["sm4", "3des"])
def test_independent_key_derivation_is_pinned(alg):
    assert {name: h(key) for name, key in card_keys(alg).items()} == PINNED_KEYS[alg]


def test_independent_3des_mac_agrees_with_pyemv():
    key = card_keys("3des")["stk"]
    for m in (b"", bytes(7), bytes.fromhex("841E000004"), bytes(range(8)), bytes(range(19))):
        # zero IV: pyemv directly; IV = challenge: pyemv over the message with the IV XORed into its
        # first padded block (CBC from IV over P1.. equals CBC from zero over (IV ^ P1)..)
        assert mac("3des", key, bytes(8), m) == mac_iso9797_3(key[:8], key[8:], m, 2)
        padded = m + b"\x80" + bytes(-(len(m) + 1) % 8)
        shifted = xor(padded[:8], CHALLENGE) + padded[8:]
        assert mac("3des", key, CHALLENGE, m) == mac_iso9797_3(key[:8], key[8:], shifted, 1)


# -- the card under test ---------------------------------------------------------------------------


class Ssse:
    """A freshly personalised card of one profile, its reader, and the terminal-side computations."""

    def __init__(self, profile: str):
        self.alg = PROFILES[profile]
        self.card = Card.from_profile(profile, date=CARD_DATE)
        self.card.random = lambda n: CHALLENGE[:n]
        self.reader = SimReader(self.card)
        self.reader.reset()
        self.keys = card_keys(self.alg)

    def tx(self, apdu: str) -> str:
        return tx(self.reader, apdu)

    def select(self, sw: str = "9000") -> None:
        assert self.tx(SELECT_SSSE) == fci(self.alg) + sw

    def reset(self) -> None:
        self.reader.power_off()
        self.reader.reset()

    def get_challenge(self) -> bytes:
        assert self.tx("0084000008") == "11223344556677889000"
        return CHALLENGE

    def cryptogram(self, challenge: bytes = CHALLENGE) -> str:
        """EXTERNAL AUTHENTICATE data: E_RK(challenge || 00*8)."""
        return h(ecb(self.alg, self.keys["rk"], challenge + bytes(8)))

    def external_auth(self, cryptogram: str | None = None) -> str:
        return self.tx("0082000A10" + (cryptogram or self.cryptogram()))

    def iv(self, challenge: bytes) -> bytes:
        return challenge if self.alg == "3des" else challenge + bytes(8)

    def mac_apdu(self, header: str, body: str = "", key: str = "stk", challenge: bytes = CHALLENGE,
                 lc_in_mac: int | None = None, iv: bytes | None = None) -> str:
        """header || Lc || body || MAC4, MAC4 = first 4 bytes of MAC_K(iv, header || Lc || body)."""
        lc = len(body) // 2 + 4
        message = bytes.fromhex(header) + bytes((lc if lc_in_mac is None else lc_in_mac,)) + bytes.fromhex(body)
        mac4 = mac(self.alg, self.keys[key], self.iv(challenge) if iv is None else iv, message)[:4]
        return f"{header}{lc:02X}{body}{h(mac4)}"

    def assert_protected_reads(self, open_: bool) -> None:
        for apdu, record in PROTECTED_READS.items():
            assert self.tx(apdu) == (record + "9000" if open_ else "6982"), apdu


@pytest.fixture(params=list(PROFILES))
def s(request):
    """A card of each profile with its SSSE selected (fixed challenge 1122334455667788)."""
    ssse = Ssse(request.param)
    ssse.select()
    return ssse


def test_card_identification_code_gives_d(s):
    # SPEC §5.1: D = first 8 bytes of EF05 record 01 (free to read)
    assert s.tx("00B2012C00") == EF05[0x01] + "9000"
    assert EF05[0x01][4:20] == h(D)


# -- GET CHALLENGE -----------------------------------------------------------------------------------


def test_get_challenge_8(s):
    assert s.tx("0084000008") == "11223344556677889000"


def test_get_challenge_4(s):
    assert s.tx("0084000004") == "112233449000"


def test_get_challenge_comes_from_the_card_random_source(s):
    asked = []
    values = iter([bytes.fromhex("A1A2A3A4A5A6A7A8"), bytes.fromhex("B1B2B3B4")])

    def rng(n):
        asked.append(n)
        return next(values)

    s.card.random = rng
    assert s.tx("0084000008") == "A1A2A3A4A5A6A7A89000"
    assert s.tx("0084000004") == "B1B2B3B49000"
    assert asked == [8, 4]


@pytest.mark.parametrize("apdu, sw", [
    ("0084000000", "6700"),  # Le 00 = 256
    ("0084000010", "6700"),
    ("0084000002", "6700"),
    ("0084000007", "6700"),
    ("00840000", "6700"),  # no Le
    ("008400000811", "6700"),  # data
    ("0084010008", "6A86"),
    ("0084000108", "6A86"),
])
def test_get_challenge_errors(s, apdu, sw):
    assert s.tx(apdu) == sw


# -- EXTERNAL AUTHENTICATE ---------------------------------------------------------------------------

PINNED_CRYPTOGRAMS = {  # E_RK(1122334455667788 || 00*8) for D = 1101000000000001
    "sm4": ecb("sm4", bytes.fromhex(PINNED_KEYS["sm4"]["rk"]), CHALLENGE + bytes(8)),
    "3des": ecb("3des", bytes.fromhex(PINNED_KEYS["3des"]["rk"]), CHALLENGE + bytes(8)),
}


def test_external_auth_cryptogram_shape():
    # 3DES: two ECB blocks, the second E_RK(00*8); SM4: one block
    rk = card_keys("3des")["rk"]
    assert PINNED_CRYPTOGRAMS["3des"][8:] == ecb("3des", rk, bytes(8))
    assert len(PINNED_CRYPTOGRAMS["sm4"]) == len(PINNED_CRYPTOGRAMS["3des"]) == 16


def test_external_auth_opens_protected_reads(s):
    s.assert_protected_reads(open_=False)
    s.get_challenge()
    assert s.tx("0082000A10" + h(PINNED_CRYPTOGRAMS[s.alg])) == "9000"
    s.assert_protected_reads(open_=True)
    assert s.tx(VERIFY_STATUS) == "63C6"  # the PIN was not involved


def test_external_auth_without_challenge(s):
    assert s.external_auth() == "6984"
    s.assert_protected_reads(open_=False)
    s.get_challenge()
    assert s.external_auth("00" * 16) == "63C2"  # the 6984 cost no try


def test_challenge_consumed_by_success(s):
    s.get_challenge()
    assert s.external_auth() == "9000"
    assert s.external_auth() == "6984"


def test_challenge_consumed_by_failure(s):
    s.get_challenge()
    assert s.external_auth("00" * 16) == "63C2"
    assert s.external_auth() == "6984"
    s.assert_protected_reads(open_=False)
    s.get_challenge()
    assert s.external_auth() == "9000"


def test_external_auth_uses_the_last_challenge(s):
    first, second = bytes.fromhex("0102030405060708"), bytes.fromhex("F1F2F3F4F5F6F7F8")
    values = iter([first, second, first])
    s.card.random = lambda n: next(values)
    assert s.tx("0084000008") == h(first) + "9000"
    assert s.tx("0084000008") == h(second) + "9000"
    assert s.external_auth(s.cryptogram(first)) == "63C2"
    assert s.tx("0084000008") == h(first) + "9000"
    assert s.external_auth(s.cryptogram(first)) == "9000"


def test_wrong_cryptograms_block_rk_but_not_the_pin(s):
    for sw in ("63C2", "63C1", "63C0"):
        s.get_challenge()
        assert s.external_auth("00" * 16) == sw
    s.get_challenge()
    assert s.external_auth() == "6983"  # even the right cryptogram
    s.get_challenge()
    assert s.external_auth() == "6983"
    s.assert_protected_reads(open_=False)
    # the PIN has its own counter: untouched, and VERIFY still opens the reads
    assert s.tx(VERIFY_STATUS) == "63C6"
    assert s.tx(VERIFY_OK) == "9000"
    s.assert_protected_reads(open_=True)


def test_right_cryptogram_restores_the_rk_counter(s):
    s.get_challenge()
    assert s.external_auth("00" * 16) == "63C2"
    s.get_challenge()
    assert s.external_auth() == "9000"
    s.get_challenge()
    assert s.external_auth("00" * 16) == "63C2"
    s.get_challenge()
    assert s.external_auth("00" * 16) == "63C1"


def test_rk_counter_is_persistent(s):
    for sw in ("63C2", "63C1"):
        s.get_challenge()
        assert s.external_auth("00" * 16) == sw
    s.reset()
    s.select()
    s.get_challenge()
    assert s.external_auth("00" * 16) == "63C0"
    s.reset()
    s.select()
    s.get_challenge()
    assert s.external_auth() == "6983"


def test_reset_clears_challenge_and_external_auth(s):
    # SPEC §1: reset clears the external-auth status (and, being volatile, the challenge)
    s.get_challenge()
    assert s.external_auth() == "9000"
    s.reset()
    s.select()
    s.assert_protected_reads(open_=False)
    s.get_challenge()
    s.reset()
    s.select()
    assert s.external_auth() == "6984"


@pytest.mark.parametrize("p1p2", ["000B", "0000", "0001", "0009"])
def test_external_auth_unknown_key(s, p1p2):
    s.get_challenge()
    assert s.tx(f"0082{p1p2}10" + s.cryptogram()) == "6A88"


@pytest.mark.parametrize("data", ["00" * 8, "00" * 15, "00" * 17, "00" * 24])
def test_external_auth_wrong_length(s, data):
    s.get_challenge()
    assert s.tx(f"0082000A{len(data) // 2:02X}{data}") == "6700"


def test_external_auth_no_data(s):
    s.get_challenge()
    assert s.tx("0082000A") == "6700"


def test_external_auth_p1(s):
    s.get_challenge()
    assert s.tx("0082010A10" + s.cryptogram()) == "6A86"


# -- INTERNAL AUTHENTICATE ---------------------------------------------------------------------------


@pytest.mark.parametrize("factor, random", [
    ("0102030405060708", "1122334455667788"),
    ("0000000000000000", "FFFFFFFFFFFFFFFF"),
    ("1101000000000001", "A5A5A5A55A5A5A5A"),
])
def test_internal_auth(s, factor, random):
    expected = h(ecb(s.alg, s.keys["irk"], bytes.fromhex(random + factor)))
    assert s.tx(f"0088000010{factor}{random}") == expected + "9000"
    assert s.tx(f"0088000010{factor}{random}00") == expected + "9000"  # with Le 00


def test_internal_auth_on_t0(s):
    s.reader = SimReader(s.card, protocol="T=0")
    s.reader.reset()
    assert s.tx(SELECT_SSSE) == "611B"
    assert s.tx("00C000001B") == fci(s.alg) + "9000"
    expected = h(ecb(s.alg, s.keys["irk"], bytes.fromhex("11223344556677880102030405060708")))
    assert s.tx("00880000100102030405060708" "1122334455667788") == "6110"
    assert s.tx("00C0000010") == expected + "9000"


@pytest.mark.parametrize("apdu, sw", [
    ("0088000008" + "00" * 8, "6700"),
    ("0088000011" + "00" * 17, "6700"),
    ("00880000", "6700"),
    ("0088010010" + "00" * 16, "6A86"),
    ("0088000110" + "00" * 16, "6A86"),
])
def test_internal_auth_errors(s, apdu, sw):
    assert s.tx(apdu) == sw


# -- MAC-protected commands: the mechanism ------------------------------------------------------------

MAC_COMMANDS = [  # (header, body, key)
    ("805E0000", "654321", "stk"),  # RELOAD PIN
    ("84240000", "", "puk"),  # PIN UNBLOCK
    ("841E0000", "", "stk"),  # APPLICATION BLOCK (loss lock)
    ("841E0001", "", "stk"),  # APPLICATION BLOCK (permanent)
    ("84180000", "", "stk"),  # APPLICATION UNBLOCK
    ("84160000", "", "stk"),  # CARD BLOCK
]
MAC_IDS = ["reload-pin", "pin-unblock", "app-block", "app-block-permanent", "app-unblock", "card-block"]


def assert_unchanged(s) -> None:
    """Nothing any MAC command would change has changed: SSSE open, PIN 123456 with a full counter."""
    s.select()
    assert s.tx(VERIFY_STATUS) == "63C6"
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx("00B2012C00") == EF05[0x01] + "9000"


@pytest.mark.parametrize("header, body, key", MAC_COMMANDS, ids=MAC_IDS)
def test_mac_command_right_mac(s, header, body, key):
    s.get_challenge()
    assert s.tx(s.mac_apdu(header, body, key)) == "9000"


@pytest.mark.parametrize("header, body, key", MAC_COMMANDS, ids=MAC_IDS)
def test_mac_command_no_data(s, header, body, key):
    s.get_challenge()
    assert s.tx(header) == "6987"
    assert_unchanged(s)


@pytest.mark.parametrize("header, body, key", MAC_COMMANDS, ids=MAC_IDS)
def test_mac_command_without_challenge(s, header, body, key):
    assert s.tx(s.mac_apdu(header, body, key)) == "6984"
    assert_unchanged(s)


@pytest.mark.parametrize("header, body, key", MAC_COMMANDS, ids=MAC_IDS)
def test_mac_command_wrong_mac(s, header, body, key):
    right = s.mac_apdu(header, body, key)
    wrong = right[:-8] + f"{int(right[-8:], 16) ^ 1:08X}"
    s.get_challenge()
    assert s.tx(wrong) == "6988"
    assert s.tx(right) == "6984"  # the failed command consumed the challenge
    assert_unchanged(s)


@pytest.mark.parametrize("header, body, key", MAC_COMMANDS, ids=MAC_IDS)
def test_mac_command_wrong_key(s, header, body, key):
    other = "stk" if key == "puk" else "puk"
    s.get_challenge()
    assert s.tx(s.mac_apdu(header, body, other)) == "6988"
    assert_unchanged(s)


@pytest.mark.parametrize("header, body, key", MAC_COMMANDS, ids=MAC_IDS)
def test_mac_covers_the_lc_sent(s, header, body, key):
    # MAC computed over Lc = data length without the MAC: not what SPEC §5.1 says
    s.get_challenge()
    assert s.tx(s.mac_apdu(header, body, key, lc_in_mac=len(body) // 2)) == "6988"
    assert_unchanged(s)


@pytest.mark.parametrize("header, body, key", MAC_COMMANDS, ids=MAC_IDS)
def test_mac_iv_is_the_challenge(s, header, body, key):
    s.get_challenge()
    assert s.tx(s.mac_apdu(header, body, key, iv=bytes(16 if s.alg == "sm4" else 8))) == "6988"
    assert_unchanged(s)


@pytest.mark.parametrize("header, body, key", MAC_COMMANDS, ids=MAC_IDS)
def test_mac_short_data(s, header, body, key):
    s.get_challenge()
    assert s.tx(header + "03AABBCC") == "6700"


@pytest.mark.parametrize("header, key", [("84240000", "puk"), ("841E0000", "stk"), ("84180000", "stk"),
                                         ("84160000", "stk")])
def test_mac_commands_take_no_body(s, header, key):
    # SPEC: Lc = 04, the MAC alone; a correctly MACed body is a wrong length
    s.get_challenge()
    assert s.tx(s.mac_apdu(header, "00", key)) == "6700"
    assert_unchanged(s)


@pytest.mark.parametrize("header, body, key", [
    ("805E0200", "654321", "stk"),  # 80 5E: P1 01 CHANGE PIN, 00 RELOAD PIN, nothing else
    ("805E0001", "654321", "stk"),
    ("84240100", "", "puk"),
    ("84240001", "", "puk"),
    ("841E0100", "", "stk"),
    ("841E0002", "", "stk"),
    ("84180100", "", "stk"),
    ("84180001", "", "stk"),
    ("84160100", "", "stk"),
    ("84160001", "", "stk"),
])
def test_mac_command_wrong_p1p2(s, header, body, key):
    s.get_challenge()
    assert s.tx(s.mac_apdu(header, body, key)) == "6A86"
    assert_unchanged(s)


def test_pinned_mac_apdus(s):
    # one worked example per algorithm, by hand from SPEC §5.1 (iv = challenge or challenge || 00*8)
    stk = s.keys["stk"]
    iv = CHALLENGE if s.alg == "3des" else CHALLENGE + bytes(8)
    mac4 = mac(s.alg, stk, iv, bytes.fromhex("841E000004"))[:4]
    assert s.mac_apdu("841E0000") == "841E000004" + h(mac4)
    s.get_challenge()
    assert s.tx("841E000004" + h(mac4)) == "9000"


# -- RELOAD PIN ---------------------------------------------------------------------------------------


def test_reload_pin_after_wrong_pins(s):
    for sw in ("63C5", "63C4", "63C3"):
        assert s.tx(VERIFY_BAD) == sw
    s.get_challenge()
    assert s.tx(s.mac_apdu("805E0000", "654321")) == "9000"
    assert s.tx(VERIFY_OK) == "63C5"  # the old PIN is gone; the counter was full (6)
    assert s.tx("0020000003654321") == "9000"
    s.assert_protected_reads(open_=True)


def test_reload_pin_unblocks_a_blocked_pin(s):
    for left in range(5, -1, -1):
        assert s.tx(VERIFY_BAD) == f"63C{left:X}"
    assert s.tx(VERIFY_OK) == "6983"
    s.get_challenge()
    assert s.tx(s.mac_apdu("805E0000", "1234")) == "9000"
    assert s.tx(VERIFY_STATUS) == "63C6"
    assert s.tx("00200000021234") == "9000"


def test_reload_pin_odd_length_is_f_padded(s):
    s.get_challenge()
    assert s.tx(s.mac_apdu("805E0000", "98765F")) == "9000"
    assert s.tx("002000000398765F") == "9000"


def test_reload_pin_wrong_mac_keeps_pin_and_counter(s):
    for sw in ("63C5", "63C4", "63C3"):
        assert s.tx(VERIFY_BAD) == sw
    s.get_challenge()
    apdu = s.mac_apdu("805E0000", "654321")
    assert s.tx(apdu[:-2] + f"{int(apdu[-2:], 16) ^ 0x80:02X}") == "6988"
    assert s.tx(VERIFY_STATUS) == "63C3"
    assert s.tx("0020000003654321") == "63C2"
    assert s.tx(VERIFY_OK) == "9000"


# -- PIN UNBLOCK ----------------------------------------------------------------------------------------


def test_pin_unblock_restores_a_blocked_pin(s):
    for left in range(5, -1, -1):
        assert s.tx(VERIFY_BAD) == f"63C{left:X}"
    assert s.tx(VERIFY_OK) == "6983"
    s.get_challenge()
    assert s.tx(s.mac_apdu("84240000", key="puk")) == "9000"
    assert s.tx(VERIFY_STATUS) == "63C6"
    assert s.tx(VERIFY_BAD) == "63C5"  # counter only: the PIN is still 123456
    assert s.tx(VERIFY_OK) == "9000"


def test_pin_unblock_wrong_mac_keeps_it_blocked(s):
    for _ in range(6):
        s.tx(VERIFY_BAD)
    s.get_challenge()
    assert s.tx(s.mac_apdu("84240000", key="stk")) == "6988"
    assert s.tx(VERIFY_OK) == "6983"


# -- APPLICATION BLOCK / UNBLOCK, CARD BLOCK ----------------------------------------------------------------


def test_application_block_loss_lock_and_unblock(s):
    s.get_challenge()
    assert s.tx(s.mac_apdu("841E0000")) == "9000"
    assert s.tx(VERIFY_OK) == "6985"  # at once, in the same session
    s.reset()
    s.select("6283")  # the application is selected, with FCI + 6283
    assert s.tx(VERIFY_OK) == "6985"
    assert s.tx("00B2012C00") == "6985"
    assert s.tx("0088000010" + "00" * 16) == "6985"
    assert s.tx("805E010007123456FF654321") == "6985"
    s.get_challenge()
    assert s.external_auth() == "6985"
    assert s.tx(s.mac_apdu("805E0000", "654321")) == "6985"
    assert s.tx(s.mac_apdu("84240000", key="puk")) == "6985"
    assert s.tx(s.mac_apdu("841E0001")) == "6985"
    # APPLICATION UNBLOCK works
    s.get_challenge()
    assert s.tx(s.mac_apdu("84180000")) == "9000"
    assert s.tx(VERIFY_OK) == "9000"
    s.reset()
    s.select()
    assert s.tx("00B2012C00") == EF05[0x01] + "9000"


def test_application_unblock_wrong_mac_keeps_the_lock(s):
    s.get_challenge()
    assert s.tx(s.mac_apdu("841E0000")) == "9000"
    s.get_challenge()
    assert s.tx(s.mac_apdu("84180000", key="puk")) == "6988"
    assert s.tx(s.mac_apdu("84180000")) == "6984"
    s.reset()
    s.select("6283")
    assert s.tx("84180000") == "6987"


def test_permanent_block_cannot_be_unblocked(s):
    s.get_challenge()
    assert s.tx(s.mac_apdu("841E0001")) == "9000"
    s.select("6283")
    assert s.tx(VERIFY_OK) == "6985"
    s.get_challenge()
    assert s.tx(s.mac_apdu("84180000")) == "9303"
    s.reset()
    s.select("6283")
    assert s.tx(VERIFY_OK) == "6985"


def test_temporary_lock_then_card_block(s):
    s.get_challenge()
    assert s.tx(s.mac_apdu("841E0000")) == "9000"
    s.get_challenge()
    assert s.tx(s.mac_apdu("84160000")) == "9000"  # CARD BLOCK works while locked
    assert s.tx(SELECT_SSSE) == "6A81"


def test_card_block(s):
    s.get_challenge()
    assert s.tx(s.mac_apdu("84160000")) == "9000"
    assert s.tx(SELECT_SSSE) == "6A81"
    assert s.tx("00A40000023F00") == "6A81"
    s.reset()
    assert s.tx(SELECT_SSSE) == "6A81"
    assert s.tx("00A4000C00") == "6A81"


# -- the terminal helpers on top (reader.psam, reader.ssse_terminal) ---------------------------------------


def test_terminal_with_psam_authenticates_and_locks(s):
    psam = Psam(SimReader(Card.psam(date=CARD_DATE)))
    s.card.random = lambda n: bytes.fromhex("0F1E2D3C4B5A6978")[:n]
    terminal = SsseTerminal(s.reader, psam)
    assert terminal.start() == 0x9000
    assert terminal.diversification == D
    assert terminal.external_authenticate() == 0x9000
    assert terminal.internal_authenticate(bytes(8), bytes(range(8)))
    assert terminal.lock() == 0x9000
    assert terminal.start() == 0x6283
    assert terminal.unlock() == 0x9000


# -- the PSAM ---------------------------------------------------------------------------------------------

PSAM_NAME = "D156000005" + b"PSAM".hex().upper()
KEY_REFS = {"rk": 0x01, "irk": 0x02, "stk": 0x03, "puk": 0x04}


@pytest.fixture
def psam():
    r = SimReader(Card.psam(date=CARD_DATE))
    r.reset()
    assert tx(r, "00A4040009" + PSAM_NAME) == "6F0B8409" + PSAM_NAME + "9000"
    return r


@pytest.mark.parametrize("alg", ["sm4", "3des"])
@pytest.mark.parametrize("key", list(KEY_REFS))
def test_psam_encrypt(psam, alg, key):
    block = 16 if alg == "sm4" else 8
    data = bytes(range(0x20, 0x20 + 2 * block))
    assert tx(psam, f"801A{FLAG[alg]:02X}{KEY_REFS[key]:02X}08{h(D)}") == "9000"
    assert tx(psam, f"80FA0000{len(data):02X}{h(data)}") == h(ecb(alg, card_keys(alg)[key], data)) + "9000"


@pytest.mark.parametrize("alg", ["sm4", "3des"])
def test_psam_external_auth_cryptogram(psam, alg):
    assert tx(psam, f"801A{FLAG[alg]:02X}0108{h(D)}") == "9000"
    assert tx(psam, "80FA000010" + h(CHALLENGE) + "00" * 8) == h(PINNED_CRYPTOGRAMS[alg]) + "9000"


@pytest.mark.parametrize("alg", ["sm4", "3des"])
@pytest.mark.parametrize("key", ["stk", "puk"])
@pytest.mark.parametrize("message", ["841E000004", "805E000007654321", ""])
def test_psam_mac(psam, alg, key, message):
    iv = CHALLENGE if alg == "3des" else CHALLENGE + bytes(8)
    data = h(iv) + message
    expected = mac(alg, card_keys(alg)[key], iv, bytes.fromhex(message))[:4]
    assert tx(psam, f"801A{FLAG[alg]:02X}{KEY_REFS[key]:02X}08{h(D)}") == "9000"
    assert tx(psam, f"80FA0500{len(data) // 2:02X}{data}") == h(expected) + "9000"


def test_psam_mac_is_accepted_by_the_card(s, psam):
    iv = s.iv(CHALLENGE)
    assert tx(psam, f"801A{FLAG[s.alg]:02X}0308{h(D)}") == "9000"
    response = tx(psam, f"80FA0500{len(iv) + 5:02X}{h(iv)}841E000004")
    assert response[-4:] == "9000"
    s.get_challenge()
    assert s.tx("841E000004" + response[:-4]) == "9000"
    s.select("6283")


@pytest.mark.parametrize("apdu, sw", [
    ("80FA000008" + "00" * 8, "6985"),  # DES CRYPT before DES INIT
    ("80FA050010" + "00" * 16, "6985"),
    ("801A020108" + "1101000000000001", "6A86"),  # no such algorithm
    ("801A000108" + "1101000000000001", "6A86"),
    ("801A010508" + "1101000000000001", "6A88"),  # no such master key
    ("801A040008" + "1101000000000001", "6A88"),
    ("801A010107" + "11010000000000", "6700"),
    ("801A010109" + "110100000000000100", "6700"),
])
def test_psam_errors(psam, apdu, sw):
    assert tx(psam, apdu) == sw


@pytest.mark.parametrize("alg", ["sm4", "3des"])
def test_psam_crypt_errors(psam, alg):
    assert tx(psam, f"801A{FLAG[alg]:02X}0108{h(D)}") == "9000"
    block = 16 if alg == "sm4" else 8
    assert tx(psam, "80FA000007" + "00" * 7) == "6700"  # not whole blocks
    assert tx(psam, f"80FA0000{block + 1:02X}" + "00" * (block + 1)) == "6700"
    assert tx(psam, f"80FA0500{block - 1:02X}" + "00" * (block - 1)) == "6700"  # shorter than the IV
    assert tx(psam, f"80FA0100{block:02X}" + "00" * block) == "6A86"
    assert tx(psam, f"80FA0001{block:02X}" + "00" * block) == "6A86"
    # the session key survives the errors
    assert tx(psam, "80FA000010" + h(CHALLENGE) + "00" * 8) == h(PINNED_CRYPTOGRAMS[alg]) + "9000"


def test_psam_session_cleared_by_reset(psam):
    assert tx(psam, f"801A010108{h(D)}") == "9000"
    psam.power_off()
    psam.reset()
    assert tx(psam, "00A4040009" + PSAM_NAME) == "6F0B8409" + PSAM_NAME + "9000"
    assert tx(psam, "80FA000008" + "00" * 8) == "6985"
