"""Durable commits in one fsync: the commit log of the card image (format 2; chip/kernel/image.py).

The anti-tearing of LD/T 32 P5 §6.3 makes a VERIFY commit the decremented try counter before the
comparison, and (on success) commit the restored one with the command's end: two commits. Each is one
record appended to the image and one fsync of it, so a durable VERIFY costs at most two fsyncs (counted
here by wrapping os.fsync and the folder's fsync; never timed). What a power loss or a `kill -9` can
leave inside an append - a record cut short, its last bytes missing - is a torn tail: the image opens
as the state before it (P7 §14: the card recovers at the next power-up, by itself), and its owner cuts
it off before the next append. Damage anywhere else is refused in one line. The log is folded into a
new base (compaction, the rewrite of format 1: temporary file, fsync, rename, folder fsync) when it
passes the backend's `log_limit`, and a format-1 image (tests/fixtures/format1-card.img, made by the
code before the log) opens and is migrated by its first commit.

The power-cut sweep over every state-changing command, on both paths, is tests/test_power_cut_sweep.py.
"""

import collections
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import zlib

import pytest
import test_kill9 as kill9
from helpers import CARD_DATE, OK, ROOT, cli, python_env, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from power_cut import (
    FILE_POINTS,
    REWRITE_POINTS,
    count_write_points,
    cut_at,
    files_in,
    landed,
    left_by,
    recording_hook,
)
from ssse_helpers import SELECT_DF04, SELECT_SSSE, Terminal, change_pin, verify

from chip import Card, ImageError
from chip.kernel import image as image_mod
from chip.kernel.image import FORMAT_VERSION, IMAGE, IMAGE_V1, ImageInUse, commit_record
from chip.personalization.profile import shipped_names
from reader import SimReader

FIXTURE = ROOT / "tests" / "fixtures" / "format1-card.img"  # default card, 2026-11-21, one wrong SSSE PIN
RIGHT, WRONG = "123456", "999999"
LONG = int(os.environ.get("SSCARD_FUZZ_EXAMPLES", "0"))


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "card.img")


@pytest.fixture
def fsyncs(monkeypatch):
    """Counts of os.fsync calls (the folder's included) and of folder fsyncs, from now on."""
    counts = collections.Counter()
    real_fsync, real_folder = os.fsync, image_mod.fsync_folder

    def fsync(fd):
        counts["fsync"] += 1
        return real_fsync(fd)

    def fsync_folder(folder):
        counts["folder"] += 1
        return real_folder(folder)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(image_mod, "fsync_folder", fsync_folder)
    return counts


