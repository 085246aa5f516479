"""The card's cryptographic recipes (chip.kernel.crypto; docs/card/security.md, docs/decisions.md §6)
against independent oracles.

- SM4 and SM3 against the vectors published in GB/T 32907-2016 and GB/T 32905-2016.
- 3DES MAC (ISO 9797-1 MAC algorithm 3, padding method 2) against `pyemv`.
- SM4 CBC-MAC against a block-by-block implementation written here on SM4-ECB.
- Key diversification (the financial application's ICC master key, docs/decisions.md §6) against ECB
  computed here, and for 3DES against
  `pyemv.kd.derive_icc_mk_a` (the same E(Y) || E(~Y) construction, parity-adjusted).
"""

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from helpers import ROOTS
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import kd, tools
from pyemv.mac import mac_iso9797_3

from chip.kernel.crypto import BY_FLAG, SM4, TDES, invert, pad_method2, xor

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

GB_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # GB/T 32907-2016 Appendix A: key = plaintext
KEY = bytes.fromhex(ROOTS["ssse_rk"])  # the default profile's RKSSSE root, just a 16-byte key
IV8 = bytes.fromhex("1122334455667788")
IV16 = IV8 + bytes(8)
LENGTHS = (0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100)


def message(n: int) -> bytes:
    return bytes((7 * i + 3) & 0xFF for i in range(n))


# -- independent building blocks (cryptography's primitives, nothing from chip.kernel.crypto) ----------


def sm4_ecb(key: bytes, data: bytes) -> bytes:
    e = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return e.update(data) + e.finalize()


def tdes_ecb(key16: bytes, data: bytes) -> bytes:
    """3DES-EDE2: the double-length key as K1 K2 K1."""
    e = Cipher(TripleDES(key16 + key16[:8]), modes.ECB()).encryptor()
    return e.update(data) + e.finalize()


def pad2(data: bytes, block: int) -> bytes:
    """ISO 9797-1 padding method 2, written out: 80, then 00 until a whole number of blocks."""
    padded = data + b"\x80"
    while len(padded) % block:
        padded += b"\x00"
    return padded


def sm4_cbc_mac(key: bytes, data: bytes, iv: bytes = bytes(16)) -> bytes:
    """SM4 CBC-MAC, block by block: h = E(h XOR block), starting from h = iv."""
    padded = pad2(data, 16)
    h = iv
    for i in range(0, len(padded), 16):
        h = sm4_ecb(key, bytes(a ^ b for a, b in zip(h, padded[i:i + 16])))
    return h


def pyemv_mac3(key16: bytes, data: bytes, iv: bytes = bytes(8)) -> bytes:
    """ISO 9797-1 MAC algorithm 3 with padding 2 and initial value `iv`, computed by pyemv.

    pyemv has no IV parameter (it runs CBC from a zero IV). Derivation: CBC from
    IV over blocks P1..Pn computes h1 = E(IV XOR P1), h2 = E(h1 XOR P2), ...; CBC
    from zero over (IV XOR P1), P2, ..., Pn computes E(0 XOR IV XOR P1) = the same
    h1 and from there the same chain. So pad by method 2 here, XOR the IV into the
    first padded block, and let pyemv MAC the already-whole blocks with padding
    method 1 (which adds nothing to non-empty data of a whole number of blocks).
    """
    padded = bytearray(pad2(data, 8))
    for i in range(8):
        padded[i] ^= iv[i]
    return mac_iso9797_3(key16[:8], key16[8:], bytes(padded), 1)


# -- SM4 (GB/T 32907-2016) ----------------------------------------------------------------------


def test_sm4_published_single_block():
    assert sm4_ecb(GB_KEY, GB_KEY).hex().upper() == "681EDF34D206965E86B3E94F536E4246"
    assert SM4.encrypt(GB_KEY, GB_KEY).hex().upper() == "681EDF34D206965E86B3E94F536E4246"
    assert SM4.decrypt(GB_KEY, bytes.fromhex("681EDF34D206965E86B3E94F536E4246")) == GB_KEY


def test_sm4_published_million_iterations():
    # GB/T 32907-2016 Appendix A example 2: encrypt the plaintext 1,000,000 times with the same key
    encrypt = Cipher(algorithms.SM4(GB_KEY), modes.ECB()).encryptor().update
    block = GB_KEY
    for _ in range(1_000_000):
        block = encrypt(block)
    assert block.hex().upper() == "595298C7C6FD271F0402F804C33D3F66"


