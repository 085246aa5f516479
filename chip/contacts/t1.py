"""ISO/IEC 7816-3 T=1 (§11): the block codec both ends share, and the card's side of the link.

A block is NAD PCB LEN [INF] EDC:

- NAD: b7-b5 source address, b3-b1 destination address (b8, b4 VPP control, unused: 0).
- PCB: I-block `0 N(S) M 00000`; R-block `100 N(R) 00 ee` (ee 00 ok, 01 EDC/parity
  error, 10 other error); S-block `11 r ttttt` (r: response; type 0 RESYNCH, 1 IFS,
  2 ABORT, 3 WTX).
- LEN: 0-254 bytes of INF (FF is RFU: such a block is invalid).
- EDC: LRC (one byte, XOR of NAD..INF) or CRC (two bytes), as chip.contacts.timing
  computes them with the waiting times BWT and CWT.

`BlockReader` is sans-I/O: it is fed bytes and yields one `Block` or one `Invalid`
per block (a block shorter than LEN says waits for more bytes; bytes beyond the end
of the block in the same delivery, a bad EDC or a malformed PCB/LEN make it
invalid). Nothing here raises on what arrives over the contacts.

`CardT1` is the card's end: it reassembles chained commands, runs them through
`Card.transmit` (T=1 behaviour: data + SW in one response), sends the response in
I-blocks of at most IFSD bytes, asks for waiting time extensions, answers the
reader's S-blocks and follows the error rules of §11.6 on the card's side. It never
sends S(RESYNCH request): that is the reader's privilege. A command the card OS does not
answer (`Card.transmit` raising CardMute: a mute card) gets no
block at all, and the I-block that carried it counts as never received: the reader's block
waiting time runs out, and the I-block it sends again (the error handling of §11.6, after
the card's R-block) runs the command again.
"""

import math

from chip.contacts.end import CardOS, Outbox
from chip.contacts.timing import EDC_CRC, EDC_LRC, FD, bwt_etu, check_edc_kind, cwt_etu, edc, edc_size
from chip.kernel.power import CardMute

# S-block types
RESYNCH, IFS, ABORT, WTX = 0, 1, 2, 3
S_NAMES = {RESYNCH: "RESYNCH", IFS: "IFS", ABORT: "ABORT", WTX: "WTX"}

# R-block error codes
R_OK, R_EDC, R_OTHER = 0, 1, 2
R_ERRORS = {R_OK: "", R_EDC: "EDC error", R_OTHER: "other error"}

IFS_DEFAULT = 32  # IFSC and IFSD before anything says otherwise (7816-3 §11.4.2)
IFS_MAX = 254


def reply_nad(nad: int) -> int:
    """The NAD of an answer: source and destination addresses swapped, VPP bits 0."""
    return (nad & 0x07) << 4 | (nad >> 4) & 0x07


# -- blocks -------------------------------------------------------------------------------------------------


class Block:
    """One T=1 block (prologue and INF; the EDC is added by `encode`)."""

    __slots__ = ("inf", "nad", "pcb", "raw")

    def __init__(self, pcb: int, inf: bytes = b"", nad: int = 0, raw: bytes | None = None):
        self.nad = nad
        self.pcb = pcb
        self.inf = bytes(inf)
        self.raw = raw  # the bytes it arrived as (received blocks only)

    # kind
    @property
    def is_i(self) -> bool:
        return not self.pcb & 0x80

    @property
    def is_r(self) -> bool:
        return self.pcb & 0xC0 == 0x80

    @property
    def is_s(self) -> bool:
        return self.pcb & 0xC0 == 0xC0

    # I-block fields
    @property
    def ns(self) -> int:
        return self.pcb >> 6 & 1

    @property
    def more(self) -> bool:
        return self.is_i and bool(self.pcb & 0x20)

    # R-block fields
    @property
    def nr(self) -> int:
        return self.pcb >> 4 & 1

    @property
    def err(self) -> int:
        return self.pcb & 0x03 if self.is_r else 0

    # S-block fields
    @property
    def response(self) -> bool:
        return bool(self.pcb & 0x20)

    @property
    def stype(self) -> int:
        return self.pcb & 0x1F

    @property
    def value(self) -> int | None:
        """The one-byte INF of S(IFS) and S(WTX)."""
        return self.inf[0] if len(self.inf) == 1 else None

    def encode(self, kind: str = EDC_LRC) -> bytes:
        body = bytes((self.nad, self.pcb, len(self.inf))) + self.inf
        return body + edc(body, kind)

    def __eq__(self, other):
        if not isinstance(other, Block):
            return NotImplemented
        return (self.nad, self.pcb, self.inf) == (other.nad, other.pcb, other.inf)

    def __hash__(self):
        return hash((self.nad, self.pcb, self.inf))

    def __repr__(self):
        return f"<Block {describe(self)}>"


