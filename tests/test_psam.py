"""The PSAM of LD/T 32 part 9 (chip/apps/psam.py) and the terminal's helper (reader/terminals/psam.py), by APDUs.

Every cryptogram is checked against tests/oracle.py, the independent reading of P4/P7/P9
(never chip.kernel.crypto): the PSAM's roots are the default profile's `[keys]`, diversified for
a card of region 110100 with the default profile's ATR historical bytes (docs/card/README.md),
by the number of levels chip.apps.keys gives each key (P9 appendix B where it speaks). Status
words are P9 §9's tables with the project's decisions (docs/decisions.md S1, S7, S8, S9, S18,
§2.5, and the chip.apps.psam docstring).
"""

import collections
import os

import oracle
import pytest
from helpers import CARD_DATE, DDF_NAME, HISTORICAL, REGION, SHORT_DES, h, snapshot, tx
from power_cut import FILE_POINTS, MEMORY_POINTS

from chip import Card, CardNotPowered, PowerLoss, load_profile
from chip.apps.keys import BY_NAME, KEYS
from chip.apps.psam import CITY_KEYS, NATIONAL_KEYS, PROVINCIAL_KEYS, KeyRecord, key_file
from chip.kernel.image import cut_power_at
from reader import SimReader
from reader.terminals.psam import Psam, PsamError

PROFILE = load_profile()
FACTORS = (oracle.province_factor(REGION), oracle.city_factor(REGION), oracle.card_factor(HISTORICAL))

DES_NAME = DDF_NAME  # sx1.sh.社会保障, the name of the SSSE (docs/decisions.md S9)
SM4_NAME = "7378322E73682EC9E7BBE1B1A3D5CF"  # sx2.sh.社会保障
ENV = {"des": DES_NAME, "sm4": SM4_NAME}
FLAG = {"des": 0x01, "sm4": 0x03}  # the card's FCI algorithm flag (SR §10.1)
ADF_FCI = "6F088406D156000005909000"
SELECT_ADF = "00A4000002DF01"
TERMINAL = "110100000001"  # region code + 000001 (chip.apps.psam model)
families = pytest.mark.parametrize("family", ["des", "sm4"])
CIPHER_KEYS = [spec.name for spec in KEYS if spec.name != "df04_dpk"]


def root(family: str, name: str) -> bytes:
    value = PROFILE.keys[name]
    return value[:8] if family == "des" and name in SHORT_DES else value


def process_key(family: str, name: str, process_factor: bytes) -> bytes:
    """The oracle's process key of key `name` for the test card."""
    card_key = oracle.card_key(family, root(family, name), BY_NAME[name].levels, REGION, HISTORICAL)
    return oracle.process_key(family, card_key, process_factor)


def ecb(family: str, ks: bytes, data: bytes) -> bytes:
    one = oracle.des if family == "des" else oracle.sm4
    block = oracle.BLOCK[family]
    return b"".join(one(ks, data[i:i + block]) for i in range(0, len(data), block))


def factor_data(levels: int) -> str:
    """The last `levels` factors, card level first (docs/decisions.md S1)."""
    return h(b"".join(reversed(FACTORS[3 - levels:])))


def delivery(family: str, name: str, process_factor: bytes, levels: int | None = None) -> str:
    spec = BY_NAME[name]
    m = oracle.BLOCK[family]
    levels = spec.levels if levels is None else levels
    data = factor_data(levels) + h(process_factor.ljust(m, b"\x00"))
    return f"BFDE{spec.usage:02X}{spec.psam_id:02X}{len(data) // 2:02X}{data}"


def cipher(p1: int, data: bytes, le: int | None = None) -> str:
    return f"80FA{p1:02X}00{len(data):02X}{h(data)}" + ("" if le is None else f"{le:02X}")


def new_psam(protocol="T=1", state=None):
    """A PSAM and a reader on it, reset; on T=0 the reader shows the card's raw 61xx answers."""
    card = Card.psam(PROFILE, state, date=CARD_DATE)
    reader = SimReader(card, protocol, get_response=False)
    reader.reset()
    return card, reader


def enter(reader, family: str) -> None:
    assert tx(reader, "00A404000F" + ENV[family]) == fci(family)
    assert tx(reader, SELECT_ADF) == ADF_FCI


def fci(family: str) -> str:
    """6F { 84 DF name, A5 { 88 01 01: the DIR's SFI } }."""
    return "6F16840F" + ENV[family] + "A503880101" + "9000"


@pytest.fixture(params=["des", "sm4"])
def family(request):
    return request.param


@pytest.fixture
def psam(family):
    """A PSAM on T=1 with `family`'s environment and its ADF selected."""
    _, reader = new_psam()
    enter(reader, family)
    return reader


# -- file system and SELECT (P9 §5, §9.1) ---------------------------------------------------------

