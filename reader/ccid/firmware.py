"""The firmware of a TPDU-level CCID reader with one slot or more, sans-I/O: a CCID command in, its answer out.

`Firmware.handle(command) -> answer` is the whole surface (USB CCID rev 1.1 §6); the serial
framing (reader/ccid/serial.py) and the pseudo-terminal (reader/ccid/pty.py) sit around it.

A reader has the slots its variant says (reader/ccid/serial.py: one on the GemPC Twin and
PinPad; two on the SEC1210, slot 0 for the user's card and slot 1 for the SAM, the two ICC
connectors LD/T 32 P8 §5.1.1.5 asks of every terminal). A command's bSlot picks the slot; each
(`IccSlot`) has its own card, ATR, protocol, parameters and ends of the contacts, and is in one of
the three states bmICCStatus names (§6.2.6): no card, a card present and inactive, a card present
and active. IccPowerOn powers the card (`Card.power_on`, the card's own protocol: the first its
ATR offers) and answers the ATR; IccPowerOff takes the power away; GetSlotStatus says which
state the slot is in. The exchange level, the keypad and the queue of slot changes are the
reader's, once. A card inserted or removed (`insert`, `remove`) queues RDR_to_PC_NotifySlotChange
(§6.3.1: 50, then bmSlotICCState, for slot n bit 2n "present" and bit 2n+1 "changed": 03 or 02
on a one-slot reader; on the SEC1210 with a SAM in slot 1, 07 a card in slot 0, 06 taken out),
which `slot_changes()` hands to the line: the serial port sends those bytes, unframed, after the
host's next command and before its answer (the synchronous card movement mode that Escape 01 01
01 sets; libccid's ccid_serial.c reads them there).

The exchange level (reader/ccid/levels.py) starts at TPDU (dwFeatures 0x00010230, what
libccidtwin announces for the GemPC Twin): the host runs the transmission protocol and the
firmware moves its units. Escape 1F 02 switches it to short APDU, where the firmware runs the
protocol itself with the reader ends of reader/link.

- An XfrBlock starting FF is a PPS request (ISO/IEC 7816-3 §9: FF starts no T=0 header
  and no T=1 block). It goes to the card's PPS end (`CardPps`), whose answer comes back; a
  card that stays silent is ICC_MUTE.
- Any other XfrBlock goes to the card at the current level (`levels.exchange`): at TPDU
  level one T=1 block for the card's T=1 end (`CardT1`), or on T=0 a short command APDU run
  as one TPDU (`ReaderT0(transport=False)`, its `61xx` or `6Cxx` the answer); at short APDU level a command APDU
  run by `ReaderT0` or `ReaderT1` against the card's end, and the response APDU back.
- A card that does not answer (a `mute` fault: its end of the contacts sends nothing) is what
  a reader whose card stays silent past the waiting time answers: bStatus failed, bError
  ICC_MUTE (§6.2.6), for XfrBlock and Secure alike.

SetParameters (§6.1.7) sets the protocol and its parameters - Fi/Di, the T=1 checksum, IFSC,
BWI/CWI, the T=0 waiting integer - and the card's end is made anew with them;
GetParameters answers them, ResetParameters puts back those of the ATR at Fd/Dd. On a reader
with automatic PPS (CCID_CLASS_AUTO_PPS_CUR, CCID rev 1.1 §5.1 dwFeatures: the SEC1210) the
driver sends no PPS of its own: a SetParameters whose protocol or Fi/Di differs from the current
ones has the firmware run the PPS itself (ISO/IEC 7816-3 §9: reader/link's `ReaderPps` against
the card's `CardPps`), and the Fi/Di the card agreed to (PPS1 not echoed: Fd/Dd) are those the
slot runs and the answer reports; a card that does not answer is deactivated (§9.3) and the
SetParameters fails ICC_MUTE. The variant's check Escape (02, the driver's "get reader
firmware", on the GemPCs; 06 on the SEC1210) answers the firmware's name, Escape 01 01 01 (card
movements notified synchronously) is accepted, and Escape 1F 02 sets the short APDU level.

PC_to_RDR_Secure (§6.1.11), on a reader with a keypad (the GemPC PinPad), takes the PIN from
the keypad into the host's APDU template (reader/ccid/pinpad.py) and sends that APDU to the card
as an XfrBlock's at the current level; a cancel or a timeout is bError PIN_CANCELLED or
PIN_TIMEOUT, a PIN of the wrong length or new PINs that differ the reader's own 6403 or 6402.
Everything else, Escape 6A (Gemalto's GET_FIRMWARE_FEATURES: the driver takes a failure as
"no such features") included, is bError CMD_NOT_SUPPORTED. A command for a slot that does
not exist fails with bError 5, the offset of bSlot (§6.2.6).
"""

