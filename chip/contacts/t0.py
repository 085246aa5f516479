"""The card's side of T=0 (ISO/IEC 7816-3 §10): headers in, procedure bytes, data and SW out.

`CardT0` is a sans-I/O end (docs/wire.md): `receive(bytes)` feeds it what the
reader sent, `output()` drains what it answers, `busy_etu` tells the wire how
long the command it just processed took. The APDU level is the card OS
(`chip.Card`, reached through `chip.contacts.end.CardOS` and powered with
protocol 0 by whoever activated it), so every status word and every
`61xx`/GET RESPONSE rule is the card OS's own (chip.kernel.delivery). WWT and
the NULLs it calls for are chip.contacts.timing's.

A TPDU is a 5-byte header `CLA INS P1 P2 P3`. T=0 does not say which way the
data flows: the card knows it from INS. The INS values in `OUTGOING_INS` send data
to the reader (P3 is Le, 00 = 256); every other INS receives P3 data bytes
(P3 = 00: no data, case 1). The card answers with procedure bytes:

- ACK = INS: the rest of the data follows (reader → card), or follows now
  (card → reader), then SW1 SW2;
- ~INS (INS XOR FF): one data byte only (`one_byte=True` uses it for every byte);
- NULL `60`: more time needed (one per WWT of processing, before the answer);
- SW1 SW2 (`6X`/`9X`): the end. INS `6X`/`9X` are invalid on T=0 (their ACK
  would read as SW1): `6D00` at once (`6E00` when the class is unknown too).

Before it ACKs a header that would bring data, the card asks the card OS
whether it takes that CLA and INS (`Card.knows`, a side-effect-free lookup in
the selected applet's table and the OS classes). One it refuses whatever the
data (unknown class `6E00`, unknown INS `6D00`, a blocked card `6A81`) is
answered right after the header, as a real card does: a reader that meant a
case 2 command (`08 E0 01 81 08`, `00 12 00 00 08`) would otherwise wait for
data the card waits for too, until the work waiting time ends the link. The
header still goes through `Card.transmit` (so an injected fault, the delay
model and the OS's own status word apply); in-process a malformed APDU gets
the same class-then-INS-then-length order, so both sides give one SW.

An outgoing command processes at once; when the card OS has fewer bytes than
P3 asks for (P3 = 00 asks for 256), the card answers `6C La` and keeps the
response, which it sends without processing the command again when the reader
re-issues the same header with P3 = La (7816-3 §12.2.3 case 2S.3).

ENVELOPE (`00 C2 00 00 Lc data`, 7816-4) carries a command APDU that no short
TPDU can carry (extended lengths): the pieces are reassembled and answered
`9000` until the command is complete - an ENVELOPE with P3 = 00, or a buffer
whose length fields say it cannot grow (`envelope_complete`) - then the command
runs; its response data come back through `61xx` and GET RESPONSE.

A command the card OS does not answer (`Card.transmit` raising CardMute, an injected `mute`
fault) gets no procedure byte and no SW: the end sends nothing more and forgets the TPDU, and
the reader's work waiting time runs out (7816-3 §10.2), as with a card that does not answer.
"""

import logging

from chip.contacts.end import CardOS, Outbox
from chip.contacts.timing import DD, DEFAULT_WI, nulls_for, wwt_etu
from chip.iso.ins import (
    ENVELOPE,
    GET_BALANCE,
    GET_CHALLENGE,
    GET_DATA_ISO,
    GET_RESPONSE,
    GET_STARTING_DAY,
    READ_BINARY,
    READ_RECORD,
    cla_ins,
    code,
)
from chip.iso.sw import SW_INS_NOT_SUPPORTED, SW_UNKNOWN, SW_WRONG_LENGTH, SW_WRONG_P1P2
from chip.kernel.delivery import SW_OK_BYTES, status, wrong_le
from chip.kernel.power import CardMute, CardNotPowered, PowerLoss

log = logging.getLogger("sscard.chip")

# INS whose data flow card → reader on T=0, in any class
OUTGOING_INS = frozenset(cla_ins(command)[1] for command in
                         (READ_BINARY, READ_RECORD, GET_RESPONSE, GET_CHALLENGE, GET_DATA_ISO))
# the medical purse (LD/T 32 P5 §7): GET BALANCE B0 26 and GET STARTING DAY B0 56 01 send data
PURSE_CLA = cla_ins(GET_BALANCE)[0]

