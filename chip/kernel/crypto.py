"""The card's cryptographic recipes, for the DES family and SM4 alike.

One layer used by the card (chip/) and the host side (reader/: PSAM helpers,
issuer host) alike, so both build the same inputs the same way. Applets call
these recipes and never touch cipher modes. The primitives come from
`cryptography` (DES/3DES from its `decrepit` module, SM4); ECB contexts are
cached per key because a card uses the same few keys over and over.

Two families of recipes live here:

- the social-security recipes of LD/T 32 part 4 (security mechanism) and
  part 9 (PSAM): key diversification by levels (P9 §7.1.1, §7.2.1, §7.3),
  process keys (P4 §8.4), the command MAC (P4 §8.2), data encipherment
  (P4 §8.3), authentication data (P4 §9.3) and the TAC key (P7 §15);
- the financial application's EMV/PBOC recipes (docs/decisions.md, financial application): ICC
  master key, session key from the ATC, ISO 9797-1 MAC algorithm 3 (`mac`,
  `mac4`), application cryptogram, ARPC, enciphered PIN block.

What each MAC, cryptogram and session key is computed over (the message
layouts) is `chip.kernel.cryptograms`; this module is how.

Notation: `E_K(x)` is ECB encryption under K: single DES for an 8-byte key,
3DES-EDE2 for a 16-byte key (DES family), SM4 (16-byte family).
"""

from collections.abc import Callable
from functools import lru_cache, partial
from hmac import compare_digest

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# The algorithm flag of the SSSE FCI (`9F0C 03 86 01 xx`; Sichuan reader spec §10.1): 01 DES
# family, 02 SSF33, 03 SM4. SSF33 is not public: the 16-byte family here is SM4.
TDES_FLAG = 0x01
SSF33_FLAG = 0x02
SM4_FLAG = 0x03


def xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def invert(data: bytes) -> bytes:
    """~x: every bit flipped."""
    return bytes(b ^ 0xFF for b in data)


def adjust_parity(key: bytes) -> bytes:
    """Set each byte's low bit so the byte has odd parity (DES keys)."""
    return bytes(b & 0xFE | (bin(b >> 1).count("1") + 1) % 2 for b in key)


_PIN_BLOCK_PAD = b"\x80" + bytes(7)


def pad_method2(data: bytes, block: int) -> bytes:
    """ISO 9797-1 padding method 2: 80 then 00 up to a whole block (always adds)."""
    data += b"\x80"
    return data + bytes(-len(data) % block)


@lru_cache(maxsize=512)
def _ecb(cipher: str, key: bytes):
    """The cached (encryptor, decryptor) pair of ECB under `key`: SM4, or in the DES family by the
    key's length single DES (8 bytes, as 3DES with K1 = K2 = K3), 3DES-EDE2 (16 bytes, as the
    three-key form K1 K2 K1: cryptography deprecates the short forms) or three-key 3DES (24)."""
    algorithm: algorithms.SM4 | TripleDES
    if cipher == "sm4":
        algorithm = algorithms.SM4(key)
    else:
        algorithm = TripleDES(key * 3 if len(key) == 8 else key + key[:8] if len(key) == 16 else key)
    c = Cipher(algorithm, modes.ECB())
    return c.encryptor(), c.decryptor()


def _blocks(data: bytes, block: int) -> bytes:
    """Whole blocks only: a cached ECB context must never buffer a partial block (it would
    shift every later result under that key)."""
    if len(data) % block:
        raise ValueError(f"{len(data)} bytes are not whole {block}-byte blocks")
    return data


def _cbc_last(encryptor, data: bytes, iv: bytes, block: int) -> bytes:
    """The last block of CBC encryption, chained by hand over a cached ECB context
    (cheaper than a new CBC cipher object for the few blocks of a command MAC)."""
    h = int.from_bytes(iv, "big")
    for i in range(0, len(data), block):
        h = int.from_bytes(encryptor.update((h ^ int.from_bytes(data[i:i + block], "big")).to_bytes(block, "big")), "big")
    return h.to_bytes(block, "big")


def fold4(block: bytes) -> bytes:
    """A 16-byte MAC block folded to 4 bytes: the XOR of its four words (P4 §8.2.4, figure 2)."""
    o = int.from_bytes(block, "big")
    return ((o >> 96 ^ o >> 64 ^ o >> 32 ^ o) & 0xFFFFFFFF).to_bytes(4, "big")


