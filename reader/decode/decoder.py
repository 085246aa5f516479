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

The social-security side follows LD/T 32 (commands of P5 §6-§7, the PSAM of
P9 §9; docs/card/commands.md, docs/card/files.md). Its facts come
from `chip/`: the file tree, DF names and V2 labels and the record items
(`chip.apps.ssse_files`), the key table (`chip.apps.keys`: EXTERNAL AUTHENTICATE's P2,
DELIVERY SESSION KEY's usage and key id), the algorithm flags
(`chip.kernel.crypto.NAMES`), the purse's transaction types (`chip.apps.purse`), the
PSAM's names and CIPHER DATA modes (`chip.apps.psam`), the project's GET DATA
objects (`chip.apps.ssse`), the financial application's DOLs and CVR bits, the
status word meanings (`chip.iso.sw`). What is written here is how to read them:
the byte layouts of the fixed-length command and record fields. Nothing here
raises on bad input: what does not parse is shown as hex. PINs are never
printed, only their number of digits (enciphered PINs as ciphertext).
"""

import datetime

from chip.iso import ber
from chip.apps import financial as fin
from chip.apps import keys as key_table
from chip.apps import psam
from chip.iso.apdu import parse as parse_apdu
from chip.card import KINDS
from chip.kernel.crypto import NAMES
from chip.kernel.fs import CYCLIC, LINEAR, MF_FID, nearest
from chip.kernel.items import Bcd
from chip.apps.keys import BY_CARD_ID, BY_PSAM
from chip.apps.purse import TYPES as PURSE_TYPES
from chip.apps.ssse import ACTIVATION_TAG, LOCK_REASON_TAG, LOCK_REASONS
from chip.apps.ssse_files import APPLICATIONS, DDF, DF04_EF08, DF04_EF15, DF_TAGS, DIR, ITEMS, MEDICAL_ITEMS, RID
from chip.iso.sw import meaning

INDENT = "  "
HEX_LIMIT = 256  # generic hex dumps show at most this many bytes
MAX_DEPTH = 12  # nested BER-TLV templates deeper than this are shown as hex


# -- the chips' file trees, as chip/ declares them ------------------------------------------------------
def _unique(pairs):
    seen = {}
    for key, node in pairs:
        seen.setdefault(key, []).append(node)
    return {key: nodes[0] for key, nodes in seen.items() if len(nodes) == 1}


class _Chip:
    """One kind of chip as the decoder follows it: its MF, DF names and the files a lone FID or SFI names."""

    def __init__(self, kind):
        self.name = kind.name
        self.mf = kind.mf
        self.by_name = kind.by_name  # the DF a name selects
        nodes = [node for node in kind.mf.walk() if node is not kind.mf]
        self.named = {}  # every DF of a name (the PSAM's two ADFs share D15600000590)
        for node in kind.mf.walk():
            if node.is_df and node.name:
                self.named.setdefault(node.name, []).append(node)
        self.fid_guess = _unique((node.fid, node) for node in nodes if node.fid is not None)
        self.sfi_guess = _unique((node.sfi, node) for node in nodes if not node.is_df and node.sfi)


_CHIPS = {name: _Chip(kind) for name, kind in KINDS.items()}
CARD, PSAM = _CHIPS["sscard"], _CHIPS["psam"]
MF = CARD.mf
_ROOTS = {applet.ROOT: applet.NAME for kind in KINDS.values() for applet in kind.applets}
_PSAM_BLOCKS = {applet.NAME: applet.ALGORITHM.block for applet in KINDS["psam"].applets}  # 8 DES, 16 SM4
_PSAM_NODES = frozenset(PSAM.mf.walk())
_PSAM_ONLY_NAMES = frozenset(PSAM.by_name) - frozenset(CARD.by_name)  # sx2.sh.社会保障, D15600000590
# Commands only a PSAM knows (P9 §9): seeing one tells the decoder which chip it is reading.
_PSAM_COMMANDS = frozenset((psam.INITIALIZE_ENVIRONMENT, psam.DELIVERY_SESSION_KEY, psam.CIPHER_DATA,
                            psam.INIT_SAM_FOR_PURCHASE, psam.CREDIT_SAM_FOR_PURCHASE))

# The SSSE: application DFs with their V2 table 2 labels; record files of simple-TLV items, the DIR
# (BER-TLV `61` entries), cyclic files of fixed-length untagged records.
_V2_LABELS = dict(APPLICATIONS)
_SSSE_NODES = frozenset(DDF.walk())
_ITEM_FILES = frozenset(node for node in _SSSE_NODES
                        if not node.is_df and node.structure == LINEAR and node is not DIR)
# EF05 and EF06 of the SSSE hold one record per item, in the declared order (chip.apps.ssse_files): record
# number n is the n-th item (docs/card/files.md).
_NUMBERED = frozenset((DDF.by_sfi[5], DDF.by_sfi[6]))
_ALL_ITEMS = {**ITEMS, **MEDICAL_ITEMS}

# Names for DF names / AIDs that are not (only) the card's own labels.
AIDS = {
    bytes.fromhex("A000000333010101"): "UnionPay debit",
    bytes.fromhex("A000000333010102"): "UnionPay credit",
    bytes.fromhex("A000000333010103"): "UnionPay quasi-credit",
}

# SELECT success: the card changed its current file (on T=0 the data follows by GET RESPONSE).
def _executed(sw: int) -> bool:
    return sw == 0x9000 or sw >> 8 in (0x61, 0x62, 0x6C)


# Answers that mean the card never reached the file a READ/UPDATE RECORD or BINARY named by SFI.
_NOT_REACHED = frozenset((0x6700, 0x6A86, 0x6A82, 0x6985, 0x6D00, 0x6E00, 0x6A81, 0x6F00, 0x6581, 0x9303))


def _hex(data: bytes) -> str:
    return data.hex().upper()


def _dump(data: bytes) -> str:
    if not data:
        return "(none)"
    if len(data) <= HEX_LIMIT:
        return _hex(data)
    return f"{_hex(data[:HEX_LIMIT])}… ({len(data)} bytes in all)"


def _tag_text(tag: int) -> str:
    n = max(1, (tag.bit_length() + 7) // 8)
    return f"{tag:0{2 * n}X}"


def _constructed(tag: int) -> bool:
    n = max(1, (tag.bit_length() + 7) // 8)
    return bool(tag >> (8 * (n - 1)) & 0x20)


def _sfi_text(sfi: int) -> str:
    return f"SFI {sfi}" if sfi < 10 else f"SFI {sfi:X}h"


# -- readable forms of values -----------------------------------------------------------------------------
def _digits(value: bytes) -> str | None:
    text = _hex(value)
    return text if text.isdigit() else None


def _amount_of(value: bytes) -> str | None:
    digits = _digits(value)
    if digits is None:
        return None
    n = int(digits)
    return f"{n // 100}.{n % 100:02d}"


def _yymmdd(value: bytes) -> str | None:
    digits = _digits(value)
    if digits is None or len(digits) != 6:
        return None
    yy = int(digits[:2])
    try:
        return datetime.date(2000 + yy if yy < 50 else 1900 + yy, int(digits[2:4]), int(digits[4:])).isoformat()
    except ValueError:
        return None


def _text(value: bytes) -> str | None:
    """Printable ASCII (or GBK) as a quoted string."""
    for encoding in ("ascii", "gbk"):
        try:
            text = value.decode(encoding)
        except UnicodeDecodeError:
            continue
        if text.isprintable():
            return f'"{text}"'
    return None


def name_text(name: bytes) -> str:
    """A DF name as people write it: ASCII/GBK text, RID + suffix, or hex."""
    if name.startswith(RID) and len(name) > len(RID):
        rest = name[len(RID):]
        readable = rest.decode("ascii") if rest.isascii() and rest.decode("ascii").isalnum() else _hex(rest)
        return f"{_hex(RID)} {readable}"
    try:
        text = name.decode("gbk")
    except UnicodeDecodeError:
        return _hex(name)
    if text and text.isprintable() and all(ch.isascii() or "\u4e00" <= ch <= "\u9fff" for ch in text):
        return text
    return _hex(name)


def _label(node) -> str:
    """A DF's label: an SSSE application DF with its V2 table 2 label, a PSAM's DF marked as the PSAM's."""
    if node in _V2_LABELS:
        return f"{node.label}: {_V2_LABELS[node]}"
    if node in _PSAM_NODES:
        return f"PSAM {node.label}"
    return node.label


def name_label(name: bytes, chip: str | None = None) -> str | None:
    """What a DF name or AID is: a well-known AID, or the chip's own label for it.

    `chip` ("sscard" or "psam") says whose names come first: `sx1.sh.社会保障` is the
    card's SSSE and the PSAM's DES environment (P9 §5). Without it, the card's.
    """
    if name in AIDS:
        return AIDS[name]
    order = (PSAM, CARD) if chip == PSAM.name else (CARD, PSAM)
    for tree in order:
        nodes = tree.named.get(name)
        if nodes:
            return _label(nodes[0]) if len(nodes) == 1 else _shared_label(nodes)
    return None


def _shared_label(nodes) -> str:
    """The label of a name several DFs have: the words their labels share at the start and the end."""
    words = [_label(node).split() for node in nodes]
    head = 0
    while all(len(w) > head and w[head] == words[0][head] for w in words):
        head += 1
    tail = 0
    while all(len(w) > head + tail and w[-1 - tail] == words[0][-1 - tail] for w in words):
        tail += 1
    return " ".join(words[0][:head] + words[0][len(words[0]) - tail:])


def _name_value(value: bytes, chip: str | None = None):
    text, label = name_text(value), name_label(value, chip)
    if text == _hex(value):  # the hex shown before it already says it
        return label
    return f"{text} ({label})" if label else text


CURRENCIES = {156: "CNY", 344: "HKD", 446: "MOP", 840: "USD", 978: "EUR", 826: "GBP", 392: "JPY", 410: "KRW"}
COUNTRIES = {156: "China", 344: "Hong Kong", 446: "Macao", 840: "United States", 826: "United Kingdom",
             392: "Japan", 410: "Korea"}


def _code(table):
    def fmt(value):
        digits = _digits(value)
        return table.get(int(digits)) if digits else None
    return fmt


def _integer(value: bytes) -> str | None:
    return str(int.from_bytes(value, "big")) if value else None


def _choice(table):
    def fmt(value):
        return table.get(value[0]) if len(value) == 1 else None
    return fmt


def _bits(value: bytes, table: dict) -> tuple[list[str], list[str]]:
    """Names of the set bits by (byte index, mask); unknown set bits as 'byte n bit xx'."""
    names, unknown = [], []
    for i, byte in enumerate(value):
        for mask in (0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01):
            if byte & mask:
                name = table.get((i, mask))
                (names if name else unknown).append(name or f"byte {i + 1} bit {mask:02X}")
    return names, unknown


AIP_BITS = {(0, 0x40): "SDA supported", (0, 0x20): "DDA supported", (0, 0x10): "cardholder verification supported",
            (0, 0x08): "terminal risk management to be performed", (0, 0x04): "issuer authentication supported",
            (0, 0x01): "CDA supported"}
AUC_BITS = {(0, 0x80): "domestic cash", (0, 0x40): "international cash", (0, 0x20): "domestic goods",
            (0, 0x10): "international goods", (0, 0x08): "domestic services", (0, 0x04): "international services",
            (0, 0x02): "ATMs", (0, 0x01): "terminals other than ATMs", (1, 0x80): "domestic cashback",
            (1, 0x40): "international cashback"}


def _aip(value):
    if len(value) != 2:
        return None
    names, unknown = _bits(value, AIP_BITS)
    return ", ".join(names + unknown) or "no capabilities"


def _auc(value):
    if len(value) != 2:
        return None
    names, unknown = _bits(value, AUC_BITS)
    return ("valid for " + ", ".join(names) if names else "valid for nothing") + "".join(f", {u}" for u in unknown)


def _afl(value):
    if not value or len(value) % 4:
        return None
    lines = []
    for i in range(0, len(value), 4):
        sfi, first, last, oda = value[i] >> 3, value[i + 1], value[i + 2], value[i + 3]
        records = f"record {first}" if first == last else f"records {first}-{last}"
        lines.append(f"{_sfi_text(sfi)}, {records}, {oda} for offline data authentication")
    return None, lines


def _dol(value):
    try:
        entries = ber.parse_dol(value)
    except (ValueError, IndexError):
        return None
    return None, [f"{_tag_text(tag)} ({length}) {tag_name(tag)}" for tag, length in entries]


CVM_METHODS = {0x00: "fail CVM processing", 0x01: "plaintext PIN verified by the ICC",
               0x02: "enciphered PIN verified online", 0x03: "plaintext PIN verified by the ICC and signature",
               0x04: "enciphered PIN verified by the ICC", 0x05: "enciphered PIN verified by the ICC and signature",
               0x1E: "signature", 0x1F: "no CVM required", 0x3F: "not available"}
CVM_CONDITIONS = {0x00: "always", 0x01: "if unattended cash", 0x02: "if not unattended cash, manual cash or cashback",
                  0x03: "if the terminal supports the CVM", 0x04: "if manual cash", 0x05: "if purchase with cashback",
                  0x06: "if in the application currency and under X", 0x07: "if in the application currency and over X",
                  0x08: "if in the application currency and under Y", 0x09: "if in the application currency and over Y"}


def _cvm_list(value):
    if len(value) < 8 or len(value) % 2:
        return None
    x, y = int.from_bytes(value[:4], "big"), int.from_bytes(value[4:8], "big")
    lines = [f"amount X {x}, amount Y {y}"]
    for i in range(8, len(value), 2):
        code, condition = value[i], value[i + 1]
        method = CVM_METHODS.get(code & 0x3F, f"method {code & 0x3F:02X}")
        then = "; next rule if unsuccessful" if code & 0x40 else "; fail if unsuccessful"
        when = CVM_CONDITIONS.get(condition, f"condition {condition:02X}")
        lines.append(f"{value[i:i + 2].hex().upper()}: {method}, {when}{then}")
    return None, lines


def _track2(value):
    text = _hex(value).rstrip("F")
    pan, sep, rest = text.partition("D")
    if not sep or not pan.isdigit() or len(rest) < 7 or not rest[:7].isdigit():
        return None
    yy, mm = int(rest[:2]), rest[2:4]
    return f"PAN {pan}, expiry {2000 + yy if yy < 50 else 1900 + yy}-{mm}, service code {rest[4:7]}"


def _pan(value):
    text = _hex(value).rstrip("F")
    return text if text.isdigit() else None


def _priority(value):
    if len(value) != 1:
        return None
    text = f"priority {value[0] & 0x0F}"
    return text + (", cardholder confirmation required" if value[0] & 0x80 else "")


def _sfi_value(value):
    return _sfi_text(value[0]) if len(value) == 1 else None


def _short_ef_id(value):
    return _sfi_text(value[0] >> 3) if len(value) == 1 else None


def _code_table(value):
    return f"ISO/IEC 8859-{value[0]}" if len(value) == 1 else None


ARC_TEXT = {b"Y1": "offline approved", b"Z1": "offline declined", b"Y3": "approved (unable to go online)",
            b"Z3": "declined (unable to go online)"}


def _arc(value):
    text = _text(value)
    if text is None or len(value) != 2:
        return None
    if value in fin.ARC_APPROVED:
        return f"{text} approved"
    return f"{text} {ARC_TEXT.get(value, 'declined')}"


CID_NAMES = {fin.AAC: "AAC", fin.TC: "TC", fin.ARQC: "ARQC", 0xC0: "RFU"}
CID_REASONS = {1: "service not allowed", 2: "PIN try limit exceeded", 3: "issuer authentication failed"}


def _cid(value):
    if len(value) != 1:
        return None
    cid = value[0]
    parts = [CID_NAMES[cid & 0xC0]]
    if cid & 0x08:
        parts.append("advice required")
    if cid & 0x07:
        parts.append(CID_REASONS.get(cid & 0x07, f"reason {cid & 0x07}"))
    return ", ".join(parts)


CVN_NAMES = {cvn: algorithm.name for algorithm, cvn in fin.CVN.items()}
ALGORITHM_NAMES = {ident: algorithm.name for algorithm, ident in fin.ALGORITHM_ID.items()}
CVR_BITS = {
    fin.CVR_ISSUER_AUTH_FAILED: "issuer authentication failed",
    fin.CVR_OFFLINE_PIN_PERFORMED: "offline PIN verification performed",
    fin.CVR_OFFLINE_PIN_FAILED: "offline PIN verification failed",
    fin.CVR_PIN_TRY_LIMIT_EXCEEDED: "PIN try limit exceeded",
    fin.CVR_VELOCITY_EXCEEDED: "offline velocity limit exceeded",
    fin.CVR_NEW_CARD: "new card (never online)",
    fin.CVR_ISSUER_AUTH_NOT_PERFORMED: "issuer authentication not performed",
    fin.CVR_SCRIPT_FAILED: "issuer script processing failed",
    fin.CVR_NOT_ACTIVATED: "application not activated",
    fin.CVR_APPLICATION_BLOCKED: "application blocked",
    fin.CVR_FOREIGN_CURRENCY: "foreign currency declined offline",
}
_AC_BITS = (fin.CVR_SECOND_AC_NOT_REQUESTED, fin.CVR_SECOND_AC_TC, fin.CVR_FIRST_AC_ARQC, fin.CVR_FIRST_AC_TC)


def cvr_lines(cvr: bytes) -> list[str]:
    """The card verification results (4 bytes, chip.apps.financial layout), one finding a line."""
    def has(bit):
        index, mask = bit
        return index < len(cvr) and bool(cvr[index] & mask)

    if has(fin.CVR_FIRST_AC_ARQC):
        first = "ARQC"
    elif has(fin.CVR_FIRST_AC_TC):
        first = "TC"
    else:
        first = "AAC"
    if has(fin.CVR_SECOND_AC_NOT_REQUESTED):
        second = "not requested"
    elif has(fin.CVR_SECOND_AC_TC):
        second = "TC"
    else:
        second = "AAC"
    lines = [] if cvr[:1] == b"\x03" else [f"length byte {_hex(cvr[:1])} (expected 03)"]
    lines += [f"first GENERATE AC: {first}", f"second GENERATE AC: {second}"]
    for index in range(1, len(cvr)):
        for mask in (0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01):
            bit = (index, mask)
            if cvr[index] & mask and bit not in _AC_BITS:
                lines.append(CVR_BITS.get(bit, f"byte {index} bit {mask:02X} (RFU)"))
    return lines


def _iad(value):
    """9F10 as this card writes it: 07 01 CVN CVR(4) algorithm."""
    if len(value) < 7:
        return None
    cvn = value[2]
    lines = [f"length {value[0]:02X}, derivation key index {value[1]:02X}, "
             f"CVN {cvn:02X}" + (f" ({CVN_NAMES[cvn]})" if cvn in CVN_NAMES else "")]
    lines.append(f"CVR {_hex(value[3:7])}")
    lines += [INDENT + line for line in cvr_lines(value[3:7])]
    if len(value) > 7:
        algorithm = value[7]
        lines.append(f"algorithm {algorithm:02X}" + (f" = {ALGORITHM_NAMES[algorithm]}" if algorithm in ALGORITHM_NAMES
                                                     else ""))
    if len(value) > 8:
        lines.append(f"more: {_hex(value[8:])}")
    return None, lines


def _algorithm_flag(value):
    """9F0C in the SSSE FCI: 86 01 <flag>, the flag as chip.kernel.crypto.NAMES names it (SR §10.1)."""
    if len(value) == 3 and value[:2] == b"\x86\x01":
        name = NAMES.get(value[2])
        return f"{name}, flag {value[2]:02X}" if name else f"unknown algorithm flag {value[2]:02X}"
    return None


def _sm_indicator(value):
    if len(value) == 1 and value[0] in fin.ALGORITHMS:
        return fin.ALGORITHMS[value[0]].name
    return None


def _pin_tries(value):
    return f"{int.from_bytes(value, 'big')} tries left" if value else None


def _time(value):
    digits = _digits(value)
    return f"{digits[:2]}:{digits[2:4]}:{digits[4:]}" if digits and len(digits) == 6 else None


def _service_code(value):
    digits = _digits(value)
    return digits[-3:] if digits else None


FILE_STRUCTURES = {1: "transparent", 2: "linear fixed", 3: "linear fixed, TLV records", 4: "linear variable",
                   5: "linear variable, simple-TLV records", 6: "cyclic", 7: "cyclic, TLV records"}


def _file_descriptor(value):
    if not value:
        return None
    fd = value[0]
    if fd & 0x38 == 0x38:
        return "DF"
    return f"working EF, {FILE_STRUCTURES.get(fd & 0x07, 'structure ' + str(fd & 0x07))}"


TRANSACTION_TYPES = {0x00: "goods and services", 0x01: "cash", 0x09: "cashback", 0x20: "refund",
                     0x31: "balance inquiry"}
ID_TYPES = {0: "ID card", 1: "military officer card", 2: "passport", 3: "entry permit", 4: "temporary ID card",
            5: "other"}

# EMV / PBOC / SSSE data objects: tag -> (name, readable form or None).
TAGS = {
    0x4F: ("application identifier (AID)", _name_value),
    0x50: ("application label", _text),
    0x57: ("track 2 equivalent data", _track2),
    0x5A: ("application PAN", _pan),
    0x5F20: ("cardholder name", _text),
    0x5F24: ("application expiration date", _yymmdd),
    0x5F25: ("application effective date", _yymmdd),
    0x5F28: ("issuer country code", _code(COUNTRIES)),
    0x5F2A: ("transaction currency code", _code(CURRENCIES)),
    0x5F2D: ("language preference", _text),
    0x5F30: ("service code", _service_code),
    0x5F34: ("PAN sequence number", _digits),
    0x61: ("application template", None),
    0x62: ("FCP template", None),
    0x6F: ("FCI template", None),
    0x70: ("record template", None),
    0x77: ("response message template format 2", None),
    0x80: ("response message template format 1", None),
    0x82: ("application interchange profile (AIP)", _aip),
    0x83: ("command template", None),
    0x84: ("DF name", _name_value),
    0x87: ("application priority indicator", _priority),
    0x88: ("SFI of the directory EF", _sfi_value),
    0x8A: ("authorisation response code", _arc),
    0x8C: ("CDOL1", _dol),
    0x8D: ("CDOL2", _dol),
    0x8E: ("CVM list", _cvm_list),
    0x94: ("application file locator (AFL)", _afl),
    0x95: ("terminal verification results", None),
    0x9A: ("transaction date", _yymmdd),
    0x9C: ("transaction type", _choice(TRANSACTION_TYPES)),
    0x9F02: ("amount, authorised", _amount_of),
    0x9F03: ("amount, other", _amount_of),
    0x9F07: ("application usage control", _auc),
    0x9F08: ("application version number", None),
    0x9F0C: ("SSSE algorithm flag", _algorithm_flag),
    0x9F0D: ("issuer action code - default", None),
    0x9F0E: ("issuer action code - denial", None),
    0x9F0F: ("issuer action code - online", None),
    0x9F10: ("issuer application data", _iad),
    0x9F11: ("issuer code table index", _code_table),
    0x9F12: ("application preferred name", _text),
    0x9F13: ("last online ATC register", _integer),
    0x9F14: ("lower consecutive offline limit", _integer),
    0x9F17: ("PIN try counter", _pin_tries),
    0x9F1A: ("terminal country code", _code(COUNTRIES)),
    0x9F1F: ("track 1 discretionary data", _text),
    0x9F21: ("transaction time", _time),
    0x9F23: ("upper consecutive offline limit", _integer),
    0x9F26: ("application cryptogram", None),
    0x9F27: ("cryptogram information data", _cid),
    0x9F36: ("application transaction counter (ATC)", _integer),
    0x9F37: ("unpredictable number", None),
    0x9F38: ("PDOL", _dol),
    0x9F42: ("application currency code", _code(CURRENCIES)),
    0x9F44: ("application currency exponent", _integer),
    0x9F4E: ("merchant name and location", _text),
    0x9F4F: ("log format", _dol),
    0x9F61: ("cardholder ID number", _text),
    0x9F62: ("cardholder ID type", _choice(ID_TYPES)),
    0x9F79: ("electronic cash balance", _amount_of),
    0xA5: ("FCI proprietary template", None),
    0xBF0C: ("FCI issuer discretionary data", None),
    0xDF69: ("SM algorithm indicator", _sm_indicator),
    0xDF7F: ("activation flag", _choice({0: "not activated", 1: "activated"})),
    # the SSSE's GET DATA objects (project extension, chip.apps.ssse): activation state and lock reason
    ACTIVATION_TAG: ("SSSE activation state (extension)", _choice({0: "issued", 1: "active"})),
    LOCK_REASON_TAG: ("SSSE lock reason (extension)", _choice(
        {code: reason or "none" for reason, code in LOCK_REASONS.items() if reason != "permanent"})),
}
# Inside an FCP (62), and for the MF's FCI (6F 83), ISO 7816-4 names these tags differently.
CONTEXT_TAGS = {
    0x62: {0x82: ("file descriptor", _file_descriptor), 0x83: ("file identifier", None),
           0x84: ("DF name", _name_value), 0x88: ("short EF identifier", _short_ef_id)},
    0x6F: {0x83: ("file identifier", None)},
}
# Short names, for command lines and data fields split by a DOL.
SHORT = {0x9F02: "amount", 0x9F03: "other amount", 0x9F1A: "country", 0x95: "TVR", 0x5F2A: "currency",
         0x9A: "date", 0x9C: "type", 0x9F37: "UN", 0x8A: "ARC", 0xDF69: "SM indicator", 0x9F36: "ATC",
         0x9F13: "last online ATC", 0x9F17: "PIN try counter", 0x9F79: "EC balance", 0x9F4F: "log format",
         0x9F14: "lower consecutive offline limit", 0x9F23: "upper consecutive offline limit",
         0xDF7F: "activation flag"}


def tag_name(tag: int, parent: int | None = None) -> str:
    entry = CONTEXT_TAGS.get(parent, {}).get(tag) or TAGS.get(tag)
    return entry[0] if entry else "unknown tag"


def _readable(tag: int, value: bytes, parent: int | None = None, chip: str | None = None):
    """(summary or None, detail lines) for a primitive value; never raises."""
    entry = CONTEXT_TAGS.get(parent, {}).get(tag) or TAGS.get(tag)
    if entry is None or entry[1] is None or not value:
        return None, []
    try:
        out = entry[1](value, chip) if entry[1] is _name_value else entry[1](value)
    except Exception:  # a formatter meeting odd data: the hex is still shown
        return None, []
    if isinstance(out, tuple):
        return out[0], list(out[1])
    return out, []


def primitive_lines(tag: int, value: bytes, pad: str = "", parent: int | None = None,
                    chip: str | None = None) -> list[str]:
    """One data object: `TAG name: HEX = readable`, with detail lines below (`chip`: whose DF names)."""
    head = f"{pad}{_tag_text(tag)} {tag_name(tag, parent)}"
    if not value:
        return [f"{head}: (empty)"]
    summary, details = _readable(tag, value, parent, chip)
    shown = _dump(value)
    line = f"{head}: {shown}" + (f" = {summary}" if summary and summary != shown else "")
    return [line] + [f"{pad}{INDENT}{detail}" for detail in details]


def tlv_lines(data: bytes, pad: str = "", parent: int | None = None, format1: str | None = None,
              depth: int = 0, chip: str | None = None) -> list[str]:
    """Nested BER-TLV, one object a line; what does not parse is shown as hex (`chip`: whose DF names)."""
    try:
        objects = ber.parse(data)
    except ValueError:
        return [f"{pad}not BER-TLV ({len(data)} bytes): {_dump(data)}"]
    lines = []
    for tag, value in objects:
        if tag == 0x80 and format1:
            lines += _format1_lines(value, pad, format1)
        elif _constructed(tag):
            lines.append(f"{pad}{_tag_text(tag)} {tag_name(tag, parent)}")
            if depth >= MAX_DEPTH:
                lines.append(f"{pad}{INDENT}{_dump(value)}")
            else:
                lines += tlv_lines(value, pad + INDENT, tag, format1, depth + 1, chip)
        else:
            lines += primitive_lines(tag, value, pad, parent, chip)
    return lines


def _format1_lines(value: bytes, pad: str, kind: str) -> list[str]:
    """Tag 80: GPO (AIP, AFL) or GENERATE AC (CID, ATC, AC, IAD) without tags."""
    lines = [f"{pad}80 {tag_name(0x80)}: {_dump(value)}"]
    if kind == "gpo" and len(value) >= 2:
        fields = ((0x82, value[:2]), (0x94, value[2:]))
    elif kind == "ac" and len(value) >= 11:
        fields = ((0x9F27, value[:1]), (0x9F36, value[1:3]), (0x9F26, value[3:11]), (0x9F10, value[11:]))
    else:
        return lines
    for tag, part in fields:
        lines += primitive_lines(tag, part, pad + INDENT)
    return lines


def _walk(data: bytes, depth: int = 0):
    """Every (tag, value) in nested BER-TLV; stops quietly at what does not parse."""
    try:
        objects = ber.parse(data)
    except ValueError:
        return
    for tag, value in objects:
        yield tag, value
        if _constructed(tag) and depth < MAX_DEPTH:
            yield from _walk(value, depth + 1)


def _all_known(data: bytes) -> bool:
    try:
        objects = ber.parse(data)
    except ValueError:
        return False
    return bool(objects) and all(tag in TAGS for tag, _ in objects)


# -- SSSE simple-TLV records ----------------------------------------------------------------------------------
def _identification(value: bytes) -> str | None:
    """EF05 01 (V2 table 10): region (3, BCD) || RID D156000005 || serial (4) || authentication code (4)."""
    if len(value) != 16:
        return None
    region = _digits(value[:3])
    rid_end = 3 + len(RID)
    parts = [f"region {region}" if region else f"region {_hex(value[:3])}"]
    rid = value[3:rid_end]
    parts.append(f"RID {_hex(RID)}" if rid == RID else f"bytes 4-8 {_hex(rid)} (not the RID {_hex(RID)})")
    parts += [f"serial {_hex(value[rid_end:rid_end + 4])}", f"authentication code {_hex(value[rid_end + 4:])}"]
    return ", ".join(parts)


def _field_text(value) -> str:
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return _hex(value)
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


# Codes of a few `an` items (V2 tables 13, 49, 50).
GENDERS = {"1": "male", "2": "female", "9": "not stated"}
CARD_USE_MODES = {"1": "online", "2": "offline"}
OFFLINE_SETTLEMENT = {"0": "not allowed", "1": "allowed"}
_CODED_ITEMS = {0x0A: GENDERS, 0x8F: CARD_USE_MODES, 0x90: OFFLINE_SETTLEMENT}
_REGION_ITEMS = frozenset((0x0C, 0x84))  # birthplace, medical-insurance region: GB/T 2260 codes


def item_lines(record: bytes, items=None, pad: str = "") -> list[str]:
    """Simple-TLV records (`tag len value`): item name from the declarations and the decoded value.

    `items` are the items the record file declares (a dict by tag or an iterable of items); a tag
    outside them is an unknown item. Without `items` (the file is not known) any SSSE item is taken.
    """
    if items is None:
        known = _ALL_ITEMS
    else:
        known = items if isinstance(items, dict) else {item.tag: item for item in items}
    lines, i = [], 0
    while i < len(record):
        if i + 2 > len(record) or i + 2 + record[i + 1] > len(record):
            lines.append(f"{pad}not a simple-TLV record: {_dump(record[i:])}")
            break
        tag, length = record[i], record[i + 1]
        value = record[i + 2:i + 2 + length]
        i += 2 + length
        item = known.get(tag)
        if item is None:
            lines.append(f"{pad}{tag:02X} unknown item ({length} bytes): {_dump(value)}")
            continue
        head = f"{pad}{tag:02X} {item.name}: {_dump(value)}"
        if length != item.length:
            lines.append(f"{head} (expected {item.length} bytes, got {length})")
            continue
        try:
            decoded = item.layout.parse(value)
        except Exception:
            lines.append(f"{head} (does not decode)")
            continue
        lines += _item_value_lines(head, item, value, decoded)
    return lines


def _item_value_lines(head: str, item, raw: bytes, decoded) -> list[str]:
    tag = item.tag
    if tag == 0x01:
        readable = _identification(raw)
    elif isinstance(decoded, (bytes, bytearray)):
        readable = None
    elif tag in _CODED_ITEMS:
        readable = f'"{decoded}" ' + _CODED_ITEMS[tag].get(decoded, "unknown code")
    elif tag == 0x0B:
        readable = f"GB/T 3304 code {decoded}" + (" (Han)" if decoded == "01" else "")
    elif tag in _REGION_ITEMS:
        readable = f"region {decoded}"
    elif isinstance(item.layout, Bcd):
        readable = decoded or "(empty)"
    elif isinstance(decoded, str) and raw and not decoded:
        readable = '"" (empty)'
    else:
        readable = _field_text(decoded)
    return [head + (f" = {readable}" if readable and readable != _hex(raw) else "")]


# -- fixed-length fields: medical purse and PSAM commands, cyclic records ----------------------------------------
def _uint(value: bytes) -> str:
    return str(int.from_bytes(value, "big"))


def _fen(value: bytes) -> str:
    """An amount in fen, binary (V2 §8.5.3.5; P5 §7)."""
    n = int.from_bytes(value, "big")
    return f"{n} fen = {n // 100}.{n % 100:02d}"


def _cn_time(value: bytes) -> str | None:
    """cn 7: YYYYMMDDhhmmss."""
    d = _digits(value)
    if d is None or len(d) != 14:
        return None
    return f"{d[:4]}-{d[4:6]}-{d[6:8]} {d[8:10]}:{d[10:12]}:{d[12:]}"


def _cn_date(value: bytes) -> str | None:
    """cn 4: YYYYMMDD."""
    d = _digits(value)
    return f"{d[:4]}-{d[4:6]}-{d[6:]}" if d is not None and len(d) == 8 else None


def _payment_year(value: bytes) -> str | None:
    d = _digits(value)
    if d is None:
        return None
    return "none yet" if int(d) == 0 else d


def _mmdd(value: bytes) -> str | None:
    d = _digits(value)
    return f"month {d[:2]}, day {d[2:]}" if d is not None and len(d) == 4 else None


def _algorithm_id(value: bytes) -> str | None:
    """The algorithm identifier of the INITIALIZE answers and of INIT SAM FOR PURCHASE: the FCI flag."""
    return NAMES.get(value[0]) if len(value) == 1 else None


def _purse_type(value: bytes) -> str | None:
    """The transaction type byte (V2 table 51 digit, as chip.apps.purse codes it)."""
    if len(value) != 1 or value[0] not in PURSE_TYPES:
        return None
    return f'"{chr(value[0])}" {PURSE_TYPES[value[0]]}'


def _factor(value: bytes) -> str | None:
    """A diversification factor: the province and city factors are ASCII (P9 §7.3.1-7.3.2)."""
    return _text(value)


SPECIAL_CATEGORIES = {"1": "work-injury medical", "2": "maternity medical", "3": "medical aid", "9": "other"}


def _special_category(value: bytes) -> str | None:
    """DF04 EF15 category (V2 table 52)."""
    text = value.decode("latin-1")
    return f'"{text}" {SPECIAL_CATEGORIES[text]}' if text in SPECIAL_CATEGORIES else None


# Fixed layouts: (name, length, readable form or None). Commands: P5 §7 tables 50-78 (docs/card/commands.md);
# P9 §9.9; records: V2 table 9 (docs/card/files.md).
DETAIL_LAYOUT = (("sequence number", 2, _uint), ("transaction type", 1, _purse_type), ("terminal number", 6, None),
                 ("time", 7, _cn_time), ("account amount", 4, _fen), ("self-pay amount", 4, _fen),
                 ("pooled-fund amount", 4, _fen))
SPECIAL_LAYOUT = (("sequence number", 2, _uint), ("category", 1, _special_category))
_CYCLIC_LAYOUTS = {DF04_EF08: DETAIL_LAYOUT, DF04_EF15: SPECIAL_LAYOUT}

_KEY_INDEX = ("key index", 1, None)
_TERMINAL = ("terminal number", 6, None)
_BALANCE = ("personal account balance", 4, _fen)
_VERSION_ALGORITHM = (("key version", 1, None), ("algorithm", 1, _algorithm_id))
INIT_LOAD = ((_KEY_INDEX, ("amount", 4, _fen), _TERMINAL),
             (_BALANCE, ("load counter", 2, _uint)) + _VERSION_ALGORITHM
             + (("pseudo-random", 4, None), ("MAC1", 4, None)))
_AMOUNTS = (("account amount", 4, _fen), ("self-pay amount", 4, _fen), ("pooled-fund amount", 4, _fen))
INIT_PURCHASE = ((_KEY_INDEX,) + _AMOUNTS + (_TERMINAL,),
                 (_BALANCE, ("annual self-pay total", 4, _fen), ("annual pooled-fund total", 4, _fen),
                  ("payment year", 2, _payment_year), ("purchase counter", 2, _uint)) + _VERSION_ALGORITHM
                 + (("pseudo-random", 4, None),))
CREDIT_FOR_LOAD = ((("host time", 7, _cn_time), ("MAC2", 4, None)), (("TAC", 4, None),))
DEBIT_FOR_PURCHASE = ((("terminal transaction number", 4, _uint), ("terminal time", 7, _cn_time), ("MAC1", 4, None)),
                      (("TAC", 4, None), ("MAC2", 4, None)))
BALANCES = {  # GET BALANCE P2
    0x01: ("personal account (CIA)", (_BALANCE,)),
    0x02: ("annual self-pay total (SPIP)", (("annual self-pay total", 4, _fen), ("payment year", 2, _payment_year))),
    0x03: ("annual pooled-fund total (SPFP)",
           (("annual pooled-fund total", 4, _fen), ("payment year", 2, _payment_year))),
}
TRANSACTION_PROOF = ((("transaction sequence number", 2, _uint),), (("MAC", 4, None), ("TAC", 4, None)))
STARTING_DAY = (("starting day", 2, _mmdd),)
INIT_SAM_FOR_PURCHASE = ((("card random", 4, None), ("card purchase counter", 2, _uint)) + _AMOUNTS
                         + (("transaction type", 1, _purse_type), ("date", 4, _cn_date), ("time", 3, _time),
                            ("DPK version", 1, None), ("DPK algorithm", 1, _algorithm_id)),
                         (("terminal transaction number", 4, _uint), ("MAC1", 4, None)))
FACTORS = ("card factor", "city factor", "province factor")  # DELIVERY SESSION KEY order, card level first (S1)
KEY_TYPES = {key_table.PURCHASE: "purchase", key_table.MAC: "MAC", key_table.ENCRYPT: "encryption",
             key_table.MAC_AND_ENCRYPT: "MAC and encryption", key_table.LOAD: "load", key_table.TAC: "TAC"}


def _layout_length(layout) -> int:
    return sum(length for _, length, _ in layout)


def field_lines(data: bytes, layout, pad: str = INDENT) -> list[str]:
    """Data of a fixed layout, one field a line (`name: HEX = readable`); hex when the length differs."""
    if layout is None or len(data) != _layout_length(layout):
        expected = f", expected {_layout_length(layout)}" if layout is not None else ""
        return [f"{pad}data ({len(data)} bytes{expected}): {_dump(data)}"]
    lines, i = [], 0
    for name, length, fmt in layout:
        value = data[i:i + length]
        i += length
        shown = _hex(value)
        try:
            readable = fmt(value) if fmt else None
        except Exception:  # a formatter meeting odd data: the hex is still shown
            readable = None
        lines.append(f"{pad}{name}: {shown}" + (f" = {readable}" if readable and readable != shown else ""))
    return lines


def _factor_lines(factors: bytes, pad: str = INDENT) -> list[str]:
    """N 8-byte diversification factors, card level first (P9 §9.7, §9.9.3; docs/decisions.md S1)."""
    lines = []
    for i, name in enumerate(FACTORS[:len(factors) // 8]):
        value = factors[8 * i:8 * i + 8]
        readable = _factor(value)
        lines.append(f"{pad}{name}: {_hex(value)}" + (f" = {readable}" if readable else ""))
    return lines


def cyclic_lines(ef, data: bytes, pad: str = "") -> list[str]:
    """Records of a cyclic EF (fixed length, untagged; P3 §5.3.2), one after the other, fields below."""
    size = ef.size
    if not size or not data or len(data) % size:
        return [f"{pad}{ef.label} ({len(data)} bytes, records of {size}): {_dump(data)}"]
    layout = _CYCLIC_LAYOUTS.get(ef)
    lines = []
    for i in range(0, len(data), size):
        record = data[i:i + size]
        lines.append(f"{pad}{ef.label}: {_dump(record)}")
        if layout is not None:
            lines += field_lines(record, layout, pad + INDENT)
    return lines


# -- command and response context -------------------------------------------------------------------------------
class _Context:
    """What a response belongs to: the command's kind, first line, and what the card state will become."""

    __slots__ = ("kind", "title", "cmd", "node", "by_name", "ef", "sfi", "mode", "layout", "applied")

    def __init__(self, kind: str, title: str = "", cmd=None):
        self.kind = kind
        self.title = title
        self.cmd = cmd
        self.node = None  # SELECT target (None: not a file this decoder knows)
        self.by_name = False
        self.ef = None  # record file of READ/UPDATE RECORD, READ/UPDATE BINARY
        self.sfi = 0
        self.mode = None  # READ RECORD addressing mode; CIPHER DATA's chip.apps.psam.CipherMode
        self.layout = None  # the answer's fixed layout ("fields")
        self.applied = False


_UNKNOWN = object()  # the current DF when the decoder has not seen where the card is

# READ RECORD P2 b3-b1 (P5 table 32); UPDATE RECORD uses 100 and 000-011 (P5 §6.13).
_BY_NUMBER = {4: "{n} of {where}", 5: "{n} to the last of {where}", 6: "the last down to {n} of {where}"}
_OCCURRENCES = {0: "", 1: "last occurrence of ", 2: "next occurrence of ", 3: "previous occurrence of "}


class Decoder:
    """Names commands and decodes responses, tracking the card's selection state."""

    def __init__(self):
        self.pdol, self.cdol1, self.cdol2 = fin.PDOL, fin.CDOL1, fin.CDOL2  # until the card announces its own
        self.chip = CARD  # the social-security card until a PSAM-only command or name shows a PSAM
        self._clear(_UNKNOWN)

    def reset(self) -> None:
        """ATR / power cycle: the card is at the MF with nothing selected; volatile state is gone."""
        self._clear(self.chip.mf)

    def _clear(self, df) -> None:
        self.df = df  # current DF node, None (a DF this decoder does not know) or _UNKNOWN
        self.ef = None  # current EF node
        self.application = None if df is MF else _ROOTS.get(df)
        self._end_session()
        self.psam_block = _PSAM_BLOCKS.get(self.application)
        self._pending = None
        self._chain = None  # (context, data so far) while the card answers 61xx

    def _end_session(self) -> None:
        self.first_ac_done = False
        self.psam_block = None  # the PSAM environment's block size (8 DES, 16 SM4)

    def _use(self, chip: _Chip) -> None:
        """The exchanges are with `chip` (a PSAM showed itself): the current DF is that chip's."""
        if chip is self.chip:
            return
        old, self.chip = self.chip, chip
        df = self.df
        if df is old.mf:
            df = chip.mf
        elif df is not _UNKNOWN and df is not None:
            df = chip.by_name.get(df.name, _UNKNOWN) if df.name else _UNKNOWN
        self.df, self.ef = df, None
        self.application = _app_of(df) if df is not _UNKNOWN else None
        self._end_session()
        self.psam_block = _PSAM_BLOCKS.get(self.application)

    # -- commands ----------------------------------------------------------------------------------------
    def command(self, apdu: bytes) -> list[str]:
        """The command's name and meaning, first line a summary, details indented below it."""
        apdu = bytes(apdu)
        try:
            return self._command(apdu)
        except Exception as exc:  # the decoder must never stop a trace
            self._pending = _Context("generic", "command")
            return [f"command {_dump(apdu)} (not decoded: {type(exc).__name__})"]

    def _command(self, apdu: bytes) -> list[str]:
        if len(apdu) < 4:
            self._pending = _Context("generic", "malformed command")
            return [f"malformed command APDU ({len(apdu)} bytes, a command has at least CLA INS P1 P2): {_dump(apdu)}"]
        try:
            cmd = parse_apdu(apdu)
        except Exception:
            self._pending = _Context("generic", "malformed command")
            return [f"malformed command APDU (CLA {apdu[0]:02X} INS {apdu[1]:02X}): the length fields do not match "
                    f"the data (a card answers 6700): {_dump(apdu)}"]
        if not (cmd.cla == 0x00 and cmd.ins == 0xC0):
            self._chain = None  # any other command discards data waiting for GET RESPONSE
        code = cmd.cla << 8 | cmd.ins
        if code in _PSAM_COMMANDS:
            self._use(PSAM)
        handler = _COMMANDS.get(code)
        if handler is None:
            self._pending = _Context("generic", "unknown command", cmd)
            return [f"unknown command CLA {cmd.cla:02X} INS {cmd.ins:02X}"]
        ctx, lines = handler(self, cmd)
        ctx.title = lines[0]
        ctx.cmd = cmd
        self._pending = ctx
        return lines

    # SELECT ---------------------------------------------------------------------------------------------
    def _select_target(self, cmd):
        """The node the card would select (None: not found or not known here), as chip.card resolves it."""
        p1, data = cmd.p1, cmd.data
        chip, df = self.chip, self.df
        if p1 == 0x04:
            if not data:
                return chip.mf
            node = chip.by_name.get(data)
            if node is not None and not cmd.p2 & 0x02:
                return self._nearest(node)
            matches = [n for n in chip.by_name.values() if n.name.startswith(data)]
            if cmd.p2 & 0x02 and df in matches:
                matches = matches[matches.index(df) + 1:]
            return matches[0] if matches else None
        if p1 in (0x00, 0x01, 0x02):
            if p1 == 0x00 and not data:
                return chip.mf
            if len(data) != 2:
                return None
            fid = int.from_bytes(data, "big")
            if fid == MF_FID and p1 == 0x00:
                return chip.mf
            if df is _UNKNOWN or df is None:
                node = chip.fid_guess.get(fid) if df is _UNKNOWN else None
            elif p1 == 0x00:
                node = df.by_fid.get(fid)
                if node is None and df.parent is not None:
                    node = df.parent.by_fid.get(fid)
                    if node is None and df.parent.fid == fid:
                        node = df.parent
            else:
                node = df.by_fid.get(fid)
            if node is not None and p1 != 0x00 and node.is_df != (p1 == 0x01):
                node = None
            return node
        if p1 == 0x03:
            if df is _UNKNOWN or df is None:
                return None
            return df.parent or chip.mf
        if p1 in (0x08, 0x09):
            start = chip.mf if p1 == 0x08 else df
            if start is _UNKNOWN or start is None or not data or len(data) % 2:
                return None
            node = start
            for i in range(0, len(data), 2):
                fid = data[i] << 8 | data[i + 1]
                if i == 0 and fid == MF_FID and start is chip.mf:
                    continue
                child = node.by_fid.get(fid) if node.is_df else None
                if child is None:
                    return None
                node = child
            return node
        return None

    def _nearest(self, node):
        """Of the DFs sharing a name (the PSAM's two ADFs), the one chip.card finds."""
        return nearest(node, None if self.df is _UNKNOWN else self.df)

    def _select(self, cmd):
        ctx = _Context("select")
        p1, data = cmd.p1, cmd.data
        if p1 == 0x04 and data in _PSAM_ONLY_NAMES:
            self._use(PSAM)
        node = self._select_target(cmd)
        ctx.node, ctx.by_name = node, p1 == 0x04
        described = f" ({_describe(node)})" if node is not None else ""
        if p1 == 0x04:
            if not data:
                title = "SELECT by DF name (empty: the MF)"
            else:
                label = name_label(data, self.chip.name)
                if label is None and node is not None and node.name != data:
                    label = f"right-truncated: {_label(node)}"
                title = f"SELECT by DF name {name_text(data)}" + (f" ({label})" if label else "")
        elif p1 == 0x00 and not data:
            title = "SELECT the MF (P1 00 without a FID)"
        elif p1 in (0x00, 0x01, 0x02):
            kind = {0x00: "", 0x01: "child DF ", 0x02: "EF "}[p1]
            title = f"SELECT {kind}by FID {_dump(data)}{described}"
        elif p1 == 0x03:
            title = "SELECT parent DF" + (f": {_ref(node)}" if node is not None else "")
        elif p1 in (0x08, 0x09):
            path = "/".join(_hex(data[i:i + 2]) for i in range(0, len(data) - 1, 2))
            title = f"SELECT by path from {'MF' if p1 == 0x08 else 'current DF'} {path}{described}"
        else:
            title = f"SELECT with P1 {p1:02X} (not a selection method)"
        p2 = cmd.p2
        response = {0x00: "", 0x04: ", FCP", 0x08: ", FMD", 0x0C: ", no response data"}[p2 & 0x0C]
        extra = (", next occurrence" if p2 & 0x02 else "") + (f", P2 {p2:02X}" if p2 & 0xF1 else "")
        return ctx, [title + response + extra]

    def _apply_select(self, ctx, sw: int) -> None:
        # 9303: a permanently blocked application is selected all the same (P5 §6.1.1, P7 §13.2)
        if not (_executed(sw) or sw == 0x9303):
            return
        node = ctx.node
        if node is None:  # something this decoder does not know was selected
            self.df, self.ef, self.application = None, None, None
            self._end_session()
            return
        df = node if node.is_df else node.parent
        application = _app_of(df)
        if application != self.application or (ctx.by_name and node in _ROOTS):
            self._end_session()
        self.df, self.application = df, application
        self.ef = None if node.is_df else node
        if application in _PSAM_BLOCKS:
            self.psam_block = _PSAM_BLOCKS[application]

    # records and binaries --------------------------------------------------------------------------------
    def _record_file(self, sfi: int):
        """The EF an SFI names in the current DF (0: the current EF); a guess while the state is unknown."""
        if not sfi:
            return self.ef
        df = self.df
        if df is _UNKNOWN:
            return self.chip.sfi_guess.get(sfi)
        if df is None:
            return None
        return df.by_sfi.get(sfi)

    def _ef_text(self, ef, sfi: int) -> str:
        if ef is None:
            return _sfi_text(sfi) if sfi else "the current EF"
        name = f"{ef.fid:04X}" if ef.fid is not None else ef.label
        if ef.parent in _V2_LABELS:  # an EF of an application DF: say which DF
            name = f"{ef.parent.fid:04X} {name}"
        where = f"{name} ({_sfi_text(ef.sfi)})" if ef.sfi else name
        return where if sfi else f"the current EF {where}"

    @staticmethod
    def _items_of(ef):
        """The items a record of `ef` may hold: its declaration, any SSSE item for an unknown file, else none."""
        if ef is None:
            return _ALL_ITEMS
        return ef.items if ef in _ITEM_FILES else {}

    def _read_record(self, cmd):
        ctx = _Context("read_record")
        p1, p2 = cmd.p1, cmd.p2
        sfi, mode = p2 >> 3, p2 & 7
        ef = self._record_file(sfi)
        ctx.ef, ctx.sfi, ctx.mode = ef, sfi, mode
        where = self._ef_text(ef, sfi)
        if mode in _BY_NUMBER:
            title = "READ RECORD " + _BY_NUMBER[mode].format(n=f"{p1:02X}", where=where)
            if mode == 4 and p1 == 0:
                title += " (current record)"
            elif mode == 4 and ef in _NUMBERED and p1 <= len(ef.items):
                title += f" — {list(ef.items.values())[p1 - 1].name}"
            elif ef is not None and ef not in _NUMBERED and ef.fid is not None:
                title += f" — {ef.label}"
        elif mode in _OCCURRENCES:
            title = f"READ RECORD {_OCCURRENCES[mode]}identifier {p1:02X} in {where}"
            item = self._items_of(ef).get(p1)
            if item is not None:
                title += f" — {item.name}"
        else:
            title = f"READ RECORD {p1:02X} of {where}, P2 {p2:02X} (addressing mode {mode}: RFU)"
        return ctx, [title]

    def _update_record(self, cmd):
        """UPDATE RECORD `00|04 DC` (P5 §6.13): CLA 04 carries a MAC4 after the record."""
        ctx = _Context("write_record")
        p1, p2 = cmd.p1, cmd.p2
        sfi, mode = p2 >> 3, p2 & 7
        ef = self._record_file(sfi)
        ctx.ef, ctx.sfi, ctx.mode = ef, sfi, mode
        secured = cmd.cla == 0x04
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
        title = f"UPDATE RECORD {target} with {what}" + (", secure messaging (MAC)" if secured else "")
        return ctx, [title] + body + (_mac_lines(cmd.data, with_body=False) if secured else [])

    def _binary_target(self, cmd):
        if cmd.p1 & 0x80:
            sfi = cmd.p1 & 0x1F
            return sfi, self._record_file(sfi), cmd.p2
        return 0, self.ef, cmd.p1 << 8 | cmd.p2

    def _read_binary(self, cmd):
        ctx = _Context("read_binary")
        sfi, ef, offset = self._binary_target(cmd)
        ctx.ef, ctx.sfi = ef, sfi
        label = f" — {ef.label}" if ef is not None else ""
        return ctx, [f"READ BINARY {self._ef_text(ef, sfi)} from offset {offset}{label}"]

    def _update_binary(self, cmd):
        """UPDATE BINARY `00|04 D6` (P5 §6.12): CLA 04 carries a MAC4 after the data."""
        ctx = _Context("update_binary")
        sfi, ef, offset = self._binary_target(cmd)
        ctx.ef, ctx.sfi = ef, sfi
        secured = cmd.cla == 0x04
        data = cmd.data[:-4] if secured and len(cmd.data) >= 4 else cmd.data
        label = f" — {ef.label}" if ef is not None else ""
        title = f"UPDATE BINARY {self._ef_text(ef, sfi)} from offset {offset}{label}"
        lines = [title + (", secure messaging (MAC)" if secured else ""),
                 f"{INDENT}data ({len(data)} bytes): {_dump(data)}"]
        return ctx, lines + (_mac_lines(cmd.data, with_body=False) if secured else [])

    # PIN (P5 §6.3, §6.8, §6.14) --------------------------------------------------------------------------
    def _verify(self, cmd):
        data = cmd.data
        if cmd.p2 == 0x80:
            title = "VERIFY offline plaintext PIN (financial)"
            detail = "no data: asks whether the PIN is verified" if not data else _pin_block_text(data)
        elif cmd.p2 == 0x00 and self.application in (None, "ssse"):
            title = "VERIFY SSSE PIN"
            detail = ("no data: asks whether a PIN is set (63Cx: tries left; 9000: no PIN)" if not data
                      else f"PIN: {_packed_pin_text(data)}")
        else:
            title = f"VERIFY PIN reference {cmd.p2:02X}"
            detail = f"data: {len(data)} bytes" if data else "no data"
        return _Context("plain"), [title, INDENT + detail]

    def _change_pin(self, cmd):
        data = cmd.data
        if cmd.p1 == 0x01:
            old, sep, new = data.partition(b"\xFF")
            if sep:
                return _Context("plain"), ["CHANGE PIN", f"{INDENT}old PIN: {_packed_pin_text(old)}, "
                                                         f"new PIN: {_packed_pin_text(new)}"]
            return _Context("plain"), ["CHANGE PIN", f"{INDENT}data without the FF separator ({len(data)} bytes)"]
        return _Context("plain"), [f"CHANGE PIN with P1 {cmd.p1:02X} (P5 §6.3 defines only 01)"]

    def _pin_unblock(self, cmd):
        data = cmd.data
        if self.application == "fin" or cmd.p2 == 0x02:
            if cmd.p2 == 0x02:
                lines = ["PIN CHANGE (issuer script, new PIN enciphered)"]
                if len(data) > 4:
                    lines.append(f"{INDENT}enciphered PIN block: {_hex(data[:-4])}")
                return _Context("plain"), lines + _mac_lines(data, with_body=False)
            return _Context("plain"), ["PIN UNBLOCK (issuer script, try counter only)"] + _mac_lines(data)
        if cmd.p2 == 0x00:
            return _Context("plain"), ["PIN CHANGE/UNBLOCK: PIN unblock (try counter only)"] + _mac_lines(data)
        if cmd.p2 == 0x01:
            lines = ["PIN CHANGE/UNBLOCK: PIN reset (new PIN enciphered)"]
            if len(data) > 4:
                lines.append(f"{INDENT}enciphered LD || PIN: {_hex(data[:-4])} ({len(data) - 4} bytes)")
            elif len(data) == 4:
                lines.append(f"{INDENT}no enciphered PIN: the PIN becomes empty")
            return _Context("plain"), lines + _mac_lines(data, with_body=False)
        return _Context("plain"), [f"PIN CHANGE/UNBLOCK with P2 {cmd.p2:02X}"] + _mac_lines(data)

    # authentication (P5 §6.4, §6.5, §6.7) -------------------------------------------------------------------
    def _get_challenge(self, cmd):
        n = cmd.ne if cmd.le_present else 0
        return _Context("challenge"), [f"GET CHALLENGE ({n} bytes)" if n else "GET CHALLENGE"]

    def _key_spec(self, key_id: int):
        """The chip.apps.keys entry a key identifier names in the current DF (P5 §6.4); while the DF is
        not known, the one key with that identifier, if only one DF has it."""
        if self.chip is PSAM:
            return None
        df = self.df
        if df is _UNKNOWN or df is None:
            found = [spec for (_, ident), spec in BY_CARD_ID.items() if ident == key_id]
            return found[0] if len(found) == 1 else None
        tag = DF_TAGS.get(df)
        return BY_CARD_ID.get((tag, key_id)) if tag else None

    def _key_text(self, key_id: int) -> str:
        spec = self._key_spec(key_id)
        if spec is not None:
            return f"with {spec.label} (key {key_id:02X})"
        return f"{'PSAM ' if self.chip is PSAM else ''}key {key_id:02X}"

    def _external_authenticate(self, cmd):
        data = cmd.data
        if cmd.p2 == 0x00 and (self.application == "fin" or len(data) == 10):
            lines = ["EXTERNAL AUTHENTICATE (issuer authentication: ARPC, ARC)"]
            if len(data) == 10:
                lines.append(f"{INDENT}ARPC: {_hex(data[:8])}")
                lines += primitive_lines(0x8A, data[8:], INDENT)
            else:
                lines.append(f"{INDENT}data ({len(data)} bytes, expected ARPC 8 + ARC 2): {_dump(data)}")
            return _Context("plain"), lines
        lines = [f"EXTERNAL AUTHENTICATE {self._key_text(cmd.p2)}"]
        return _Context("plain"), lines + _auth_lines(data, "authentication data", "original data")

    def _internal_authenticate(self, cmd):
        title = "INTERNAL AUTHENTICATE " + self._key_text(cmd.p2)
        return _Context("internal_auth"), [title] + _auth_lines(cmd.data, "R1 (process-key factor)",
                                                                "R2 (original data)")

    # maintenance (SSSE, P5 §6.1-6.2 and the project's loss lock) and issuer scripts (financial) ---------------
    def _script_suffix(self) -> str:
        return " (issuer script)" if self.application == "fin" else ""

    def _application_block(self, cmd):
        if self.application == "fin":
            title = "APPLICATION BLOCK (issuer script)"
        else:
            title = "APPLICATION BLOCK " + {0: "(loss lock, extension)", 1: "(permanent)"}.get(cmd.p2,
                                                                                             f"(P2 {cmd.p2:02X})")
        return _Context("plain"), [title] + _mac_lines(cmd.data)

    def _application_unblock(self, cmd):
        title = "APPLICATION UNBLOCK" + (self._script_suffix() or " (lifts the loss lock, extension)")
        return _Context("plain"), [title] + _mac_lines(cmd.data)

    def _card_block(self, cmd):
        return _Context("plain"), ["CARD BLOCK" + self._script_suffix()] + _mac_lines(cmd.data)

    def _put_data(self, cmd):
        tag = cmd.p1 << 8 | cmd.p2
        data = cmd.data
        lines = [f"PUT DATA {_tag_text(tag)} {SHORT.get(tag, tag_name(tag))} (issuer script)"]
        if len(data) > 4:
            lines += primitive_lines(tag, data[:-4], INDENT)
        return _Context("plain"), lines + _mac_lines(data, with_body=False)

    # financial transaction ----------------------------------------------------------------------------------
    def _gpo(self, cmd):
        data = cmd.data
        if len(data) >= 2 and data[0] == 0x83 and data[1] == len(data) - 2:
            fields = _split(data[2:], self.pdol)
            if fields is not None:
                names = []
                for tag, value in fields:
                    name = SHORT.get(tag, tag_name(tag))
                    if tag == 0xDF69 and len(value) == 1:
                        algorithm = _sm_indicator(value)
                        name += f" DF69={value[0]:02X}" + (f" {algorithm}" if algorithm else "")
                    names.append(name)
                lines = [f"GET PROCESSING OPTIONS ({', '.join(names)})"]
                for tag, value in fields:
                    lines += primitive_lines(tag, value, INDENT)
                return _Context("gpo"), lines
            return _Context("gpo"), ["GET PROCESSING OPTIONS",
                                     f"{INDENT}PDOL data ({len(data) - 2} bytes, not the PDOL's length): "
                                     f"{_dump(data[2:])}"]
        return _Context("gpo"), ["GET PROCESSING OPTIONS", f"{INDENT}data (no 83 command template): {_dump(data)}"]

    def _generate_ac(self, cmd):
        data = cmd.data
        requested = CID_NAMES[cmd.p1 & 0xC0]
        n1, n2 = _dol_length(self.cdol1), _dol_length(self.cdol2)
        if len(data) == n2 and len(data) != n1:
            second = True
        elif len(data) == n1 and len(data) != n2:
            second = False
        else:
            second = self.first_ac_done
        title = f"GENERATE AC {'second' if second else 'first'} requesting {requested}"
        if cmd.p1 & 0x10:
            title += ", CDA signature requested"
        if cmd.p1 & 0x2F:
            title += f" (P1 {cmd.p1:02X})"
        dol = self.cdol2 if second else self.cdol1
        fields = _split(data, dol)
        lines = [title]
        if fields is None:
            lines.append(f"{INDENT}data ({len(data)} bytes, CDOL{'2' if second else '1'} asks for "
                         f"{_dol_length(dol)}): {_dump(data)}")
        else:
            for tag, value in fields:
                lines += primitive_lines(tag, value, INDENT)
        return _Context("generate_ac"), lines

    def _get_data(self, cmd):
        tag = cmd.p1 << 8 | cmd.p2
        return _Context("get_data"), [f"GET DATA {_tag_text(tag)} {SHORT.get(tag, tag_name(tag))}"]

    def _get_response(self, cmd):
        ctx = _Context("get_response")
        n = "all remaining bytes" if cmd.ne == 256 else f"{cmd.ne} bytes"
        chain = self._chain
        title = f"GET RESPONSE ({n})" + (f" for {chain[0].title}" if chain and chain[0] else "")
        return ctx, [title]

    # medical purse (P5 §7; DF04) ------------------------------------------------------------------------------
    @staticmethod
    def _fields(title: str, data: bytes, request, answer):
        """A command of fixed-layout data: the title, its fields, and the layout its answer will have."""
        ctx = _Context("fields")
        ctx.layout = answer
        lines = [title]
        if request is not None:
            if data:
                lines += field_lines(data, request)
        elif data:
            lines.append(f"{INDENT}data ({len(data)} bytes): {_dump(data)}")
        return ctx, lines

    def _initialize(self, cmd):
        if cmd.p1 == 0x00:
            title, (request, answer) = "INITIALIZE FOR LOAD", INIT_LOAD
        elif cmd.p1 == 0x01:
            title, (request, answer) = "INITIALIZE FOR PURCHASE", INIT_PURCHASE
        else:
            title, request, answer = f"INITIALIZE with P1 {cmd.p1:02X} (00 load, 01 purchase)", None, None
        if cmd.p2 != 0x01:
            title += f" (P2 {cmd.p2:02X}, P5 gives 01)"
        return self._fields(title, cmd.data, request, answer)

    def _credit_for_load(self, cmd):
        return self._fields("CREDIT FOR LOAD", cmd.data, *CREDIT_FOR_LOAD)

    def _debit_for_purchase(self, cmd):
        return self._fields("DEBIT FOR PURCHASE", cmd.data, *DEBIT_FOR_PURCHASE)

    def _get_balance(self, cmd):
        what, answer = BALANCES.get(cmd.p2, (f"with P2 {cmd.p2:02X} (01 CIA, 02 SPIP, 03 SPFP)", None))
        return self._fields(f"GET BALANCE {what}", cmd.data, None, answer)

    def _get_transaction_proof(self, cmd):
        kind = PURSE_TYPES.get(cmd.p2)
        what = f"of the last {kind} (type {cmd.p2:02X})" if kind else f"with P2 {cmd.p2:02X} (not a transaction type)"
        return self._fields(f"GET TRANSACTION PROOF {what}", cmd.data, *TRANSACTION_PROOF)

    def _starting_day(self, cmd):
        if cmd.p1 == 0x01:
            return self._fields("GET STARTING DAY", cmd.data, None, STARTING_DAY)
        if cmd.p1 == 0x00:
            # P5 §7.7 table 73 gives the day alone; the card asks for DSK authentication as a MAC4 after it
            request = STARTING_DAY + ((("MAC4", 4, None),) if len(cmd.data) > 2 else ())
            return self._fields("UPDATE STARTING DAY", cmd.data, request, None)
        return self._fields(f"STARTING DAY with P1 {cmd.p1:02X} (00 update, 01 get)", cmd.data, None, None)

    # PSAM (P9 §9) ------------------------------------------------------------------------------------------
    def _initialize_environment(self, cmd):
        data = cmd.data
        lines = ["INITIALIZE ENVIRONMENT"]
        if len(data) == 1:
            region = _digits(data)
            lines.append(f"{INDENT}first byte of the card identification code: {data[0]:02X}"
                         + (f" (region {region}….)" if region else ""))
        elif data:
            lines.append(f"{INDENT}data ({len(data)} bytes, expected 1): {_dump(data)}")
        return _Context("plain"), lines

    def _delivery_session_key(self, cmd):
        """BF DE usage id: the root of that usage (b8-b6 levels, b5-b1 type) and id, diversified by
        N factors, then the process key of the last M bytes (M = the block)."""
        usage, ident, data = cmd.p1, cmd.p2, cmd.data
        levels, kind = usage >> 5, usage & psam.TYPE_MASK
        spec = BY_PSAM.get((usage, ident))
        what = f"{spec.label} root" if spec is not None else "root"
        kind_text = KEY_TYPES.get(kind, f"type {kind}")
        lines = [f"DELIVERY SESSION KEY {what} (usage {usage:02X}: {levels} level{'s' if levels != 1 else ''}, "
                 f"{kind_text}; PSAM key {ident:02X})"]
        block = self.psam_block
        if block is None and len(data) - 8 * levels in (8, 16):
            block = len(data) - 8 * levels
        n, odd = divmod(len(data) - block, 8) if block and len(data) >= block else (0, 1)
        if odd or n > 3:
            lines.append(f"{INDENT}data ({len(data)} bytes): {_dump(data)}")
        else:
            lines += _factor_lines(data[:8 * n])
            lines.append(f"{INDENT}process-key factor: {_hex(data[8 * n:])}")
            self.psam_block = block
        return _Context("plain"), lines

    def _cipher_data(self, cmd):
        mode = psam.CIPHER_MODES.get(cmd.p1)
        ctx = _Context("cipher")
        ctx.mode = mode
        title = f"CIPHER DATA {mode.label}" if mode else f"CIPHER DATA with P1 {cmd.p1:02X} (not a mode)"
        if cmd.p2:
            title += f" (P2 {cmd.p2:02X})"
        data, block = cmd.data, self.psam_block
        lines = [title]
        if mode is not None and mode.iv and block and len(data) >= block:
            lines += [f"{INDENT}IV: {_hex(data[:block])}", f"{INDENT}data: {_dump(data[block:])}"]
        elif data:
            lines.append(f"{INDENT}data: {_dump(data)}")
        return ctx, lines

    def _init_sam_for_purchase(self, cmd):
        request, answer = INIT_SAM_FOR_PURCHASE
        data, fixed = cmd.data, _layout_length(request)
        ctx, lines = self._fields("INIT SAM FOR PURCHASE (MAC1)", data[:fixed], request, answer)
        factors = data[fixed:]
        if len(data) > fixed:
            lines += _factor_lines(factors) if len(factors) % 8 == 0 and len(factors) <= 24 else [
                f"{INDENT}factors ({len(factors)} bytes, not 8 each): {_dump(factors)}"]
        return ctx, lines

    def _credit_sam_for_purchase(self, cmd):
        data = cmd.data
        lines = ["CREDIT SAM FOR PURCHASE (checks MAC2)"]
        if data:
            lines.append(f"{INDENT}MAC2: {_dump(data)}" if len(data) == 4 else
                         f"{INDENT}data ({len(data)} bytes, expected MAC2 4): {_dump(data)}")
        return _Context("plain"), lines

    # -- responses --------------------------------------------------------------------------------------------
    def response(self, response: bytes, *, status: bool = True) -> list[str]:
        """The status word and its meaning (unless `status` is False), then the decoded data."""
        response = bytes(response)
        ctx, self._pending = self._pending, None
        try:
            return self._response(ctx, response, status)
        except Exception as exc:  # the decoder must never stop a trace
            return [f"response {_dump(response)} (not decoded: {type(exc).__name__})"]

    def _response(self, ctx, response: bytes, status: bool) -> list[str]:
        if len(response) < 2:
            return [f"response without a status word ({len(response)} bytes): {_dump(response)}"]
        data, sw = response[:-2], int.from_bytes(response[-2:], "big")
        lines = [f"SW {sw:04X} {meaning(sw)}"] if status else []
        if ctx is not None and ctx.kind == "get_response":
            chain, self._chain = self._chain, None
            ctx, data = (chain[0], chain[1] + data) if chain else (None, data)
        if ctx is not None and not ctx.applied:
            ctx.applied = True
            self._apply(ctx, sw)
        if sw >> 8 == 0x61:
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
                if self.df is _UNKNOWN:  # the guess held: the card is in that EF's DF
                    self.df, self.application = ctx.ef.parent, _app_of(ctx.ef.parent)
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
            return [f"challenge: {_dump(data)}"]
        elif kind == "internal_auth":
            return [f"authentication data: {_dump(data)}"]
        elif kind == "fields":
            return field_lines(data, ctx.layout, pad="")
        elif kind == "cipher":
            mode = ctx.mode
            if mode is not None and mode.kind == psam.MAC:
                return [f"MAC4: {_dump(data)}"]
            return [f"result: {_dump(data)}"]
        elif kind == "read_binary":
            return [f"{len(data)} bytes: {_dump(data)}"]
        else:
            lines = self._guess_lines(data)
        self._learn(data)
        return lines

    def _record_lines(self, ctx, data: bytes) -> list[str]:
        ef = ctx.ef
        if ef in _ITEM_FILES:
            return item_lines(data, ef.items)
        if ef is not None and ef.structure == CYCLIC:
            return cyclic_lines(ef, data)
        if ef is not None:
            return tlv_lines(data, chip=self.chip.name)
        return self._guess_lines(data)

    def _guess_lines(self, data: bytes) -> list[str]:
        """Data of an unknown origin: an SSSE record, known BER-TLV, or hex."""
        if len(data) >= 2 and data[0] in _ALL_ITEMS and data[1] == len(data) - 2 \
                and data[1] == _ALL_ITEMS[data[0]].length:
            return item_lines(data)
        if _all_known(data):
            return tlv_lines(data, chip=self.chip.name)
        return [f"data ({len(data)} bytes): {_dump(data)}"]

    def _learn(self, data: bytes) -> None:
        """Keep the DOLs the card announces (PDOL in the FCI, CDOLs in the records)."""
        for tag, value in _walk(data):
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


# -- helpers for commands --------------------------------------------------------------------------------------
def _app_of(node):
    while node is not None:
        if node in _ROOTS:
            return _ROOTS[node]
        node = node.parent
    return None


def _describe(node) -> str:
    if node.is_df:
        label = _label(node)
        prefix = f"{node.fid:04X} " if node.fid is not None else None
        return label[len(prefix):] if prefix and label.startswith(prefix) else label
    return f"{node.label}, {_sfi_text(node.sfi)}" if node.sfi else node.label


def _ref(node) -> str:
    return f"{node.fid:04X} ({_describe(node)})" if node.fid is not None else node.label


def _packed_pin_text(data: bytes) -> str:
    text = _hex(data)
    digits = text[:-1] if text.endswith("F") else text
    if not digits.isdigit():
        return f"{len(data)} bytes, not packed BCD"
    return f"{len(digits)} digits"


def _pin_block_text(data: bytes) -> str:
    if fin.pin_block_ok(data):
        return f"PIN block format 2: {int(_hex(data)[1], 16)} digits"
    return f"PIN data ({len(data)} bytes, not a format-2 block)"


def _mac_lines(data: bytes, with_body: bool = True) -> list[str]:
    if len(data) < 4:
        return [f"{INDENT}no MAC ({len(data)} bytes of data)"] if data or with_body else []
    lines = [f"{INDENT}data: {_dump(data[:-4])}"] if with_body and len(data) > 4 else []
    return lines + [f"{INDENT}MAC4: {_hex(data[-4:])}"]


def _auth_lines(data: bytes, first: str, second: str) -> list[str]:
    """INTERNAL / EXTERNAL AUTHENTICATE data: two 8-byte fields and an optional key version (P5 §6.4.3, §6.7.3)."""
    if len(data) not in (16, 17):
        return [f"{INDENT}data ({len(data)} bytes, expected 16 or 17): {_dump(data)}"] if data else []
    lines = [f"{INDENT}{first}: {_hex(data[:8])}", f"{INDENT}{second}: {_hex(data[8:16])}"]
    return lines + ([f"{INDENT}key version: {data[16]:02X}"] if len(data) == 17 else [])


def _dol_length(dol: bytes) -> int:
    try:
        return sum(length for _, length in ber.parse_dol(dol))
    except (ValueError, IndexError):
        return -1


def _split(data: bytes, dol: bytes):
    """The data a DOL asked for, split into (tag, value); None when the length does not match."""
    try:
        entries = ber.parse_dol(dol)
    except (ValueError, IndexError):
        return None
    if sum(length for _, length in entries) != len(data):
        return None
    out, i = [], 0
    for tag, length in entries:
        out.append((tag, data[i:i + length]))
        i += length
    return out


_COMMANDS = {
    0x00A4: Decoder._select,
    0x00B2: Decoder._read_record,
    0x00DC: Decoder._update_record,
    0x04DC: Decoder._update_record,
    0x00B0: Decoder._read_binary,
    0x00D6: Decoder._update_binary,
    0x04D6: Decoder._update_binary,
    0x0020: Decoder._verify,
    0x805E: Decoder._change_pin,
    0x0084: Decoder._get_challenge,
    0x0082: Decoder._external_authenticate,
    0x0088: Decoder._internal_authenticate,
    0x841E: Decoder._application_block,
    0x8418: Decoder._application_unblock,
    0x8416: Decoder._card_block,
    0x8424: Decoder._pin_unblock,
    0x04DA: Decoder._put_data,
    0x80A8: Decoder._gpo,
    0x80AE: Decoder._generate_ac,
    0x80CA: Decoder._get_data,
    0x00CA: Decoder._get_data,
    0x00C0: Decoder._get_response,
    # the medical purse of DF04 (P5 §7)
    0xB028: Decoder._initialize,
    0xB02A: Decoder._credit_for_load,
    0xB02C: Decoder._debit_for_purchase,
    0xB026: Decoder._get_balance,
    0xB02E: Decoder._get_transaction_proof,
    0xB056: Decoder._starting_day,
    # the PSAM (P9 §9)
    psam.INITIALIZE_ENVIRONMENT: Decoder._initialize_environment,
    psam.DELIVERY_SESSION_KEY: Decoder._delivery_session_key,
    psam.CIPHER_DATA: Decoder._cipher_data,
    psam.INIT_SAM_FOR_PURCHASE: Decoder._init_sam_for_purchase,
    psam.CREDIT_SAM_FOR_PURCHASE: Decoder._credit_sam_for_purchase,
}


def explain(apdu: bytes, response: bytes, decoder: Decoder | None = None) -> str:
    """The command line(s), then the response lines indented by four spaces."""
    decoder = decoder if decoder is not None else Decoder()
    lines = decoder.command(apdu) + ["    " + line for line in decoder.response(response)]
    return "\n".join(lines)
