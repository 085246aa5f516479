"""Explain an APDU exchange stream the way a human reads a trace.

`Decoder` follows what the card would: which chip it talks to (the
social-security card, or a terminal's PSAM once a PSAM-only command or name
shows it), the selected application and DF (SELECT by DF name, FID, path or
P1=03 parent), the current EF (SELECT of an EF, or the SFI of READ RECORD /
UPDATE RECORD / READ BINARY / UPDATE BINARY), the financial application's
transaction (first or second GENERATE AC), the PSAM's block size (its
environment, DELIVERY SESSION KEY), the data object lists the card announced
(PDOL in the FCI, CDOL1/CDOL2 in its records) and a T=0 GET RESPONSE chain.
With that it names each command and decodes each response with the right
layout:

    decoder = Decoder()
    decoder.reset()                       # ATR: back to the MF, nothing selected
    decoder.command(apdu)  -> list[str]   # "READ RECORD 01 of EF05 (SFI 5) — card identification code"
    decoder.response(resp) -> list[str]   # "SW 9000 OK", then the decoded data

A fresh `Decoder` has not seen an ATR: until a reset or a SELECT it does not
know where the card is, and guesses a file from an SFI or FID that only one
file on the card has. After `reset()` it knows the card is at the MF.

This module holds the session state and the commands that read or move it: SELECT
(resolved as the card resolves it, by chip.kernel.fs), the record and binary commands
(ISO/IEC 7816-4 §7.2-§7.3, LD/T 32 P5 §6.9-§6.13) and GET RESPONSE; the dispatch table
`_COMMANDS`, keyed by the command codes of `chip.iso.ins`, hands every other command to
the module of its application: reader.decode.ssse (P5 §6), reader.decode.purse (P5 §7),
reader.decode.psam (P9 §9), reader.decode.emv (the financial application). The SSSE's and
the purse's entries are their card applets' command tables (`SsseApplet.COMMANDS`,
`Purse.COMMANDS`): each code goes to the decoder function named as the card's handler. What a value
or record means is in reader.decode.tags, items and fields; the chips' file trees in
reader.decode.files; status word meanings come from `chip.iso.sw`. Nothing here raises on
bad input: what does not parse is shown as hex.
"""

from chip.apps import financial as fin
from chip.apps.purse import Purse
from chip.apps.ssse import SsseApplet
from chip.iso import ber
from chip.iso.apdu import parse as parse_apdu
from chip.iso.ins import (
    CIPHER_DATA,
    CREDIT_SAM_FOR_PURCHASE,
    DELIVERY_SESSION_KEY,
    GENERATE_AC,
    GET_DATA,
    GET_DATA_ISO,
    GET_PROCESSING_OPTIONS,
    GET_RESPONSE,
    INIT_SAM_FOR_PURCHASE,
    INITIALIZE_ENVIRONMENT,
    NAMES,
    PUT_DATA_SCRIPT,
    READ_BINARY,
    READ_RECORD,
    SELECT,
    SM_UPDATE_BINARY,
    SM_UPDATE_RECORD,
    UPDATE_BINARY,
    UPDATE_RECORD,
    code,
)
from chip.iso.sw import (
    SW1_MORE_DATA,
    SW1_WARNING,
    SW1_WRONG_LE,
    SW_APPLICATION_PERMANENTLY_BLOCKED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_FILE_NOT_FOUND,
    SW_FUNCTION_NOT_SUPPORTED,
    SW_INS_NOT_SUPPORTED,
    SW_MEMORY_FAILURE,
    SW_OK,
    SW_UNKNOWN,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    meaning,
)
from chip.kernel.fs import (
    CYCLIC,
    select_by_fid,
    select_by_name,
    select_by_path,
    select_child,
    select_parent,
)
from reader.decode import emv, psam, purse, ssse
from reader.decode.context import Context
from reader.decode.fields import cyclic_lines, field_lines, mac_lines
from reader.decode.files import (
    CARD,
    ITEM_FILES,
    MF,
    NUMBERED,
    PSAM,
    PSAM_BLOCKS,
    PSAM_ONLY_NAMES,
    ROOTS,
    UNKNOWN,
    V2_LABELS,
    app_of,
    describe,
    label,
    name_label,
    name_text,
    ref,
)
from reader.decode.items import ALL_ITEMS, item_lines
from reader.decode.tags import all_known, tlv_lines, walk
from reader.decode.values import INDENT, dump, hex_of, sfi_text