def fold8(block: bytes) -> bytes:
    """A 16-byte block folded to 8 bytes: left half XOR right half (P4 §9.3.2)."""
    return xor(block[:8], block[8:])


def pad_encipher(data: bytes, block: int) -> bytes:
    """P4 §8.3 padding for encipherment: 80 00.. only when the last block is not full."""
    if len(data) % block == 0:
        return data
    return pad_method2(data, block)


# -- the diversification factors of P9 §7.3 ----------------------------------------------------

def _region(region: str) -> str:
    if len(region) != 6 or not region.isascii() or not region.isdigit():
        raise ValueError(f"a region code is 6 digits, got {region!r}")
    return region


def province_factor(region: str) -> bytes:
    """Level 1 (P9 §7.3.1): ASCII of the region code's first 2 digits, then `0000sh`."""
    region = _region(region)
    return region[:2].encode("ascii") + b"0000sh"


def city_factor(region: str) -> bytes:
    """Level 2 (P9 §7.3.2): ASCII of the 6-digit region code, then `sx`."""
    region = _region(region)
    return region[:6].encode("ascii") + b"sx"


def card_factor(historical: bytes) -> bytes:
    """Level 3 (P9 §7.3.3): bytes 6-13 of the card's ATR historical bytes (P2 table 16 has 13)."""
    if len(historical) < 13:
        raise ValueError(f"the card-level factor needs 13 ATR historical bytes, got {len(historical)}")
    return bytes(historical[5:13])


def factors(region: str, historical: bytes) -> tuple[bytes, bytes, bytes]:
    """(province, city, card) factors of a card, root level first: what a 3-level key is diversified by."""
    return province_factor(region), city_factor(region), card_factor(historical)