def session(card) -> SimReader:
    reader = SimReader(card)
    reader.reset()
    assert reader.transmit(SELECT_SSSE)[-2:] == OK
    return reader


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write(path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def tries(path) -> int:
    return Card.open(path, read_only=True).store["ssse.pin"].tries


def refused(path) -> str:
    """The one-line reason an image is refused, by its owner and by a snapshot alike."""
    with pytest.raises(ImageError) as excinfo:
        Card.open(path)
    message = str(excinfo.value)
    assert "\n" not in message and excinfo.value.__cause__ is None and excinfo.type is ImageError
    with pytest.raises(ImageError, match=re.escape(message)):
        Card.open(path, read_only=True)
    return message


def log_of(path) -> list:
    """The commit records of an intact format-2 image (IMAGE: the base, the records, nothing after)."""
    return list(IMAGE.parse(read(path)).log)


# -- the fsyncs of a durable command ---------------------------------------------------------------------

def purchase_ready(card, reader):
    """PIN verified, DF04 selected, INITIALIZE FOR PURCHASE done: the DEBIT FOR PURCHASE to send (P7 §12)."""
    terminal = Terminal(card, reader.transmit)
    terminal.ok(verify(RIGHT))
    terminal.ok(SELECT_DF04)
    return terminal.debit(terminal.ok(terminal.init_purchase(100)), 100)[0]


def external_authenticate(wrong):
    def prepare(card, reader):
        return Terminal(card, reader.transmit).external_authenticate("ssse_rk", wrong=wrong)
    return prepare


# name: (prepare(card, reader) -> the command, SW, commits: one fsync each)
DURABLE = {
    "verify-wrong": (lambda c, r: verify(WRONG), b"\x63\xC5", 1),
    "verify-right": (lambda c, r: verify(RIGHT), OK, 2),
    "change-pin": (lambda c, r: change_pin(RIGHT, "246810"), OK, 2),
    "external-authenticate-wrong": (external_authenticate(True), b"\x63\xC2", 1),
    "external-authenticate-right": (external_authenticate(False), OK, 2),
    "debit-for-purchase": (purchase_ready, OK, 1),
}


@pytest.mark.parametrize("name", list(DURABLE))
def test_a_durable_command_costs_one_fsync_per_commit(path, fsyncs, name):
    """A durable VERIFY: one fsync for a wrong PIN (the decrement), two for the right one (the decrement,
    then the restore); never a folder fsync, never a new file. The same for every command with anti-tearing."""
    prepare, sw, commits = DURABLE[name]
    card = Card.from_profile(state=path, date=CARD_DATE)
    reader = session(card)
    command = prepare(card, reader)
    inode, generation = os.stat(path).st_ino, card.store.backend.generation
    fsyncs.clear()
    assert reader.transmit(command)[-2:] == sw
    assert (fsyncs["fsync"], fsyncs["folder"]) == (commits, 0)
    assert fsyncs["fsync"] <= 2
    assert card.store.backend.generation == generation + commits
    assert os.stat(path).st_ino == inode and os.listdir(os.path.dirname(path)) == ["card.img"]
    assert snapshot(Card.open(path, read_only=True).store) == snapshot(card.store)  # durable, all of it
    card.close()


def test_compactions_are_the_only_extra_fsyncs(path, fsyncs):
    """With a 1,000-byte log, every 22nd commit of a run of right VERIFYs folds the log into a new base (the
    temporary file's fsync and the folder's: one fsync more than an append); every other one appends."""
    card = Card.from_profile(state=path, date=CARD_DATE)
    card.store.backend.log_limit = 1000
    reader = session(card)
    record = len(commit_record(card.store.objects, ["ssse.pin"], 1, 0)[0])
    assert record == 47
    base = os.path.getsize(path)
    fsyncs.clear()
    for _ in range(100):
        assert reader.transmit(verify(RIGHT)) == OK
        assert os.path.getsize(path) <= base + 1000
    commits = 200
    per_log = 1000 // record  # appends that fit, then the commit that compacts
    compactions = commits // (per_log + 1)
    assert (per_log, compactions) == (21, 9)
    assert (fsyncs["fsync"], fsyncs["folder"]) == (commits + compactions, compactions)
    card.close()


# -- torn tails and damage -----------------------------------------------------------------------------

@pytest.fixture
def logged(path):
    """An image with a base and two records (two wrong PINs), and the bytes of the third append (one more)."""
    card = Card.from_profile(state=path, date=CARD_DATE)
    reader = session(card)
    for left in (5, 4):
        assert reader.transmit(verify(WRONG)) == bytes((0x63, 0xC0 | left))
    old = read(path)
    assert reader.transmit(verify(WRONG)) == b"\x63\xC3"
    new = read(path)
    card.close()
    assert new.startswith(old) and len(log_of(path)) == 3
    return old, new


def test_an_append_torn_at_every_length_opens_as_the_old_state(path, logged):
    """Whatever prefix of the third record is on disk, the image holds the state before it (4 tries),
    for a snapshot and for the owner, which cuts the tail off at its next append."""
    old, new = logged
    for length in range(len(old), len(new)):
        write(path, new[:length])
        assert tries(path) == 4, length
        with Card.open(path) as card:
            assert card.store["ssse.pin"].tries == 4 and card.store.backend.generation == 3
            assert session(card).transmit(verify(RIGHT)) == OK
        assert read(path)[:len(old)] == old and len(log_of(path)) == 4, length  # intact again, no tail
        assert tries(path) == 6


def test_a_power_cut_in_the_append_after_a_torn_tail(path, logged, tmp_path):
    """The owner's first append after a torn tail cuts it off, then writes: a cut at each of its write points
    leaves the old state (4 tries) or, once the record is whole, the new one (3), never the old tail's."""
    old, new = logged
    torn = old + bytes(range(0xA0, 0xC8))  # 40 bytes no record starts with (the head's CRC fails)
    half = len(old) + (len(new) - len(old)) // 2
    left = {"append": torn, "append-half": new[:half], "fsync": new}  # the tail cut off before the first write
    outcomes = collections.Counter()
    for n in range(1, 4):
        write(path, torn)
        card = Card.open(path)
        reader = session(card)
        cut = cut_at(n, card, reader.transmit, verify(WRONG), FILE_POINTS, SELECT_SSSE)
        assert tries(path) == (3 if cut.landed else 4), (n, cut.point)
        assert read(path) == left[cut.point], (n, cut.point)
        card.close()
        outcomes["new" if cut.landed else "old"] += 1
    assert dict(outcomes) == {"old": 2, "new": 1}


@pytest.mark.parametrize("where", ["head", "body", "crc"])
def test_the_last_record_with_a_bad_crc_is_a_torn_tail(path, logged, where):
    """The last record whole in length but not in content (not all of its sectors reached the disk):
    nothing follows it, so it is the torn tail of the last append - the state before it."""
    old, new = logged
    offset = {"head": len(old) + 3, "body": len(old) + 20, "crc": len(new) - 1}[where]
    damaged = bytearray(new)
    damaged[offset] ^= 0x01
    write(path, bytes(damaged))
    assert tries(path) == 4


def test_damage_before_the_last_record_is_refused_in_one_line(path, logged):
    """A flipped byte anywhere in the second record (head, objects, its CRC) is damage: an intact record
    follows it, so it is not the tail of an append that did not land."""
    old, new = logged
    second = IMAGE.parse(new).log[1]
    start = len(old) - (16 + second.head.value.size + 4)
    for offset in range(start, len(old)):
        damaged = bytearray(new)
        damaged[offset] ^= 0x01
        write(path, bytes(damaged))
        message = refused(path)
        assert message.startswith(f"{path}: damaged card image ("), (offset, message)


def test_a_record_out_of_sequence_is_refused(path, logged):
    old, _ = logged
    objects, generation = image_mod.decode(old)
    crc = zlib.crc32(old)
    write(path, old + commit_record(objects, ["ssse.pin"], generation + 2, crc)[0])
    assert refused(path) == (f"{path}: damaged card image (the commit record at byte {len(old)} makes generation "
                             f"{generation + 2} after {generation})")


def test_a_record_of_an_unknown_kind_is_refused(path, logged):
    old, _ = logged
    _objects, generation = image_mod.decode(old)
    payload = image_mod._u(1, 4) + b"\x0cfuture.thing\x08hologram" + image_mod._u(2, 4) + b"\x01\x02"
    head = image_mod._u(len(payload), 4) + image_mod._u(generation + 1, 8)
    head += image_mod._u(zlib.crc32(head), 4)
    record = head + payload
    write(path, old + record + image_mod._u(zlib.crc32(old + record), 4))
    assert refused(path) == f"{path}: object 'future.thing' has unknown kind 'hologram' (newer sscard?)"


def test_every_commit_keeps_the_envelope_an_older_sscard_reads(path):
    """The file's last 4 bytes are the CRC-32 of all before them after every commit (the running CRC of
    the records), so an sscard of format 1 says "written by a newer sscard (format 2 ...)", not damaged."""
    card = Card.from_profile(state=path, date=CARD_DATE)
    reader = session(card)
    for command in (verify(WRONG), verify(RIGHT), change_pin(RIGHT, "246810")):
        reader.transmit(command)
        data = read(path)
        assert data[8:10] == FORMAT_VERSION.to_bytes(2, "big") == b"\x00\x02"
        assert zlib.crc32(data[:-4]).to_bytes(4, "big") == data[-4:]
    card.close()


# -- the layout is construct's declaration -----------------------------------------------------------------

@pytest.mark.parametrize("profile", sorted(shipped_names()))
def test_the_writer_builds_what_the_declared_layout_builds(tmp_path, profile):
    """The commit path builds objects and records by hand (construct's builder costs ~150 us for one Vars
    object); the bytes are exactly construct's: every object of every shipped profile's card and PSAM, a
    whole image, and a log of records rebuilt from what IMAGE parsed."""
    for make in (Card.from_profile, Card.psam):
        path = str(tmp_path / f"{make.__name__}.img")
        card = make(profile, state=path, date=CARD_DATE)
        for name, obj in card.store.objects.items():
            written = image_mod.encode_object(name, obj)
            assert image_mod._Object.build(image_mod._Object.parse(written)) == written, name
        if make is Card.from_profile:
            reader = session(card)
            for command in (verify(WRONG), verify(RIGHT)):
                reader.transmit(command)
        data = read(path)
        parsed = IMAGE.parse(data)
        assert IMAGE.build(parsed) == data
        assert [record.head.value.generation for record in parsed.log] == (
            [2, 3, 4] if make is Card.from_profile else [])
        card.close()


# -- compaction: the log folded into a new base ---------------------------------------------------------------

def test_compaction_moves_the_lock_with_the_image(path):
    """A compaction renames a new file over the image, locked before: the card still owns the image (a
    second opener is refused, in this process and another), appends go to the new file from then on."""
    card = Card.from_profile(state=path, date=CARD_DATE)
    card.store.backend.log_limit = 100  # two PIN records fit (47 bytes each), the third commit compacts
    reader = session(card)
    inode = os.stat(path).st_ino
    assert reader.transmit(verify(RIGHT)) == OK  # two appends
    assert os.stat(path).st_ino == inode and len(log_of(path)) == 2
    assert reader.transmit(verify(WRONG)) == b"\x63\xC5"  # the compaction: a base alone, a new file
    assert os.stat(path).st_ino != inode and log_of(path) == []
    with pytest.raises(ImageInUse):
        Card.open(path)
    child = subprocess.run([sys.executable, "-c", "import sys; from chip import Card; Card.open(sys.argv[1])", path],
                           cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=60)
    assert child.returncode == 1 and f"is in use by pid {os.getpid()}" in child.stderr
    inode = os.stat(path).st_ino
    assert reader.transmit(verify(WRONG)) == b"\x63\xC4"  # appended to the new file
    assert os.stat(path).st_ino == inode and len(log_of(path)) == 1
    card.close()
    assert tries(path) == 4


def test_an_owner_never_appends_to_a_file_put_in_its_place(path, tmp_path):
    """Another program renames its own file over the image the card owns (without sscard's lock): the card's
    next commit does not append to that file, it rewrites the image (its own state back in place)."""
    card = Card.from_profile(state=path, date=CARD_DATE)
    reader = session(card)
    assert reader.transmit(verify(WRONG)) == b"\x63\xC5"
    other = str(tmp_path / "other.img")
    Card.from_profile(state=other, date=CARD_DATE).close()
    foreign = read(other)
    held = os.open(other, os.O_RDONLY)  # the foreign file, whatever its name becomes
    os.replace(other, path)
    assert reader.transmit(verify(WRONG)) == b"\x63\xC4"
    assert os.pread(held, len(foreign) + 64, 0) == foreign  # untouched
    os.close(held)
    assert tries(path) == 4 and log_of(path) == []  # the card's state, rewritten whole
    card.close()


def test_a_failed_fsync_of_an_append_answers_6581_and_the_next_commit_rewrites(path, monkeypatch, fsyncs):
    """The record is in the file but its fsync failed: not known durable (6581), yet the file holds the new
    state, so the card keeps it in memory too; its next commit rewrites the image whole (a new file)."""
    import errno
    import stat

    card = Card.from_profile(state=path, date=CARD_DATE)
    reader = session(card)
    counting = os.fsync

    def failing(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return counting(fd)

    monkeypatch.setattr(os, "fsync", failing)
    assert reader.transmit(verify(WRONG)) == b"\x65\x81"
    monkeypatch.setattr(os, "fsync", counting)
    assert card.store["ssse.pin"].tries == 5 == tries(path) and card.store.journal == []
    inode = os.stat(path).st_ino
    fsyncs.clear()
    assert reader.transmit(verify(WRONG)) == b"\x63\xC4"
    assert (fsyncs["fsync"], fsyncs["folder"]) == (2, 1) and os.stat(path).st_ino != inode
    assert reader.transmit(verify(WRONG)) == b"\x63\xC3"  # and appends again
    card.close()


def test_the_size_bound_holds_for_every_file_a_commit_writes(path, monkeypatch):
    """An append that would take the file past MAX_IMAGE_BYTES compacts instead; a state that does not fit
    even alone is not written (6581, one line naming the image): no commit makes an image that cannot
    be opened again."""
    card = Card.from_profile(state=path, date=CARD_DATE)
    reader = session(card)
    base = os.path.getsize(path)
    monkeypatch.setattr(image_mod, "MAX_IMAGE_BYTES", base + 100)
    for left in (5, 4, 3, 2):
        assert reader.transmit(verify(WRONG)) == bytes((0x63, 0xC0 | left))
        assert os.path.getsize(path) <= base + 100
    assert len(log_of(path)) == 1  # two appends, the third commit compacted, the fourth appended
    monkeypatch.setattr(image_mod, "MAX_IMAGE_BYTES", base - 1)
    card.store.backend.log_limit = 0
    assert reader.transmit(verify(WRONG)) == b"\x65\x81"
    monkeypatch.undo()
    assert tries(path) == 2
    card.close()


# -- format 1: the image of the code before the log --------------------------------------------------------

@pytest.fixture
def format1(path):
    shutil.copyfile(FIXTURE, path)
    return path


def test_the_fixture_is_a_format_1_image(format1):
    data = read(format1)
    assert data[8:10] == b"\x00\x01"
    assert IMAGE_V1.parse(data).body.value.generation == 2


def test_a_format_1_image_opens_and_its_first_commit_migrates_it(format1, fsyncs, capsys):
    """It opens as it is (a snapshot, `sscard info`, its owner), and the owner's first commit writes it
    whole in format 2 (one rewrite: two fsyncs); from then on commits append."""
    before = Card.open(format1, read_only=True)
    assert (before.store["ssse.pin"].tries, before.store.backend.generation) == (5, 2)
    code, out, err = cli(capsys, "info", "--state", format1)
    assert code == 0 and err == "" and "PIN tries left       5 of 6" in out
    with Card.open(format1) as card:
        assert snapshot(card.store) == snapshot(before.store)
        reader = session(card)
        fsyncs.clear()
        assert reader.transmit(verify(WRONG)) == b"\x63\xC4"
        assert (fsyncs["fsync"], fsyncs["folder"]) == (2, 1)
        data = read(format1)
        assert data[8:10] == b"\x00\x02" and IMAGE.parse(data).base.body.value.generation == 3
        fsyncs.clear()
        assert reader.transmit(verify(WRONG)) == b"\x63\xC3"
        assert (fsyncs["fsync"], fsyncs["folder"]) == (1, 0) and len(log_of(format1)) == 1
    after = Card.open(format1, read_only=True)
    changed = [name for name in before.store.objects
               if before.store[name].dump() != after.store[name].dump()]
    assert changed == ["ssse.pin"] and after.store.backend.generation == 4


@pytest.mark.parametrize("damage", ["trailing", "truncated", "flipped"])
def test_a_damaged_format_1_image_is_refused_in_one_line(format1, damage):
    """Format 1 keeps its rules: nothing may follow its CRC, nothing be missing, every byte counts."""
    data = bytearray(read(format1))
    if damage == "trailing":
        data += b"\x00"
    elif damage == "truncated":
        del data[-1]
    else:
        data[100] ^= 0x01
    write(format1, bytes(data))
    assert refused(format1).startswith(f"{format1}: damaged card image (")


def test_a_power_cut_during_the_migration_leaves_format_1_or_format_2(format1, tmp_path):
    """A cut at each write point of the migrating commit: the format-1 image as it was (5 tries), or the
    format-2 image of the new state (4 tries) once renamed in; a temporary file a cut left is the next
    owner's to remove."""
    def opened(name):
        copy = str(tmp_path / name / "card.img")
        os.mkdir(os.path.dirname(copy))
        shutil.copyfile(format1, copy)
        card = Card.open(copy)
        return card, session(card), copy

    card, reader, _ = opened("count")
    assert count_write_points(card, reader.transmit, verify(WRONG))[1].seen == REWRITE_POINTS
    card.close()
    outcomes = collections.Counter()
    for n in range(1, len(REWRITE_POINTS) + 1):
        card, reader, copy = opened(f"cut{n}")
        cut = cut_at(n, card, reader.transmit, verify(WRONG), REWRITE_POINTS, SELECT_SSSE)
        version = read(copy)[8:10]
        expected = (4, b"\x00\x02") if landed(n, cut, REWRITE_POINTS) else (5, b"\x00\x01")
        assert (tries(copy), version) == expected, (n, cut.point)
        assert files_in(os.path.dirname(copy)) == left_by(cut.point)
        card.close()
        with Card.open(copy) as again:
            assert session(again).transmit(verify(RIGHT)) == OK
        assert files_in(os.path.dirname(copy)) == ["card.img"] and tries(copy) == 6
        outcomes["new" if cut.landed else "old"] += 1
    assert dict(outcomes) == {"old": 4, "new": 1}


# -- fuzzing the log ----------------------------------------------------------------------------------------

COMMANDS = [verify(WRONG), verify(RIGHT), change_pin(RIGHT, RIGHT), bytes.fromhex("00B2012C12")]


@settings(max_examples=LONG or 60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(commands=st.lists(st.sampled_from(COMMANDS), min_size=1, max_size=8), damage=st.data())
def test_fuzz_a_damaged_log_opens_as_a_committed_state_or_is_refused(tmp_path_factory, commands, damage):
    """Random commands, then random damage (the log cut anywhere, bytes flipped, garbage appended): the
    image opens as a state some commit made (a cut: exactly the last whole record's), or is refused in one
    line; nothing else (no other exception, no state that was never committed)."""
    path = str(tmp_path_factory.mktemp("fuzz") / "card.img")
    card = Card.from_profile(state=path, date=CARD_DATE)
    states = {image_mod.decode(read(path))[1]: image_mod.encode(card.store.objects, 0)}
    hook = recording_hook(lambda: (card.store.backend.generation, image_mod.encode(card.store.objects, 0)))
    card.store.backend.write_point = hook  # the state after every commit, anti-tearing's decrements included
    reader = session(card)
    for command in commands:
        reader.transmit(command)
    states.update(hook.states)
    card.close()
    data = bytearray(read(path))
    whole = IMAGE.parse(bytes(data))
    base = len(whole.base.body.data) + 4
    ends = []  # where each record ends
    for record in whole.log:
        ends.append((ends[-1] if ends else base) + 16 + record.head.value.size + 4)
    kind = damage.draw(st.sampled_from(["cut", "flip", "append"]))
    if kind == "cut":
        data = data[:damage.draw(st.integers(base, len(data)))]
    elif kind == "flip":
        for offset in damage.draw(st.lists(st.integers(10, len(data) - 1), min_size=1, max_size=3)):  # after the version
            data[offset] ^= damage.draw(st.integers(1, 255))
    else:
        data += damage.draw(st.binary(min_size=1, max_size=64))
    write(path, bytes(data))
    try:
        objects, generation = image_mod.decode(bytes(data), path)
    except ImageError as exc:
        assert kind == "flip" and "\n" not in str(exc) and str(exc).startswith(f"{path}: damaged card image (")
        return
    assert image_mod.encode(objects, 0) == states[generation]
    if kind == "cut":  # exactly the records wholly on disk
        assert generation == whole.base.body.value.generation + sum(end <= len(data) for end in ends)


# -- kill -9 while commits append and compact ------------------------------------------------------------------

CHILD = r"""
import sys, time
from chip import Card
from reader import SimReader

card = Card.open(sys.argv[1])
card.store.backend.log_limit = 150  # three PIN records, then a compaction: kills land in both paths
card.store.backend.write_point = lambda point, landed: time.sleep(0.003)
reader = SimReader(card)
reader.reset()
print(reader.transmit(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))[-2:].hex().upper(), flush=True)
for _ in range(4):
    sw = reader.transmit(bytes.fromhex("0020000003999999"))[-2:].hex().upper()
    print(sw, flush=True)
    if sw == "6983":
        sys.exit(0)
while True:
    time.sleep(1)
"""


def test_kill_9_inside_appends_and_compactions_never_gives_a_try_back(tmp_path):
    """test_kill9.py's rounds with a log of 150 bytes: every third commit compacts, so the kills land inside
    appends (torn tails) and inside compactions (temporary files). The image always opens; the tries count
    down by every answered wrong PIN and at most the one in flight; none is ever given back."""
    image = str(tmp_path / "card.img")
    Card.from_profile(str(kill9.write_profile(tmp_path)), state=image).close()
    rng = random.Random(20261201)
    previous, rounds = kill9.LIMIT, 0
    points = collections.Counter()
    while previous > 0 and rounds < 30:
        rounds += 1
        proc = subprocess.Popen([sys.executable, "-c", CHILD, image], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=python_env(), cwd=ROOT, bufsize=0)
        try:
            head = kill9.first_line(proc)
            time.sleep(rng.uniform(0.005, 0.060))
            os.kill(proc.pid, signal.SIGKILL)
            rest, err = proc.communicate()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        lines = (head + rest).decode("ascii", "replace").split("\n")
        assert lines[0] == "9000", (lines, err)
        xs = [int(line[3], 16) for line in lines[1:-1] if line.startswith("63C")]
        assert xs == list(range(previous - 1, previous - 1 - len(xs), -1)), (previous, lines)
        tries_left = kill9.durable_pin(image)[2]
        assert tries_left in (previous - len(xs), previous - len(xs) - 1), (previous, xs, tries_left)
        names = sorted(os.listdir(tmp_path))
        points["temporary file left"] += any(name.endswith(".tmp") for name in names)
        points["torn tail left"] += image_mod.parse(read(image)).torn
        previous = tries_left
    print(f"\nkill -9 with compactions: {rounds} rounds, tries left {previous}, {dict(points)}")
    assert previous == 0 or rounds == 30
