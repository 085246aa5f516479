"""An independent oracle for the social-security card's cryptography, written from LD/T 32.

Every function below follows one recipe of the standard (社会保障（个人）卡规范) and says
which: P4 = 第4部分 安全机制, P7 = 第7部分 应用流程, P9 = 第9部分 PSAM卡应用技术要求.
The project's rule is that its cryptography (chip/kernel/crypto.py, chip/apps/keys.py) is checked
against code that never calls it, so this module imports nothing from `chip` and uses
only ECB encryption of single blocks from `cryptography`; chaining, padding, folding
and key handling are written out here, literally as the text describes them.

Conventions: `family` is "des" (the 8-byte-block algorithm: single DES under an
8-byte key, 3DES-EDE2 under a 16-byte key) or "sm4" (the 16-byte-block algorithm;
P9 names SSF33, real cards use SM4 with the same formulas). `~F` flips every bit.
Functions raise ValueError on lengths the standard does not allow.
"""

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

FAMILIES = ("des", "sm4")
BLOCK = {"des": 8, "sm4": 16}


# -- block primitives: one ECB block each -------------------------------------------------------

def _ecb_encrypt(algorithm, block: bytes) -> bytes:
    encryptor = Cipher(algorithm, modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _need(value: bytes, length: int, what: str) -> None:
    if len(value) != length:
        raise ValueError(f"{what} must be {length} bytes, got {len(value)}")


def des(key8: bytes, block8: bytes) -> bytes:
    """Single DES encryption of one block: TDEA with K1 = K2 = K3 = `key8` (EDE collapses to E)."""
    _need(key8, 8, "DES key")
    _need(block8, 8, "DES block")
    return _ecb_encrypt(TripleDES(key8 * 3), block8)


def tdes(key16: bytes, block8: bytes) -> bytes:
    """3DES-EDE2 encryption of one block: E_KL(D_KR(E_KL(x))) for K = KL || KR, as the
    three-key form KL || KR || KL (P9 §7.1.1 figure 3; P4 §8.4.1 figure 8)."""
    _need(key16, 16, "3DES key")
    _need(block8, 8, "DES block")
    return _ecb_encrypt(TripleDES(key16 + key16[:8]), block8)


def sm4(key16: bytes, block16: bytes) -> bytes:
    """SM4 (GB/T 32907) encryption of one block."""
    _need(key16, 16, "SM4 key")
    _need(block16, 16, "SM4 block")
    return _ecb_encrypt(algorithms.SM4(key16), block16)


def _family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}")
    return family


def _encrypt_with_key(family: str, key: bytes, block: bytes) -> bytes:
    """`E_K(x)` as the standard uses it for card keys: DES family by key length
    (8 bytes single DES, 16 bytes 3DES-EDE2), SM4 for the 16-byte family."""
    if _family(family) == "sm4":
        return sm4(key, block)
    if len(key) == 8:
        return des(key, block)
    return tdes(key, block)


def _encrypt_with_process_key(family: str, ks: bytes, block: bytes) -> bytes:
    """Encryption under a process key: in the DES family the process key is single length,
    so every later use is single DES (P4 §8.4.1 "单长度密钥"); SM4 in the 16-byte family."""
    if _family(family) == "sm4":
        return sm4(ks, block)
    return des(ks, block)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _invert(data: bytes) -> bytes:
    return bytes(x ^ 0xFF for x in data)


# -- P9 §7.1.1, §7.2.1, §7.3: key diversification --------------------------------------------

def diversify(family: str, key: bytes, factor8: bytes) -> bytes:
    """One diversification level, parent key -> child key.

    P9 §7.1.1 (DES): an 8-byte key gives DEA(K, F) (figure 2); a 16-byte key gives
    left half = Triple-DEA(K, F), right half = Triple-DEA(K, ~F), DK = DKL || DKR (figure 3).
    P9 §7.2.1 (SSF33, here SM4): F is the high 8 bytes of the input, ~F the low 8 bytes,
    the 16-byte result DEA(K, F || ~F) is the child key (figure 8).
    """
    _need(factor8, 8, "diversification factor")
    if _family(family) == "sm4":
        return sm4(key, factor8 + _invert(factor8))
    if len(key) == 8:
        return des(key, factor8)
    return tdes(key, factor8) + tdes(key, _invert(factor8))


