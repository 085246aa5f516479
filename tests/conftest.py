"""Shared fixtures: a freshly personalised in-memory card and readers on it.

The card is personalised on a fixed simulated date so that date-dependent
records (EF05 issue/expiry dates) have known bytes.
"""

import datetime

import pytest

from chip import Card
from reader import SimReader
from reader.terminals.issuer import IssuerHost
from reader.terminals.payment import PaymentTerminal

CARD_DATE = datetime.date(2026, 11, 21)


def tx(reader, apdu: str) -> str:
    """Send a hex command APDU (spaces allowed); return the response as upper-case hex."""
    return reader.transmit(bytes.fromhex(apdu)).hex().upper()


@pytest.fixture
def card():
    """The default profile, personalised in memory on CARD_DATE (not powered)."""
    return Card.from_profile(date=CARD_DATE)


@pytest.fixture
def reader(card):
    """A T=1 in-process reader on `card`, already reset: one card answer per command, as on T=1
    (the default card offers T=0 only; the in-process card runs T=1 when told to)."""
    r = SimReader(card, protocol="T=1")
    r.reset()
    return r


@pytest.fixture
def t0reader(card):
    """A raw T=0 in-process reader on `card`, already reset: the card's `61xx` reaches the test,
    which sends GET RESPONSE itself (`get_response=False`)."""
    r = SimReader(card, protocol="T=0", get_response=False)
    r.reset()
    return r


@pytest.fixture(params=["default", "default-3des"])
def s(request):
    """A `helpers.Session` on each shipped algorithm (SM4, 3DES), the SSSE selected (T=1 answers)."""
    from helpers import Session
    session = Session(request.param)
    session.select()
    return session


@pytest.fixture
def sm4():
    """A `helpers.Session` on the default (SM4, 3.00) card, the SSSE selected."""
    from helpers import Session
    session = Session("default")
    session.select()
    return session


def activate_financial(card, pin: str = "123456") -> None:
    """The bank-outlet activation of the financial application, through APDUs: a transaction
    whose issuer scripts set the PIN and PUT DATA DF7F 01 (SPEC §3). Leaves the card reset."""
    host = IssuerHost(card.config.profile)
    host.queue(host.profile.financial.pan, IssuerHost.activation(pin))
    outcome = PaymentTerminal(SimReader(card), date=card.today).purchase(0, host=host)
    assert [sw for _, sw in outcome.script_results] == [0x9000, 0x9000]
    assert card.financial_activated()