NULL = 0x60  # the procedure byte that asks for more time (7816-3 §10.3.3)
ENVELOPE_HEADER = bytes((*cla_ins(ENVELOPE), 0x00, 0x00))  # CLA INS P1 P2 of every ENVELOPE piece
MAX_ENVELOPE = 4 + 3 + 65535 + 2  # the longest command APDU (case 4E)

_SW_INS_INVALID = status(SW_INS_NOT_SUPPORTED)
_SW_WRONG_P1P2 = status(SW_WRONG_P1P2)
_SW_WRONG_LENGTH = status(SW_WRONG_LENGTH)
_SW_UNKNOWN = status(SW_UNKNOWN)


def sends_data(cla: int, ins: int, p1: int) -> bool:
    """Whether a T=0 command's P3 is Le (data card → reader) rather than Lc."""
    if cla == PURSE_CLA:
        command = code(cla, ins)
        return command == GET_BALANCE or (command == GET_STARTING_DAY and p1 == 0x01)
    return ins in OUTGOING_INS


def in_sw1_range(byte: int) -> bool:
    """Whether `byte` is 6X or 9X (7816-3 §10.3.3): 60 is NULL, the others SW1, so an INS there is
    invalid on T=0 (its ACK would read as SW1)."""
    return byte & 0xF0 in (0x60, 0x90)


def envelope_complete(buffer: bytes | bytearray) -> bool:
    """Whether a reassembled command APDU's own length fields say it cannot grow any more.

    Short with Lc: complete at 5 + Lc + 1 bytes (case 4S). Extended: complete
    at 7 + Lc + 2 bytes (case 4E), or at once when Lc = 0000 (malformed either
    way). A header, a case 2 or a case 3 command could still be the start of a
    longer one: those end with an empty ENVELOPE. Reader and card apply the
    same rule (reader/link/t0.py imports this one).
    """
    n = len(buffer)
    if n < 5:
        return False
    b4 = buffer[4]
    if b4:
        return n >= 6 + b4
    if n < 8:
        return False
    lc = buffer[5] << 8 | buffer[6]
    return lc == 0 or n >= 9 + lc


class _Unanswered(Exception):
    """The card OS did not answer the command: the end stays silent."""


