"""`kill -9` a process that is sending wrong PINs to a card image, at random moments, many times.

Each round starts a child that opens the image, selects the SSSE and sends
wrong VERIFYs, printing every status word as soon as it has it. The parent
kills it with SIGKILL a random 5-60 ms after its first line, then reopens the
image: it must always open, and the tries-left count must never grow, must
be at most every `63Cx` the child was answered (the decrement is durable
before the response), and may be below the last one by at most the one
VERIFY in flight.

Nothing here depends on how fast the machine is. The verdict is the durable
state in the image, never the clock or the exit status: a SIGKILL may land
between the child's print of `6983` and its exit (status -9 then, and that is
fine); a kill that lands before any VERIFY just makes a round that spent
nothing. Each child sends at most `BUDGET` VERIFYs and then waits to be
killed, so a slow parent (a loaded 2-core machine) cannot let one child spend
every try: the run always has several rounds. The child sleeps 3 ms at each
of the write points of every commit (the write-point hook the power-cut
tests use), so most kills land inside a commit, at every stage of it. The
child's output is read with os.read on the pipe only (no buffered readline
that could swallow a line the final read then misses).
"""

import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import DEFAULT_TOML, ROOT, python_env

from chip import Card
from chip.kernel.pin import pack

LIMIT = 15
BUDGET = 4  # VERIFYs a child may send before it waits for its kill
MAX_ROUNDS = 40
PAUSE_AT_WRITE_POINT = 0.003
HANG_GUARD = 300  # seconds: only a child that never starts fails this (not a timing assertion)

CHILD = r"""
import sys, time
from chip import Card
from reader import SimReader

card = Card.open(sys.argv[1])
pause, budget = float(sys.argv[2]), int(sys.argv[3])
if pause:
    card.store.backend.write_point = lambda point, landed: time.sleep(pause)
reader = SimReader(card)
reader.reset()
print(reader.transmit(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))[-2:].hex().upper(), flush=True)
for _ in range(budget):
    sw = reader.transmit(bytes.fromhex("0020000003999999"))[-2:].hex().upper()
    print(sw, flush=True)
    if sw == "6983":
        sys.exit(0)
while True:  # the budget is spent: wait for the SIGKILL
    time.sleep(1)
"""


def write_profile(folder: Path) -> Path:
    text = DEFAULT_TOML.read_text(encoding="utf-8")
    text, count = re.subn(r"(?m)^pin_tries = 6\b", f"pin_tries = {LIMIT}", text)
    assert count == 1
    path = folder / "fifteen.toml"
    path.write_text(text, encoding="utf-8")
    return path


def first_line(proc) -> bytes:
    """Read the child's stdout up to its first newline; return everything read (it may hold more)."""
    fd = proc.stdout.fileno()
    got = b""
    while b"\n" not in got:
        ready, _, _ = select.select([fd], [], [], HANG_GUARD)
        assert ready, f"the child printed nothing in {HANG_GUARD} s (hung?)"
        chunk = os.read(fd, 4096)
        assert chunk, ("the child ended before its first line", proc.wait(), proc.stderr.read())
        got += chunk
    return got


def one_round(path: str, delay: float, env: dict) -> tuple[list[str], int, str]:
    """Run the child, kill it `delay` s after its first line; (its complete status lines, exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, path, str(PAUSE_AT_WRITE_POINT), str(BUDGET)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT, bufsize=0)
    try:
        head = first_line(proc)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)  # the child may have exited already (6983): no error then
        rest, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = (head + rest).decode("ascii", "replace")
    lines = out.split("\n")
    assert lines[0] == "9000", (out, err)
    return lines[1:-1], proc.returncode, err.decode("utf-8", "replace")  # the last piece: "" or cut short


def release(card) -> None:
    """Give the image back (one owner per image: the next child must be able to open it)."""
    close = getattr(card, "close", None)
    if close is not None:
        close()


def durable_pin(image: str) -> tuple[bytes, int, int]:
    """(PIN value, limit, tries left) as the image holds them; the image is released again."""
    card = Card.open(image)  # always opens, whatever a kill left behind
    try:
        pin = card.store["ssse.pin"]
        return pin.value, pin.limit, pin.tries
    finally:
        release(card)


def test_kill9_never_gives_a_try_back(tmp_path):
    image = str(tmp_path / "card.img")
    release(Card.from_profile(str(write_profile(tmp_path)), state=image))
    assert durable_pin(image) == (pack("123456"), LIMIT, LIMIT)

    env = python_env()
    rng = random.Random(20261122)
    previous = LIMIT
    rounds, in_flight_kills, answered = 0, 0, 0
    while previous > 0 and rounds < MAX_ROUNDS:
        rounds += 1
        lines, code, err = one_round(image, rng.uniform(0.005, 0.060), env)
        assert code in (-signal.SIGKILL, 0), (code, err)
        assert all(re.fullmatch(r"63C[0-9A-F]|6983", line) for line in lines), lines
        assert len(lines) <= BUDGET
        xs = [int(line[3], 16) for line in lines if line.startswith("63C")]
        # the child's answers count down one by one from the previous reading
        assert xs == list(range(previous - 1, previous - 1 - len(xs), -1)), (previous, lines)
        answered += len(xs)

        value, limit, tries = durable_pin(image)
        assert (value, limit) == (pack("123456"), LIMIT)
        assert tries <= previous
        assert not xs or tries <= min(xs)
        # every answered VERIFY cost exactly one try; at most one more was in flight when the kill came
        assert tries in (previous - len(xs), previous - len(xs) - 1), (previous, xs, tries)
        if "6983" in lines:  # blocked: judged by the image, whether or not the kill beat the exit
            assert lines[-1] == "6983" and lines.count("6983") == 1 and xs[-1:] in ([0], [])
            assert tries == 0
        if code == 0:  # the child exits by itself only after 6983
            assert lines[-1:] == ["6983"] and err == ""
        in_flight_kills += tries == previous - len(xs) - 1
        previous = tries

    print(f"\nkill -9: {rounds} rounds, {answered} answered wrong VERIFYs, {in_flight_kills} kills after the "
          f"durable decrement but before the answer, tries left {previous}")
    assert previous == 0 or rounds == MAX_ROUNDS
    assert rounds >= -(-LIMIT // BUDGET)  # the budget makes several rounds, however fast or slow the machine
    assert answered + in_flight_kills == LIMIT - previous
