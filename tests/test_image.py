"""The card image: personalise into a file, reopen, persistence, damage detection, atomic commits.

The commit log of format 2 (appends, torn tails, compaction, format 1's migration, fsync counts) has its
own file, tests/test_durable.py; what is here holds for any commit: a fresh image is a base alone."""

import os
import random
import zlib

import pytest
from helpers import OK, snapshot
from ssse_helpers import SELECT_DF04, SELECT_SSSE, Terminal, change_pin, read_record, verify

import chip
from chip import Card, ImageError, PowerLoss
from chip.fleet import Fleet
from chip.kernel import image as image_mod
from chip.kernel.image import BASE, FORMAT_VERSION, IMAGE, LOG_LIMIT, MAGIC, ImageInUse, cut_power_at
from chip.kernel.pin import pack
from chip.personalization.profile import shipped_names
from reader import SimReader

VERIFY_RIGHT = verify("123456")
VERIFY_WRONG = verify("999999")
VERIFY_NEW = verify("654321")
CHANGE_PIN = change_pin("123456", "654321")
SW_MEMORY_FAILURE = b"\x65\x81"
GENERATION = slice(10, 18)  # magic (8) + version (2) + generation (8), inside the CRC-covered body

# READ RECORD with the records' exact lengths (Le 00 asks for them with 6Cxx, P5 §6.10.4)
EF05_READS = [read_record(n, 5, 4, le) for n, le in enumerate((18, 3, 6, 14, 6, 6, 11), 1)]  # by number, SFI 5
EF06_READS = [read_record(tag, 6, 0, le) for tag, le in  # by identifier, SFI 6
              ((0x08, 20), (0x09, 32), (0x4E, 22), (0x0A, 3), (0x0B, 3), (0x0C, 5), (0x0D, 6))]
READ_DF04_EF05_84 = read_record(0x84, 5, 0, 5)  # DF04 EF05: the PIN or RK1DF04 (V2 table 7)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "card.img")


@pytest.fixture
def card(path):
    return Card.from_profile(state=path)


@pytest.fixture
def closed(card):
    """The fixture card, closed: its image is nobody's (tests that damage it, then open it)."""
    card.close()
    return card


def reopen(card, path):
    """What a restart does: the card gives its image up, the image is opened again."""
    card.close()
    return Card.open(path)


def session(card) -> SimReader:
    reader = SimReader(card)
    reader.reset()
    assert reader.transmit(SELECT_SSSE)[-2:] == OK
    return reader


def pin_protected_read(reader) -> bytes:
    """A record only a verified PIN (or RK1DF04) opens: DF04 EF05 item 84."""
    assert reader.transmit(SELECT_DF04)[-2:] == OK
    return reader.transmit(READ_DF04_EF05_84)


def parsed(path):
    with open(path, "rb") as f:
        return BASE.parse(f.read())


def generation(path) -> int:
    """The generation of the state the image holds (its base's, or its last commit record's)."""
    with open(path, "rb") as f:
        return image_mod.decode(f.read())[1]


def image_error(path) -> str:
    with pytest.raises(ImageError) as excinfo:
        Card.open(path)
    assert excinfo.type is ImageError  # not ImageInUse: nobody holds it
    message = str(excinfo.value)
    assert message and "\n" not in message
    assert excinfo.value.__cause__ is None
    return message


# -- writing and reopening ---------------------------------------------------------------------

def test_from_profile_writes_an_image(card, path):
    assert card.path == path
    assert os.listdir(os.path.dirname(path)) == ["card.img"]  # no .tmp left behind
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"SSCARDIM" == MAGIC
    whole = IMAGE.parse(data)
    assert whole.log == []  # a new image is a base alone: its first commit wrote it whole
    image = whole.base
    body = image.body.value
    assert body.magic == b"SSCARDIM"
    assert body.version == FORMAT_VERSION == 2
    assert body.generation == 1
    assert image.crc32 == zlib.crc32(image.body.data)
    assert image.body.data == data[:-4]  # the CRC-32 covers the header (magic, version, generation) too
    assert int.from_bytes(data[-4:], "big") == zlib.crc32(data[:-4])
    objects = {obj.name: obj for obj in body.objects}
    assert objects["ssse.pin"].kind == "pin"
    pin = objects["ssse.pin"].body
    assert (pin.value, pin.limit, pin.tries) == (pack("123456"), 6, 6)
    assert list(objects) == list(card.store.objects)