# SELECT success: the card changed its current file (on T=0 the data follows by GET RESPONSE).
def _executed(sw: int) -> bool:
    return sw == SW_OK or sw >> 8 in (SW1_MORE_DATA, SW1_WARNING, SW1_WRONG_LE)


# Answers that mean the card never reached the file a READ/UPDATE RECORD or BINARY named by SFI.
_NOT_REACHED = frozenset((SW_WRONG_LENGTH, SW_WRONG_P1P2, SW_FILE_NOT_FOUND, SW_CONDITIONS_NOT_SATISFIED,
                          SW_INS_NOT_SUPPORTED, SW_CLA_NOT_SUPPORTED, SW_FUNCTION_NOT_SUPPORTED, SW_UNKNOWN,
                          SW_MEMORY_FAILURE, SW_APPLICATION_PERMANENTLY_BLOCKED))

# READ RECORD P2 b3-b1 (P5 table 32); UPDATE RECORD uses 100 and 000-011 (P5 §6.13).
_BY_NUMBER = {4: "{n} of {where}", 5: "{n} to the last of {where}", 6: "the last down to {n} of {where}"}
_OCCURRENCES = {0: "", 1: "last occurrence of ", 2: "next occurrence of ", 3: "previous occurrence of "}
_SELECTION = {0x00: "", 0x01: "child DF ", 0x02: "EF "}  # SELECT by FID, P1 00 / 01 / 02
_SELECT_ANSWERS = {0x00: "", 0x04: ", FCP", 0x08: ", FMD", 0x0C: ", no response data"}  # SELECT P2 b4-b3