def test_environments_are_selectable_by_name_and_fid():
    _, r = new_psam()
    assert tx(r, "00A404000F" + DES_NAME) == fci("des")
    assert tx(r, "00A4000002DDF1") == fci("sm4")  # DDF1 is a child of the MF
    assert tx(r, "00A40000023F00") == fci("des")
    assert tx(r, "00A404000F" + SM4_NAME) == fci("sm4")
    assert tx(r, SELECT_ADF) == ADF_FCI
    assert tx(r, "00A40000023F00") == fci("des")  # "in any case" (P9 §5)
    assert tx(r, SELECT_ADF) == ADF_FCI
    assert tx(r, "00A404000F" + DES_NAME) == fci("des")


def test_select_by_aid_finds_the_des_adf():
    _, r = new_psam()
    assert tx(r, "00A404000F" + DES_NAME)[-4:] == "9000"
    assert tx(r, "00A4040006D15600000590") == ADF_FCI
    assert tx(r, "0084000010") == "6700"  # the DES environment: no 16-byte challenge


def test_select_by_aid_stays_in_the_sm4_environment():
    _, r = new_psam()
    assert tx(r, "00A404000F" + SM4_NAME)[-4:] == "9000"
    assert tx(r, "00A4040006D15600000590") == ADF_FCI
    assert len(tx(r, "0084000010")) == 36


@pytest.mark.parametrize("apdu, sw", [
    ("00A4000002DF02", "6A82"),  # no such DF
    ("00A4040006D15600000599", "6A82"),
    ("00A400000300DF01", "6700"),  # Lc must be 02
    ("00A4000102DF01", "6A86"),  # P2 must be 00 (FCI)
])
def test_select_errors(apdu, sw):
    _, r = new_psam()
    assert tx(r, "00A404000F" + DES_NAME)[-4:] == "9000"
    assert tx(r, apdu) == sw


@families
def test_public_files(family):
    """0015 card public data (P9 §5.2), 0016 terminal number (§5.3), 0019 the counter (§5.4), DIR (§5.1)."""
    _, r = new_psam()
    assert tx(r, "00A404000F" + ENV[family])[-4:] == "9000"
    public = "01" + TERMINAL.rjust(20, "0") + "01" + "00" + "0000"
    assert tx(r, "00B095000F") == public + "9000"
    assert tx(r, "00B0960006") == TERMINAL + "9000"
    adf_entry = "61124F06D156000005905008" + "社会保障".encode("gbk").hex().upper()
    assert tx(r, "00B2010C00") == adf_entry + "9000"
    if family == "des":
        assert tx(r, "00B2020C00") == "61114F0F" + SM4_NAME + "9000"  # the 16-byte environment's DDF
    else:
        assert tx(r, "00B2020C00") == "6A83"
    assert tx(r, SELECT_ADF) == ADF_FCI
    assert tx(r, "00B0990004") == "000000009000"
    assert tx(r, "00B0960006") == "6A82"  # 0016 is the DDF's, not the ADF's


@families
def test_key_files_cannot_be_read(family):
    _, r = new_psam()
    enter(r, family)
    for sfi in (0x11, 0x12, 0x13):
        assert tx(r, f"00B201{sfi << 3 | 4:02X}00") == "6982"
    assert tx(r, "00A40200020011")[-4:] == "9000"
    assert tx(r, "00B2010400") == "6982"


def test_key_records_follow_p9_section_6_and_appendix_a():
    """Every root of chip.apps.keys sits in the key file appendix A's identifier ranges give it, as a
    P9 §6.1 record: usage | id | 00 | algorithm | 00 00 | 00 00 | value."""
    card, _ = new_psam()
    expected = {
        "ssse_irk": NATIONAL_KEYS, "ssse_rk": NATIONAL_KEYS, "ssse_stk": NATIONAL_KEYS,
        "df04_stk": NATIONAL_KEYS, "df04_rk1": NATIONAL_KEYS, "df04_uk2": NATIONAL_KEYS,
        "df04_dpk": NATIONAL_KEYS,  # P9 appendix B: DPK versions are national keys
        "ssse_puk": PROVINCIAL_KEYS, "ssse_bk": PROVINCIAL_KEYS, "ssse_uk": PROVINCIAL_KEYS,
        "df04_uk1": PROVINCIAL_KEYS, "df04_dlk": PROVINCIAL_KEYS, "df04_dtk": PROVINCIAL_KEYS,
        "df04_dsk": PROVINCIAL_KEYS,
    }
    assert {spec.name: key_file(spec) for spec in KEYS} == expected
    for env, algorithms in (("des", {8: 0x01, 16: 0x00}), ("sm4", {16: 0x02})):
        records = {fid: card.store[f"psam.{env}.{fid:04X}"].records
                   for fid in (NATIONAL_KEYS, PROVINCIAL_KEYS, CITY_KEYS)}
        assert records[CITY_KEYS] == ()
        for spec in KEYS:
            value = root(env, spec.name)
            record = bytes((spec.usage, spec.psam_id, 0, algorithms[len(value)], 0, 0, 0, 0)) + value
            assert record in records[expected[spec.name]]
            assert KeyRecord.decode(record) == KeyRecord(spec.usage, spec.psam_id, algorithms[len(value)], value)


