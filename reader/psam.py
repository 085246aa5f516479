"""Host-side helper that drives a PSAM (`chip.psam`) through any `Reader`.

The terminal asks its PSAM for everything keyed: external-authentication
cryptograms, command MACs, the expected internal-authentication answer. The
PSAM is reached by APDUs like a real one in a terminal's SAM slot.
"""

from chip.apdu import build
from chip.psam import PSAM_NAME
from chip.sw import meaning

from .base import Reader

KEY_REFS = {"rk": 0x01, "irk": 0x02, "stk": 0x03, "puk": 0x04}


class PsamError(Exception):
    """The PSAM refused a command (the message carries its SW)."""


class Psam:
    def __init__(self, reader: Reader):
        self.reader = reader
        reader.reset()
        self._send(build(0x00, 0xA4, 0x04, 0x00, PSAM_NAME))

    def _send(self, apdu: bytes) -> bytes:
        response = self.reader.transmit(apdu)
        sw = int.from_bytes(response[-2:], "big")
        if sw != 0x9000:
            raise PsamError(f"PSAM answered {sw:04X} ({meaning(sw)}) to {apdu.hex().upper()}")
        return response[:-2]

    def _init(self, key: str, algorithm_flag: int, diversification: bytes) -> None:
        self._send(build(0x80, 0x1A, algorithm_flag, KEY_REFS[key], diversification))

    def encrypt(self, key: str, algorithm_flag: int, diversification: bytes, data: bytes) -> bytes:
        self._init(key, algorithm_flag, diversification)
        return self._send(build(0x80, 0xFA, 0x00, 0x00, data))

    def mac4(self, key: str, algorithm_flag: int, diversification: bytes, iv: bytes, message: bytes) -> bytes:
        self._init(key, algorithm_flag, diversification)
        return self._send(build(0x80, 0xFA, 0x05, 0x00, iv + message))

    def external_auth_cryptogram(self, algorithm_flag: int, diversification: bytes, challenge: bytes) -> bytes:
        """E_RK(challenge || 00..) for the card whose diversification data is given (SPEC §5.1)."""
        return self.encrypt("rk", algorithm_flag, diversification, challenge.ljust(16, b"\x00"))

    def internal_auth_expected(self, algorithm_flag: int, diversification: bytes, factor: bytes,
                               random: bytes) -> bytes:
        """What a genuine card answers to INTERNAL AUTHENTICATE <factor><random>: E_IRK(random || factor)."""
        return self.encrypt("irk", algorithm_flag, diversification, random + factor)
