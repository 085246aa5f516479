"""A full purchase on the financial application: the terminal kernel's APDUs
(SELECT PSE, READ RECORD, SELECT AID, GPO, READ RECORD x3, VERIFY, GENERATE AC,
EXTERNAL AUTHENTICATE, second GENERATE AC: 11 APDUs) with the issuer host's
ARQC check and ARPC in between, 3DES and SM4, in memory and with a card image.

Run with `make bench`; figures in bench/README.md.
"""

import pytest
from helpers import CARD_DATE

from chip import Card
from reader import SimReader
from reader.terminals.issuer import IssuerHost
from reader.terminals.payment import PaymentTerminal

PIN = "246810"


def activated(state=None):
    card = Card.from_profile(state=state, date=CARD_DATE)
    host = IssuerHost()
    host.queue(host.profile.financial.pan, IssuerHost.activation(PIN))
    PaymentTerminal(SimReader(card), date=CARD_DATE).purchase(0, host=host)
    assert card.financial_activated()
    return card, host


@pytest.mark.parametrize("algorithm", ["3des", "sm4"])
def bench_purchase_in_memory(benchmark, algorithm):
    card, host = activated()
    terminal = PaymentTerminal(SimReader(card), date=CARD_DATE)
    sm4 = algorithm == "sm4"
    benchmark.extra_info["apdus_per_round"] = 11
    outcome = benchmark(terminal.purchase, 1234, pin=PIN, sm4=sm4, host=host)
    assert outcome.approved


@pytest.mark.parametrize("algorithm", ["3des", "sm4"])
def bench_purchase_with_image(benchmark, algorithm, tmp_path):
    card, host = activated(tmp_path / "card.img")
    terminal = PaymentTerminal(SimReader(card), date=CARD_DATE)
    sm4 = algorithm == "sm4"
    benchmark.extra_info["apdus_per_round"] = 11
    outcome = benchmark.pedantic(terminal.purchase, args=(1234,), kwargs={"pin": PIN, "sm4": sm4, "host": host},
                                 rounds=100, warmup_rounds=3)
    assert outcome.approved