def test_reopen_has_the_same_state(card, path):
    reopened = reopen(card, path)
    assert reopened.path == path
    assert snapshot(reopened.store) == snapshot(card.store)
    pin = reopened.store["ssse.pin"]
    assert (pin.value, pin.limit, pin.tries) == (pack("123456"), 6, 6)
    assert reopened.store.backend.generation == 1


def test_reopen_answers_the_same_records(card, path):
    answers = []
    for c in (card, None):
        c = c or reopen(card, path)
        reader = session(c)
        free = [reader.transmit(apdu) for apdu in EF05_READS]
        assert all(a[-2:] == OK for a in free)  # EF05 is free (V2 table 3)
        assert [reader.transmit(apdu) for apdu in EF06_READS] == [b"\x69\x82"] * 7
        assert reader.transmit(VERIFY_RIGHT) == OK
        assert reader.transmit(EF06_READS[0]) == b"\x69\x82"  # a 3.00 card opens EF06 to RKSSSE only
        Terminal(c, reader.transmit).authenticate("ssse_rk")
        protected = [reader.transmit(apdu) for apdu in EF06_READS]
        assert all(a[-2:] == OK for a in protected)
        assert pin_protected_read(reader) == bytes.fromhex("8403110100") + OK
        answers.append(free + protected)
    assert answers[0] == answers[1]
    assert answers[0][0] == bytes.fromhex("0110110100D1560000050000000100000000") + OK
    assert answers[0][7] == b"\x08\x12110101199003071233" + OK
    assert answers[0][7 + 1] == b"\x09\x1e" + "李华".encode("gbk") + bytes(26) + OK


def test_reopening_writes_nothing(closed, path):
    with open(path, "rb") as f:
        before = f.read()
    reader = session(Card.open(path))
    for apdu in EF05_READS:
        reader.transmit(apdu)
    with open(path, "rb") as f:
        assert f.read() == before
    assert os.listdir(os.path.dirname(path)) == ["card.img"]


def test_wrong_pins_persist_across_reopen(card, path):
    assert session(card).transmit(VERIFY_WRONG) == b"\x63\xC5"
    card.close()
    assert Card.open(path).store["ssse.pin"].tries == 5
    assert session(Card.open(path)).transmit(VERIFY_WRONG) == b"\x63\xC4"  # each card dropped: given up
    with Card.open(path) as reopened:
        assert reopened.store["ssse.pin"].tries == 4
        reader = session(reopened)
        assert reader.transmit(bytes.fromhex("00200000")) == b"\x63\xC4"  # status only: no try spent
        assert reader.transmit(VERIFY_RIGHT) == OK
    assert Card.open(path).store["ssse.pin"].tries == 6


def test_blocked_pin_persists(card, path):
    reader = session(card)
    for left in range(5, -1, -1):
        assert reader.transmit(VERIFY_WRONG) == bytes((0x63, 0xC0 | left))
    reopened = reopen(card, path)
    assert reopened.store["ssse.pin"].tries == 0
    assert session(reopened).transmit(VERIFY_RIGHT) == b"\x69\x83"


def test_change_pin_persists(card, path):
    reader = session(card)
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC5"
    assert reader.transmit(CHANGE_PIN) == OK
    pin = reopen(card, path).store["ssse.pin"]
    assert (pin.value, pin.tries) == (pack("654321"), 6)
    reader = session(Card.open(path))
    assert reader.transmit(VERIFY_RIGHT) == b"\x63\xC5"
    assert reader.transmit(VERIFY_NEW) == OK


