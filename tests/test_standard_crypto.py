"""The project's LD/T 32 cryptography (chip/kernel/crypto.py, chip/apps/keys.py) against tests/oracle.py.

tests/oracle.py is written from the standard's text (P4 安全机制, P7 应用流程, P9 PSAM) on
single-block ECB from `cryptography` and never calls `chip`. This file

1. proves the oracle's block primitives with published known-answer vectors,
2. checks the diversification factors against the standard's and the real cards' examples,
3. compares every chip recipe with the oracle, for the DES family and SM4, over many inputs,
4. pins one worked example: the SM4 external-authentication cryptogram of the default
   profile's RKSSSE root for a fixed card, challenge and original data.
"""

import oracle
import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from helpers import HISTORICAL, REGION, ROOTS
from hypothesis import given
from hypothesis import strategies as st

from chip.apps.keys import BY_NAME, KEYS, card_key
from chip.kernel import crypto

ALGORITHMS = {"des": crypto.TDES, "sm4": crypto.SM4}
families = pytest.mark.parametrize("family", sorted(ALGORITHMS))

bytes8 = st.binary(min_size=8, max_size=8)
bytes16 = st.binary(min_size=16, max_size=16)
regions = st.text(alphabet="0123456789", min_size=6, max_size=6)
historicals = st.binary(min_size=13, max_size=15)  # P2 table 16: T1..TD, sometimes more


def card_keys(family: str):
    """Keys a card may hold: 8 or 16 bytes in the DES family, 16 in SM4."""
    return st.one_of(bytes8, bytes16) if family == "des" else bytes16


def process_keys(family: str):
    """Process keys: single length (8) in the DES family (P4 §8.4.1), 16 in SM4."""
    return bytes8 if family == "des" else bytes16


def ecb(family: str, ks: bytes, data: bytes) -> bytes:
    """Blocks enciphered one by one with the oracle's primitives (for crafted ciphertexts)."""
    one = oracle.des if family == "des" else oracle.sm4
    block = oracle.BLOCK[family]
    return b"".join(one(ks, data[i:i + block]) for i in range(0, len(data), block))


def des_decrypt(key8: bytes, block8: bytes) -> bytes:
    decryptor = Cipher(TripleDES(key8 * 3), modes.ECB()).decryptor()
    return decryptor.update(block8) + decryptor.finalize()


# -- 1. known answers: the oracle's primitives -------------------------------------------------

def test_sm4_gbt32907_appendix_a():
    """GB/T 32907-2016 Appendix A, example 1: key = plaintext = 0123456789ABCDEFFEDCBA9876543210."""
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    assert oracle.sm4(key, key) == bytes.fromhex("681EDF34D206965E86B3E94F536E4246")


@pytest.mark.parametrize("key, plain, cipher", [
    # J. Orlin Grabbe, "The DES Algorithm Illustrated" (the classic worked example)
    ("133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405"),
    # FIPS PUB 81 (DES modes of operation), appendix B, ECB: "Now is t"
    ("0123456789ABCDEF", "4E6F772069732074", "3FA40E8A984D4815"),
])
def test_des_published_vectors(key, plain, cipher):
    key, plain, cipher = (bytes.fromhex(x) for x in (key, plain, cipher))
    assert oracle.des(key, plain) == cipher
    assert des_decrypt(key, cipher) == plain  # the decryption used below inverts it


def test_tdea_sp800_67_example():
    """NIST SP 800-67 Rev. 1, appendix B: three distinct keys, plaintext "The qufck brown fox jump"
    (sic). Proves the TDEA primitive the oracle builds on is E_K1, D_K2, E_K3 in that order."""
    keys = bytes.fromhex("0123456789ABCDEF" "23456789ABCDEF01" "456789ABCDEF0123")
    encryptor = Cipher(TripleDES(keys), modes.ECB()).encryptor()
    assert encryptor.update(b"The qufck brown fox jump") == bytes.fromhex(
        "A826FD8CE53B855F" "CCE21C8112256FE6" "68D5C05DD9B6B900")