def i_block(ns: int, inf: bytes, more: bool = False, nad: int = 0) -> Block:
    return Block((ns & 1) << 6 | (0x20 if more else 0), inf, nad)


def r_block(nr: int, err: int = R_OK, nad: int = 0) -> Block:
    return Block(0x80 | (nr & 1) << 4 | err & 0x03, b"", nad)


def s_block(stype: int, inf: bytes = b"", response: bool = False, nad: int = 0) -> Block:
    return Block(0xC0 | (0x20 if response else 0) | stype, inf, nad)


class Invalid:
    """A block that cannot be used: `edc` True for an EDC error, False for any other fault."""

    __slots__ = ("edc", "raw", "reason")

    def __init__(self, reason: str, edc: bool = False, raw: bytes = b""):
        self.reason = reason
        self.edc = edc
        self.raw = bytes(raw)

    @property
    def err(self) -> int:
        """The R-block error code that answers it."""
        return R_EDC if self.edc else R_OTHER

    def __repr__(self):
        return f"<Invalid {self.reason}>"


def _structure_fault(pcb: int, inf: bytes) -> str | None:
    n = len(inf)
    if not pcb & 0x80:
        if pcb & 0x1F:
            return f"I-block PCB {pcb:02X}: bits 5-1 are not 0"
        return None
    if pcb & 0xC0 == 0x80:
        if pcb & 0x2C or pcb & 0x03 == 0x03:
            return f"R-block PCB {pcb:02X} is RFU"
        if n:
            return f"R-block with {n} INF bytes"
        return None
    stype = pcb & 0x1F
    if stype not in S_NAMES:
        return f"S-block type {stype:02X} is RFU"
    if stype in (RESYNCH, ABORT):
        if n:
            return f"S({S_NAMES[stype]}) with {n} INF bytes"
        return None
    if n != 1:
        return f"S({S_NAMES[stype]}) with {n} INF bytes instead of 1"
    if stype == IFS and inf[0] in (0x00, 0xFF):
        return f"S(IFS) value {inf[0]:02X} is reserved"
    if stype == WTX and inf[0] == 0:
        return "S(WTX) multiplier 0"
    return None


def decode(data: bytes, kind: str = EDC_LRC) -> "Block | Invalid":
    """One complete block's bytes → `Block`, or `Invalid` with the reason (never raises)."""
    data = bytes(data)
    n_edc = edc_size(kind)
    if len(data) < 3 + n_edc:
        return Invalid(f"{len(data)} bytes: shorter than a block", raw=data)
    length = data[2]
    if length == 0xFF:
        return Invalid("LEN FF is RFU", raw=data)
    expected = 3 + length + n_edc
    if len(data) != expected:
        return Invalid(f"{len(data)} bytes where LEN {length} makes {expected}", raw=data)
    body = data[:-n_edc]
    if edc(body, kind) != data[-n_edc:]:
        return Invalid("EDC error", edc=True, raw=data)
    fault = _structure_fault(data[1], data[3:-n_edc])
    if fault:
        return Invalid(fault, raw=data)
    return Block(data[1], data[3:-n_edc], data[0], raw=data)


