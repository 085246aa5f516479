"""One owner per card image (docs/decisions.md §4): the lock, its holder's name, per-writer temporary files,
and `Card.from_profile(state=existing)` refusing to replace a card unless asked (item 6).

A card made with `state=PATH` or `Card.open(PATH)` holds an exclusive flock on the image file for its
whole life; a second opener, in this process or another, is told who holds it. A commit appends to the
file the card locked (the lock stays), and a compaction, which renames a new file over the image, moves the
lock from the old file to the new one, so it holds across commits.
"""

import gc
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import ROOT, python_env
from ssse_helpers import SELECT_SSSE, verify

from chip import Card, CardNotPowered, ImageError
from chip.kernel import image as image_mod
from chip.kernel.image import ImageInUse, holder
from reader import SimReader
from reader.cli import main

VERIFY_RIGHT = verify("123456")
VERIFY_WRONG = verify("999999")


@pytest.fixture
def path(tmp_path):
    path = str(tmp_path / "card.img")
    Card.from_profile(state=path).close()
    return path


def session(card) -> SimReader:
    reader = SimReader(card)
    reader.reset()
    assert reader.transmit(SELECT_SSSE)[-2:] == b"\x90\x00"
    return reader


def tries(path) -> int:
    return Card.open(path, read_only=True).store["ssse.pin"].tries


def in_use(path) -> str:
    with pytest.raises(ImageInUse) as excinfo:
        Card.open(path)
    message = str(excinfo.value)
    assert "\n" not in message and excinfo.value.__cause__ is None
    return message


def python(code: str, *args, **kwargs) -> subprocess.Popen:
    """A child Python running `code` with the project importable."""
    env = python_env()
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


HOLDER = """
    import sys
    from chip import Card
    from reader import SimReader
    card = Card.open(sys.argv[1])
    reader = SimReader(card)
    reader.reset()
    reader.transmit(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))
    for _ in range(int(sys.argv[2])):
        reader.transmit(bytes.fromhex("0020000003999999"))
    print("ready", flush=True)
    sys.stdin.read()  # hold the card until the parent closes our stdin (or kills us)
"""


def ready(child) -> None:
    line = child.stdout.readline()
    assert line == "ready\n", (line, child.stderr.read() if child.poll() is not None else "")


