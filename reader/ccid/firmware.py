"""The firmware of a TPDU-level CCID reader with one slot, sans-I/O: a CCID command in, its answer out.

`Firmware.handle(command) -> answer` is the whole surface (USB CCID rev 1.1 §6); the serial
framing (reader/ccid/serial.py) and the pseudo-terminal (reader/ccid/pty.py) sit around it.

The slot is in one of the three states bmICCStatus names (§6.2.6): no card, a card present
and inactive, a card present and active. IccPowerOn powers the card (`Card.power_on`, the
card's own protocol: the first its ATR offers) and answers the ATR; IccPowerOff takes the
power away; GetSlotStatus says which state the slot is in. A card inserted or removed
(`insert`, `remove`) queues RDR_to_PC_NotifySlotChange (§6.3.1: 50, then bmSlotICCState for
slot 0, 03 present or 02 absent, the change bit set), which `slot_changes()` hands to the line:
the GemPC Twin's serial port sends those two bytes, unframed, after the host's next command and
before its answer (the synchronous card movement mode that Escape 01 01 01 sets; libccid's
ccid_serial.c reads them there).

The exchange level (reader/ccid/levels.py) starts at TPDU (dwFeatures 0x00010230, what
libccidtwin announces for the GemPC Twin): the host runs the transmission protocol and the
firmware moves its units. Escape 1F 02 switches it to short APDU, where the firmware runs the
protocol itself with the reader ends of reader/link.

- An XfrBlock starting FF is a PPS request (ISO/IEC 7816-3 §9: FF starts no T=0 header
  and no T=1 block). It goes to the card's PPS end (`CardPps`), whose answer comes back; a
  card that stays silent is ICC_MUTE.
- Any other XfrBlock goes to the card at the current level (`levels.exchange`): at TPDU
  level one T=1 block for the card's T=1 end (`CardT1`), or on T=0 a short command APDU run
  as one TPDU (`TpduT0`, its `61xx` or `6Cxx` the answer); at short APDU level a command APDU
  run by `ReaderT0` or `ReaderT1` against the card's end, and the response APDU back.
- A card that does not answer (a `mute` fault: its end of the contacts sends nothing) is what
  a reader whose card stays silent past the waiting time answers: bStatus failed, bError
  ICC_MUTE (§6.2.6), for XfrBlock and Secure alike.

SetParameters (§6.1.7) sets the protocol and its parameters - Fi/Di, the T=1 checksum, IFSC,
BWI/CWI, the T=0 waiting integer - and the card's end is made anew with them;
GetParameters answers them, ResetParameters puts back those of the ATR at Fd/Dd. Escape 02
answers the firmware's name (the driver's "get reader firmware", its check that a GemPC
reader is there), Escape 01 01 01 (card movements notified synchronously) is accepted, and
Escape 1F 02 sets the short APDU level.

PC_to_RDR_Secure (§6.1.11), on a reader with a keypad (the GemPC PinPad), takes the PIN from
the keypad into the host's APDU template (reader/ccid/pinpad.py) and sends that APDU to the card
as an XfrBlock's at the current level; a cancel or a timeout is bError PIN_CANCELLED or
PIN_TIMEOUT, a PIN of the wrong length or new PINs that differ the reader's own 6403 or 6402.
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
from chip.contacts.timing import DEFAULT_FI_DI, EDC_CRC, fi_di_values
from reader.ccid import pinpad
from reader.ccid.levels import (
    ESCAPE_SET_APDU_LEVEL,
    SHORT_APDU,
    TPDU,
    carries,
    exchange,
    link_parameters,
    reader_end,
)
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
    SECURE,
    SET_PARAMETERS,
    TCCKS_CRC,
    TCCKS_INVERSE,
    TCCKS_T1,
    XFR_BLOCK,
    Message,
    answer,
)
from reader.link.t0 import ReaderT0
from reader.link.t1 import ReaderT1
from reader.link.wire import LinkError

FIRMWARE_NAME = b"sscard CCID 1.0"  # what Escape 02 answers; the driver logs it as "Firmware: ..."
ESCAPE_GET_FIRMWARE = b"\x02"
ESCAPE_CARD_MOVEMENT_SYNCHRONOUS = b"\x01\x01\x01"
LENGTH_OFFSET = 1  # bError for data of the wrong length: the offset of dwLength
LEVEL_OFFSET = 8  # ... for a wLevelParameter it does not take: its offset
SLOT_OFFSET = 5  # ... for a slot that does not exist: the offset of bSlot
PROTOCOL_OFFSET = 7  # ... for a protocol it cannot run: the offset of bProtocolNum
DATA_OFFSET = 10  # the first byte of abData
CLOCK_RUNNING, CLOCK_STOPPED_LOW = 0x00, 0x01  # bClockStatus (§6.2.2): a card without power has no clock
NOTIFY_SLOT_CHANGE = 0x50  # RDR_to_PC_NotifySlotChange (§6.3.1)
SLOT_CHANGED_ABSENT, SLOT_CHANGED_PRESENT = 0x02, 0x03  # its bmSlotICCState for slot 0: bit 1 changed, bit 0 present



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
    """One slot of a CCID reader holding `card` (None: no card in the slot), at TPDU level until
    Escape 1F 02 sets the short APDU level (`level`, reader/ccid/levels.py)."""

    def __init__(self, card: Card | None, keypad: pinpad.Keypad | None = None):
        self.card = card
        self.keypad = keypad  # the PIN pad's keys (GemPC PinPad); None: no PIN pad, Secure unsupported
        self.level = TPDU
        self.atr: Atr | None = None
        self.protocol: int | None = None
        self.parameters = b""
        self._end: CardT0 | CardT1 | None = None
        self._reader_t0: ReaderT0 | None = None  # the firmware's end at this level: on T=0 always,
        self._reader_t1: ReaderT1 | None = None  # on T=1 at short APDU level only (at TPDU level blocks pass)
        self._changes = bytearray()  # the NotifySlotChange messages not yet sent
        self._handlers: dict[int, Callable[[Message], Message]] = {
            ICC_POWER_ON: self._power_on,
            ICC_POWER_OFF: self._power_off,
            GET_SLOT_STATUS: self._slot_status,
            XFR_BLOCK: self._xfr_block,
            GET_PARAMETERS: self._get_parameters,
            RESET_PARAMETERS: self._reset_parameters,
            SET_PARAMETERS: self._set_parameters,
            ESCAPE: self._escape,
            SECURE: self._secure,
        }

    # -- the slot ----------------------------------------------------------------------------------
    @property
    def icc_status(self) -> int:
        """bmICCStatus: the slot's state."""
        if self.card is None:
            return ICC_ABSENT
        return ICC_ACTIVE if self.card.powered and self.atr is not None else ICC_INACTIVE

    def insert(self, card: Card) -> None:
        """Put `card` in the slot, present and inactive (a card already there is removed first)."""
        self.remove()
        self.card = card
        self._changes += bytes((NOTIFY_SLOT_CHANGE, SLOT_CHANGED_PRESENT))

    def remove(self) -> None:
        """Take the card out (its power goes with it); nothing changes on an empty slot."""
        if self.card is None:
            return
        if self.card.powered:
            self.card.power_off()
        self.card = None
        self._deactivate()
        self._changes += bytes((NOTIFY_SLOT_CHANGE, SLOT_CHANGED_ABSENT))

    def slot_changes(self) -> bytes:
        """The NotifySlotChange messages queued since the last call, in order (b"": none)."""
        changes, self._changes = bytes(self._changes), bytearray()
        return changes

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
        if not carries(self.level, data):
            return answer(command, status, DATA_OFFSET)  # an extended APDU at short APDU level
        assert self._end is not None
        try:
            reply = exchange(self._reader_t0 or self._reader_t1, self._end, data)
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

    def _secure(self, command: Message) -> Message:
        """PC_to_RDR_Secure (CCID rev 1.1 §6.1.11): the PIN from the keypad into the template, and the
        APDU to the card as an XfrBlock's at this level; on T=1 at TPDU level, the one I-block the
        host's bTeoPrologue starts (reader/ccid/pinpad.py)."""
        status = self.icc_status
        if self.keypad is None:
            return answer(command, status, CMD_NOT_SUPPORTED)
        if status != ICC_ACTIVE or self._end is None or self.protocol is None:
            return answer(command, status, ICC_MUTE)
        if command.fields[1:] != bytes(2):
            return answer(command, status, LEVEL_OFFSET)  # 0000: abData is the whole structure
        try:
            operation = pinpad.parse(command.data)
            apdu = pinpad.build(operation, self.keypad)
        except pinpad.StructureError as exc:
            return answer(command, status, LENGTH_OFFSET if exc.field is None else DATA_OFFSET + exc.field)
        except pinpad.Aborted as exc:
            return answer(command, status, exc.error, data=exc.sw)
        reader = self._reader_t0 or self._reader_t1
        unit = apdu if reader is not None else pinpad.tpdu_block(
            operation, apdu, link_parameters(self.protocol, self.parameters)["edc"])
        try:
            reply = exchange(reader, self._end, bytes(unit))
        except LinkError:
            return answer(command, status, HW_ERROR)
        finally:
            unit[:], apdu[:] = bytes(len(unit)), bytes(len(apdu))  # the PIN kept no longer than the exchange
            if reader is not None:
                reader.exchanges = []
        if reply is None:
            return answer(command, status, ICC_MUTE)
        return answer(command, status, data=reply)

    def _escape(self, command: Message) -> Message:
        if command.data == ESCAPE_GET_FIRMWARE:
            return answer(command, self.icc_status, data=FIRMWARE_NAME)
        if command.data == ESCAPE_CARD_MOVEMENT_SYNCHRONOUS:
            return answer(command, self.icc_status)
        if self.keypad is not None and pinpad.loads_strings(command.data):
            return answer(command, self.icc_status)  # the PIN pad's prompts: taken (its display is not simulated)
        if command.data == ESCAPE_SET_APDU_LEVEL:
            self.level = SHORT_APDU
            if self.protocol is not None:  # a card already active: the firmware's end for the new level
                self._reader_ends(self.protocol, link_parameters(self.protocol, self.parameters))
            return answer(command, self.icc_status)
        return answer(command, self.icc_status, CMD_NOT_SUPPORTED)

    # -- the card's end of the contacts ------------------------------------------------------------------
    def _use(self, protocol: int, structure: bytes) -> None:
        """Run `protocol` with the §6.1.7 parameters `structure`: the card's end made anew with them."""
        assert self.card is not None
        self.protocol, self.parameters = protocol, bytes(structure)
        parameters = link_parameters(protocol, structure)
        if protocol == 0:
            if self.card.protocol != 0:
                self.card.reset(0)  # right after the ATR or PPS: nothing of the session is lost
            self._end = CardT0(self.card, **parameters)
        else:
            self._end = CardT1(self.card, **parameters)
        self._reader_ends(protocol, parameters)

    def _reader_ends(self, protocol: int, parameters: dict) -> None:
        """The firmware's own end of the contacts for the protocol and the level (reader/ccid/levels.py)."""
        end = reader_end(self.level, protocol, parameters)
        self._reader_t0 = end if isinstance(end, ReaderT0) else None
        self._reader_t1 = end if isinstance(end, ReaderT1) else None

    def _deactivate(self) -> None:
        self.atr, self.protocol, self.parameters = None, None, b""
        self._end, self._reader_t0, self._reader_t1 = None, None, None
