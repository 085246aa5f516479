"""The vpcd wire protocol (vsmartcard's virtual reader driver), without I/O.

Both directions: a 2-byte big-endian length, then the payload. From vpcd, a
1-byte payload is a control message (`00` power off, `01` power on, `02`
reset, `04` get ATR); anything longer is a command APDU. The card answers
`get ATR` with the ATR and an APDU with the response; power and reset get no
reply.

`VpcdProtocol` is fed bytes as they arrive (`receive_data`) and yields events
(`next_event`); frames split across reads or glued together are handled here,
once, in one buffer. The socket lives in `reader.pcsc.serve`.
"""

from dataclasses import dataclass

POWER_OFF, POWER_ON, RESET, GET_ATR = 0x00, 0x01, 0x02, 0x04
MAX_FRAME = 0xFFFF


@dataclass(frozen=True)
class PowerOff:
    pass


@dataclass(frozen=True)
class PowerOn:
    pass


@dataclass(frozen=True)
class Reset:
    pass


@dataclass(frozen=True)
class GetAtr:
    pass


@dataclass(frozen=True)
class Apdu:
    data: bytes


@dataclass(frozen=True)
class Unknown:
    """A 1-byte control message this protocol version does not know (ignored, no reply)."""

    code: int


_CONTROL = {POWER_OFF: PowerOff(), POWER_ON: PowerOn(), RESET: Reset(), GET_ATR: GetAtr()}


class VpcdProtocol:
    """The card side of a vpcd connection as a state machine on bytes."""

    def __init__(self):
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_event(self):
        """The next complete message as an event, or None until more bytes arrive."""
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        length = buffer[0] << 8 | buffer[1]
        if len(buffer) < 2 + length:
            return None
        payload = bytes(buffer[2:2 + length])
        del buffer[:2 + length]
        if length == 1:
            return _CONTROL.get(payload[0]) or Unknown(payload[0])
        return Apdu(payload)

    def events(self):
        """All complete events buffered so far."""
        while (event := self.next_event()) is not None:
            yield event

    @staticmethod
    def send(payload: bytes) -> bytes:
        """Frame a reply (ATR or response APDU) for the wire."""
        if len(payload) > MAX_FRAME:
            raise ValueError(f"a vpcd frame holds at most {MAX_FRAME} bytes, not {len(payload)}")
        return len(payload).to_bytes(2, "big") + payload

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buffer)
