"""One APDU through pyscard `SCardTransmit`: the vpcd path against the serial CCID reader, at both levels.

Six paths, each with a READ RECORD (`00B2072C0B`: EF05 record 7, 11 bytes + 9000, one exchange on
T=0; LD/T 32 P5) after SELECT SSSE:

- vpcd: pyscard -> pcscd -> vpcd -> `sscard serve` (as bench/bench_pcsc.py), the default card
  (T=0) and the t1 profile's card served with `--t1`;
- the CCID reader (docs/ccid.md): pyscard -> pcscd -> libccidtwin -> pty -> `python -m reader.ccid`,
  at TPDU level (the driver runs T=0 or T=1, ISO/IEC 7816-3 §10-11) and at short APDU level
  (`--ccid-level apdu`: the firmware runs them; CCID rev 1.1 §5.1 dwFeatures), the default card
  on T=0 and the t1 card on T=1.

libccid probes serial readers only when pcscd starts, so each CCID path has its own firmware on a
pty in the test's folder and its own nested private pcscd (`python -m reader.pcsc.pcscd run --ccid
LINK [--ccid-level apdu] -- python client.py`); the vpcd clients run under the outer one. Every
client stays connected and measures when told to, so the paths alternate: 3 s each, 3 rounds, the
medians of the rounds kept (about 65 s in all). Under `make test` (`--benchmark-disable`) each path
answers a few exchanges once. SCardStatus on the same connection gives the round trip to pcscd
(the same on every path: the driver shows no part in it); the firmware's own share is timed in
process (`Firmware.handle`, and with the serial framing) for the same commands. Figures:
bench/README.md. Outside the private pcscd of `python -m reader.pcsc.pcscd run` this skips (fails
with CI=true).
"""

import itertools
import json
import select
import signal
import statistics
import subprocess
import sys
import time

import pytest
from helpers import ROOT, SELECT_SSSE, require_ccid

from chip import Card
from chip.contacts.t1 import i_block
from chip.contacts.timing import EDC_LRC
from reader.ccid import messages as m
from reader.ccid.firmware import Firmware
from reader.ccid.levels import ESCAPE_SET_APDU_LEVEL, SHORT_APDU, TPDU
from reader.ccid.pty import FRIENDLY_NAME
from reader.ccid.serial import SerialFraming, frame

READ = "00B2072C0B"
RECORD_7 = "07095430303030303030319000"  # the card number T00000001, and 9000
T0, T1 = 1, 2  # SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1
CARDS = {T0: "default", T1: "t1"}
VPCD_READERS = {T0: "Virtual PCD 00 00", T1: "Virtual PCD 00 01"}  # ports 35963 and 35964
CCID_READER = FRIENDLY_NAME + " 00 00"
PATHS = [("vpcd", T0), ("vpcd", T1), (TPDU, T0), (TPDU, T1), (SHORT_APDU, T0), (SHORT_APDU, T1)]
SECONDS, ROUNDS = 3.0, 3  # with benchmarks enabled; disabled: one round of TEST_EXCHANGES
TEST_EXCHANGES = 20
PPS_T1 = bytes.fromhex("FF1113FD")  # what the driver sends the t1 card (TA1 13) for T=1
SET_T1 = bytes((0x13, 0x10, 0x00, 0x45, 0x00, 0xFE, 0x00))  # its SetParameters T=1 (docs/ccid.md)

CLIENT = r'''
import json, statistics, sys, time
from smartcard import scard

reader, protocol, select_apdu, read_apdu, expected = sys.argv[1], int(sys.argv[2]), *map(bytes.fromhex, sys.argv[3:6])
_, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
deadline = time.monotonic() + 30
while True:  # `sscard serve` may not have its vpcd connection yet
    result, card, active = scard.SCardConnect(context, reader, scard.SCARD_SHARE_SHARED, protocol)
    if result == scard.SCARD_S_SUCCESS:
        break
    if time.monotonic() > deadline:
        sys.exit(f"SCardConnect {reader}: {scard.SCardGetErrorMessage(result)}")
    time.sleep(0.05)

def tx(apdu):
    result, response = scard.SCardTransmit(card, active, list(apdu))
    if result != scard.SCARD_S_SUCCESS:
        sys.exit(f"SCardTransmit {apdu.hex()}: {scard.SCardGetErrorMessage(result)}")
    return bytes(response)

answer = tx(select_apdu)
if answer[0] == 0x61:  # T=0 at TPDU level and on vpcd: the FCI waits for GET RESPONSE
    tx(bytes((0x00, 0xC0, 0x00, 0x00, answer[1])))
if tx(read_apdu) != expected:
    sys.exit("READ RECORD: not the record")
print("ready", flush=True)
apdu, clock = list(read_apdu), time.perf_counter
for line in sys.stdin:  # "SECONDS MOST KIND": KIND for SECONDS or MOST times, then one JSON line
    seconds, most, kind = float(line.split()[0]), int(line.split()[1]), line.split()[2]
    times, wrong = [], 0
    start = clock()
    end = start + seconds
    while len(times) < most and clock() < end:
        before = clock()
        if kind == "transmit":
            result, response = scard.SCardTransmit(card, active, apdu)
        else:  # SCardStatus: the round trip to pcscd
            result, _, _, _, response = scard.SCardStatus(card)
        times.append(clock() - before)
        wrong += result != scard.SCARD_S_SUCCESS or (kind == "transmit" and bytes(response) != expected)
    print(json.dumps({"count": len(times), "elapsed": clock() - start, "p50": statistics.median(times),
                      "wrong": wrong}), flush=True)
scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
scard.SCardReleaseContext(context)
'''


