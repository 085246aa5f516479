"""The reader firmware's side of T=0 (ISO/IEC 7816-3 §10, §12.2): one command APDU as TPDUs.

`ReaderT0` is a sans-I/O end (docs/wire.md): `start(apdu)`, then `output()`
/ `receive()` until `done`; `response` is the response APDU, or `error` says
why there is none (a timeout, an invalid procedure byte: the link failed and
no response is ever made up). `wait_etu` is WWT = 960 × WI × Di; the wire
calls `timeout()` when that passes in silence (a NULL `60` restarts it).

Mapping a command APDU to TPDUs (7816-3 §12.2):

- case 1 → header with P3 = 00;
- case 2S → P3 = Le (00 for 256), the data come after ACK;
- case 3S → P3 = Lc, the data go after ACK;
- case 4S → as case 3S; `61xx` → GET RESPONSE `00 C0 00 00 xx`, repeated
  while `61xx`, data concatenated (`9000` alone → the response is the SW);
- `6Cxx` to a TPDU that receives data → the same header again with P3 = xx;
- extended lengths (2E/3E/4E), and anything a 5-byte header cannot carry
  (a malformed APDU: the card answers it as in-process, `6700`, or `6E00`/`6D00`
  when its class or INS is unknown) → ENVELOPE
  pieces `00 C2 00 00 Lc <up to 255 bytes>`, ended by an empty ENVELOPE unless
  the APDU's own length fields already end it (`envelope_complete`, the same
  rule as the card's); the response comes back through `61xx`/GET RESPONSE.

Procedure bytes: `60` NULL (wait again), `6X`/`9X` SW1 (then SW2), INS (ACK:
all remaining data), INS XOR FF (one byte); anything else is an error.

`exchanges` lists every TPDU of the current APDU as (bytes sent, bytes
received), for logging.

`transport=False` makes the end a TPDU-level reader's (CCID rev 1.1 §6.1.4, a
reader whose host runs the transport layer): one command TPDU, and a `61xx` or
`6Cxx` to it is the answer - the host sends GET RESPONSE, or the command again
with P3 = xx, itself. Everything else (P3 for case 1, Le dropped for case 4,
the procedure bytes) is the same.
"""

from chip.contacts.end import Outbox
from chip.contacts.t0 import ENVELOPE_HEADER, NULL, envelope_complete, in_sw1_range
from chip.contacts.timing import DD, DEFAULT_WI, wwt_etu
from chip.iso.sw import SW1_MORE_DATA, SW1_WRONG_LE
from chip.kernel.delivery import SW_OK_BYTES, get_response

PIECE = 255
MAX_TPDUS = 1024  # GET RESPONSE and ENVELOPE rounds for the longest APDUs, with room to spare


def short_tpdu(apdu: bytes):
    """(header, data to send) for an APDU a short TPDU carries, or None (extended or malformed)."""
    n = len(apdu)
    if n < 4:
        return None
    head = bytes(apdu[:4])
    if n == 4:  # case 1
        return head + b"\x00", b""
    b4 = apdu[4]
    if n == 5:  # case 2S
        return head + bytes((b4,)), b""
    if b4 and n in (5 + b4, 6 + b4):  # case 3S, case 4S (sent as 3S)
        return head + bytes((b4,)), bytes(apdu[5:5 + b4])
    return None


