"""A designated pharmacy's offline purchase, end to end (LD/T 32 P7 §12; P5 §7; P9 §9.9-9.10).

Card and PSAM talk only through APDUs (reader.terminals.ssse drives both):
INITIALIZE FOR PURCHASE on the card, INIT SAM FOR PURCHASE on the PSAM (MAC1),
DEBIT FOR PURCHASE on the card (TAC, MAC2), CREDIT SAM FOR PURCHASE on the
PSAM. Checked here: the balance goes down, DF04 EF08 gets the 28-byte detail
record, the TAC is the one the medical-insurance centre recomputes with DTK
(the independent oracle of tests/oracle.py), the first purchase activates an
issued SSSE, and a power cut at every persistent write of DEBIT FOR PURCHASE
leaves the old or the new state: never a mix, never a reused counter.
"""

import datetime

import oracle
import pytest
from ssse_helpers import TYPE_PURCHASE

from chip import Card, PowerLoss
from chip.kernel.image import cut_power_at
from chip.personalization.profile import load_profile
from reader import SimReader
from reader.base import transmit_all
from reader.terminals.psam import Psam
from reader.terminals.ssse import SsseTerminal

H = bytes.fromhex
WHEN = datetime.datetime(2026, 12, 1, 10, 30, 0)
AMOUNT = 1234


def family(profile) -> str:
    return "sm4" if profile.algorithm_flag == 0x03 else "des"


def balance(reader) -> int:
    """GET BALANCE of the account (P5 §7.3); DF04 selected and the PIN verified."""
    response = transmit_all(reader, H("B026000104"))
    assert response[-2:] == H("9000")
    return int.from_bytes(response[:4], "big")


def medical_session(card):
    reader = SimReader(card)
    terminal = SsseTerminal(reader, Psam(SimReader(Card.psam(card.config.profile))))
    assert terminal.start() == 0x9000
    return terminal, reader


@pytest.mark.parametrize("profile_name", ["default", "default-3des"])
def test_offline_purchase_end_to_end(profile_name):
    profile = load_profile(profile_name)
    card = Card.from_profile(profile_name, date=WHEN.date())
    terminal, reader = medical_session(card)
    exchanges = []
    terminal.on_exchange = lambda command, response: exchanges.append((command, response))
    assert terminal.internal_authenticate()
    assert card.applets["ssse"].state.lifecycle == "issued"
    outcome = terminal.pharmacy_purchase("123456", AMOUNT, WHEN)
    assert outcome["sw"] == 0x9000 and outcome["counter"] == H("0000")

    # the balance went down by the account amount
    assert balance(reader) == profile.medical_balance - AMOUNT
    # EF08 record 1, the newest (SFI 8, P2 44): seq || type || terminal || time || three amounts
    stamp = H(WHEN.strftime("%Y%m%d%H%M%S"))
    amounts = AMOUNT.to_bytes(4, "big") + bytes(8)
    record = transmit_all(reader, H("00B201441C"))
    assert record == H("0000") + bytes((TYPE_PURCHASE,)) + terminal.psam.terminal_number + stamp + amounts + H("9000")
    # the TAC the centre checks with DTK (P7 §15): amounts || type || terminal no || terminal tx no || time
    dtk = oracle.card_key(family(profile), profile.keys["df04_dtk"], 1, profile.region_code, profile.atr_historical)
    message = amounts + bytes((TYPE_PURCHASE,)) + terminal.psam.terminal_number + outcome["terminal_tx"] + stamp
    assert outcome["tac"] == oracle.tac(family(profile), dtk, message)
    # MAC2 = the three amounts under SESPK (P7 §12.5), which the PSAM accepted (CREDIT SAM FOR PURCHASE 9000)
    dpk = oracle.card_key(family(profile), profile.keys["df04_dpk"], 1, profile.region_code, profile.atr_historical)
    init = next(response for command, response in exchanges if command[:4] == H("B0280101"))
    sespk = oracle.sespk(family(profile), dpk, init[18:22], 0, outcome["terminal_tx"])
    assert outcome["mac2"] == oracle.mac4(family(profile), sespk, amounts)
    # the first medical purchase of an authenticated terminal activates the SSSE (the project's rule)
    assert card.applets["ssse"].state.lifecycle == "active"

    # a second purchase uses the next counter and a new terminal transaction number
    terminal.start()
    second = terminal.pharmacy_purchase("123456", 100, WHEN + datetime.timedelta(minutes=5))
    assert second["counter"] == H("0001")
    assert int.from_bytes(second["terminal_tx"], "big") == int.from_bytes(outcome["terminal_tx"], "big") + 1
    assert balance(reader) == profile.medical_balance - AMOUNT - 100


