"""The card image: all persistent state in one file, and the backends that commit it.

Layout (declared with construct): a magic, a format version, a generation
counter that grows with every commit, the objects (name, kind, body), and a
CRC-32 over all of that; nothing may follow. A file that fails any of these checks is refused with a
one-line reason instead of being half-used.

Atomicity: a commit writes the whole image to `<image>.tmp`, fsyncs it,
renames it over the image and fsyncs the folder. A crash before the rename
leaves the old image, after it the new one; never a mix. Every step is a
named *write point* where tests (and the fault-injection API) can cut the
power.
"""

import os
import zlib

from construct import (
    Checksum,
    Const,
    ConstructError,
    Enum,
    GreedyBytes,
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

from .store import KINDS, PowerLoss

MAGIC = b"SSCARDIM"
FORMAT_VERSION = 1

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

IMAGE = Struct(
    "body" / RawCopy(Struct(
        "magic" / Const(MAGIC),
        "version" / Const(FORMAT_VERSION, Int16ub),
        "generation" / Int64ub,
        "objects" / PrefixedArray(Int32ub, _Object),
    )),
    "crc32" / Checksum(Int32ub, lambda data: zlib.crc32(data), this.body.data),
    Terminated,
)

_TYPE_OF = {int: "int", bool: "int", bytes: "bytes", str: "str"}


class ImageError(Exception):
    """A card image that cannot be used; the message says which and why, in one line."""


def _dump_value(obj):
    if obj.KIND != "vars":
        return obj.dump()
    return [{"key": k, "value": {"type": _TYPE_OF[type(v)], "value": v}} for k, v in obj.dump().items()]


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


def encode(objects: dict, generation: int) -> bytes:
    items = [{"name": name, "kind": obj.KIND, "body": _dump_value(obj)} for name, obj in objects.items()]
    return IMAGE.build({"body": {"value": {"generation": generation, "objects": items}}})


def decode(data: bytes, where: str = "card image") -> tuple[dict, int]:
    """Parse an image into fresh persistent objects; ImageError names what is wrong."""
    if not data.startswith(MAGIC):
        raise ImageError(f"{where}: not an sscard card image (bad magic)")
    try:
        parsed = IMAGE.parse(data)
    except ConstructError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"{where}: damaged card image ({reason})") from None
    body = parsed.body.value
    objects = {}
    for item in body.objects:
        cls = KINDS.get(item.kind)
        if cls is None:
            raise ImageError(f"{where}: object {item.name!r} has unknown kind {item.kind!r} (newer sscard?)")
        objects[item.name] = cls.load(_load_value(item.kind, item.body))
    return objects, body.generation


class MemoryBackend:
    """No image path: commits only pass one write point (so power cuts can be tested in memory)."""

    path = None

    def __init__(self):
        self.write_point = None  # callable(point) that may raise PowerLoss, for fault injection
        self.generation = 0

    def commit(self, objects: dict) -> None:
        if self.write_point is not None:
            self.write_point("commit", False)
        self.generation += 1


class FileBackend:
    """Atomic commits of the whole image to `path` (write new, fsync, rename, fsync folder)."""

    def __init__(self, path, generation: int = 0):
        self.path = os.fspath(path)
        self.tmp = self.path + ".tmp"
        self.folder = os.path.dirname(os.path.abspath(self.path))
        self.generation = generation
        self.write_point = None
        self.sync = True

    def _point(self, name: str, landed: bool) -> None:
        if self.write_point is not None:
            self.write_point(name, landed)

    def commit(self, objects: dict) -> None:
        data = encode(objects, self.generation + 1)
        self._point("open-tmp", False)
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            half = len(data) // 2
            os.write(fd, data[:half])
            self._point("write-half", False)
            _write_all(fd, data[half:])
            self._point("fsync-tmp", False)
            if self.sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._point("rename", False)
        os.replace(self.tmp, self.path)
        self.generation += 1  # the new image is in place, whatever happens next
        self._point("fsync-folder", True)
        if self.sync:
            dfd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    @classmethod
    def open(cls, path) -> tuple["FileBackend", dict]:
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ImageError(f"{path}: no such card image (make one with 'sscard personalize --state {path}')") from None
        except OSError as exc:
            raise ImageError(f"{path}: cannot read card image ({exc.strerror})") from None
        objects, generation = decode(data, path)
        return cls(path, generation), objects


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def cut_power_at(n: int):
    """A write-point hook that loses power at the n-th write point it sees (1-based).

    Returns the hook; its `.seen` list records the points passed, so a sweep
    knows how many points a command has.
    """
    seen = []

    def hook(point: str, landed: bool) -> None:
        seen.append(point)
        if len(seen) == n:
            raise PowerLoss(point, landed)

    hook.seen = seen
    return hook
