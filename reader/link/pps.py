"""Protocol and parameters selection, reader side (ISO/IEC 7816-3 §9), sans-I/O.

    pps = ReaderPps(1, 0x13)        # ask for T=1 at TA1 13 (Fi 372, Di 4)
    wire.send(pps.output())         # FF 11 13 FD
    pps.receive(card_bytes)         # as they arrive; or pps.timeout() when wait_etu passed
    pps.done, pps.accepted, pps.protocol, pps.fi, pps.di, pps.error

`fi_di=None` sends no PPS1 (the default Fd = 372, Dd = 1 is requested).

The answer is checked as §9.3 says. A successful exchange: PPSS FF, PCK
right, PPS0 b4..b1 echo the requested T, b8 = 0, and for each of PPS1, PPS2,
PPS3 either an echo of the requested byte (its PPS0 bit set) or absence (bit
clear: PPS1 absent = Fd/Dd, PPS2 absent = no SPU). Anything else - including a
byte the request did not carry, or no answer before `wait_etu` - is a failed
exchange: `error` says why and the reader should deactivate the card.
"""

from __future__ import annotations

from chip.contacts.pps import PPSS, PpsEnd, pck, split
from chip.contacts.timing import DD, DEFAULT_WI, FD, fi_di_values, wwt_etu
from reader.errors import InputError


def pps_request(protocol: int, fi_di: int | None = None, pps2: int | None = None, pps3: int | None = None) -> bytes:
    """The PPS request bytes (PCK included); InputError for a PPS1 whose Fi or Di is RFU (§8.3)."""
    if not 0 <= protocol <= 14:
        raise ValueError(f"protocol must be 0-14, got {protocol}")
    if fi_di is not None and fi_di_values(fi_di) is None:
        raise InputError(f"PPS1 {fi_di:02X}: Fi or Di index is RFU")
    pps0 = protocol
    body = b""
    for bit, value in ((0x10, fi_di), (0x20, pps2), (0x40, pps3)):
        if value is not None:
            pps0 |= bit
            body += bytes((value,))
    message = bytes((PPSS, pps0)) + body
    return message + bytes((pck(message),))


class ReaderPps(PpsEnd):
    """The reader's end of the PPS exchange."""

    def __init__(self, protocol: int, fi_di: int | None = None, *, pps2: int | None = None,
                 pps3: int | None = None, wi: int = DEFAULT_WI):
        super().__init__()
        self.request = pps_request(protocol, fi_di, pps2, pps3)
        self._request_fields = split(self.request)
        self._out += self.request
        self.wait_etu = wwt_etu(wi)  # the waiting time WT at Fd/Dd (D = 1) during PPS
        self.accepted = False
        self.error: str | None = None
        self.protocol: int | None = None
        self.fi: int | None = None
        self.di: int | None = None
        self.answer = b""

    def timeout(self) -> None:
        if not self.done:
            got = f" (only {self._buffer.hex(' ').upper()} arrived)" if self._buffer else ""
            self._fail(f"no PPS answer within {self.wait_etu} etu{got}: the card refused")

    def _not_pps(self, first: int) -> None:
        self._fail(f"answer starts {first:02X}, PPSS must be FF")

    def _message(self, message: bytes) -> None:
        self.answer = message
        self._check(message)

    def _fail(self, why: str) -> None:
        self.done, self.accepted, self.error = True, False, why
        self.protocol = self.fi = self.di = None

    def _check(self, answer: bytes) -> None:
        if pck(answer) != 0:
            return self._fail(f"answer {answer.hex(' ').upper()}: PCK wrong")
        got, asked = split(answer), self._request_fields
        if got["pps0"] & 0x80:
            return self._fail(f"answer PPS0 {got['pps0']:02X}: b8 must be 0")
        if got["t"] != asked["t"]:
            return self._fail(f"answer T={got['t']}, requested T={asked['t']}")
        for name in ("pps1", "pps2", "pps3"):
            if got[name] is not None and got[name] != asked[name]:
                what = "not requested" if asked[name] is None else f"requested {asked[name]:02X}"
                return self._fail(f"answer {name.upper()} {got[name]:02X} differs from the request ({what})")
        self.done, self.accepted, self.error = True, True, None
        self.protocol = got["t"]
        self.fi, self.di = (FD, DD) if got["pps1"] is None else fi_di_values(got["pps1"])[:2]
