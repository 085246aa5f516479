"""Linear record files holding simple-TLV records (`tag len value`).

A record's identifier is its first byte, the tag, so READ RECORD can address
a record by number or by identifier (P3 §5.3.1).
"""

from chip.kernel.store import Persistent, register


def tlv(tag: int, value: bytes) -> bytes:
    """One simple-TLV record (value up to 254 bytes, one-byte length)."""
    return bytes((tag, len(value))) + value


@register
class Records(Persistent):
    """The records of one linear EF, numbered from 1."""

    KIND = "records"
    __slots__ = ("records",)

    def __init__(self, records=()):
        self.records = tuple(records)

    def dump(self):
        return list(self.records)

    @classmethod
    def load(cls, value):
        return cls(value)

    def by_number(self, number: int) -> bytes | None:
        records = self.records
        if 0 < number <= len(records):
            return records[number - 1]
        return None

    def number_of(self, tag: int) -> int:
        """Record number of the first record with identifier `tag`, or 0."""
        for number, record in enumerate(self.records, 1):
            if record[0] == tag:
                return number
        return 0


@register
class CyclicRecords(Records):
    """A cyclic EF (ISO 7816-4; P3 §5.3.2): fixed-length untagged records, record 1 the newest.

    Writing a new record pushes it in front; past `capacity` the oldest drops out.
    """

    KIND = "cyclic"
    __slots__ = ("capacity",)

    def __init__(self, records=(), capacity: int = 0):
        super().__init__(records)
        self.capacity = capacity

    def dump(self):
        return {"records": list(self.records), "capacity": self.capacity}

    @classmethod
    def load(cls, value):
        return cls(value["records"], value["capacity"])

    def pushed(self, record: bytes) -> tuple:
        """The records after writing `record` as the newest (store them with `store.write`)."""
        return ((bytes(record),) + self.records)[: self.capacity]