class CardT0(Outbox):
    """The card's T=0 protocol handler (after ATR/PPS) on a powered card OS (`chip.Card`).

    `wi`, `di`: WI (TC2) and Di, for WWT = 960 × WI × Di etu. `one_byte`:
    answer `~INS` before every data byte instead of one ACK. `delay_etu`:
    callable(apdu) -> etu, the simulated processing time of each command
    (None: 0). `busy_etu` is that time for the command just processed (the
    wire may set it back to 0 once it has counted it).
    """

    def __init__(self, card: CardOS, wi: int = DEFAULT_WI, di: int = DD, one_byte: bool = False, delay_etu=None):
        super().__init__()
        self.card = card
        self.wi, self.di = wi, di
        self.wwt = wwt_etu(wi, di)
        self.one_byte = one_byte
        self.delay_etu = delay_etu
        self.busy_etu = 0
        self.reset()

    def reset(self) -> None:
        """Forget any half-received TPDU, held response and ENVELOPE buffer (after a reset)."""
        self._header = bytearray()
        self._data = bytearray()
        self._expect = 0
        self._receiving = False
        self._header_in = b""
        # (CLA INS P1 P2, data, SW) answered 6C La, sent on the same header with P3 = La
        self._held: tuple[bytes, bytes, bytes] | None = None
        self._envelope = bytearray()

    # -- the sans-I/O surface -------------------------------------------------
    def receive(self, data: bytes) -> None:
        for byte in bytes(data):
            try:
                self._byte(byte)
            except (PowerLoss, CardNotPowered):  # the power went: the harness's business, as in-process
                raise
            except _Unanswered:  # a mute card: nothing at all goes back (the TPDU is already forgotten)
                self.busy_etu = 0
            except Exception:
                log.exception("T=0: internal error")
                self.reset()
                self._answer(_SW_UNKNOWN)

    # -- receiving --------------------------------------------------------------
    def _byte(self, byte: int) -> None:
        if self._receiving:
            self._data.append(byte)
            if len(self._data) < self._expect:
                if self.one_byte:
                    self._out.append(self._header_in[1] ^ 0xFF)
                return
            self._receiving = False
            self._incoming_complete()
            return
        self._header.append(byte)
        if len(self._header) == 5:
            self._on_header()

    def _on_header(self) -> None:
        header = bytes(self._header)
        self._header.clear()
        self._data.clear()
        self.busy_etu = 0
        cla, ins, p1, p2, p3 = header
        held, self._held = self._held, None
        if in_sw1_range(ins):
            self._envelope.clear()
            if self.card.knows(cla, ins):  # the class is checked first: 6E00 for an unknown one
                self._no_transfer(self._transmit(header))
            else:
                self._answer(_SW_INS_INVALID)
            return
        if code(cla, ins) == ENVELOPE:
            if p1 or p2:
                self._envelope.clear()
                self._answer(_SW_WRONG_P1P2)
            elif p3 == 0:  # the empty ENVELOPE: the command is complete
                self._run_envelope()
            else:
                self._start_receiving(header)
            return
        self._envelope.clear()  # any other command ends an unfinished ENVELOPE sequence
        if sends_data(cla, ins, header[2]):
            if held is not None and held[0] == header[:4] and len(held[1]) == (p3 or 256):
                self._send_data(ins, held[1], held[2])
                return
            self._outgoing(header)
        elif p3 == 0:  # case 1
            self._no_transfer(self._transmit(header[:4]))
        elif self.card.knows(cla, ins):  # a command the OS refuses whatever its data: no ACK
            self._no_transfer(self._transmit(header))
        else:
            self._start_receiving(header)

    def _start_receiving(self, header: bytes) -> None:
        self._header_in = header
        self._expect = header[4]
        self._receiving = True
        ins = header[1]
        self._out.append(ins ^ 0xFF if self.one_byte else ins)

    def _incoming_complete(self) -> None:
        header = self._header_in
        data = bytes(self._data)
        self._data.clear()
        if code(header[0], header[1]) == ENVELOPE:
            self._envelope += data
            if len(self._envelope) > MAX_ENVELOPE:
                self._envelope.clear()
                self._answer(_SW_WRONG_LENGTH)
            elif envelope_complete(self._envelope):
                self._run_envelope()
            else:
                self._answer(SW_OK_BYTES)
            return
        self._no_transfer(self._transmit(header + data))  # case 3: CLA INS P1 P2 Lc data

    def _run_envelope(self) -> None:
        apdu = bytes(self._envelope)
        self._envelope.clear()
        self._no_transfer(self._transmit(apdu))

    # -- answering ----------------------------------------------------------------
    def _transmit(self, apdu: bytes) -> bytes:
        """The card OS's answer to `apdu`; sets `busy_etu` from `delay_etu`."""
        busy = 0
        if self.delay_etu is not None:
            try:
                busy = max(0, int(self.delay_etu(apdu)))
            except Exception:
                log.exception("T=0: delay_etu failed")
        self.busy_etu = busy
        try:
            response = self.card.transmit(apdu)
        except CardMute as exc:  # the card OS gave no answer (see the module's docstring)
            self.reset()
            raise _Unanswered from exc
        except BaseException:
            self.reset()
            raise
        if len(response) < 2:
            return _SW_UNKNOWN
        return response

    def _outgoing(self, header: bytes) -> None:
        """Case 2: P3 is Le. Send exactly P3 bytes (00 = 256), or only SW1 SW2."""
        response = self._transmit(header)
        data, sw = response[:-2], response[-2:]
        if not data:
            self._answer(sw)
            return
        wanted = header[4] or 256
        if len(data) == wanted:
            self._send_data(header[1], data, sw)
        elif len(data) < wanted:  # T=0 cannot send fewer bytes than P3: 6C La, keep the answer
            self._held = (header[:4], data, sw)
            self._answer(wrong_le(len(data)))
        else:  # more than a short Le can take (not made by the card OS): through GET RESPONSE
            self._answer(self._keep(data, sw))

    def _no_transfer(self, response: bytes) -> None:
        """Case 1/3 (and ENVELOPE): no data can go back in this TPDU, only SW1 SW2."""
        data, sw = response[:-2], response[-2:]
        self._answer(self._keep(data, sw) if data else sw)

    def _keep(self, data: bytes, sw: bytes) -> bytes:
        """Leave `data` (and any rest the card OS already holds) for GET RESPONSE; answer 61xx."""
        return self.card.hold_response(data, sw)

    def _send_data(self, ins: int, data: bytes, sw: bytes) -> None:
        if self.one_byte:
            not_ins = ins ^ 0xFF
            body = bytearray()
            for byte in data:
                body += bytes((not_ins, byte))
            self._answer(bytes(body) + sw)
        else:
            self._answer(bytes((ins,)) + data + sw)

    def _answer(self, answer: bytes) -> None:
        self._out += bytes((NULL,)) * nulls_for(self.busy_etu, self.wwt) + answer
