"""Fleets: many cards in one process.

`Fleet(folder)` is a folder of card images, `NAME.img` each, opened lazily:
`fleet["card-0001"]` opens `folder/card-0001.img` the first time it is used
and keeps the `Card` until `evict(name)` (or until `max_loaded` other cards
were used since, when that is set). `Fleet()` without a folder keeps its cards
in memory only (benchmarks, load tests): nothing to reopen, so `evict` drops
the card for good.

`fleet.personalize(n)` makes n cards from one profile, each its own card:
`variant(profile, index)` derives the card number (`T` + 8 digits), the
card serial (the key diversification data, so every card has its own keys)
and the PAN (with its Luhn check digit, so its own financial keys) from the
index, with `dataclasses.replace` on the base profile: everything else (holder,
keys of the issuer, settings) is the base profile's, shared, not copied.

Memory: a personalised in-memory card costs about 19 KiB, a loaded image-backed one about 30 KiB
(`bench/bench_fleet.py` measures both with tracemalloc); the dispatch tables of the applets are
per class, not per card.

Open files: an image-backed card holds its image open for as long as it is loaded (one descriptor,
`FDS_PER_CARD`: the image's lock, which its commits also append through), so a folder fleet
never keeps more cards loaded than the process's limit of open files allows (`open_cards_limit`),
whatever `max_loaded` says: past it, the least recently used card is evicted rather than a commit
failing for want of a descriptor. `raise_open_files_limit()` lifts that limit to the most the
process may have, for the programs that load large fleets (bench/bench_fleet.py).
"""

import dataclasses
import datetime
import os
import resource
from collections import OrderedDict

from chip.card import Card
from chip.kernel import image as image_mod
from chip.personalization import luhn
from chip.personalization.profile import Profile, load_profile

SUFFIX = ".img"
CARD_NUMBER_DIGITS = 8
PAN_PREFIX_DIGITS = 6  # the issuer identification number of the base PAN is kept
FDS_PER_CARD = 1  # descriptors a loaded image-backed card holds: its image's lock, which it also appends through
FD_RESERVE = 128  # descriptors left to the rest of the process (sockets, pcscd, logs, the PSAM's image...)


def open_cards_limit() -> int | None:
    """How many image-backed cards this process can hold loaded at once: its limit of open files
    (RLIMIT_NOFILE, the soft one), less `FD_RESERVE`, over `FDS_PER_CARD` (at least 1); None when
    the process has no such limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(1, (soft - FD_RESERVE) // FDS_PER_CARD)


def raise_open_files_limit() -> int:
    """Lift this process's soft limit of open files to its hard limit (what an unprivileged process
    may do), so that more image-backed cards stay loaded; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # a hard limit the kernel refuses as soft (above nr_open): keep ours
            pass
    return soft


def variant(base: Profile, index: int) -> Profile:
    """The base profile made into card number `index` (0 <= index < 10**8) of a fleet.

    Card number `T` + index in 8 digits; serial = index as 4 bytes (EF05 item 01
    bytes 9-12 and ATR historical bytes 10-13, so the card-level diversification
    factor of P9 §7.3.3 differs: distinct SSSE keys); PAN = the
    base PAN's first 6 digits, the index zero-filled to fill the base PAN's
    length, a Luhn digit (distinct financial keys).
    """
    if not 0 <= index < 10 ** CARD_NUMBER_DIGITS:
        raise ValueError(f"a fleet card index is 0-{10 ** CARD_NUMBER_DIGITS - 1}, not {index}")
    body = len(base.financial.pan) - 1 - PAN_PREFIX_DIGITS
    pan = base.financial.pan[:PAN_PREFIX_DIGITS] + f"{index:0{body}d}"
    pan += luhn.check_digit(pan)
    return dataclasses.replace(
        base,
        card_number=f"T{index:0{CARD_NUMBER_DIGITS}d}",
        serial=index.to_bytes(4, "big"),
        atr_historical=base.atr_historical[:9] + index.to_bytes(4, "big"),
        financial=dataclasses.replace(base.financial, pan=pan),
    )


