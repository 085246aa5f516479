"""The reader's T=1 end (ISO/IEC 7816-3 §11): firmware that moves one APDU at a time over blocks.

Sans-I/O, like every end in docs/wire.md: `start(apdu)`, `receive(bytes)`,
`output() -> bytes`, `timeout()`, and `done` / `response` / `error` / `wait_etu`.

What it does, rule by rule (§11.6):

- session start (the first `start()` after power-up or `reset()`): S(IFS request,
  IFSD), repeated until S(IFS response) with the same value comes back;
- the command goes in I-blocks of at most IFSC bytes, chained with M; each piece
  but the last is acknowledged by R(N(R) = next N(S));
- the response comes in I-blocks; a chained piece is acknowledged with R(N(R));
- S(WTX request) is answered with S(WTX response) and extends the next wait to
  BWT × multiplier; S(IFS request) from the card sets IFSC; S(ABORT request) ends
  the exchange with an error;
- recovery: an invalid block (EDC, LEN, PCB, NAD, unexpected sequence number or
  block), or nothing within the waiting time, is answered by resending the last
  R-block (rule 7.2), resending the last S(... request) (rule 7.3) or sending
  R(N(R), error) (rule 7.1); an R-block asking for the last I-block has it sent
  again. At most 3 such attempts in a row, then S(RESYNCH request) (rule 6), sent at
  most 3 times in an exchange; after S(RESYNCH response) the exchange starts over
  (S(IFS), then the command again) if the command had not been fully sent; if it
  had, the card may have run it, so the exchange ends with `error` set (running a
  VERIFY or GENERATE AC twice would answer something else) and the next command
  uses the resynchronised link. When resynchronising fails too, `error` is set,
  `response` stays None, and the link is down until `reset()` (after the caller's
  warm reset).

A timeout is answered as an "other error" R-block. A response is only ever built
from I-blocks with valid EDC, the expected N(S) and the card's NAD, in order, so a
link that fails gives an error, never a wrong response.
"""

from chip.contacts.end import Outbox
from chip.contacts.t1 import (
    ABORT,
    IFS,
    IFS_MAX,
    R_OTHER,
    RESYNCH,
    WTX,
    Block,
    BlockReader,
    Invalid,
    i_block,
    r_block,
    reply_nad,
    s_block,
)
from chip.contacts.t1 import (
    describe as describe_block,
)
from chip.contacts.timing import EDC_LRC, FD, bwt_etu, check_edc_kind, cwt_etu

__all__ = ["ReaderT1", "describe"]

RETRIES = 3  # retransmissions / R-blocks in a row before resynchronising
RESYNCHS = 3  # S(RESYNCH request) per exchange before giving up

# phases
_IDLE, _IFS, _EXCHANGE, _RESYNCH, _DONE, _DEAD = "idle", "ifs", "exchange", "resynch", "done", "dead"
_WAITING = (_IFS, _EXCHANGE, _RESYNCH)


def describe(block, edc: str | None = None) -> str:
    """A block in words ("I(0, M=0) 5 bytes", "R(1) EDC error", "S(WTX request) 2"); bytes are decoded
    with `edc`, or with the EDC their length implies (LRC: 3 + LEN + 1 bytes, CRC: 3 + LEN + 2)."""
    return describe_block(block, edc)