def _region_digits(region6: str) -> bytes:
    if len(region6) != 6 or not region6.isdigit() or not region6.isascii():
        raise ValueError(f"region code must be 6 decimal digits, got {region6!r}")
    return region6.encode("ascii")


def province_factor(region6: str) -> bytes:
    """P9 §7.3.1 level-1 factor (province): the 应用城市代码 (first 3 bytes of the card
    identification code, 6 digits) expanded to 6 ASCII bytes, its first two bytes,
    then '30 30 30 30 73 68'. 650100 -> 36 35 30 30 30 30 73 68."""
    return _region_digits(region6)[:2] + bytes.fromhex("303030307368")


def city_factor(region6: str) -> bytes:
    """P9 §7.3.2 level-2 factor (city): the 6 ASCII bytes of the region code, then '73 78'.
    650100 -> 36 35 30 31 30 30 73 78."""
    return _region_digits(region6) + bytes.fromhex("7378")


def card_factor(historical: bytes) -> bytes:
    """P9 §7.3.3 level-3 factor (card): bytes 6 to 13 (counting from 1) of the user card's
    ATR historical bytes (T6-T7 manufacturer, T8-T9 region, TA-TD per-card serial, P2 table 16)."""
    if len(historical) < 13:
        raise ValueError(f"need at least 13 historical bytes, got {len(historical)}")
    return bytes(historical[6 - 1:13])


def card_key(family: str, root: bytes, levels: int, region6: str, historical: bytes) -> bytes:
    """P9 §7.3 figure 12: level-1 root --province--> level-2 root --city--> level-3 root
    --card--> card key. A root held `levels` levels above the card (P9 §6.2 usage byte
    b8-b6) is diversified by the last `levels` of (province, city, card) factors, in that order."""
    if not 0 <= levels <= 3:
        raise ValueError(f"levels must be 0-3, got {levels}")
    chain = (province_factor(region6), city_factor(region6), card_factor(historical))
    key = root
    for factor in chain[3 - levels:]:
        key = diversify(family, key, factor)
    return key


# -- P4 §8.4: process keys -------------------------------------------------------------------

def process_key(family: str, key: bytes, data: bytes) -> bytes:
    """Process (session) key KS from a card key and variable input data.

    P4 §8.4.1 (8-byte block): the input is 8 bytes (a 4-byte random is padded with '00'
    to 8; of a longer input the first 8 bytes are taken); KS = DEA(e)(K, I) with an
    8-byte K (figure 7) or E_KL(D_KR(E_KL(I))) with a 16-byte K (figure 8); KS is single
    length (8 bytes).
    P4 §8.4.2 (16-byte block): the input is a 4-byte random + 12 bytes '00', an 8-byte
    random + 8 bytes '00' or a 16-byte random; KS = DEA(e)(K, I), 16 bytes (figure 9).
    """
    if _family(family) == "sm4":
        if len(data) > 16:
            raise ValueError(f"16-byte family process-key input is at most 16 bytes, got {len(data)}")
        return sm4(key, data + bytes(16 - len(data)))
    block = data[:8]
    return _encrypt_with_key("des", key, block + bytes(8 - len(block)))


# -- P4 §8.2: MAC ----------------------------------------------------------------------------

def _pad_mac(message: bytes, block: int) -> bytes:
    """P4 §8.2.4 steps 3-4: a full last block gets a whole block '80 00 .. 00' after it;
    a short one gets '80', then '00' until the block is full."""
    if len(message) % block == 0:
        return message + b"\x80" + bytes(block - 1)
    padded = message + b"\x80"
    while len(padded) % block:
        padded += b"\x00"
    return padded


def _cbc_last_block(family: str, ks: bytes, data: bytes, block: int) -> bytes:
    """P4 figures 1 and 2: initial value all '00'; I1 = D1, O1 = DEA(KMA, I1),
    I(n+1) = On XOR D(n+1); the last O is the result."""
    output = bytes(block)  # step 1: the initial value, '00' * block
    for i in range(0, len(data), block):
        output = _encrypt_with_process_key(family, ks, _xor(output, data[i:i + block]))
    return output