def test_sm4_chip_encrypt_multi_block_is_ecb():
    data = GB_KEY + bytes(16) + GB_KEY
    assert SM4.encrypt(GB_KEY, data).hex().upper() == (
        "681EDF34D206965E86B3E94F536E4246" + sm4_ecb(GB_KEY, bytes(16)).hex().upper()
        + "681EDF34D206965E86B3E94F536E4246")


# -- SM3 (GB/T 32905-2016) ----------------------------------------------------------------------


@pytest.mark.parametrize("data, digest", [
    (b"abc", "66C7F0F462EEEDD9D1F2D46BDC10E4E24167C4875CF2F7A2297DA02B8F4BA8E0"),
    (b"abcd" * 16, "DEBE9FF92275B8A138604889C18E5A4D6FDB70E5387E5765293DCBA39C0C5732"),
])
def test_sm3_published_vectors(data, digest):
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    assert h.finalize().hex().upper() == digest


# -- 3DES ---------------------------------------------------------------------------------------


def test_tdes_single_des_known_answer():
    # FIPS 81 / classic DES vector: K = 0123456789ABCDEF, "Now is t" -> 3FA40E8A984D4815;
    # 3DES-EDE2 with K1 = K2 is single DES.
    k = bytes.fromhex("0123456789ABCDEF")
    assert TDES.encrypt(k + k, b"Now is t").hex().upper() == "3FA40E8A984D4815"
    assert TDES.decrypt(k + k, bytes.fromhex("3FA40E8A984D4815")) == b"Now is t"


def test_tdes_encrypt_is_ede2_ecb():
    data = message(24)
    assert TDES.encrypt(GB_KEY, data) == tools.encrypt_tdes_ecb(GB_KEY, data)
    assert TDES.encrypt(GB_KEY, data) == tdes_ecb(GB_KEY, data)


def test_pyemv_docstring_vector_pins_the_oracle():
    # pyemv's own published example (16-byte key1 and key2): keeps the oracle honest
    assert mac_iso9797_3(GB_KEY, bytes.fromhex("FEDCBA98765432100123456789ABCDEF"),
                         bytes.fromhex("1234567890ABCDEF"), 2).hex().upper() == "644AA5C915DBDAF8"


def check_zero_iv(algorithm, data: bytes, expected: bytes, block: int) -> None:
    """`algorithm`'s MAC of `data` under KEY without an IV and with a zero IV of one block is
    `expected`, and its MAC4 the first 4 bytes."""
    assert algorithm.mac(KEY, data) == expected
    assert algorithm.mac(KEY, data, bytes(block)) == expected
    assert algorithm.mac4(KEY, data) == expected[:4]


@pytest.mark.parametrize("n", LENGTHS)
def test_tdes_mac_zero_iv_equals_pyemv(n):
    data = message(n)
    check_zero_iv(TDES, data, mac_iso9797_3(KEY[:8], KEY[8:], data, 2), 8)


@pytest.mark.parametrize("n", LENGTHS)
def test_tdes_mac_with_iv_equals_pyemv_on_iv_xored_first_block(n):
    data = message(n)
    expected = pyemv_mac3(KEY, data, IV8)
    assert expected != mac_iso9797_3(KEY[:8], KEY[8:], data, 2)  # the IV matters
    assert TDES.mac(KEY, data, IV8) == expected
    assert TDES.mac4(KEY, data, IV8) == expected[:4]


def test_tdes_mac_iv_derivation_on_whole_blocks():
    # the same derivation the plain way: for data of >= 8 bytes, XOR the IV into the data's first 8 bytes
    data = message(20)
    shifted = xor(data[:8], IV8) + data[8:]
    assert TDES.mac(KEY, data, IV8) == mac_iso9797_3(KEY[:8], KEY[8:], shifted, 2)


@settings(max_examples=150, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), data=st.binary(max_size=80), iv=st.binary(min_size=8, max_size=8))
def test_tdes_mac_random(key, data, iv):
    assert TDES.mac(key, data) == mac_iso9797_3(key[:8], key[8:], data, 2)
    assert TDES.mac(key, data, iv) == pyemv_mac3(key, data, iv)


