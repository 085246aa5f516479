"""`sscard serve` against an echo card on the same PC/SC stack, in one run: what the serve loop costs.

pyscard `SCardTransmit` in a loop through pcscd and vpcd, the client of bench/bench_ccid.py in a
process of its own, to two cards side by side (vpcd's two readers, ports 35963 and 35964):

- `serve`: `sscard serve` with the default card: READ RECORD `00B2072C0B` (EF05 record 7, 11
  bytes + 9000, one exchange on T=0; LD/T 32 P5) after SELECT SSSE;
- `echo`: `ECHO` below, a vpcd client of about 40 lines that answers `9000` to every APDU and
  the default card's ATR to vpcd's ATR request, with TCP_NODELAY and TCP_QUICKACK re-armed before
  every read (the 48 ms trap, docs/pcsc.md). It is the ceiling of the stack: pyscard, pcscd,
  vpcd's driver, TCP on loopback and one Python `recv` + `send`, with no card behind them;
- `card`: the same 40 lines with the default card (`Card.open` of an image personalised as
  serve's) answering in place of the constant (`CARD_LOOP`, derived from `ECHO` line by line):
  the card's own time in the least loop there is.

Three pairs, a benchmark each: serve against the echo card (the issue's figure), serve against
the card loop (what serve's loop adds to the card's own time), the card loop against the echo
card (the card's own time). Both clients stay connected and take turns, `SECONDS` each, `ROUNDS`
rounds; the median APDU/s of each side and their ratio are printed (bench/README.md, "serve
against an echo card"). `SSCARD_PROFILE_SERVE=FILE` runs serve under cProfile (its output in
FILE) and prints the entries with the most time of their own, per exchange.
`SSCARD_SERVE_BEFORE=TREE` puts, instead of the echo card, a second `sscard serve` on port 35964,
run from the source tree TREE (another version, e.g. `git archive COMMIT | tar -x -C TREE`).
`SSCARD_ECHO_SPIN=US` (`US,after`: after its answer) runs a fourth pair, the echo card spinning
that many µs of CPU before (after) each answer against the plain echo card: what a µs of a card's
time costs the round trip on this machine (under `make test`: 3 µs, a few exchanges).
`SSCARD_TIME_CARD=1` has the card loop time its `Card.transmit` calls (two clock reads each)
and prints their median. Under `make test` (`--benchmark-disable`) each card answers a few
exchanges once, no timing asserted. Outside the private pcscd of `python -m reader.pcsc.pcscd
run` this skips (fails with CI=true).
"""

import json
import os
import pstats
import statistics
import subprocess
import sys
import time

import pytest
from bench_ccid import CLIENT, RECORD_7, _line, _stop
from helpers import ROOT, SELECT_SSSE

from chip import Card
from reader.traces.pytest_plugin import require_pcsc

READ = "00B2072C0B"
SERVE_PORT, ECHO_PORT = 35963, 35964
READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")  # ports 35963 and 35964
SECONDS, ROUNDS = 3.0, 5  # benchmarks enabled; disabled: one round of TEST_EXCHANGES
TEST_EXCHANGES = 20
T0 = 1  # SCARD_PROTOCOL_T0: the default card's ATR offers T=0 only, and the echo card has its ATR

ECHO = r'''
import socket, sys, time
port, atr = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
deadline = time.monotonic() + 30
while True:  # vpcd listens once pcscd has loaded it
    try:
        sock = socket.create_connection(("127.0.0.1", port))
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"echo card: vpcd does not listen on port {port}")
        time.sleep(0.05)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
print("connected", flush=True)
framed_atr = len(atr).to_bytes(2, "big") + atr
ok = b"\x00\x02\x90\x00"
buffer = b""
while True:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)  # re-armed before every read
    data = sock.recv(65538)
    if not data:
        break
    buffer += data
    while len(buffer) >= 2:
        length = buffer[0] << 8 | buffer[1]  # vpcd: 2-byte big-endian length, then the payload
        if len(buffer) < 2 + length:
            break
        payload, buffer = buffer[2:2 + length], buffer[2 + length:]
        if length != 1:
            sock.sendall(ok)  # an APDU: 9000, whatever it is
        elif payload[0] == 0x04:
            sock.sendall(framed_atr)  # vpcd's ATR request
        # 00 power off, 01 power on, 02 reset: no reply
'''


