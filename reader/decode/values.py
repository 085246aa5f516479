"""Readable forms of bytes: hex dumps, digits, text, times, SFIs and tags.

Every part of the decoder shows a value the same way: hex in upper case, long
data cut at `HEX_LIMIT` bytes, BCD digits only when every nibble is a digit,
text only when it prints (ASCII, else GBK: the card's names are Chinese,
LD/T 32 V2 §7). Nothing here raises on odd data: it answers None and the
caller shows the hex.
"""

INDENT = "  "
HEX_LIMIT = 256  # generic hex dumps show at most this many bytes


def hex_of(data: bytes) -> str:
    return data.hex().upper()


def dump(data: bytes) -> str:
    """The bytes in hex, `(none)` when there are none, cut after HEX_LIMIT bytes."""
    if not data:
        return "(none)"
    if len(data) <= HEX_LIMIT:
        return hex_of(data)
    return f"{hex_of(data[:HEX_LIMIT])}… ({len(data)} bytes in all)"


def tag_text(tag: int) -> str:
    """A BER-TLV tag in hex, as many bytes as it has (ISO/IEC 7816-4 §5.2.2.1)."""
    n = max(1, (tag.bit_length() + 7) // 8)
    return f"{tag:0{2 * n}X}"


def sfi_text(sfi: int) -> str:
    return f"SFI {sfi}" if sfi < 10 else f"SFI {sfi:X}h"


def digits(value: bytes) -> str | None:
    """BCD (cn) digits, or None when a nibble is no digit."""
    text = hex_of(value)
    return text if text.isdigit() else None


def text(value: bytes) -> str | None:
    """Printable ASCII (or GBK) as a quoted string."""
    for encoding in ("ascii", "gbk"):
        try:
            decoded = value.decode(encoding)
        except UnicodeDecodeError:
            continue
        if decoded.isprintable():
            return f'"{decoded}"'
    return None


def time_of(value: bytes) -> str | None:
    """A time hhmmss in BCD (EMV 9F21; the time of INIT SAM FOR PURCHASE, LD/T 32 P9 §9.9)."""
    d = digits(value)
    return f"{d[:2]}:{d[2:4]}:{d[4:]}" if d and len(d) == 6 else None
