"""The PIN pad of a CCID reader, sans-I/O: PC_to_RDR_Secure's structures, the keypad, the APDU it builds.

A PIN pad reader takes the PIN from its own keys and puts it into the command APDU itself, so
the PIN goes from the keypad to the card and never crosses the host's side of the line. The host
sends PC_to_RDR_Secure (USB CCID rev 1.1 §6.1.11) with an APDU template and says where and how
the digits go; the reader asks for the PIN, builds the APDU and sends it to the card; the card's
answer comes back in RDR_to_PC_DataBlock. libccid offers this to applications as the PC/SC
part 10 features FEATURE_VERIFY_PIN_DIRECT and FEATURE_MODIFY_PIN_DIRECT (SCardControl), for the
serial GemPC PinPad (`DEVICENAME LINK:GemPCPinPad`: the driver's bPINSupport 03, verify and
modify); it drops the PC/SC-only fields (bTimeOut2, ulDataLength) and copies the rest.

abPINOperationDataStructure (§6.1.11.1-§6.1.11.8): bPINOperation 00 verification or 01
modification, then

    verification: bTimeOut bmFormatString bmPINBlockString bmPINLengthFormat wPINMaxExtraDigit
                  bEntryValidationCondition bNumberMessage wLangId bMsgIndex bTeoPrologue(3)
                  abPINApdu
    modification: bTimeOut bmFormatString bmPINBlockString bmPINLengthFormat bInsertionOffsetOld
                  bInsertionOffsetNew wPINMaxExtraDigit bConfirmPIN bEntryValidationCondition
                  bNumberMessage wLangId bMsgIndex1 bMsgIndex2 bMsgIndex3 bTeoPrologue(3)
                  abPINApdu

For the GemPC PinPad the driver always sends the three bMsgIndex of a modification (the
Gemalto firmware expects them whatever bNumberMessage says: libccid's "Gemalto CCID Modify
Pin Bug"), forces bNumberMessage 01 in a verification and bEntryValidationCondition 02 (the
validation key) in both; this parser reads the structure as that reader does.

The format fields (§6.1.11.4):

- bmFormatString: b7 the units of the PIN position (1 bytes, 0 bits), b6-b3 the PIN position
  in the APDU's data field, b2 right (1) or left (0) justification, b1-b0 the digits' encoding
  (00 binary, one byte a digit; 01 BCD, one nibble a digit; 10 ASCII);
- bmPINBlockString: b7-b4 the size in bits of the PIN length field (0: none), b3-b0 the PIN
  block's size in bytes: the bytes of the template the PIN is written into;
- bmPINLengthFormat: b4 the units of the length field's position, b3-b0 that position;
- wPINMaxExtraDigit (little-endian 0xXXYY): XX the fewest digits, YY the most;
- bInsertionOffsetOld / New (modification): where, in bytes from the start of the data field,
  the current and the new PIN's frame begins; the positions above are inside that frame;
- bConfirmPIN (modification): b0 the new PIN entered twice, b1 the current PIN entered too.

The outcomes a PIN pad reports, as PC/SC part 10 names them: a cancel key is bError
PIN_CANCELLED (EF) and a timeout PIN_TIMEOUT (F0), which libccid answers to the application as
SW 6401 and 6400; the two new PINs differing is SW 6402 and a PIN of too few or too many digits
6403, which the reader answers itself in a DataBlock. Everything else is the card's own answer.

The PIN's length on the pad itself (LD/T 32 P8 §6.2.4): the pad lets the holder enter 4 to 12
digits, whatever the host's structure allows. `Keypad(digits=...)` holds the pad's own bounds
(4-12 by default; the Sichuan readers take 4-16); an entry must lie in the host's bounds
(wPINMaxExtraDigit, and what its PIN block holds) and the pad's: a host asking 4-16 gets at most
12. An entry outside them is answered 6403, as PC/SC part 10 names a PIN too short or too long; a
structure whose bounds do not meet the pad's at all (at most 3 digits, at least 13) can never
be satisfied, and the pad refuses it as a structure error at wPINMaxExtraDigit (bmPINBlockString
for a block too small), before any key is asked for. The pad clears its buffers after each
entry, whatever its outcome (P8 §6.2.4: after each transaction and on timeout): `build` wipes
every entry it took, and the APDU when it aborts; the caller wipes the APDU once the card has it.

The host's side of the same operation (PC/SC part 10): an application calls SCardControl with
FEATURE_VERIFY_PIN_DIRECT (06) or FEATURE_MODIFY_PIN_DIRECT (07) and a PIN_VERIFY_STRUCTURE /
PIN_MODIFY_STRUCTURE (`pcsc_structure`); libccid turns it into PC_to_RDR_Secure's abData
(`ccid_data`, what it sends a GemPC PinPad) and answers a cancel or a timeout 6401 / 6400.
`pin_entry` is that whole path in-process, with the same `parse` and `build` as the firmware's
Secure: the in-process readers' PIN pad (reader.base).

For the SSSE (LD/T 32 P5) the template is VERIFY `00 20 00 00 03 FF FF FF` (§6.14) with
bmFormatString 81 (bytes, position 0, left, BCD) and bmPINBlockString 03: 123456 gives
`00 20 00 00 03 12 34 56`, the packed BCD the card checks; CHANGE PIN (§6.3) is
`80 5E 01 00 07 FF FF FF FF FF FF FF`, the new PIN's frame at offset 4, after the FF separator
(`ssse_operation` makes these structures for any template).
"""

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from chip.contacts.t1 import Block
from reader.ccid.messages import PIN_CANCELLED, PIN_TIMEOUT