@given(k1=bytes8, k2=bytes8, block=bytes8)
def test_tdes_ede2_is_e_d_e_of_single_des(k1, k2, block):
    """3DES-EDE2 of P9 figure 3 / P4 figure 8, composed by hand from single DES:
    E_KL(D_KR(E_KL(x))); with KL = KR it collapses to single DES (a property of EDE)."""
    assert oracle.tdes(k1 + k2, block) == oracle.des(k1, des_decrypt(k2, oracle.des(k1, block)))
    assert oracle.tdes(k1 + k1, block) == oracle.des(k1, block)


def test_oracle_mac_padding_adds_a_whole_block():
    """P4 §8.2.4 step 4 by hand: an 8-byte message is MACed as two blocks, the second '80 00..'."""
    ks, msg = bytes.fromhex("0123456789ABCDEF"), bytes.fromhex("8416000004" "112233")
    o1 = oracle.des(ks, msg)
    o2 = oracle.des(ks, bytes(a ^ b for a, b in zip(o1, bytes.fromhex("8000000000000000"))))
    assert oracle.mac4("des", ks, msg) == o2[:4]


def test_oracle_sm4_mac_folds_four_words():
    """P4 figure 2 by hand: one short block, padded, one SM4, XOR of the four 4-byte words."""
    ks = bytes(range(16))
    o = oracle.sm4(ks, bytes.fromhex("841E000104") + b"\x80" + bytes(10))
    words = [int.from_bytes(o[i:i + 4], "big") for i in range(0, 16, 4)]
    assert oracle.mac4("sm4", ks, bytes.fromhex("841E000104")) == (
        words[0] ^ words[1] ^ words[2] ^ words[3]).to_bytes(4, "big")


# -- 2. diversification factors: the standard's and the real cards' examples -------------------

@pytest.mark.parametrize("region, province, city", [
    ("650100", "3635303030307368", "3635303130307378"),  # P9 §7.3.1-7.3.2
    ("519900", "3531303030307368", "3531393930307378"),  # trace T1
])
def test_region_factors(region, province, city):
    assert oracle.province_factor(region) == bytes.fromhex(province)
    assert oracle.city_factor(region) == bytes.fromhex(city)
    assert crypto.province_factor(region) == bytes.fromhex(province)
    assert crypto.city_factor(region) == bytes.fromhex(city)


@pytest.mark.parametrize("atr, factor", [
    ("3B6D0000" "00814A4446" "8660" "5199" "000001AC", "86605199000001AC"),  # trace T1 ATR
])
def test_card_factor_from_atr(atr, factor):
    atr = bytes.fromhex(atr)
    historical = atr[4:]  # TS T0=6D (13 historical bytes, TB1 TC1 present) TB1 TC1, then T1..TD
    assert historical == bytes.fromhex("00814A44468660519900" "0001AC")
    assert oracle.card_factor(historical) == bytes.fromhex(factor)
    assert crypto.card_factor(historical) == bytes.fromhex(factor)


@given(region=regions, historical=historicals)
def test_factors_match(region, historical):
    expected = (oracle.province_factor(region), oracle.city_factor(region), oracle.card_factor(historical))
    assert crypto.factors(region, historical) == expected
    assert (crypto.province_factor(region), crypto.city_factor(region),
            crypto.card_factor(historical)) == expected


# -- 3. chip recipes against the oracle, both families -----------------------------------------

# recipe: (the chip's name, the oracle's name, the key it takes, what it is applied to)
ONE_STEP = {
    "diversify": ("diversify", "diversify", card_keys, bytes8),  # P9 §7.1.1, §7.2.1
    "command_mac": ("command_mac", "mac4", process_keys, st.binary(max_size=40)),  # P4 §8.2
    "auth_data": ("auth_data", "auth_data", process_keys, bytes8),  # P4 §9.3
}


@families
@pytest.mark.parametrize("recipe", list(ONE_STEP))
@given(data=st.data())
def test_one_step_recipe(family, recipe, data):
    """The chip's recipe on a drawn key and input equals the oracle's."""
    chip_name, oracle_name, keys, inputs = ONE_STEP[recipe]
    key, value = data.draw(keys(family)), data.draw(inputs)
    assert getattr(ALGORITHMS[family], chip_name)(key, value) == getattr(oracle, oracle_name)(family, key, value)