class Decoder:
    """Names commands and decodes responses, tracking the card's selection state."""

    def __init__(self):
        self.pdol, self.cdol1, self.cdol2 = fin.PDOL, fin.CDOL1, fin.CDOL2  # until the card announces its own
        self.chip = CARD  # the social-security card until a PSAM-only command or name shows a PSAM
        self._clear(UNKNOWN)

    def reset(self) -> None:
        """ATR / power cycle: the card is at the MF with nothing selected; volatile state is gone."""
        self._clear(self.chip.mf)

    def _clear(self, df) -> None:
        self.df = df  # current DF node, None (a DF this decoder does not know) or UNKNOWN
        self.ef = None  # current EF node
        self.application = None if df is MF else ROOTS.get(df)
        self._end_session()
        self.psam_block = PSAM_BLOCKS.get(self.application)
        self._pending = None
        self._chain = None  # (context, data so far) while the card answers 61xx

    def _end_session(self) -> None:
        self.first_ac_done = False
        self.psam_block = None  # the PSAM environment's block size (8 DES, 16 SM4)

    def _use(self, chip) -> None:
        """The exchanges are with `chip` (a PSAM showed itself): the current DF is that chip's."""
        if chip is self.chip:
            return
        old, self.chip = self.chip, chip
        df = self.df
        if df is old.mf:
            df = chip.mf
        elif df is not UNKNOWN and df is not None:
            df = chip.by_name.get(df.name, UNKNOWN) if df.name else UNKNOWN
        self.df, self.ef = df, None
        self.application = app_of(df) if df is not UNKNOWN else None
        self._end_session()
        self.psam_block = PSAM_BLOCKS.get(self.application)

    # -- commands ----------------------------------------------------------------------------------------
    def command(self, apdu: bytes) -> list[str]:
        """The command's name and meaning, first line a summary, details indented below it."""
        apdu = bytes(apdu)
        try:
            return self._command(apdu)
        except Exception as exc:  # the decoder must never stop a trace
            self._pending = Context("generic", "command")
            return [f"command {dump(apdu)} (not decoded: {type(exc).__name__})"]

    def _command(self, apdu: bytes) -> list[str]:
        if len(apdu) < 4:
            self._pending = Context("generic", "malformed command")
            return [f"malformed command APDU ({len(apdu)} bytes, a command has at least CLA INS P1 P2): {dump(apdu)}"]
        try:
            cmd = parse_apdu(apdu)
        except Exception:
            self._pending = Context("generic", "malformed command")
            return [f"malformed command APDU (CLA {apdu[0]:02X} INS {apdu[1]:02X}): the length fields do not match "
                    f"the data (a card answers 6700): {dump(apdu)}"]
        command = code(cmd.cla, cmd.ins)
        if command != GET_RESPONSE:
            self._chain = None  # any other command discards data waiting for GET RESPONSE
        if command in _PSAM_COMMANDS:
            self._use(PSAM)
        handler = _COMMANDS.get(command)
        if handler is None:
            self._pending = Context("generic", "unknown command", cmd)
            return [f"unknown command CLA {cmd.cla:02X} INS {cmd.ins:02X}"]
        ctx, lines = handler(self, cmd)
        ctx.title = lines[0]
        ctx.cmd = cmd
        self._pending = ctx
        return lines

    # SELECT (ISO/IEC 7816-4 §7.1.1, P5 §6.11) --------------------------------------------------------------
    def _select_target(self, cmd):
        """The node the card would select (None: not found or not known here), as chip.card resolves it
        (chip.kernel.fs); while the current DF is not known, the one file a FID names, if only one has it."""
        p1, data = cmd.p1, cmd.data
        chip, df = self.chip, self.df
        current = None if df is UNKNOWN else df
        if p1 == 0x04:
            return select_by_name(chip.mf, chip.by_name, data, cmd.p2 & 0x02, current)
        if p1 in (0x00, 0x01, 0x02):
            if p1 == 0x00 and not data:
                return chip.mf
            if len(data) != 2:
                return None
            fid = int.from_bytes(data, "big")
            if p1 == 0x00:
                node = select_by_fid(chip.mf, current, fid)
            elif current is not None:
                return select_child(current, fid, p1 == 0x01)
            else:
                node = None
            if node is None and df is UNKNOWN:
                node = chip.fid_guess.get(fid)
                if node is not None and p1 != 0x00 and node.is_df != (p1 == 0x01):
                    node = None
            return node
        if p1 == 0x03:
            return select_parent(chip.mf, current) if current is not None else None
        if p1 in (0x08, 0x09):
            start = chip.mf if p1 == 0x08 else current
            if start is None or not data or len(data) % 2:
                return None
            return select_by_path(chip.mf, start, data)
        return None

    def _select(self, cmd):
        ctx = Context("select")
        p1, data = cmd.p1, cmd.data
        if p1 == 0x04 and data in PSAM_ONLY_NAMES:
            self._use(PSAM)
        node = self._select_target(cmd)
        ctx.node, ctx.by_name = node, p1 == 0x04
        described = f" ({describe(node)})" if node is not None else ""
        select = NAMES[SELECT]
        if p1 == 0x04:
            if not data:
                title = f"{select} by DF name (empty: the MF)"
            else:
                known = name_label(data, self.chip.name)
                if known is None and node is not None and node.name != data:
                    known = f"right-truncated: {label(node)}"
                title = f"{select} by DF name {name_text(data)}" + (f" ({known})" if known else "")
        elif p1 == 0x00 and not data:
            title = f"{select} the MF (P1 00 without a FID)"
        elif p1 in _SELECTION:
            title = f"{select} {_SELECTION[p1]}by FID {dump(data)}{described}"
        elif p1 == 0x03:
            title = f"{select} parent DF" + (f": {ref(node)}" if node is not None else "")
        elif p1 in (0x08, 0x09):
            path = "/".join(hex_of(data[i:i + 2]) for i in range(0, len(data) - 1, 2))
            title = f"{select} by path from {'MF' if p1 == 0x08 else 'current DF'} {path}{described}"
        else:
            title = f"{select} with P1 {p1:02X} (not a selection method)"
        p2 = cmd.p2
        extra = (", next occurrence" if p2 & 0x02 else "") + (f", P2 {p2:02X}" if p2 & 0xF1 else "")
        return ctx, [title + _SELECT_ANSWERS[p2 & 0x0C] + extra]

    def _apply_select(self, ctx, sw: int) -> None:
        # 9303: a permanently blocked application is selected all the same (P5 §6.1.1, P7 §13.2)
        if not (_executed(sw) or sw == SW_APPLICATION_PERMANENTLY_BLOCKED):
            return
        node = ctx.node
        if node is None:  # something this decoder does not know was selected
            self.df, self.ef, self.application = None, None, None
            self._end_session()
            return
        df = node if node.is_df else node.parent
        application = app_of(df)
        if application != self.application or (ctx.by_name and node in ROOTS):
            self._end_session()
        self.df, self.application = df, application
        self.ef = None if node.is_df else node
        if application in PSAM_BLOCKS:
            self.psam_block = PSAM_BLOCKS[application]

    # records and binaries (P5 §6.9-§6.13) ------------------------------------------------------------------
    def _record_file(self, sfi: int):
        """The EF an SFI names in the current DF (0: the current EF); a guess while the state is unknown."""
        if not sfi:
            return self.ef
        df = self.df
        if df is UNKNOWN:
            return self.chip.sfi_guess.get(sfi)
        if df is None:
            return None
        return df.by_sfi.get(sfi)

    @staticmethod
    def _ef_text(ef, sfi: int) -> str:
        if ef is None:
            return sfi_text(sfi) if sfi else "the current EF"
        where = f"{ef.fid:04X}" if ef.fid is not None else ef.label
        if ef.parent in V2_LABELS:  # an EF of an application DF: say which DF
            where = f"{ef.parent.fid:04X} {where}"
        where = f"{where} ({sfi_text(ef.sfi)})" if ef.sfi else where
        return where if sfi else f"the current EF {where}"

    @staticmethod
    def _items_of(ef):
        """The items a record of `ef` may hold: its declaration, any SSSE item for an unknown file, else none."""
        if ef is None:
            return ALL_ITEMS
        return ef.items if ef in ITEM_FILES else {}

    def _read_record(self, cmd):
        ctx = Context("read_record")
        p1, p2 = cmd.p1, cmd.p2
        sfi, mode = p2 >> 3, p2 & 7
        ef = self._record_file(sfi)
        ctx.ef, ctx.sfi, ctx.mode = ef, sfi, mode
        where = self._ef_text(ef, sfi)
        read = NAMES[READ_RECORD]
        if mode in _BY_NUMBER:
            title = f"{read} " + _BY_NUMBER[mode].format(n=f"{p1:02X}", where=where)
            if mode == 4 and p1 == 0:
                title += " (current record)"
            elif mode == 4 and ef in NUMBERED and p1 <= len(ef.items):
                title += f" — {list(ef.items.values())[p1 - 1].name}"
            elif ef is not None and ef not in NUMBERED and ef.fid is not None:
                title += f" — {ef.label}"
        elif mode in _OCCURRENCES:
            title = f"{read} {_OCCURRENCES[mode]}identifier {p1:02X} in {where}"
            item = self._items_of(ef).get(p1)
            if item is not None:
                title += f" — {item.name}"
        else:
            title = f"{read} {p1:02X} of {where}, P2 {p2:02X} (addressing mode {mode}: RFU)"
        return ctx, [title]

    def _update_record(self, cmd):
        """UPDATE RECORD `00|04 DC` (P5 §6.13): CLA 04 carries a MAC4 after the record."""
        ctx = Context("write_record")
        p1, p2 = cmd.p1, cmd.p2
        sfi, mode = p2 >> 3, p2 & 7
        ef = self._record_file(sfi)
        ctx.ef, ctx.sfi, ctx.mode = ef, sfi, mode
        secured = code(cmd.cla, cmd.ins) == SM_UPDATE_RECORD
        record = cmd.data[:-4] if secured and len(cmd.data) >= 4 else cmd.data
        where = self._ef_text(ef, sfi)
        if mode == 4:
            target = f"{p1:02X} of {where}"
        elif mode == 3 and ef is not None and ef.structure == CYCLIC:  # "previous" adds a record (P5 §6.13)
            target = f"new record (mode 011) in {where}"
        elif mode in _OCCURRENCES:
            target = f"{_OCCURRENCES[mode]}identifier {p1:02X} in {where}"
        else:
            target = f"{p1:02X} of {where}, P2 {p2:02X} (mode {mode}: not defined)"
        if ef is not None and ef.structure == CYCLIC:
            what, body = ef.label, cyclic_lines(ef, record, INDENT)
        else:
            items = self._items_of(ef)
            item = items.get(record[0]) if record else None
            what, body = (item.name if item else "record"), item_lines(record, items, INDENT)
        title = f"{NAMES[UPDATE_RECORD]} {target} with {what}" + (", secure messaging (MAC)" if secured else "")
        return ctx, [title] + body + (mac_lines(cmd.data, with_body=False) if secured else [])

    def _binary_target(self, cmd):
        if cmd.p1 & 0x80:
            sfi = cmd.p1 & 0x1F
            return sfi, self._record_file(sfi), cmd.p2
        return 0, self.ef, cmd.p1 << 8 | cmd.p2

    def _read_binary(self, cmd):
        ctx = Context("read_binary")
        sfi, ef, offset = self._binary_target(cmd)
        ctx.ef, ctx.sfi = ef, sfi
        shown = f" — {ef.label}" if ef is not None else ""
        return ctx, [f"{NAMES[READ_BINARY]} {self._ef_text(ef, sfi)} from offset {offset}{shown}"]

    def _update_binary(self, cmd):
        """UPDATE BINARY `00|04 D6` (P5 §6.12): CLA 04 carries a MAC4 after the data."""
        ctx = Context("update_binary")
        sfi, ef, offset = self._binary_target(cmd)
        ctx.ef, ctx.sfi = ef, sfi
        secured = code(cmd.cla, cmd.ins) == SM_UPDATE_BINARY
        data = cmd.data[:-4] if secured and len(cmd.data) >= 4 else cmd.data
        shown = f" — {ef.label}" if ef is not None else ""
        title = f"{NAMES[UPDATE_BINARY]} {self._ef_text(ef, sfi)} from offset {offset}{shown}"
        lines = [title + (", secure messaging (MAC)" if secured else ""),
                 f"{INDENT}data ({len(data)} bytes): {dump(data)}"]
        return ctx, lines + (mac_lines(cmd.data, with_body=False) if secured else [])

    def _get_response(self, cmd):
        ctx = Context("get_response")
        n = "all remaining bytes" if cmd.ne == 256 else f"{cmd.ne} bytes"
        chain = self._chain
        title = f"{NAMES[GET_RESPONSE]} ({n})" + (f" for {chain[0].title}" if chain and chain[0] else "")
        return ctx, [title]

    # -- responses --------------------------------------------------------------------------------------------
    def response(self, response: bytes, *, status: bool = True) -> list[str]:
        """The status word and its meaning (unless `status` is False), then the decoded data."""
        response = bytes(response)
        ctx, self._pending = self._pending, None
        try:
            return self._response(ctx, response, status)
        except Exception as exc:  # the decoder must never stop a trace
            return [f"response {dump(response)} (not decoded: {type(exc).__name__})"]

    def _response(self, ctx, response: bytes, status: bool) -> list[str]:
        if len(response) < 2:
            return [f"response without a status word ({len(response)} bytes): {dump(response)}"]
        data, sw = response[:-2], int.from_bytes(response[-2:], "big")
        lines = [f"SW {sw:04X} {meaning(sw)}"] if status else []
        if ctx is not None and ctx.kind == "get_response":
            chain, self._chain = self._chain, None
            ctx, data = (chain[0], chain[1] + data) if chain else (None, data)
        if ctx is not None and not ctx.applied:
            ctx.applied = True
            self._apply(ctx, sw)
        if sw >> 8 == SW1_MORE_DATA:
            self._chain = (ctx, data)
            if data:
                lines.append(f"{len(data)} bytes so far; the rest follows by GET RESPONSE")
            return lines
        if data:
            lines += self._data_lines(ctx, data)
        return lines

    def _apply(self, ctx, sw: int) -> None:
        kind = ctx.kind
        if kind == "select":
            self._apply_select(ctx, sw)
        elif kind in ("read_record", "write_record", "read_binary", "update_binary"):
            if ctx.sfi and ctx.ef is not None and sw not in _NOT_REACHED:
                self.ef = ctx.ef
                if self.df is UNKNOWN:  # the guess held: the card is in that EF's DF
                    self.df, self.application = ctx.ef.parent, app_of(ctx.ef.parent)
        elif kind == "gpo" and _executed(sw):
            self.first_ac_done = False
        elif kind == "generate_ac" and _executed(sw):
            self.first_ac_done = True

    def _data_lines(self, ctx, data: bytes) -> list[str]:
        kind = ctx.kind if ctx is not None else "generic"
        if kind == "select":
            lines = tlv_lines(data, chip=self.chip.name)
        elif kind == "read_record":
            lines = self._record_lines(ctx, data)
        elif kind == "gpo":
            lines = tlv_lines(data, format1="gpo")
        elif kind == "generate_ac":
            lines = tlv_lines(data, format1="ac")
        elif kind == "get_data":
            lines = tlv_lines(data)
        elif kind == "challenge":
            return [f"challenge: {dump(data)}"]
        elif kind == "internal_auth":
            return [f"authentication data: {dump(data)}"]
        elif kind == "fields":
            return field_lines(data, ctx.layout, pad="")
        elif kind == "cipher":
            return psam.cipher_lines(ctx.mode, data)
        elif kind == "read_binary":
            return [f"{len(data)} bytes: {dump(data)}"]
        else:
            lines = self._guess_lines(data)
        self._learn(data)
        return lines

    def _record_lines(self, ctx, data: bytes) -> list[str]:
        ef = ctx.ef
        if ef in ITEM_FILES:
            return item_lines(data, ef.items)
        if ef is not None and ef.structure == CYCLIC:
            return cyclic_lines(ef, data)
        if ef is not None:
            return tlv_lines(data, chip=self.chip.name)
        return self._guess_lines(data)

    def _guess_lines(self, data: bytes) -> list[str]:
        """Data of an unknown origin: an SSSE record, known BER-TLV, or hex."""
        if len(data) >= 2 and data[0] in ALL_ITEMS and data[1] == len(data) - 2 \
                and data[1] == ALL_ITEMS[data[0]].length:
            return item_lines(data)
        if all_known(data):
            return tlv_lines(data, chip=self.chip.name)
        return [f"data ({len(data)} bytes): {dump(data)}"]

    def _learn(self, data: bytes) -> None:
        """Keep the DOLs the card announces (PDOL in the FCI, CDOLs in the records)."""
        for tag, value in walk(data):
            if tag in (0x9F38, 0x8C, 0x8D) and value:
                try:
                    ber.parse_dol(value)
                except (ValueError, IndexError):
                    continue
                if tag == 0x9F38:
                    self.pdol = value
                elif tag == 0x8C:
                    self.cdol1 = value
                else:
                    self.cdol2 = value