VERIFY, MODIFY = 0x00, 0x01  # bPINOperation
FEATURE_VERIFY_PIN_DIRECT, FEATURE_MODIFY_PIN_DIRECT = 0x06, 0x07  # PC/SC part 10 feature tags
FEATURE_NAMES = {FEATURE_VERIFY_PIN_DIRECT: "FEATURE_VERIFY_PIN_DIRECT", FEATURE_MODIFY_PIN_DIRECT: "FEATURE_MODIFY_PIN_DIRECT"}
P8_DIGITS = (4, 12)  # LD/T 32 P8 §6.2.4: the PIN pad lets the holder enter 4 to 12 digits
KEYPAD_READERS = frozenset({"GemPCPinPad"})  # the serial variants with a keypad (libccid: bPINSupport 03)
CANCEL, TIMEOUT = "cancel", "timeout"  # the keypad's two other outcomes than a PIN
SW_NEW_PINS_DIFFER, SW_WRONG_PIN_LENGTH = b"\x64\x02", b"\x64\x03"  # PC/SC part 10: the reader's own answers
# libccid's CCID_Receive: the bError of a cancel or a timeout becomes the SW the application gets
ERROR_SW = {PIN_TIMEOUT: b"\x64\x00", PIN_CANCELLED: b"\x64\x01"}
# the Escape libccid sends a GemPC PinPad when it opens it (ccid.c, ccid_open_hack_post): B2 "load strings",
# A0 00 the display memory's address, 4D 4C a magic value, then ten 16-character prompts; if it fails the
# driver does not open the reader
ESCAPE_LOAD_STRINGS = b"\xb2\xa0\x00\x4d\x4c"
DISPLAY_STRINGS_SIZE = 10 * 16
ENCODING_BINARY, ENCODING_BCD, ENCODING_ASCII = 0, 1, 2  # bmFormatString b1-b0
CONFIRM_NEW, ENTER_CURRENT = 0x01, 0x02  # bConfirmPIN
HEADER = 4  # CLA INS P1 P2, then Lc: positions count from the data field after it

VERIFY_FIELDS = 15  # bPINOperation .. bTeoPrologue, before abPINApdu
MODIFY_FIELDS = 20  # with the two insertion offsets, bConfirmPIN and the three bMsgIndex
BLOCK_FIELD = 3  # bmPINBlockString's offset in abData (and in the PC/SC structures)
# PC/SC part 10: the structures' bytes before abData (ulDataLength their last four), and what the host puts in
# the fields the pad does not simulate: wLangId 0409 (little-endian), the message indexes 00 (00 01 02 in a
# modification)
PCSC_VERIFY_HEADER, PCSC_MODIFY_HEADER = 19, 24
LANG_ID = b"\x09\x04"
VALIDATION_KEY = 0x02  # bEntryValidationCondition: the validation key pressed (the only one a GemPC PinPad takes)


