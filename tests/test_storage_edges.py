"""Card images at the edges of files and storage (docs/decisions.md §4): paths that are not image files, folders
that cannot be written, and the activation-deadline write at power-up on storage that refuses it.

Each mistake is one line naming the path and what to do (exit status 2 in the CLI), at once: a FIFO is
never opened (a hang), /dev/zero never read (gigabytes), a personalisation into a missing, read-only or
full folder leaves nothing behind. Read-only and full storage are simulated by making os.open for writing
(O_CREAT, O_WRONLY, O_RDWR) and os.write fail with EROFS/ENOSPC (portable; as root a chmod'ed folder is
still writable), and, when this runs as
root with `unshare`, once more on a real read-only bind mount and a full tmpfs.
"""

import datetime
import errno
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
from helpers import CARD_DATE, ROOT, SELECT_SSSE, cli, python_env
from ssse_helpers import verify

from chip import Card, ImageError
from chip.kernel import image as image_mod
from chip.kernel.store import StorageFailure
from reader import SimReader

PAST_DEADLINE = datetime.date(2040, 1, 1)  # 300 days after issue are long gone: the SSSE locks at power-up
VERIFY_WRONG = verify("999999")
ENV = python_env()
WRITING = os.O_CREAT | os.O_WRONLY | os.O_RDWR  # the opens read-only storage refuses


@pytest.fixture
def image(tmp_path):
    path = str(tmp_path / "card.img")
    Card.from_profile(state=path, date=CARD_DATE).close()
    return path


def one_line_error(capsys, *argv) -> str:
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("sscard: error: "), (code, out, err)
    return err[len("sscard: error: "):-1]


@pytest.fixture
def alarm():
    """Fail instead of hanging (a FIFO opened for reading waits for a writer forever)."""
    def expired(signum, frame):
        raise AssertionError("hung: the call did not return within 10 s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def failing(monkeypatch, call: str, code: int, where: str | None = None):
    """Make os.open for writing (O_CREAT, O_WRONLY, O_RDWR) or os.write fail with `code` (EROFS, ENOSPC, ...),
    in `where` only."""
    real = getattr(os, call)

    def open_(path, flags, *args, **kwargs):
        if flags & WRITING and (where is None or os.fspath(path).startswith(where)):
            raise OSError(code, os.strerror(code), path)
        return real(path, flags, *args, **kwargs)

    def write(fd, data):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, call, open_ if call == "open" else write)


def state_of(path):
    return Card.open(path, read_only=True).store["ssse.state"]


# -- paths that are not card image files ------------------------------------------------------------------

def test_a_fifo_is_refused_at_once(tmp_path, alarm, capsys):
    fifo = str(tmp_path / "card.img")
    os.mkfifo(fifo)
    expected = f"{fifo}: is a FIFO, not a card image file (give the path of a card image)"
    with pytest.raises(ImageError) as excinfo:
        Card.open(fifo)
    assert str(excinfo.value) == expected
    with pytest.raises(ImageError):
        Card.open(fifo, read_only=True)
    for argv in (["info", "--state", fifo], ["apdu", "--state", fifo, SELECT_SSSE]):
        assert one_line_error(capsys, *argv) == expected