@families
@given(data=st.data(), region=regions, historical=historicals, levels=st.integers(0, 3))
def test_diversify_levels(family, data, region, historical, levels):
    root = data.draw(card_keys(family))
    algorithm = ALGORITHMS[family]
    expected = oracle.card_key(family, root, levels, region, historical)
    by_oracle_factors = [oracle.province_factor(region), oracle.city_factor(region),
                         oracle.card_factor(historical)][3 - levels:]
    assert algorithm.diversify_levels(root, by_oracle_factors) == expected
    assert algorithm.diversify_levels(root, crypto.factors(region, historical)[3 - levels:]) == expected


@families
@given(data=st.data(), size=st.sampled_from((4, 8, 16)))
def test_process_key(family, data, size):
    key = data.draw(card_keys(family))
    random = data.draw(st.binary(min_size=size, max_size=size))
    assert ALGORITHMS[family].process_key(key, random) == oracle.process_key(family, key, random)


@families
@pytest.mark.parametrize("length", (0, 1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40))
def test_command_mac_block_boundaries(family, length):
    """Lengths around both block sizes, exact multiples included (a whole '80 00..' block)."""
    ks = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")[:oracle.BLOCK[family]]
    message = bytes((7 * i + 3) & 0xFF for i in range(length))
    assert ALGORITHMS[family].command_mac(ks, message) == oracle.mac4(family, ks, message)


@families
@given(data=st.data())
def test_encipher_and_round_trip(family, data):
    ks = data.draw(process_keys(family))
    # P4 §8.3.3.2: LD >= 1 in the 16-byte family; the DES family allows an empty plaintext
    plaintext = data.draw(st.binary(min_size=1 if family == "sm4" else 0, max_size=40))
    algorithm = ALGORITHMS[family]
    ciphertext = algorithm.encipher(ks, plaintext)
    assert ciphertext == oracle.encipher(family, ks, plaintext)
    assert algorithm.decipher(ks, ciphertext) == plaintext


@families
@pytest.mark.parametrize("case", [
    "empty", "short", "long", "ld_too_big", "ld_ff", "pad_not_80", "pad_not_zero",
    "no_pad_byte", "extra_pad_block",
])
def test_decipher_rejects(family, case):
    """P4 §8.3.4: the card recovers the plaintext by LD; a ciphertext whose length is not a
    whole number of blocks, whose LD points past the data, or whose padding is not the
    '80 00..' that encipherment adds (only when the last block is short) is refused."""
    block = oracle.BLOCK[family]
    ks = bytes(range(0x30, 0x30 + block))
    algorithm = ALGORITHMS[family]
    good = oracle.encipher(family, ks, b"\x12\x34")
    plain = {
        "ld_too_big": bytes((block,)) + bytes(range(1, block)),  # LD = block, only block-1 bytes follow
        "ld_ff": b"\xff" + bytes(block - 1),
        "pad_not_80": b"\x02\x12\x34\x81" + bytes(block - 4),
        "pad_not_zero": b"\x02\x12\x34\x80" + bytes(block - 5) + b"\x01",
        "no_pad_byte": b"\x02\x12\x34" + bytes(block - 3),
        # LD || plaintext fills the block, so encipherment adds nothing: a padding block is wrong
        "extra_pad_block": bytes((block - 1,)) + bytes(range(1, block)) + b"\x80" + bytes(block - 1),
    }
    if case == "empty":
        data = b""
    elif case == "short":
        data = good[:-1]
    elif case == "long":
        data = good + b"\x00"
    else:
        data = ecb(family, ks, plain[case])
    assert algorithm.decipher(ks, data) is None
    assert algorithm.decipher(ks, good) == b"\x12\x34"  # and the well-formed one is accepted


@families
@given(dtk=bytes16, message=st.binary(max_size=40))
def test_tac(family, dtk, message):
    algorithm = ALGORITHMS[family]
    assert algorithm.command_mac(algorithm.tac_key(dtk), message) == oracle.tac(family, dtk, message)


@families
@given(data=st.data(), random4=st.binary(min_size=4, max_size=4), counter=st.integers(0, 0xFFFF),
       terminal_tx=st.binary(min_size=4, max_size=4))
def test_purse_process_keys(family, data, random4, counter, terminal_tx):
    """SESPK / SESLK (P7 §12.2, §11.2) are P4 §8.4 process keys of an 8-byte input."""
    key = data.draw(card_keys(family))
    algorithm = ALGORITHMS[family]
    purchase = random4 + counter.to_bytes(2, "big") + terminal_tx[2:]
    load = random4 + counter.to_bytes(2, "big") + b"\x80\x00"
    assert algorithm.process_key(key, purchase) == oracle.sespk(family, key, random4, counter, terminal_tx)
    assert algorithm.process_key(key, load) == oracle.seslk(family, key, random4, counter)


