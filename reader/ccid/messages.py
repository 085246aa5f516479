"""The CCID messages (USB CCID class specification rev 1.1 §6), as data: one table, one codec.

Every message is a 10-byte header and its data:

    bMessageType  dwLength (little-endian, the data's length)  bSlot  bSeq  three specific bytes  data

The host's commands (PC_to_RDR, §6.1) use the three bytes for their parameters (IccPowerOn's
bPowerSelect, XfrBlock's bBWI and wLevelParameter, SetParameters' bProtocolNum, ...); the
reader's answers (RDR_to_PC, §6.2) for bStatus, bError and one more (bChainParameter,
bClockStatus, bProtocolNum). Each command has one answer type (§6.2, Table 6.2-1): it is
`COMMANDS[type].answer`.

bStatus (§6.2.6): bmICCStatus in b1-b0 (0 a card present and active, 1 present and inactive,
2 no card), bmCommandStatus in b7-b6 (0 processed, 1 failed - bError says why -, 2 time
extension requested). bError codes are `ERROR_NAMES`; 1-127 is the offset of the message byte
that holds an unsupported parameter.

The parameter structures of SetParameters, GetParameters and RDR_to_PC_Parameters (§6.1.7):
T=0 is 5 bytes (bmFindexDindex, bmTCCKST0, bGuardTimeT0, bWaitingIntegerT0, bClockStop), T=1
is 7 bytes (bmFindexDindex, bmTCCKST1, bGuardTimeT1, bmWaitingIntegersT1, bClockStop, bIFSC,
bNadValue).

Nothing here reads or writes a device: `Message.encode()` gives bytes, `decode(bytes)` a
`Message`, `message_size(prefix)` how long the message that starts with `prefix` is.
"""

from dataclasses import dataclass

HEADER_SIZE = 10
MAX_MESSAGE = 271  # dwMaxCCIDMessageLength the GemPC Twin announces: the header and 261 data bytes


@dataclass(frozen=True)
class Kind:
    """One message type: its name in §6 and, for a command, the type of its answer."""

    name: str
    answer: int | None = None  # None: this is an answer (RDR_to_PC)


# -- the message types (§6.1, §6.2) -----------------------------------------------------------------------
ICC_POWER_ON = 0x62
ICC_POWER_OFF = 0x63
GET_SLOT_STATUS = 0x65
XFR_BLOCK = 0x6F
GET_PARAMETERS = 0x6C
RESET_PARAMETERS = 0x6D
SET_PARAMETERS = 0x61
ESCAPE = 0x6B
ICC_CLOCK = 0x6E
T0_APDU = 0x6A
SECURE = 0x69
MECHANICAL = 0x71
ABORT = 0x72
SET_DATA_RATE_AND_CLOCK_FREQUENCY = 0x73

DATA_BLOCK = 0x80
SLOT_STATUS = 0x81
PARAMETERS = 0x82
ESCAPE_ANSWER = 0x83
DATA_RATE_AND_CLOCK_FREQUENCY = 0x84

COMMANDS = {
    ICC_POWER_ON: Kind("PC_to_RDR_IccPowerOn", DATA_BLOCK),
    ICC_POWER_OFF: Kind("PC_to_RDR_IccPowerOff", SLOT_STATUS),
    GET_SLOT_STATUS: Kind("PC_to_RDR_GetSlotStatus", SLOT_STATUS),
    XFR_BLOCK: Kind("PC_to_RDR_XfrBlock", DATA_BLOCK),
    GET_PARAMETERS: Kind("PC_to_RDR_GetParameters", PARAMETERS),
    RESET_PARAMETERS: Kind("PC_to_RDR_ResetParameters", PARAMETERS),
    SET_PARAMETERS: Kind("PC_to_RDR_SetParameters", PARAMETERS),
    ESCAPE: Kind("PC_to_RDR_Escape", ESCAPE_ANSWER),
    ICC_CLOCK: Kind("PC_to_RDR_IccClock", SLOT_STATUS),
    T0_APDU: Kind("PC_to_RDR_T0APDU", SLOT_STATUS),
    SECURE: Kind("PC_to_RDR_Secure", DATA_BLOCK),
    MECHANICAL: Kind("PC_to_RDR_Mechanical", SLOT_STATUS),
    ABORT: Kind("PC_to_RDR_Abort", SLOT_STATUS),
    SET_DATA_RATE_AND_CLOCK_FREQUENCY: Kind("PC_to_RDR_SetDataRateAndClockFrequency", DATA_RATE_AND_CLOCK_FREQUENCY),
}
ANSWERS = {
    DATA_BLOCK: Kind("RDR_to_PC_DataBlock"),
    SLOT_STATUS: Kind("RDR_to_PC_SlotStatus"),
    PARAMETERS: Kind("RDR_to_PC_Parameters"),
    ESCAPE_ANSWER: Kind("RDR_to_PC_Escape"),
    DATA_RATE_AND_CLOCK_FREQUENCY: Kind("RDR_to_PC_DataRateAndClockFrequency"),
}
KINDS = {**COMMANDS, **ANSWERS}

# -- bStatus (§6.2.6) -------------------------------------------------------------------------------------
ICC_ACTIVE, ICC_INACTIVE, ICC_ABSENT = 0, 1, 2  # bmICCStatus
COMMAND_OK, COMMAND_FAILED, TIME_EXTENSION = 0x00, 0x40, 0x80  # bmCommandStatus, in place