def test_a_fifo_in_the_cli_process_never_hangs(tmp_path):
    fifo = str(tmp_path / "card.img")
    os.mkfifo(fifo)
    try:
        done = subprocess.run([sys.executable, "-m", "reader.cli", "info", "--state", fifo], cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("sscard info on a FIFO hung")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"sscard: error: {fifo}: is a FIFO, not a card image file (give the path of a card image)\n"


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.mark.parametrize("how", ["direct", "symlink"])
def test_dev_zero_is_refused_without_reading_it(tmp_path, how):
    path = "/dev/zero"
    if how == "symlink":
        path = str(tmp_path / "card.img")
        os.symlink("/dev/zero", path)
    try:
        done = subprocess.run([sys.executable, "-m", "reader.cli", "info", "--state", path], cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail("sscard info on /dev/zero did not return")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"sscard: error: {path}: is a device, not a card image file (give the path of a card image)\n"


def test_a_folder_and_a_socket_are_refused(tmp_path, capsys):
    folder = tmp_path / "card.img"
    folder.mkdir()
    assert one_line_error(capsys, "info", "--state", str(folder)) == \
        f"{folder}: is a folder, not a card image file (give the path of a card image)"
    where = str(tmp_path / "s.img")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(where)
        with pytest.raises(ImageError, match=r"s\.img: is a socket, not a card image file"):
            Card.open(where)


def test_a_huge_file_is_refused_without_reading_it(tmp_path, monkeypatch):
    path = str(tmp_path / "card.img")
    with open(path, "wb") as f:
        f.truncate(image_mod.MAX_IMAGE_BYTES + 1)  # sparse: costs nothing
    reads = []
    real = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real(fd, n))
    with pytest.raises(ImageError) as excinfo:
        Card.open(path)
    assert str(excinfo.value) == (f"{path}: {image_mod.MAX_IMAGE_BYTES + 1} bytes is too large for a card image "
                                  f"(at most {image_mod.MAX_IMAGE_BYTES})")
    assert reads == []


def test_a_file_that_grows_while_read_is_cut_at_the_bound(tmp_path, monkeypatch):
    """The size is checked before reading and the read itself is bounded (a file may grow in between)."""
    path = str(tmp_path / "card.img")
    with open(path, "wb") as f:
        f.write(b"SSCARDIM")
    monkeypatch.setattr(image_mod, "MAX_IMAGE_BYTES", 1 << 16)
    real = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: b"\0" * n if n else real(fd, n))  # never ends
    with pytest.raises(ImageError, match=r"too large for a card image \(more than 65536 bytes\)"):
        Card.open(path)


def test_serve_switch_to_a_fifo_fails_at_once(image, tmp_path, alarm):
    from reader.pcsc.serve import Slot

    fifo = str(tmp_path / "other.img")
    os.mkfifo(fifo)
    slot = Slot(0, image, "127.0.0.1", 1)
    with pytest.raises(ImageError, match="is a FIFO"):
        slot.switch(fifo)
    assert slot.image == image
    slot.card.close()


# -- personalising where no image can be written -------------------------------------------------------------

def test_personalize_into_a_missing_folder(tmp_path, capsys):
    path = str(tmp_path / "no" / "such" / "card.img")
    folder = str(tmp_path / "no" / "such")
    assert one_line_error(capsys, "personalize", "--state", path) == \
        f"{path}: cannot make a card image there: the folder {folder} does not exist (create it first)"
    assert not os.path.exists(tmp_path / "no")
    with pytest.raises(ImageError, match="does not exist"):
        Card.psam(state=path)


def test_personalize_into_a_file_as_folder(tmp_path, capsys):
    (tmp_path / "notes").write_text("a file")
    path = str(tmp_path / "notes" / "card.img")
    message = one_line_error(capsys, "personalize", "--state", path)
    assert message == f"{path}: cannot make a card image there: {tmp_path / 'notes'} is not a folder"


@pytest.mark.parametrize("call, code, what", [
    ("open", errno.EROFS, "is on a read-only file system (use a writable folder)"),
    ("open", errno.EACCES, "permission denied in {folder} (use a folder you can write)"),
    ("write", errno.ENOSPC, "no space left in {folder} (free some space)"),
    ("write", errno.EIO, "({strerror})"),
], ids=["read-only", "no-permission", "full", "io-error"])
def test_personalize_where_nothing_can_be_written(tmp_path, capsys, monkeypatch, call, code, what):
    folder = str(tmp_path / "cards")
    os.mkdir(folder)
    path = os.path.join(folder, "card.img")
    failing(monkeypatch, call, code)
    message = one_line_error(capsys, "personalize", "--state", path)
    with pytest.raises(ImageError) as excinfo:
        Card.from_profile(state=path)
    monkeypatch.undo()
    detail = what.format(folder=folder, strerror=os.strerror(code))
    if code == errno.EROFS:
        detail = f"{folder} {detail}"
    assert message == str(excinfo.value)
    assert message.startswith(f"{path}: cannot write the card image") and message.endswith(detail), message
    assert excinfo.value.__cause__ is None
    assert os.listdir(folder) == []  # no image, no temporary file