def _line(process: subprocess.Popen, timeout: float, what: str, log) -> str:
    """The next line `process` prints, within `timeout` seconds."""
    assert process.stdout is not None
    if not select.select([process.stdout], [], [], timeout)[0]:
        pytest.fail(f"{what}: nothing within {timeout:g} s\n{log.read_text() if log.exists() else ''}")
    line = process.stdout.readline().decode()
    if not line:
        pytest.fail(f"{what} stopped (status {process.wait()})\n{log.read_text() if log.exists() else ''}")
    return line


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Paths:
    """The card servers, the six connected clients, and what each client measured."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.servers: list[subprocess.Popen] = []
        self.clients: dict[tuple[str, int], tuple[subprocess.Popen, object]] = {}
        self.images = {}  # one per path: a card image is held by the one process serving it
        for level, protocol in PATHS:
            self.images[level, protocol] = str(tmp_path / f"{CARDS[protocol]}-{level}.img")
            Card.from_profile(CARDS[protocol], state=self.images[level, protocol]).close()
        self.script = tmp_path / "client.py"
        self.script.write_text(CLIENT, encoding="utf-8")

    def start(self) -> None:
        links = {}
        for level, protocol in PATHS:  # the firmware first: libccid probes the line when pcscd starts
            if level != "vpcd":
                links[level, protocol] = link = str(self.tmp / f"gempc-{level}-{protocol}")
                log = self.tmp / f"firmware-{level}-{protocol}.log"
                firmware = subprocess.Popen([sys.executable, "-m", "reader.ccid", link, "--state",
                                             self.images[level, protocol]],
                                            stdout=subprocess.PIPE, stderr=open(log, "wb"), cwd=ROOT)
                self.servers.append(firmware)
                assert _line(firmware, 20, "the firmware", log) == f'FRIENDLYNAME "{FRIENDLY_NAME}"\n'
        for protocol, port in ((T0, 35963), (T1, 35964)):
            self.servers.append(subprocess.Popen(
                [sys.executable, "-m", "reader.cli", "serve", "--no-stdin", "--state", self.images["vpcd", protocol],
                 "--port", str(port)] + (["--t1"] if protocol == T1 else []),
                stdout=subprocess.DEVNULL, stderr=open(self.tmp / f"serve-{protocol}.log", "wb"), cwd=ROOT))
        for level, protocol in PATHS:
            client = [sys.executable, str(self.script), VPCD_READERS[protocol] if level == "vpcd" else CCID_READER,
                      str(protocol), SELECT_SSSE, READ, RECORD_7]
            if level != "vpcd":
                client = [sys.executable, "-m", "reader.pcsc.pcscd", "run", "--ccid", links[level, protocol],
                          "--ccid-level", level, "--", *client]
            log = self.tmp / f"client-{level}-{protocol}.log"
            process = subprocess.Popen(client, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(log, "wb"),
                                       cwd=ROOT)
            self.clients[level, protocol] = process, log
        for (level, protocol), (process, log) in self.clients.items():
            assert _line(process, 60, f"the {level} T={protocol - 1} client", log) == "ready\n"

    def measure(self, seconds: float, most: int, kind: str = "transmit") -> dict[tuple[str, int], dict]:
        """One round: each path in turn. `kind`: READ RECORD (transmit) or SCardStatus (status)."""
        out = {}
        for path, (process, log) in self.clients.items():
            assert process.stdin is not None
            process.stdin.write(f"{seconds} {most} {kind}\n".encode())
            process.stdin.flush()
            out[path] = json.loads(_line(process, seconds + 30, f"the {path} client", log))
            assert out[path]["wrong"] == 0 and out[path]["count"] > 0, out[path]
        return out

    def stop(self) -> None:
        for process, _ in self.clients.values():  # stdin closed: the client disconnects, its pcscd stops
            if process.stdin is not None and not process.stdin.closed:
                process.stdin.close()
        for process, _ in self.clients.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                _stop(process)
        for server in self.servers:
            _stop(server)
        time.sleep(0.6)  # let pcscd see the vpcd cards leave before another test's card connects


# -- the firmware's share, in process --------------------------------------------------------------------

def _commands(level: str, protocol: int):
    """A firmware set up as the driver sets it up for `level` and `protocol`, SELECT SSSE done, and the
    XfrBlock data of successive READ RECORDs (on T=1 at TPDU level: I-blocks, N(S) alternating,
    ISO/IEC 7816-3 §11.6)."""
    fw = Firmware(Card.from_profile(CARDS[protocol]))
    if level == SHORT_APDU:
        assert not fw.handle(m.Message(m.ESCAPE, data=ESCAPE_SET_APDU_LEVEL)).failed
    assert not fw.handle(m.Message(m.ICC_POWER_ON)).failed
    if protocol == T1:
        assert fw.handle(m.Message(m.XFR_BLOCK, data=PPS_T1)).data == PPS_T1
        assert not fw.handle(m.Message(m.SET_PARAMETERS, fields=bytes((1, 0, 0)), data=SET_T1)).failed
    select, read = bytes.fromhex(SELECT_SSSE), bytes.fromhex(READ)
    if level == TPDU and protocol == T1:
        assert not fw.handle(m.Message(m.XFR_BLOCK, data=i_block(0, select).encode(EDC_LRC))).failed
        return fw, itertools.cycle([i_block(ns, read).encode(EDC_LRC) for ns in (1, 0)])
    assert not fw.handle(m.Message(m.XFR_BLOCK, data=select)).failed  # 61 1E at TPDU level on T=0: no matter
    return fw, itertools.repeat(read)


def firmware_share(level: str, protocol: int, exchanges: int) -> tuple[float, float]:
    """Median µs per READ RECORD: `Firmware.handle` alone, and with the GemPC Twin's serial framing
    (frame in, echo and answer framed out), as `reader.ccid.pty` runs it for one command."""
    fw, data = _commands(level, protocol)
    handle, framed = [], []
    clock = time.perf_counter
    framing = SerialFraming()
    for n in range(exchanges):
        command = m.Message(m.XFR_BLOCK, seq=n % 256, data=next(data))
        before = clock()
        reply = fw.handle(command)
        handle.append(clock() - before)
        assert not reply.failed and RECORD_7 in reply.data.hex().upper()
        raw = frame(m.Message(m.XFR_BLOCK, seq=n % 256, data=next(data)).encode())
        before = clock()
        for message in framing.receive(raw):
            framing.send(message, fw.handle(m.decode(message)).encode())
        framing.output()
        framed.append(clock() - before)
    return statistics.median(handle) * 1e6, statistics.median(framed) * 1e6


@pytest.fixture
def pcsc():
    require_ccid("CCID benchmark")  # only under a private pcscd, never the machine's


def bench_ccid_against_vpcd(benchmark, pcsc, tmp_path):
    enabled = not benchmark.disabled
    seconds, most, rounds = (SECONDS, 10**9, ROUNDS) if enabled else (10.0, TEST_EXCHANGES, 1)
    paths = Paths(tmp_path)
    try:
        paths.start()
        results = benchmark.pedantic(lambda: [paths.measure(seconds, most) for _ in range(rounds)],
                                     rounds=1, iterations=1)
        status = paths.measure(seconds / 3, most, "status")
    finally:
        paths.stop()
    lines = [f"\nREAD RECORD through SCardTransmit, median of {rounds} round(s) of "
             f"{f'{seconds:g} s' if enabled else f'{most} exchanges'} per path:",
             f"{'path':<8} {'protocol':<8} {'APDU/s':>8} {'p50 µs':>8} {'SCardStatus µs':>15} {'firmware µs':>12}"
             f" {'+ framing µs':>13}"]
    for level, protocol in PATHS:
        per_round = [result[level, protocol] for result in results]
        rate = statistics.median(r["count"] / r["elapsed"] for r in per_round)
        p50 = statistics.median(r["p50"] for r in per_round) * 1e6
        key = f"{level} T={protocol - 1}"
        ipc = status[level, protocol]["p50"] * 1e6
        benchmark.extra_info[key] = {"apdu_per_s": round(rate), "p50_us": round(p50, 1), "status_p50_us": round(ipc, 1)}
        share = ""
        if level != "vpcd":
            handle, framed = firmware_share(level, protocol, 2000 if enabled else TEST_EXCHANGES)
            benchmark.extra_info[key].update(firmware_us=round(handle, 1), framed_us=round(framed, 1))
            share = f"{handle:12.1f} {framed:13.1f}"
        lines.append(f"{level:<8} T={protocol - 1:<6} {rate:8,.0f} {p50:8.0f} {ipc:15.0f} {share}")
    print("\n".join(lines))
