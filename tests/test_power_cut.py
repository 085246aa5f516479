"""Power-cut sweep of VERIFY and CHANGE PIN (the anti-tearing of LD/T 32 P5 §6.3, §6.14: the try
counter is decremented durably before the comparison; docs/decisions.md §4 for the image).

Cut the power (an injected `PowerLoss`) at every persistent write point of
VERIFY and CHANGE PIN, then read what is durable: its state is the old one, the
durable anti-tearing decrement, or (for a command that succeeds) the new one;
never a mix, never an extra try.

The cut card still owns its image (one owner per image), so what is durable is read without
taking it (`Card.open(path, read_only=True)`); that it goes on working as a card of its own is
checked on a byte copy of the image taken right after the cut (`twin`): both the cut card and the
card powered up from exactly what is durable verify and restore the counter. Then the cut card
is closed and the image reopened by a new owner, which goes on working too (it
cuts off the torn tail a cut inside an append left, before its first append).

Mechanism (tests/power_cut.py): `card.store.backend.write_point = chip.kernel.image.cut_power_at(n)`
makes the n-th write point raise `PowerLoss` out of `card.transmit` and leaves
the card unpowered. A file-backed card has three write points per commit (it appends
one record to its image: append, append-half, fsync; only the last one comes after
the whole record is in the file), an in-memory card one ("commit", never landed).
Run with `pytest -s` to see the counts.
"""

import collections
import os

import pytest
from helpers import DF04_REGION, OK, snapshot
from power_cut import (
    FILE_POINTS,
    MEMORY_POINTS,
    count_write_points,
    cut_at,
    files_in,
    image_card,
    landed,
    left_by,
    twin,
)
from ssse_helpers import READ_DF04_REGION, SELECT_DF04, SELECT_SSSE, change_pin, verify

from chip import Card
from chip.kernel.image import ImageInUse
from chip.kernel.pin import unpack
from reader import SimReader

OLD, NEW, WRONG = "123456", "654321", "999999"
LIMIT = 6


# name: (APDU, succeeds, PIN value once the command is complete)
COMMANDS = {
    "verify-right": (verify(OLD), True, OLD),
    "verify-wrong": (verify(WRONG), False, OLD),
    "change-right": (change_pin(OLD, NEW), True, NEW),
    "change-wrong": (change_pin(WRONG, NEW), False, OLD),
}
OUTCOMES = ("old", "decremented", "new")  # indexed by how many of the command's commits landed


def fresh_card(backend: str, folder, wrong_before: int):
    """A new card, SSSE selected, `wrong_before` wrong PINs already spent (so tries_before < limit is covered)."""
    card, path = image_card(folder) if backend == "file" else (Card.from_profile(), None)
    reader = SimReader(card)
    reader.reset()
    assert reader.transmit(SELECT_SSSE)[-2:] == OK
    for i in range(wrong_before):
        assert reader.transmit(verify(WRONG)) == bytes((0x63, 0xC0 | LIMIT - 1 - i))
    return card, reader, path


def state_of(store) -> tuple[str, int]:
    pin = store["ssse.pin"]
    assert pin.limit == LIMIT
    return unpack(pin.value), pin.tries


def goes_on_working(c, value: str) -> None:
    """The PIN the card holds verifies and restores the counter; nothing verified survived the cut."""
    c.store.backend.write_point = None
    r = SimReader(c)
    r.reset()
    assert r.transmit(SELECT_SSSE)[-2:] == OK
    assert r.transmit(SELECT_DF04)[-2:] == OK
    assert r.transmit(READ_DF04_REGION) == b"\x69\x82"  # nothing verified survives the cut
    assert r.transmit(verify(value)) == OK
    assert r.transmit(READ_DF04_REGION) == bytes.fromhex(DF04_REGION) + OK
    assert state_of(c.store) == (value, LIMIT)