def test_replacing_an_image_in_a_full_folder_keeps_the_old_one(image, capsys, monkeypatch):
    with open(image, "rb") as f:
        before = f.read()
    failing(monkeypatch, "write", errno.ENOSPC)
    message = one_line_error(capsys, "personalize", "--force", "--state", image)
    monkeypatch.undo()
    assert message.startswith(f"{image}: cannot write the card image: no space left in ")
    with open(image, "rb") as f:
        assert f.read() == before
    assert os.listdir(os.path.dirname(image)) == ["card.img"]
    Card.open(image).close()  # and the failed personalisation holds nothing


def test_a_failed_commit_names_the_image_and_leaves_no_temporary_file(image, monkeypatch, caplog):
    card = Card.open(image)
    reader = SimReader(card)
    reader.reset()
    reader.transmit(bytes.fromhex(SELECT_SSSE))
    failing(monkeypatch, "write", errno.ENOSPC)
    with caplog.at_level(logging.ERROR, logger="sscard.chip"):
        assert reader.transmit(VERIFY_WRONG) == b"\x65\x81"
    monkeypatch.undo()
    assert any(f"{image}: cannot write the card image: no space left in" in r.getMessage() for r in caplog.records)
    assert os.listdir(os.path.dirname(image)) == ["card.img"]
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC5"
    card.close()


def test_a_failed_folder_fsync_answers_6581_and_keeps_memory_equal_to_the_file(image, monkeypatch):
    """The rename landed but the folder's fsync failed: not known durable (6581), yet the file holds the
    new state, so the card keeps it in memory too (never one state in memory and another on disk)."""
    card = Card.open(image)
    card.store.backend.log_limit = 0  # every commit rewrites the image (a compaction): rename, folder fsync
    reader = SimReader(card)
    reader.reset()
    reader.transmit(bytes.fromhex(SELECT_SSSE))
    real = os.fsync
    folder_fd = []

    def fsync(fd):
        import stat
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            folder_fd.append(fd)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert reader.transmit(VERIFY_WRONG) == b"\x65\x81"
    monkeypatch.undo()
    assert folder_fd
    assert card.store["ssse.pin"].tries == 5 == Card.open(image, read_only=True).store["ssse.pin"].tries
    assert card.store.journal == []
    card.close()


def test_storage_failure_outside_a_command_is_one_line_in_the_cli(image, capsys, monkeypatch):
    import reader.cli.card as cli_mod

    def broken(args):
        raise StorageFailure(f"{image}: cannot write the card image: no space left in /x (free some space)")

    monkeypatch.setattr(cli_mod, "cmd_info", broken)
    assert one_line_error(capsys, "info", "--state", image) == \
        f"{image}: cannot write the card image: no space left in /x (free some space)"


# -- the activation-deadline write at power-up on storage that refuses it ----------------------------------

def test_power_up_on_read_only_storage_runs_without_the_deadline_lock_then_applies_it(image, monkeypatch, caplog):
    """A real card answers 6581 to the command whose write failed; a power-up rule has no command to
    answer. Decision: the card powers up without the lock (rolled back), says so in one line, stays
    usable read-only (reads answer, a write answers 6581), and the next power-up that can write locks."""
    with open(image, "rb") as f:
        before = f.read()
    failing(monkeypatch, "open", errno.EROFS)  # the storage read-only from the start: the image opens read-only
    card = Card.open(image, date=PAST_DEADLINE)
    with caplog.at_level(logging.WARNING, logger="sscard.chip"):
        atr = card.power_on()
    assert atr == card.atr
    warning = card.power_up_warning
    assert warning.startswith(f"warning: {image}: cannot write the card image: ") and "\n" not in warning
    assert "read-only file system" in warning and "next power-up that can write" in warning
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [warning]
    reader = SimReader(card)
    assert reader.transmit(bytes.fromhex(SELECT_SSSE))[-2:] == b"\x90\x00"  # not locked: the lock did not land
    assert reader.transmit(VERIFY_WRONG) == b"\x65\x81"  # a write cannot land either
    assert card.store["ssse.state"].lock == "none" and card.store.journal == []
    with open(image, "rb") as f:
        assert f.read() == before
    monkeypatch.undo()
    card.reset()  # storage writable again: this power-up applies the rule
    assert card.power_up_warning is None
    assert reader.transmit(bytes.fromhex(SELECT_SSSE))[-2:] == b"\x62\x83"  # locked, FCI + 6283
    card.close()
    assert (state_of(image).lock, state_of(image).lock_reason) == ("locked", "deadline")