def test_generation_grows_with_each_commit(card, path):
    assert generation(path) == 1
    reader = session(card)
    assert generation(path) == 1  # SELECT writes nothing
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC5"
    assert generation(path) == 2  # one commit: the decrement
    assert reader.transmit(VERIFY_RIGHT) == OK
    assert generation(path) == 4  # the decrement, then the restore
    assert reader.transmit(CHANGE_PIN) == OK
    assert generation(path) == 6
    reopened = reopen(card, path)
    assert reopened.store.backend.generation == 6
    assert session(reopened).transmit(VERIFY_WRONG) == b"\x63\xC5"
    assert generation(path) == 7


def test_generation_grows_after_a_cut_that_landed(card, path):
    reader = session(card)
    card.store.backend.write_point = cut_power_at(3)  # fsync of the decrement: its whole record is in the image
    with pytest.raises(PowerLoss) as excinfo:
        reader.transmit(VERIFY_WRONG)
    assert (excinfo.value.point, excinfo.value.landed) == ("fsync", True)
    assert generation(path) == 2
    card.store.backend.write_point = None
    reader = session(card)
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC4"
    assert generation(path) == 3


# -- images that cannot be used ---------------------------------------------------------------------

def test_open_missing_file(tmp_path):
    path = str(tmp_path / "absent.img")
    message = image_error(path)
    assert message.startswith(f"{path}: no such card image")


def test_open_a_folder(tmp_path):
    message = image_error(str(tmp_path))
    assert message == f"{tmp_path}: is a folder, not a card image file (give the path of a card image)"


@pytest.mark.parametrize("content", [b"", b"hello, world\n", b"SSCARDI", random.Random(7).randbytes(600)],
                         ids=["empty", "text", "short-magic", "random"])
def test_open_garbage(path, content):
    with open(path, "wb") as f:
        f.write(content)
    assert image_error(path) == f"{path}: not an sscard card image (bad magic)"


def test_open_truncated_image_every_length(closed, path):
    with open(path, "rb") as f:
        good = f.read()
    for length in range(len(good)):
        with open(path, "wb") as f:
            f.write(good[:length])
        message = image_error(path)
        assert message.startswith(f"{path}: "), length
        if length >= len(MAGIC):
            assert message.startswith(f"{path}: damaged card image ("), length


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_open_image_with_one_flipped_byte(closed, path, mask):
    with open(path, "rb") as f:
        good = f.read()
    for i in range(len(good)):  # the generation too: the CRC-32 covers the header
        damaged = bytearray(good)
        damaged[i] ^= mask
        with open(path, "wb") as f:
            f.write(damaged)
        message = image_error(path)
        assert message.startswith(f"{path}: "), i
        assert "bad magic" in message if i < 8 else "damaged card image (" in message, (i, message)


@pytest.mark.parametrize("offset", [GENERATION.start, GENERATION.stop - 1])
def test_open_image_with_flipped_generation_byte(closed, path, offset):
    with open(path, "rb") as f:
        damaged = bytearray(f.read())
    damaged[offset] ^= 0x01
    with open(path, "wb") as f:
        f.write(damaged)
    assert image_error(path).startswith(f"{path}: damaged card image (")


@pytest.mark.parametrize("extra", [b"\x00", b"\xFF", bytes(40)], ids=["zero", "ff", "zero-head"])
def test_bytes_after_the_base_are_a_torn_tail(closed, path, extra):
    """What follows the base and is no whole commit record is what a cut inside an append leaves (a head
    cut short, or never written: zeros): the base's state opens, and the owner's next append cuts it off."""
    with open(path, "rb") as f:
        good = f.read()
    with open(path, "wb") as f:
        f.write(good + extra)
    assert snapshot(Card.open(path, read_only=True).store) == snapshot(closed.store)
    with Card.open(path) as card:
        assert snapshot(card.store) == snapshot(closed.store)
        assert session(card).transmit(VERIFY_WRONG) == b"\x63\xC5"
    with open(path, "rb") as f:
        data = f.read()
    assert data.startswith(good) and len(IMAGE.parse(data).log) == 1  # the tail gone, one record after the base


