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

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

TDES_FLAG = 0x01
SM4_FLAG = 0x04


def xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def invert(data: bytes) -> bytes:
    """~x: every bit flipped."""
    return bytes(b ^ 0xFF for b in data)


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


TDES = Tdes()
SM4 = Sm4()
BY_FLAG = {TDES_FLAG: TDES, SM4_FLAG: SM4}