class StructureError(ValueError):
    """A Secure structure this PIN pad cannot run. `field` is the offset in abData of the field at
    fault (the firmware's bError is its offset in the message), None when it is dwLength."""

    def __init__(self, field: int | None, reason: str):
        super().__init__(reason)
        self.field = field


class Aborted(Exception):
    """The PIN entry ended without an APDU: `error` a bError (cancel, timeout) or `sw` the reader's SW."""

    def __init__(self, error: int | None = None, sw: bytes = b""):
        super().__init__(f"bError {error:02X}" if error is not None else f"SW {sw.hex().upper()}")
        self.error, self.sw = error, sw


@dataclass(frozen=True)
class Operation:
    """One PC_to_RDR_Secure's abPINOperationDataStructure, verification or modification."""

    operation: int
    timeout: int
    format_string: int
    block_string: int
    length_format: int
    min_digits: int
    max_digits: int
    validation: int
    messages: int
    apdu: bytes  # the template
    prologue: bytes  # bTeoPrologue: NAD, PCB, LEN of the T=1 block at TPDU level
    offset_old: int = 0
    offset_new: int = 0
    confirm: int = 0

    # bmFormatString, bmPINBlockString, bmPINLengthFormat
    @property
    def units(self) -> int:
        """Bits in one unit of the PIN position."""
        return 8 if self.format_string & 0x80 else 1

    @property
    def position(self) -> int:
        return (self.format_string >> 3 & 0x0F) * self.units

    @property
    def right_justified(self) -> bool:
        return bool(self.format_string & 0x04)

    @property
    def encoding(self) -> int:
        return self.format_string & 0x03

    @property
    def length_bits(self) -> int:
        return self.block_string >> 4

    @property
    def block_bits(self) -> int:
        return (self.block_string & 0x0F) * 8

    @property
    def length_position(self) -> int:
        return (self.length_format & 0x0F) * (8 if self.length_format & 0x10 else 1)

    @property
    def digits_field(self) -> int:
        """wPINMaxExtraDigit's offset in abData."""
        return 5 if self.operation == VERIFY else 7

    @property
    def room(self) -> int:
        """The digits the PIN block holds."""
        return self.block_bits // _digit_bits(self.encoding)


def parse(data: bytes) -> Operation:
    """The structure of a PC_to_RDR_Secure's abData (bPINOperation first); StructureError if not one."""
    if not data:
        raise StructureError(None, "no bPINOperation")
    operation = data[0]
    if operation == VERIFY:
        fields = VERIFY_FIELDS
    elif operation == MODIFY:
        fields = MODIFY_FIELDS
    else:
        raise StructureError(0, f"bPINOperation {operation:02X} (only 00 verify and 01 modify)")
    if len(data) < fields + HEADER + 1:
        raise StructureError(None, f"{len(data)} bytes: no APDU template after the structure")
    d = data
    if operation == VERIFY:
        op = Operation(VERIFY, d[1], d[2], d[3], d[4], d[6], d[5], d[7], d[8], bytes(d[15:]), bytes(d[12:15]))
    else:
        op = Operation(MODIFY, d[1], d[2], d[3], d[4], d[8], d[7], d[10], d[11], bytes(d[20:]), bytes(d[17:20]),
                       offset_old=d[5], offset_new=d[6], confirm=d[9])
    if op.encoding not in (ENCODING_BINARY, ENCODING_BCD, ENCODING_ASCII):
        raise StructureError(2, "bmFormatString: encoding 11 is RFU")
    if op.max_digits < op.min_digits:
        raise StructureError(op.digits_field, "wPINMaxExtraDigit: fewer digits allowed than needed")
    if len(op.apdu) != HEADER + 1 + op.apdu[HEADER]:
        raise StructureError(fields, "abPINApdu: not a short case 3 APDU (Lc and the data disagree)")
    frames = [0]  # where each PIN's frame starts in the data field
    if operation == MODIFY:
        frames = [op.offset_new] + ([op.offset_old] if op.confirm & ENTER_CURRENT else [])
    for frame in frames:
        end = frame * 8 + max(op.position + op.block_bits, op.length_position + op.length_bits)
        if end > op.apdu[HEADER] * 8:
            raise StructureError(2, "the PIN block lies beyond the template's data field")
    return op