@families
@pytest.mark.parametrize("spec", KEYS, ids=lambda spec: spec.name)
@given(data=st.data(), region=regions, historical=historicals)
def test_card_key_every_spec(family, spec, data, region, historical):
    """chip.apps.keys.card_key for every key of the table: the root diversified by the spec's number
    of levels (P9 §7.3); the DES family's short keys (STK, STKDFxx) have 8-byte roots."""
    short = family == "des" and spec.short_des
    root = data.draw(bytes8 if short else bytes16)
    expected = oracle.card_key(family, root, spec.levels, region, historical)
    assert card_key(ALGORITHMS[family], spec, root, crypto.factors(region, historical)) == expected
    assert len(expected) == (8 if short else 16)


@pytest.mark.parametrize("spec", KEYS, ids=lambda spec: spec.name)
def test_key_table_levels_match_usage_byte(spec):
    """P9 §6.2: b8-b6 of the PSAM key-usage byte is the number of diversification levels."""
    assert spec.usage >> 5 == spec.levels


# -- 4. worked example: SM4 external authentication with the default RKSSSE root ---------------

ROOT_RK = bytes.fromhex(ROOTS["ssse_rk"])  # chip/personalization/profiles/default.toml ssse_rk
CHALLENGE = bytes.fromhex("0102030405060708")  # the card's GET CHALLENGE answer
ORIGINAL = bytes.fromhex("1112131415161718")  # the terminal's original data D
# intermediate values, computed by the oracle
PROVINCE = bytes.fromhex("31 31 30 30 30 30 73 68")
CITY = bytes.fromhex("31 31 30 31 30 30 73 78")
CARD = bytes.fromhex("86 99 11 01 00 00 00 01")
LEVEL2_ROOT = bytes.fromhex("249DA03534222B562A10F557280FA595")  # SM4(root, PROVINCE || ~PROVINCE)
LEVEL3_ROOT = bytes.fromhex("7EF9C22294B650756A4C930820D0B7FB")  # SM4(level 2, CITY || ~CITY)
RK_CARD = bytes.fromhex("031D5CB945663E855C5EF22557CAA291")  # SM4(level 3, CARD || ~CARD)
KS = bytes.fromhex("E43017C3AE34791B378049400E30160C")  # SM4(RK_CARD, CHALLENGE || 00*8)
AUTH = bytes.fromhex("5793AAB8CB3CA60B")  # fold8(SM4(KS, ORIGINAL || 00*8))


def test_worked_example_external_authentication_sm4():
    # the oracle, step by step
    assert (oracle.province_factor(REGION), oracle.city_factor(REGION),
            oracle.card_factor(HISTORICAL)) == (PROVINCE, CITY, CARD)
    assert oracle.diversify("sm4", ROOT_RK, PROVINCE) == LEVEL2_ROOT
    assert oracle.diversify("sm4", LEVEL2_ROOT, CITY) == LEVEL3_ROOT
    assert oracle.diversify("sm4", LEVEL3_ROOT, CARD) == RK_CARD
    assert oracle.card_key("sm4", ROOT_RK, 3, REGION, HISTORICAL) == RK_CARD
    assert oracle.process_key("sm4", RK_CARD, CHALLENGE) == KS
    assert oracle.auth_data("sm4", KS, ORIGINAL) == AUTH

    # the chip, through its public recipes
    spec = BY_NAME["ssse_rk"]
    assert spec.levels == 3 and spec.card_id == 0x0A
    rk = card_key(crypto.SM4, spec, ROOT_RK, crypto.factors(REGION, HISTORICAL))
    assert rk == RK_CARD
    ks = crypto.SM4.process_key(rk, CHALLENGE)
    assert ks == KS
    assert crypto.SM4.auth_data(ks, ORIGINAL) == AUTH

    # the command a terminal sends (P5 §6.4.3): 00 82 00 <key id> 10 auth8 || original8
    apdu = bytes.fromhex("0082000A10") + AUTH + ORIGINAL
    assert apdu.hex().upper() == "0082000A10" "5793AAB8CB3CA60B" "1112131415161718"
