"""Challenges and MAC checks: the secure-messaging mechanisms every applet shares.

A challenge is single-use: the command that uses it consumes it, whatever
its outcome, so a wrong MAC or cryptogram cannot be retried against the same
challenge. MACs are compared in constant time.
"""

from hmac import compare_digest

from chip.iso.sw import SW_REFERENCED_DATA_INVALID, SW_SM_INCORRECT, SW_SM_MISSING, SW_WRONG_LENGTH, CardError
from chip.kernel.cryptograms import MAC_LENGTH


class Challenge:
    """The card's last GET CHALLENGE answer (volatile)."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = None

    def issue(self, rng, length: int) -> bytes:
        """A fresh challenge of `length` bytes from `rng` (the card's random source)."""
        self.value = value = rng(length)
        return value

    def take(self) -> bytes:
        """Consume the challenge, or raise 6984 when there is none."""
        value = self.value
        if value is None:
            raise CardError(SW_REFERENCED_DATA_INVALID)
        self.value = None
        return value

    def clear(self) -> None:
        self.value = None


def split_mac(data: bytes) -> tuple[bytes, bytes]:
    """Command data = body || MAC4; no data at all is a missing MAC (6987).

    The MAC input carries Lc in one byte, so a MAC-protected command holds at
    most 255 data bytes: an extended-length one beyond that is a wrong length.
    """
    if not data:
        raise CardError(SW_SM_MISSING)
    if not MAC_LENGTH <= len(data) <= 255:
        raise CardError(SW_WRONG_LENGTH)
    return data[:-MAC_LENGTH], data[-MAC_LENGTH:]


def check_mac4(algorithm, key: bytes, iv: bytes | None, message: bytes, mac4: bytes) -> None:
    """Raise 6988 unless `mac4` is the first 4 bytes of MAC_key(iv, message)."""
    if not compare_digest(algorithm.mac4(key, message, iv), mac4):
        raise CardError(SW_SM_INCORRECT)