class Fleet:
    """Cards by name: from a folder of images (lazily opened), or in memory (`folder=None`).

    `date`: the simulated date every card gets (None: the host's today).
    `max_loaded`: keep at most that many cards open (least recently used are
    evicted; folder fleets only), and never more than `open_cards_limit()` (None: as many as
    that allows). `sync=False` skips the fsyncs when
    personalising (a scratch farm; the images are still written atomically).
    """

    def __init__(self, folder=None, *, date: datetime.date | None = None, max_loaded: int | None = None,
                 sync: bool = True):
        self.folder = None if folder is None else os.fspath(folder)
        self.date = date
        if self.folder is not None:
            limit = open_cards_limit()
            if limit is not None:
                max_loaded = limit if max_loaded is None else min(max_loaded, limit)
        self.max_loaded = max_loaded
        self.sync = sync
        self._cards: OrderedDict[str, Card] = OrderedDict()  # the loaded cards, least recently used first
        self._names: dict[str, None] = {}  # every card of the fleet, in order (a dict: ordered set)
        if self.folder is not None:
            os.makedirs(self.folder, exist_ok=True)
            for entry in sorted(os.listdir(self.folder)):
                if entry.endswith(SUFFIX):
                    self._names[entry[:-len(SUFFIX)]] = None

    # -- the cards ---------------------------------------------------------------------------------
    def path(self, name: str) -> str:
        if self.folder is None:
            raise ValueError("an in-memory fleet has no image files")
        return os.path.join(self.folder, name + SUFFIX)

    def __getitem__(self, name: str) -> Card:
        cards = self._cards
        card = cards.get(name)
        if card is not None:
            if self.max_loaded is not None:
                cards.move_to_end(name)
            return card
        if name not in self._names:
            raise KeyError(f"no card {name!r} in this fleet")
        return self._admit(name, Card.open(self.path(name), date=self.date))

    def _admit(self, name: str, card: Card) -> Card:
        """Keep `card` loaded as `name`; a folder fleet evicts the least recently used beyond `max_loaded`
        (an in-memory fleet has nothing to reopen them from)."""
        cards = self._cards
        cards[name] = card
        if self.max_loaded is not None and self.folder is not None:
            while len(cards) > self.max_loaded:
                self.evict(next(iter(cards)))
        return card

    def get(self, name: str, default=None):
        return self[name] if name in self._names else default

    def __contains__(self, name) -> bool:
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self):
        return iter(list(self._names))

    def names(self) -> list[str]:
        return list(self._names)

    def loaded(self) -> list[str]:
        """The cards held in memory now."""
        return list(self._cards)

    def is_loaded(self, name: str) -> bool:
        return name in self._cards

    def evict(self, name: str) -> bool:
        """Power the card off, close it (its image's lock is released) and drop it from memory; its image
        stays (reopened on next use).

        In an in-memory fleet there is nothing to reopen: the card leaves the fleet.
        Returns whether the card was loaded.
        """
        card = self._cards.pop(name, None)
        if card is not None:
            card.close()  # powered off and the image given up: another owner (or the next use) may open it
        if self.folder is None:
            self._names.pop(name, None)
        return card is not None

    def evict_all(self) -> None:
        for name in list(self._cards):
            self.evict(name)

    def add(self, name: str, card: Card) -> Card:
        """Put an existing card in the fleet (in memory; a folder fleet also writes its image)."""
        if self.folder is not None:
            self._write(name, card)
            card = Card.open(self.path(name), date=self.date)
        self._names[name] = None
        return self._admit(name, card)

    # -- personalisation ----------------------------------------------------------------------------
    def personalize(self, n: int, profile="default", prefix: str = "card-", start: int = 1,
                    width: int | None = None) -> list[str]:
        """Make `n` new cards, `prefix` + number (from `start`, zero-filled to `width`, at least 4),
        each a `variant` of `profile` (shipped name, TOML path or Profile) numbered by its index.

        A folder fleet writes `folder/NAME.img` (refusing to replace an existing one) and
        leaves the card unloaded (opened on first use); an in-memory fleet keeps the cards.
        Returns the new names.
        """
        base = profile if isinstance(profile, Profile) else load_profile(profile)
        width = width or max(4, len(str(start + n - 1)))
        names = [f"{prefix}{i:0{width}d}" for i in range(start, start + n)]
        clash = [name for name in names if name in self._names]
        if clash:
            raise ValueError(f"the fleet already has {clash[0]}")
        today = self.date or datetime.date.today()
        for number, name in zip(range(start, start + n), names):
            card = Card.from_profile(variant(base, number), date=today)
            if self.date is None:
                card.set_date(None)
            if self.folder is None:
                self._cards[name] = card
            else:
                self._write(name, card)
            self._names[name] = None
        if self.folder is not None and self.sync:
            image_mod.fsync_folder(self.folder)
        return names

    def _write(self, name: str, card: Card) -> None:
        path = self.path(name)
        if os.path.exists(path):
            raise ValueError(f"{path} already exists")
        backend = image_mod.FileBackend(path)
        backend.sync = self.sync
        backend.commit(card.store.objects)

    def __repr__(self) -> str:
        where = self.folder or "memory"
        return f"<Fleet of {len(self)} cards in {where}, {len(self._cards)} loaded>"