import time
from collections.abc import Callable

from chip import Card
from chip.contacts.atr import Atr
from chip.contacts.pps import PPSS, CardPps
from chip.contacts.t0 import CardT0
from chip.contacts.t1 import IFS_MAX, CardT1
from chip.contacts.timing import CARD_CHARACTER_ETU, DD, DEFAULT_FI_DI, EDC_CRC, FD, fi_di_values
from reader.ccid import pinpad
from reader.ccid.activation_errors import berror
from reader.ccid.levels import (
    ESCAPE_SET_APDU_LEVEL,
    SHORT_APDU,
    TPDU,
    carries,
    exchange,
    link_parameters,
    processing_etu,
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
from reader.ccid.pace import INSTANT, Line, Pace, paced_exchange
from reader.ccid.serial import DEFAULT_VARIANT, variant_of
from reader.link.activation import activate
from reader.link.pps import ReaderPps
from reader.link.t0 import ReaderT0
from reader.link.t1 import ReaderT1
from reader.link.wire import LinkError

FIRMWARE_NAME = b"sscard CCID 1.0"  # what the check Escape answers; the driver logs it as "Firmware: ..."
ESCAPE_CARD_MOVEMENT_SYNCHRONOUS = b"\x01\x01\x01"
LENGTH_OFFSET = 1  # bError for data of the wrong length: the offset of dwLength
LEVEL_OFFSET = 8  # ... for a wLevelParameter it does not take: its offset
SLOT_OFFSET = 5  # ... for a slot that does not exist: the offset of bSlot
PROTOCOL_OFFSET = 7  # ... for a protocol it cannot run: the offset of bProtocolNum
DATA_OFFSET = 10  # the first byte of abData
CLOCK_RUNNING, CLOCK_STOPPED_LOW = 0x00, 0x01  # bClockStatus (§6.2.2): a card without power has no clock
NOTIFY_SLOT_CHANGE = 0x50  # RDR_to_PC_NotifySlotChange (§6.3.1)
SLOT_PRESENT, SLOT_CHANGED = 0x01, 0x02  # its bmSlotICCState bits for slot 0; slot n's are 2n places up
NOTIFIED_SLOTS = 4  # the slots one bmSlotICCState byte holds


def default_parameters(atr: Atr, protocol: int) -> bytes:
    """The §6.1.7 structure for `protocol` from the ATR, at Fd/Dd before any PPS (in specific mode
    at TA1's Fi/Di, which apply at once: ISO/IEC 7816-3 §6.3.1): what the slot runs with after
    IccPowerOn and ResetParameters."""
    inverse = TCCKS_INVERSE if atr.convention == "inverse" else 0
    fi_di = DEFAULT_FI_DI if atr.specific is None else atr.fi_di
    if protocol == 0:
        return bytes((fi_di, inverse, atr.n, atr.wi, 0x00))
    checksum = TCCKS_CRC if atr.edc == EDC_CRC else 0
    return bytes((fi_di, TCCKS_T1 | checksum | inverse, atr.n, atr.bwi << 4 | atr.cwi, 0x00, atr.ifsc, 0x00))


def agreed_fi_di(pps_answer: bytes) -> int:
    """The Fi/Di a card's PPS answer agrees to (ISO/IEC 7816-3 §9.3): PPS1 echoed, else Fd/Dd."""
    return pps_answer[2] if pps_answer[1] & 0x10 else DEFAULT_FI_DI


def parameters_fault(protocol: int, structure: bytes) -> int | None:
    """The bError of a SetParameters this firmware cannot take (an offset in the message), or None."""
    if len(structure) != PARAMETERS_SIZE[protocol]:
        return LENGTH_OFFSET
    if fi_di_values(structure[0]) is None:
        return DATA_OFFSET  # bmFindexDindex
    if protocol == 1 and not 1 <= structure[5] <= IFS_MAX:
        return DATA_OFFSET + 5  # bIFSC
    return None


class IccSlot:
    """One slot's state: its card (None: empty), the ATR and the protocol with its §6.1.7 parameters
    while the card is active, the card's end of the contacts and the firmware's own (at this level:
    on T=0 always, on T=1 at short APDU level only; at TPDU level T=1 blocks pass)."""

    __slots__ = ("atr", "card", "end", "number", "parameters", "pps", "protocol", "reader_t0", "reader_t1")
    atr: Atr | None
    protocol: int | None
    parameters: bytes
    end: CardT0 | CardT1 | None
    reader_t0: ReaderT0 | None
    reader_t1: ReaderT1 | None

    def __init__(self, number: int, card: Card | None):
        self.number = number  # bSlot
        self.card = card
        self.pps: tuple[bytes, bytes] | None = None  # the PPS the last SetParameters ran: request, answer
        self.deactivate()

    @property
    def icc_status(self) -> int:
        """bmICCStatus: the slot's state."""
        if self.card is None:
            return ICC_ABSENT
        return ICC_ACTIVE if self.card.powered and self.atr is not None else ICC_INACTIVE

    def deactivate(self) -> None:
        """No card session: no ATR, protocol or ends (the card powered off, or gone)."""
        self.atr, self.protocol, self.parameters = None, None, b""
        self.end, self.reader_t0, self.reader_t1 = None, None, None


class WatchedCard:
    """The card as its ends of the contacts see it (chip.contacts.end.CardOS), telling `seen(slot,
    apdu, response, seconds)` of every command APDU the card answers: what a bench view shows of a
    card whose protocol the host's driver runs (at TPDU level the firmware moves blocks and
    TPDUs; the card's ends put the APDUs together)."""

    __slots__ = ("_card", "_seen", "_slot")

    def __init__(self, card: Card, slot: int, seen: Callable[[int, bytes, bytes, float], None]):
        self._card, self._slot, self._seen = card, slot, seen

    @property
    def powered(self) -> bool:
        return self._card.powered

    @property
    def protocol(self) -> int | None:
        return self._card.protocol

    def power_on(self, protocol: int | None = None) -> bytes:
        return self._card.power_on(protocol)

    def transmit(self, apdu: bytes) -> bytes:
        started = time.perf_counter()
        response = self._card.transmit(apdu)
        self._seen(self._slot, bytes(apdu), response, time.perf_counter() - started)
        return response

    def knows(self, cla: int, ins: int) -> int:
        return self._card.knows(cla, ins)

    def hold_response(self, data: bytes, sw: bytes) -> bytes:
        return self._card.hold_response(data, sw)


class Firmware:
    """A CCID reader of the serial `variant` (reader/ccid/serial.py) with `card` in slot 0 and
    `others` in the slots after it (None: empty; slots not given are empty), at TPDU level until
    Escape 1F 02 sets the short APDU level (`level`, reader/ccid/levels.py)."""

    def __init__(self, card: Card | None, keypad: pinpad.Keypad | None = None, variant: str = DEFAULT_VARIANT,
                 others: tuple[Card | None, ...] = (), paced: bool = False):
        self.variant = variant_of(variant)
        self.paced = paced  # --realtime: `pace` says when each answer is due (reader/ccid/pace.py)
        self.on_apdu: Callable[[int, bytes, bytes, float], None] | None = None  # sees each APDU (WatchedCard)
        self.on_power: Callable[[int, str], None] | None = None  # told (slot, "on" | "off") at IccPowerOn/Off
        self.pace: Pace = INSTANT
        if len(others) >= self.variant.slots:
            raise ValueError(f"the {self.variant.name} has {self.variant.slots} slot(s), not {len(others) + 1}")
        cards = (card, *others) + (None,) * (self.variant.slots - 1 - len(others))
        self.slots = [IccSlot(number, each) for number, each in enumerate(cards)]
        self.keypad = keypad  # the PIN pad's keys (GemPC PinPad); None: no PIN pad, Secure unsupported
        self.level = TPDU
        self._changes = bytearray()  # the NotifySlotChange messages not yet sent
        self._handlers: dict[int, Callable[[IccSlot, Message], Message]] = {
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

    # -- the slots -----------------------------------------------------------------------------------
    @property
    def card(self) -> Card | None:
        """Slot 0's card (a one-slot reader's only one)."""
        return self.slots[0].card

    @property
    def icc_status(self) -> int:
        """Slot 0's bmICCStatus."""
        return self.slots[0].icc_status

    @property
    def _reader_t0(self) -> ReaderT0 | None:
        return self.slots[0].reader_t0

    @property
    def _reader_t1(self) -> ReaderT1 | None:
        return self.slots[0].reader_t1

    def status_of(self, slot: int) -> int:
        """bmICCStatus of slot number `slot` (absent for a slot the reader does not have)."""
        return self.slots[slot].icc_status if 0 <= slot < len(self.slots) else ICC_ABSENT

    def insert(self, card: Card, slot: int = 0) -> None:
        """Put `card` in slot `slot`, present and inactive (a card already there is removed first)."""
        self.remove(slot)
        self.slots[slot].card = card
        self._notify(slot)

    def remove(self, slot: int = 0) -> None:
        """Take the card out of slot `slot` (its power goes with it); nothing changes on an empty slot."""
        held = self.slots[slot]
        if held.card is None:
            return
        if held.card.powered:
            held.card.power_off()
        held.card = None
        held.deactivate()
        self._notify(slot)

    def _notify(self, changed: int) -> None:
        """Queue NotifySlotChange for a change in slot `changed`: every slot's presence, that one's
        change (§6.3.1: two bits a slot). The serial line carries one bmSlotICCState byte (libccid's
        ReadSerial reads one after the 50), so slots 0-3: a change beyond (the GemCore POS Pro's
        slot 4) is left to the host's GetSlotStatus polling."""
        if changed >= NOTIFIED_SLOTS:
            return
        state = SLOT_CHANGED << 2 * changed
        for number, each in enumerate(self.slots[:NOTIFIED_SLOTS]):
            if each.card is not None:
                state |= SLOT_PRESENT << 2 * number
        self._changes += bytes((NOTIFY_SLOT_CHANGE, state))

    def slot_changes(self) -> bytes:
        """The NotifySlotChange messages queued since the last call, in order (b"": none)."""
        changes, self._changes = bytes(self._changes), bytearray()
        return changes

    # -- commands ----------------------------------------------------------------------------------
    def handle(self, command: Message) -> Message:
        """The answer to one CCID command (and, when paced, its schedule in `pace`)."""
        self.pace = INSTANT
        number = command.slot
        if not 0 <= number < len(self.slots):
            return answer(command, ICC_ABSENT, SLOT_OFFSET)
        slot = self.slots[number]
        handler = self._handlers.get(command.type)
        if handler is None:
            return answer(command, slot.icc_status, CMD_NOT_SUPPORTED)
        return handler(slot, command)

    def _power_on(self, slot: IccSlot, command: Message) -> Message:
        if slot.card is None:
            return answer(command, ICC_ABSENT, ICC_MUTE)
        # LD/T 32 P2 §6.1.3, §8.5 and P8 §5.1.3 (reader/link/activation.py): cold reset, a warm one when
        # the answer is bad, the card deactivated when the warm one is bad too; the card's own protocol
        activation = activate(slot.card)
        if self.paced:
            self.pace = Pace(activation.seconds(self.variant.clock))
        if activation.params is None:
            slot.deactivate()
            return answer(command, slot.icc_status, berror(activation))
        slot.atr = activation.params
        self._use(slot, slot.atr.default_protocol, default_parameters(slot.atr, slot.atr.default_protocol))
        if self.on_power is not None:
            self.on_power(slot.number, "on")
        return answer(command, ICC_ACTIVE, data=activation.atr)

    def _power_off(self, slot: IccSlot, command: Message) -> Message:
        if slot.card is not None and slot.card.powered:
            slot.card.power_off()
            if self.on_power is not None:
                self.on_power(slot.number, "off")
        slot.deactivate()
        return answer(command, slot.icc_status, specific=CLOCK_STOPPED_LOW)

    def _slot_status(self, slot: IccSlot, command: Message) -> Message:
        status = slot.icc_status
        return answer(command, status, specific=CLOCK_RUNNING if status == ICC_ACTIVE else CLOCK_STOPPED_LOW)

    def _xfr_block(self, slot: IccSlot, command: Message) -> Message:
        status = slot.icc_status
        if status != ICC_ACTIVE:
            return answer(command, status, ICC_MUTE)
        data = command.data
        if not data:
            return answer(command, status, LENGTH_OFFSET)  # nothing to send
        if data[0] == PPSS:
            return self._pps(slot, command)
        if not carries(self.level, data):
            return answer(command, status, DATA_OFFSET)  # an extended APDU at short APDU level
        try:
            reply = self._exchange(slot, data)
        except LinkError:
            return answer(command, status, HW_ERROR)
        if reply is None:
            return answer(command, status, ICC_MUTE)
        return answer(command, status, data=reply)

    def _pps(self, slot: IccSlot, command: Message) -> Message:
        assert slot.atr is not None and slot.card is not None
        pps = CardPps(slot.atr)
        pps.receive(command.data)
        reply = pps.output()
        self._pace_pps(slot, command.data, reply)
        if not reply:  # the card refused: it stays silent (7816-3 §9.3), the reader times out
            return answer(command, ICC_ACTIVE, ICC_MUTE)
        if pps.accepted and pps.protocol is not None:
            structure = bytearray(default_parameters(slot.atr, pps.protocol))
            structure[0] = agreed_fi_di(reply)
            self._use(slot, pps.protocol, bytes(structure))
        return answer(command, ICC_ACTIVE, data=reply)

    def _get_parameters(self, slot: IccSlot, command: Message) -> Message:
        status = slot.icc_status
        if status != ICC_ACTIVE or slot.protocol is None:
            return answer(command, status, ICC_MUTE)
        return answer(command, status, specific=slot.protocol, data=slot.parameters)

    def _reset_parameters(self, slot: IccSlot, command: Message) -> Message:
        status = slot.icc_status
        if status != ICC_ACTIVE or slot.atr is None or slot.protocol is None:
            return answer(command, status, ICC_MUTE)
        self._use(slot, slot.protocol, default_parameters(slot.atr, slot.protocol))
        return answer(command, status, specific=slot.protocol, data=slot.parameters)

    def _set_parameters(self, slot: IccSlot, command: Message) -> Message:
        status = slot.icc_status
        if status != ICC_ACTIVE or slot.atr is None:
            return answer(command, status, ICC_MUTE)
        protocol = command.fields[0]
        if protocol not in PARAMETERS_SIZE or protocol not in slot.atr.protocols:
            return answer(command, status, PROTOCOL_OFFSET)
        structure = command.data
        fault = parameters_fault(protocol, structure)
        if fault is not None:
            return answer(command, status, fault)
        slot.pps = None
        if self.variant.auto_pps and (protocol != slot.protocol or structure[0] != slot.parameters[0]):
            fi_di = self._auto_pps(slot, protocol, structure[0])
            if fi_di is None:
                return answer(command, slot.icc_status, ICC_MUTE)
            structure = bytes((fi_di,)) + structure[1:]
        self._use(slot, protocol, structure)
        return answer(command, status, specific=protocol, data=slot.parameters)

    def _auto_pps(self, slot: IccSlot, protocol: int, fi_di: int) -> int | None:
        """CCID_CLASS_AUTO_PPS_CUR: the PPS that SetParameters calls for, run by the firmware (ISO/IEC
        7816-3 §9.2: PPS1 only for other than Fd/Dd, as libccid's own PPS_Exchange sends it). The Fi/Di
        the card agreed to; None when it stayed silent, the card then deactivated (§9.3)."""
        assert slot.atr is not None and slot.card is not None
        ours = ReaderPps(protocol, None if fi_di == DEFAULT_FI_DI else fi_di)
        card = CardPps(slot.atr)
        request = ours.output()
        card.receive(request)
        reply = card.output()
        slot.pps = (request, reply)
        self._pace_pps(slot, request, reply)
        if reply:
            ours.receive(reply)
        else:
            ours.timeout()
        if not ours.accepted:
            slot.card.power_off()
            slot.deactivate()
            return None
        return agreed_fi_di(reply)

    def _secure(self, slot: IccSlot, command: Message) -> Message:
        """PC_to_RDR_Secure (CCID rev 1.1 §6.1.11): the PIN from the keypad into the template, and the
        APDU to the card as an XfrBlock's at this level; on T=1 at TPDU level, the one I-block the
        host's bTeoPrologue starts (reader/ccid/pinpad.py)."""
        status = slot.icc_status
        if self.keypad is None:
            return answer(command, status, CMD_NOT_SUPPORTED)
        if status != ICC_ACTIVE or slot.end is None or slot.protocol is None:
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
        reader = slot.reader_t0 or slot.reader_t1
        unit = apdu if reader is not None else pinpad.tpdu_block(
            operation, apdu, link_parameters(slot.protocol, slot.parameters)["edc"])
        try:
            reply = self._exchange(slot, bytes(unit))
        except LinkError:
            return answer(command, status, HW_ERROR)
        finally:
            unit[:], apdu[:] = bytes(len(unit)), bytes(len(apdu))  # the PIN kept no longer than the exchange
            if reader is not None:
                reader.exchanges = []
        if reply is None:
            return answer(command, status, ICC_MUTE)
        return answer(command, status, data=reply)

    def _escape(self, slot: IccSlot, command: Message) -> Message:
        if command.data == self.variant.check_escape:
            return answer(command, slot.icc_status, data=FIRMWARE_NAME)
        if command.data == ESCAPE_CARD_MOVEMENT_SYNCHRONOUS:
            return answer(command, slot.icc_status)
        if self.keypad is not None and pinpad.loads_strings(command.data):
            return answer(command, slot.icc_status)  # the PIN pad's prompts: taken (its display is not simulated)
        if command.data == ESCAPE_SET_APDU_LEVEL:
            self.level = SHORT_APDU
            for each in self.slots:  # a card already active: the firmware's end for the new level
                if each.protocol is not None:
                    self._reader_ends(each, each.protocol, link_parameters(each.protocol, each.parameters))
            return answer(command, slot.icc_status)
        return answer(command, slot.icc_status, CMD_NOT_SUPPORTED)

    # -- the card's end of the contacts ------------------------------------------------------------------
    def _exchange(self, slot: IccSlot, data: bytes) -> bytes | None:
        """One XfrBlock's unit to the card and what comes back (levels.exchange), at the card's pace
        when paced. LinkError when the ends never finish."""
        assert slot.end is not None and slot.protocol is not None
        reader = slot.reader_t0 or slot.reader_t1
        if not self.paced:
            return exchange(reader, slot.end, data)
        reply, self.pace = paced_exchange(reader, slot.end, data, slot.protocol, self._line(slot))
        return reply

    def _line(self, slot: IccSlot) -> Line:
        """The contacts' timing in force in `slot`: its Fi/Di, the reader's clock, TC1's character time."""
        assert slot.atr is not None and slot.protocol is not None
        values = fi_di_values(slot.parameters[0])
        assert values is not None
        fi, di, _ = values
        return Line(fi, di, self.variant.clock, slot.atr.guard_etu(slot.protocol))

    def _pace_pps(self, slot: IccSlot, request: bytes, reply: bytes) -> None:
        """A PPS takes its characters' time at the initial etu (ISO/IEC 7816-3 §9.1), or the initial
        waiting time when the card stays silent."""
        if self.paced:
            assert slot.atr is not None
            line = Line(FD, DD, self.variant.clock, slot.atr.guard_etu(0))
            wait = len(reply) * CARD_CHARACTER_ETU if reply else slot.atr.wwt_etu(DD)
            self.pace = line.pace(len(request) * line.to_card_etu + wait)

    def _use(self, slot: IccSlot, protocol: int, structure: bytes) -> None:
        """Run `protocol` with the §6.1.7 parameters `structure`: the card's end made anew with them."""
        assert slot.card is not None
        slot.protocol, slot.parameters = protocol, bytes(structure)
        parameters = link_parameters(protocol, structure)
        if protocol == 0 and slot.card.protocol != 0:
            slot.card.reset(0)  # right after the ATR or PPS: nothing of the session is lost
        card = slot.card if self.on_apdu is None else WatchedCard(slot.card, slot.number, self.on_apdu)
        end = CardT0 if protocol == 0 else CardT1
        slot.end = end(card, delay_etu=processing_etu(slot.card), **parameters)
        self._reader_ends(slot, protocol, parameters)

    def _reader_ends(self, slot: IccSlot, protocol: int, parameters: dict) -> None:
        """The firmware's own end of the contacts for the protocol and the level (reader/ccid/levels.py)."""
        end = reader_end(self.level, protocol, parameters)
        slot.reader_t0 = end if isinstance(end, ReaderT0) else None
        slot.reader_t1 = end if isinstance(end, ReaderT1) else None
