"""Declared data items of simple-TLV records: tag, name, and a construct layout.

The same declarations personalise a card (value -> record bytes) and explain
one (record bytes -> value) in `sscard info` and the trace decoder, so the
byte layout of every record is written down exactly once.
"""

import datetime

import construct
from construct import Adapter, Bytes, Int8ub, PaddedString

from chip.kernel.records import tlv

construct.possiblestringencodings.setdefault("gbk", 1)


class Bcd(Adapter):
    """Digits packed two per byte, right-padded with F (V2 §7, P10 §5.4.1: cn items)."""

    def __init__(self, length: int):
        super().__init__(Bytes(length))
        self.length = length

    def _decode(self, obj, context, path):
        return obj.hex().upper().rstrip("F")

    def _encode(self, obj, context, path):
        text = str(obj)
        if len(text) > 2 * self.length or not text.isdigit():
            raise construct.ExplicitError(f"{text!r} does not fit {self.length} BCD bytes")
        return bytes.fromhex(text.ljust(2 * self.length, "F"))


class BcdDate(Adapter):
    """A date as 4 BCD bytes YYYYMMDD."""

    def __init__(self):
        super().__init__(Bytes(4))

    def _decode(self, obj, context, path):
        text = obj.hex()
        try:
            return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        except ValueError:
            return text.upper()  # not a date: show the raw digits

    def _encode(self, obj, context, path):
        return bytes.fromhex(obj.strftime("%Y%m%d"))


class Item:
    """One record item: `tag`, human `name`, fixed-size construct `layout`."""

    __slots__ = ("layout", "name", "tag")

    def __init__(self, tag: int, name: str, layout):
        self.tag = tag
        self.name = name
        self.layout = layout

    @property
    def length(self) -> int:
        return self.layout.sizeof()

    def record(self, value) -> bytes:
        return tlv(self.tag, self.layout.build(value))

    def encode(self, value) -> bytes:
        """`record()` for values from outside (a terminal, a CLI): ValueError names the bad field."""
        try:
            return self.record(value)
        except construct.ConstructError as exc:
            path = str(getattr(exc, "path", "") or "").replace("(building)", "").replace("->", "").strip()
            message = str(exc).splitlines()[-1]
            head, _, tail = message.partition(": ")
            message = head if head == tail else message  # construct repeats its message
            raise ValueError(f"{self.name} {path or 'value'}: {message}") from None

    def value(self, record: bytes):
        """Decode a whole record (tag, length, value)."""
        return self.layout.parse(record[2:])


def Ascii(length: int):
    return PaddedString(length, "ascii")


def Gbk(length: int):
    return PaddedString(length, "gbk")


BINARY = Bytes
BYTE = Int8ub
