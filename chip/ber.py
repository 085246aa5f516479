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