def image_names(folder) -> list[str]:
    """The card images of a fleet folder, sorted (what `sscard serve --fleet DIR` serves)."""
    folder = os.fspath(folder)
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        raise image_mod.ImageError(f"{folder}: no such fleet folder") from None
    except NotADirectoryError:
        raise image_mod.ImageError(f"{folder}: not a folder (a fleet is a folder of NAME.img images)") from None
    return [os.path.join(folder, entry) for entry in sorted(entries) if entry.endswith(SUFFIX)]


def memory_per_card(n: int = 2000, profile="default", date: datetime.date | None = None) -> float:
    """Bytes of Python heap one in-memory card takes: personalise `n` cards under tracemalloc, divide.

    Personalisation's temporaries are freed before the measure; what stays is
    what a loaded card costs (its store, applets and session state).
    """
    import gc
    import tracemalloc

    base = profile if isinstance(profile, Profile) else load_profile(profile)
    date = date or datetime.date(2026, 11, 21)
    warm = Fleet(date=date)
    warm.personalize(2, base, prefix="warm-")  # module-level caches, construct, crypto contexts
    gc.collect()
    started = tracemalloc.is_tracing()
    if not started:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fleet = Fleet(date=date)
        fleet.personalize(n, base)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        if not started:
            tracemalloc.stop()
    del fleet
    return (after - before) / n


def main(argv=None) -> int:
    """`python -m chip.fleet DIR N [PROFILE] [--prefix card-]`: personalise N card images into DIR."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m chip.fleet", description="personalise a fleet of card images")
    parser.add_argument("folder", metavar="DIR")
    parser.add_argument("n", type=int, metavar="N")
    parser.add_argument("profile", nargs="?", default="default", help="shipped profile name or TOML path")
    parser.add_argument("--prefix", default="card-")
    parser.add_argument("--start", type=int, default=1)
    parser.add_argument("--no-sync", action="store_true", help="skip fsync (scratch farms)")
    args = parser.parse_args(argv)
    fleet = Fleet(args.folder, sync=not args.no_sync)
    try:
        names = fleet.personalize(args.n, args.profile, prefix=args.prefix, start=args.start)
    except (ValueError, image_mod.ImageError) as exc:
        parser.exit(2, f"python -m chip.fleet: {exc}\n")
    print(f"personalised {len(names)} cards in {args.folder}: {names[0]} .. {names[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