def sweep(backend: str, command: str, wrong_before: int, tmp_path) -> collections.Counter:
    apdu, succeeds, value_after = COMMANDS[command]
    before = LIMIT - wrong_before
    points = FILE_POINTS if backend == "file" else MEMORY_POINTS
    commits = 2 if succeeds else 1  # the anti-tearing decrement, then (on success) the restore and new value
    allowed = {(OLD, before): "old", (OLD, before - 1): "decremented"}
    if succeeds:
        allowed[(value_after, LIMIT)] = "new"
    expected_state = [(OLD, before), (OLD, before - 1), (value_after, LIMIT)]

    # 1. how many write points does the command pass?
    card, reader, _ = fresh_card(backend, tmp_path / f"{backend}-{command}-{wrong_before}-count", wrong_before)
    response, hook = count_write_points(card, reader.transmit, apdu)
    assert response == (OK if succeeds else bytes((0x63, 0xC0 | before - 1)))
    seen = list(hook.seen)
    assert seen == points * commits
    assert state_of(card.store) == expected_state[commits]

    # 2. cut at each of them
    outcomes = collections.Counter()
    for n in range(1, len(seen) + 1):
        card, reader, path = fresh_card(backend, tmp_path / f"{backend}-{command}-{wrong_before}-cut{n}", wrong_before)
        generation_before = card.store.backend.generation
        cut = cut_at(n, card, reader.transmit, apdu, seen, SELECT_SSSE)

        if backend == "file":
            # what is durable, read without taking the image: the cut card still owns it
            durable = Card.open(path, read_only=True)  # it always opens, whatever temporary file the cut left
            with pytest.raises(ImageInUse):
                Card.open(path)
            # a cut after the new file was made and before it was renamed leaves it (the next owner tidies)
            assert files_in(os.path.dirname(path)) == left_by(cut.point)
            revived = twin(path, tmp_path / f"{backend}-{command}-{wrong_before}-cut{n}-twin")
            assert snapshot(revived.store) == snapshot(durable.store)
            generation_after = durable.store.backend.generation
        else:
            durable = card
            generation_after = card.store.backend.generation
        value, tries = state = state_of(durable.store)

        # the rules as stated: old or new PIN, tries old / old-1 / (success) the limit, never a mix
        assert value in (OLD, value_after), (n, state)
        assert tries in ({before, before - 1} | ({LIMIT} if succeeds else set())), (n, state)
        assert tries <= before or (succeeds and state == (value_after, LIMIT)), (n, state)
        assert state in allowed, f"cut {n} at {cut.point}: mixed state {state}"
        # exactly which: the commits that landed before the cut decide it
        commits_landed = landed(n, cut, points)
        assert generation_after - generation_before == commits_landed, (n, cut.point)
        assert state == expected_state[commits_landed], (n, cut.point, state)
        outcomes[OUTCOMES[commits_landed]] += 1

        # the in-memory card, powered again, agrees with what is durable
        reader.reset()
        assert card.store.journal == []
        assert not card.store["ssse.pin"].validated
        assert state_of(card.store) == state
        if backend == "file":
            assert snapshot(card.store) == snapshot(durable.store)
            assert card.store.backend.generation == generation_after
        # and both go on working: the PIN the card now holds verifies and restores the counter (the durable
        # image as a card of its own: its twin, powered up from a copy of exactly what the cut left)
        for c in ((card, revived) if backend == "file" else (card,)):
            goes_on_working(c, value)
        if backend == "file":
            revived.close()
            assert state_of(Card.open(path, read_only=True).store) == (value, LIMIT)  # the cut card's writes landed
            # the cut card leaves; the image's next owner goes on working and tidies what the cut left
            card.close()
            with Card.open(path) as reopened:
                assert state_of(reopened.store) == (value, LIMIT)
                goes_on_working(reopened, value)
            assert state_of(Card.open(path, read_only=True).store) == (value, LIMIT)
            assert files_in(os.path.dirname(path)) == ["card.img"]
    outcomes["cuts"] = len(seen)
    print(f"\n{backend:6} {command:12} tries before {before}: {len(seen):2} cuts -> "
          f"old {outcomes['old']}, decremented {outcomes['decremented']}, new {outcomes['new']}")
    return outcomes


# backend, command -> (cuts, old, decremented, new)
EXPECTED = {
    ("file", "verify-right"): (6, 2, 3, 1),
    ("file", "verify-wrong"): (3, 2, 1, 0),
    ("file", "change-right"): (6, 2, 3, 1),
    ("file", "change-wrong"): (3, 2, 1, 0),
    ("memory", "verify-right"): (2, 1, 1, 0),
    ("memory", "verify-wrong"): (1, 1, 0, 0),
    ("memory", "change-right"): (2, 1, 1, 0),
    ("memory", "change-wrong"): (1, 1, 0, 0),
}


@pytest.mark.parametrize("wrong_before", [0, 1], ids=["full-counter", "one-try-spent"])
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("backend", ["file", "memory"])
def test_power_cut_at_every_write_point(backend, command, wrong_before, tmp_path):
    outcomes = sweep(backend, command, wrong_before, tmp_path)
    cuts, old, decremented, new = EXPECTED[(backend, command)]
    assert (outcomes["cuts"], outcomes["old"], outcomes["decremented"], outcomes["new"]) == (cuts, old, decremented, new)
    assert old + decremented + new == cuts


def test_power_cut_sweep_totals(tmp_path):
    """The whole sweep in one table (`pytest -s`), with its grand totals."""
    totals = {"file": collections.Counter(), "memory": collections.Counter()}
    for backend in totals:
        for command in COMMANDS:
            for wrong_before in (0, 1):
                totals[backend] += sweep(backend, command, wrong_before, tmp_path)
    for backend, counts in totals.items():
        print(f"{backend}: {counts['cuts']} cuts -> old {counts['old']}, decremented {counts['decremented']}, "
              f"new {counts['new']}; mixed states 0, extra tries 0")
    assert dict(totals["file"]) == {"cuts": 36, "old": 16, "decremented": 16, "new": 4}
    assert dict(totals["memory"]) == {"cuts": 12, "old": 8, "decremented": 4}