def _named_as_on_the_card(table: dict[int, str], module) -> dict:
    """The commands of a card applet's `table` (code -> the name of its handler, chip.kernel.applet)
    that `module` has a function of that name for: the decoder's handler of each."""
    return {command: handler for command, name in table.items() if (handler := getattr(module, name, None))}


# Commands only a PSAM knows (P9 §9): seeing one tells the decoder which chip it is reading.
_PSAM_COMMANDS = {
    INITIALIZE_ENVIRONMENT: psam.initialize_environment,
    DELIVERY_SESSION_KEY: psam.delivery_session_key,
    CIPHER_DATA: psam.cipher_data,
    INIT_SAM_FOR_PURCHASE: psam.init_sam_for_purchase,
    CREDIT_SAM_FOR_PURCHASE: psam.credit_sam_for_purchase,
}
# Every command the decoder names, by its code (chip.iso.ins): a handler(decoder, cmd) -> (Context, lines).
_COMMANDS = {
    SELECT: Decoder._select,
    READ_RECORD: Decoder._read_record,
    UPDATE_RECORD: Decoder._update_record,
    SM_UPDATE_RECORD: Decoder._update_record,
    READ_BINARY: Decoder._read_binary,
    UPDATE_BINARY: Decoder._update_binary,
    SM_UPDATE_BINARY: Decoder._update_binary,
    GET_RESPONSE: Decoder._get_response,
    # the SSSE's own commands (P5 §6); the financial application's issuer scripts share the 84 codes
    **_named_as_on_the_card(SsseApplet.COMMANDS, ssse),
    # the financial application
    PUT_DATA_SCRIPT: emv.put_data,
    GET_PROCESSING_OPTIONS: emv.gpo,
    GENERATE_AC: emv.generate_ac,
    GET_DATA: emv.get_data,
    GET_DATA_ISO: emv.get_data,
    # the medical purse of DF04 (P5 §7)
    **_named_as_on_the_card(Purse.COMMANDS, purse),
    # the PSAM (P9 §9)
    **_PSAM_COMMANDS,
}


def explain(apdu: bytes, response: bytes, decoder: Decoder | None = None) -> str:
    """The command line(s), then the response lines indented by four spaces."""
    decoder = decoder if decoder is not None else Decoder()
    lines = decoder.command(apdu) + ["    " + line for line in decoder.response(response)]
    return "\n".join(lines)