class Algorithm:
    """One of the card's two block ciphers with the LD/T 32 and EMV recipes on top.

    Each recipe is written once, here, in terms of what the two families differ
    in (`_contexts`, `auth_input`, `auth_output`, `mac_result`, the key
    schedules); the card's applets call it and the host side (the PSAM helper,
    the issuer host) builds its inputs with the same methods.
    """

    name = ""
    flag = 0
    block = 8
    mac_iv = b""  # the initial value of every CBC MAC: one zero block (P4 §8.2.4 step 1)

    _contexts: Callable[[bytes], tuple]  # key -> the cached (encryptor, decryptor) of ECB under it: `_ecb` of the family

    def encrypt(self, key: bytes, data: bytes) -> bytes:
        """`E_K` over whole blocks, ECB."""
        return self._contexts(key)[0].update(_blocks(data, self.block))

    def decrypt(self, key: bytes, data: bytes) -> bytes:
        return self._contexts(key)[1].update(_blocks(data, self.block))

    def cbc(self, key: bytes, data: bytes, iv: bytes) -> bytes:
        """The last block of CBC encryption of whole blocks `data` from `iv` (P4 figures 1, 2)."""
        return _cbc_last(self._contexts(key)[0], data, iv, self.block)

    def mac(self, key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
        """The full MAC block of `data` (padded by method 2)."""
        raise NotImplementedError

    def mac4(self, key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
        return self.mac(key, data, iv)[:4]

    def diversify(self, master: bytes, d: bytes) -> bytes:
        """One diversification level: a child key from `master` and an 8-byte factor `d`
        (P9 §7.1.1: `E(d) || E(~d)` for a 16-byte DES key, `E(d)` for an 8-byte one;
        P9 §7.2.1: `E(d || ~d)` in the 16-byte family)."""
        raise NotImplementedError

    def diversify_levels(self, root: bytes, levels) -> bytes:
        """Diversify `root` by each factor of `levels` in turn, highest level first (P9 §7.3, figure 12)."""
        key = root
        for factor in levels:
            key = self.diversify(key, factor)
        return key

    # -- LD/T 32 part 4: secure messaging and authentication ----------------------------------
    def process_input(self, data: bytes) -> bytes:
        """The input I of a process key (P4 §8.4): one block, `data` cut to it or right-padded
        with 00. DES family: an 8-byte random as it is, a 4-byte one || 00*4, of a longer one
        the first 8 bytes (P4 §8.4.1); 16-byte family: a 4- or 8-byte random || 00.., a 16-byte
        one as it is (P4 §8.4.2). The PSAM takes I as the process factor of DELIVERY SESSION KEY."""
        block = self.block
        return data[:block].ljust(block, b"\x00")

    def process_key(self, key: bytes, data: bytes) -> bytes:
        """Process (session) key KS = `E_K(I)` of a card key and its input (P4 §8.4): 8 bytes in the
        DES family (every later use is single DES), 16 bytes in the 16-byte family."""
        return self._contexts(key)[0].update(self.process_input(data))  # one whole block

    def mac_blocks(self, message: bytes) -> bytes:
        """What the P4 §8.2 MAC chains: `message` padded by method 2 (80 00.., a full last
        block gets a whole extra block; P4 §8.2.4 steps 3-4)."""
        return pad_method2(message, self.block)

    def mac_result(self, last: bytes) -> bytes:
        """MAC4 from the last CBC block (P4 §8.2.4): DES family its left 4 bytes, 16-byte family
        its four words XORed."""
        raise NotImplementedError

    def command_mac(self, process_key: bytes, message: bytes) -> bytes:
        """MAC4 of P4 §8.2: `mac_blocks(message)` chained by CBC from `mac_iv` under the process
        key, the last block cut by `mac_result`."""
        return self.mac_result(_cbc_last(self._contexts(process_key)[0], self.mac_blocks(message), self.mac_iv, self.block))

    def auth_input(self, original: bytes) -> bytes:
        """What the process key enciphers for authentication data (P4 §9.3): the 8-byte original
        data D (DES family, §9.3.1), `D || 00*8` (16-byte family, §9.3.2)."""
        raise NotImplementedError

    def auth_output(self, enciphered: bytes) -> bytes:
        """The 8 authentication bytes from `E_KS(auth_input(D))` (P4 §9.3): as it is (DES
        family), its halves XORed (16-byte family)."""
        raise NotImplementedError

    def auth_data(self, process_key: bytes, original: bytes) -> bytes:
        """8-byte authentication data of internal/external authentication (P4 §9.3)."""
        return self.auth_output(self._contexts(process_key)[0].update(_blocks(self.auth_input(original), self.block)))

    def encipher_input(self, plaintext: bytes) -> bytes:
        """P4 §8.3: `LD || plaintext`, padded with 80 00.. only when the last block is not full."""
        return pad_encipher(bytes((len(plaintext),)) + plaintext, self.block)

    def encipher(self, process_key: bytes, plaintext: bytes) -> bytes:
        """P4 §8.3: `encipher_input(plaintext)` enciphered block by block (ECB) under the process key."""
        return self.encrypt(process_key, self.encipher_input(plaintext))

    def decipher(self, process_key: bytes, data: bytes) -> bytes | None:
        """Inverse of `encipher`; None when the length, LD or padding is wrong (P4 §8.3.4)."""
        if not data or len(data) % self.block:
            return None
        plain = self.decrypt(process_key, data)
        ld = plain[0]
        if ld == 0 and self.block == 16:
            return None  # P4 §8.3.3.2: LD is at least 1 in the 16-byte family
        rest = plain[1 + ld:]
        if 1 + ld > len(plain):
            return None
        if rest and not (rest[0] == 0x80 and not any(rest[1:]) and len(rest) < self.block):
            return None
        return plain[1:1 + ld]

    def tac_key(self, dtk: bytes) -> bytes:
        """The TAC key from DTK (P7 §15): `DTK_L xor DTK_R` (DES family), DTK itself (16-byte family)."""
        raise NotImplementedError

    # -- EMV / PBOC (docs/decisions.md §6) ---------------------------------------------------------
    def icc_master_key(self, imk: bytes, pan: str, psn: str) -> bytes:
        """ICC master key, option A: Y = rightmost 16 digits of PAN || PSN."""
        y = bytes.fromhex((pan + psn)[-16:].zfill(16))
        return self._from_halves(imk, y, invert(y))

    def session_key(self, mk: bytes, atc: int) -> bytes:
        raise NotImplementedError

    def _from_halves(self, key: bytes, a: bytes, b: bytes) -> bytes:
        raise NotImplementedError

    def cryptogram(self, session_key: bytes, data: bytes) -> bytes:
        """Application cryptogram: the first 8 bytes of MAC_SK(0, data)."""
        return self.mac(session_key, data)[:8]

    def arpc(self, session_key: bytes, arqc: bytes, arc: bytes) -> bytes:
        """ARPC method 1 (docs/decisions.md §6)."""
        raise NotImplementedError

    def encipher_pin_block(self, session_key: bytes, block: bytes) -> bytes:
        """An 8-byte format-2 PIN block, padded by method 2 to 16 bytes, enciphered ECB."""
        return self.encrypt(session_key, pad_method2(block, 16))

    def decipher_pin_block(self, session_key: bytes, data: bytes) -> bytes | None:
        """Inverse of `encipher_pin_block`; None when the padding is not method 2."""
        if len(data) != 16:
            return None
        plain = self.decrypt(session_key, data)
        if not compare_digest(plain[8:], _PIN_BLOCK_PAD):  # deciphered secret data: constant time
            return None
        return plain[:8]


class Tdes(Algorithm):
    name = "3DES"
    flag = TDES_FLAG
    block = 8
    mac_iv = bytes(8)

    # single DES under an 8-byte key (the DES family's process keys, P4 §8.4.1; the short STK keys),
    # 3DES-EDE2 under a 16-byte one
    _contexts = partial(_ecb, "des")

    def mac(self, key, data, iv=None):
        """ISO 9797-1 MAC algorithm 3: DES-CBC under K1, then decrypt K2 and encrypt K1 on the last block."""
        k1, k2 = key[:8], key[8:16]
        des1 = _ecb("des", k1)[0]
        h = _cbc_last(des1, pad_method2(data, 8), iv or self.mac_iv, 8)
        return des1.update(_ecb("des", k2)[1].update(h))

    def diversify(self, master, d):
        if len(master) == 8:
            return self.encrypt(master, d)
        return self.encrypt(master, d) + self.encrypt(master, invert(d))

    def mac_result(self, last):
        return last[:4]

    def auth_input(self, original):
        return original

    def auth_output(self, enciphered):
        return enciphered

    def tac_key(self, dtk):
        return xor(dtk[:8], dtk[8:16])

    def _from_halves(self, key, a, b):
        return adjust_parity(self.encrypt(key, a + b))

    def session_key(self, mk, atc):
        """EMV common session key: E_MK(ATC F0 00..) || E_MK(ATC 0F 00..), parity adjusted."""
        r = atc.to_bytes(2, "big")
        return self._from_halves(mk, r + b"\xF0" + bytes(5), r + b"\x0F" + bytes(5))

    def arpc(self, session_key, arqc, arc):
        return self.encrypt(session_key, xor(arqc, arc + bytes(6)))


class Sm4(Algorithm):
    name = "SM4"
    flag = SM4_FLAG
    block = 16
    mac_iv = bytes(16)

    _contexts = partial(_ecb, "sm4")

    def mac(self, key, data, iv=None):
        """SM4 CBC-MAC: the last block of SM4-CBC over the padded data."""
        return self.cbc(key, pad_method2(data, 16), iv or self.mac_iv)

    def diversify(self, master, d):
        return self.encrypt(master, d + invert(d))

    def mac_result(self, last: bytes) -> bytes:
        return fold4(last)

    def auth_input(self, original):
        return original + bytes(8)

    def auth_output(self, enciphered: bytes) -> bytes:
        return fold8(enciphered)

    def tac_key(self, dtk):
        return dtk

    def _from_halves(self, key, a, b):
        return self.encrypt(key, a + b)

    def session_key(self, mk, atc):
        """E_MK(00*6 ATC || 00*6 ~ATC) (model, docs/decisions.md §6)."""
        r = atc.to_bytes(2, "big")
        return self.encrypt(mk, bytes(6) + r + bytes(6) + invert(r))

    def arpc(self, session_key, arqc, arc):
        return self.encrypt(session_key, xor(arqc + bytes(8), arc + bytes(14)))[:8]


TDES = Tdes()
SM4 = Sm4()
BY_FLAG = {TDES_FLAG: TDES, SM4_FLAG: SM4}
NAMES = {TDES_FLAG: "DES family (3DES)", SSF33_FLAG: "SSF33", SM4_FLAG: "SM4"}
