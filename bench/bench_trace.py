"""Replaying a 10,000-APDU trace in-process (goal: under 2 s), parse included.

The trace is recorded from the card itself (SELECT, VERIFY, READ RECORD x8 per
round, 1,000 rounds), so every response is checked byte for byte.
"""

import io

from helpers import SELECT_SSSE, VERIFY_OK

from chip import Card
from reader import SimReader
from reader.traces.format import parse
from reader.traces.replay import RecordingReader, replay, sim_reader_for

ROUND = [SELECT_SSSE, VERIFY_OK, "00B2012C00", "00B2052C00",
         "00B2062C00", "00B2072C00", "00B2083000", "00B2093000", "00B20D3000", "00B24E3000"]


def recorded_trace(rounds: int = 1000) -> str:
    out = io.StringIO()
    reader = RecordingReader(SimReader(Card.from_profile()), out, directives={"random": 1})
    reader.reset()
    for _ in range(rounds):
        for apdu in ROUND:
            reader.transmit(bytes.fromhex(apdu))
    return out.getvalue()


def bench_replay_10000_apdus(benchmark):
    text = recorded_trace()

    def parse_and_replay():
        trace = parse(text, "10k.apdu")
        return replay(trace, sim_reader_for(trace))

    result = benchmark.pedantic(parse_and_replay, rounds=5, warmup_rounds=1)
    assert result.ok and result.apdus == 10_000
