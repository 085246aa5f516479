"""The SSSE mix on the card core: SELECT, VERIFY, READ RECORD x7 (+ GET RESPONSE on T=0).

Run with `make bench`. Each round is one whole mix; APDU/s = APDUs per round /
mean round time (pytest-benchmark prints the mean; `extra_info` carries the
APDU count). Figures are recorded in bench/README.md.
"""

import datetime

import pytest

from chip import Card
from reader import SimReader

SELECT = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
GET_FCI = bytes.fromhex("00C000001B")
VERIFY = bytes.fromhex("0020000003123456")
READS = [bytes.fromhex(h) for h in (
    "00B2012C00", "00B2052C00", "00B2062C00", "00B2072C00",  # EF05 by record number
    "00B2083000", "00B2093000", "00B20D3000",  # EF06 by identifier
)]
DATE = datetime.date(2026, 11, 21)


def mix_for(protocol: str) -> list[bytes]:
    head = [SELECT, GET_FCI] if protocol == "T=0" else [SELECT]
    return head + [VERIFY] + READS


def run_mix(reader, mix):
    transmit = reader.transmit
    last = b""
    for apdu in mix:
        last = transmit(apdu)
    return last


@pytest.mark.parametrize("protocol", ["T=1", "T=0"])
def bench_ssse_mix_in_memory(benchmark, protocol):
    reader = SimReader(Card.from_profile(date=DATE), protocol=protocol)
    reader.reset()
    mix = mix_for(protocol)
    benchmark.extra_info["apdus_per_round"] = len(mix)
    assert run_mix(reader, mix)[-2:] == b"\x90\x00"
    result = benchmark(run_mix, reader, mix)
    assert result[-2:] == b"\x90\x00"


def bench_ssse_mix_with_image(benchmark, tmp_path):
    reader = SimReader(Card.from_profile(state=tmp_path / "card.img", date=DATE))
    reader.reset()
    mix = mix_for("T=1")
    benchmark.extra_info["apdus_per_round"] = len(mix)
    result = benchmark.pedantic(run_mix, args=(reader, mix), rounds=200, warmup_rounds=5)
    assert result[-2:] == b"\x90\x00"


def bench_read_record_only(benchmark):
    """One protected READ RECORD after VERIFY: the cheapest hot-path command."""
    reader = SimReader(Card.from_profile(date=DATE))
    reader.reset()
    reader.transmit(SELECT)
    reader.transmit(VERIFY)
    result = benchmark(reader.transmit, READS[4])
    assert result[-2:] == b"\x90\x00"


def bench_verify_only(benchmark):
    """VERIFY in memory: two commits (anti-tearing decrement, then restore)."""
    reader = SimReader(Card.from_profile(date=DATE))
    reader.reset()
    reader.transmit(SELECT)
    result = benchmark(reader.transmit, VERIFY)
    assert result == b"\x90\x00"
