"""PINs and keys with try counters, shared by both applications (the Java Card `OwnerPIN` surface).

Anti-tearing (docs/decisions.md §3): the try counter is decremented and committed
*before* the comparison and restored only after a successful one, so pulling
the power at any instant can lose a try but never give one back.
"""

from hmac import compare_digest

from chip.iso.sw import SW_AUTHENTICATION_METHOD_BLOCKED, CardError
from chip.kernel.store import Persistent, register

_DIGITS = frozenset("0123456789")


def pack(digits: str) -> bytes:
    """'12345' -> 12 34 5F: packed BCD, right-padded with F to whole bytes."""
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits)


def unpack(data: bytes) -> str | None:
    """Inverse of `pack`, or None when `data` is not a packed-BCD PIN (bad nibble or padding)."""
    text = data.hex().upper()
    digits = text[:-1] if text.endswith("F") else text
    if not digits or not _DIGITS.issuperset(digits):
        return None
    return digits


def valid_digits(digits: str, min_len: int = 4, max_len: int = 12) -> bool:
    """Whether `digits` is 4-12 ASCII digits (a PIN a profile or a command may set)."""
    return min_len <= len(digits) <= max_len and _DIGITS.issuperset(digits)


class Secret(Persistent):
    """A secret with a try counter: a PIN, or a key whose failures are counted.

    `attempt()` is the one anti-tearing comparison both applications use:
    decrement and commit, compare in constant time, restore on success.
    `limit` 0 means no counter (keys used only for MACs).
    """

    __slots__ = ("limit", "tries", "validated", "value")

    def __init__(self, value: bytes, limit: int, tries: int | None = None):
        self.value = value
        self.limit = limit
        self.tries = limit if tries is None else tries
        self.validated = False

    def dump(self):
        return {"value": self.value, "limit": self.limit, "tries": self.tries}

    @classmethod
    def load(cls, value):
        return cls(value["value"], value["limit"], value["tries"])

    @property
    def blocked(self) -> bool:
        return self.limit != 0 and self.tries == 0

    def attempt(self, store, candidate: bytes, expected: bytes | None = None) -> None:
        """Compare `candidate` with `expected` (default: the stored value) or raise 63Cx / 6983.

        On success the counter is restored inside the current transaction; the
        card OS commits it with the rest of the command.
        """
        tries = self.tries
        if tries == 0:
            self.validated = False
            raise CardError(SW_AUTHENTICATION_METHOD_BLOCKED)
        store.write(self, "tries", tries - 1)
        store.commit()  # durable before the comparison: a power cut now costs a try
        if compare_digest(candidate, self.value if expected is None else expected):
            store.write(self, "tries", self.limit)
            self.validated = True
            return
        self.validated = False
        raise CardError(0x63C0 | (tries - 1))

    def status(self) -> None:
        """VERIFY without data (ISO 7816-4): return when verified, else raise 63Cx, or 6983 when blocked."""
        if self.tries == 0:
            raise CardError(SW_AUTHENTICATION_METHOD_BLOCKED)
        if not self.validated:
            raise CardError(0x63C0 | self.tries)

    def reset_and_unblock(self, store) -> None:
        """Restore the full counter (PIN UNBLOCK); the value stays."""
        if self.tries != self.limit:
            store.write(self, "tries", self.limit)


@register
class Pin(Secret):
    """A PIN: packed-BCD value, try limit, tries left; `validated` is volatile."""

    KIND = "pin"
    __slots__ = ()

    check = Secret.attempt

    def update(self, store, value: bytes) -> None:
        """Set a new value and a full counter (CHANGE PIN, RELOAD PIN)."""
        store.write(self, "value", value)
        self.reset_and_unblock(store)


@register
class Key(Secret):
    """A card key (16 bytes, 3DES double-length or SM4), with a try counter if `limit` > 0."""

    KIND = "key"
    __slots__ = ()


_BCD_PAIRS = bytes(hi << 4 | lo for hi in range(10) for lo in range(10))
_BCD_LAST = _BCD_PAIRS + bytes(hi << 4 | 0x0F for hi in range(10))


def well_formed(data: bytes) -> bool:
    """Whether `data` is a packed-BCD PIN of 4-16 digits (F only as the last nibble; LD/T 32 P5 §6.3.1).

    Looks only at the candidate, never at the stored PIN, so it leaks nothing
    about the secret; bytes.translate keeps it in C.
    """
    n = len(data)
    if n < 2 or n > 8:
        return False
    last = data[n - 1]
    if n == 2 and last & 0x0F == 0x0F:
        return False
    return not data[: n - 1].translate(None, _BCD_PAIRS) and last in _BCD_LAST
