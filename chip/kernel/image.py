"""The card image: all persistent state in one file, and the backends that commit it.

Layout (format 2, declared with construct below): a *base* - a magic, the format version, the
generation of the state it holds, the objects (name, kind, body), a CRC-32 over all of that -
followed by a log of *commit records*. A record holds the objects one commit changed, whole: a
head (its size and the generation it makes, and a CRC-32 of those 12 bytes of its own), the
objects, and a CRC-32 of the whole file before it (so the file's last 4 bytes are always the
CRC-32 of what precedes them, the envelope every format keeps). Opening replays the records over
the base in order; each must make the next generation.

A commit on the steady path appends one record to the image the card holds and fsyncs that file:
one fsync, no new file, no rename (the folder's entry does not change, so the folder needs no
fsync). So a durable VERIFY - anti-tearing's decrement committed before the comparison, then the
restore (LD/T 32 P5 §6.3) - costs two fsyncs. A record cut short by a power loss or a `kill -9`
- the file ends inside it, or one of its CRCs fails and no intact record follows it - is a *torn
tail*: opening ignores it, so the image holds the state of the last whole record, the old state
(the recovery at the next power-up of P7 §14, without any command); the image's owner cuts it off
before its next append. Anything else that fails a check is damage and is refused: a bad record
followed by an intact one, a generation out of sequence, a base that fails its CRC.

A commit *rewrites* the image instead when there is no base to append to (a new image, a
format-1 image: migrated at its first commit, a writer that does not own the image), when the log
would grow past the backend's `log_limit` (compaction: the log is folded into a new base) or the
file past `MAX_IMAGE_BYTES`, or when the image cannot be opened for writing or the path no longer
leads to the file the card locked (another program put a file there). A rewrite writes the
whole image to a temporary file of its own in the image's folder (`.<image>.<pid>.<random>.tmp`,
created with O_CREAT|O_EXCL|O_NOFOLLOW: a planted file or symlink of that name makes the commit
fail, it is never followed nor shared with another writer), fsyncs it, renames it over the image
and fsyncs the folder: two fsyncs, amortised over the `log_limit` bytes of records before it. A
crash before the rename leaves the old image, after it the new one; never a mix. A temporary file
a crash left behind is removed by the image's next owner before its first commit (a reading of
the folder serves the owners of all its images until the folder changes).

Every step of both paths is a named *write point* where tests (and the fault-injection API) can
cut the power: `append`, `append-half`, `fsync` (landed: the whole record is in the file) for an
append; `open-tmp`, `write-half`, `fsync-tmp`, `rename`, `fsync-folder` (landed: renamed in) for a
rewrite.

A file that fails any check is refused with a one-line reason instead of being half-used; so is a
file that is not a regular file (a folder, a FIFO, a device: checked with stat before it is opened)
or larger than `MAX_IMAGE_BYTES`. An intact file of a higher format version is "written by a newer
sscard". A format-1 file (the whole image, nothing may follow its CRC) is read as it is.

One owner: a card made or opened on an image holds an exclusive advisory lock
(`flock`, LOCK_EX|LOCK_NB) on the image file itself for as long as the card
lives (`Card.close()`, the end of a `with` block, the card being dropped, or
the process ending release it). Appends keep the file, and so the lock; a rewrite
locks its new file before renaming it into place, so the lock moves with the image
from inode to inode; an opener checks, once locked, that the file it locked is still
the one at the path, and an owner appends only to the file it locked.
Locking the image itself (not a sidecar `.lock` file) works in a read-only
folder (flock needs no write access), leaves no extra file to be deleted or
copied apart from the image, and cannot be lost by deleting a lock file. A
second opener, in the same process or another, gets `ImageInUse` naming the
holder (`card.img is in use by pid 1234 (sscard serve)`, from /proc/locks).
A reader that does not own the image (`snapshot`, `sscard info`) sees the state of the last
whole record: a record being appended meanwhile is a torn tail to it.
"""

import errno
import fcntl
import gc
import io
import os
import re
import secrets
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from construct import (
    Checksum,
    Const,
    ConstructError,
    Enum,
    FixedSized,
    GreedyBytes,
    GreedyRange,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64sb,
    Int64ub,
    PascalString,
    Prefixed,
    PrefixedArray,
    RawCopy,
    Struct,
    Switch,
    Terminated,
    this,
)

from chip.kernel.power import PowerLoss
from chip.kernel.store import KINDS, StorageFailure

MAGIC = b"SSCARDIM"
FORMAT_VERSION = 2
MAX_IMAGE_BYTES = 16 * 1024 * 1024  # a default card's image is about 3 KiB; anything this large is not one
LOG_LIMIT = 32 * 1024  # bytes of commit records after the base before a commit compacts them into a new base

_Value = Struct(
    "type" / Enum(Int8ub, int=1, bytes=2, str=3),
    "value" / Switch(this.type, {
        "int": Int64sb,
        "bytes": Prefixed(Int32ub, GreedyBytes),
        "str": PascalString(Int16ub, "utf8"),
    }),
)