def _digit_bits(encoding: int) -> int:
    return 4 if encoding == ENCODING_BCD else 8


def check_entry(entry: str) -> str:
    """One keypad entry as the keypad takes it (digits, CANCEL or TIMEOUT, any case, blanks around
    ignored); ValueError for anything else."""
    entry = entry.strip().lower()
    if entry not in (CANCEL, TIMEOUT) and not (entry and entry.isascii() and entry.isdigit()):
        raise ValueError(f"a keypad entry is digits, {CANCEL!r} or {TIMEOUT!r}, not {entry!r}")
    return entry


class Keypad:
    """The reader's keys, scripted: a queue of entries, each digits ("123456", the validation key
    pressed after them), CANCEL or TIMEOUT. An entry asked for when the queue is empty is a
    timeout: nobody pressed a key.

    `digits` are the pad's own bounds on a PIN's length, (fewest, most): 4-12 by default, as P8
    §6.2.4 says; a regional reader may take others (the Sichuan readers 4-16)."""

    def __init__(self, entries: Iterable[str] = (), digits: tuple[int, int] = P8_DIGITS):
        low, high = digits
        if not 0 < low <= high:
            raise ValueError(f"a PIN pad's bounds are fewest and most digits, 1 <= fewest <= most, not {low}-{high}")
        self.digits = (low, high)
        self._entries: deque[bytearray] = deque()
        for entry in entries:
            self.press(entry)

    def press(self, entry: str) -> None:
        """Queue one entry; ValueError for anything but digits, CANCEL or TIMEOUT."""
        self._entries.append(bytearray(check_entry(entry), "ascii"))

    def __len__(self) -> int:
        return len(self._entries)

    def pending(self) -> list[str]:
        """The entries waiting, oldest first: for a recorder, whose trace must type them again to replay."""
        return [entry.decode("ascii") for entry in self._entries]

    def take(self) -> bytearray:
        """The next entry (the caller wipes it when done), TIMEOUT when none is queued."""
        return self._entries.popleft() if self._entries else bytearray(TIMEOUT, "ascii")


def _wipe(*buffers: bytearray) -> None:
    for buffer in buffers:
        buffer[:] = bytes(len(buffer))


def bounds(op: Operation, keypad: Keypad) -> tuple[int, int]:
    """The lengths a PIN entry may have: the structure's (wPINMaxExtraDigit, and no more than its PIN
    block holds) met with the pad's own (P8 §6.2.4). StructureError when no length is left: the
    host's bounds miss the pad's (wPINMaxExtraDigit), or the block holds fewer digits than the
    fewest (bmPINBlockString)."""
    low, high = keypad.digits
    fewest, most = max(op.min_digits, low), min(op.max_digits, high)
    if fewest > most:
        raise StructureError(op.digits_field, f"wPINMaxExtraDigit: {op.min_digits}-{op.max_digits} digits, and "
                                              f"this PIN pad takes {low}-{high}")
    if op.room < fewest:
        raise StructureError(BLOCK_FIELD, f"bmPINBlockString: the PIN block holds {op.room} digits, fewer than "
                                          f"the {fewest} a PIN has at least")
    return fewest, min(most, op.room)


def _enter(keypad: Keypad, lengths: tuple[int, int], taken: list[bytearray]) -> bytearray:
    """One PIN entry: its digits, or Aborted for a cancel, a timeout or a length out of `lengths`."""
    entry = keypad.take()
    taken.append(entry)
    if entry == CANCEL.encode():
        raise Aborted(PIN_CANCELLED)
    if entry == TIMEOUT.encode():
        raise Aborted(PIN_TIMEOUT)
    if not lengths[0] <= len(entry) <= lengths[1]:
        raise Aborted(sw=SW_WRONG_PIN_LENGTH)
    return entry


