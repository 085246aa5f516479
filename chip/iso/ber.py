"""BER-TLV encoding (ISO/IEC 7816-4 §5.2) for FCI/FCP templates and EMV data objects."""


def ber_tlv(tag: int, value: bytes) -> bytes:
    """Encode one data object; `tag` is the tag's bytes read as a big-endian integer (0x9F0C)."""
    tag_bytes = tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")
    n = len(value)
    if n < 0x80:
        length = bytes((n,))
    elif n < 0x100:
        length = bytes((0x81, n))
    else:
        length = bytes((0x82, n >> 8, n & 0xFF))
    return tag_bytes + length + value


def read_tag(data: bytes, i: int) -> tuple[int, int]:
    """Read a BER tag at `i`; return (tag as int, next index)."""
    tag = data[i]
    i += 1
    if tag & 0x1F == 0x1F:
        while True:
            b = data[i]
            tag = tag << 8 | b
            i += 1
            if not b & 0x80:
                break
    return tag, i


def read_length(data: bytes, i: int) -> tuple[int, int]:
    n = data[i]
    i += 1
    if n < 0x80:
        return n, i
    count = n & 0x7F
    if not 1 <= count <= 3:
        raise ValueError("unsupported BER length")
    return int.from_bytes(data[i:i + count], "big"), i + count


def parse(data: bytes) -> list[tuple[int, bytes]]:
    """Parse a sequence of BER-TLV data objects (one level); ValueError on a malformed one."""
    out, i, n = [], 0, len(data)
    try:
        while i < n:
            if data[i] in (0x00, 0xFF):  # padding between objects
                i += 1
                continue
            tag, i = read_tag(data, i)
            length, i = read_length(data, i)
            if i + length > n:
                raise ValueError("value runs past the end")
            out.append((tag, data[i:i + length]))
            i += length
    except IndexError:
        raise ValueError("truncated data object") from None
    return out


def parse_dol(dol: bytes) -> list[tuple[int, int]]:
    """A data object list (PDOL, CDOL): tags and lengths, no values."""
    out, i = [], 0
    while i < len(dol):
        tag, i = read_tag(dol, i)
        length, i = read_length(dol, i)
        out.append((tag, length))
    return out
