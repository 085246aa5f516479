"""The data-object dictionary: what each BER-TLV tag is called and how its value reads.

The tags of the financial application (EMV 4.3 Book 3 annex A, PBOC 3.0: FCI, GPO and
GENERATE AC answers, records, DOLs), of the SSSE's FCI (LD/T 32 P5 §6.11 table 36, SR §10.1) and
of ISO/IEC 7816-4's FCP (§5.3.3), each with a formatter that turns a value into words:
the bit tables of AIP, AUC and CVR, the CVM list, currencies and countries (ISO 4217,
ISO 3166), dates. The facts of the card come from `chip/`: the financial application's
cryptogram types, CVR bits, CVN and algorithm identifiers (`chip.apps.financial`), the
algorithm flags (`chip.kernel.crypto.NAMES`), the SSSE's GET DATA objects and the codes
of its lifecycle states and lock reasons (`chip.apps.ssse`).

`tlv_lines` shows nested BER-TLV one object a line; what does not parse is hex.
"""

import datetime

from chip.apps import financial as fin
from chip.apps.ssse import ACTIVATION_CODES, ACTIVATION_TAG, LOCK_REASON_TAG, LOCK_REASONS
from chip.iso import ber
from chip.kernel.crypto import NAMES
from chip.kernel.lifecycle import PERMANENT
from reader.decode.files import name_label, name_text
from reader.decode.values import INDENT, digits, dump, hex_of, sfi_text, tag_text, text, time_of

MAX_DEPTH = 12  # nested BER-TLV templates deeper than this are shown as hex


def _constructed(tag: int) -> bool:
    n = max(1, (tag.bit_length() + 7) // 8)
    return bool(tag >> (8 * (n - 1)) & 0x20)


def _amount_of(value: bytes) -> str | None:
    d = digits(value)
    if d is None:
        return None
    n = int(d)
    return f"{n // 100}.{n % 100:02d}"


def _yymmdd(value: bytes) -> str | None:
    d = digits(value)
    if d is None or len(d) != 6:
        return None
    yy = int(d[:2])
    try:
        return datetime.date(2000 + yy if yy < 50 else 1900 + yy, int(d[2:4]), int(d[4:])).isoformat()
    except ValueError:
        return None


def _name_value(value: bytes, chip: str | None = None):
    """A DF name or AID: as people write it, with what it is (`chip`: whose names come first)."""
    written, label = name_text(value), name_label(value, chip)
    if written == hex_of(value):  # the hex shown before it already says it
        return label
    return f"{written} ({label})" if label else written


CURRENCIES = {156: "CNY", 344: "HKD", 446: "MOP", 840: "USD", 978: "EUR", 826: "GBP", 392: "JPY", 410: "KRW"}
COUNTRIES = {156: "China", 344: "Hong Kong", 446: "Macao", 840: "United States", 826: "United Kingdom",
             392: "Japan", 410: "Korea"}


def _code(table):
    def fmt(value):
        d = digits(value)
        return table.get(int(d)) if d else None
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
        lines.append(f"{sfi_text(sfi)}, {records}, {oda} for offline data authentication")
    return None, lines


def _dol(value):
    try:
        entries = ber.parse_dol(value)
    except (ValueError, IndexError):
        return None
    return None, [f"{tag_text(tag)} ({length}) {tag_name(tag)}" for tag, length in entries]


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
    text = hex_of(value).rstrip("F")
    pan, sep, rest = text.partition("D")
    if not sep or not pan.isdigit() or len(rest) < 7 or not rest[:7].isdigit():
        return None
    yy, mm = int(rest[:2]), rest[2:4]
    return f"PAN {pan}, expiry {2000 + yy if yy < 50 else 1900 + yy}-{mm}, service code {rest[4:7]}"


def _pan(value):
    text = hex_of(value).rstrip("F")
    return text if text.isdigit() else None


def _priority(value):
    if len(value) != 1:
        return None
    text = f"priority {value[0] & 0x0F}"
    return text + (", cardholder confirmation required" if value[0] & 0x80 else "")


def _sfi_value(value):
    return sfi_text(value[0]) if len(value) == 1 else None


def _short_ef_id(value):
    return sfi_text(value[0] >> 3) if len(value) == 1 else None


def _code_table(value):
    return f"ISO/IEC 8859-{value[0]}" if len(value) == 1 else None


ARC_TEXT = {b"Y1": "offline approved", b"Z1": "offline declined", b"Y3": "approved (unable to go online)",
            b"Z3": "declined (unable to go online)"}


def _arc(value):
    shown = text(value)
    if shown is None or len(value) != 2:
        return None
    if value in fin.ARC_APPROVED:
        return f"{shown} approved"
    return f"{shown} {ARC_TEXT.get(value, 'declined')}"


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
    lines = [] if cvr[:1] == b"\x03" else [f"length byte {hex_of(cvr[:1])} (expected 03)"]
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
    lines.append(f"CVR {hex_of(value[3:7])}")
    lines += [INDENT + line for line in cvr_lines(value[3:7])]
    if len(value) > 7:
        algorithm = value[7]
        lines.append(f"algorithm {algorithm:02X}" + (f" = {ALGORITHM_NAMES[algorithm]}" if algorithm in ALGORITHM_NAMES
                                                     else ""))
    if len(value) > 8:
        lines.append(f"more: {hex_of(value[8:])}")
    return None, lines


def _algorithm_flag(value):
    """9F0C in the SSSE FCI: 86 01 <flag>, the flag as chip.kernel.crypto.NAMES names it (SR §10.1)."""
    if len(value) == 3 and value[:2] == b"\x86\x01":
        name = NAMES.get(value[2])
        return f"{name}, flag {value[2]:02X}" if name else f"unknown algorithm flag {value[2]:02X}"
    return None


def sm_indicator(value):
    if len(value) == 1 and value[0] in fin.ALGORITHMS:
        return fin.ALGORITHMS[value[0]].name
    return None


def _pin_tries(value):
    return f"{int.from_bytes(value, 'big')} tries left" if value else None


def _service_code(value):
    d = digits(value)
    return d[-3:] if d else None


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
    0x50: ("application label", text),
    0x57: ("track 2 equivalent data", _track2),
    0x5A: ("application PAN", _pan),
    0x5F20: ("cardholder name", text),
    0x5F24: ("application expiration date", _yymmdd),
    0x5F25: ("application effective date", _yymmdd),
    0x5F28: ("issuer country code", _code(COUNTRIES)),
    0x5F2A: ("transaction currency code", _code(CURRENCIES)),
    0x5F2D: ("language preference", text),
    0x5F30: ("service code", _service_code),
    0x5F34: ("PAN sequence number", digits),
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
    0x9F12: ("application preferred name", text),
    0x9F13: ("last online ATC register", _integer),
    0x9F14: ("lower consecutive offline limit", _integer),
    0x9F17: ("PIN try counter", _pin_tries),
    0x9F1A: ("terminal country code", _code(COUNTRIES)),
    0x9F1F: ("track 1 discretionary data", text),
    0x9F21: ("transaction time", time_of),
    0x9F23: ("upper consecutive offline limit", _integer),
    0x9F26: ("application cryptogram", None),
    0x9F27: ("cryptogram information data", _cid),
    0x9F36: ("application transaction counter (ATC)", _integer),
    0x9F37: ("unpredictable number", None),
    0x9F38: ("PDOL", _dol),
    0x9F42: ("application currency code", _code(CURRENCIES)),
    0x9F44: ("application currency exponent", _integer),
    0x9F4E: ("merchant name and location", text),
    0x9F4F: ("log format", _dol),
    0x9F61: ("cardholder ID number", text),
    0x9F62: ("cardholder ID type", _choice(ID_TYPES)),
    0x9F79: ("electronic cash balance", _amount_of),
    0xA5: ("FCI proprietary template", None),
    0xBF0C: ("FCI issuer discretionary data", None),
    0xDF69: ("SM algorithm indicator", sm_indicator),
    fin.ACTIVATION_TAG: ("activation flag", _choice({0: "not activated", 1: "activated"})),  # DF7F, set by PUT DATA
    # the SSSE's GET DATA objects (project extension, chip.apps.ssse): activation state and lock reason
    ACTIVATION_TAG: ("SSSE activation state (extension)", _choice(
        {code: state for state, code in ACTIVATION_CODES.items()})),
    LOCK_REASON_TAG: ("SSSE lock reason (extension)", _choice(
        {code: reason or "none" for reason, code in LOCK_REASONS.items() if reason != PERMANENT})),
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
         fin.ACTIVATION_TAG: "activation flag"}


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
    head = f"{pad}{tag_text(tag)} {tag_name(tag, parent)}"
    if not value:
        return [f"{head}: (empty)"]
    summary, details = _readable(tag, value, parent, chip)
    shown = dump(value)
    line = f"{head}: {shown}" + (f" = {summary}" if summary and summary != shown else "")
    return [line] + [f"{pad}{INDENT}{detail}" for detail in details]