def wait_held(path, pid, timeout=15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if holder(path) == (pid, "sscard serve"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never held by {pid}: {holder(path)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- one owner in this process ------------------------------------------------------------------------

def test_second_open_in_the_same_process_is_refused_naming_this_process(path):
    card = Card.open(path)
    message = in_use(path)
    assert message.startswith(f"{path} is in use by pid {os.getpid()} (")
    assert message == f"{path} is in use by pid {os.getpid()} ({image_mod.program_of(os.getpid())})"
    card.close()
    Card.open(path).close()


def test_three_wrong_pins_split_over_two_openers_are_three(path):
    """The bug one owner per image prevents: two openers each kept a copy, 3 wrong PINs left 4 tries (not 3)."""
    first = Card.open(path)
    reader = session(first)
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC5"
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC4"
    in_use(path)  # the second opener never gets its own copy
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC3"
    first.close()
    with Card.open(path) as second:
        assert second.store["ssse.pin"].tries == 3
        assert session(second).transmit(VERIFY_WRONG) == b"\x63\xC2"
    assert tries(path) == 2


def test_a_personalised_card_owns_its_new_image(tmp_path):
    path = str(tmp_path / "new.img")
    card = Card.from_profile(state=path)
    in_use(path)
    psam_path = str(tmp_path / "psam.img")
    psam = Card.psam(state=psam_path)
    in_use(psam_path)
    card.close(), psam.close()
    Card.open(path).close(), Card.open(psam_path).close()


@pytest.mark.parametrize("log_limit", [image_mod.LOG_LIMIT, 0], ids=["appends", "compactions"])
def test_the_lock_follows_the_image_across_commits(path, log_limit):
    card = Card.open(path)
    card.store.backend.log_limit = log_limit  # 0: every commit compacts (a new file renamed over the image)
    reader = session(card)
    for _ in range(3):
        inode = os.stat(path).st_ino  # (the old file is open while the new one is made: never the same inode)
        generation = card.store.backend.generation
        reader.transmit(VERIFY_WRONG)
        assert (os.stat(path).st_ino == inode) == bool(log_limit)  # an append keeps the file, a compaction not
        assert card.store.backend.generation == generation + 1
        in_use(path)
    child = python("import sys; from chip import Card; Card.open(sys.argv[1])", path)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 1 and f"is in use by pid {os.getpid()}" in err
    card.close()
    assert tries(path) == 3


def test_an_opener_that_locked_a_replaced_file_locks_the_new_one(path, monkeypatch):
    """Between an opener's open and its lock a commit may rename a new file over the image: the file it
    locked is then no longer the image, so it opens and locks again (else it would own a dead file)."""
    stale = os.open(path, os.O_RDONLY)
    owner = Card.open(path)
    owner.store.backend.log_limit = 0  # its commit compacts
    session(owner).transmit(VERIFY_WRONG)  # a new file: `stale` is the replaced one
    owner.close()
    calls = []
    real = image_mod._open_image

    def first_the_stale_file(p, **kw):
        calls.append(p)
        return os.dup(stale) if len(calls) == 1 else real(p, **kw)

    monkeypatch.setattr(image_mod, "_open_image", first_the_stale_file)
    card = Card.open(path)
    os.close(stale)
    assert len(calls) == 2 and card.store["ssse.pin"].tries == 5
    monkeypatch.undo()
    in_use(path)
    card.close()


# -- releasing ---------------------------------------------------------------------------------------

def test_close_and_with_release_the_image(path):
    card = Card.open(path)
    card.close()
    with pytest.raises(ImageError, match=r"this card was closed; open the image again with Card\.open"):
        card.power_on()
    with pytest.raises(CardNotPowered):
        card.transmit(SELECT_SSSE)
    with Card.open(path) as card:
        in_use(path)
        assert session(card).transmit(VERIFY_WRONG) == b"\x63\xC5"
    Card.open(path).close()
    assert tries(path) == 5


def test_a_dropped_card_releases_its_image_at_once_even_for_another_process(path):
    """No collector needed: the applets reach the card by a weak proxy, so dropping it frees it (the
    pytest plugin and tests personalise an image, drop the card and serve the image from a child)."""
    gc.disable()
    try:
        session(Card.open(path)).transmit(VERIFY_WRONG)
        child = python("import sys; from chip import Card; Card.open(sys.argv[1]); print('opened')", path)
        out, err = child.communicate(timeout=60)
    finally:
        gc.enable()
    assert (child.returncode, out) == (0, "opened\n"), err


def test_another_process_is_refused_naming_it_and_its_exit_releases(path):
    child = python(HOLDER, path, "2")
    try:
        ready(child)
        message = in_use(path)
        assert message.startswith(f"{path} is in use by pid {child.pid} (python")
        assert holder(path)[0] == child.pid
        assert tries(path) == 4  # a read-only snapshot sees what the owner wrote
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    with Card.open(path) as card:
        assert session(card).transmit(VERIFY_WRONG) == b"\x63\xC3"


def test_kill_9_of_the_owner_releases_the_image(path):
    child = python(HOLDER, path, "1")
    ready(child)
    in_use(path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    child.stdin.close(), child.stdout.close(), child.stderr.close()
    assert holder(path) is None
    with Card.open(path) as card:
        assert card.store["ssse.pin"].tries == 5


def test_no_lock_file_is_left_next_to_the_image(path):
    """The lock is on the image file itself: nothing else appears in its folder, held or not."""
    folder = os.path.dirname(path)
    with Card.open(path) as card:
        session(card).transmit(VERIFY_WRONG)
        assert os.listdir(folder) == ["card.img"]
    assert os.listdir(folder) == ["card.img"]


# -- the command line ------------------------------------------------------------------------------------

@pytest.fixture
def served(path):
    """`sscard serve` holding the image (on a port where no vpcd listens: it keeps retrying)."""
    env = python_env()
    proc = subprocess.Popen([sys.executable, "-m", "reader.cli", "serve", "--state", path, "--port", str(free_port()),
                             "--no-stdin"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_held(path, proc.pid)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_cli_refuses_a_served_image_in_one_line(served, path, capsys):
    with open(path, "rb") as f:
        before = f.read()
    for argv in (["ssse", "verify", "--state", path, "999999"], ["apdu", "--state", path, "00A40000023F00"],
                 ["personalize", "--force", "--state", path], ["fin", "block", "--state", path]):
        assert main(argv) == 2, argv
        _out, err = capsys.readouterr()
        assert err == f"sscard: error: {path} is in use by pid {served.pid} (sscard serve)\n", argv
    with open(path, "rb") as f:
        assert f.read() == before


def test_info_reads_a_served_image_as_a_snapshot_and_says_so(served, path, capsys):
    assert main(["info", "--state", path]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert f"note         {path} is in use by pid {served.pid} (sscard serve): read-only snapshot\n" in out
    assert "PIN tries left       6 of 6" in out
    assert holder(path) == (served.pid, "sscard serve")  # info took nothing


def test_info_of_an_image_nobody_holds_has_no_note(path, capsys):
    assert main(["info", "--state", path]) == 0
    out, _ = capsys.readouterr()
    assert "in use" not in out and "snapshot" not in out


def test_info_while_this_process_holds_the_card_leaves_it_working(path, capsys):
    card = Card.open(path)
    reader = session(card)
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC5"
    assert main(["info", "--state", path]) == 0
    out, _ = capsys.readouterr()
    assert f"{path} is in use by pid {os.getpid()}" in out and "PIN tries left       5 of 6" in out
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC4"  # still the owner, still writing
    in_use(path)
    card.close()
    assert tries(path) == 4


def test_a_read_only_snapshot_writes_nothing(path):
    with open(path, "rb") as f:
        before = f.read()
    snap = Card.open(path, read_only=True)
    reader = session(snap)
    assert reader.transmit(VERIFY_WRONG) == b"\x65\x81"  # the write it needs cannot be made
    with open(path, "rb") as f:
        assert f.read() == before
    Card.open(path).close()  # a snapshot holds nothing


# -- per-writer temporary files: the planted symlink and racing writers -----------------------------------

def test_a_planted_tmp_symlink_is_never_followed(tmp_path):
    """A planted `card.img.tmp` symlink once made the next commit overwrite its target and turned card.img
    into a symlink. Temporary names are per writer now, created O_EXCL|O_NOFOLLOW."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    path = str(tmp_path / "card.img")
    os.symlink(victim, path + ".tmp")
    card = Card.from_profile(state=path)
    assert session(card).transmit(VERIFY_WRONG) == b"\x63\xC5"
    card.close()
    assert victim.read_bytes() == b"precious"
    assert stat.S_ISREG(os.lstat(path).st_mode)
    assert os.readlink(path + ".tmp") == str(victim)
    assert tries(path) == 5


def test_a_symlink_planted_at_the_exact_temporary_name_fails_the_commit_not_the_target(path, monkeypatch):
    folder = os.path.dirname(path)
    victim = os.path.join(folder, "victim.txt")
    with open(victim, "wb") as f:
        f.write(b"precious")
    card = Card.open(path)
    reader = session(card)
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC5"  # the first write (the owner has tidied its folder)
    card.store.backend.log_limit = 0  # the next commits compact: a temporary file each
    with open(path, "rb") as f:
        before = f.read()
    monkeypatch.setattr(image_mod.secrets, "token_hex", lambda n: "feedc0ffee00")
    planted = os.path.join(folder, f".card.img.{os.getpid()}.feedc0ffee00.tmp")
    os.symlink(victim, planted)
    assert reader.transmit(VERIFY_WRONG) == b"\x65\x81"  # O_EXCL|O_NOFOLLOW: the write is refused, old state kept
    with open(victim, "rb") as f:
        assert f.read() == b"precious"
    with open(path, "rb") as f:
        assert f.read() == before
    assert os.path.islink(planted)
    monkeypatch.undo()
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC4"
    card.close()
    assert tries(path) == 4
    with Card.open(path) as again:  # the next owner removes the planted name (unlink: never followed)
        session(again).transmit(VERIFY_WRONG)
    assert not os.path.lexists(planted)
    with open(victim, "rb") as f:
        assert f.read() == b"precious"


RACER = """
    import sys
    from chip.kernel import image
    path, rounds = sys.argv[1], int(sys.argv[2])
    objects, generation = image.decode(open(path, "rb").read())
    writer = image.FileBackend(path, generation)  # no lock: as two owners would, before one owner per image
    writer.sync = False
    for i in range(rounds):
        objects["ssse.pin"].tries = i % 7
        writer.commit(objects)
    print("done", flush=True)
"""


def test_two_processes_racing_commits_cannot_destroy_an_image(path):
    """An image was once destroyed (816 bytes) by two writers sharing `card.img.tmp`. With a temporary
    file each, every rename puts a complete image in place, whoever wins: every read decodes."""
    racers = [python(RACER, path, "400") for _ in range(2)]
    reads = 0
    try:
        while any(r.poll() is None for r in racers):
            with open(path, "rb") as f:
                data = f.read()
            image_mod.decode(data, path)  # ImageError (damaged) would fail the test
            reads += 1
    finally:
        outcomes = [r.communicate(timeout=120) for r in racers]
    for racer, (out, err) in zip(racers, outcomes):
        assert (racer.returncode, out) == (0, "done\n"), err
    with Card.open(path) as card:
        assert 0 <= card.store["ssse.pin"].tries <= 6
    assert reads > 0
    assert sorted(os.listdir(os.path.dirname(path))) == ["card.img"]


OPENER = """
    import sys, time
    from chip import Card, ImageError
    from chip.kernel.image import ImageInUse
    from reader import SimReader
    path, rounds = sys.argv[1], int(sys.argv[2])
    done = refused = 0
    while done < rounds:
        try:
            card = Card.open(path)
        except ImageInUse:
            refused += 1
            time.sleep(0.001)
            continue
        reader = SimReader(card)
        reader.reset()
        reader.transmit(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))
        reader.transmit(bytes.fromhex("0020000003999999"))  # one wrong PIN: one try less, durably
        card.close()
        done += 1
    print("done", refused, flush=True)
"""


def test_two_processes_taking_turns_lose_no_try(path):
    """Two programs opening, spending a try and closing, over and over: every try counts (6 - 5 = 1)."""
    openers = [python(OPENER, path, str(n)) for n in (2, 3)]
    outcomes = [o.communicate(timeout=120) for o in openers]
    for opener, (out, err) in zip(openers, outcomes):
        assert opener.returncode == 0 and out.startswith("done "), err
    assert tries(path) == 1


# -- Card.from_profile(state=existing) ---------------------------------------------------------------

@pytest.mark.parametrize("existing", ["image", "garbage", "empty", "symlink"])
def test_from_profile_refuses_an_existing_file_unless_asked(tmp_path, existing):
    path = str(tmp_path / "card.img")
    if existing == "image":
        card = Card.from_profile(state=path)
        session(card).transmit(VERIFY_WRONG)
        card.close()
    elif existing == "symlink":
        Card.from_profile(state=str(tmp_path / "real.img")).close()
        os.symlink(tmp_path / "real.img", path)
    else:
        with open(path, "wb") as f:
            f.write(b"" if existing == "empty" else b"notes, not a card")
    target = os.path.realpath(path)
    with open(target, "rb") as f:
        before = f.read()
    for make in (Card.from_profile, Card.psam):
        with pytest.raises(ImageError) as excinfo:
            make(state=path)
        assert str(excinfo.value) == (f"{path} already exists: personalising would replace that card "
                                      "(sscard personalize --force, or Card.from_profile(..., overwrite=True))")
        with open(target, "rb") as f:
            assert f.read() == before
    card = Card.from_profile(state=path, overwrite=True)
    assert card.store["ssse.pin"].tries == 6
    card.close()
    assert tries(path) == 6
    if existing == "symlink":
        assert os.path.islink(path) and tries(str(tmp_path / "real.img")) == 6  # written where it is


def test_from_profile_refuses_a_folder_even_with_overwrite(tmp_path):
    folder = tmp_path / "card.img"
    folder.mkdir()
    with pytest.raises(ImageError) as excinfo:
        Card.from_profile(state=str(folder), overwrite=True)
    assert str(excinfo.value).startswith(f"{folder}: is a folder, not a card image file")


def test_cli_personalize_force_replaces_through_overwrite(path, capsys):
    assert main(["personalize", "--state", path]) == 2
    _, err = capsys.readouterr()
    assert err == f"sscard: error: {path} already exists; add --force to replace it with a new card\n"
    assert main(["personalize", "--force", "--state", path]) == 0
    assert Card.open(path).store["ssse.pin"].tries == 6


def test_an_image_made_meanwhile_is_not_replaced(tmp_path, monkeypatch):
    """Between the check and the first commit another program made the image: the new card refuses to
    replace it (the first commit links its file in, it never renames over one)."""
    path = str(tmp_path / "card.img")
    real = Card._fresh_store

    def and_meanwhile(*args):
        with open(path, "wb") as f:
            f.write(b"the other program's card")
        return real(*args)

    monkeypatch.setattr(Card, "_fresh_store", staticmethod(and_meanwhile))
    with pytest.raises(ImageError) as excinfo:
        Card.from_profile(state=path)
    assert str(excinfo.value) == f"{path}: cannot write the card image: made by another program meanwhile"
    with open(path, "rb") as f:
        assert f.read() == b"the other program's card"
    assert sorted(os.listdir(tmp_path)) == ["card.img"]