def mac4(family: str, ks: bytes, message: bytes) -> bytes:
    """The 4-byte MAC of P4 §8.2.4 over `message` (for commands: CLA INS P1 P2 Lc || data
    before the MAC, Lc counting the MAC; for medical MAC1/MAC2/TAC: the listed fields only).

    P4 §8.2.4.1 (8-byte block, figure 1): IV 00*8, padding as _pad_mac, DES-CBC under the
    single-length process key KMA, the MAC is the leftmost 4 bytes of the last output.
    P4 §8.2.4.2 (16-byte block, figure 2): IV 00*16, the same padding on 16-byte blocks,
    CBC under KMA; the 16-byte result is cut into four 4-byte pieces that are XORed together.
    """
    block = BLOCK[_family(family)]
    if family == "des":
        _need(ks, 8, "DES MAC process key")
    last = _cbc_last_block(family, ks, _pad_mac(message, block), block)
    if family == "des":
        return last[:4]
    return _xor(_xor(last[0:4], last[4:8]), _xor(last[8:12], last[12:16]))


# -- P4 §9.3: authentication data ------------------------------------------------------------

def auth_data(family: str, ks: bytes, original8: bytes) -> bytes:
    """8-byte authentication data of internal/external authentication.

    P4 §9.3.1 (8-byte block, figure 10): DEA(e)(KS, original data).
    P4 §9.3.2 (16-byte block, figure 11): the input is the 8-byte original data + 8 bytes
    '00'; the 16-byte result's left and right halves are XORed.
    """
    _need(original8, 8, "original data")
    if _family(family) == "des":
        return des(ks, original8)
    out = sm4(ks, original8 + bytes(8))
    return _xor(out[:8], out[8:])


# -- P4 §8.3: data encipherment --------------------------------------------------------------

def encipher(family: str, ks: bytes, plaintext: bytes) -> bytes:
    """P4 §8.3.2-8.3.3: LD (plaintext length without padding, 1 byte) || plaintext, cut into
    blocks; only if the last block is short: '80' then '00' to the block; every block
    enciphered on its own under the data-encryption process key (figures 3, 4: ECB),
    the results concatenated in order. P4 §8.3.3.2: in the 16-byte family LD >= 1."""
    block = BLOCK[_family(family)]
    if len(plaintext) > 0xFF:
        raise ValueError("LD is one byte: at most 255 bytes of plaintext")
    if family == "sm4" and not plaintext:
        raise ValueError("P4 §8.3.3.2: LD is not less than 1 in the 16-byte family")
    data = bytes((len(plaintext),)) + plaintext
    if len(data) % block:
        data += b"\x80"
        while len(data) % block:
            data += b"\x00"
    return b"".join(_encrypt_with_process_key(family, ks, data[i:i + block])
                    for i in range(0, len(data), block))


# -- P7 §15, §11.2, §12.2: medical purse keys ------------------------------------------------

def tac(family: str, dtk: bytes, message: bytes) -> bytes:
    """P7 §15: TAC = the P4 MAC algorithm over the listed data; the key is, for the 8-byte
    block algorithm, DTK's left 8 bytes XOR its right 8 bytes (single DES), for the 16-byte
    block algorithm DTK itself. No process key (P7 §11.8, §12.6)."""
    if _family(family) == "des":
        _need(dtk, 16, "DTK")
        return mac4("des", _xor(dtk[:8], dtk[8:]), message)
    return mac4("sm4", dtk, message)


def sespk(family: str, dpk: bytes, random4: bytes, purchase_counter: int, terminal_tx_no: bytes) -> bytes:
    """P7 §12.2: SESPK, the purchase process key from DPK, input = pseudo-random(ICC) 4 ||
    medical purchase transaction counter 2 || the rightmost two bytes of the terminal
    transaction number; derived as a P4 §8.4 process key."""
    _need(random4, 4, "ICC pseudo-random")
    _need(terminal_tx_no, 4, "terminal transaction number")
    return process_key(family, dpk, random4 + purchase_counter.to_bytes(2, "big") + terminal_tx_no[-2:])


def seslk(family: str, dlk: bytes, random4: bytes, load_counter: int) -> bytes:
    """P7 §11.2: SESLK, the load process key from DLK, input = pseudo-random(ICC) 4 ||
    account load transaction counter 2 || '80 00'; derived as a P4 §8.4 process key."""
    _need(random4, 4, "ICC pseudo-random")
    return process_key(family, dlk, random4 + load_counter.to_bytes(2, "big") + b"\x80\x00")