def _purse(card) -> tuple:
    purse = card.store["df04.purse"]
    ef08 = card.store["df04.ef08"]
    return purse.balance, purse.offline, ef08.records


def test_power_cut_at_every_write_of_debit_for_purchase(tmp_path):
    """Cut the power at each persistent write point of DEBIT FOR PURCHASE (three per commit on a
    file: append, append-half, fsync). What is durable (read while the cut
    card still owns the image, then reopened by its next owner) is the old purse (balance, counter,
    EF08) or the new one, never a mix; the counter a landed debit used is never offered again, and
    the counter of one that did not land is offered again (nothing spent)."""
    points = []
    outcomes = {"old": 0, "new": 0}
    n = 1
    while True:
        folder = tmp_path / f"cut{n}"
        folder.mkdir()
        path = str(folder / "card.img")
        card = Card.from_profile(state=path, date=WHEN.date())
        terminal, _reader = medical_session(card)
        before = _purse(card)
        hook = cut_power_at(n)
        original = terminal.psam.init_purchase

        # arm the cut once the PSAM has made MAC1: the next card write is the debit's
        def armed(original=original, card=card, hook=hook, **kwargs):
            result = original(**kwargs)
            card.store.backend.write_point = hook
            return result

        terminal.psam.init_purchase = armed
        try:
            outcome = terminal.pharmacy_purchase("123456", AMOUNT, WHEN)
        except PowerLoss as cut:
            points.append(cut.point)
        else:
            assert outcome["sw"] == 0x9000
            break
        durable = Card.open(path, date=WHEN.date(), read_only=True)  # what is durable: the cut card still owns it
        after = _purse(durable)
        card.close()  # the cut card leaves: the image's next owner opens what is durable
        durable = Card.open(path, date=WHEN.date())
        assert _purse(durable) == after
        if after == before:
            outcomes["old"] += 1
            landed = False
        else:
            outcomes["new"] += 1
            landed = True
            assert after[0] == before[0] - AMOUNT and after[1] == before[1] + 1 and len(after[2]) == len(before[2]) + 1
        # the card powered again offers the next unused counter
        again, _reader = medical_session(durable)
        outcome = again.pharmacy_purchase("123456", 1, WHEN)
        assert outcome["sw"] == 0x9000
        assert outcome["counter"] == (H("0001") if landed else H("0000"))
        n += 1
    assert points == ["append", "append-half", "fsync"]
    assert outcomes == {"old": 2, "new": 1}


@pytest.mark.parametrize("profile_name, protocol", [("default", "T=0"), ("t1", "T=1")])
def test_offline_purchase_over_the_wire(profile_name, protocol):
    """The whole purchase byte by byte through the reader firmware (ISO 7816-3): on T=0 the card
    knows GET BALANCE (B0 26) and GET STARTING DAY (B0 56 01) send data, the rest of the purse
    receives it."""
    from reader.link.wire import WireReader

    card = Card.from_profile(profile_name, date=WHEN.date())
    reader = WireReader(card, protocol=protocol)
    terminal = SsseTerminal(reader, Psam(SimReader(Card.psam(profile_name))))
    assert terminal.start() == 0x9000
    assert terminal.pharmacy_purchase("123456", AMOUNT, WHEN)["sw"] == 0x9000
    assert balance(reader) == load_profile(profile_name).medical_balance - AMOUNT
    assert transmit_all(reader, H("B056010002")) == H("0101") + H("9000")