def build(op: Operation, keypad: Keypad) -> bytearray:
    """The command APDU: the template with the PIN(s) from `keypad` written in, or Aborted.

    The lengths are checked first (`bounds`: StructureError before any key is asked for). A
    modification asks for the current PIN (bConfirmPIN b1), the new one, and the new one again
    (b0); the new PINs must match. Every entry taken is wiped before this returns; the caller
    wipes the APDU once the card has it."""
    lengths = bounds(op, keypad)
    taken: list[bytearray] = []
    apdu = bytearray(op.apdu)
    try:
        if op.operation == VERIFY:
            _write(apdu, op, 0, _enter(keypad, lengths, taken))
            return apdu
        current = _enter(keypad, lengths, taken) if op.confirm & ENTER_CURRENT else None
        new = _enter(keypad, lengths, taken)
        if op.confirm & CONFIRM_NEW and _enter(keypad, lengths, taken) != new:
            raise Aborted(sw=SW_NEW_PINS_DIFFER)
        if current is not None:
            _write(apdu, op, op.offset_old, current)
        _write(apdu, op, op.offset_new, new)
        return apdu
    except Aborted:
        _wipe(apdu)
        raise
    finally:
        _wipe(*taken)


def _write(apdu: bytearray, op: Operation, frame: int, digits: bytearray) -> None:
    """Write `digits` into the PIN block of the frame `frame` bytes into the data field, and the
    PIN length if the structure has a length field."""
    origin = (HEADER + 1 + frame) * 8  # in bits from the APDU's first byte
    width = _digit_bits(op.encoding)
    start = origin + op.position + (op.block_bits - len(digits) * width if op.right_justified else 0)
    for i, digit in enumerate(digits):
        value = digit - 0x30 if op.encoding != ENCODING_ASCII else digit
        _put(apdu, start + i * width, width, value)
    if op.length_bits:
        _put(apdu, origin + op.length_position, op.length_bits, len(digits))