class ReaderT1(Outbox):
    """The reader's T=1 protocol end.

    `ifsc`: the card's information field size (ATR TA3); `ifsd`: the reader's own,
    announced with S(IFS request) at the start of the session; `edc`: "lrc" or
    "crc" (ATR TC3); `bwi`, `cwi`, `fi`, `di`: timing; `nad`: the node address of
    the reader's blocks (the card answers with source and destination swapped).

    `exchanges` is the log: ("out", bytes) for a block sent, ("in", bytes) for one
    received (invalid ones included). `describe(block)` explains one.
    """

    def __init__(self, ifsc: int = IFS_MAX, ifsd: int = IFS_MAX, edc: str = EDC_LRC, bwi: int = 4, cwi: int = 5,
                 fi: int = FD, di: int = 4, nad: int = 0):
        for name, value in (("IFSC", ifsc), ("IFSD", ifsd)):
            if not 1 <= value <= IFS_MAX:
                raise ValueError(f"{name} must be 1-254, not {value}")
        if not 0 <= nad <= 0xFF or nad & 0x88:
            raise ValueError(f"NAD {nad!r}: one byte with b8 and b4 (VPP control) 0")
        super().__init__()
        self.initial_ifsc = ifsc
        self.ifsd = ifsd
        self.edc = check_edc_kind(edc)
        self.nad = nad
        self.bwt = bwt_etu(bwi, fi, di)
        self.cwt = cwt_etu(cwi)
        self.exchanges: list[tuple[str, bytes]] = []
        self.resynchs = 0  # S(RESYNCH response)s received since construction (a statistic)
        self._rx = BlockReader(edc)
        self.reset()

    # -- session ---------------------------------------------------------------------------------------
    def reset(self) -> None:
        """The link after a (warm or cold) reset of the card: sequence numbers 0, IFSC from the ATR,
        IFSD to announce again."""
        self.ifsc = self.initial_ifsc
        self._ns = 0  # N(S) of the reader's next I-block
        self._nr = 0  # N(S) expected of the card's next I-block
        self._ifs_done = False
        self._phase = _IDLE
        self._rx.reset()
        self._out.clear()
        self._last = None
        self._last_i = None
        self._unacked = False  # the last I-block sent is not acknowledged yet
        self._wtx = 1
        self.done = False
        self.response = None
        self.error = None

    def describe(self, block) -> str:
        return describe_block(block, self.edc)

    # -- the shared surface ----------------------------------------------------------------------------
    def start(self, apdu: bytes) -> None:
        if self._phase in _WAITING:
            raise RuntimeError("an exchange is already in progress")
        self.done = False
        self.response = None
        self.error = None
        if self._phase == _DEAD:
            self._fail("the T=1 link is down after an unrecovered error: warm reset and reset() first")
            return
        self._apdu = bytes(apdu)
        self._retries = 0
        self._resyncs = 0
        self._begin()

    @property
    def wait_etu(self) -> int:
        if self._phase not in _WAITING:
            return 0
        if self._rx.partial:
            return self.cwt
        return self.bwt * self._wtx

    def receive(self, data: bytes, parity_error: bool = False) -> None:
        if self._phase not in _WAITING:
            return  # nothing is expected: stray bytes are dropped
        result = self._rx.feed(bytes(data), parity_error)
        if result is None:
            return
        self.exchanges.append(("in", result.raw))
        self._wtx = 1
        if isinstance(result, Invalid):
            self._recover(result.err)
        elif result.nad != reply_nad(self.nad):
            self._recover(R_OTHER)
        else:
            self._on_block(result)

    def timeout(self) -> None:
        if self._phase not in _WAITING:
            return
        self._wtx = 1
        partial = self._rx.expire()
        if partial is not None:
            self.exchanges.append(("in", partial.raw))
        self._recover(R_OTHER)

    # -- sending --------------------------------------------------------------------------------------
    def _send(self, block: Block) -> None:
        block.nad = self.nad
        raw = block.encode(self.edc)
        self._last = block
        self._rx.reset()
        self._out += raw
        self.exchanges.append(("out", raw))

    def _begin(self) -> None:
        """(Re)start the exchange: S(IFS) first if the session needs it, then the command."""
        self._offset = 0
        self._resp = bytearray()
        self._unacked = False
        self._delivered = False
        self._wtx = 1
        if not self._ifs_done:
            self._phase = _IFS
            self._send(s_block(IFS, bytes((self.ifsd,))))
        else:
            self._phase = _EXCHANGE
            self._send_piece()

    def _send_piece(self) -> None:
        piece = self._apdu[self._offset:self._offset + self.ifsc]
        more = self._offset + len(piece) < len(self._apdu)
        self._last_i = i_block(self._ns, piece, more)
        self._unacked = True
        self._delivered |= not more  # the last piece went out: the card may have run the command
        self._send(self._last_i)

    def _finish(self) -> None:
        self._phase = _DONE
        self.response = bytes(self._resp)
        self.done = True

    def _fail(self, reason: str) -> None:
        self._phase = _DEAD
        self._rx.reset()
        self.response = None
        self.error = reason
        self.done = True

    # -- recovery -------------------------------------------------------------------------------------
    def _recover(self, err: int) -> None:
        """Something unusable arrived (or nothing did): rules 7.1-7.3, then resynchronisation."""
        if self._phase == _RESYNCH:
            self._resynch()
            return
        self._retries += 1
        if self._retries > RETRIES:
            self._resynch()
        elif self._phase == _IFS:
            self._send(s_block(IFS, bytes((self.ifsd,))))  # rule 7.3
        elif self._last is not None and self._last.is_r:
            self._send(self._last)  # rule 7.2
        else:
            self._send(r_block(self._nr, err))  # rule 7.1

    def _resynch(self) -> None:
        if self._resyncs >= RESYNCHS:
            self._fail(f"no valid block after {RETRIES} retries and {RESYNCHS} S(RESYNCH request)s:"
                       " warm reset needed")
            return
        self._resyncs += 1
        self._phase = _RESYNCH
        self._send(s_block(RESYNCH))

    # -- blocks in ------------------------------------------------------------------------------------
    def _on_block(self, block: Block) -> None:
        if block.is_s:
            if block.response:
                self._on_s_response(block)
            else:
                self._on_s_request(block)
        elif self._phase != _EXCHANGE:
            self._recover(R_OTHER)
        elif block.is_r:
            self._on_r(block)
        else:
            self._on_i(block)

    def _on_s_response(self, block: Block) -> None:
        if self._phase == _IFS and block.stype == IFS and block.value == self.ifsd:
            self._ifs_done = True
            self._retries = 0
            self._phase = _EXCHANGE
            self._send_piece()
        elif self._phase == _RESYNCH and block.stype == RESYNCH:
            # rule 6: both ends are back at N(S) = 0 and the default sizes; start over
            self.resynchs += 1
            self._ns = self._nr = 0
            self.ifsc = self.initial_ifsc
            self._ifs_done = False
            self._retries = 0
            if self._delivered:
                # the card may already have run the command (a VERIFY, a GENERATE AC): running it
                # again could answer something else, so this exchange ends in a link error; the
                # link itself is synchronised again for the next command
                self._phase = _IDLE
                self._rx.reset()
                self.response = None
                self.error = "link resynchronised after repeated errors; the command may have run, its response was lost"
                self.done = True
            else:
                self._begin()
        else:
            self._recover(R_OTHER)

    def _on_s_request(self, block: Block) -> None:
        if self._phase == _RESYNCH or block.stype == RESYNCH:  # the card may not resynchronise
            self._recover(R_OTHER)
            return
        last = self._last
        if last is not None and last.is_s and last.response and last.stype == block.stype:
            # the card asks again: it may not have had the answer (or chains WTX); count it
            self._retries += 1
            if self._retries > RETRIES:
                self._resynch()
                return
        if block.stype == WTX:
            self._wtx = block.value  # the next wait only
        elif block.stype == IFS:
            self.ifsc = block.value
        self._send(s_block(block.stype, block.inf, response=True))
        if block.stype == ABORT:
            self._fail("the card aborted the exchange (S(ABORT request))")

    def _on_r(self, block: Block) -> None:
        if self._unacked:
            if block.nr == self._last_i.ns:  # the card asks for the last I-block again
                self._retries += 1
                if self._retries > RETRIES:
                    self._resynch()
                else:
                    self._send(self._last_i)
                return
            if self._last_i.more:  # rule 5: the piece is acknowledged, send the next one
                self._ns ^= 1
                self._offset += len(self._last_i.inf)
                self._unacked = False
                self._retries = 0
                self._send_piece()
                return
        self._recover(R_OTHER)

    def _on_i(self, block: Block) -> None:
        if self._unacked and self._last_i.more:  # a chained piece is acknowledged with an R-block
            self._recover(R_OTHER)
            return
        if block.ns != self._nr or len(block.inf) > self.ifsd:
            self._recover(R_OTHER)
            return
        if self._unacked:  # the card's first I-block acknowledges the command's last piece
            self._ns ^= 1
            self._unacked = False
        self._nr ^= 1
        self._retries = 0
        self._resp += block.inf
        if block.more:
            self._send(r_block(self._nr))
        else:
            self._finish()