def tlv_lines(data: bytes, pad: str = "", parent: int | None = None, format1: str | None = None,
              depth: int = 0, chip: str | None = None) -> list[str]:
    """Nested BER-TLV, one object a line; what does not parse is shown as hex (`chip`: whose DF names)."""
    try:
        objects = ber.parse(data)
    except ValueError:
        return [f"{pad}not BER-TLV ({len(data)} bytes): {dump(data)}"]
    lines = []
    for tag, value in objects:
        if tag == 0x80 and format1:
            lines += _format1_lines(value, pad, format1)
        elif _constructed(tag):
            lines.append(f"{pad}{tag_text(tag)} {tag_name(tag, parent)}")
            if depth >= MAX_DEPTH:
                lines.append(f"{pad}{INDENT}{dump(value)}")
            else:
                lines += tlv_lines(value, pad + INDENT, tag, format1, depth + 1, chip)
        else:
            lines += primitive_lines(tag, value, pad, parent, chip)
    return lines


def _format1_lines(value: bytes, pad: str, kind: str) -> list[str]:
    """Tag 80: GPO (AIP, AFL) or GENERATE AC (CID, ATC, AC, IAD) without tags."""
    lines = [f"{pad}80 {tag_name(0x80)}: {dump(value)}"]
    if kind == "gpo" and len(value) >= 2:
        fields = ((0x82, value[:2]), (0x94, value[2:]))
    elif kind == "ac" and len(value) >= 11:
        fields = ((0x9F27, value[:1]), (0x9F36, value[1:3]), (0x9F26, value[3:11]), (0x9F10, value[11:]))
    else:
        return lines
    for tag, part in fields:
        lines += primitive_lines(tag, part, pad + INDENT)
    return lines


def walk(data: bytes, depth: int = 0):
    """Every (tag, value) in nested BER-TLV; stops quietly at what does not parse."""
    try:
        objects = ber.parse(data)
    except ValueError:
        return
    for tag, value in objects:
        yield tag, value
        if _constructed(tag) and depth < MAX_DEPTH:
            yield from walk(value, depth + 1)


def all_known(data: bytes) -> bool:
    try:
        objects = ber.parse(data)
    except ValueError:
        return False
    return bool(objects) and all(tag in TAGS for tag, _ in objects)
