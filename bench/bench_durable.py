"""Durable commits on a card image: what a VERIFY and a pharmacy purchase cost on a file.

A VERIFY on an image makes the anti-tearing commits of LD/T 32 P5 §6.3 (the try counter
decremented and made durable before the comparison; restored, on success, with the command's
end): one commit for a wrong PIN, two for the right one. The fsyncs of one command are
*counted* (os.fsync wrapped, the folder's fsync included: it goes through os.fsync too), never
timed into an assertion; the time per command is pytest-benchmark's.

The purchase is the designated pharmacy's offline purchase (P7 §12) through
`reader.terminals.ssse.SsseTerminal`: SELECT DF04, VERIFY, INITIALIZE FOR PURCHASE, the PSAM's INIT
SAM FOR PURCHASE (MAC1), DEBIT FOR PURCHASE, CREDIT SAM FOR PURCHASE (the PSAM in memory), on a card
in memory and on a card image. The time a purchase spends inside its fsyncs (`fsync_seconds`) and
one small append + fsync in the same folder (`fsync_cost`) are printed, so the image's figure can be
compared with the in-memory one plus its fsyncs.

Run: `.venv/bin/python -m pytest -s bench/bench_durable.py --benchmark-enable --benchmark-only
--benchmark-columns=min,median,mean,ops,rounds`; figures in bench/README.md ("Durable commits in one
fsync"). Only public APIs are used, so the same file measures the code before and after a change.
"""

import datetime
import os
import statistics
import time

import pytest
import ssse_helpers as sh

from chip import Card
from reader import SimReader
from reader.terminals.psam import Psam
from reader.terminals.ssse import SsseTerminal

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

WHEN = datetime.datetime(2026, 12, 1, 10, 30, 0)
PIN, WRONG = "123456", "999999"


class Fsyncs:
    """While in use, os.fsync is wrapped: `count` calls (the folder's fsync is an os.fsync too) and the
    `seconds` spent in them."""

    def __enter__(self):
        self.count, self.seconds = 0, 0.0
        self._real = real = os.fsync

        def fsync(fd):
            started = time.perf_counter()
            try:
                return real(fd)
            finally:
                self.count += 1
                self.seconds += time.perf_counter() - started

        os.fsync = fsync
        return self

    def __exit__(self, *exc):
        os.fsync = self._real


def count_fsyncs(call):
    """(call's result, how many os.fsync calls it made)."""
    with Fsyncs() as fsyncs:
        result = call()
    return result, fsyncs.count


def fsync_seconds(call, rounds: int = 30) -> float:
    """Median seconds spent inside os.fsync by one `call` (the disk's price of its commits, in place)."""
    spent = []
    for _ in range(rounds):
        with Fsyncs() as fsyncs:
            call()
        spent.append(fsyncs.seconds)
    return statistics.median(spent)


def fsync_cost(folder, rounds: int = 50) -> float:
    """Median seconds of one 64-byte append + fsync to a new file in `folder` (the disk's price of one)."""
    path = os.path.join(folder, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    times = []
    try:
        for _ in range(rounds):
            os.write(fd, bytes(64))
            started = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times)


def ssse_reader(state=None):
    card = Card.from_profile(state=state, date=WHEN.date())
    reader = SimReader(card)
    reader.reset()
    assert reader.transmit(sh.SELECT_SSSE)[-2:] == b"\x90\x00"
    return card, reader


@pytest.mark.parametrize("pin", ["wrong", "right"])
@pytest.mark.parametrize("where", ["memory", "image"])
def bench_durable_verify(benchmark, tmp_path, where, pin):
    """One VERIFY: wrong (63Cx, the decrement committed) or right (9000: decrement, then restore)."""
    card, reader = ssse_reader(tmp_path / "card.img" if where == "image" else None)
    command = sh.verify(PIN if pin == "right" else WRONG)
    expected = b"\x90\x00" if pin == "right" else b"\x63\xC5"

    def restore():  # before each wrong one (not timed) the right PIN restores the counter
        assert reader.transmit(sh.verify(PIN)) == b"\x90\x00"

    answer, fsyncs = count_fsyncs(lambda: reader.transmit(command))
    assert answer == expected
    benchmark.extra_info["fsyncs"] = fsyncs
    print(f"\ndurable VERIFY, {pin} PIN, {where}: {fsyncs} fsyncs")
    if where == "image" and pin == "right":  # the compactions, amortised: counted over many VERIFYs
        n = 1000
        answers, total = count_fsyncs(lambda: {reader.transmit(command) for _ in range(n)})
        assert answers == {expected}
        benchmark.extra_info["fsyncs_per_verify_amortised"] = total / n
        print(f"{n} right VERIFYs on an image: {total} fsyncs, {total / n:.3f} per VERIFY")
    result = benchmark.pedantic(reader.transmit, args=(command,), setup=restore if pin == "wrong" else None,
                                rounds=200 if where == "image" else 2000, warmup_rounds=5)
    assert result == expected
    card.close()


def purchase_terminal(state=None):
    card = Card.from_profile(state=state, date=WHEN.date())
    terminal = SsseTerminal(SimReader(card), Psam(SimReader(Card.psam(card.config.profile))))
    assert terminal.start() == 0x9000
    return card, terminal


@pytest.mark.parametrize("where", ["memory", "image", "image-no-fsync"])
def bench_pharmacy_purchase(benchmark, tmp_path, where):
    """The whole offline purchase (VERIFY's two commits, DEBIT FOR PURCHASE's one), 1 fen each; on an image
    whose commits skip the fsync too (`sync` off, as a fleet's --no-sync): the format's own cost."""
    card, terminal = purchase_terminal(None if where == "memory" else tmp_path / "card.img")
    if where == "image-no-fsync":
        card.store.backend.sync = False

    def purchase():
        return terminal.pharmacy_purchase(PIN, 1, WHEN)

    outcome, fsyncs = count_fsyncs(purchase)
    assert outcome["sw"] == 0x9000
    benchmark.extra_info["fsyncs"] = fsyncs
    if where == "image":
        cost, spent = fsync_cost(str(tmp_path)), fsync_seconds(purchase)
        benchmark.extra_info["fsync_probe_us"] = round(cost * 1e6, 1)
        benchmark.extra_info["fsync_us_per_purchase"] = round(spent * 1e6, 1)
        print(f"\npharmacy purchase on an image: {fsyncs} fsyncs, {spent * 1e6:.0f} us inside them per purchase "
              f"(median of 30); one 64-byte append + fsync here: {cost * 1e6:.0f} us")
    else:
        print(f"\npharmacy purchase, {where}: {fsyncs} fsyncs")
    outcome = benchmark.pedantic(purchase, rounds=100 if where == "image" else 500, warmup_rounds=3)
    assert outcome["sw"] == 0x9000
    card.close()
