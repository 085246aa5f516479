"""The simulated contacts: APDU/s through reader firmware + wire + card protocol handler (host
time), and the simulated time a real card would take on the wire for the bank-outlet activation
flow at TA1 = 11, 13, 18 and 96 (4 MHz clock; transfer time only, the card's processing time
is not modelled unless a `slow_etu` is given).
"""

import datetime

import pytest

from chip import Card
from chip.profile import SHIPPED
from reader.flows import run_flow
from reader.wire import WireReader

DATE = datetime.date(2026, 11, 21)
SELECT = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
MIX = [SELECT, bytes.fromhex("0020000003123456")] + [bytes.fromhex(h) for h in (
    "00B2012C00", "00B2052C00", "00B2062C00", "00B2072C00", "00B2083000", "00B2093000", "00B20D3000")]


@pytest.mark.parametrize("protocol", ["T=0", "T=1"])
def bench_wire_mix(benchmark, protocol):
    reader = WireReader(Card.from_profile(date=DATE), protocol=protocol)
    reader.reset()
    benchmark.extra_info["apdus_per_round"] = len(MIX)

    def mix():
        for apdu in MIX:
            response = reader.transmit(apdu)
        return response

    assert benchmark(mix)[-2:] == b"\x90\x00"


@pytest.mark.parametrize("ta1", ["11", "13", "18", "96"])
def bench_bank_activation_simulated_time(benchmark, tmp_path, ta1):
    profile = tmp_path / f"ta1-{ta1}.toml"
    profile.write_text((SHIPPED / "default.toml").read_text(encoding="utf-8") + f'\n[atr]\nfi_di = "{ta1}"\n',
                       encoding="utf-8")
    readers = []

    def activation():
        card = Card.from_profile(str(profile), date=DATE)

        def wrap(reader):
            readers.append(WireReader(reader.card, protocol="T=1"))
            return readers[-1]

        result = run_flow("bank-activation", card, wrap=wrap)
        assert result.ok
        return readers[-1]

    reader = benchmark.pedantic(activation, rounds=3, warmup_rounds=0)
    benchmark.extra_info["simulated_ms"] = round(reader.seconds * 1000, 1)
    print(f"\nbank-outlet activation over T=1 at TA1={ta1}: {reader.seconds * 1000:.1f} ms simulated "
          f"({reader.total_etu} etu)")