def test_open_image_of_a_newer_format_version(closed, path):
    """An intact image of a higher version (its CRC-32 right) was written by a newer sscard: said so."""
    with open(path, "rb") as f:
        newer = bytearray(f.read())
    for version in (FORMAT_VERSION + 1, 0xFFFF):
        newer[8:10] = version.to_bytes(2, "big")
        newer[-4:] = zlib.crc32(newer[:-4]).to_bytes(4, "big")
        with open(path, "wb") as f:
            f.write(newer)
        assert image_error(path) == (f"{path} was written by a newer sscard (format {version}; this one reads "
                                     f"{FORMAT_VERSION}): open it with that sscard")


@pytest.mark.parametrize("version", [0, FORMAT_VERSION + 1])
def test_open_image_of_another_format_version_with_a_bad_crc_is_damaged(closed, path, version):
    with open(path, "rb") as f:
        damaged = bytearray(f.read())
    damaged[8:10] = version.to_bytes(2, "big")
    with open(path, "wb") as f:
        f.write(damaged)
    assert image_error(path).startswith(f"{path}: damaged card image (")


def test_open_image_with_unknown_object_kind(closed, path):
    image = parsed(path)
    items = [{"name": o.name, "kind": o.kind, "body": o.body} for o in image.body.value.objects]
    items.append({"name": "future.thing", "kind": "hologram", "body": b"\x01\x02"})
    with open(path, "wb") as f:
        f.write(BASE.build({"body": {"value": {"generation": 9, "objects": items}}}))
    assert image_error(path) == f"{path}: object 'future.thing' has unknown kind 'hologram' (newer sscard?)"


def test_image_built_with_the_layout_opens(card, path):
    """BASE is the whole layout of a new image: rebuilding what it parsed gives the same bytes (the
    writer builds them by hand, for speed: construct's declaration is the format)."""
    with open(path, "rb") as f:
        data = f.read()
    image = BASE.parse(data)
    body = image.body.value
    items = [{"name": o.name, "kind": o.kind, "body": o.body} for o in body.objects]
    assert BASE.build({"body": {"value": {"generation": body.generation, "objects": items}}}) == data


# -- the temporary file ------------------------------------------------------------------------------

def temps(path) -> list[str]:
    """This image's own temporary files (`.card.img.<pid>.<random>.tmp`) in its folder."""
    folder, base = os.path.split(path)
    return sorted(name for name in os.listdir(folder) if name.startswith(f".{base}.") and name.endswith(".tmp"))


