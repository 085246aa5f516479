"""The firmware of a TPDU-level CCID reader with one slot, sans-I/O: a CCID command in, its answer out.

`Firmware.handle(command) -> answer` is the whole surface (USB CCID rev 1.1 §6); the serial
framing (reader/ccid/serial.py) and the pseudo-terminal (reader/ccid/pty.py) sit around it.

The slot is in one of the three states bmICCStatus names (§6.2.6): no card, a card present
and inactive, a card present and active. IccPowerOn powers the card (`Card.power_on`, the
card's own protocol: the first its ATR offers) and answers the ATR; IccPowerOff takes the
power away; GetSlotStatus says which state the slot is in.

The exchange level is TPDU (dwFeatures 0x00010230, what libccidtwin announces for the GemPC
Twin): the host runs the transmission protocol and the firmware moves its units.

- An XfrBlock starting FF is a PPS request (ISO/IEC 7816-3 §9: FF starts no T=0 header
  and no T=1 block). It goes to the card's PPS end (`CardPps`), whose answer comes back; a
  card that stays silent is ICC_MUTE.
- On T=1 an XfrBlock is one block (7816-3 §11.3): the card's T=1 end (`CardT1`) gets it,
  and the block it answers - I, R or S - comes back. The host chains, acknowledges and
  sets IFSD itself (S(IFS) is one more block).
- On T=0 an XfrBlock is a short command APDU, which the firmware's T=0 engine maps to one
  TPDU (7816-3 §12.2) and runs against the card's T=0 end (`CardT0`) through `Pump`: case
  1 gets P3 = 00, case 4 loses Le, the procedure bytes are followed. A `61xx` or `6Cxx` is
  the answer: the host sends GET RESPONSE, or the command again with P3 = xx, itself
  (`TpduT0`).

SetParameters (§6.1.7) sets the protocol and its parameters - Fi/Di, the T=1 checksum, IFSC,
BWI/CWI, the T=0 waiting integer - and the card's end is made anew with them;
GetParameters answers them, ResetParameters puts back those of the ATR at Fd/Dd. Escape 02
answers the firmware's name (the driver's "get reader firmware", its check that a GemPC
reader is there), Escape 01 01 01 (card movements notified synchronously) is accepted.
Everything else, Escape 6A (Gemalto's GET_FIRMWARE_FEATURES: the driver takes a failure as
"no such features") included, is bError CMD_NOT_SUPPORTED. A command for a slot that does
not exist fails with bError 5, the offset of bSlot (§6.2.6).
"""

from collections.abc import Callable

from chip import Card
from chip.contacts.atr import Atr, parse_atr
from chip.contacts.pps import PPSS, CardPps
from chip.contacts.t0 import CardT0
from chip.contacts.t1 import IFS_MAX, CardT1
from chip.contacts.timing import DEFAULT_FI_DI, EDC_CRC, EDC_LRC, fi_di_values
from chip.iso.sw import SW1_MORE_DATA, SW1_WRONG_LE
from reader.ccid.messages import (
    CMD_NOT_SUPPORTED,
    ESCAPE,
    GET_PARAMETERS,
    GET_SLOT_STATUS,
    HW_ERROR,
    ICC_ABSENT,
    ICC_ACTIVE,
    ICC_INACTIVE,
    ICC_MUTE,
    ICC_POWER_OFF,
    ICC_POWER_ON,
    PARAMETERS_SIZE,
    RESET_PARAMETERS,
    SET_PARAMETERS,
    TCCKS_CRC,
    TCCKS_INVERSE,
    TCCKS_T1,
    XFR_BLOCK,
    Message,
    answer,
)
from reader.link.t0 import ReaderT0
from reader.link.wire import LinkError, Pump

FIRMWARE_NAME = b"sscard CCID 1.0"  # what Escape 02 answers; the driver logs it as "Firmware: ..."
ESCAPE_GET_FIRMWARE = b"\x02"
ESCAPE_CARD_MOVEMENT_SYNCHRONOUS = b"\x01\x01\x01"
LENGTH_OFFSET = 1  # bError for data of the wrong length: the offset of dwLength
SLOT_OFFSET = 5  # ... for a slot that does not exist: the offset of bSlot
PROTOCOL_OFFSET = 7  # ... for a protocol it cannot run: the offset of bProtocolNum
DATA_OFFSET = 10  # the first byte of abData
CLOCK_RUNNING, CLOCK_STOPPED_LOW = 0x00, 0x01  # bClockStatus (§6.2.2): a card without power has no clock


