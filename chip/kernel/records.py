"""Linear record files holding simple-TLV records (`tag len value`).

A record's identifier is its first byte, the tag, so READ RECORD can address
a record by number or by identifier (P3 §5.3.1).
"""

from chip.kernel.store import Persistent, register


def tlv(tag: int, value: bytes) -> bytes:
    """One simple-TLV record (value up to 254 bytes, one-byte length)."""
    return bytes((tag, len(value))) + value


_UNINDEXED: tuple = (None, {})  # shared by every Records not searched yet: a card holds dozens of files


@register
class Records(Persistent):
    """The records of one linear EF, numbered from 1.

    `records` is a tuple that is never changed in place: a write (`Store.write`) or its rollback
    puts another tuple there. What is derived from it (the identifier index of `numbers_of`) is
    kept with the tuple it was derived from and made again when that is no longer the one there.
    """

    KIND = "records"
    __slots__ = ("_index", "records")

    def __init__(self, records=()):
        self.records = tuple(records)
        self._index: tuple = _UNINDEXED  # (the records it indexes, identifier -> record numbers)

    def dump(self):
        return list(self.records)

    @classmethod
    def load(cls, value):
        return cls(value)

    def numbers_of(self, tag: int) -> tuple[int, ...]:
        """The numbers of the records whose identifier (first byte) is `tag`, in order (P3 §5.3.1)."""
        records = self.records
        indexed, index = self._index
        if indexed is not records:
            found: dict[int, list[int]] = {}
            for number, record in enumerate(records, 1):
                if record:
                    found.setdefault(record[0], []).append(number)
            index = {identifier: tuple(numbers) for identifier, numbers in found.items()}
            self._index = (records, index)
        return index.get(tag, ())


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
