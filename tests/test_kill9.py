"""`kill -9` a process that is sending wrong PINs to a card image, at random moments, many times.

Each round starts a child that opens the image, selects the SSSE and loops on
a wrong VERIFY, printing every status word as soon as it has it. The parent
kills it with SIGKILL 5-60 ms after its first line, then reopens the image:
it must always open, and the tries-left count must never grow, must be at most
every `63Cx` the child was answered (the decrement is durable before the
response), and may be below the last one by at most the one VERIFY in flight.

A wrong VERIFY commits in about 1.5 ms here, so left alone the child would
spend all 15 tries in the first round. The child therefore sleeps 3 ms at each
of the five write points of every commit (through the same write-point hook
the power-cut tests use): commits take ~15 ms, the kill lands inside a commit
most of the time, at every stage of it, and a run lasts several rounds.
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

from chip import Card
from chip.pin import pack

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 15
MAX_ROUNDS = 25
PAUSE_AT_WRITE_POINT = 0.003

CHILD = r"""
import sys, time
from chip import Card
from reader import SimReader

card = Card.open(sys.argv[1])
pause = float(sys.argv[2])
if pause:
    card.store.backend.write_point = lambda point, landed: time.sleep(pause)
reader = SimReader(card)
reader.reset()
print(reader.transmit(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))[-2:].hex().upper(), flush=True)
while True:
    sw = reader.transmit(bytes.fromhex("0020000003999999"))[-2:].hex().upper()
    print(sw, flush=True)
    if sw == "6983":
        break
"""


def write_profile(folder: Path) -> Path:
    text = (ROOT / "chip" / "profiles" / "default.toml").read_text(encoding="utf-8")
    text, count = re.subn(r"(?m)^pin_tries = 6\b", f"pin_tries = {LIMIT}", text)
    assert count == 1
    path = folder / "fifteen.toml"
    path.write_text(text, encoding="utf-8")
    return path


def read_line(proc, deadline: float) -> str:
    left = deadline - time.monotonic()
    ready, _, _ = select.select([proc.stdout], [], [], max(left, 0))
    assert ready, "the child printed nothing in time"
    line = proc.stdout.readline()
    assert line.endswith("\n"), (line, proc.stderr.read() if proc.poll() is not None else "")
    return line[:-1]


def one_round(path: str, delay: float, env: dict) -> tuple[list[str], int]:
    """Run the child, kill it `delay` s after its first line; return its complete status lines and exit code."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, path, str(PAUSE_AT_WRITE_POINT)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, cwd=ROOT)
    try:
        first = read_line(proc, time.monotonic() + 10)
        assert first == "9000"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode in (-signal.SIGKILL, 0), err
    if proc.returncode == 0:
        assert err == ""
    lines = out.split("\n")
    return lines[:-1], proc.returncode  # the last piece is "" or a line cut short by the kill


def test_kill9_never_gives_a_try_back(tmp_path):
    started = time.monotonic()
    image = str(tmp_path / "card.img")
    Card.from_profile(str(write_profile(tmp_path)), state=image)
    pin = Card.open(image).store["ssse.pin"]
    assert (pin.value, pin.limit, pin.tries) == (pack("123456"), LIMIT, LIMIT)

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rng = random.Random(20261122)
    previous = LIMIT
    rounds, in_flight_kills, answered = 0, 0, 0
    while previous > 0 and rounds < MAX_ROUNDS and time.monotonic() - started < 15:
        rounds += 1
        lines, code = one_round(image, rng.uniform(0.005, 0.060), env)
        assert all(re.fullmatch(r"63C[0-9A-F]|6983", line) for line in lines), lines
        xs = [int(line[3], 16) for line in lines if line.startswith("63C")]
        # the child's answers count down one by one from the previous reading
        assert xs == list(range(previous - 1, previous - 1 - len(xs), -1)), (previous, lines)
        answered += len(xs)
        if "6983" in lines:
            assert xs[-1:] == [0] or previous == 0
            assert code == 0 and lines[-1] == "6983" and lines.count("6983") == 1

        reopened = Card.open(image)  # always opens, whatever the kill left in card.img.tmp
        pin = reopened.store["ssse.pin"]
        tries = pin.tries
        assert (pin.value, pin.limit) == (pack("123456"), LIMIT)
        assert tries <= previous
        assert not xs or tries <= min(xs)
        # every answered VERIFY cost exactly one try; at most one more was in flight when the kill came
        assert tries in (previous - len(xs), previous - len(xs) - 1), (previous, xs, tries)
        if code == 0:
            assert tries == 0
        in_flight_kills += tries == previous - len(xs) - 1
        previous = tries

    print(f"\nkill -9: {rounds} rounds, {answered} answered wrong VERIFYs, {in_flight_kills} kills after the "
          f"durable decrement but before the answer, tries left {previous}, {time.monotonic() - started:.1f} s")
    assert previous == 0 or rounds == MAX_ROUNDS
    assert rounds >= 3  # the pacing gives several kills, not one round that spends every try
    assert answered + in_flight_kills == LIMIT - previous
    assert time.monotonic() - started < 20