# -- SM4 CBC-MAC --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", LENGTHS)
def test_sm4_mac_zero_iv(n):
    data = message(n)
    check_zero_iv(SM4, data, sm4_cbc_mac(KEY, data), 16)


@pytest.mark.parametrize("n", LENGTHS)
def test_sm4_mac_with_iv(n):
    data = message(n)
    expected = sm4_cbc_mac(KEY, data, IV16)
    assert expected != sm4_cbc_mac(KEY, data)
    assert SM4.mac(KEY, data, IV16) == expected
    assert SM4.mac4(KEY, data, IV16) == expected[:4]


def test_sm4_mac_empty_message_is_one_encrypted_padding_block():
    assert SM4.mac(KEY, b"") == sm4_ecb(KEY, bytes.fromhex("80" + "00" * 15))
    assert SM4.mac(KEY, b"", IV16) == sm4_ecb(KEY, bytes.fromhex("91223344556677880000000000000000"))


@settings(max_examples=150, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), data=st.binary(max_size=80), iv=st.binary(min_size=16, max_size=16))
def test_sm4_mac_random(key, data, iv):
    assert SM4.mac(key, data) == sm4_cbc_mac(key, data)
    assert SM4.mac(key, data, iv) == sm4_cbc_mac(key, data, iv)


# -- padding ------------------------------------------------------------------------------------


@pytest.mark.parametrize("data, block, padded", [
    ("", 8, "8000000000000000"),
    ("01", 8, "0180000000000000"),
    ("01020304050607", 8, "0102030405060780"),
    ("0102030405060708", 8, "01020304050607088000000000000000"),
    ("", 16, "80000000000000000000000000000000"),
    ("0102030405060708", 16, "01020304050607088000000000000000"),
    ("000102030405060708090A0B0C0D0E", 16, "000102030405060708090A0B0C0D0E80"),
    ("000102030405060708090A0B0C0D0E0F", 16,
     "000102030405060708090A0B0C0D0E0F80000000000000000000000000000000"),
])
def test_pad_method2(data, block, padded):
    assert pad_method2(bytes.fromhex(data), block).hex().upper() == padded


@given(data=st.binary(max_size=70), block=st.sampled_from([8, 16]))
def test_pad_method2_random(data, block):
    assert pad_method2(data, block) == pad2(data, block)


# -- diversification (docs/decisions.md §6) -------------------------------------------------------

D = bytes.fromhex("1101000000000001")  # first 8 bytes of the default card's identification code


def test_invert_and_xor():
    assert invert(D).hex().upper() == "EEFEFFFFFFFFFFFE"
    assert xor(D, bytes.fromhex("FFFFFFFFFFFFFFFF")).hex().upper() == "EEFEFFFFFFFFFFFE"


def test_tdes_diversify_is_e_d_then_e_not_d():
    card_key = TDES.diversify(KEY, D)
    assert card_key == tdes_ecb(KEY, D) + tdes_ecb(KEY, bytes.fromhex("EEFEFFFFFFFFFFFE"))
    # pyemv's EMV option A is the same construction on Y = D (PAN digits || PSN), parity-adjusted
    assert tools.adjust_key_parity(card_key) == kd.derive_icc_mk_a(KEY, pan="11010000000000", psn="01")


def test_sm4_diversify_is_e_of_d_and_not_d():
    assert SM4.diversify(KEY, D) == sm4_ecb(KEY, bytes.fromhex("1101000000000001EEFEFFFFFFFFFFFE"))


@settings(max_examples=100, deadline=None)
@given(master=st.binary(min_size=16, max_size=16), d=st.binary(min_size=8, max_size=8))
def test_diversify_random(master, d):
    not_d = bytes(b ^ 0xFF for b in d)
    assert TDES.diversify(master, d) == tdes_ecb(master, d) + tdes_ecb(master, not_d)
    assert SM4.diversify(master, d) == sm4_ecb(master, d + not_d)


def test_algorithm_flags():
    # the SSSE FCI's 9F0C 86 01 xx (Sichuan reader spec §10.1, both real cards): 01 DES family, 03 SM4
    assert BY_FLAG == {0x01: TDES, 0x03: SM4}
    assert (TDES.flag, TDES.block, SM4.flag, SM4.block) == (0x01, 8, 0x03, 16)
