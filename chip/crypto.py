"""The card's cryptographic operations, for 3DES and SM4 alike (SPEC §5).

Applets call these recipes and never touch cipher modes: diversify a key,
encrypt a block string, MAC a message, take MAC4. The primitives come from
`cryptography` (3DES from its `decrepit` module, SM4); ECB contexts are cached
per key because a card uses the same few keys over and over.

Notation as in SPEC §5: `E_K(x)` = 3DES-EDE2 ECB or SM4 ECB; `MAC_K(iv, m)` =
ISO 9797-1 MAC algorithm 3 (single-DES CBC, 3DES on the last block) or SM4
CBC-MAC, `m` padded by ISO 9797-1 method 2.
"""

from functools import lru_cache
from hmac import compare_digest

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

TDES_FLAG = 0x01
SM4_FLAG = 0x04


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
    if cipher == "sm4":
        algorithm = algorithms.SM4(key)
    else:  # 3DES-EDE2 as the three-key form K1 K2 K1 (cryptography deprecates 16-byte keys)
        algorithm = TripleDES(key + key[:8] if len(key) == 16 else key)
    c = Cipher(algorithm, modes.ECB())
    return c.encryptor(), c.decryptor()


def _cbc_last(encryptor, data: bytes, iv: bytes, block: int) -> bytes:
    """The last block of CBC encryption, chained by hand over a cached ECB context
    (cheaper than a new CBC cipher object for the few blocks of a command MAC)."""
    h = int.from_bytes(iv, "big")
    for i in range(0, len(data), block):
        h = int.from_bytes(encryptor.update((h ^ int.from_bytes(data[i:i + block], "big")).to_bytes(block, "big")), "big")
    return h.to_bytes(block, "big")


def _des(key8: bytes):
    """Single DES as 3DES with K1 = K2 = K3."""
    return _ecb("des", key8 * 3)


class Algorithm:
    """One of the card's two block ciphers with the SPEC §5 recipes on top."""

    name = ""
    flag = 0
    block = 8

    def encrypt(self, key: bytes, data: bytes) -> bytes:
        raise NotImplementedError

    def decrypt(self, key: bytes, data: bytes) -> bytes:
        raise NotImplementedError

    def mac(self, key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
        """The full MAC block of `data` (padded by method 2)."""
        raise NotImplementedError

    def mac4(self, key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
        return self.mac(key, data, iv)[:4]

    def diversify(self, master: bytes, d: bytes) -> bytes:
        """Card key from a 16-byte master key and 8 bytes of diversification data."""
        raise NotImplementedError

    # -- EMV / PBOC (SPEC §5.2) ---------------------------------------------------------
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
        """ARPC method 1 (SPEC §5.2)."""
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

    def encrypt(self, key, data):
        return _ecb("3des", key)[0].update(data)

    def decrypt(self, key, data):
        return _ecb("3des", key)[1].update(data)

    def mac(self, key, data, iv=None):
        """ISO 9797-1 MAC algorithm 3: DES-CBC under K1, then decrypt K2 and encrypt K1 on the last block."""
        k1, k2 = key[:8], key[8:16]
        des1 = _des(k1)[0]
        h = _cbc_last(des1, pad_method2(data, 8), iv or bytes(8), 8)
        return des1.update(_des(k2)[1].update(h))

    def diversify(self, master, d):
        return self.encrypt(master, d) + self.encrypt(master, invert(d))

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

    def encrypt(self, key, data):
        return _ecb("sm4", key)[0].update(data)

    def decrypt(self, key, data):
        return _ecb("sm4", key)[1].update(data)

    def mac(self, key, data, iv=None):
        """SM4 CBC-MAC: the last block of SM4-CBC over the padded data."""
        return _cbc_last(_ecb("sm4", key)[0], pad_method2(data, 16), iv or bytes(16), 16)

    def diversify(self, master, d):
        return self.encrypt(master, d + invert(d))

    def _from_halves(self, key, a, b):
        return self.encrypt(key, a + b)

    def session_key(self, mk, atc):
        """E_MK(00*6 ATC || 00*6 ~ATC) (model, SPEC §5.2)."""
        r = atc.to_bytes(2, "big")
        return self.encrypt(mk, bytes(6) + r + bytes(6) + invert(r))

    def arpc(self, session_key, arqc, arc):
        return self.encrypt(session_key, xor(arqc + bytes(8), arc + bytes(14)))[:8]


TDES = Tdes()
SM4 = Sm4()
BY_FLAG = {TDES_FLAG: TDES, SM4_FLAG: SM4}
