"""The applet model (after Java Card's `Applet`): select / deselect / process.

An application declares its file tree and a command table `{(CLA << 8) | INS:
method name}`; the card OS dispatches by dict lookup on the selected applet.
The table is resolved once per class into plain functions (`commands`, shared
by every card of a fleet: no per-card dict of bound methods) and the OS calls
`handler(applet, cmd)`. Handlers take a decoded `Command` and return
`(data, sw)` or raise CardError.
Mechanisms every application shares (READ RECORD over declared record files,
the FCI, access checks) live here once.
"""

from collections.abc import Callable

from chip.iso.apdu import SHORT_MAX, Command
from chip.iso.ber import ber_tlv
from chip.iso.ins import READ_BINARY, READ_RECORD, VERIFY
from chip.iso.sw import (
    SW_COMMAND_NOT_ALLOWED_NO_EF,
    SW_END_OF_FILE,
    SW_FILE_NOT_FOUND,
    SW_INCOMPATIBLE_FILE_STRUCTURE,
    SW_LC_INCONSISTENT_WITH_TLV,
    SW_NOT_ENOUGH_MEMORY,
    SW_OFFSET_OUTSIDE_EF,
    SW_OK,
    SW_RECORD_NOT_FOUND,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_SECURITY_STATUS_NOT_SATISFIED,
    SW_WRONG_DATA,
    SW_WRONG_LE,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    CardError,
)
from chip.kernel.delivery import le_00_asks_length, le_names_length
from chip.kernel.fs import CYCLIC, DF, TRANSPARENT

Handler = Callable[["Applet", Command], tuple[bytes, int]]
"""Every command handler: the applet and the parsed command in, response data and SW out
(raising CardError for a refusal). Card.transmit calls `applet.commands[code](applet, cmd)`."""


