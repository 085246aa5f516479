"""Shared fixtures: a freshly personalised in-memory card, readers on it, and SSSE sessions.

The card is personalised on a fixed simulated date (helpers.CARD_DATE) so that date-dependent
records (EF05 issue/expiry dates) have known bytes. Constants and functions are in helpers.py.
"""

import pytest
from helpers import CARD_DATE, PROFILES, Session

from chip import Card
from reader import SimReader


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


@pytest.fixture(params=PROFILES)
def both(request):
    """A `helpers.Session` on each shipped algorithm (SM4, 3DES), the SSSE selected (T=1 answers)."""
    session = Session(request.param)
    session.select()
    return session


@pytest.fixture
def s(both):
    """The SSSE session of a test: on both algorithms, unless a file narrows it to `sm4`."""
    return both


@pytest.fixture
def sm4():
    """A `helpers.Session` on the default (SM4, 3.00) card, the SSSE selected."""
    session = Session("default")
    session.select()
    return session
