"""The machinery of the power-cut sweeps: cut the power at each write point of a command, then
look at what is durable.

A sweep runs the command once through a hook that never cuts (`recording_hook`), to learn the
write points it passes and, if asked, the state after each commit that landed. Then, for every
write point n, on a fresh card brought to the same state, it cuts the power there (`cut_at`,
with `chip.kernel.image.cut_power_at(n)`): `PowerLoss` comes out of the transmit and the card is
left unpowered. A file-backed commit on the steady path appends one record to the image and
passes three write points (`FILE_POINTS`: append, append-half, fsync); only the last, fsync, comes
after the whole record is in the file (landed). A commit that rewrites the image (the first one
of a new image, a format-1 image's migration, a compaction) passes five (`REWRITE_POINTS`: open-tmp,
write-half, fsync-tmp, rename, fsync-folder; landed at fsync-folder). So how many commits landed
before the n-th point follows from n (`landed`); an in-memory card has one point per commit
("commit", never landed). What is durable is read with `Card.open(path, read_only=True)` (the cut
card still owns its image: one owner per image, docs/decisions.md §4), and a card powered up from
exactly that is a `twin`, opened on a byte copy of the image. Whether the result is the old state,
the new one or the durable try-counter decrement of anti-tearing in between is each sweep's own
check.
"""

import os
import random
import re
import shutil

import pytest

from chip import Card, CardNotPowered, PowerLoss
from chip.kernel.image import cut_power_at

FILE_POINTS = ["append", "append-half", "fsync"]  # a steady commit: one record appended, one fsync
REWRITE_POINTS = ["open-tmp", "write-half", "fsync-tmp", "rename", "fsync-folder"]  # the whole image rewritten
LANDED_AT = ("fsync", "fsync-folder")  # the points after which the commit's new state is in the image
MEMORY_POINTS = ["commit"]
LEAVES_TEMP = ("write-half", "fsync-tmp", "rename")  # a cut here leaves the commit's temporary file
TEMP = re.compile(r"\.card\.img\.\d+\.[0-9a-f]+\.tmp")  # a commit's temporary file (the writer's pid, a nonce)
NEVER = 10**9  # cut_power_at(NEVER) counts the write points and never cuts


def deterministic_random(seed: int = 20261121):
    """A card's random source for a sweep: the same bytes, call after call, on every fresh card, so
    two cards brought to the same state have byte-identical images."""
    return random.Random(seed).randbytes


def image_card(folder, profile="default", date=None) -> tuple[Card, str]:
    """A new image-backed card in the new `folder`: (card, image path)."""
    folder.mkdir()
    path = str(folder / "card.img")
    return Card.from_profile(profile, state=path, date=date), path


def recording_hook(capture=None):
    """A write-point hook that never cuts: `.seen` lists the points passed, `.states` holds
    `capture()` taken after each commit that landed."""
    hook = cut_power_at(NEVER)
    states = []

    def record(point, landed):
        hook(point, landed)
        if landed and capture is not None:
            states.append(capture())

    record.seen, record.states = hook.seen, states
    return record


def count_write_points(card, send, command: bytes, capture=None):
    """Send `command` once through a `recording_hook` installed on `card`: (response, hook)."""
    hook = recording_hook(capture)
    card.store.backend.write_point = hook
    return send(command), hook


def cut_at(n: int, card, send, command: bytes, seen: list[str], probe: bytes) -> PowerLoss:
    """Cut the power at the n-th write point of `command`: `PowerLoss` out of `send`, at the point the
    uncut run passed n-th, landed only at the last point of a commit (`LANDED_AT`); the card is left
    unpowered and refuses `probe` (CardNotPowered)."""
    card.store.backend.write_point = cut_power_at(n)
    with pytest.raises(PowerLoss) as excinfo:
        send(command)
    cut = excinfo.value
    assert cut.point == seen[n - 1]
    assert cut.landed == (cut.point in LANDED_AT)
    assert not card.powered
    with pytest.raises(CardNotPowered):
        send(probe)
    return cut


def landed(n: int, cut: PowerLoss, points=FILE_POINTS) -> int:
    """How many of the command's commits landed when the power went at its n-th write point."""
    return (n - 1) // len(points) + cut.landed


def files_in(folder: str) -> list[str]:
    """The folder's files, sorted; a commit's temporary file is named `<temp>`."""
    return sorted("<temp>" if TEMP.fullmatch(name) else name for name in os.listdir(folder))


def left_by(point: str) -> list[str]:
    """What the image's folder holds right after a cut at `point` (`files_in`): the image, and the
    temporary file of a cut after the new file was made and before it was renamed (the image's next
    owner tidies it)."""
    return ["<temp>", "card.img"] if point in LEAVES_TEMP else ["card.img"]


def twin(path: str, folder, date=None) -> Card:
    """A card powered up from exactly what is durable in `path` now: a byte copy of the image in the
    new `folder`, opened as the owner of the copy (the cut card still owns `path`)."""
    folder.mkdir()
    copy = str(folder / "card.img")
    shutil.copyfile(path, copy)
    return Card.open(copy, date=date)