def _put(buffer: bytearray, bit: int, width: int, value: int) -> None:
    """Write `value` as a `width`-bit field at bit `bit` of `buffer` (bit 0: the first byte's b7)."""
    for i in range(width):
        at = bit + i
        mask = 0x80 >> (at % 8)
        if value >> (width - 1 - i) & 1:
            buffer[at // 8] |= mask
        else:
            buffer[at // 8] &= ~mask & 0xFF


def tpdu_block(op: Operation, apdu: bytearray, edc: str) -> bytearray:
    """The T=1 I-block that carries `apdu` at TPDU level: the host's bTeoPrologue (its NAD and
    PCB: the driver keeps the send sequence number), LEN for the APDU with its PIN, the EDC
    (ISO/IEC 7816-3 §11.3). The card's answer block goes back as it is."""
    return bytearray(Block(op.prologue[1], bytes(apdu), op.prologue[0]).encode(edc))


def loads_strings(escape: bytes) -> bool:
    """Whether an Escape's data is the driver's "load strings" for the PIN pad's display."""
    return escape.startswith(ESCAPE_LOAD_STRINGS) and len(escape) == len(ESCAPE_LOAD_STRINGS) + DISPLAY_STRINGS_SIZE


# -- the host's side: PC/SC part 10 and libccid ---------------------------------------------------------------

def ssse_operation(operation: int, template: bytes) -> Operation:
    """The structure a host gives for the SSSE's PIN (LD/T 32 P5 §6.14 VERIFY, §6.3 CHANGE PIN) with
    the APDU template `template`: packed BCD (cn), left-justified from the first byte of the PIN's
    frame, in a block of the frame's bytes, no length field; the template's filler (FF) ends an odd
    PIN as the card packs it, so a block of n bytes takes 2n - 1 or 2n digits. A verification's
    frame is the whole data field; a modification's data field (Lc 2n + 1) is the current PIN's n
    bytes, the separator, the new PIN's n bytes (bInsertionOffsetNew n + 1), and it asks for the
    current PIN and the new one twice (bConfirmPIN 03). StructureError for a template that gives
    no block of 1-15 bytes (bmPINBlockString's four bits)."""
    data = template[HEADER] if len(template) > HEADER else 0
    block = data if operation == VERIFY else (data - 1) // 2
    if not 1 <= block <= 0x0F:
        raise StructureError(BLOCK_FIELD, f"a template with {data} data bytes gives a PIN block of {block} bytes "
                                          "(bmPINBlockString holds 1-15)")
    op = Operation(VERIFY, 0, 0x80 | ENCODING_BCD, block, 0, 2 * block - 1, 2 * block, VALIDATION_KEY, 1,
                   bytes(template), bytes(3))
    if operation == VERIFY:
        return op
    return replace(op, operation=MODIFY, messages=3, offset_new=block + 1, confirm=ENTER_CURRENT | CONFIRM_NEW)


def feature_of(op: Operation) -> int:
    return FEATURE_VERIFY_PIN_DIRECT if op.operation == VERIFY else FEATURE_MODIFY_PIN_DIRECT


def pcsc_structure(op: Operation) -> bytes:
    """The PC/SC part 10 PIN_VERIFY_STRUCTURE or PIN_MODIFY_STRUCTURE an application hands SCardControl
    for `op` (bTimerOut2 00, wLangId 0409, the message indexes 00 / 00 01 02, ulDataLength the
    template's length, little-endian as part 10 says)."""
    formats = bytes((op.timeout, 0, op.format_string, op.block_string, op.length_format))
    digits = bytes((op.max_digits, op.min_digits))  # wPINMaxExtraDigit 0xXXYY little-endian: YY (most) first
    if op.operation == VERIFY:
        fields = formats + digits + bytes((op.validation, op.messages)) + LANG_ID + b"\x00"
    else:
        fields = (formats + bytes((op.offset_old, op.offset_new)) + digits
                  + bytes((op.confirm, op.validation, op.messages)) + LANG_ID + b"\x00\x01\x02")
    return fields + op.prologue + len(op.apdu).to_bytes(4, "little") + op.apdu


def ccid_data(feature: int, structure: bytes) -> bytes:
    """abData of the PC_to_RDR_Secure libccid sends a GemPC PinPad for SCardControl(`feature`,
    `structure`) (libccid src/commands.c SecurePINVerify, SecurePINModify): bPINOperation first,
    bTimerOut2 and ulDataLength dropped, bEntryValidationCondition forced to 02 and, in a
    verification, bNumberMessage to 01; a modification keeps its three bMsgIndex whatever
    bNumberMessage says (the "Gemalto CCID Modify Pin Bug"). StructureError (field None) for what
    the driver refuses itself: a structure too short for an APDU header, ulDataLength not the
    APDU's length, a modification's bNumberMessage above 3 but FF."""
    if feature == FEATURE_VERIFY_PIN_DIRECT:
        operation, head, validation = VERIFY, PCSC_VERIFY_HEADER, 7
    elif feature == FEATURE_MODIFY_PIN_DIRECT:
        operation, head, validation = MODIFY, PCSC_MODIFY_HEADER, 10
    else:
        raise StructureError(None, f"feature {feature:02X} is no PIN entry (06 verify, 07 modify)")
    s = bytearray(structure)
    if len(s) < head + HEADER:
        raise StructureError(None, f"{FEATURE_NAMES[feature]}: {len(s)} bytes, fewer than the structure and an "
                                   "APDU header")
    if int.from_bytes(s[head - 4:head], "little") + head != len(s):
        raise StructureError(None, f"{FEATURE_NAMES[feature]}: ulDataLength is not the APDU's length")
    if operation == MODIFY and 3 < s[11] < 0xFF:
        raise StructureError(None, f"{FEATURE_NAMES[feature]}: bNumberMessage {s[11]:02X} (00-03 or FF)")
    s[validation] = VALIDATION_KEY
    if operation == VERIFY:
        s[8] = 0x01
    return bytes((operation,)) + bytes(s[:1]) + bytes(s[2:head - 4]) + bytes(s[head:])


def pin_entry(feature: int, structure: bytes, keypad: Keypad, transmit: Callable[[bytes], bytes]) -> bytes:
    """What the application's SCardControl(`feature`, `structure`) answers on a GemPC PinPad through
    libccid, in-process: the structure as the driver sends it (`ccid_data`), the PIN from `keypad`
    into the template (`parse`, `build`), the APDU to the card by `transmit`, and the card's
    response; or the pad's own SW (6400 timeout, 6401 cancel, 6402, 6403). The APDU is wiped once
    sent. StructureError for a structure the driver or the pad refuses (SCardControl fails)."""
    op = parse(ccid_data(feature, structure))
    try:
        apdu = build(op, keypad)
    except Aborted as exc:
        return exc.sw if exc.error is None else ERROR_SW[exc.error]
    try:
        return transmit(bytes(apdu))
    finally:
        _wipe(apdu)
