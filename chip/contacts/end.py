"""What every end of the contacts shares, and the card OS as the card's ends see it (docs/wire.md).

An end - the card's or the reader's, for PPS (ISO/IEC 7816-3 §9), T=0 (§10) or T=1 (§11) - is
a sans-I/O state machine: it is fed what arrived with `receive(bytes)` and drained of what it
sends with `output()`. `Outbox` is that drained buffer.

The card's T=0 and T=1 ends run each command APDU through the card OS, which sits above the
contacts (`chip.Card`); `CardOS` names what they call of it, so this layer never imports it.
"""

from typing import Protocol


class Outbox:
    """The bytes an end has to send: `output()` takes them (a second call returns b"")."""

    def __init__(self) -> None:
        self._out = bytearray()

    def output(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def has_output(self) -> bool:
        """Bytes wait to be sent (looked at without taking them)."""
        return bool(self._out)


class CardOS(Protocol):
    """The card OS under the card's protocol ends: power, one APDU at a time, and the two questions
    T=0 asks of it (whether it takes a command at all; keeping data for GET RESPONSE)."""

    @property
    def powered(self) -> bool: ...  # read only: the ends ask, the card OS keeps it

    @property
    def protocol(self) -> int | None: ...

    def power_on(self, protocol: int | None = None) -> bytes: ...

    def transmit(self, apdu: bytes) -> bytes: ...

    def knows(self, cla: int, ins: int) -> int: ...

    def hold_response(self, data: bytes, sw: bytes) -> bytes: ...