class Applet:
    """Base applet; on its own it is the master file's context (no application selected)."""

    NAME = "mf"
    ROOT: DF | None = None  # the application's top DF, declared by subclasses
    COMMANDS: dict[int, str] = {
        READ_RECORD: "read_record",
        READ_BINARY: "read_binary",
        VERIFY: "verify",
    }

    RECORD_MODES = frozenset(range(7))  # READ RECORD P2 b3-b1 modes answered (P5 table 32); others 6A86
    RESELECT_RESTARTS = True  # SELECT by name of the selected application starts a new session
    LE_00_ASKS_LENGTH = False  # READ RECORD with Le 00: 6Cxx (LD/T 32 P5 §6.10.4) or the record (EMV)
    commands: dict[int, Handler] = {}  # CLA<<8|INS -> plain function, resolved from COMMANDS per class
    classes: frozenset[int] = frozenset()  # the CLA bytes this applet speaks (6D00 vs 6E00)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._make_tables()

    @classmethod
    def _make_tables(cls) -> None:
        """Resolve COMMANDS into the class's dispatch table, once: every card shares it."""
        cls.commands = {key: getattr(cls, name) for key, name in cls.COMMANDS.items()}
        cls.classes = frozenset(key >> 8 for key in cls.COMMANDS)

    def __init__(self, card, store):
        self.card = card
        self.store = store

    # -- lifecycle hooks -------------------------------------------------
    def select(self, node) -> int:
        """The application becomes the selected one; return the SELECT status word."""
        return SW_OK

    def reselect(self, node) -> int:
        """Another file inside the already selected application is selected."""
        return SW_OK

    def deselect(self) -> None:
        """Leaving the application: drop what its security state holds for it."""

    def refusal(self) -> int:
        """The SW every command gets whatever it is (0: none); asked where the OS answers itself (GET RESPONSE)."""
        return 0

    def end_session(self) -> None:
        """Reset, power-down or a command that did not land: drop every volatile grant."""
        self.deselect()

    def power_up(self) -> None:
        """Called at every reset, after volatile state is cleared (state-triggered rules)."""

    def describe(self) -> dict:
        """What `sscard info` shows of this application (empty: nothing of its own)."""
        return {}

    # -- security --------------------------------------------------------
    def satisfies(self, rule: tuple) -> bool:
        """Whether the session meets any condition in `rule` (see chip.kernel.fs access bits)."""
        return False

    def check_write(self, ef) -> None:
        """Raise unless the session may write `ef` (6982 by default)."""
        rule = ef.update
        if rule and not self.satisfies(rule):
            raise CardError(SW_SECURITY_STATUS_NOT_SATISFIED)

    def after_write(self, ef) -> None:
        """Called inside the transaction after a record of `ef` was written (activation rules)."""

    # -- FCI ---------------------------------------------------------------
    def fci_proprietary(self, node) -> bytes:
        """Content of the FCI proprietary template `A5` for DF `node`."""
        return b""

    def fci(self, node) -> bytes:
        """FCI template `6F`: DF name `84` (FID `83` for a DF without a name) and proprietary template `A5`."""
        body = ber_tlv(0x84, node.name) if node.name else ber_tlv(0x83, node.fid.to_bytes(2, "big"))
        proprietary = self.fci_proprietary(node)
        if proprietary:
            body += ber_tlv(0xA5, proprietary)
        return ber_tlv(0x6F, body)

    # -- generic commands --------------------------------------------------
    def verify(self, cmd):
        """VERIFY where no PIN exists (the MF): the referenced PIN is not found."""
        raise CardError(SW_REFERENCED_DATA_NOT_FOUND)

    def read_record(self, cmd):
        """READ RECORD (00 B2 P1 P2 Le), P5 §6.10.

        P2 = SFI<<3 | mode (SFI 0 = the current EF): 100 record P1 (00 = the
        current record), 101 from P1 to the last, 110 from the last down to P1,
        000/001/010/011 first/last/next/previous record whose identifier is P1.
        An SFI makes its EF current and resets the record pointer; an
        identifier search moves the pointer, access by number does not (P3
        §5.3.1). Le = 00 is answered `6Cxx` with the length (P5 §6.10.4).
        """
        if cmd.data:
            raise CardError(SW_WRONG_LENGTH)
        mode = cmd.p2 & 7
        if mode not in self.RECORD_MODES:
            raise CardError(SW_WRONG_P1P2)
        ef = self._record_ef(cmd.p2 >> 3)
        rule = ef.read
        if rule and not self.satisfies(rule):
            raise CardError(SW_SECURITY_STATUS_NOT_SATISFIED)
        content = self.store.objects[ef.key]
        records = content.records
        p1 = cmd.p1
        card = self.card
        if mode == 4:
            number = p1 or card.record_pointer
            if not 0 < number <= len(records):
                raise CardError(SW_RECORD_NOT_FOUND)
            data = records[number - 1]
        elif mode & 4:  # 101, 110: several records
            if not 0 < p1 <= len(records):
                raise CardError(SW_RECORD_NOT_FOUND)
            chosen = records[p1 - 1:] if mode == 5 else records[p1 - 1:][::-1]
            data = b"".join(chosen)
        else:
            number = self._find(content, p1, mode)
            data = records[number - 1]
        # Le 00 (ne = 256) may ask the length: testing ne first keeps the call off the hot path
        if self.LE_00_ASKS_LENGTH and cmd.ne == SHORT_MAX and le_00_asks_length(cmd, len(data)):
            raise CardError(SW_WRONG_LE | len(data))  # the terminal asks again (the pointer stays)
        if not mode & 4:
            card.record_pointer = number
        return data, SW_OK

    def _find(self, content, tag: int, mode: int) -> int:
        """Record number of the first/last/next/previous record of `content` (chip.kernel.records)
        with identifier `tag`, or 6A83; next and previous count from the record pointer (0: none,
        so previous is the last)."""
        numbers = content.numbers_of(tag)
        if numbers:
            if mode == 0:
                return numbers[0]
            if mode == 1:
                return numbers[-1]
            pointer = self.card.record_pointer
            if mode == 2:
                for number in numbers:
                    if number > pointer:
                        return number
            else:
                for number in reversed(numbers):
                    if number < pointer or not pointer:
                        return number
        raise CardError(SW_RECORD_NOT_FOUND)

    def _record_ef(self, sfi: int):
        """The record EF named by an SFI (it becomes current), or the current EF for SFI 0."""
        card = self.card
        if sfi:
            if sfi == 31:
                raise CardError(SW_WRONG_P1P2)
            ef = card.current_df.by_sfi.get(sfi)
            if ef is None:
                raise CardError(SW_FILE_NOT_FOUND)
            if ef is not card.current_ef:
                card.current_ef = ef
                card.record_pointer = 0
        else:
            ef = card.current_ef
            if ef is None:
                raise CardError(SW_COMMAND_NOT_ALLOWED_NO_EF)
        if ef.structure is TRANSPARENT:
            raise CardError(SW_INCOMPATIBLE_FILE_STRUCTURE)
        return ef

    def secured_data(self, cmd) -> bytes:
        """The command data of an UPDATE; with CLA 04 the trailing MAC is checked first
        (applications with secure messaging override this; here CLA 04 is not spoken)."""
        return cmd.data

    def update_record(self, cmd):
        """UPDATE RECORD (00|04 DC P1 P2 Lc record), P5 §6.13.

        P2 = SFI<<3 | mode: 100 record number P1 (00 = the current record), a
        number one past the last adds a record; 000/001/010/011 the
        first/last/next/previous record with identifier P1, added when there is
        none. On a cyclic file the record is written as the newest (mode 011,
        previous occurrence, adds; the other modes rewrite record P1).
        A linear file's record must be one of its declared items (6A80) with its
        length (6A85 when the TLV length disagrees with Lc, 6700 when the item's
        length is wrong); no room is 6A84. The pointer ends on the record written.
        """
        mode = cmd.p2 & 7
        if mode > 4:
            raise CardError(SW_WRONG_P1P2)
        ef = self._record_ef(cmd.p2 >> 3)
        self.check_write(ef)
        data = self.secured_data(cmd)
        content = self.store.objects[ef.key]
        records = content.records
        card = self.card
        if ef.structure is CYCLIC:
            if len(data) != ef.size:
                raise CardError(SW_WRONG_LENGTH)
            if mode == 3 or (mode == 4 and cmd.p1 in (0, 1) and not records):
                self.store.write(content, "records", content.pushed(data))
                number = 1
            else:
                number = (cmd.p1 or card.record_pointer) if mode == 4 else 0
                if not 0 < number <= len(records):
                    raise CardError(SW_RECORD_NOT_FOUND)
                self.store.write(content, "records", records[:number - 1] + (data,) + records[number:])
        else:
            record = self._checked_record(ef, data)
            if mode == 4:
                number = cmd.p1 or card.record_pointer
                if number == 0 or number > len(records) + 1:
                    raise CardError(SW_RECORD_NOT_FOUND)
            else:
                if data[0] != cmd.p1:
                    raise CardError(SW_WRONG_DATA)
                try:
                    number = self._find(content, cmd.p1, mode)
                except CardError:
                    number = len(records) + 1
            if number > len(records):
                if len(records) >= ef.capacity:
                    raise CardError(SW_NOT_ENOUGH_MEMORY)
                self.store.write(content, "records", records + (record,))
            else:
                self.store.write(content, "records", records[:number - 1] + (record,) + records[number:])
        card.record_pointer = number
        self.after_write(ef)
        return b"", SW_OK

    def _checked_record(self, ef, data: bytes) -> bytes:
        """A record to write must be one of the EF's declared items, with its length."""
        if len(data) < 2:
            raise CardError(SW_WRONG_LENGTH)
        if data[1] != len(data) - 2:
            raise CardError(SW_LC_INCONSISTENT_WITH_TLV)
        item = ef.items.get(data[0])
        if item is None:
            raise CardError(SW_WRONG_DATA)
        if data[1] != item.length:
            raise CardError(SW_WRONG_LENGTH)
        return bytes(data)

    def _binary_ef(self, p1: int, p2: int):
        """READ/UPDATE BINARY addressing (P5 §6.9): P1 b8 set = SFI in P1 b5-b1 and offset P2,
        else a 15-bit offset in the current EF. Returns (ef, offset)."""
        card = self.card
        if p1 & 0x80:
            if p1 & 0x60:
                raise CardError(SW_WRONG_P1P2)
            ef = card.current_df.by_sfi.get(p1 & 0x1F)
            if ef is None:
                raise CardError(SW_FILE_NOT_FOUND)
            card.current_ef = ef
            offset = p2
        else:
            ef = card.current_ef
            if ef is None:
                raise CardError(SW_COMMAND_NOT_ALLOWED_NO_EF)
            offset = p1 << 8 | p2
        if ef.structure is not TRANSPARENT:
            raise CardError(SW_INCOMPATIBLE_FILE_STRUCTURE)
        return ef, offset

    def read_binary(self, cmd):
        """READ BINARY (00 B0 P1 P2 Le), P5 §6.9.

        Le = 00 reads up to 256 bytes or to the end of the file; an explicit Le
        past the end is `6Cxx` with what is there (P5 table 30); an offset past
        the end is `6B00`.
        """
        if cmd.data:
            raise CardError(SW_WRONG_LENGTH)
        ef, offset = self._binary_ef(cmd.p1, cmd.p2)
        if ef.read and not self.satisfies(ef.read):
            raise CardError(SW_SECURITY_STATUS_NOT_SATISFIED)
        data = self.store.objects[ef.key].data
        if len(data) < ef.size:  # a preset file has its declared size whatever was written (V2 table 3)
            data = data.ljust(ef.size, b"\x00")
        if offset > len(data) or (offset == len(data) and data):
            raise CardError(SW_OFFSET_OUTSIDE_EF)
        ne = cmd.ne
        chunk = data[offset:offset + ne]
        if len(chunk) < ne and le_names_length(cmd):
            if len(chunk) > 0xFF:  # an extended Le past the end: 6Cxx cannot name it (ISO 7816-4: 6282)
                return chunk, SW_END_OF_FILE
            raise CardError(SW_WRONG_LE | len(chunk))
        return chunk, SW_OK

    def update_binary(self, cmd):
        """UPDATE BINARY (00|04 D6 P1 P2 Lc data), P5 §6.12: within the file's declared size (6B00 beyond)."""
        ef, offset = self._binary_ef(cmd.p1, cmd.p2)
        self.check_write(ef)
        data = self.secured_data(cmd)
        if not data:
            raise CardError(SW_WRONG_LENGTH)
        if offset + len(data) > ef.size:
            raise CardError(SW_OFFSET_OUTSIDE_EF)
        content = self.store.objects[ef.key]
        old = content.data.ljust(offset, b"\x00")
        self.store.write(content, "data", old[:offset] + bytes(data) + old[offset + len(data):])
        self.after_write(ef)
        return b"", SW_OK


Applet._make_tables()