@pytest.mark.parametrize("name, usage, ident", [
    ("ssse_irk", 0x67, 0x08), ("ssse_stk", 0x26, 0x09), ("df04_stk", 0x26, 0x23),
    ("df04_uk2", 0x27, 0x2A), ("df04_rk1", 0x67, 0x2D),
])
def test_appendix_b_addresses(psam, family, name, usage, ident):
    """The keys P9 table B1 names answer to its usage byte and identifier."""
    levels = usage >> 5
    data = factor_data(levels) + "00" * oracle.BLOCK[family]
    assert tx(psam, f"BFDE{usage:02X}{ident:02X}{len(data) // 2:02X}{data}") == "9000"


def test_commands_outside_the_psam_set(psam):
    assert tx(psam, "0020000003123456") == "6D00"  # no VERIFY in P9
    assert tx(psam, "80500000") == "6D00"
    assert tx(psam, "9084000008") == "6E00"
    assert tx(psam, "84D4001124" + "00" * 0x24) == "6D00"  # CREATE KEY is not modelled


# -- GET CHALLENGE (P9 §9.2) ------------------------------------------------------------------------

def test_get_challenge(psam, family):
    psam.card.random = lambda n: bytes(range(1, n + 1))
    assert tx(psam, "0084000004") == "01020304" + "9000"
    assert tx(psam, "0084000008") == "0102030405060708" + "9000"
    assert tx(psam, "0084000010") == ("6700" if family == "des" else h(bytes(range(1, 17))) + "9000")
    for apdu in ("0084000005", "0084000000", "00840000", "008400000400"):
        assert tx(psam, apdu) == "6700"
    assert tx(psam, "0084010008") == "6A86"
    assert tx(psam, "0084000108") == "6A86"


# -- INITIALIZE ENVIRONMENT (P9 §9.3) ---------------------------------------------------------------

def test_initialize_environment(psam):
    assert tx(psam, "BFEC00000111") == "9000"
    assert tx(psam, "BFEC00000151") == "9000"
    assert tx(psam, "BFEC0000011A") == "6A80"  # not two BCD digits
    assert tx(psam, "BFEC000001A1") == "6A80"
    assert tx(psam, "BFEC0000021101") == "6700"
    assert tx(psam, "BFEC0000") == "6700"
    assert tx(psam, "BFEC01000111") == "6A86"
    assert tx(psam, "BFEC00010111") == "6A86"


# -- DELIVERY SESSION KEY and CIPHER DATA (P9 §9.7, §9.8) ---------------------------------------------

@pytest.mark.parametrize("name", CIPHER_KEYS)
def test_every_key_enciphers_with_its_card_process_key(psam, family, name):
    """BF DE diversifies the root by the card's factors and makes E_K(challenge); CIPHER DATA 00
    enciphers ECB (a whole `LD || data` block, so the oracle's encipher needs no padding)."""
    challenge = os.urandom(8)
    assert tx(psam, delivery(family, name, challenge)) == "9000"
    plain = os.urandom(oracle.BLOCK[family] - 1)
    block = bytes((len(plain),)) + plain
    expected = oracle.encipher(family, process_key(family, name, challenge), plain)
    assert tx(psam, cipher(0x00, block, len(block))) == h(expected) + "9000"


@pytest.mark.parametrize("challenge_length", [4, 8, 16])
def test_external_authentication_data(psam, family, challenge_length):
    """Sequence (a): BF DE 67 0A with the card's challenge, 80 FA 00 over the original data
    (16-byte family: original || 00*8, halves XORed by the terminal)."""
    challenge, original = os.urandom(challenge_length), os.urandom(8)
    helper = Psam(SimReader(psam.card))
    helper.select(FLAG[family])
    expected = oracle.auth_data(family, process_key(family, "ssse_rk", challenge), original)
    assert helper.external_auth("ssse_rk", FACTORS, challenge, original) == expected


def test_external_authentication_apdus(psam, family):
    """The same by hand, the exact bytes of the terminal's sequence (docs/card/commands.md §4; P9 §9)."""
    challenge, original = bytes.fromhex("1122334455667788"), bytes.fromhex("0102030405060708")
    lc = {"des": "20", "sm4": "28"}[family]
    assert delivery(family, "ssse_rk", challenge)[:10] == "BFDE670A" + lc
    assert tx(psam, delivery(family, "ssse_rk", challenge)) == "9000"
    ks = process_key(family, "ssse_rk", challenge)
    if family == "des":
        assert tx(psam, cipher(0x00, original, 8)) == h(oracle.auth_data("des", ks, original)) + "9000"
    else:
        c = bytes.fromhex(tx(psam, cipher(0x00, original + bytes(8), 16))[:-4])
        assert bytes(a ^ b for a, b in zip(c[:8], c[8:])) == oracle.auth_data("sm4", ks, original)


