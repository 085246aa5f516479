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

from .fs import LINEAR
from .apdu import EXTENDED_MAX, SHORT_MAX
from .ber import ber_tlv
from .sw import (
    SW_COMMAND_NOT_ALLOWED_NO_EF,
    SW_FILE_NOT_FOUND,
    SW_END_OF_FILE,
    SW_INCOMPATIBLE_FILE_STRUCTURE,
    SW_NOT_ENOUGH_MEMORY,
    SW_OFFSET_OUTSIDE_EF,
    SW_OK,
    SW_RECORD_NOT_FOUND,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_SECURITY_STATUS_NOT_SATISFIED,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    CardError,
)

READ_BINARY = 0x00B0
READ_RECORD = 0x00B2
UPDATE_RECORD = 0x00DC
APPEND_RECORD = 0x00E2
VERIFY = 0x0020


class Applet:
    """Base applet; on its own it is the master file's context (no application selected)."""

    NAME = "mf"
    ROOT = None  # the application's top DF, declared by subclasses
    COMMANDS: dict[int, str] = {
        READ_RECORD: "read_record",
        READ_BINARY: "read_binary",
        UPDATE_RECORD: "update_record",
        APPEND_RECORD: "append_record",
        VERIFY: "verify",
    }

    commands: dict = {}  # CLA<<8|INS -> plain function, resolved from COMMANDS per class (see _make_tables)
    classes: frozenset = frozenset()  # the CLA bytes this applet speaks (6D00 vs 6E00)

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
        """Leaving the application, or reset/power-down: drop the session's security state."""

    def power_up(self) -> None:
        """Called at every reset, after volatile state is cleared (state-triggered rules)."""

    def describe(self) -> dict:
        """What `sscard info` shows of this application (empty: nothing of its own)."""
        return {}

    # -- security --------------------------------------------------------
    def satisfies(self, rule: int) -> bool:
        """Whether the session meets any condition in `rule` (see chip.fs access bits)."""
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
        """READ RECORD (00 B2) in the four addressing modes of SPEC §2.1.

        P2 = SFI<<3 | mode: mode 4 = record number P1, mode 0 = record
        identifier (tag) P1; SFI 0 = the current EF. Selecting by SFI makes the
        EF current, as ISO 7816-4 says.
        """
        if cmd.data:
            raise CardError(SW_WRONG_LENGTH)
        p2 = cmd.p2
        mode = p2 & 7
        if mode != 4 and mode != 0:
            raise CardError(SW_WRONG_P1P2)
        ef = self._record_ef(p2 >> 3)
        content = self.store.objects[ef.key]
        p1 = cmd.p1
        if mode == 4:
            number = p1
            record = content.by_number(p1)
        else:
            number = content.number_of(p1)
            record = content.records[number - 1] if number else None
        if record is None:
            raise CardError(SW_RECORD_NOT_FOUND)
        rule = ef.read_records.get(number, ef.read) if ef.read_records else ef.read
        if rule and not self.satisfies(rule):
            raise CardError(SW_SECURITY_STATUS_NOT_SATISFIED)
        return record, SW_OK

    def _record_ef(self, sfi: int):
        """The linear EF named by an SFI (it becomes current), or the current EF for SFI 0."""
        card = self.card
        if sfi:
            if sfi == 31:
                raise CardError(SW_WRONG_P1P2)
            ef = card.current_df.by_sfi.get(sfi)
            if ef is None:
                raise CardError(SW_FILE_NOT_FOUND)
            card.current_ef = ef
        else:
            ef = card.current_ef
            if ef is None:
                raise CardError(SW_COMMAND_NOT_ALLOWED_NO_EF)
        if ef.structure is not LINEAR:
            raise CardError(SW_INCOMPATIBLE_FILE_STRUCTURE)
        return ef

    def _checked_record(self, ef, data: bytes) -> bytes:
        """A record to write must be the EF's declared item: its tag (else 6A80) and length (else 6700)."""
        item = ef.record
        if item is None:
            raise CardError(SW_SECURITY_STATUS_NOT_SATISFIED)
        if len(data) < 2 or data[0] != item.tag:
            raise CardError(SW_WRONG_DATA)
        if data[1] != item.length or len(data) != 2 + item.length:
            raise CardError(SW_WRONG_LENGTH)
        return data

    def append_record(self, cmd):
        """APPEND RECORD (00 E2 00 P2): P2 = SFI<<3, or 00 for the current EF."""
        p2 = cmd.p2
        if cmd.p1 or p2 & 7:
            raise CardError(SW_WRONG_P1P2)
        ef = self._record_ef(p2 >> 3)
        self.check_write(ef)
        record = self._checked_record(ef, cmd.data)
        content = self.store.objects[ef.key]
        if len(content.records) >= ef.capacity:
            raise CardError(SW_NOT_ENOUGH_MEMORY)
        self.store.write(content, "records", content.records + (record,))
        self.after_write(ef)
        return b"", SW_OK

    def update_record(self, cmd):
        """UPDATE RECORD (00 DC P1 P2): record number P1, P2 = SFI<<3 | 4 (or 04 for the current EF)."""
        p2 = cmd.p2
        if p2 & 7 != 4 or not cmd.p1:
            raise CardError(SW_WRONG_P1P2)
        ef = self._record_ef(p2 >> 3)
        self.check_write(ef)
        record = self._checked_record(ef, cmd.data)
        content = self.store.objects[ef.key]
        number = cmd.p1
        if number > len(content.records):
            raise CardError(SW_RECORD_NOT_FOUND)
        records = content.records
        self.store.write(content, "records", records[: number - 1] + (record,) + records[number:])
        self.after_write(ef)
        return b"", SW_OK

    def read_binary(self, cmd):
        """READ BINARY (00 B0): P1 bit 8 set = SFI in P1 bits 1-5 and offset P2, else a 15-bit offset.

        An explicit Le past the end returns what is there + `6282`; Le = 00 (or
        none) returns what is there + `9000`; an offset past the end is `6B00`.
        """
        if cmd.data:
            raise CardError(SW_WRONG_LENGTH)
        p1, p2 = cmd.p1, cmd.p2
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
        if ef.structure is LINEAR:
            raise CardError(SW_INCOMPATIBLE_FILE_STRUCTURE)
        if ef.read and not self.satisfies(ef.read):
            raise CardError(SW_SECURITY_STATUS_NOT_SATISFIED)
        data = self.store.objects[ef.key].data
        if offset > len(data) or (offset == len(data) and data):
            raise CardError(SW_OFFSET_OUTSIDE_EF)
        ne = cmd.ne
        chunk = data[offset:offset + ne]
        short = len(chunk) < ne and cmd.le_present and ne != (EXTENDED_MAX if cmd.extended else SHORT_MAX)
        return chunk, (SW_END_OF_FILE if short else SW_OK)


Applet._make_tables()