PATCHED_CLI = """
    import errno, os, sys
    real = os.open
    def refuse(path, flags, *args, **kwargs):
        if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real(path, flags, *args, **kwargs)
    os.open = refuse  # this process's storage is read-only
    from reader.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def test_sscard_apdu_past_the_deadline_on_read_only_storage(image):
    """`sscard --date 2040-01-01 apdu --state ro/c.img 00A4...`: one warning line, the answers, exit 0."""
    with open(image, "rb") as f:
        before = f.read()
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(PATCHED_CLI), "--date", "2040-01-01", "apdu",
                           "--state", image, SELECT_SSSE, "00B2012C12"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {image}: cannot write the card image: "), done.stderr
    assert "Traceback" not in done.stderr
    out = done.stdout
    assert out.startswith("ATR ") and out.count("< 9000  OK") == 2  # not locked: SELECT and READ RECORD answer
    with open(image, "rb") as f:
        assert f.read() == before


# -- the same on real storage (root with unshare: a read-only bind mount, a full tmpfs) ------------------------

REAL_STORAGE = r"""
set -u
D="$1"; PY="$2"
mount -t tmpfs -o size=256k tmpfs "$D/mnt" || exit 90
mkdir "$D/mnt/ro" "$D/mnt/full"
cli() { "$PY" -m reader.cli "$@"; echo "rc=$?"; }
cli --date 2026-11-21 personalize --state "$D/mnt/ro/c.img" >/dev/null
mount --bind "$D/mnt/ro" "$D/mnt/ro" && mount -o remount,bind,ro "$D/mnt/ro" || exit 91
echo "== personalize-ro"; cli personalize --state "$D/mnt/ro/new.img" 2>&1
echo "== apdu-ro"; cli --date 2040-01-01 apdu --state "$D/mnt/ro/c.img" 00A404000F7378312E73682EC9E7BBE1B1A3D5CF 2>&1
echo "== ls-ro"; ls -A "$D/mnt/ro"
mount -o remount,bind,rw "$D/mnt/ro" || exit 92
echo "== apdu-rw"; cli --date 2040-01-01 apdu --state "$D/mnt/ro/c.img" 00A404000F7378312E73682EC9E7BBE1B1A3D5CF 2>&1
head -c 1M /dev/zero > "$D/mnt/full/fill" 2>/dev/null
echo "== personalize-full"; cli personalize --state "$D/mnt/full/c.img" 2>&1
echo "== ls-full"; ls -A "$D/mnt/full"
"""


def _sections(text: str) -> dict:
    sections, name = {}, None
    for line in text.splitlines():
        if line.startswith("== "):
            name = line[3:]
            sections[name] = []
        elif name is not None:
            sections[name].append(line)
    return sections


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_real_read_only_mount_and_full_tmpfs(tmp_path):
    (tmp_path / "mnt").mkdir()
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", REAL_STORAGE, "sh",
                           str(tmp_path), sys.executable], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=120)
    if done.returncode in (90, 91, 92) or "unshare failed" in done.stderr:
        pytest.skip(f"cannot mount here: {done.stderr.strip()[:200]}")
    s = _sections(done.stdout)
    ro, full = f"{tmp_path}/mnt/ro", f"{tmp_path}/mnt/full"
    assert s["personalize-ro"] == [f"sscard: error: {ro}/new.img: cannot write the card image: {ro} is on a "
                                   "read-only file system (use a writable folder)", "rc=2"], done.stdout
    warning, atr, rc = s["apdu-ro"][0], s["apdu-ro"][1], s["apdu-ro"][-1]
    assert warning.startswith(f"warning: {ro}/c.img: cannot write the card image: {ro} is on a read-only file "
                              "system"), done.stdout
    assert atr.startswith("ATR ") and rc == "rc=0" and "Traceback" not in done.stdout
    assert "< 9000  OK" in s["apdu-ro"]  # not locked
    assert s["ls-ro"] == ["c.img"]
    assert s["apdu-rw"][0].startswith("ATR ") and any(line.startswith("< 6283") for line in s["apdu-rw"])  # locked
    assert s["personalize-full"] == [f"sscard: error: {full}/c.img: cannot write the card image: no space left in "
                                     f"{full} (free some space)", "rc=2"], done.stdout
    assert s["ls-full"] == ["fill"]