def test_internal_authentication_expected(psam, family):
    """Sequence (b): IRK (67 08, three levels), process factor R1, original R2."""
    r1, r2 = os.urandom(8), os.urandom(8)
    helper = Psam(SimReader(psam.card))
    helper.select(FLAG[family])
    expected = oracle.auth_data(family, process_key(family, "ssse_irk", r1), r2)
    assert helper.internal_auth_expected(FACTORS, r1, r2) == expected


@pytest.mark.parametrize("length", [0, 5, 7, 8, 15, 16, 55, 56, 57, 120, 127, 128, 300])
@pytest.mark.parametrize("name", ["ssse_stk", "df04_stk", "ssse_bk"])
def test_mac_matches_the_oracle(psam, family, name, length):
    """Sequence (c): a zero initial block and the message padded by method 2; P1 05 when it fits,
    07 03.. 01 beyond 40 (DES) / 80 (SM4) bytes. The answer is the MAC4 (S7)."""
    challenge, message = os.urandom(4), os.urandom(length)
    helper = Psam(SimReader(psam.card))
    helper.select(FLAG[family])
    expected = oracle.mac4(family, process_key(family, name, challenge), message)
    assert helper.mac(name, FACTORS, challenge, message) == expected


def test_mac_initial_value_is_the_first_block(psam, family):
    """P1 05 and 07: the first block is the CBC initial value. CBC from IV over B1.. equals CBC
    from zero over (IV xor B1).., so the oracle's zero-IV MAC checks it."""
    b = oracle.BLOCK[family]
    challenge, message = os.urandom(8), os.urandom(3 * b - 3)
    padded = message + b"\x80" + bytes(-(len(message) + 1) % b)
    iv = os.urandom(b)
    data = iv + bytes(x ^ y for x, y in zip(iv, padded[:b])) + padded[b:]
    expected = h(oracle.mac4(family, process_key(family, "ssse_stk", challenge), message))
    assert tx(psam, delivery(family, "ssse_stk", challenge)) == "9000"
    assert tx(psam, cipher(0x05, data, 4)) == expected + "9000"
    assert tx(psam, delivery(family, "ssse_stk", challenge)) == "9000"
    assert tx(psam, cipher(0x07, data[:2 * b])) == "9000"
    assert tx(psam, cipher(0x03, data[2 * b:3 * b])) == "9000"
    assert tx(psam, cipher(0x01, data[3 * b:], 4)) == expected + "9000"


@pytest.mark.parametrize("length", [1, 6, 7, 8, 15, 16, 63, 64, 100, 200])
def test_encipher_matches_the_oracle(psam, family, length):
    """LD || data padded only when the last block is short (P4 §8.3); P1 02 .. 00 beyond one command."""
    challenge, plain = os.urandom(8), os.urandom(length)
    helper = Psam(SimReader(psam.card))
    helper.select(FLAG[family])
    expected = oracle.encipher(family, process_key(family, "ssse_uk", challenge), plain)
    assert helper.encipher("ssse_uk", FACTORS, challenge, plain) == expected


@pytest.mark.parametrize("pin, lc", [
    ("123456", {"des": 0x0C, "sm4": 0x14}),  # LD || PIN in one DES block
    ("12345678901234", {"des": 0x0C, "sm4": 0x14}),  # 7 PIN bytes: still one
    ("1234567890123456", {"des": 0x14, "sm4": 0x14}),  # 8: two DES blocks
])
def test_pin_reset_data(psam, family, pin, lc):
    """docs/decisions.md S2/S3: one STK process key enciphers LD || PIN (cn) and MACs 84 24 00 01 Lc || C."""
    challenge = os.urandom(4)
    cn = bytes.fromhex(pin + "F" * (len(pin) % 2))
    helper = Psam(SimReader(psam.card))
    helper.select(FLAG[family])
    data = helper.pin_reset_data(FACTORS, challenge, cn, bytes.fromhex("84240001"))
    ks = process_key(family, "ssse_stk", challenge)
    ciphertext = oracle.encipher(family, ks, cn)
    assert len(data) == lc[family]
    assert data == ciphertext + oracle.mac4(family, ks, bytes((0x84, 0x24, 0x00, 0x01, lc[family])) + ciphertext)


def test_pin_reset_to_an_empty_pin_is_the_mac_alone(psam, family):
    challenge = os.urandom(4)
    helper = Psam(SimReader(psam.card))
    helper.select(FLAG[family])
    data = helper.pin_reset_data(FACTORS, challenge, b"", bytes.fromhex("84240001"))
    assert data == oracle.mac4(family, process_key(family, "ssse_stk", challenge), bytes.fromhex("8424000104"))