_Vars = PrefixedArray(Int16ub, Struct("key" / PascalString(Int8ub, "ascii"), "value" / _Value))

_BODIES = {
    "vars": _Vars,
    "binary": Prefixed(Int32ub, GreedyBytes),
    "records": PrefixedArray(Int16ub, Prefixed(Int16ub, GreedyBytes)),
    "pin": Struct("value" / Prefixed(Int8ub, GreedyBytes), "limit" / Int8ub, "tries" / Int8ub),
}
_BODIES["key"] = _BODIES["pin"]
_BODIES["cyclic"] = Struct("capacity" / Int16ub, "records" / _BODIES["records"])

_Object = Struct(
    "name" / PascalString(Int8ub, "ascii"),
    "kind" / PascalString(Int8ub, "ascii"),
    "body" / Prefixed(Int32ub, Switch(this.kind, _BODIES, default=GreedyBytes)),
)

_OBJECTS = PrefixedArray(Int32ub, _Object)


def _whole_image(version: int, *tail):
    return Struct(
        "body" / RawCopy(Struct(
            "magic" / Const(MAGIC),
            "version" / Const(version, Int16ub),
            "generation" / Int64ub,
            "objects" / _OBJECTS,
        )),
        "crc32" / Checksum(Int32ub, lambda data: zlib.crc32(data), this.body.data),
        *tail,
    )


IMAGE_V1 = _whole_image(1, Terminated)
"""Format 1: the whole image and its CRC-32, nothing after it (read, never written any more)."""

BASE = _whole_image(FORMAT_VERSION)
"""The base of a format-2 image: the state at `generation`; commit records follow it."""

_COMMIT_OBJECTS = Struct("objects" / _OBJECTS, Terminated)

COMMIT = Struct(
    "head" / RawCopy(Struct("size" / Int32ub, "generation" / Int64ub)),  # size: bytes of `objects`
    "head_crc32" / Checksum(Int32ub, lambda data: zlib.crc32(data), this.head.data),
    "objects" / FixedSized(this.head.value.size, _COMMIT_OBJECTS),
    "crc32" / Int32ub,  # CRC-32 of the whole file before these 4 bytes (the writer keeps it running)
)
"""One commit record: the objects a commit changed, each whole, making `generation`."""

IMAGE = Struct("base" / BASE, "log" / GreedyRange(COMMIT), Terminated)
"""An intact format-2 image (the decoder checks more: the running CRC, the generations, torn tails)."""

_RECORD_PARSER = _COMMIT_OBJECTS.compile()  # the same declaration compiled: 6 us a record instead of 33

_HEAD = 16  # size, generation, head CRC
_TRAILER = 4  # the running CRC-32

_TYPE_OF = {int: "int", bool: "int", bytes: "bytes", str: "str"}


class ImageError(Exception):
    """A card image that cannot be used; the message says which and why, in one line."""


class ImageInUse(ImageError):
    """The image is owned by another card, in this process or another: `pid` and `program` (None: unknown)."""

    def __init__(self, path: str, pid: int | None = None, program: str | None = None):
        self.path, self.pid, self.program = path, pid, program
        super().__init__(f"{path} is in use by {describe_holder(pid, program)}")


def describe_holder(pid: int | None, program: str | None) -> str:
    if pid is None:
        return "another process"
    return f"pid {pid} ({program})" if program else f"pid {pid}"


# -- writing: the layout above, built by hand (construct's builder costs ~150 us for one Vars object; a
# commit's budget is a few us). tests/test_durable.py checks byte for byte that construct builds the same.

