"""Protocol and parameters selection, card side (ISO/IEC 7816-3 §9), sans-I/O.

Right after the ATR the reader may send a PPS request

    PPSS=FF  PPS0  [PPS1]  [PPS2]  [PPS3]  PCK

PPS0: b4..b1 the protocol T, b5/b6/b7 announce PPS1 (Fi/Di, as TA1), PPS2
(SPU) and PPS3 (RFU), b8 = 0. PCK makes the XOR of PPSS..PCK 00. FF is never a
valid first byte of a T=0 header (CLA FF is reserved for PPS) nor of a T=1
block (NAD FF is invalid), so a first byte FF always starts a PPS.

What this card does (its answer follows §9.3):

- PCK wrong, PPSS not FF, PPS0 b8 set: an erroneous request, **no answer**
  (the reader times out).
- Negotiable mode (no TA2):
  - T not offered in the ATR: no answer.
  - PPS1 within its TA1 capability (same Fi, f_max not above the card's, Di
    not above the card's Di; the default 11 always is): echoed, those Fi/Di.
  - PPS1 beyond it: answered **without PPS1** (PPS0 b5 = 0), the protocol is
    accepted with the default Fd = 372, Dd = 1. A card without TA1 (the
    default card, LD/T 32 P2's basic ATR) has only 372/1: a PPS that confirms
    T=0 is echoed, any faster PPS1 answered without PPS1.
  - PPS2 / PPS3: the card uses no SPU and knows no PPS3, so its answer omits
    them (b6, b7 = 0), which §9.3 allows.
- Specific mode (TA2 present): only a request for the specific protocol at
  exactly TA1's Fi/Di (PPS1 absent counts as 11) is echoed; anything else gets
  no answer.

`done` is set once the request is complete; `accepted`, `protocol`, `fi`,
`di` are the outcome (protocol/fi/di None when refused), `answer` the bytes
sent back (b"" for silence), `leftover` any bytes received after PCK.

`PpsEnd` is what both ends share: collecting one PPS message from the bytes
as they arrive (the reader's end, reader/link/pps.py, collects the answer).
"""

from __future__ import annotations

from functools import reduce
from operator import xor

from chip.contacts.atr import Atr, parse_atr
from chip.contacts.end import Outbox
from chip.contacts.timing import DD, DEFAULT_FI_DI, FD, fi_di_values

PPSS = 0xFF


def pck(data: bytes) -> int:
    """The check byte that makes the XOR of `data` + PCK zero."""
    return reduce(xor, data, 0)


def request_length(pps0: int) -> int:
    """Bytes in a PPS message with this PPS0: PPSS, PPS0, the announced PPS1..PPS3, PCK."""
    return 3 + bin(pps0 & 0x70).count("1")


def whole_message(buffer: bytes | bytearray) -> int | None:
    """The length of the PPS message at the start of `buffer` once all of it is there, else None
    (the caller has checked that it starts with PPSS)."""
    if len(buffer) < 2:
        return None
    length = request_length(buffer[1])
    return length if len(buffer) >= length else None


def split(message: bytes) -> dict:
    """A complete PPS message's fields: {"pps0", "t", "pps1", "pps2", "pps3"} (absent ones None)."""
    pps0 = message[1]
    fields: dict[str, int | None] = {"pps0": pps0, "t": pps0 & 0xF}
    pos = 2
    for bit, name in ((0x10, "pps1"), (0x20, "pps2"), (0x40, "pps3")):
        if pps0 & bit:
            fields[name] = message[pos]
            pos += 1
        else:
            fields[name] = None
    return fields