def test_temporary_key_serves_one_computation_of_each_kind(psam, family):
    """P9 §9.8.2 (docs/decisions.md S8): an encryption and a MAC per DELIVERY SESSION KEY, in either order."""
    b = oracle.BLOCK[family]
    mac_data = bytes(b) + b"\x80" + bytes(b - 1)
    assert tx(psam, cipher(0x00, bytes(b), b)) == "6901"  # no DELIVERY SESSION KEY yet
    assert tx(psam, delivery(family, "ssse_stk", bytes(8))) == "9000"
    assert tx(psam, cipher(0x02, bytes(b), b))[-4:] == "9000"  # blocks follow: not complete yet
    assert tx(psam, cipher(0x00, bytes(b), b))[-4:] == "9000"
    assert tx(psam, cipher(0x00, bytes(b), b)) == "6901"
    assert tx(psam, cipher(0x02, bytes(b), b)) == "6901"
    assert tx(psam, cipher(0x05, mac_data, 4))[-4:] == "9000"
    assert tx(psam, cipher(0x05, mac_data, 4)) == "6901"  # both kinds done: the register is empty
    assert tx(psam, cipher(0x00, bytes(b), b)) == "6901"
    assert tx(psam, delivery(family, "ssse_stk", bytes(8))) == "9000"
    assert tx(psam, cipher(0x07, bytes(b))) == "9000"
    assert tx(psam, cipher(0x03, bytes(b))) == "9000"
    assert tx(psam, cipher(0x01, b"\x80" + bytes(b - 1), 4))[-4:] == "9000"
    assert tx(psam, cipher(0x07, bytes(b))) == "6901"
    assert tx(psam, cipher(0x00, bytes(b), b))[-4:] == "9000"
    assert tx(psam, cipher(0x00, bytes(b), b)) == "6901"


def test_mac_blocks_out_of_order(psam, family):
    b = oracle.BLOCK[family]
    assert tx(psam, delivery(family, "ssse_stk", bytes(8))) == "9000"
    assert tx(psam, cipher(0x03, bytes(b))) == "6985"  # no MAC begun by 07
    assert tx(psam, cipher(0x01, bytes(b), 4)) == "6985"
    assert tx(psam, cipher(0x07, bytes(b))) == "9000"
    assert tx(psam, cipher(0x01, bytes(b), 4))[-4:] == "9000"
    assert tx(psam, cipher(0x01, bytes(b), 4)) == "6901"


@pytest.mark.parametrize("event", ["reset", "power cycle", "other environment", "re-selection by name",
                                   "failed delivery"])
def test_register_cleared(family, event):
    """The temporary key is volatile: reset, power, leaving the environment, selecting it again by
    name and a refused DELIVERY SESSION KEY all empty the register."""
    b = oracle.BLOCK[family]
    card, r = new_psam()
    enter(r, family)
    assert tx(r, delivery(family, "ssse_stk", bytes(8))) == "9000"
    if event == "reset":
        r.reset()
    elif event == "power cycle":
        card.power_off()
        r.reset()
    elif event == "other environment":
        enter(r, "sm4" if family == "des" else "des")
    elif event == "failed delivery":
        assert tx(r, delivery(family, "ssse_stk", bytes(8), levels=2)) == "6A80"
    if event != "failed delivery":
        enter(r, family)
    assert tx(r, cipher(0x00, bytes(b), b)) == "6901"


def test_register_kept_within_the_environment(psam, family):
    """Moving between the environment's own files (SELECT by FID) keeps the temporary key."""
    b = oracle.BLOCK[family]
    assert tx(psam, delivery(family, "ssse_stk", bytes(8))) == "9000"
    assert tx(psam, "00A40200020019")[-4:] == "9000"
    assert tx(psam, SELECT_ADF) == ADF_FCI
    assert tx(psam, cipher(0x00, bytes(b), b))[-4:] == "9000"


@pytest.mark.parametrize("blocks, p1, sw", [
    (0, 0x00, "6700"), (1, 0x05, "6700"), (9, 0x00, "6700"), (9, 0x05, "6700"), (9, 0x07, "6700"),
    (1, 0x04, "6A86"), (1, 0x06, "6A86"), (1, 0x08, "6A86"),
    (8, 0x00, "9000"), (8, 0x05, "9000"), (2, 0x05, "9000"), (1, 0x07, "9000"),
])
def test_cipher_data_lc_and_p1(psam, family, blocks, p1, sw):
    """Lc: DES 08-40 (10-40 for 05), SSF33/SM4 10-80 (20-80 for 05), whole blocks (P9 table 25)."""
    b = oracle.BLOCK[family]
    assert tx(psam, delivery(family, "ssse_stk", bytes(8))) == "9000"
    assert tx(psam, cipher(p1, bytes(blocks * b)) if blocks else f"80FA{p1:02X}00")[-4:] == sw