class BlockReader:
    """Collects received bytes into blocks (sans-I/O).

    `feed(data)` returns None while the block is incomplete, else the `Block` or the
    `Invalid` it made. Bytes past the end of the block in the same delivery make it
    invalid ("longer than LEN"): the other end sends nothing more until it is
    answered. `expire()` is the character waiting time running out: a partial block
    becomes `Invalid` (None if nothing was pending).
    """

    def __init__(self, kind: str = EDC_LRC):
        self.kind = check_edc_kind(kind)
        self._buf = bytearray()
        self._parity = False  # a character of the block being collected failed its parity check

    @property
    def partial(self) -> bool:
        return bool(self._buf)

    def reset(self) -> None:
        self._buf.clear()
        self._parity = False

    def feed(self, data: bytes, parity_error: bool = False) -> "Block | Invalid | None":
        """`parity_error`: the receiving UART saw a character of `data` fail its parity check
        (7816-3 §11.4.3: T=1 has no repetition; the block is answered as an EDC error)."""
        buf = self._buf
        buf += data
        self._parity |= parity_error
        if len(buf) < 3:
            return None
        if buf[2] == 0xFF:  # the length is unknown: everything delivered with it goes too
            raw = bytes(buf)
            buf.clear()
            return Invalid("LEN FF is RFU", raw=raw)
        need = 3 + buf[2] + edc_size(self.kind)
        if len(buf) < need:
            return None
        raw = bytes(buf)
        buf.clear()
        parity, self._parity = self._parity, False
        if len(raw) > need:
            return Invalid(f"{len(raw)} bytes: longer than LEN {raw[2]} makes ({need})", raw=raw)
        if parity:
            return Invalid("a character failed its parity check", edc=True, raw=raw)
        return decode(raw, self.kind)

    def expire(self) -> "Invalid | None":
        if not self._buf:
            return None
        raw = bytes(self._buf)
        self._buf.clear()
        return Invalid(f"incomplete block ({len(raw)} bytes) at the character waiting time", raw=raw)


def _decode_either(data: bytes) -> "Block | Invalid":
    """Decode with whichever EDC the framing says: 3 + LEN + 1 bytes is LRC, 3 + LEN + 2 is CRC."""
    if len(data) >= 3 and len(data) == 3 + data[2] + 2:
        return decode(data, EDC_CRC)
    return decode(data, EDC_LRC)


def describe(block, kind: str | None = None) -> str:
    """A block (bytes, `Block` or `Invalid`) in words: "I(0, M=0) 5 bytes", "R(1) EDC error",
    "S(WTX request) 2", "invalid: EDC error". Bytes are decoded with `kind`'s EDC, or (None)
    with the one their length implies."""
    if isinstance(block, (bytes, bytearray, memoryview)):
        block = decode(bytes(block), kind) if kind else _decode_either(bytes(block))
    if isinstance(block, Invalid):
        return f"invalid: {block.reason}"
    prefix = f"NAD {block.nad:02X} " if block.nad else ""
    if block.is_i:
        n = len(block.inf)
        return f"{prefix}I({block.ns}, M={int(block.more)}) {n} byte{'s' if n != 1 else ''}"
    if block.is_r:
        err = R_ERRORS.get(block.err, f"error {block.err}")
        return f"{prefix}R({block.nr})" + (f" {err}" if err else "")
    name = S_NAMES.get(block.stype, f"type {block.stype:02X}")
    text = f"{prefix}S({name} {'response' if block.response else 'request'})"
    if block.inf:
        text += " " + (str(block.inf[0]) if len(block.inf) == 1 else block.inf.hex().upper())
    return text


# -- the card's end ---------------------------------------------------------------------------------------


