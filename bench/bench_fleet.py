"""Fleets (docs/fleets.md): 10,000 cards in one process (`make bench`).

- memory per in-memory card: tracemalloc around the personalisation of the
  10,000 cards (`chip.fleet.memory_per_card`; goal 20 KiB, i.e. 10,000 cards in
  200 MiB);
- APDU/s across the fleet: one round = the SSSE mix (SELECT, VERIFY, READ
  RECORD x7) on every card in turn, so each APDU goes to a card whose state
  is cold in the CPU caches (unlike bench_ssse.py, which hammers one card);
- the load generator's default mix (8 SSSE reads : 1 online purchase : 1
  hospital registration) over the 10,000 cards, once each;
- image-backed fleets of 100, 1,000 and 10,000 cards (a folder of images, each card opened at
  its first visit and kept loaded, every commit durable): the default mix round-robin, twice (the
  first round opens every card, the second finds them loaded), APDU/s and memory per card, to see
  how both grow with the fleet (bench/README.md, "Image-backed fleets: growth").

Print the figures with `pytest -s bench/bench_fleet.py --benchmark-enable`;
recorded in bench/README.md (section "Fleets"). Under `make test`
(`--benchmark-disable`, pyproject's default) each runs once on a small fleet of
100 cards (a few seconds): the same code and assertions, memory goal included;
the 10,000 cards (in memory about 25 s alone; the image-backed sizes a few minutes) only with
benchmarks enabled (`make bench`).
"""

import gc
import os
import time
import tracemalloc

import pytest
from helpers import CARD_DATE

from chip.fleet import Fleet, memory_per_card, open_cards_limit, raise_open_files_limit
from reader.terminals.fleet_load import SSSE_MIX, load

N = 10_000  # with benchmarks enabled (make bench)
N_TEST = 100  # with benchmarks disabled (make test)
GOAL = 20 * 1024
SIZES = (100, 1_000, 10_000)  # image-backed fleets, benchmarks enabled; disabled: N_TEST alone
SAMPLE = 100  # the cards whose heap is traced at each size