ANSWER = '            sock.sendall(ok)  # an APDU: 9000, whatever it is\n'
CONTROL = '        # 00 power off, 01 power on, 02 reset: no reply\n'
START = 'port, atr = int(sys.argv[1]), bytes.fromhex(sys.argv[2])\n'


def derive(script: str, changes: dict[str, str]) -> str:
    """`script` with each of its lines `changes` names replaced (each must be there exactly once):
    the variants of the echo card differ from it only where they say."""
    for line, new in changes.items():
        assert script.count(line) == 1, f"the echo card has no line {line!r} any more"
        script = script.replace(line, new)
    return script


# The card loop: the echo card's loop, with the default card answering. argv: PORT ATR ROOT IMAGE [TIMES]
CARD_LOOP = derive(ECHO, {
    START: START + (
        "sys.path.insert(0, sys.argv[3])\n"
        "from chip import Card\n"
        "card = Card.open(sys.argv[4])\n"
        "transmit = card.transmit\n"),
    ANSWER: (
        "            answer = transmit(payload)\n"
        "            sock.sendall(len(answer).to_bytes(2, 'big') + answer)\n"),
    CONTROL: (
        "        elif payload[0] == 0x01:\n"
        "            card.power_on()\n"
        "        elif payload[0] == 0x02:\n"
        "            card.reset()\n"
        "        elif payload[0] == 0x00:\n"
        "            card.power_off()\n"),
})

# SSCARD_TIME_CARD: the card loop times each Card.transmit in place, and writes the median (ns) and
# the count to TIMES when it is stopped.
TIMED_CARD_LOOP = derive(CARD_LOOP, {
    "transmit = card.transmit\n": (
        "import signal, statistics\n"
        "clock, times = time.perf_counter_ns, []\n"
        "def transmit(apdu, _transmit=card.transmit):\n"
        "    start = clock()\n"
        "    answer = _transmit(apdu)\n"
        "    times.append(clock() - start)\n"
        "    return answer\n"
        "def stop(*_):\n"
        "    with open(sys.argv[5], 'w') as f:\n"
        "        f.write(f'{statistics.median(times) if times else 0} {len(times)}')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"),
})


def spinning_echo(microseconds: float, after: bool) -> str:
    """The echo card spending `microseconds` of CPU before (or after) each answer (SSCARD_ECHO_SPIN)."""
    spin = (f"            end = time.perf_counter_ns() + {round(microseconds * 1000)}\n"
            "            while time.perf_counter_ns() < end:\n"
            "                pass\n")
    return derive(ECHO, {ANSWER: ANSWER + spin if after else spin + ANSWER})