class TpduT0(ReaderT0):
    """The reader's T=0 engine at TPDU level: one command TPDU, and its `61xx` or `6Cxx` is the answer
    (CCID rev 1.1 §6.1.4: at TPDU level the host sends GET RESPONSE, or the command again with the
    right P3). Everything else - P3 for case 1, Le dropped for case 4, the procedure bytes - is
    `ReaderT0`'s."""

    def _tpdu_done(self, sw1: int, sw2: int) -> None:
        if self._kind == "command" and sw1 in (SW1_MORE_DATA, SW1_WRONG_LE):
            self.exchanges.append((bytes(self._log_sent), bytes(self._log_received)))
            self._finish(bytes(self._got) + bytes((sw1, sw2)))
            return
        super()._tpdu_done(sw1, sw2)


def default_parameters(atr: Atr, protocol: int) -> bytes:
    """The §6.1.7 structure for `protocol` from the ATR, at Fd/Dd (before any PPS): what the slot
    runs with after IccPowerOn and ResetParameters."""
    inverse = TCCKS_INVERSE if atr.convention == "inverse" else 0
    if protocol == 0:
        return bytes((DEFAULT_FI_DI, inverse, atr.n, atr.wi, 0x00))
    checksum = TCCKS_CRC if atr.edc == EDC_CRC else 0
    return bytes((DEFAULT_FI_DI, TCCKS_T1 | checksum | inverse, atr.n, atr.bwi << 4 | atr.cwi, 0x00, atr.ifsc, 0x00))


def parameters_fault(protocol: int, structure: bytes) -> int | None:
    """The bError of a SetParameters this firmware cannot take (an offset in the message), or None."""
    if len(structure) != PARAMETERS_SIZE[protocol]:
        return LENGTH_OFFSET
    if fi_di_values(structure[0]) is None:
        return DATA_OFFSET  # bmFindexDindex
    if protocol == 1 and not 1 <= structure[5] <= IFS_MAX:
        return DATA_OFFSET + 5  # bIFSC
    return None


