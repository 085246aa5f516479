"""The vpcd wire protocol (vsmartcard's virtual reader driver), without I/O.

Both directions: a 2-byte big-endian length, then the payload. From vpcd, a
1-byte payload is a control message (`00` power off, `01` power on, `02`
reset, `04` get ATR); anything longer is a command APDU. The card answers
`get ATR` with the ATR and an APDU with the response; power and reset get no
reply.

`VpcdProtocol` is fed bytes as they arrive (`receive_data`) and yields events
(`next_event`); frames split across reads or glued together are handled here,
once, in one buffer. The socket lives in `reader.pcsc.serve`.

`take_apdu` is the fast path of a served card's loop, where nearly every message is a command
APDU: vpcd's driver writes each frame as two writes, the length and then the payload, so a read
holds either one whole frame or the payload whose length the previous read left in the buffer.
In both cases the payload comes back as it is, with no event object and no copy through the
buffer; anything else goes through the buffer, as `receive_data`.
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

    def take_apdu(self, data: bytes) -> bytes | None:
        """`receive_data(data)`, except when `data` completes exactly one APDU frame and nothing else
        is buffered: then that APDU (the buffer left empty). Otherwise None: `data` is buffered, its
        events wait in `events()` (control messages, several frames in one read, a frame cut short)."""
        buffer = self._buffer
        size = len(data)
        if not buffer:
            if size > 3 and data[0] << 8 | data[1] == size - 2:  # one whole frame, a payload of 2 bytes or more
                return data[2:]
        elif len(buffer) == 2 and size > 1 and buffer[0] << 8 | buffer[1] == size:  # the payload of a buffered length
            buffer.clear()
            return data
        buffer += data
        return None

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