def test_cipher_data_partial_blocks_and_p2(psam, family):
    b = oracle.BLOCK[family]
    assert tx(psam, delivery(family, "ssse_stk", bytes(8))) == "9000"
    assert tx(psam, cipher(0x00, bytes(b + 1))) == "6700"
    assert tx(psam, cipher(0x00, bytes(b - 1))) == "6700"
    assert tx(psam, f"80FA0001{b:02X}" + "00" * b) == "6A86"
    assert tx(psam, cipher(0x00, bytes(b), b))[-4:] == "9000"  # none of these used the key


@pytest.mark.parametrize("levels", [0, 1, 2])
def test_wrong_level_count(psam, family, levels):
    """N factors must be the key's levels (RKSSSE: 3), else 6A80; N = 0 is codable (P9 table 23)."""
    assert tx(psam, delivery(family, "ssse_rk", bytes(8), levels)) == "6A80"


def test_level_bits_of_p1_are_not_compared(psam, family):
    """The key is found by type and identifier; its own record gives the levels (P9 §6.2, §8)."""
    data = factor_data(3) + "00" * oracle.BLOCK[family]
    assert tx(psam, f"BFDE070A{len(data) // 2:02X}{data}") == "9000"
    data = factor_data(1) + "00" * oracle.BLOCK[family]
    assert tx(psam, f"BFDE670A{len(data) // 2:02X}{data}") == "6A80"


def test_delivery_session_key_errors(psam, family):
    m = oracle.BLOCK[family]
    one = factor_data(1)
    assert tx(psam, f"BFDE2609{(8 + m + 1):02X}{one}" + "00" * (m + 1)) == "6700"  # not M + 8N
    assert tx(psam, f"BFDE2609{(32 + m):02X}" + "00" * (32 + m)) == "6700"  # N = 4
    assert tx(psam, f"BFDE2609{(m - 1):02X}" + "00" * (m - 1)) == "6700"
    assert tx(psam, "BFDE2609") == "6700"
    assert tx(psam, f"BFDE26FE{(8 + m):02X}{one}" + "00" * m) == "6A88"  # no such identifier
    assert tx(psam, f"BFDE2D09{(8 + m):02X}{one}" + "00" * m) == "6A88"  # key 09 is no type-13 key
    assert tx(psam, f"BFDE2201{(8 + m):02X}{one}" + "00" * m) == "6985"  # DPK: purchase only (P9 §6.3)
    assert tx(psam, "00A4000002" + ("3F00" if family == "des" else "DDF1"))[-4:] == "9000"
    assert tx(psam, f"BFDE2609{(8 + m):02X}{one}" + "00" * m) == "6985"  # outside the ADF


# -- INIT SAM FOR PURCHASE, CREDIT SAM FOR PURCHASE (P9 §9.9, §9.10) -------------------------------

AMOUNTS = bytes.fromhex("00000BB8" "000001F4" "000003E8")  # account 30.00, self-pay 5.00, fund 10.00
KIND = 0x02
WHEN = bytes.fromhex("20261121" "093015")


def init_sam(family: str, random4: bytes, counter: int, *, n: int | None = None, version: int = 0x01,
             algorithm: int | None = None, p1: int = 0x01) -> str:
    n = BY_NAME["df04_dpk"].levels if n is None else n
    algorithm = FLAG[family] if algorithm is None else algorithm
    data = (random4 + counter.to_bytes(2, "big") + AMOUNTS + bytes((KIND,)) + WHEN + bytes((version, algorithm))
            + bytes.fromhex(factor_data(n)))
    return f"8070{p1:02X}00{len(data):02X}{h(data)}08"


def purchase_keys(family: str, random4: bytes, counter: int, number: bytes) -> bytes:
    spec = BY_NAME["df04_dpk"]
    dpk = oracle.card_key(family, root(family, "df04_dpk"), spec.levels, REGION, HISTORICAL)
    return oracle.sespk(family, dpk, random4, counter, number)


def test_init_and_credit_sam_for_purchase(psam, family):
    random4, counter = os.urandom(4), 7
    for number in (1, 2):
        tx_no = number.to_bytes(4, "big")
        sespk = purchase_keys(family, random4, counter, tx_no)
        mac1 = oracle.mac4(family, sespk, AMOUNTS + bytes((KIND,)) + bytes.fromhex(TERMINAL) + WHEN)
        assert tx(psam, init_sam(family, random4, counter)) == h(tx_no + mac1) + "9000"
        assert tx(psam, "00B0990004") == h(tx_no) + "9000"  # the last number used
        assert tx(psam, "8072000004" + h(oracle.mac4(family, sespk, AMOUNTS))) == "9000"
        assert tx(psam, "8072000004" + h(oracle.mac4(family, sespk, AMOUNTS))) == "6901"  # once


