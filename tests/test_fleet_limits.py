"""Image-backed fleets against the process's limit of open files (chip/fleet.py), and the load
generator's visit to an image it cannot open (reader/terminals/fleet_load.py).

A loaded image-backed card holds its image open (one descriptor: the image's lock, which its commits
append through), so a folder fleet keeps at most `open_cards_limit()` cards loaded: past it the
least recently used one is evicted, instead of the next open or commit failing with EMFILE.
"""

import json
import os
import resource
import subprocess
import sys

import pytest
from helpers import CARD_DATE, ROOT
from ssse_helpers import SELECT_SSSE, verify

from chip import Card
from chip import fleet as fleet_module
from chip.fleet import FD_RESERVE, FDS_PER_CARD, Fleet, open_cards_limit
from chip.kernel import image as image_mod
from reader import SimReader
from reader.terminals.fleet_load import load

VERIFY_WRONG = verify("999999")


@pytest.fixture
def soft_limit(monkeypatch):
    """Make the process's soft limit of open files look like `value` to chip.fleet."""
    def set_to(value):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        monkeypatch.setattr(fleet_module.resource, "getrlimit", lambda which: (value, hard))
    return set_to


def test_the_limit_is_the_open_files_left_over_the_descriptors_of_a_card(soft_limit):
    assert FDS_PER_CARD == 1
    soft_limit(FD_RESERVE + 36 * FDS_PER_CARD)
    assert open_cards_limit() == 36
    soft_limit(FD_RESERVE)  # nothing left over: one card all the same
    assert open_cards_limit() == 1
    soft_limit(resource.RLIM_INFINITY)
    assert open_cards_limit() is None


def test_max_loaded_of_a_folder_fleet_is_capped_by_the_limit(soft_limit, tmp_path):
    soft_limit(FD_RESERVE + 36 * FDS_PER_CARD)
    assert Fleet(tmp_path).max_loaded == 36  # none given: as many as the limit allows
    assert Fleet(tmp_path, max_loaded=1000).max_loaded == 36
    assert Fleet(tmp_path, max_loaded=10).max_loaded == 10
    assert Fleet(date=CARD_DATE).max_loaded is None  # in memory: no descriptors
    soft_limit(resource.RLIM_INFINITY)
    assert Fleet(tmp_path).max_loaded is None


LOW_LIMIT = r'''
import datetime, json, os, resource, sys
from chip.fleet import FD_RESERVE, FDS_PER_CARD, Fleet, raise_open_files_limit
from reader.terminals.fleet_load import load

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (FD_RESERVE + 3 * FDS_PER_CARD, hard))  # room for 3 cards
fleet = Fleet(sys.argv[1], date=datetime.date(2026, 11, 21), sync=False)
fleet.personalize(8)
results = [load(fleet, rounds=1) for _ in range(2)]  # 8 cards round-robin: each visit evicts one
out = {"max_loaded": fleet.max_loaded, "loaded": len(fleet.loaded()), "errors": sum(r.errors for r in results),
       "samples": [s for r in results for s in r.samples], "visits": sum(r.visits for r in results)}
out["raised"] = raise_open_files_limit() == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
print(json.dumps(out))
'''


def test_a_fleet_larger_than_the_limit_runs_without_running_out_of_descriptors(tmp_path):
    """In a process of its own, with room for 3 cards: 8 image-backed cards driven twice round-robin
    (every flow commits) all end as expected, 3 loaded at most; raise_open_files_limit then lifts the
    soft limit to the hard one."""
    run = subprocess.run([sys.executable, "-c", LOW_LIMIT, str(tmp_path / "farm")], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out == {"max_loaded": 3, "loaded": 3, "errors": 0, "samples": [], "visits": 16, "raised": True}


def test_a_visit_to_an_image_that_cannot_be_opened_is_an_error_of_that_visit(tmp_path):
    fleet = Fleet(tmp_path, date=CARD_DATE, sync=False)
    fleet.personalize(3)
    (tmp_path / "card-0002.img").write_bytes(b"not a card image")
    result = load(fleet, rounds=1)
    assert result.visits == 3 and result.errors == 1
    assert len(result.samples) == 1 and result.samples[0].startswith("card-0002 ")
    assert "card-0002.img" in result.samples[0]
    assert fleet.loaded() == ["card-0001", "card-0003"]


def descriptors_of(path) -> int:
    """How many of this process's open files are the file at `path` (/proc/self/fd)."""
    target = os.path.realpath(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == target
        except OSError:  # the descriptor listdir itself used, closed since
            pass
    return count


@pytest.mark.parametrize("log_limit", [image_mod.LOG_LIMIT, 0], ids=["appends", "compactions"])
def test_a_loaded_card_holds_one_descriptor_of_its_image(tmp_path, log_limit):
    """Opened, then through its commits (appends, or rewrites that move the lock to the new file), an
    image-backed card holds `FDS_PER_CARD` (one) descriptor of its image; closed, none."""
    fleet = Fleet(tmp_path, date=CARD_DATE, sync=False)
    [name] = fleet.personalize(1)
    path = fleet.path(name)
    card = Card.open(path)
    card.store.backend.log_limit = log_limit
    assert descriptors_of(path) == FDS_PER_CARD
    reader = SimReader(card)
    reader.reset()
    reader.transmit(SELECT_SSSE)
    for tries in (5, 4, 3):
        assert reader.transmit(VERIFY_WRONG) == bytes((0x63, 0xC0 | tries))
        assert descriptors_of(path) == FDS_PER_CARD
    card.close()
    assert descriptors_of(path) == 0


def test_an_image_that_cannot_be_opened_for_writing_still_opens_and_commits(tmp_path, monkeypatch):
    """Where the image may not be opened read-write (a file of another user, a read-only mount: here
    os.open refuses O_RDWR), the card locks a read-only descriptor and its commits rewrite the image."""
    fleet = Fleet(tmp_path, date=CARD_DATE, sync=False)
    [name] = fleet.personalize(1)
    path = fleet.path(name)
    real_open = os.open

    def no_read_write(file, flags, *args, **kwargs):
        if flags & os.O_ACCMODE == os.O_RDWR:
            raise PermissionError(13, "Permission denied", file)
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_read_write)
    card = Card.open(path)
    reader = SimReader(card)
    reader.reset()
    reader.transmit(SELECT_SSSE)
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC5"
    monkeypatch.undo()
    card.close()
    assert Card.open(path, read_only=True).store["ssse.pin"].tries == 5
