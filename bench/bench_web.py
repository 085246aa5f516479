"""Does the bench view slow the card? PC/SC APDU/s with the page open and without, one run each.

pyscard `SCardTransmit` in a loop of READ RECORD (`00B2072C0B`: EF05 record 7, 11 bytes + 9000,
one exchange on T=0) through pcscd and vpcd to `sscard serve`, the client of bench/bench_ccid.py
in a process of its own, three ways:

- `sscard serve` alone;
- `sscard serve --web 127.0.0.1:PORT`, nobody on the page;
- the same with the page open: a client of the page's Server-Sent Events stream in a process of
  its own, reading everything it is sent (the decoded entries in batches, the state), as the
  page's EventSource does.

`SECONDS` of exchanges each (`make bench`); under `make test` a few exchanges once. Figures:
bench/README.md. Outside the private pcscd of `python -m reader.pcsc.pcscd run` this skips (fails
with CI=true).
"""

import json
import subprocess
import sys
import time

from bench_ccid import CLIENT, RECORD_7, _line, _stop
from helpers import ROOT, SELECT_SSSE, free_port

from chip import Card
from reader.traces.pytest_plugin import require_pcsc

READ = "00B2072C0B"
READER = "Virtual PCD 00 00"  # port 35963
SECONDS = 5.0  # of exchanges per way, benchmarks enabled; disabled: TEST_EXCHANGES
TEST_EXCHANGES = 50
WAYS = ("serve", "serve --web, no page", "serve --web, page open")

PAGE = r'''
import http.client, json, signal, sys
received = {"batches": 0, "entries": 0, "states": 0}
signal.signal(signal.SIGTERM, lambda *_: (print(json.dumps(received), flush=True), sys.exit(0)))
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
connection.request("GET", "/api/card/0/events")
stream = connection.getresponse()
assert stream.status == 200, stream.status
event = None
for raw in stream:
    line = raw.decode().rstrip("\n")
    if line.startswith("event: "):
        event = line[7:]
        if event == "hello":
            print("connected", flush=True)
    elif line.startswith("data: ") and event == "entries":
        received["batches"] += 1
        received["entries"] += len(json.loads(line[6:])["entries"])
    elif line.startswith("data: ") and event == "state":
        received["states"] += 1
'''


def one_way(tmp_path, way: str, seconds: float, most: int) -> dict:
    """Serve a fresh card `way`, run the client for `seconds` (at most `most` exchanges): its figures."""
    image = str(tmp_path / f"card-{WAYS.index(way)}.img")
    Card.from_profile(state=image).close()
    port = free_port()
    argv = [sys.executable, "-m", "reader.cli", "serve", "--no-stdin", "--state", image]
    if way != "serve":
        argv += ["--web", f"127.0.0.1:{port}"]
    log = tmp_path / f"serve-{WAYS.index(way)}.log"
    serve = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(log, "wb"), cwd=ROOT)
    script = tmp_path / "client.py"
    script.write_text(CLIENT, encoding="utf-8")
    client_log = tmp_path / f"client-{WAYS.index(way)}.log"
    client = subprocess.Popen([sys.executable, str(script), READER, "1", SELECT_SSSE, READ, RECORD_7],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(client_log, "wb"), cwd=ROOT)
    page = None
    try:
        assert _line(client, 60, "the PC/SC client", client_log) == "ready\n"
        if way.endswith("page open"):
            page_script = tmp_path / "page.py"
            page_script.write_text(PAGE, encoding="utf-8")
            page = subprocess.Popen([sys.executable, str(page_script), str(port)], stdout=subprocess.PIPE,
                                    stderr=open(tmp_path / "page.log", "wb"), cwd=ROOT)
            assert _line(page, 20, "the page's stream", tmp_path / "page.log") == "connected\n"
        assert client.stdin is not None
        client.stdin.write(f"{seconds} {most} transmit\n".encode())
        client.stdin.flush()
        result = json.loads(_line(client, seconds + 60, "the PC/SC client", client_log))
        assert result["wrong"] == 0 and result["count"] > 0, result
        if page is not None:
            time.sleep(0.5)  # the last batch
            page.terminate()  # it prints what it received
            assert page.stdout is not None
            result["page"] = json.loads(page.stdout.read().decode().strip().splitlines()[-1])
            assert result["page"]["entries"] > 0, result["page"]
        return result
    finally:
        if client.stdin is not None and not client.stdin.closed:
            client.stdin.close()
        for process in (client, page, serve):
            if process is not None:
                _stop(process)
        time.sleep(0.6)  # let pcscd see the card leave before the next one connects


def bench_web_view_does_not_slow_the_card(benchmark, tmp_path):
    require_pcsc("bench view benchmark")  # only under a private pcscd, never the machine's
    enabled = not benchmark.disabled
    seconds, most = (SECONDS, 10**9) if enabled else (60.0, TEST_EXCHANGES)
    results = benchmark.pedantic(lambda: {way: one_way(tmp_path, way, seconds, most) for way in WAYS},
                                 rounds=1, iterations=1)
    lines = ["", "bench view: PC/SC READ RECORD through pcscd + vpcd, one run each"]
    for way, result in results.items():
        rate = result["count"] / result["elapsed"]
        benchmark.extra_info[way] = {"apdu_per_s": round(rate), "p50_us": round(result["p50"] * 1e6, 1)}
        page = result.get("page")
        lines.append(f"  {way:<24} {rate:>9,.0f} APDU/s  p50 {result['p50'] * 1e6:6.1f} us"
                     + (f"  (the page got {page['entries']:,} entries in {page['batches']:,} batches, "
                        f"{page['states']} states)" if page else ""))
    print("\n".join(lines))