def _u(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


def _short(data: bytes, size: int) -> bytes:
    """`data` prefixed with its length in `size` bytes (OverflowError when it does not fit, as construct)."""
    return len(data).to_bytes(size, "big") + data


def _value(value) -> bytes:
    kind = _TYPE_OF[type(value)]  # KeyError for a type an image cannot hold, as construct's build
    if kind == "int":
        return b"\x01" + value.to_bytes(8, "big", signed=True)
    if kind == "bytes":
        return b"\x02" + _short(value, 4)
    return b"\x03" + _short(value.encode("utf8"), 2)


def _records(records) -> bytes:
    return _u(len(records), 2) + b"".join(_short(bytes(record), 2) for record in records)


def _body(obj) -> bytes:
    kind = obj.KIND
    if kind == "vars":
        values = obj.dump()
        return _u(len(values), 2) + b"".join(_short(key.encode("ascii"), 1) + _value(value)
                                             for key, value in values.items())
    if kind in ("pin", "key"):
        return _short(obj.value, 1) + bytes((obj.limit, obj.tries))
    if kind == "records":
        return _records(obj.records)
    if kind == "cyclic":
        return _u(obj.capacity, 2) + _records(obj.records)
    if kind == "binary":
        return _short(obj.dump(), 4)
    return bytes(obj.dump())  # a kind without a layout of its own: its bytes as they are (GreedyBytes)


def encode_object(name: str, obj) -> bytes:
    """One object as the image stores it (`_Object`): name, kind, body."""
    return _short(name.encode("ascii"), 1) + _short(obj.KIND.encode("ascii"), 1) + _short(_body(obj), 4)


def _objects(objects: dict, names) -> bytes:
    return _u(len(names), 4) + b"".join(encode_object(name, objects[name]) for name in names)


def encode(objects: dict, generation: int) -> bytes:
    """A whole image (a base with no log): the state `objects` at `generation`."""
    body = MAGIC + _u(FORMAT_VERSION, 2) + _u(generation, 8) + _objects(objects, list(objects))
    return body + _u(zlib.crc32(body), 4)


def commit_record(objects: dict, names, generation: int, running_crc: int) -> tuple[bytes, int]:
    """The record of a commit that changed `names`, making `generation`, appended to a file whose
    CRC-32 so far is `running_crc`: (the record, the file's CRC-32 after it)."""
    payload = _objects(objects, names)
    head = _u(len(payload), 4) + _u(generation, 8)
    head += _u(zlib.crc32(head), 4)
    crc = zlib.crc32(payload, zlib.crc32(head, running_crc))
    trailer = _u(crc, 4)
    return head + payload + trailer, zlib.crc32(trailer, crc)


# -- reading -------------------------------------------------------------------------------------------

def _load_value(kind, body):
    if kind == "vars":
        return {item.key: item.value.value for item in body}
    if kind in ("pin", "key"):
        return {"value": body.value, "limit": body.limit, "tries": body.tries}
    if kind == "records":
        return list(body)
    if kind == "cyclic":
        return {"records": list(body.records), "capacity": body.capacity}
    return body


def _load_objects(items, objects: dict, where: str) -> None:
    seen = set()
    for item in items:
        cls = KINDS.get(item.kind)
        if cls is None:
            raise ImageError(f"{where}: object {item.name!r} has unknown kind {item.kind!r} (newer sscard?)")
        if item.name in seen:
            raise ImageError(f"{where}: damaged card image: {item.name} stored twice")
        seen.add(item.name)
        objects[item.name] = cls.load(_load_value(item.kind, item.body))


def _damaged(where: str, exc: ConstructError) -> ImageError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ImageError(f"{where}: damaged card image ({reason})")


@dataclass
class Parsed:
    """What opening an image found: the state, and where its owner appends the next record."""

    objects: dict
    generation: int
    version: int
    base_end: int = 0  # the base's length (format 2)
    end: int = 0  # the end of the last whole record: everything after it is a torn tail
    crc: int = 0  # the CRC-32 of the file up to `end`
    torn: bool = False  # bytes follow `end`


def parse(data: bytes, where: str = "card image") -> Parsed:
    """Parse an image; ImageError names what is wrong (one line).

    The envelope (magic, version, ..., a CRC-32 of everything before it in the
    last 4 bytes) is what every format version keeps: an intact file of a
    higher version was written by a newer sscard, a broken one is damaged.
    """
    if not data.startswith(MAGIC):
        raise ImageError(f"{where}: not an sscard card image (bad magic)")
    version = int.from_bytes(data[8:10], "big") if len(data) >= 14 else FORMAT_VERSION
    if version > FORMAT_VERSION and zlib.crc32(data[:-4]).to_bytes(4, "big") == data[-4:]:
        raise ImageError(f"{where} was written by a newer sscard (format {version}; this one reads "
                         f"{FORMAT_VERSION}): open it with that sscard")
    objects: dict = {}
    if version == 1:
        try:
            body = IMAGE_V1.parse(data).body.value
        except ConstructError as exc:
            raise _damaged(where, exc) from None
        _load_objects(body.objects, objects, where)
        return Parsed(objects, body.generation, 1)
    stream = io.BytesIO(data)
    try:
        base = BASE.parse_stream(stream).body.value
    except ConstructError as exc:
        raise _damaged(where, exc) from None
    _load_objects(base.objects, objects, where)
    parsed = Parsed(objects, base.generation, FORMAT_VERSION, base_end=stream.tell())
    _replay(data, parsed, where)
    return parsed


def _replay(data: bytes, parsed: Parsed, where: str) -> None:
    """Apply the commit records after the base, up to the first one that is not whole (a torn tail)."""
    pos = parsed.base_end
    running = zlib.crc32(memoryview(data)[:pos])
    size = len(data)
    while size - pos >= _HEAD:
        head = data[pos:pos + 12]
        if _u(zlib.crc32(head), 4) != data[pos + 12:pos + _HEAD]:
            if _intact_record_after(data, pos + 1, parsed.generation):
                raise ImageError(f"{where}: damaged card image (the commit record at byte {pos} is damaged)")
            break  # the head of the last append, cut short or never written whole
        length, generation = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
        end = pos + _HEAD + length + _TRAILER
        if end > size:
            break  # the last append, cut short
        crc = zlib.crc32(memoryview(data)[pos:end - _TRAILER], running)
        if _u(crc, 4) != data[end - _TRAILER:end]:
            if end < size:
                raise ImageError(f"{where}: damaged card image (the commit record at byte {pos} fails its CRC)")
            break  # the last append, not all of it on disk
        if generation != parsed.generation + 1:
            raise ImageError(f"{where}: damaged card image (the commit record at byte {pos} makes generation "
                             f"{generation} after {parsed.generation})")
        _load_objects(_record_objects(data[pos + _HEAD:end - _TRAILER], where), parsed.objects, where)
        parsed.generation = generation
        running = zlib.crc32(data[end - _TRAILER:end], crc)
        pos = end
    parsed.end, parsed.crc, parsed.torn = pos, running, pos < size


def _record_objects(payload: bytes, where: str):
    """The objects of a record whose CRCs hold. The compiled parser is fast but raises plain Python errors
    on bad bytes: the declared one then parses again, for construct's reason in the one-line error."""
    try:
        return _RECORD_PARSER.parse(payload).objects
    except Exception:  # whatever it was, the declared parser decides and names it
        try:
            return _COMMIT_OBJECTS.parse(payload).objects
        except ConstructError as exc:
            raise _damaged(where, exc) from None


def _intact_record_after(data: bytes, start: int, generation: int) -> bool:
    """Whether an intact record head of a later generation starts at or after `start` (then the bad
    record before it is damage, not the torn tail of the last append)."""
    view = memoryview(data)
    for pos in range(start, len(data) - _HEAD - _TRAILER + 1):
        if zlib.crc32(view[pos:pos + 12]) == int.from_bytes(view[pos + 12:pos + _HEAD], "big"):
            length, later = int.from_bytes(view[pos:pos + 4], "big"), int.from_bytes(view[pos + 4:pos + 12], "big")
            if later > generation and pos + _HEAD + length + _TRAILER <= len(data):
                return True
    return False


def decode(data: bytes, where: str = "card image") -> tuple[dict, int]:
    """Parse an image into fresh persistent objects and its generation; ImageError names what is wrong."""
    parsed = parse(data, where)
    return parsed.objects, parsed.generation


# -- what a card needs: checked when an image is opened ----------------------------------------------

_TYPE_NAMES = {bool: "int", int: "int", bytes: "bytes", str: "str"}


def check_objects(objects: dict, expected: dict, where: str, *, optional=frozenset(), allowed=None) -> None:
    """Refuse (ImageError) an image whose objects are not what a card of its kind is made of.

    `expected`: the objects of a fresh personalisation of that kind ({name: Persistent}): each must be
    there with the same kind; a Vars object has each of the fresh one's values with the same type
    (except `optional` (name, key) pairs, which an older image may lack); a key is not empty, a PIN
    1 to 8 bytes; a counter is within its limit; a cyclic file within its capacity; no record is
    empty. `allowed`: {(name, key): the values it may take} (the lifecycle machines). Objects the
    fresh card does not have are left alone.
    """
    for name, model in expected.items():
        obj = objects.get(name)
        if obj is None:
            raise ImageError(f"{where}: damaged card image: missing {name}")
        if obj.KIND != model.KIND:
            raise ImageError(f"{where}: damaged card image: {name} is {obj.KIND}, expected {model.KIND}")
        problem = _mismatch(name, obj, model, optional)
        if problem:
            raise ImageError(f"{where}: damaged card image: {problem}")
    for (name, key), values in (allowed or {}).items():
        value = getattr(objects.get(name), key, None)
        if value is not None and value not in values:
            raise ImageError(f"{where}: damaged card image: {name}.{key} is {value!r}, expected one of "
                             f"{', '.join(sorted(values))}")


def _mismatch(name: str, obj, model, optional) -> str | None:
    kind = model.KIND
    if kind == "vars":
        values = obj.dump()
        for key, fresh in model.dump().items():
            if key not in values:
                if (name, key) in optional:
                    continue
                return f"missing {name}.{key}"
            got, want = _TYPE_NAMES[type(values[key])], _TYPE_NAMES[type(fresh)]
            if got != want:
                return f"{name}.{key} is {got}, expected {want}"
    elif kind in ("pin", "key"):
        if kind == "key" and not obj.value:
            return f"{name} is an empty key"
        if kind == "pin" and not 1 <= len(obj.value) <= 8:
            return f"{name} holds a {len(obj.value)}-byte PIN, expected 1 to 8 bytes"
        if obj.tries > obj.limit:
            return f"{name} has {obj.tries} tries left, more than its limit {obj.limit}"
    elif kind == "cyclic":
        if len(obj.records) > obj.capacity:
            return f"{name} has {len(obj.records)} records, more than its capacity {obj.capacity}"
    if kind in ("records", "cyclic"):
        for number, record in enumerate(obj.records, 1):
            if not record:
                return f"{name} record {number} is empty"
    return None




# -- the backends ---------------------------------------------------------------------------------------

class MemoryBackend:
    """No image path: commits only pass one write point (so power cuts can be tested in memory)."""

    path: str | None = None

    def __init__(self):
        self.write_point: Callable[[str, bool], None] | None = None  # may raise PowerLoss: fault injection
        self.generation = 0

    def commit(self, objects: dict, journal: list | None = None) -> None:
        if self.write_point is not None:
            self.write_point("commit", False)
        self.generation += 1

    def close(self) -> None:
        pass


class SnapshotBackend(MemoryBackend):
    """A card image read without taking it (`Card.open(path, read_only=True)`): nothing is ever written."""

    def __init__(self, path: str, generation: int = 0):
        super().__init__()
        self.path = path
        self.generation = generation

    def commit(self, objects: dict, journal: list | None = None) -> None:
        raise StorageFailure(f"{self.path}: opened read-only (a snapshot): nothing is written")


class FileBackend:
    """Commits to the image at `path`: one appended record and one fsync, or a whole rewrite (the
    module's docstring says when and how).

    `FileBackend.open(path)` and `FileBackend.create(path)` make the owner of the image (it holds the
    image's lock until `close()`, and appends only to the file it locked); `FileBackend(path)` alone
    writes without owning (a fleet writing images nobody has opened yet): each of its commits rewrites.
    `log_limit`: the bytes of records the log may hold before a commit compacts it (0: every commit
    rewrites, as format 1 did).
    """

    def __init__(self, path, generation: int = 0, *, lock_fd: int | None = None, owner: bool = False,
                 new: bool = False, parsed: Parsed | None = None):
        self.path = os.fspath(path)
        self.target = os.path.realpath(self.path)  # an image reached by a symlink is written where it is
        self.folder = os.path.dirname(self.target)
        self.generation = generation
        self.write_point = None
        self.sync = True
        self.owner = owner
        self.closed = False
        self.log_limit = LOG_LIMIT
        self._names: dict[int, str] = {}  # id(object) -> its name in the store (`_changed`)
        self._fd = lock_fd  # the locked descriptor of the image's current file
        self._appender: int | None = None  # that same file open for writing: `_fd` itself when it was opened
        # read-write (`_lock_image`), else a descriptor opened at need
        self._new = new  # the image does not exist yet: the first commit must not replace anything
        self._mode = None
        self._tidy = owner  # an owner removes the temporary files a crash left, before its first write
        if lock_fd is not None:
            self._mode = stat.S_IMODE(os.fstat(lock_fd).st_mode)
            if fcntl.fcntl(lock_fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR:
                self._appender = lock_fd  # opened read-write (`_lock_image`): the commits append through the lock
        # where the next record goes (None: no base of this format to append to: the next commit rewrites),
        # the base's length, the file's CRC-32 up to `_end`, and whether bytes may follow `_end` (a torn tail)
        self._end: int | None = None
        self._base_end = 0
        self._crc = 0
        self._torn = False
        if owner and parsed is not None and parsed.version == FORMAT_VERSION:
            self._end, self._base_end, self._crc, self._torn = parsed.end, parsed.base_end, parsed.crc, parsed.torn

    def _point(self, name: str, landed: bool) -> None:
        if self.write_point is not None:
            self.write_point(name, landed)

    def temp_name(self) -> str:
        """A new temporary file name of this writer, next to the image."""
        base = os.path.basename(self.target)
        return os.path.join(self.folder, f".{base}.{os.getpid()}.{secrets.token_hex(6)}.tmp")

    def commit(self, objects: dict, journal: list | None = None) -> None:
        """Make `objects` durable: append the record of what `journal` touched, or rewrite the image
        (no journal: everything may have changed)."""
        if self.closed:
            raise StorageFailure(f"{self.path}: this card was closed: its image is no longer written by it")
        if self._tidy:  # once per owner, and only when it writes: opening many images stays one stat each
            self._tidy = False
            _remove_stale_temps(self.target)
        if journal is not None and self._end is not None:
            record, crc = commit_record(objects, self._changed(objects, journal), self.generation + 1, self._crc)
            end = self._end + len(record)
            if end - self._base_end <= self.log_limit and end <= MAX_IMAGE_BYTES:
                fd = self._appending()
                if fd is not None:
                    self._append(fd, record, crc)
                    return
        self._rewrite(objects)

    def _changed(self, objects: dict, journal: list) -> list[str]:
        """The names of the objects the transaction's journal touched (`Store.write` entries name the
        object, `Store.add` entries the name), by a map from object to name kept across commits."""
        names = self._names
        changed: dict[str, None] = {}
        for obj, attr, _old in journal:
            if obj is objects:  # Store.add
                changed[attr] = None
                continue
            name = names.get(id(obj))
            if name is None or objects.get(name) is not obj:  # new objects since: map them again
                names = self._names = {id(each): key for key, each in objects.items()}
                name = names.get(id(obj))
            if name is not None:
                changed[name] = None
        return [name for name in changed if name in objects]

    def _appending(self) -> int | None:
        """A descriptor to append to the file this card locked, or None if it cannot have one (the path
        no longer leads to that file - another program put a file in its place -, or the file cannot be
        written): the commit then rewrites, and says why if that fails too."""
        locked = os.fstat(self._fd)  # type: ignore[arg-type]
        try:
            now = os.stat(self.target)
        except OSError:
            return None
        if (now.st_dev, now.st_ino) != (locked.st_dev, locked.st_ino):
            return None
        if self._appender is None:
            try:
                fd = os.open(self.target, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                return None
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (locked.st_dev, locked.st_ino):
                os.close(fd)
                return None
            self._appender = fd
        return self._appender

    def _append(self, fd: int, record: bytes, crc: int) -> None:
        """One record at the end of the log, then one fsync of the file (its entry in the folder is unchanged)."""
        end: int = self._end  # type: ignore[assignment]
        self._point("append", False)
        try:
            if self._torn:  # the tail of an append that did not land: cut off first
                os.ftruncate(fd, end)
                self._torn = False
            os.lseek(fd, end, os.SEEK_SET)
            self._torn = True  # until the record is whole, what follows `end` is not the image's
            half = len(record) // 2
            _write_all(fd, record[:half])
            self._point("append-half", False)
            _write_all(fd, record[half:])
        except OSError as exc:
            raise StorageFailure(write_error(self.path, exc)) from exc
        self._torn = False
        self._end, self._crc = end + len(record), crc
        self.generation += 1  # the record is whole in the file: opening it gives the new state
        self._point("fsync", True)
        if self.sync:
            try:
                os.fsync(fd)
            except OSError as exc:  # in the file but perhaps not durable: 6581, memory kept new; the next
                self._end = None  # commit rewrites the image whole
                raise StorageFailure(write_error(self.path, exc), landed=True) from exc

    def _rewrite(self, objects: dict) -> None:
        """The whole image to a new file, fsynced, renamed over the image, the folder fsynced."""
        data = encode(objects, self.generation + 1)
        if len(data) > MAX_IMAGE_BYTES:
            raise StorageFailure(f"{self.path}: cannot write the card image: {len(data)} bytes is more than a "
                                 f"card image may hold ({MAX_IMAGE_BYTES})")
        self._point("open-tmp", False)
        tmp = self.temp_name()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageFailure(write_error(self.path, exc)) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file nobody else has: the lock to move in
            if self._mode is not None:
                os.fchmod(fd, self._mode)
            half = len(data) // 2
            _write_all(fd, data[:half])
            self._point("write-half", False)
            _write_all(fd, data[half:])
            self._point("fsync-tmp", False)
            if self.sync:
                os.fsync(fd)
            self._point("rename", False)
            self._place(tmp)
        except PowerLoss:
            os.close(fd)  # the power went: what was written stays, as on a real disk (the next owner tidies)
            raise
        except OSError as exc:
            os.close(fd)
            _unlink_quietly(tmp)
            raise StorageFailure(write_error(self.path, exc)) from exc
        old, appender, self._new = self._fd, self._appender, False
        self._fd = self._appender = None
        if self.owner:  # the lock moved in with the new file, which this card appends to from now on
            self._fd = self._appender = fd
            self._end = self._base_end = len(data)
            self._crc, self._torn = zlib.crc32(data), False
        else:
            os.close(fd)
        for stale in {old, appender} - {None}:
            os.close(stale)  # type: ignore[arg-type]
        self.generation += 1  # the new image is in place, whatever happens next
        self._point("fsync-folder", True)
        if self.sync:
            try:
                fsync_folder(self.folder)
            except OSError as exc:  # the new image is in place but perhaps not durable: 6581, memory kept new
                raise StorageFailure(write_error(self.path, exc), landed=True) from exc

    def _place(self, tmp: str) -> None:
        """Rename the new file over the image; a new image must not replace one made meanwhile."""
        if not self._new:
            os.replace(tmp, self.target)
            return
        try:
            os.link(tmp, self.target)
        except FileExistsError:
            _unlink_quietly(tmp)
            raise FileExistsError(errno.EEXIST, "made by another program meanwhile") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise
            if os.path.lexists(self.target):  # a file system without hard links: check, then rename
                raise FileExistsError(errno.EEXIST, "made by another program meanwhile") from None
            os.replace(tmp, self.target)
            return
        _unlink_quietly(tmp)  # the image is in place (linked): a leftover name is tidied by the next owner

    def _release(self) -> None:
        fds = {self._fd, self._appender} - {None}
        self._fd = self._appender = None
        for fd in fds:
            os.close(fd)  # type: ignore[arg-type]

    def close(self) -> None:
        """Give the image up: its lock is released (other programs may open it now)."""
        self.closed = self.owner
        self._release()

    def __del__(self):
        if "_appender" in self.__dict__:
            self._release()

    @classmethod
    def open(cls, path) -> tuple["FileBackend", dict]:
        """Open an image as its owner: lock it (ImageInUse if another card has it), read and parse it."""
        path = os.fspath(path)
        fd = _lock_image(path)
        try:
            parsed = parse(_read_bounded(fd, path), path)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, parsed.generation, lock_fd=fd, owner=True, parsed=parsed), parsed.objects

    @classmethod
    def create(cls, path, *, overwrite: bool = False) -> "FileBackend":
        """The owner of a new image at `path` (written by the first commit); an existing file is replaced
        only with `overwrite` and once locked (never while another card has it)."""
        path = os.fspath(path)
        target = os.path.realpath(path)
        if os.path.lexists(path) or os.path.lexists(target):
            if not overwrite:
                raise ImageError(f"{path} already exists: personalising would replace that card "
                                 f"(sscard personalize --force, or Card.from_profile(..., overwrite=True))")
            return cls(path, 0, lock_fd=_lock_image(path), owner=True)
        folder = os.path.dirname(target)
        try:
            is_folder = stat.S_ISDIR(os.stat(folder).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            raise ImageError(f"{path}: cannot make a card image there: the folder {folder} does not exist "
                             f"(create it first)") from None
        except OSError:
            is_folder = True  # not even searchable: the first commit says why, in one line
        if not is_folder:
            raise ImageError(f"{path}: cannot make a card image there: {folder} is not a folder")
        return cls(path, 0, owner=True, new=True)


def read_bytes(path) -> bytes:
    """An image file's bytes, without owning it: regular files only (a FIFO or a device is never
    opened), read with a bound; ImageError names what is wrong."""
    path = os.fspath(path)
    fd = _open_image(path)
    try:
        return _read_bounded(fd, path)
    finally:
        os.close(fd)


def snapshot(path) -> tuple[SnapshotBackend, dict]:
    """Read an image without owning it (whoever has it may be writing it: this is its state now)."""
    path = os.fspath(path)
    objects, generation = decode(read_bytes(path), path)
    return SnapshotBackend(path, generation), objects


# -- opening, locking, reading -------------------------------------------------------------------------

_FILE_TYPES = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
               (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(path: str, mode: int) -> ImageError:
    what = next((name for test, name in _FILE_TYPES if test(mode)), "not a regular file")
    return ImageError(f"{path}: is {what}, not a card image file (give the path of a card image)")


def _open_image(path: str, writable: bool = False) -> int:
    """A descriptor of the regular file at `path` (stat first: a FIFO or a device is never opened):
    read-only, or with `writable` read-write where the file may be written (else read-only all the
    same: such an image's commits rewrite it, `FileBackend._appending`)."""
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such card image (make one with 'sscard personalize --state {path}')") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read card image ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(path, st.st_mode)
    if st.st_size > MAX_IMAGE_BYTES:
        raise ImageError(f"{path}: {st.st_size} bytes is too large for a card image (at most {MAX_IMAGE_BYTES})")
    try:
        # O_NONBLOCK: should a FIFO be swapped in after the stat, the open does not wait for a writer
        fd = _open_flags(target, os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, writable)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such card image (make one with 'sscard personalize --state {path}')") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read card image ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(path, mode)
    return fd


def _open_flags(target: str, flags: int, writable: bool) -> int:
    """`os.open` read-write when `writable` and the file allows it, else read-only."""
    if writable:
        try:
            return os.open(target, os.O_RDWR | flags)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
    return os.open(target, os.O_RDONLY | flags)


def _lock_image(path: str) -> int:
    """Open and lock the image's current file, read-write where it may be written: the owner appends
    through the descriptor that holds the lock (one descriptor per loaded card, chip.fleet); retried
    when a commit replaced the file between open and lock."""
    target = os.path.realpath(path)
    for _ in range(20):
        fd = _open_image(path, writable=True)
        try:
            locked = _try_lock(fd, path)
            if not locked:
                gc.collect()  # a card of this process that nobody can reach any more owns nothing
                locked = _try_lock(fd, path)
            if not locked:
                raise ImageInUse(path, *holder_of(os.fstat(fd)))
            mine = os.fstat(fd)
            try:
                now = os.stat(target)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the file we locked was replaced meanwhile: lock the new one
    raise ImageError(f"{path}: the card image keeps being replaced while it is opened: another program is "
                     f"writing it without sscard's lock")


def _try_lock(fd: int, path: str) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        raise ImageError(f"{path}: cannot lock the card image ({exc.strerror}): its file system does not "
                         f"support flock") from None
    return True


def _read_bounded(fd: int, path: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError as exc:
            raise ImageError(f"{path}: cannot read card image ({exc.strerror})") from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_IMAGE_BYTES:
            raise ImageError(f"{path}: too large for a card image (more than {MAX_IMAGE_BYTES} bytes)")
        chunks.append(chunk)


_TEMP_NAME = re.compile(r"\.(.+)\.\d+\.[0-9a-f]+\.tmp")  # `temp_name`'s: the image's name, then a pid and a nonce
_listings: dict[str, tuple[int, dict[str, list[str]]]] = {}  # folder -> (its mtime, image -> its temporary files)


def _remove_stale_temps(target: str) -> None:
    """Remove the temporary files of this image a crash left (only its owner, who holds the lock, calls this:
    no other writer of this image can be using one).

    The folder is read again only when it changed since this process last read it (its mtime: every
    file made, renamed or removed in it changes it), and what a reading found is kept by image: the
    owners of a fleet of n images make their first commits in turn (appends: the folder unchanged),
    and each would otherwise read all n names (n² in a round). The mtime is taken before the reading:
    a change during it reads the folder again next time. One that a crash of another writer makes
    within the same tick of the file system's clock as the change before it (a jiffy on Linux's own
    file systems, 2 s on FAT) leaves the mtime as it was, and its file for a later tidy-up: litter,
    never used again, as every writer makes a name of its own (`temp_name`)."""
    folder, base = os.path.split(target)
    try:
        changed = os.stat(folder).st_mtime_ns
    except OSError:
        return
    listing = _listings.get(folder)
    if listing is None or listing[0] != changed:
        try:
            names = os.listdir(folder)
        except OSError:
            return
        temps: dict[str, list[str]] = {}
        for name in names:
            if name.endswith(".tmp") and (found := _TEMP_NAME.fullmatch(name)):
                temps.setdefault(found.group(1), []).append(name)
        listing = _listings[folder] = (changed, temps)
    for name in listing[1].pop(base, ()):
        _unlink_quietly(os.path.join(folder, name))  # unlink never follows a symlink


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def holder(path) -> tuple[int | None, str | None] | None:
    """Who holds the image's lock now: (pid, program) ((None, None): someone unknown), or None if nobody.

    Read from /proc/locks without taking any lock (so it never disturbs an owner that is starting)."""
    try:
        st = os.stat(os.path.realpath(os.fspath(path)))
    except OSError:
        return None
    pid, program = holder_of(st)
    if pid is not None:
        return pid, program
    if os.path.exists("/proc/locks"):
        return None
    fd = _open_image(os.fspath(path))  # no /proc/locks: ask the lock itself
    try:
        if _try_lock(fd, os.fspath(path)):
            return None
        return None, None
    finally:
        os.close(fd)


def holder_of(st) -> tuple[int | None, str | None]:
    """The pid holding the flock on the file of `st` (from /proc/locks) and its program, or (None, None)."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None, None
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    same_inode = []
    for line in lines:
        fields = line.split()
        if "FLOCK" not in fields or "->" in fields:
            continue
        i = fields.index("FLOCK")
        try:
            pid = int(fields[i + 3])
            major_minor, inode_text = fields[i + 4].rsplit(":", 1)
            inode = int(inode_text)
        except (IndexError, ValueError):
            continue
        if inode != st.st_ino or pid <= 0:
            continue
        if major_minor == dev:
            return pid, program_of(pid)
        same_inode.append(pid)
    if len(same_inode) == 1:  # file systems that show another device number (overlays)
        return same_inode[0], program_of(same_inode[0])
    return None, None


_PYTHON_VALUE_OPTIONS = {"-W", "-X", "--check-hash-based-pycs"}
_COMMAND_WORD = re.compile(r"[a-z][a-z0-9-]*")


def program_of(pid: int) -> str | None:
    """A short name of what process `pid` runs, from /proc/PID/cmdline: `sscard serve`, `pytest`, `python`."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    args = [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]
    if not args:
        return None
    name, rest = os.path.basename(args[0]), args[1:]
    if name.startswith("python"):
        i = 0
        while i < len(rest) and rest[i].startswith("-") and rest[i] not in ("-m", "-c", "-"):
            i += 2 if rest[i] in _PYTHON_VALUE_OPTIONS else 1
        if i < len(rest) and rest[i] == "-m" and i + 1 < len(rest):
            name, rest = rest[i + 1], rest[i + 2:]
        elif i < len(rest) and rest[i] == "-c":
            return f"{name} -c"
        elif i < len(rest):
            name, rest = os.path.basename(rest[i]), rest[i + 1:]
    if name in ("sscard", "reader.cli"):
        command = next((arg for arg in rest if _COMMAND_WORD.fullmatch(arg)), None)
        return f"sscard {command}" if command else "sscard"
    if name.endswith(".__main__"):
        name = name[:-len(".__main__")]
    return name


def write_error(path: str, exc: OSError) -> str:
    """One line: the image, what failed, what to do."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"{path}: cannot write the card image: no space left in {folder} (free some space)"
    if code == errno.EROFS:
        return f"{path}: cannot write the card image: {folder} is on a read-only file system (use a writable folder)"
    if code in (errno.EACCES, errno.EPERM):
        return f"{path}: cannot write the card image: permission denied in {folder} (use a folder you can write)"
    if code == errno.ENOENT:
        return f"{path}: cannot write the card image: the folder {folder} does not exist (create it first)"
    if code == errno.EEXIST:
        return f"{path}: cannot write the card image: {exc.strerror or 'a file is in the way'}"
    if code == errno.ELOOP:
        return f"{path}: cannot write the card image: a symlink is in the way in {folder}"
    return f"{path}: cannot write the card image ({exc.strerror or exc})"


def fsync_folder(folder: str) -> None:
    """Make the folder's entries durable (the rename of a commit, the images a fleet wrote): fsync the
    folder itself. An OSError is the caller's to report."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class PowerCut:
    """A write-point hook that loses power at the n-th write point it sees (1-based).

    Its `seen` list records the points passed, so a sweep knows how many points a
    command has.
    """

    def __init__(self, n: int):
        self.n = n
        self.seen: list[str] = []

    def __call__(self, point: str, landed: bool) -> None:
        self.seen.append(point)
        if len(self.seen) == self.n:
            raise PowerLoss(point, landed)


def cut_power_at(n: int) -> PowerCut:
    """The hook to set as a backend's `write_point`: power goes at the n-th write point."""
    return PowerCut(n)