class CardT1(Outbox):
    """The card's T=1 end (sans-I/O): `receive(bytes)`, `output() -> bytes`, `busy_etu`.

    `ifsc` is the largest INF the card accepts (its ATR's TA3), `edc` the link's
    error detection code (TC3), `bwi`/`cwi`/`fi`/`di` the timing. `delay_etu(apdu)`
    (optional) gives a command's processing time in etu: beyond BWT, the card asks
    for a waiting time extension before it answers, and `busy_etu` is the time it
    takes before the bytes now in `output()`.

    The end powers the card with protocol 1 when it is not already so; a card whose
    power went (`Card.power_off`, or `PowerLoss` raised out of `Card.transmit` and
    propagated) stays silent, so the reader times out.

    Extensions beyond the shared surface: `timeout()` (the character waiting time
    ran out on a partial block: it is invalid and answered as such) with `wait_etu`
    (CWT while a block is partial, else 0), and `reset()` (the link state after a
    warm reset of the card).
    """

    def __init__(self, card: CardOS, ifsc: int = IFS_MAX, edc: str = EDC_LRC, bwi: int = 4, cwi: int = 5,
                 fi: int = FD, di: int = 4, delay_etu=None):
        if not 1 <= ifsc <= IFS_MAX:
            raise ValueError(f"IFSC must be 1-254, not {ifsc}")
        super().__init__()
        self.card = card
        self.ifsc = ifsc
        self.edc = check_edc_kind(edc)
        self.bwt = bwt_etu(bwi, fi, di)
        self.cwt = cwt_etu(cwi)
        self.delay_etu = delay_etu
        self.busy_etu = 0
        self._rx = BlockReader(edc)
        if not card.powered or card.protocol != 1:
            card.power_on(1)  # T=1 behaviour: data + SW in one response
        self.reset()

    def reset(self) -> None:
        """Back to the state after the ATR: sequence numbers 0, IFSD 32, no chain."""
        self.ifsd = IFS_DEFAULT
        self._ns = 0  # N(S) of the card's next I-block
        self._nr = 0  # N(S) expected of the reader's next I-block
        self._cmd = bytearray()  # the command being received in chained pieces
        self._resp = b""  # response bytes not sent yet
        self._last: Block | None = None  # last block sent
        self._last_i: Block | None = None  # last I-block sent, until the reader's next I-block acknowledges it
        self._wtx: tuple[int, Block] | None = None  # (multiplier, S(WTX request)) while waiting for S(WTX response)
        self._remaining = 0  # processing time still to come after the pending S(WTX)
        self._nad = 0
        self._rx.reset()
        self._out.clear()
        self.busy_etu = 0

    # -- the shared surface ----------------------------------------------------------------------
    def receive(self, data: bytes, parity_error: bool = False) -> None:
        self.busy_etu = 0
        if not self.card.powered:  # a card without power hears nothing and says nothing
            self._rx.reset()
            return
        result = self._rx.feed(bytes(data), parity_error)
        if result is not None:
            self._handle(result)

    @property
    def wait_etu(self) -> int:
        return self.cwt if self._rx.partial else 0

    def timeout(self) -> None:
        """The character waiting time ran out: a partial block is invalid (answered with an R-block)."""
        self.busy_etu = 0
        result = self._rx.expire()
        if not self.card.powered:
            return
        if result is not None:
            self._handle(result)

    # -- blocks in ------------------------------------------------------------------------------------
    def _handle(self, result) -> None:
        if isinstance(result, Invalid):
            if self._wtx is not None:  # rule 7.3: a request not answered is sent again
                self._send(self._wtx[1])
            else:  # rule 7.1: ask for the expected block, saying what went wrong
                self._send(r_block(self._nr, result.err))
            return
        block = result
        self._nad = reply_nad(block.nad)
        if self._wtx is not None:
            mult, request = self._wtx
            if block.is_s and block.response and block.stype == WTX and block.value == mult:
                self._wtx = None
                self._after_wtx(mult)
                return
            if not (block.is_s and not block.response and block.stype in (RESYNCH, ABORT)):
                self._send(request)
                return
            self._wtx = None
        if block.is_i:
            self._on_i(block)
        elif block.is_r:
            self._on_r(block)
        else:
            self._on_s(block)

    def _on_i(self, block: Block) -> None:
        sending_chain = self._last_i is not None and self._last_i.more
        if block.ns != self._nr or len(block.inf) > self.ifsc or sending_chain:
            self._send(r_block(self._nr, R_OTHER))
            return
        acknowledged, self._last_i = self._last_i, None  # the reader's I-block acknowledges the card's last one
        self._nr ^= 1
        self._cmd += block.inf
        if block.more:
            self._send(r_block(self._nr))  # rule 5: acknowledge, ask for the next piece
            return
        apdu = bytes(self._cmd)
        self._cmd.clear()
        if not self._execute(apdu):  # no answer: as if this block had not arrived
            self._nr ^= 1
            self._last_i = acknowledged
            self._cmd += apdu[:len(apdu) - len(block.inf)]

    def _on_r(self, block: Block) -> None:
        last_i = self._last_i
        if last_i is not None and block.nr == last_i.ns:  # the reader did not get it: again
            self._send(last_i)
        elif last_i is not None and last_i.more and block.nr == self._ns:  # chaining acknowledgement
            self._send_piece()
        elif self._last is not None and self._last.is_r:  # rule 7.2: repeat what the card expects
            self._send(self._last)
        else:
            self._send(r_block(self._nr))

    def _on_s(self, block: Block) -> None:
        if block.response or block.stype == WTX:  # no request pending; WTX requests are the card's
            self._send(r_block(self._nr, R_OTHER))
            return
        if block.stype == RESYNCH:
            self.reset()
            self._nad = reply_nad(block.nad)
        elif block.stype == IFS and block.value is not None:  # decode() gives an S(IFS) its one INF byte
            self.ifsd = block.value
        elif block.stype == ABORT:  # drop the chain in either direction
            self._cmd.clear()
            self._resp = b""
            if self._last_i is not None and self._last_i.more:
                self._last_i = None
        self._send(s_block(block.stype, block.inf, response=True))

    # -- the command and its response -----------------------------------------------------------------
    def _execute(self, apdu: bytes) -> bool:
        """Run `apdu` and start sending its response; False when the card OS gave none (a mute card)."""
        # the processing time first, as on T=0: a fault plan decides the command's faults when asked
        # for it, and the card's transmit then acts on that decision (`FaultPlan.slow_etu`)
        delay = max(0, int(self.delay_etu(apdu))) if self.delay_etu is not None else 0
        try:
            self._resp = self.card.transmit(apdu)
        except CardMute:
            return False
        if delay > self.bwt:
            self._remaining = delay
            self._request_wtx()
        else:
            self.busy_etu = delay
            self._send_piece()
        return True

    def _request_wtx(self) -> None:
        mult = min(255, math.ceil(self._remaining / self.bwt))
        request = s_block(WTX, bytes((mult,)))
        self._wtx = (mult, request)
        self._send(request)

    def _after_wtx(self, mult: int) -> None:
        granted = mult * self.bwt
        if self._remaining <= granted:
            self.busy_etu = self._remaining
            self._remaining = 0
            self._send_piece()
        else:  # beyond 255 × BWT: another extension once this one is used up
            self.busy_etu = granted
            self._remaining -= granted
            self._request_wtx()

    def _send_piece(self) -> None:
        piece, self._resp = self._resp[:self.ifsd], self._resp[self.ifsd:]
        block = i_block(self._ns, piece, more=bool(self._resp))
        self._ns ^= 1
        self._last_i = block
        self._send(block)

    def _send(self, block: Block) -> None:
        block.nad = self._nad
        self._last = block
        self._rx.reset()
        self._out += block.encode(self.edc)
