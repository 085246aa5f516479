"""The GemPC Twin serial framing of CCID messages, sans-I/O: bytes in, CCID messages out, and back.

The serial GemPC readers carry each CCID message (USB CCID rev 1.1 §6) in a frame

    SYNC 03   CTRL 06 (ACK)   the CCID message   LRC (the XOR of every byte before it)

both ways, and a receiver that cannot take a frame answers the three bytes `03 15 16` (CTRL
15 NAK, then its LRC): the host sends its command again. The message's own dwLength says
where a frame ends, so the bytes may arrive in any pieces, and several frames in one piece.
Before every answer the GemPC Twin and GemPC PinPad send an echo of the command, one more
frame (the host reads it and throws it away); the GemCore POS Pro, SIM Pro and SEC1210 do not. The
echo is the command's 10-byte header with dwLength 0, without its data: libccid reads the
echo into the buffer it has for the answer and checks only that it fits, and some answers
are short (the PinPad's display-prompts Escape carries 165 bytes and its answer buffer holds
30), so an echo of the whole command would not fit there (docs/ccid.md, "The echo").
This is what Debian's libccid (`libccidtwin.so`, src/ccid_serial.c) speaks; pcscd's
reader.conf names the variant after the device's path (`DEVICENAME /dev/ttyS0:GemPCTwin`).

`VARIANTS` holds, for each name libccidtwin knows, what its `set_ccid_descriptor` and
`OpenSerialByName` make of the reader (libccid 1.5.2) and the firmware must match: the echo,
the number of slots (bMaxSlotIndex + 1; the driver opens each further slot on the same line,
pcscd lists it as `... 00 01`), whether the reader runs the PPS itself when SetParameters asks
for other parameters (dwFeatures bit CCID_CLASS_AUTO_PPS_CUR, 0x80: the SEC1210's 0x000100B2;
USB CCID rev 1.1 §5.1), and the Escape the driver's open sends to check that the reader is
there (02 "get reader firmware"; 06 for the SEC1210, "unknown but supported" in the driver).

A byte that cannot start a frame is line noise and is skipped; a frame whose LRC is wrong,
or whose dwLength is beyond what the reader takes (271 bytes in all), is answered NAK.
`SerialFraming` does not interpret the messages: `receive(bytes)` returns the CCID messages
that arrived whole, `send(command, answer)` queues the echo (by variant) and the answer,
`output()` takes the bytes to write. A NAK from the host sends the last frames again.

A card inserted or removed is told by RDR_to_PC_NotifySlotChange (CCID §6.3.1), which on
this line is two bytes outside any frame, `50 03` (present) or `50 02` (absent) on a one-slot
reader; on a two-slot one the second byte holds both slots (bits 0-1 slot 0, 2-3 slot 1, each
"present" then "changed"), which libccid reads as well (logging "Unknown card movement" for
values other than 02 and 03). `notify()` queues them, and the reader sends them after the host's command and before its answer, so
they never fall inside a frame (libccid's ccid_serial.c takes a `50` where a frame may start).
"""

from dataclasses import dataclass

from chip.contacts.end import Outbox
from chip.contacts.timing import lrc
from reader.ccid.messages import MAX_MESSAGE, message_size

SYNC = 0x03
ACK = 0x06
NAK = 0x15
NAK_FRAME = bytes((SYNC, NAK, SYNC ^ NAK))  # 03 15 16
FRAME_OVERHEAD = 3  # SYNC, CTRL, LRC


@dataclass(frozen=True)
class Variant:
    """One reader libccidtwin knows by the name after the device's path (ccid_serial.c)."""

    name: str
    echo: bool  # an echo frame before every answer
    slots: int = 1  # bMaxSlotIndex + 1
    auto_pps: bool = False  # CCID_CLASS_AUTO_PPS_CUR: SetParameters, and the reader runs the PPS
    check_escape: bytes = b"\x02"  # the Escape the driver's open sends (and must see succeed)
    clock: int = 4_000_000  # Hz: the clock it gives the card (dwDefaultClock, in kHz in libccid's table)


VARIANTS = {variant.name: variant for variant in (
    Variant("GemPCTwin", echo=True),
    Variant("GemPCPinPad", echo=True),
    Variant("GemCorePOSPro", echo=False, slots=5),
    Variant("GemCoreSIMPro", echo=False, slots=2),
    Variant("SEC1210", echo=False, slots=2, auto_pps=True, check_escape=b"\x06", clock=4_800_000),  # a card slot and a SAM slot
)}
DEFAULT_VARIANT = "GemPCTwin"


def frame(message: bytes) -> bytes:
    """One CCID message as a serial frame: 03 06 message LRC."""
    body = bytes((SYNC, ACK)) + bytes(message)
    return body + lrc(body)


def echo(command: bytes) -> bytes:
    """The echo the GemPC Twin and PinPad send before an answer: the command's header, no data."""
    return command[:1] + bytes(4) + command[5:10]


def variant_of(name: str) -> Variant:
    """The reader variant called `name` (ValueError: unknown)."""
    for variant in VARIANTS.values():
        if variant.name.lower() == name.lower():  # libccidtwin compares the names without case
            return variant
    raise ValueError(f"unknown reader {name!r}: one of {', '.join(VARIANTS)}")


def variant_echoes(name: str) -> bool:
    """Whether the reader `name` echoes each command before its answer (ValueError: unknown)."""
    return variant_of(name).echo


class SerialFraming(Outbox):
    """The reader's end of the serial line: frames in, CCID messages out; answers framed back."""

    def __init__(self, echo: bool = True):
        super().__init__()
        self.echo = echo
        self._in = bytearray()
        self._last = b""  # the frames of the last answer, sent again on a NAK
        self.naks_sent = 0
        self.naks_received = 0
        self.noise = 0  # bytes skipped that could not start a frame

    def receive(self, data: bytes) -> list[bytes]:
        """Feed what the host wrote; returns the CCID messages it completed, in order."""
        self._in += data
        messages = []
        buffer = self._in
        while buffer:
            if buffer[0] != SYNC:
                del buffer[0]
                self.noise += 1
                continue
            if len(buffer) < 2:
                break
            if buffer[1] == NAK:
                if len(buffer) < 3:
                    break
                if buffer[2] == SYNC ^ NAK:
                    del buffer[:3]
                    self.naks_received += 1
                    self._out += self._last
                else:
                    del buffer[0]
                    self.noise += 1
                continue
            if buffer[1] != ACK:
                del buffer[0]
                self.noise += 1
                continue
            size = message_size(buffer[2:])
            if size is None:
                break
            if size > MAX_MESSAGE:  # no such frame: where it would end is unknown, start afresh
                buffer.clear()
                self._nak()
                break
            end = size + FRAME_OVERHEAD
            if len(buffer) < end:
                break
            whole, message = bytes(buffer[:end]), bytes(buffer[2:end - 1])
            del buffer[:end]
            if lrc(whole) != b"\x00":
                self._nak()
                continue
            messages.append(message)
        return messages

    def send(self, command: bytes, answer: bytes) -> None:
        """Queue the answer to `command`, after the command's echo on the variants that echo."""
        frames = (frame(echo(command)) if self.echo else b"") + frame(answer)
        self._last = frames
        self._out += frames

    def notify(self, changes: bytes) -> None:
        """Queue NotifySlotChange messages as they are, unframed (never sent again on a NAK)."""
        self._out += changes

    @property
    def partial(self) -> bool:
        """Part of a frame is waiting for the rest."""
        return bool(self._in)

    def _nak(self) -> None:
        self.naks_sent += 1
        self._out += NAK_FRAME