def rss() -> int:
    """Resident set size of this process, bytes (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def open_fds() -> int:
    """File descriptors this process has open (Linux)."""
    return len(os.listdir("/proc/self/fd"))


def benchmarks_disabled(config) -> bool:
    session = getattr(config, "_benchmarksession", None)
    return session.disabled if session is not None else True


def fleet_size(config) -> int:
    """10,000 cards when benchmarks run (make bench), 100 when they are disabled (make test)."""
    return N_TEST if benchmarks_disabled(config) else N


@pytest.fixture(scope="module")
def n(request) -> int:
    return fleet_size(request.config)


@pytest.fixture(scope="module")
def fleet(n):
    gc.collect()
    before = rss()
    started = time.perf_counter()
    fleet = Fleet(date=CARD_DATE)
    fleet.personalize(n)
    seconds = time.perf_counter() - started
    gc.collect()
    grown = rss() - before
    print(f"\npersonalised {n} in-memory cards in {seconds:.1f} s; the process grew by {grown / 2**20:.0f} MiB "
          f"({grown / n / 1024:.1f} KiB per card, allocator and C-level cipher contexts included)")
    for name in fleet:
        fleet[name].power_on()
    return fleet


def round_robin(cards, mix=SSSE_MIX):
    """The SSSE mix on every card in turn (T=0: SELECT answers 61xx, the mix fetches it); returns the
    number of answers that were neither 9000 nor 61xx."""
    bad = 0
    for card in cards:
        transmit = card.transmit
        for apdu in mix:
            sw = transmit(apdu)[-2:]
            if sw != b"\x90\x00" and sw[0] != 0x61:
                bad += 1
    return bad


def bench_fleet_memory_per_card(benchmark, n):
    per_card = benchmark.pedantic(memory_per_card, args=(n,), kwargs={"date": CARD_DATE}, rounds=1, iterations=1)
    benchmark.extra_info["bytes_per_card"] = round(per_card)
    print(f"\nmemory per in-memory card ({n} cards, tracemalloc): {per_card / 1024:.2f} KiB "
          f"-> {per_card * N / 2**20:.0f} MiB for {N} cards (goal {GOAL // 1024} KiB)")
    assert per_card <= GOAL


def bench_fleet_round_robin_ssse(benchmark, fleet):
    cards = [fleet[name] for name in fleet]
    apdus = len(cards) * len(SSSE_MIX)
    benchmark.extra_info["apdus_per_round"] = apdus
    bad = benchmark.pedantic(round_robin, args=(cards,), rounds=5, iterations=1, warmup_rounds=1)
    assert bad == 0
    mean = benchmark.stats.stats.mean if benchmark.stats else None
    if mean:
        print(f"\nSSSE mix round-robin over {len(cards)} cards: {apdus} APDUs in {mean * 1000:.0f} ms, "
              f"{mean / apdus * 1e6:.2f} µs per APDU, {apdus / mean:,.0f} APDU/s")


def bench_fleet_load_default_mix(benchmark, fleet):
    result = benchmark.pedantic(load, args=(fleet,), kwargs={"rounds": 1}, rounds=1, iterations=1)
    assert result.errors == 0, result.samples
    benchmark.extra_info["apdus"] = result.apdus
    print(f"\nload generator, default mix, every card once: {result.summary()}")


def image_fleet(folder, n: int) -> dict:
    """A fleet of `n` images in `folder`, driven round-robin with the default mix twice: what each
    round gives, and what a loaded card costs (process growth, traced heap over `SAMPLE` cards,
    descriptors)."""
    fleet = Fleet(folder, date=CARD_DATE, sync=False)  # sync: the personalisation only; the cards' commits fsync
    started = time.perf_counter()
    fleet.personalize(n)
    personalised = time.perf_counter() - started
    gc.collect()
    rss_before, fds_before = rss(), open_fds()
    first = load(fleet, rounds=1)  # every card opened at its first visit
    steady = load(fleet, rounds=1)  # the cards found loaded (past max_loaded: evicted, reopened)
    gc.collect()
    loaded = len(fleet.loaded())
    grown, fds = rss() - rss_before, open_fds() - fds_before
    sample = fleet.names()[:SAMPLE]
    for name in sample:
        fleet.evict(name)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sampled = load(fleet, cards=sample, rounds=1)  # reopened and used: the state of a loaded card
        gc.collect()
        heap = (tracemalloc.get_traced_memory()[0] - before) / len(sample)
    finally:
        tracemalloc.stop()
    fleet.evict_all()
    for result in (first, steady, sampled):
        assert result.errors == 0, result.samples
    return {"cards": n, "max_loaded": fleet.max_loaded, "loaded": loaded, "personalised_s": personalised,
            "first": first, "steady": steady, "rss_per_card": grown / loaded, "heap_per_card": heap,
            "fds_per_card": fds / loaded}


def bench_fleet_images_growth(benchmark, tmp_path, request):
    """100, 1,000, 10,000 image-backed cards (make bench; make test: 100): APDU/s and memory per card."""
    raise_open_files_limit()  # each loaded card holds its image open: as many as the process may
    sizes = (N_TEST,) if benchmarks_disabled(request.config) else SIZES
    rows = benchmark.pedantic(lambda: [image_fleet(tmp_path / f"fleet-{n}", n) for n in sizes],
                              rounds=1, iterations=1)
    lines = [f"\nimage-backed fleets, the default mix round-robin (loaded at most {open_cards_limit()} at once: "
             "the limit of open files):",
             f"{'cards':>7} {'personalise s':>13} {'round 1 APDU/s':>15} {'round 2 APDU/s':>15} {'loaded':>7} "
             f"{'RSS KiB/card':>12} {'heap KiB/card':>13} {'fds/card':>8}"]
    for row in rows:
        first, steady = row["first"], row["steady"]
        benchmark.extra_info[str(row["cards"])] = {
            "first_apdu_per_s": round(first.apdus_per_second), "steady_apdu_per_s": round(steady.apdus_per_second),
            "loaded": row["loaded"], "rss_per_card": round(row["rss_per_card"]), "heap_per_card": round(row["heap_per_card"]),
            "fds_per_card": round(row["fds_per_card"], 2)}
        lines.append(f"{row['cards']:>7,} {row['personalised_s']:>13.1f} {first.apdus_per_second:>15,.0f} "
                     f"{steady.apdus_per_second:>15,.0f} {row['loaded']:>7,} {row['rss_per_card'] / 1024:>12.1f} "
                     f"{row['heap_per_card'] / 1024:>13.1f} {row['fds_per_card']:>8.2f}")
    print("\n".join(lines))
