"""Fleets (docs/fleets.md): 10,000 cards in one process (`make bench`).

- memory per in-memory card: tracemalloc around the personalisation of the
  10,000 cards (`chip.fleet.memory_per_card`; goal 20 KiB, i.e. 10,000 cards in
  200 MiB);
- APDU/s across the fleet: one round = the SSSE mix (SELECT, VERIFY, READ
  RECORD x7) on every card in turn, so each APDU goes to a card whose state
  is cold in the CPU caches (unlike bench_ssse.py, which hammers one card);
- the load generator's default mix (8 SSSE reads : 1 online purchase : 1
  hospital registration) over the 10,000 cards, once each.

Print the figures with `pytest -s bench/bench_fleet.py --benchmark-enable`;
recorded in bench/README.md (section "Fleets"). Under `make test`
(`--benchmark-disable`, pyproject's default) each runs once on a small fleet of
100 cards (about a second): the same code and assertions, memory goal included;
the 10,000 cards (about 25 s alone, a minute next to other work) only with
benchmarks enabled (`make bench`).
"""

import gc
import os
import time

import pytest
from helpers import CARD_DATE

from chip.fleet import Fleet, memory_per_card
from reader.terminals.fleet_load import SSSE_MIX, load

N = 10_000  # with benchmarks enabled (make bench)
N_TEST = 100  # with benchmarks disabled (make test)
GOAL = 20 * 1024


def rss() -> int:
    """Resident set size of this process, bytes (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def fleet_size(config) -> int:
    """10,000 cards when benchmarks run (make bench), 100 when they are disabled (make test)."""
    session = getattr(config, "_benchmarksession", None)
    disabled = session.disabled if session is not None else True
    return N_TEST if disabled else N


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
