"""The SSSE's record items: simple-TLV records (`tag len value`) read by their declarations.

Each record file of the SSSE declares its items (`chip.apps.ssse_files`: tag, name and
construct layout, LD/T 32 V2 table 9), the same declarations that personalise the card;
here they decode a record back. Added are the words for a few coded items (V2 tables 13,
49, 50) and the parts of the card identification code (V2 table 10).
"""

import datetime

from chip.apps.ssse_files import IDENTIFICATION, ITEMS, MEDICAL_ITEMS, RID
from chip.kernel.items import Bcd
from reader.decode.values import digits, dump, hex_of

ALL_ITEMS = {**ITEMS, **MEDICAL_ITEMS}  # every item an SSSE record may hold, by tag


def _identification(value: bytes) -> str | None:
    """EF05 01, split as chip.apps.ssse_files.IDENTIFICATION declares it (V2 table 10)."""
    if len(value) != IDENTIFICATION.sizeof():
        return None
    fields = IDENTIFICATION.parse(value)
    region = digits(fields.region)
    parts = [f"region {region}" if region else f"region {hex_of(fields.region)}"]
    rid = fields.rid
    parts.append(f"RID {hex_of(RID)}" if rid == RID else f"bytes 4-8 {hex_of(rid)} (not the RID {hex_of(RID)})")
    parts += [f"serial {hex_of(fields.serial)}", f"authentication code {hex_of(fields.auth_code)}"]
    return ", ".join(parts)


def _field_text(value) -> str:
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return hex_of(value)
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
        known = ALL_ITEMS
    else:
        known = items if isinstance(items, dict) else {item.tag: item for item in items}
    lines, i = [], 0
    while i < len(record):
        if i + 2 > len(record) or i + 2 + record[i + 1] > len(record):
            lines.append(f"{pad}not a simple-TLV record: {dump(record[i:])}")
            break
        tag, length = record[i], record[i + 1]
        value = record[i + 2:i + 2 + length]
        i += 2 + length
        item = known.get(tag)
        if item is None:
            lines.append(f"{pad}{tag:02X} unknown item ({length} bytes): {dump(value)}")
            continue
        head = f"{pad}{tag:02X} {item.name}: {dump(value)}"
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
    return [head + (f" = {readable}" if readable and readable != hex_of(raw) else "")]