class Firmware:
    """One slot of a TPDU-level CCID reader holding `card` (None: no card in the slot)."""

    def __init__(self, card: Card | None):
        self.card = card
        self.atr: Atr | None = None
        self.protocol: int | None = None
        self.parameters = b""
        self._end: CardT0 | CardT1 | None = None
        self._reader_t0: TpduT0 | None = None
        self._handlers: dict[int, Callable[[Message], Message]] = {
            ICC_POWER_ON: self._power_on,
            ICC_POWER_OFF: self._power_off,
            GET_SLOT_STATUS: self._slot_status,
            XFR_BLOCK: self._xfr_block,
            GET_PARAMETERS: self._get_parameters,
            RESET_PARAMETERS: self._reset_parameters,
            SET_PARAMETERS: self._set_parameters,
            ESCAPE: self._escape,
        }

    # -- the slot ----------------------------------------------------------------------------------
    @property
    def icc_status(self) -> int:
        """bmICCStatus: the slot's state."""
        if self.card is None:
            return ICC_ABSENT
        return ICC_ACTIVE if self.card.powered and self.atr is not None else ICC_INACTIVE

    def insert(self, card: Card) -> None:
        self.remove()
        self.card = card

    def remove(self) -> None:
        if self.card is not None and self.card.powered:
            self.card.power_off()
        self.card = None
        self._deactivate()

    # -- commands ----------------------------------------------------------------------------------
    def handle(self, command: Message) -> Message:
        """The answer to one CCID command."""
        if command.slot != 0:
            return answer(command, ICC_ABSENT, SLOT_OFFSET)
        handler = self._handlers.get(command.type)
        if handler is None:
            return answer(command, self.icc_status, CMD_NOT_SUPPORTED)
        return handler(command)

    def _power_on(self, command: Message) -> Message:
        if self.card is None:
            return answer(command, ICC_ABSENT, ICC_MUTE)
        atr = self.card.power_on()  # the card's own protocol: what runs without PPS
        self.atr = parse_atr(atr)
        self._use(self.atr.default_protocol, default_parameters(self.atr, self.atr.default_protocol))
        return answer(command, ICC_ACTIVE, data=atr)

    def _power_off(self, command: Message) -> Message:
        if self.card is not None and self.card.powered:
            self.card.power_off()
        self._deactivate()
        return answer(command, self.icc_status, specific=CLOCK_STOPPED_LOW)

    def _slot_status(self, command: Message) -> Message:
        status = self.icc_status
        return answer(command, status, specific=CLOCK_RUNNING if status == ICC_ACTIVE else CLOCK_STOPPED_LOW)

    def _xfr_block(self, command: Message) -> Message:
        status = self.icc_status
        if status != ICC_ACTIVE:
            return answer(command, status, ICC_MUTE)
        data = command.data
        if not data:
            return answer(command, status, LENGTH_OFFSET)  # nothing to send
        if data[0] == PPSS:
            return self._pps(command)
        try:
            reply = self._t0(data) if self.protocol == 0 else self._t1(data)
        except LinkError:
            return answer(command, status, HW_ERROR)
        if reply is None:
            return answer(command, status, ICC_MUTE)
        return answer(command, status, data=reply)

    def _pps(self, command: Message) -> Message:
        assert self.atr is not None and self.card is not None
        pps = CardPps(self.atr)
        pps.receive(command.data)
        reply = pps.output()
        if not reply:  # the card refused: it stays silent (7816-3 §9.3), the reader times out
            return answer(command, ICC_ACTIVE, ICC_MUTE)
        if pps.accepted and pps.protocol is not None:
            structure = bytearray(default_parameters(self.atr, pps.protocol))
            structure[0] = reply[2] if reply[1] & 0x10 else DEFAULT_FI_DI  # PPS1 echoed: its Fi/Di
            self._use(pps.protocol, bytes(structure))
        return answer(command, ICC_ACTIVE, data=reply)

    def _t0(self, apdu: bytes) -> bytes | None:
        assert isinstance(self._end, CardT0) and self._reader_t0 is not None
        reader = Pump(self._reader_t0, self._end).run(apdu)
        return None if reader.error else reader.response

    def _t1(self, block: bytes) -> bytes | None:
        end = self._end
        assert isinstance(end, CardT1)
        end.receive(block)
        if not end.has_output and end.wait_etu:  # a block shorter than its LEN: its CWT runs out
            end.timeout()
        return end.output() or None

    def _get_parameters(self, command: Message) -> Message:
        status = self.icc_status
        if status != ICC_ACTIVE or self.protocol is None:
            return answer(command, status, ICC_MUTE)
        return answer(command, status, specific=self.protocol, data=self.parameters)

    def _reset_parameters(self, command: Message) -> Message:
        status = self.icc_status
        if status != ICC_ACTIVE or self.atr is None or self.protocol is None:
            return answer(command, status, ICC_MUTE)
        self._use(self.protocol, default_parameters(self.atr, self.protocol))
        return answer(command, status, specific=self.protocol, data=self.parameters)

    def _set_parameters(self, command: Message) -> Message:
        status = self.icc_status
        if status != ICC_ACTIVE or self.atr is None:
            return answer(command, status, ICC_MUTE)
        protocol = command.fields[0]
        if protocol not in PARAMETERS_SIZE or protocol not in self.atr.protocols:
            return answer(command, status, PROTOCOL_OFFSET)
        fault = parameters_fault(protocol, command.data)
        if fault is not None:
            return answer(command, status, fault)
        self._use(protocol, command.data)
        return answer(command, status, specific=protocol, data=self.parameters)

    def _escape(self, command: Message) -> Message:
        if command.data == ESCAPE_GET_FIRMWARE:
            return answer(command, self.icc_status, data=FIRMWARE_NAME)
        if command.data == ESCAPE_CARD_MOVEMENT_SYNCHRONOUS:
            return answer(command, self.icc_status)
        return answer(command, self.icc_status, CMD_NOT_SUPPORTED)

    # -- the card's end of the contacts ------------------------------------------------------------------
    def _use(self, protocol: int, structure: bytes) -> None:
        """Run `protocol` with the §6.1.7 parameters `structure`: the card's end made anew with them."""
        assert self.card is not None
        self.protocol, self.parameters = protocol, bytes(structure)
        values = fi_di_values(structure[0])
        assert values is not None
        fi, di, _ = values
        if protocol == 0:
            if self.card.protocol != 0:
                self.card.reset(0)  # right after the ATR or PPS: nothing of the session is lost
            self._end = CardT0(self.card, wi=structure[3], di=di)
            self._reader_t0 = TpduT0(wi=structure[3], di=di)
        else:
            self._end = CardT1(self.card, ifsc=structure[5], edc=EDC_CRC if structure[1] & TCCKS_CRC else EDC_LRC,
                               bwi=structure[3] >> 4, cwi=structure[3] & 0x0F, fi=fi, di=di)
            self._reader_t0 = None

    def _deactivate(self) -> None:
        self.atr, self.protocol, self.parameters = None, None, b""
        self._end, self._reader_t0 = None, None
