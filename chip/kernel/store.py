"""Persistent state and the transaction that changes it.

Every persistent value of the card lives in a named object held by one
`Store`. Applets read the objects' attributes directly (that is the hot path)
and change them only through `Store.write`, which journals the old value. The
card OS commits once at the end of a command, or rolls the journal back when
the command fails, so one command's writes land together or not at all (the
Java Card `beginTransaction`/`commitTransaction` model). A command that must
make something durable *before* it goes on - the PIN try counter - calls
`commit()` itself.

Where the state goes when committed is the backend's business (see
`chip.kernel.image`): memory, or a card image file written atomically.
"""

from typing import TYPE_CHECKING, Any

from chip.kernel.power import PowerLoss


class StorageFailure(Exception):
    """The backend could not make a commit durable (disk full, I/O error); the message names the image.

    `landed`: the new state is in place anyway (only its durability failed, e.g. the folder's fsync),
    so the store keeps it in memory too, as for a PowerLoss that landed.
    """

    def __init__(self, message: str, landed: bool = False):
        super().__init__(message)
        self.landed = landed


class Persistent:
    """Base of persistent objects: `KIND` names the image layout that stores them."""

    KIND = ""

    def dump(self):
        raise NotImplementedError

    @classmethod
    def load(cls, value):
        raise NotImplementedError


class Vars(Persistent):
    """A bag of small named values (int, bytes or str): lifecycle states, flags, settings."""

    KIND = "vars"

    def __init__(self, **values):
        self.__dict__.update(values)

    if TYPE_CHECKING:  # the fields are the keyword arguments each owner gives (see its personalize)

        def __getattr__(self, name: str) -> Any: ...

    def dump(self):
        return dict(self.__dict__)

    @classmethod
    def load(cls, value):
        return cls(**value)


class Binary(Persistent):
    """The content of a transparent EF."""

    KIND = "binary"
    __slots__ = ("data",)

    def __init__(self, data: bytes = b""):
        self.data = data

    def dump(self):
        return self.data

    @classmethod
    def load(cls, value):
        return cls(value)


KINDS: dict[str, type[Persistent]] = {}


def register(cls):
    """Make a Persistent subclass known to the image loader by its KIND."""
    KINDS[cls.KIND] = cls
    return cls


register(Vars)
register(Binary)


class Store:
    """The card's persistent objects, their journal, and the backend that makes them durable."""

    def __init__(self, backend, objects=None):
        self.backend = backend
        self.objects: dict[str, Persistent] = dict(objects or {})
        self.journal: list = []

    def __getitem__(self, name: str):
        return self.objects[name]

    def get(self, name: str, default=None):
        return self.objects.get(name, default)

    def add(self, name: str, obj: Persistent) -> Persistent:
        """Create a persistent object; it becomes durable with the next commit."""
        self.journal.append((self.objects, name, _ABSENT))
        self.objects[name] = obj
        return obj

    def write(self, obj, attr: str, value) -> None:
        """Change one persistent attribute inside the current transaction."""
        self.journal.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    def commit(self) -> None:
        """Make every journaled change durable at once, or none of them.

        On a simulated power loss the in-memory objects are left equal to what
        is durable (new if the write had landed, old otherwise) and the
        PowerLoss propagates. Any other storage failure rolls back and raises
        StorageFailure, which the card answers with `6581`.
        """
        if not self.journal:
            return
        try:
            self.backend.commit(self.objects, self.journal)  # the journal says what changed
        except PowerLoss as cut:
            if cut.landed:
                self.journal.clear()
            else:
                self.abort()
            raise
        except StorageFailure as failure:  # the backend's own one-line reason (chip.kernel.image names the file)
            if failure.landed:
                self.journal.clear()
            else:
                self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise StorageFailure(str(exc)) from exc
        self.journal.clear()

    def abort(self) -> None:
        """Undo every uncommitted write, newest first."""
        journal = self.journal
        while journal:
            obj, attr, old = journal.pop()
            if obj is self.objects:
                if old is _ABSENT:
                    del obj[attr]
                else:
                    obj[attr] = old
            else:
                setattr(obj, attr, old)


class _Absent:
    def __repr__(self):
        return "<absent>"


_ABSENT = _Absent()
