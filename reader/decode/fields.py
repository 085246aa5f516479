"""Fixed-length fields: the untagged layouts of the purse and PSAM commands and of cyclic records.

A layout is a tuple of fields `(name, length, readable form or None)`: the data of a
medical purse command or answer (LD/T 32 P5 §7 tables 50-78, docs/card/commands.md), of a
PSAM purchase command (P9 §9.9), or one record of a cyclic EF (P3 §5.3.2; DF04 EF08 and
EF15, V2 table 9, docs/card/files.md). `field_lines` shows data of a layout one field a
line, or as hex when its length is not the layout's. The facts of the card come from
`chip/`: the purse's transaction types (`chip.apps.purse`), the algorithm flags
(`chip.kernel.crypto.NAMES`), the cyclic files and their record lengths
(`chip.apps.ssse_files`).
"""

from chip.apps.purse import TYPES as PURSE_TYPES
from chip.apps.ssse_files import DETAIL, DF04_EF08, DF04_EF15
from chip.kernel.crypto import NAMES
from reader.decode.context import Context
from reader.decode.values import INDENT, digits, dump, hex_of


def uint(value: bytes) -> str:
    return str(int.from_bytes(value, "big"))


def fen(value: bytes) -> str:
    """An amount in fen, binary (V2 §8.5.3.5; P5 §7)."""
    n = int.from_bytes(value, "big")
    return f"{n} fen = {n // 100}.{n % 100:02d}"


def cn_time(value: bytes) -> str | None:
    """cn 7: YYYYMMDDhhmmss."""
    d = digits(value)
    if d is None or len(d) != 14:
        return None
    return f"{d[:4]}-{d[4:6]}-{d[6:8]} {d[8:10]}:{d[10:12]}:{d[12:]}"


def cn_date(value: bytes) -> str | None:
    """cn 4: YYYYMMDD."""
    d = digits(value)
    return f"{d[:4]}-{d[4:6]}-{d[6:]}" if d is not None and len(d) == 8 else None


def algorithm_id(value: bytes) -> str | None:
    """The algorithm identifier of the INITIALIZE answers and of INIT SAM FOR PURCHASE: the FCI flag."""
    return NAMES.get(value[0]) if len(value) == 1 else None


def purse_type(value: bytes) -> str | None:
    """The transaction type byte (V2 table 51 digit, as chip.apps.purse codes it)."""
    if len(value) != 1 or value[0] not in PURSE_TYPES:
        return None
    return f'"{chr(value[0])}" {PURSE_TYPES[value[0]]}'


SPECIAL_CATEGORIES = {"1": "work-injury medical", "2": "maternity medical", "3": "medical aid", "9": "other"}


def _special_category(value: bytes) -> str | None:
    """DF04 EF15 category (V2 table 52)."""
    text = value.decode("latin-1")
    return f'"{text}" {SPECIAL_CATEGORIES[text]}' if text in SPECIAL_CATEGORIES else None


# The three amounts of a medical settlement (P5 §7.6, V2 table 9): in INITIALIZE FOR PURCHASE, an EF08
# record, INIT SAM FOR PURCHASE.
AMOUNTS = (("account amount", 4, fen), ("self-pay amount", 4, fen), ("pooled-fund amount", 4, fen))
# An EF08 record: its fields, in order and with their lengths, as chip.apps.ssse_files.DETAIL declares
# them; here each field's name for people and its readable form, by the field's name there.
_DETAIL_FORMS = {"seq": ("sequence number", uint), "type": ("transaction type", purse_type),
                 "terminal": ("terminal number", None), "time": ("time", cn_time),
                 **{field: (name, fmt) for field, (name, _, fmt) in zip(("account", "self_pay", "fund"), AMOUNTS)}}


def _detail_field(field) -> tuple:
    name, fmt = _DETAIL_FORMS[field.name]
    return name, field.sizeof(), fmt


DETAIL_LAYOUT = tuple(_detail_field(field) for field in DETAIL.subcons)
SPECIAL_LAYOUT = (("sequence number", 2, uint), ("category", 1, _special_category))
_CYCLIC_LAYOUTS = {DF04_EF08: DETAIL_LAYOUT, DF04_EF15: SPECIAL_LAYOUT}


def layout_length(layout) -> int:
    return sum(length for _, length, _ in layout)


def field_lines(data: bytes, layout, pad: str = INDENT) -> list[str]:
    """Data of a fixed layout, one field a line (`name: HEX = readable`); hex when the length differs."""
    if layout is None or len(data) != layout_length(layout):
        expected = f", expected {layout_length(layout)}" if layout is not None else ""
        return [f"{pad}data ({len(data)} bytes{expected}): {dump(data)}"]
    lines, i = [], 0
    for name, length, fmt in layout:
        value = data[i:i + length]
        i += length
        shown = hex_of(value)
        try:
            readable = fmt(value) if fmt else None
        except Exception:  # a formatter meeting odd data: the hex is still shown
            readable = None
        lines.append(f"{pad}{name}: {shown}" + (f" = {readable}" if readable and readable != shown else ""))
    return lines


def mac_lines(data: bytes, with_body: bool = True) -> list[str]:
    """Data secured by a MAC4 after it (LD/T 32 P5 §6.2; the issuer scripts, EMV Book 2 §9.2):
    the data unless `with_body` is False (the caller showed it), then the MAC."""
    if len(data) < 4:
        return [f"{INDENT}no MAC ({len(data)} bytes of data)"] if data or with_body else []
    lines = [f"{INDENT}data: {dump(data[:-4])}"] if with_body and len(data) > 4 else []
    return lines + [f"{INDENT}MAC4: {hex_of(data[-4:])}"]


def command(title: str, data: bytes, request, answer) -> tuple[Context, list[str]]:
    """A command of fixed-layout data: the title, its fields, and the layout its answer will have."""
    ctx = Context("fields")
    ctx.layout = answer
    lines = [title]
    if request is not None:
        if data:
            lines += field_lines(data, request)
    elif data:
        lines.append(f"{INDENT}data ({len(data)} bytes): {dump(data)}")
    return ctx, lines


def cyclic_lines(ef, data: bytes, pad: str = "") -> list[str]:
    """Records of a cyclic EF (fixed length, untagged; P3 §5.3.2), one after the other, fields below."""
    size = ef.size
    if not size or not data or len(data) % size:
        return [f"{pad}{ef.label} ({len(data)} bytes, records of {size}): {dump(data)}"]
    layout = _CYCLIC_LAYOUTS.get(ef)
    lines = []
    for i in range(0, len(data), size):
        record = data[i:i + size]
        lines.append(f"{pad}{ef.label}: {dump(record)}")
        if layout is not None:
            lines += field_lines(record, layout, pad + INDENT)
    return lines