class SideBySide:
    """Two cards on vpcd's two ports - each `serve`, `before` (the serve of another tree), `echo`,
    `spin` (the echo card spinning `spin` µs) or `card` (the card loop) -, their two connected
    clients, and a turn of each."""

    EXPECTED = {"serve": RECORD_7, "before": RECORD_7, "card": RECORD_7, "echo": "9000", "spin": "9000"}

    def __init__(self, tmp_path, sides=("serve", "echo"), profile: str | None = None, before: str | None = None,
                 spin: str | None = None, time_card: bool = False):
        self.tmp = tmp_path
        self.sides = sides
        self.profile = profile  # serve runs under cProfile, which writes this file when serve stops
        self.before = before
        self.spin = spin  # SSCARD_ECHO_SPIN: "US" or "US,after"
        self.times = tmp_path / "card-times.txt" if time_card else None
        self.cards: dict[str, subprocess.Popen] = {}
        self.clients: dict[str, tuple[subprocess.Popen, object]] = {}

    def _image(self, side: str, tree) -> str:
        """A default card image personalised by source tree `tree` (its own image format)."""
        image = str(self.tmp / f"{side}.img")
        subprocess.run([sys.executable, "-m", "reader.cli", "personalize", "--state", image], cwd=tree, check=True,
                       stdout=subprocess.DEVNULL)
        return image

    def _serve(self, side: str, port: int, tree, profiled=()) -> subprocess.Popen:
        """`sscard serve` of source tree `tree` on `port`, with a default card."""
        image = self._image(side, tree)
        return subprocess.Popen([sys.executable, *profiled, "-m", "reader.cli", "serve", "--no-stdin", "--state", image,
                                 "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=open(self.tmp / f"{side}.log", "wb"), cwd=tree)

    def _loop(self, side: str, port: int) -> subprocess.Popen:
        """The echo card or the card loop on `port`, once connected to vpcd."""
        atr = Card.from_profile().atr.hex()  # the default card's
        args = [str(port), atr]
        if side == "card":
            script = CARD_LOOP if self.times is None else TIMED_CARD_LOOP
            args += [str(ROOT), self._image(side, ROOT)] + ([str(self.times)] if self.times else [])
        elif side == "spin":
            assert self.spin, "a spinning echo card needs its spin (SSCARD_ECHO_SPIN)"
            microseconds, _, when = self.spin.partition(",")
            script = spinning_echo(float(microseconds), when == "after")
        else:
            script = ECHO
        path = self.tmp / f"{side}.py"
        path.write_text(script, encoding="utf-8")
        log = self.tmp / f"{side}.log"
        process = subprocess.Popen([sys.executable, str(path), *args], stdout=subprocess.PIPE,
                                   stderr=open(log, "wb"), cwd=ROOT)
        assert _line(process, 30, f"the {side} card", log) == "connected\n"
        return process

    def start(self) -> None:
        profiled = ["-m", "cProfile", "-o", self.profile] if self.profile else []
        for side, port in zip(self.sides, (SERVE_PORT, ECHO_PORT)):
            if side == "serve":
                self.cards[side] = self._serve(side, port, ROOT, profiled)
            elif side == "before":
                self.cards[side] = self._serve(side, port, self.before)
            else:
                self.cards[side] = self._loop(side, port)
        script = self.tmp / "client.py"
        script.write_text(CLIENT, encoding="utf-8")
        for side, reader in zip(self.sides, READERS):
            log = self.tmp / f"client-{side}.log"
            self.clients[side] = subprocess.Popen(
                [sys.executable, str(script), reader, str(T0), SELECT_SSSE, READ, self.EXPECTED[side]],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(log, "wb"), cwd=ROOT), log
        for side, (client, log) in self.clients.items():
            assert _line(client, 60, f"the {side} client", log) == "ready\n"

    def turn(self, side: str, seconds: float, most: int) -> dict:
        """`side`'s client alone for `seconds` (at most `most` exchanges): count, elapsed, p50, and the
        CPU seconds the card's process spent in that time (`cpu`)."""
        client, log = self.clients[side]
        pid = self.cards[side].pid
        assert client.stdin is not None
        before = cpu_seconds(pid)
        client.stdin.write(f"{seconds} {most} transmit\n".encode())
        client.stdin.flush()
        result = json.loads(_line(client, seconds + 30, f"the {side} client", log))
        result["cpu"] = cpu_seconds(pid) - before
        assert result["wrong"] == 0 and result["count"] > 0, result
        return result

    def stop(self) -> None:
        for client, _ in self.clients.values():
            if client.stdin is not None and not client.stdin.closed:
                client.stdin.close()
        for process in [client for client, _ in self.clients.values()] + list(self.cards.values()):
            _stop(process)
        time.sleep(0.6)  # let pcscd see both cards leave before another test's card connects

    def card_times(self) -> tuple[float, int] | None:
        """The card loop's median `Card.transmit` time in place (ns) and how many it timed, once stopped."""
        if self.times is None or not self.times.exists():
            return None
        median, count = self.times.read_text(encoding="utf-8").split()
        return float(median), int(count)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile_lines(path: str, exchanges: int, most: int = 14) -> list[str]:
    """The entries of serve's cProfile output `path` with the most time of their own, per exchange:
    calls and µs (wall time: the selector's and the reads' waits are in it)."""
    stats = pstats.Stats(path).stats  # (file, line, function) -> (primitive calls, calls, own time, cumulative, callers)
    top = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:most]
    lines = []
    for (file, line, function), (_, calls, own, cumulative, _) in top:
        name = os.path.relpath(file, ROOT) if file.startswith(str(ROOT)) else os.path.basename(file)
        where = function if file == "~" else f"{function} ({name}:{line})"  # "~": a built-in
        lines.append(f"    {calls / exchanges:5.2f} {own / exchanges * 1e6:7.2f} {cumulative / exchanges * 1e6:7.2f}  {where}")
    return lines


def side_by_side(benchmark, tmp_path, sides: tuple[str, str]) -> None:
    """One pair's turns, and what they measured printed (and in the benchmark's `extra_info`)."""
    require_pcsc(f"{sides[0]} against the {sides[1]} card")  # only under a private pcscd, never the machine's
    enabled = not benchmark.disabled
    seconds, most, rounds = (SECONDS, 10**9, ROUNDS) if enabled else (30.0, TEST_EXCHANGES, 1)
    profile = os.environ.get("SSCARD_PROFILE_SERVE") if enabled and "serve" in sides else None
    spin = (os.environ.get("SSCARD_ECHO_SPIN") if enabled else "3") if "spin" in sides else None
    cards = SideBySide(tmp_path, sides, profile, spin=spin,
                       time_card=enabled and os.environ.get("SSCARD_TIME_CARD") == "1",
                       before=os.environ.get("SSCARD_SERVE_BEFORE") if enabled and sides[1] == "before" else None)
    first, other = sides

    def rounds_of_turns():
        turns: dict[str, list] = {side: [] for side in sides}
        for _ in range(rounds):
            for side in sides:
                turns[side].append(cards.turn(side, seconds, most))
        return turns

    try:
        cards.start()
        turns = benchmark.pedantic(rounds_of_turns, rounds=1, iterations=1)
    finally:
        cards.stop()  # a profiled serve writes its profile as it stops; the timed card loop its times
    rate = {side: statistics.median(t["count"] / t["elapsed"] for t in results) for side, results in turns.items()}
    p50 = {side: statistics.median(t["p50"] for t in results) * 1e6 for side, results in turns.items()}
    cpu = {side: statistics.median(t["cpu"] / t["count"] for t in results) * 1e6 for side, results in turns.items()}
    ratio = rate[first] / rate[other]
    # each round's first turn against the other turn right after it: the machine's load drifts less within a round
    paired = statistics.median(s["count"] / s["elapsed"] / (o["count"] / o["elapsed"])
                               for s, o in zip(turns[first], turns[other]))
    lines = [f"\nREAD RECORD through SCardTransmit, pcscd + vpcd, median of {rounds} alternating turn(s) of "
             f"{f'{seconds:g} s' if enabled else f'{most} exchanges'} each:"]
    for side in sides:
        each = ", ".join(f"{t['count'] / t['elapsed']:,.0f}" for t in turns[side])
        name = f"spin {cards.spin} us" if side == "spin" else side
        lines.append(f"  {name:<6} {rate[side]:>8,.0f} APDU/s  p50 {p50[side]:6.1f} us  CPU {cpu[side]:5.1f} us per "
                     f"exchange  (turns: {each})")
        benchmark.extra_info[side] = {"apdu_per_s": round(rate[side]), "p50_us": round(p50[side], 1),
                                      "cpu_us": round(cpu[side], 1)}
    lines.append(f"  {first} / {other}: {ratio:.3f} (median of the rounds' own ratios: {paired:.3f}); {first} adds "
                 f"{p50[first] - p50[other]:.1f} us per exchange (p50), {cpu[first] - cpu[other]:.1f} us of CPU")
    benchmark.extra_info.update(ratio=round(ratio, 3), paired_ratio=round(paired, 3))
    if (times := cards.card_times()) is not None:
        lines.append(f"  the card loop's Card.transmit in place: median {times[0] / 1000:.2f} us ({times[1]:,} timed)")
        benchmark.extra_info["card_transmit_us"] = round(times[0] / 1000, 2)
    if profile:
        exchanges = sum(t["count"] for t in turns[first])
        lines.append(f"  serve's profile (cProfile, {profile}), per exchange: calls, own µs, cumulative µs")
        lines += profile_lines(profile, exchanges)
    print("\n".join(lines))


def bench_serve_against_echo_card(benchmark, tmp_path):
    """The issue's figure: serve against the stack's ceiling (or against the serve of another tree)."""
    side_by_side(benchmark, tmp_path, ("serve", "before" if os.environ.get("SSCARD_SERVE_BEFORE") else "echo"))


def bench_serve_against_card_loop(benchmark, tmp_path):
    """What serve's loop adds to the card's own time: serve against the same card in the echo card's loop."""
    side_by_side(benchmark, tmp_path, ("serve", "card"))


def bench_card_loop_against_echo_card(benchmark, tmp_path):
    """The card's own time: the card in the echo card's loop against the echo card."""
    side_by_side(benchmark, tmp_path, ("card", "echo"))


def bench_spinning_echo_against_echo_card(benchmark, tmp_path):
    """What a µs of a card's CPU costs the round trip here: only with SSCARD_ECHO_SPIN (make test: 3 µs)."""
    if not benchmark.disabled and not os.environ.get("SSCARD_ECHO_SPIN"):
        pytest.skip("an experiment: SSCARD_ECHO_SPIN=US (or US,after) runs it")
    side_by_side(benchmark, tmp_path, ("spin", "echo"))