class ReaderT0(Outbox):
    """Reader-side T=0: maps each command APDU to TPDUs and follows the card's procedure bytes."""

    def __init__(self, wi: int = DEFAULT_WI, di: int = DD, max_tpdus: int = MAX_TPDUS, transport: bool = True):
        super().__init__()
        self.wi, self.di = wi, di
        self.transport = transport  # False: 61xx / 6Cxx end the command (TPDU level)
        self.wait_etu = wwt_etu(wi, di)
        self.max_tpdus = max_tpdus
        self.done = False
        self.response = None
        self.error = None
        self.exchanges = []
        self._active = False

    # -- the sans-I/O surface -------------------------------------------------
    def start(self, apdu: bytes) -> None:
        apdu = bytes(apdu)
        self.done = False
        self.response = None
        self.error = None
        self.exchanges = []
        self._out.clear()
        self._data = bytearray()  # response data gathered over 61xx rounds
        self._tpdus = 0
        self._pieces = []
        self._terminate = False
        self._log_sent, self._log_received = bytearray(), bytearray()
        self._active = True
        tpdu = short_tpdu(apdu)
        if tpdu is not None:
            self._send(tpdu[0], tpdu[1], "command")
            return
        # ENVELOPE: the whole APDU in pieces; the empty ENVELOPE ends it unless its length fields do
        pieces = [apdu[i:i + PIECE] for i in range(0, len(apdu), PIECE)]
        self._terminate = not envelope_complete(apdu)
        self._pieces = pieces
        self._envelope_sent = b""
        if pieces:
            self._next_piece()
        else:  # not even one byte: the empty ENVELOPE alone (the card answers 6700)
            self._send(ENVELOPE_HEADER + b"\x00", b"", "end")

    def receive(self, data: bytes) -> None:
        for byte in bytes(data):
            if not self._active:
                return  # nothing expected: a late or stray byte
            self._byte(byte)

    def timeout(self) -> None:
        if self._active:
            self._fail(f"timeout: no byte from the card within WWT ({self.wait_etu} etu)")

    # -- one TPDU -----------------------------------------------------------------
    def _send(self, header: bytes, payload: bytes, kind: str) -> None:
        self._tpdus += 1
        if self._tpdus > self.max_tpdus:
            self._fail(f"more than {self.max_tpdus} TPDUs for one command APDU")
            return
        self._header = header
        self._payload = payload
        self._sent = 0  # payload bytes sent
        self._want = 0 if payload else (header[4] or 256)  # data bytes this TPDU may receive
        self._got = bytearray()  # data bytes received
        self._need = 0  # data bytes the current ACK / ~INS announced
        self._sw1 = None
        self._kind = kind
        self._log_sent = bytearray(header)
        self._log_received = bytearray()
        self._out += header

    def _byte(self, byte: int) -> None:
        self._log_received.append(byte)
        if self._need:  # a data byte the card announced
            self._got.append(byte)
            self._need -= 1
            return
        if self._sw1 is not None:
            self._tpdu_done(self._sw1, byte)
            return
        ins = self._header[1]
        if byte == NULL:
            return  # the card needs more time: the wait starts again
        if in_sw1_range(byte):  # SW1 (checked before ACK: INS 6X/9X is invalid, 6D00 comes back)
            self._sw1 = byte
            return
        if byte == ins:
            self._transfer(all_of_it=True, byte=byte)
        elif byte == ins ^ 0xFF:
            self._transfer(all_of_it=False, byte=byte)
        else:
            self._fail(f"invalid procedure byte {byte:02X} (INS {ins:02X})")

    def _transfer(self, all_of_it: bool, byte: int) -> None:
        left_to_send = len(self._payload) - self._sent
        if left_to_send:
            count = left_to_send if all_of_it else 1
            chunk = self._payload[self._sent:self._sent + count]
            self._sent += count
            self._out += chunk
            self._log_sent += chunk
            return
        left_to_receive = self._want - len(self._got)
        if left_to_receive > 0:
            self._need = left_to_receive if all_of_it else 1
            return
        self._fail(f"invalid procedure byte {byte:02X}: no data left to transfer")

    def _tpdu_done(self, sw1: int, sw2: int) -> None:
        self.exchanges.append((bytes(self._log_sent), bytes(self._log_received)))
        self._log_sent, self._log_received = bytearray(), bytearray()
        data = bytes(self._got)
        kind = self._kind
        sw = bytes((sw1, sw2))
        if not self.transport and kind == "command" and sw1 in (SW1_MORE_DATA, SW1_WRONG_LE):
            self._finish(data + sw)
            return
        if kind == "piece":
            complete = envelope_complete(self._envelope_sent)
            if not complete and not data and sw == SW_OK_BYTES:
                if self._pieces:
                    self._next_piece()
                    return
                if self._terminate:
                    self._send(ENVELOPE_HEADER + b"\x00", b"", "end")
                    return
        if sw1 == SW1_MORE_DATA:
            self._data += data
            self._send(get_response(sw2), b"", "get response")
            return
        if sw1 == SW1_WRONG_LE and not data and not self._payload and kind in ("command", "get response") \
                and sw2 != self._header[4]:
            self._send(self._header[:4] + bytes((sw2,)), b"", kind)
            return
        self._finish(bytes(self._data) + data + sw)

    def _next_piece(self) -> None:
        piece = self._pieces.pop(0)
        self._envelope_sent += piece
        self._send(ENVELOPE_HEADER + bytes((len(piece),)), piece, "piece")

    # -- the end ---------------------------------------------------------------------
    def _finish(self, response: bytes) -> None:
        self.response = response
        self.done = True
        self._active = False

    def _fail(self, reason: str) -> None:
        if self._log_sent or self._log_received:
            self.exchanges.append((bytes(self._log_sent), bytes(self._log_received)))
            self._log_sent, self._log_received = bytearray(), bytearray()
        self.error = reason
        self.response = None
        self.done = True
        self._active = False
        self._out.clear()