def test_bad_mac2(psam, family):
    assert tx(psam, init_sam(family, bytes(4), 0))[-4:] == "9000"
    assert tx(psam, "807200000400000000") == "9302"  # S18
    assert tx(psam, "807200000400000000") == "6901"  # the purchase session is over


def test_credit_sam_for_purchase_errors(psam, family):
    assert tx(psam, "807200000400000000") == "6901"  # no INIT SAM FOR PURCHASE
    assert tx(psam, init_sam(family, bytes(4), 0))[-4:] == "9000"
    assert tx(psam, "80720000050000000000") == "6700"
    assert tx(psam, "80720000") == "6700"
    assert tx(psam, "807201000400000000") == "6A86"
    assert tx(psam, "807200010400000000") == "6A86"
    sespk = purchase_keys(family, bytes(4), 0, (1).to_bytes(4, "big"))
    assert tx(psam, "8072000004" + h(oracle.mac4(family, sespk, AMOUNTS))) == "9000"  # the errors kept it


def test_init_sam_for_purchase_errors(psam, family):
    levels = BY_NAME["df04_dpk"].levels
    for apdu, sw in [
        (init_sam(family, bytes(4), 0, p1=0x00), "6A86"),
        (init_sam(family, bytes(4), 0)[:6] + "01" + init_sam(family, bytes(4), 0)[8:], "6A86"),
        (init_sam(family, bytes(4), 0, n=0), "6700"),  # N = 1-3
        (init_sam(family, bytes(4), 0, n=levels + 1), "6700"),  # the DPK's levels disagree with Lc
        (init_sam(family, bytes(4), 0)[:8] + "1D" + init_sam(family, bytes(4), 0)[10:-2] + "0008", "6700"),
        (init_sam(family, bytes(4), 0, version=0x02), "6A88"),  # no DPK of that version
        (init_sam(family, bytes(4), 0, algorithm=0x00), "6A88"),
        (init_sam(family, bytes(4), 0, algorithm=FLAG["sm4" if family == "des" else "des"]), "6A88"),
    ]:
        assert tx(psam, apdu) == sw, apdu
    assert tx(psam, "00B0990004") == "000000009000"  # no refused command used a number
    assert tx(psam, "807200000400000000") == "6901"
    assert tx(psam, "00A4000002" + ("3F00" if family == "des" else "DDF1"))[-4:] == "9000"
    assert tx(psam, init_sam(family, bytes(4), 0)) == "6985"  # outside the ADF


def test_transaction_counter_is_shared_and_never_wraps(family):
    card, r = new_psam()
    enter(r, "des")
    assert tx(r, init_sam("des", bytes(4), 0))[:8] == "00000001"
    enter(r, "sm4")
    assert tx(r, init_sam("sm4", bytes(4), 0))[:8] == "00000002"  # one counter behind both 0019
    card.store["psam.0019"].data = bytes.fromhex("FFFFFFFE")
    enter(r, family)
    assert tx(r, init_sam(family, bytes(4), 0))[:8] == "FFFFFFFF"
    assert tx(r, init_sam(family, bytes(4), 0)) == "6985"
    assert tx(r, "00B0990004") == "FFFFFFFF9000"


def test_purchase_through_the_helper(psam, family):
    random4, counter = os.urandom(4), 0x1234
    helper = Psam(SimReader(psam.card))
    helper.select(FLAG[family])
    assert helper.terminal_number == bytes.fromhex(TERMINAL)
    number, mac1 = helper.init_purchase(random=random4, counter=counter.to_bytes(2, "big"), amounts=AMOUNTS,
                                        kind=KIND, when=WHEN, key_version=0x01, key_algorithm=FLAG[family],
                                        factors=FACTORS)
    sespk = purchase_keys(family, random4, counter, number)
    assert number == (1).to_bytes(4, "big")
    assert mac1 == oracle.mac4(family, sespk, AMOUNTS + bytes((KIND,)) + bytes.fromhex(TERMINAL) + WHEN)
    helper.credit_purchase(oracle.mac4(family, sespk, AMOUNTS))
    number, _ = helper.init_purchase(random=random4, counter=counter.to_bytes(2, "big"), amounts=AMOUNTS,
                                     kind=KIND, when=WHEN, key_version=0x01, key_algorithm=FLAG[family],
                                     factors=FACTORS)
    assert number == (2).to_bytes(4, "big")
    with pytest.raises(PsamError) as error:
        helper.credit_purchase(bytes(4))
    assert error.value.sw == 0x9302
    assert "9302" in str(error.value) and "MAC" in str(error.value)


