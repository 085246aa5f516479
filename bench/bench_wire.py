"""The simulated contacts: APDU/s through reader firmware + wire + card protocol handler (host
time), and the simulated time a real card would take on the wire for the bank-outlet activation
flow: on the default card (T=0 only at 372/1, LD/T 32 P2) and on cards that also offer T=1 with
TA1 = 11, 13, 18 and 96 (4 MHz clock; transfer time only, the card's processing time is not
modelled unless a `slow_etu` is given).
"""

import pytest
from helpers import CARD_DATE, VERIFY_OK
from ssse_helpers import SELECT_SSSE

from chip import Card
from chip.personalization.profile import SHIPPED
from reader.base import transmit_all
from reader.link.wire import WireReader
from reader.terminals.flows import run_flow

SELECT = SELECT_SSSE
# SELECT, VERIFY, and the EF05 items (free to read; EF06 needs RKSSSE on a 3.00 card)
MIX = [SELECT, bytes.fromhex(VERIFY_OK)] + [bytes.fromhex(h) for h in (
    "00B2012C00", "00B2022C00", "00B2032C00", "00B2042C00", "00B2052C00", "00B2062C00", "00B2072C00")]


@pytest.mark.parametrize("protocol", ["T=0", "T=1"])
def bench_wire_mix(benchmark, protocol):
    profile = "default" if protocol == "T=0" else "t1"  # the default card offers T=0 only
    reader = WireReader(Card.from_profile(profile, date=CARD_DATE), protocol=protocol)
    reader.reset()
    benchmark.extra_info["apdus_per_round"] = len(MIX)

    def mix():
        for apdu in MIX:
            response = transmit_all(reader, apdu)  # as a terminal: a 6Cxx (Le 00, P5 §6.10.4) is re-issued
        return response

    assert benchmark(mix)[-2:] == b"\x90\x00"


@pytest.mark.parametrize("ta1", ["basic", "11", "13", "18", "96"])
def bench_bank_activation_simulated_time(benchmark, tmp_path, ta1):
    """`basic`: the default card over T=0 at 372/1 (no PPS); the others over T=1 after a PPS to TA1."""
    profile = tmp_path / f"ta1-{ta1}.toml"
    atr = "" if ta1 == "basic" else f'\n[atr]\nprotocols = "t0+t1"\nfi_di = "{ta1}"\n'
    profile.write_text((SHIPPED / "default.toml").read_text(encoding="utf-8") + atr, encoding="utf-8")
    protocol = "T=0" if ta1 == "basic" else "T=1"
    readers = []

    def activation():
        card = Card.from_profile(str(profile), date=CARD_DATE)

        def wrap(reader):
            readers.append(WireReader(reader.card, protocol=protocol))
            return readers[-1]

        result = run_flow("bank-activation", card, wrap=wrap)
        assert result.ok
        return readers[-1]

    reader = benchmark.pedantic(activation, rounds=3, warmup_rounds=0)
    benchmark.extra_info["simulated_ms"] = round(reader.seconds * 1000, 1)
    rate = "no TA1 (372/1)" if ta1 == "basic" else f"TA1={ta1}"
    print(f"\nbank-outlet activation over {protocol} at {rate}: {reader.seconds * 1000:.1f} ms simulated "
          f"({reader.total_etu} etu)")