# -- bError (§6.2.6) --------------------------------------------------------------------------------------
CMD_NOT_SUPPORTED = 0x00
CMD_ABORTED = 0xFF
ICC_MUTE = 0xFE
XFR_PARITY_ERROR = 0xFD
XFR_OVERRUN = 0xFC
HW_ERROR = 0xFB
BAD_ATR_TS = 0xF8
BAD_ATR_TCK = 0xF7
ICC_PROTOCOL_NOT_SUPPORTED = 0xF6
ICC_CLASS_NOT_SUPPORTED = 0xF5
PROCEDURE_BYTE_CONFLICT = 0xF4
DEACTIVATED_PROTOCOL = 0xF3
BUSY_WITH_AUTO_SEQUENCE = 0xF2
PIN_TIMEOUT = 0xF0
PIN_CANCELLED = 0xEF
CMD_SLOT_BUSY = 0xE0
ERROR_NAMES = {
    CMD_NOT_SUPPORTED: "CMD_NOT_SUPPORTED", CMD_ABORTED: "CMD_ABORTED", ICC_MUTE: "ICC_MUTE",
    XFR_PARITY_ERROR: "XFR_PARITY_ERROR", XFR_OVERRUN: "XFR_OVERRUN", HW_ERROR: "HW_ERROR",
    BAD_ATR_TS: "BAD_ATR_TS", BAD_ATR_TCK: "BAD_ATR_TCK", ICC_PROTOCOL_NOT_SUPPORTED: "ICC_PROTOCOL_NOT_SUPPORTED",
    ICC_CLASS_NOT_SUPPORTED: "ICC_CLASS_NOT_SUPPORTED", PROCEDURE_BYTE_CONFLICT: "PROCEDURE_BYTE_CONFLICT",
    DEACTIVATED_PROTOCOL: "DEACTIVATED_PROTOCOL", BUSY_WITH_AUTO_SEQUENCE: "BUSY_WITH_AUTO_SEQUENCE",
    PIN_TIMEOUT: "PIN_TIMEOUT", PIN_CANCELLED: "PIN_CANCELLED", CMD_SLOT_BUSY: "CMD_SLOT_BUSY",
}

# -- the parameter structures (§6.1.7) --------------------------------------------------------------------
T0_PARAMETERS_SIZE = 5
T1_PARAMETERS_SIZE = 7
PARAMETERS_SIZE = {0: T0_PARAMETERS_SIZE, 1: T1_PARAMETERS_SIZE}
TCCKS_T1 = 0x10  # bmTCCKST1: b4 is always set; b0 CRC (else LRC), b1 inverse convention
TCCKS_CRC = 0x01
TCCKS_INVERSE = 0x02


class MessageError(ValueError):
    """Bytes that are not one whole CCID message."""


@dataclass(frozen=True)
class Message:
    """One CCID message. `fields` are the three message-specific header bytes (for an answer:
    bStatus, bError and the third byte); `data` is what dwLength counts."""

    type: int
    slot: int = 0
    seq: int = 0
    fields: bytes = bytes(3)
    data: bytes = b""

    def __post_init__(self) -> None:
        if len(self.fields) != 3:
            raise ValueError(f"a CCID header has 3 message-specific bytes, not {len(self.fields)}")

    @property
    def name(self) -> str:
        kind = KINDS.get(self.type)
        return kind.name if kind else f"unknown message {self.type:02X}"

    # answers (§6.2)
    @property
    def status(self) -> int:
        return self.fields[0]

    @property
    def error(self) -> int:
        return self.fields[1]

    @property
    def icc_status(self) -> int:
        return self.fields[0] & 0x03

    @property
    def failed(self) -> bool:
        return self.fields[0] & 0xC0 == COMMAND_FAILED

    def encode(self) -> bytes:
        return (bytes((self.type,)) + len(self.data).to_bytes(4, "little") + bytes((self.slot, self.seq))
                + self.fields + self.data)

    def __str__(self) -> str:
        head = f"{self.name} slot {self.slot} seq {self.seq} [{self.fields.hex(' ').upper()}]"
        return head + (f" {self.data.hex(' ').upper()}" if self.data else "")


def message_size(prefix: bytes | bytearray) -> int | None:
    """The whole length of the message `prefix` starts (header + dwLength), None before 5 bytes."""
    if len(prefix) < 5:
        return None
    return HEADER_SIZE + int.from_bytes(prefix[1:5], "little")


def decode(data: bytes | bytearray) -> Message:
    """The message that is exactly `data`; MessageError when its length disagrees with dwLength."""
    size = message_size(data)
    if size is None or len(data) < HEADER_SIZE or len(data) != size:
        raise MessageError(f"{len(data)} bytes are not one CCID message"
                           + (f" (its dwLength says {size})" if size is not None else ""))
    return Message(data[0], data[5], data[6], bytes(data[7:10]), bytes(data[10:]))


def answer(command: Message, icc_status: int, error: int | None = None, specific: int = 0,
           data: bytes = b"") -> Message:
    """The answer to `command` (its answer type, slot and bSeq): processed, or failed with `error`."""
    kind = COMMANDS.get(command.type)
    answer_type = kind.answer if kind is not None and kind.answer is not None else SLOT_STATUS
    status = icc_status | (COMMAND_OK if error is None else COMMAND_FAILED)
    return Message(answer_type, command.slot, command.seq, bytes((status, error or 0, specific)), bytes(data))