def test_helper_errors(psam):
    helper = Psam(SimReader(psam.card))
    with pytest.raises(ValueError):
        helper.select(0x02)  # SSF33: no such environment here
    with pytest.raises(ValueError):
        helper.mac("ssse_stk", FACTORS, bytes(4), b"")  # no environment selected
    helper.select(0x01)
    with pytest.raises(PsamError) as error:
        helper.credit_purchase(bytes(4))
    assert error.value.sw == 0x6901


# -- T=0: the answers wait for GET RESPONSE (P9 table 26: 61xx) -----------------------------------

@families
def test_t0_answers_through_get_response(family):
    card, r = new_psam("T=0")
    assert tx(r, "00A404000F" + ENV[family]) == "6118"
    assert tx(r, "00C0000018") == fci(family)
    assert tx(r, SELECT_ADF) == "610A"
    assert tx(r, "00C000000A") == ADF_FCI
    card.random = lambda n: bytes(n)
    assert tx(r, "0084000008") == "0000000000000000" + "9000"  # case 2: no 61xx
    challenge, original = bytes(8), bytes(8)
    assert tx(r, delivery(family, "ssse_rk", challenge)) == "9000"
    b = oracle.BLOCK[family]
    response = tx(r, cipher(0x00, original + bytes(b - 8), b))
    assert response == f"61{b:02X}"
    answer = bytes.fromhex(tx(r, f"00C00000{b:02X}")[:-4])
    ks = process_key(family, "ssse_rk", challenge)
    auth = answer if family == "des" else bytes(x ^ y for x, y in zip(answer[:8], answer[8:]))
    assert auth == oracle.auth_data(family, ks, original)
    assert tx(r, init_sam(family, bytes(4), 0)) == "6108"
    sespk = purchase_keys(family, bytes(4), 0, (1).to_bytes(4, "big"))
    mac1 = oracle.mac4(family, sespk, AMOUNTS + bytes((KIND,)) + bytes.fromhex(TERMINAL) + WHEN)
    assert tx(r, "00C0000008") == "00000001" + h(mac1) + "9000"


@families
def test_helper_on_t0_equals_t1(family):
    """The helper fetches 61xx answers itself (a raw T=0 reader) and gets what T=1 gives."""
    challenge, message = os.urandom(8), os.urandom(90)
    answers = []
    for protocol in ("T=0", "T=1"):
        helper = Psam(SimReader(Card.psam(PROFILE, date=CARD_DATE), protocol, get_response=False))
        helper.select(FLAG[family])
        answers.append((helper.mac("ssse_stk", FACTORS, challenge, message),
                        helper.external_auth("ssse_rk", FACTORS, challenge, message[:8]),
                        helper.encipher("ssse_uk", FACTORS, challenge, message)))
    assert answers[0] == answers[1]


# -- the terminal transaction counter across power cuts (P9 §5.4) -----------------------------------

@pytest.mark.parametrize("backend", ["file", "memory"])
def test_transaction_number_never_reused_across_a_power_cut(backend, tmp_path):
    """Cut the power at every write point of INIT SAM FOR PURCHASE: no answer leaves the PSAM, and
    the number after power-up is always above every number answered (one above the cut command's
    if its commit had landed)."""
    points = FILE_POINTS if backend == "file" else MEMORY_POINTS
    outcomes = collections.Counter()
    for n in range(1, len(points) + 1):
        path = str(tmp_path / f"psam{n}.img") if backend == "file" else None
        card, r = new_psam(state=path)
        enter(r, "des")
        answered = {tx(r, init_sam("des", bytes(4), 0))[:8]}
        hook = cut_power_at(n)
        card.store.backend.write_point = hook
        with pytest.raises(PowerLoss) as cut:
            r.transmit(bytes.fromhex(init_sam("des", bytes(4), 0)))
        assert hook.seen == points[:n]
        assert not card.powered
        with pytest.raises(CardNotPowered):
            r.transmit(bytes.fromhex("0084000004"))
        if backend == "file":  # the cut PSAM leaves: the image's next owner opens what is durable
            snap = snapshot(Card.open(path, read_only=True).store)
            card.close()  # closing writes nothing
            durable = Card.open(path)
            assert snapshot(durable.store) == snap
        else:
            durable = card
        durable.store.backend.write_point = None
        r = SimReader(durable)
        r.reset()
        enter(r, "des")
        assert tx(r, "00B0990004") == ("00000002" if cut.value.landed else "00000001") + "9000"
        number = tx(r, init_sam("des", bytes(4), 0))[:8]
        assert number not in answered
        assert int(number, 16) == (3 if cut.value.landed else 2)
        assert tx(r, "807200000400000000") == "9302"  # and the PSAM works on
        outcomes["landed" if cut.value.landed else "lost"] += 1
        if backend == "file":
            assert sorted(os.listdir(tmp_path)) == sorted(f"psam{i}.img" for i in range(1, n + 1))
    assert outcomes == ({"lost": 2, "landed": 1} if backend == "file" else {"lost": 1})