class PpsEnd(Outbox):
    """Either end of the PPS exchange: `receive()` collects the other end's message (PPSS first,
    then as many bytes as its PPS0 announces) and hands it to `_message`, or a first byte other
    than PPSS to `_not_pps`; bytes after the message, or after the end is done, are `leftover`."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()
        self.done = False
        self.leftover = b""

    def receive(self, data: bytes) -> None:
        if self.done:
            self.leftover += bytes(data)
            return
        self._buffer += data
        buf = self._buffer
        if not buf:
            return
        if buf[0] != PPSS:
            self._not_pps(buf[0])
            return
        length = whole_message(buf)
        if length is None:
            return
        message, self.leftover = bytes(buf[:length]), bytes(buf[length:])
        self._message(message)

    def _not_pps(self, first: int) -> None:
        raise NotImplementedError

    def _message(self, message: bytes) -> None:
        raise NotImplementedError


class CardPps(PpsEnd):
    """The card's end of the PPS exchange: receive() the request, output() the answer."""

    busy_etu = 0

    def __init__(self, atr: Atr | bytes):
        super().__init__()
        self.atr = atr if isinstance(atr, Atr) else parse_atr(atr)
        self.accepted = False
        self.protocol: int | None = None
        self.fi: int | None = None
        self.di: int | None = None
        self.error: str | None = None  # why the card stayed silent
        self.request = b""
        self.answer = b""

    def _not_pps(self, first: int) -> None:
        self._finish(f"not a PPS request: first byte {first:02X}, PPSS must be FF")

    def _message(self, message: bytes) -> None:
        self.request = message
        self._decide(message)

    # -- the decision ---------------------------------------------------------------
    def _finish(self, error: str | None, answer: bytes = b"", protocol=None, fi=None, di=None) -> None:
        self.done = True
        self.error = error
        self.accepted = error is None
        self.answer = answer
        self._out += answer
        if error is None:
            self.protocol, self.fi, self.di = protocol, fi, di
        if not self.request:
            self.leftover = bytes(self._buffer)

    def _decide(self, request: bytes) -> None:
        if pck(request) != 0:
            return self._finish(f"PCK wrong (XOR of the request is {pck(request):02X}): no answer")
        fields = split(request)
        if fields["pps0"] & 0x80:
            return self._finish(f"PPS0 {fields['pps0']:02X}: b8 must be 0; no answer")
        t, pps1 = fields["t"], fields["pps1"]
        atr = self.atr
        wanted = DEFAULT_FI_DI if pps1 is None else pps1
        if atr.specific is not None:
            if t != atr.specific or wanted != atr.fi_di:
                return self._finish(f"specific mode T={atr.specific} at TA1 {atr.fi_di:02X}: "
                                    f"refused T={t} at {wanted:02X}; no answer")
            return self._answer(fields, echo_pps1=pps1 is not None)
        if t not in atr.protocols:
            return self._finish(f"T={t} is not offered (ATR offers {', '.join(f'T={p}' for p in atr.protocols)}); no answer")
        if pps1 is None:
            return self._answer(fields, echo_pps1=False)
        return self._answer(fields, echo_pps1=self.supports(pps1))

    def supports(self, fi_di: int) -> bool:
        """Whether the card can work at this Fi/Di: the default 11, or same Fi, f_max and Di within TA1."""
        if fi_di == DEFAULT_FI_DI:
            return True
        wanted, mine = fi_di_values(fi_di), fi_di_values(self.atr.fi_di)
        if wanted is None or mine is None:
            return False
        return wanted[0] == mine[0] and wanted[2] <= mine[2] and wanted[1] <= mine[1]

    def _answer(self, fields: dict, echo_pps1: bool) -> None:
        pps0 = fields["t"] | (0x10 if echo_pps1 else 0)
        body = bytes((PPSS, pps0)) + (bytes((fields["pps1"],)) if echo_pps1 else b"")
        echoed = fi_di_values(fields["pps1"]) if echo_pps1 else None  # supported: a valid Fi/Di
        fi, di = echoed[:2] if echoed is not None else (FD, DD)
        self._finish(None, body + bytes((pck(body),)), protocol=fields["t"], fi=fi, di=di)
