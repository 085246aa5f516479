"""APDU round trips through the real PC/SC stack: pyscard -> pcscd -> vpcd -> `sscard serve`.

With and without re-arming TCP_QUICKACK before every read (the 48 ms trap of
docs/pcsc.md). Run with `make bench` (which starts pcscd); figures with
p50 and p99 are in bench/README.md. Outside that private pcscd these skip (fail in CI).
"""

import signal
import subprocess
import sys
import time

import pytest
from ssse_helpers import SELECT_SSSE

from chip import Card
from reader.traces.pytest_plugin import require_pcsc

READER = "Virtual PCD 00 00"
SELECT = SELECT_SSSE
READ = bytes.fromhex("00B2012C12")  # EF05 item 01 (free), Le 18: one exchange on T=0 (Le 00 would be 6C12)


@pytest.mark.parametrize("quickack", [True, False], ids=["quickack", "no-quickack"])
def bench_pcsc_round_trip(benchmark, tmp_path, quickack):
    require_pcsc("PC/SC benchmark")  # only on `make bench`'s private pcscd, never the machine's
    from reader.pcsc.reader import PcscReader

    image = str(tmp_path / "card.img")
    Card.from_profile(state=image)
    argv = [sys.executable, "-m", "reader.cli", "serve", "--no-stdin", "--state", image]
    server = subprocess.Popen(argv + ([] if quickack else ["--no-quickack"]), stderr=subprocess.DEVNULL)
    reader = PcscReader(READER, connect_timeout=10, get_response=False)
    try:
        reader.reset()
        # the default card runs T=0 (its ATR offers nothing else): the FCI waits for GET RESPONSE
        assert reader.transmit(SELECT) == b"\x61\x1E"
        assert reader.transmit(b"\x00\xC0\x00\x00\x1E")[-2:] == b"\x90\x00"
        rounds = 3000 if quickack else 60
        result = benchmark.pedantic(reader.transmit, args=(READ,), rounds=rounds, warmup_rounds=20)
        assert result[-2:] == b"\x90\x00"
        stats = getattr(benchmark, "stats", None)
        if stats is not None:
            data = sorted(stats.stats.data)
            p50, p99 = data[len(data) // 2], data[min(len(data) - 1, int(len(data) * 0.99))]
            benchmark.extra_info.update(p50_us=round(p50 * 1e6, 1), p99_us=round(p99 * 1e6, 1),
                                        apdu_per_s=round(len(data) / sum(data)))
            print(f"\nPC/SC round trip ({'quick ACK' if quickack else 'no quick ACK'}): "
                  f"{len(data) / sum(data):,.0f} APDU/s, p50 {p50 * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us")
    finally:
        reader.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
        time.sleep(0.6)  # let pcscd see the card leave before another one connects