@pytest.mark.parametrize("log_limit", [LOG_LIMIT, 0], ids=["appends", "compactions"])
def test_temporary_files_are_per_writer_and_none_stays(card, path, monkeypatch, log_limit):
    """An append makes no file; a rewrite (here every commit compacts) makes a temporary file of its own."""
    card.store.backend.log_limit = log_limit
    made = []
    real_open = os.open

    def spy(name, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            made.append((os.path.basename(name), flags))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    reader = session(card)
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC5"
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC4"
    monkeypatch.undo()
    if log_limit:
        assert made == []
    else:
        assert len(made) == 2 and made[0][0] != made[1][0]  # a new name each commit
    for name, flags in made:
        assert name.startswith(f".card.img.{os.getpid()}.") and name.endswith(".tmp")
        assert flags & os.O_EXCL and flags & os.O_NOFOLLOW and not flags & os.O_TRUNC
    assert os.listdir(os.path.dirname(path)) == ["card.img"]


@pytest.mark.parametrize("leftover", ["legacy-garbage", "own-cut-at-rename"])
def test_leftover_temporary_file(card, path, leftover):
    """A file of the old fixed name `card.img.tmp` is not sscard's any more: ignored, never touched. A
    temporary file of this image a power cut left (complete, never renamed) is ignored: the old image
    counts, and the next owner removes it before its first write."""
    if leftover == "legacy-garbage":
        legacy = path + ".tmp"
        with open(legacy, "wb") as f:
            f.write(b"SSCARDIM half an image")
    else:
        card.store.backend.log_limit = 0  # the commit compacts: a temporary file, renamed in at its 4th point
        card.store.backend.write_point = cut_power_at(4)
        with pytest.raises(PowerLoss) as excinfo:
            session(card).transmit(VERIFY_WRONG)
        assert (excinfo.value.point, excinfo.value.landed) == ("rename", False)
        [leftover_name] = temps(path)
        assert generation(os.path.join(os.path.dirname(path), leftover_name)) == 2
    reopened = reopen(card, path)
    assert reopened.store["ssse.pin"].tries == 6
    assert reopened.store.backend.generation == 1
    assert session(reopened).transmit(VERIFY_WRONG) == b"\x63\xC5"
    assert temps(path) == []  # the owner tidied before its first write
    assert generation(path) == 2
    assert reopen(reopened, path).store["ssse.pin"].tries == 5
    if leftover == "legacy-garbage":
        with open(legacy, "rb") as f:
            assert f.read() == b"SSCARDIM half an image"


def test_one_reading_of_a_folder_serves_the_first_commits_of_all_its_owners(tmp_path, monkeypatch):
    """The owners of a fleet's images tidy up before their first commits; the folder is read once for
    all of them while it does not change (n readings of n names each made the first round O(n²)),
    again after it changed, and every image still loses the temporary files a crash left of it."""
    farm = tmp_path / "farm"
    names = Fleet(farm, sync=False).personalize(12)
    paths = [str(farm / f"{name}.img") for name in names]
    leftover = {3: f".{names[3]}.img.4242.0badc0ffee00.tmp", 7: f".{names[7]}.img.17.00ff.tmp"}
    others = ["notes.tmp", f"{names[5]}.img.tmp", f".{names[5]}.img.tmp"]  # not temporary files of a commit
    for name in [*leftover.values(), *others]:
        (farm / name).write_bytes(b"left")
    readings = []
    real_listdir = os.listdir

    def listdir(folder):
        readings.append(os.fspath(folder))
        return real_listdir(folder)

    monkeypatch.setattr(image_mod.os, "listdir", listdir)
    for index, image in enumerate(paths):
        with Card.open(image) as card:
            assert session(card).transmit(VERIFY_WRONG) == b"\x63\xC5"  # its first commit: an append
        if index in leftover:
            assert not (farm / leftover[index]).exists()
    assert readings == [str(farm)] * 3  # the first owner's; then after each removal changed the folder
    monkeypatch.undo()
    assert sorted(real_listdir(farm)) == sorted(others + [f"{name}.img" for name in names])
    late = farm / f".{names[9]}.img.99.beef.tmp"  # a crash after the readings: the folder changed
    late.write_bytes(b"left")
    with Card.open(paths[9]) as card:
        session(card).transmit(VERIFY_WRONG)
    assert not late.exists()


def test_personalise_over_an_existing_image(card, path):
    assert session(card).transmit(VERIFY_WRONG) == b"\x63\xC5"
    with open(path, "rb") as f:
        before = f.read()
    with pytest.raises(ImageError) as refused:
        Card.from_profile(state=path)
    assert str(refused.value) == (f"{path} already exists: personalising would replace that card "
                                  "(sscard personalize --force, or Card.from_profile(..., overwrite=True))")
    with pytest.raises(ImageInUse):  # overwrite, but the card still has it: never replaced under an owner
        Card.from_profile(state=path, overwrite=True)
    with open(path, "rb") as f:
        assert f.read() == before
    card.close()
    fresh = Card.from_profile(state=path, overwrite=True)
    assert fresh.store["ssse.pin"].tries == 6
    assert reopen(fresh, path).store["ssse.pin"].tries == 6
    assert os.listdir(os.path.dirname(path)) == ["card.img"]


# -- storage failure: 6581 and nothing changes ---------------------------------------------------------

def _full_disk(commits_that_work: int):
    """An os.write that fails with ENOSPC from the first write of commit `commits_that_work` + 1 on (each
    commit writes its record, or its whole new image, in two halves); `.calls` counts the writes tried."""
    real = os.write
    calls = []

    def write(fd, data):
        calls.append(len(data))
        if len(calls) > 2 * commits_that_work:
            raise OSError(28, "No space left on device")
        return real(fd, data)

    write.calls = calls
    return write


BOTH_PATHS = pytest.mark.parametrize("log_limit", [LOG_LIMIT, 0], ids=["append", "compaction"])


@BOTH_PATHS
@pytest.mark.parametrize("apdu, wrong_before", [
    (VERIFY_WRONG, 0), (VERIFY_RIGHT, 0), (VERIFY_RIGHT, 1), (CHANGE_PIN, 0), (CHANGE_PIN, 1)],
    ids=["verify-wrong", "verify-right", "verify-right-after-wrong", "change-pin", "change-pin-after-wrong"])
def test_storage_failure_answers_6581_and_keeps_the_old_state(card, path, monkeypatch, apdu, wrong_before,
                                                               log_limit):
    card.store.backend.log_limit = log_limit
    reader = session(card)
    for _ in range(wrong_before):
        reader.transmit(VERIFY_WRONG)
    before_memory = snapshot(card.store)
    with open(path, "rb") as f:
        before_file = f.read()
    write = _full_disk(0)
    monkeypatch.setattr(os, "write", write)
    assert reader.transmit(apdu) == SW_MEMORY_FAILURE
    assert len(write.calls) == 1  # the decrement's first write failed: nothing else was tried
    assert snapshot(card.store) == before_memory
    assert card.store.journal == []
    monkeypatch.undo()
    with open(path, "rb") as f:
        assert f.read() == before_file
    assert os.listdir(os.path.dirname(path)) == ["card.img"]
    assert snapshot(Card.open(path, read_only=True).store) == before_memory
    # the PIN was not verified: protected records stay closed in this session
    assert pin_protected_read(reader) == b"\x69\x82"
    # and the card goes on working once the storage does
    tries = card.store["ssse.pin"].tries
    assert reader.transmit(VERIFY_WRONG) == bytes((0x63, 0xC0 | tries - 1))
    assert Card.open(path, read_only=True).store["ssse.pin"].tries == tries - 1


@BOTH_PATHS
@pytest.mark.parametrize("apdu", [VERIFY_RIGHT, CHANGE_PIN], ids=["verify-right", "change-pin"])
def test_storage_failure_on_the_restore_keeps_the_durable_decrement(card, path, monkeypatch, apdu, log_limit):
    """The decrement commits, the restore fails: memory and file agree on tries - 1 and 6581 is answered."""
    card.store.backend.log_limit = log_limit
    reader = session(card)
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC5"
    write = _full_disk(1)
    monkeypatch.setattr(os, "write", write)
    assert reader.transmit(apdu) == SW_MEMORY_FAILURE
    assert len(write.calls) == 3  # the decrement's two halves, then the restore's first write
    monkeypatch.undo()
    for c in (card, Card.open(path, read_only=True)):
        pin = c.store["ssse.pin"]
        assert (pin.value, pin.tries) == (pack("123456"), 4)


@BOTH_PATHS
@pytest.mark.parametrize("apdu", [VERIFY_RIGHT, CHANGE_PIN], ids=["verify-right", "change-pin"])
def test_storage_failure_on_the_restore_leaves_pin_unverified(card, path, monkeypatch, apdu, log_limit):
    card.store.backend.log_limit = log_limit
    reader = session(card)
    monkeypatch.setattr(os, "write", _full_disk(1))
    assert reader.transmit(apdu) == SW_MEMORY_FAILURE
    monkeypatch.undo()
    assert pin_protected_read(reader) == b"\x69\x82"


def test_image_error_is_exported():
    assert chip.ImageError is ImageError


# -- images with a valid CRC that a card cannot be made of ---------------------------------------------
# Crafted as an attacker (or a bad tool) would: decode, change the objects, encode again (CRC right).
# Each is one line naming the image and what is wrong, never a KeyError/TypeError later.

def _drop(name):
    def craft(objects):
        del objects[name]
    return craft


def _as(name, obj):
    def craft(objects):
        objects[name] = obj
    return craft


def _set(name, key, value):
    def craft(objects):
        setattr(objects[name], key, value)
    return craft


def _unset(name, key):
    def craft(objects):
        delattr(objects[name], key)
    return craft


def _craft_pin(name, value=None, limit=None, tries=None):
    def craft(objects):
        obj = objects[name]
        if value is not None:
            obj.value = value
        if limit is not None:
            obj.limit = limit
        if tries is not None:
            obj.tries = tries
    return craft


def _first_record_empty(name):
    def craft(objects):
        objects[name].records = (b"",) + objects[name].records[1:]
    return craft


def _overfull(name):
    def craft(objects):
        obj = objects[name]
        obj.records = (b"\x00" * 4,) * (obj.capacity + 1)
    return craft


def _crafted_cases():
    from chip.kernel.pin import Key
    from chip.kernel.records import Records
    from chip.kernel.store import Binary, Vars
    return [
        ("missing-ssse-pin", _drop("ssse.pin"), "missing ssse.pin"),
        ("missing-card", _drop("card"), "missing card"),
        ("missing-ssse-state", _drop("ssse.state"), "missing ssse.state"),
        ("missing-fin-state", _drop("fin.state"), "missing fin.state"),
        ("missing-ef05", _drop("ssse.ef05"), "missing ssse.ef05"),
        ("missing-key", _drop("ssse.key.ssse_bk"), "missing ssse.key.ssse_bk"),
        ("missing-cyclic", _drop("df04.ef08"), "missing df04.ef08"),
        ("pin-as-records", _as("ssse.pin", Records([b"\x01\x01\x00"])), "ssse.pin is records, expected pin"),
        ("key-as-records", _as("ssse.key.ssse_rk", Records([b"\x01\x01\x00"])),
         "ssse.key.ssse_rk is records, expected key"),
        ("pin-as-key", _as("fin.pin", Key(b"\x12\x34", 3)), "fin.pin is key, expected pin"),
        ("vars-as-binary", _as("ssse.state", Binary(b"x")), "ssse.state is binary, expected vars"),
        ("records-as-vars", _as("ssse.ef05", Vars(a=1)), "ssse.ef05 is vars, expected records"),
        ("cyclic-as-records", _as("df04.ef08", Records([b"\x01\x01\x00"])), "df04.ef08 is records, expected cyclic"),
        ("unknown-card-kind", _set("card", "kind", "toaster"), "card.kind is 'toaster', expected one of psam, sscard"),
        ("card-kind-int", _set("card", "kind", 7), "card.kind is 7, expected one of psam, sscard"),
        ("missing-lock-var", _unset("ssse.state", "lock"), "missing ssse.state.lock"),
        ("missing-card-state", _unset("card", "state"), "missing card.state"),
        ("lock-var-int", _set("ssse.state", "lock", 3), "ssse.state.lock is int, expected str"),
        ("atc-bytes", _set("fin.state", "atc", b"\x00\x01"), "fin.state.atc is bytes, expected int"),
        ("deadline-str", _set("ssse.state", "deadline_days", "300"), "ssse.state.deadline_days is str, expected int"),
        ("lock-unknown-state", _set("ssse.state", "lock", "bogus"),
         "ssse.state.lock is 'bogus', expected one of blocked, locked, none"),
        ("card-unknown-state", _set("card", "state", "broken"), "card.state is 'broken', expected one of blocked, ok"),
        ("fin-activation-unknown", _set("fin.state", "activation", "maybe"),
         "fin.state.activation is 'maybe', expected one of activated, not_activated"),
        ("pin-tries-over-limit", _craft_pin("ssse.pin", tries=9), "ssse.pin has 9 tries left, more than its limit 6"),
        ("pin-empty", _craft_pin("ssse.pin", value=b""), "ssse.pin holds a 0-byte PIN, expected 1 to 8 bytes"),
        ("pin-too-long", _craft_pin("ssse.pin", value=bytes(9)), "ssse.pin holds a 9-byte PIN, expected 1 to 8 bytes"),
        ("key-empty", _craft_pin("fin.3des.ac", value=b""), "fin.3des.ac is an empty key"),
        ("empty-record", _first_record_empty("ssse.ef05"), "ssse.ef05 record 1 is empty"),
        ("cyclic-overfull", _overfull("df04.ef08"), "df04.ef08 has"),
    ]


CRAFTED = _crafted_cases()


@pytest.mark.parametrize("craft, problem", [case[1:] for case in CRAFTED], ids=[case[0] for case in CRAFTED])
def test_crafted_image_with_a_valid_crc_is_refused_in_one_line(closed, path, craft, problem):
    from chip.kernel import image as image_mod

    with open(path, "rb") as f:
        objects, gen = image_mod.decode(f.read())
    craft(objects)
    with open(path, "wb") as f:
        f.write(image_mod.encode(objects, gen + 1))  # a valid CRC: only the content is wrong
    message = image_error(path)
    assert message.startswith(f"{path}: damaged card image: {problem}"), message
    with pytest.raises(ImageError, match="damaged card image"):  # a snapshot (sscard info) checks the same
        Card.open(path, read_only=True)
    Card.from_profile(state=path, overwrite=True)  # and the image is not held by the refused opening


def test_crafted_psam_image_is_refused(tmp_path):
    from chip.kernel import image as image_mod

    path = str(tmp_path / "psam.img")
    Card.psam(state=path).close()
    with open(path, "rb") as f:
        objects, gen = image_mod.decode(f.read())
    name = next(n for n in objects if n != "card")
    del objects[name]
    with open(path, "wb") as f:
        f.write(image_mod.encode(objects, gen + 1))
    assert image_error(path) == f"{path}: damaged card image: missing {name}"


def test_what_the_check_tolerates(closed, path):
    """An extra object of a known kind (a newer sscard's) and the ATR values an older image lacks open."""
    from chip.kernel import image as image_mod
    from chip.kernel.store import Binary

    with open(path, "rb") as f:
        objects, gen = image_mod.decode(f.read())
    objects["future.notes"] = Binary(b"kept")
    delattr(objects["card"], "atr_tb1")
    with open(path, "wb") as f:
        f.write(image_mod.encode(objects, gen + 1))
    with Card.open(path) as card:
        assert session(card).transmit(VERIFY_RIGHT) == OK
    assert image_mod.decode(open(path, "rb").read())[0]["future.notes"].data == b"kept"  # nothing stored is lost


@pytest.mark.parametrize("profile", sorted(shipped_names()))
def test_every_shipped_profile_makes_an_image_that_passes_the_check(tmp_path, profile):
    for make in (Card.from_profile, Card.psam):
        path = str(tmp_path / f"{make.__name__}.img")
        make(profile, state=path).close()
        Card.open(path).close()


def test_crafted_image_is_one_line_in_the_cli(closed, path, capsys):
    from chip.kernel import image as image_mod
    from reader.cli import main

    with open(path, "rb") as f:
        objects, gen = image_mod.decode(f.read())
    del objects["ssse.pin"]
    with open(path, "wb") as f:
        f.write(image_mod.encode(objects, gen + 1))
    for argv in (["info", "--state", path], ["apdu", "--state", path, "00A40000023F00"],
                 ["ssse", "verify", "--state", path, "123456"]):
        assert main(argv) == 2
        _out, err = capsys.readouterr()
        assert err == f"sscard: error: {path}: damaged card image: missing ssse.pin\n", argv
