"""`sscard serve` against an echo card on the same PC/SC stack, in one run: what the serve loop costs.

pyscard `SCardTransmit` in a loop through pcscd and vpcd, the client of bench/bench_ccid.py in a
process of its own, to two cards side by side:

- `sscard serve` with the default card on port 35963 (`Virtual PCD 00 00`): READ RECORD
  `00B2072C0B` (EF05 record 7, 11 bytes + 9000, one exchange on T=0; LD/T 32 P5) after SELECT SSSE;
- the echo card on port 35964 (`Virtual PCD 00 01`): `ECHO` below, a vpcd client of about 40 lines
  that answers `9000` to every APDU and the default card's ATR to vpcd's ATR request, with
  TCP_NODELAY and TCP_QUICKACK re-armed before every read (the 48 ms trap, docs/pcsc.md). It is the
  ceiling of the stack: pyscard, pcscd, vpcd's driver, TCP on loopback and one Python `recv` +
  `send`, with no card behind them.

Both clients stay connected and take turns, `SECONDS` each, `ROUNDS` rounds (serve, echo, serve,
echo...); the median APDU/s of each, and their ratio, are printed (bench/README.md, "serve against an
echo card"). `SSCARD_PROFILE_SERVE=FILE` runs serve under cProfile (its output in FILE) and prints
the entries with the most time of their own, per exchange. `SSCARD_SERVE_BEFORE=TREE` puts, instead
of the echo card, a second `sscard serve` on port 35964, run from the source tree TREE (another
version, e.g. `git archive COMMIT | tar -x -C TREE`): the two versions alternate the same way.
Under `make test` (`--benchmark-disable`) each card answers a few exchanges once, no timing
asserted. Outside the private pcscd of `python -m reader.pcsc.pcscd run` this skips (fails with
CI=true).
"""

import json
import os
import pstats
import statistics
import subprocess
import sys
import time

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


class SideBySide:
    """The two cards - serve, and the echo card (or the serve of another tree, `before`) -, their two
    connected clients, and a turn of each."""

    def __init__(self, tmp_path, profile: str | None = None, before: str | None = None):
        self.tmp = tmp_path
        self.profile = profile  # serve runs under cProfile, which writes this file when serve stops
        self.before = before
        self.sides = ("serve", "before" if before else "echo")
        self.cards: dict[str, subprocess.Popen] = {}
        self.clients: dict[str, tuple[subprocess.Popen, object]] = {}

    def _serve(self, side: str, port: int, tree, profiled=()) -> subprocess.Popen:
        """`sscard serve` of source tree `tree` on `port`, with a default card that tree personalised
        (its own image format)."""
        image = str(self.tmp / f"{side}.img")
        subprocess.run([sys.executable, "-m", "reader.cli", "personalize", "--state", image], cwd=tree, check=True,
                       stdout=subprocess.DEVNULL)
        return subprocess.Popen([sys.executable, *profiled, "-m", "reader.cli", "serve", "--no-stdin", "--state", image,
                                 "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=open(self.tmp / f"{side}.log", "wb"), cwd=tree)

    def start(self) -> None:
        profiled = ["-m", "cProfile", "-o", self.profile] if self.profile else []
        self.cards["serve"] = self._serve("serve", SERVE_PORT, ROOT, profiled)
        expected = {"serve": RECORD_7, "before": RECORD_7, "echo": "9000"}
        if self.before:
            self.cards["before"] = self._serve("before", ECHO_PORT, self.before)
        else:
            echo = self.tmp / "echo.py"
            echo.write_text(ECHO, encoding="utf-8")
            atr = Card.from_profile().atr.hex()  # the default card's
            self.cards["echo"] = process = subprocess.Popen(
                [sys.executable, str(echo), str(ECHO_PORT), atr], stdout=subprocess.PIPE,
                stderr=open(self.tmp / "echo.log", "wb"), cwd=ROOT)
            assert _line(process, 30, "the echo card", self.tmp / "echo.log") == "connected\n"
        script = self.tmp / "client.py"
        script.write_text(CLIENT, encoding="utf-8")
        for side, reader in zip(self.sides, READERS):
            log = self.tmp / f"client-{side}.log"
            self.clients[side] = subprocess.Popen(
                [sys.executable, str(script), reader, str(T0), SELECT_SSSE, READ, expected[side]],
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


def bench_serve_against_echo_card(benchmark, tmp_path):
    require_pcsc("serve against the echo card")  # only under a private pcscd, never the machine's
    enabled = not benchmark.disabled
    seconds, most, rounds = (SECONDS, 10**9, ROUNDS) if enabled else (30.0, TEST_EXCHANGES, 1)
    profile = os.environ.get("SSCARD_PROFILE_SERVE") if enabled else None
    cards = SideBySide(tmp_path, profile, os.environ.get("SSCARD_SERVE_BEFORE") if enabled else None)
    first, other = cards.sides

    def rounds_of_turns():
        turns: dict[str, list] = {side: [] for side in cards.sides}
        for _ in range(rounds):
            for side in cards.sides:
                turns[side].append(cards.turn(side, seconds, most))
        return turns

    try:
        cards.start()
        turns = benchmark.pedantic(rounds_of_turns, rounds=1, iterations=1)
    finally:
        cards.stop()  # a profiled serve writes its profile as it stops
    rate = {side: statistics.median(t["count"] / t["elapsed"] for t in results) for side, results in turns.items()}
    p50 = {side: statistics.median(t["p50"] for t in results) * 1e6 for side, results in turns.items()}
    cpu = {side: statistics.median(t["cpu"] / t["count"] for t in results) * 1e6 for side, results in turns.items()}
    ratio = rate[first] / rate[other]
    # each round's serve turn against the other turn right after it: the machine's load drifts less within a round
    paired = statistics.median(s["count"] / s["elapsed"] / (o["count"] / o["elapsed"])
                               for s, o in zip(turns[first], turns[other]))
    lines = [f"\nREAD RECORD through SCardTransmit, pcscd + vpcd, median of {rounds} alternating turn(s) of "
             f"{f'{seconds:g} s' if enabled else f'{most} exchanges'} each:"]
    for side in cards.sides:
        each = ", ".join(f"{t['count'] / t['elapsed']:,.0f}" for t in turns[side])
        lines.append(f"  {side:<6} {rate[side]:>8,.0f} APDU/s  p50 {p50[side]:6.1f} us  CPU {cpu[side]:5.1f} us per "
                     f"exchange  (turns: {each})")
        benchmark.extra_info[side] = {"apdu_per_s": round(rate[side]), "p50_us": round(p50[side], 1),
                                      "cpu_us": round(cpu[side], 1)}
    lines.append(f"  {first} / {other}: {ratio:.3f} (median of the rounds' own ratios: {paired:.3f}); {first} adds "
                 f"{p50[first] - p50[other]:.1f} us per exchange (p50), {cpu[first] - cpu[other]:.1f} us of CPU")
    benchmark.extra_info.update(ratio=round(ratio, 3), paired_ratio=round(paired, 3))
    if profile:
        exchanges = sum(t["count"] for t in turns[first])
        lines.append(f"  serve's profile (cProfile, {profile}), per exchange: calls, own µs, cumulative µs")
        lines += profile_lines(profile, exchanges)
    print("\n".join(lines))
