"""All or nothing at the operation level, and summaries that say what the card did.

Host-side operations (the issuer host's script builders, the terminal kernel,
the financial flows) check every input before the first APDU: a bad one is a
ValueError and the card sees nothing. An issuer script runs as EMV Book 3
§10.10 has it: once the card refuses one of its commands, the rest of that
script is not sent (the activation is one script, PIN CHANGE then PUT DATA
DF7F 01, so a card that refused the new PIN is never marked activated with
its old one), and the outcome lists what the card ran and what it never saw.
The summary names the offline PIN's result and the reason for a decline.
"""

import pytest
from helpers import CARD_DATE, PAN, activate_financial

from chip.apps.financial import AAC, TC
from reader import SimReader
from reader.terminals.flows import online_activation, run_flow
from reader.terminals.issuer import IssuerHost
from reader.terminals.payment import PaymentTerminal, script_goes_on, script_name

OTHER_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")


class CountingReader(SimReader):
    """A SimReader that counts what reaches the card: resets and APDUs."""

    def __init__(self, card):
        super().__init__(card)
        self.resets = 0
        self.apdus = []

    def reset(self):
        self.resets += 1
        return super().reset()

    def transmit(self, apdu):
        self.apdus.append(bytes(apdu))
        return super().transmit(apdu)


def wrong_mac_host() -> IssuerHost:
    """An issuer host whose script MAC master key is not the card's: every script command is refused (6988)."""
    host = IssuerHost()
    host.imk["smi"] = OTHER_KEY
    return host


# -- inputs checked before the first APDU -----------------------------------------------------------------

@pytest.mark.parametrize("pin", ["abcdef", "123", "1234567890123", "", "12 34", None, 123456])
def test_activation_with_a_bad_pin_is_a_value_error_before_anything(pin):
    with pytest.raises(ValueError, match="4 to 12 digits"):
        IssuerHost.activation(pin)


@pytest.mark.parametrize("kwargs", [
    {"amount": -1}, {"amount": 12.34}, {"amount": "1234"}, {"amount": True}, {"amount": 10**12},
    {"amount": float("nan")}, {"amount": 100, "pin": "abcdef"}, {"amount": 100, "pin": "123"},
    {"amount": 100, "currency": b"\x01"}, {"amount": 100, "request": 0x10},
])
def test_a_purchase_with_a_bad_input_sends_nothing(card, kwargs):
    reader = CountingReader(card)
    with pytest.raises(ValueError):
        PaymentTerminal(reader, date=CARD_DATE).purchase(host=IssuerHost(), **kwargs)
    assert (reader.resets, reader.apdus) == (0, [])
    assert card.store["fin.state"].atc == 0


def test_a_script_with_bad_bytes_is_refused_when_built():
    for args in ((0x184, 0x1E), (0x84, -1), (0x84, 0x1E, 0x100), (0x84, 0x1E, 0, 0, bytes(252))):
        with pytest.raises(ValueError):
            IssuerHost.command(*args)
    with pytest.raises(ValueError):
        IssuerHost().queue(PAN, [])


@pytest.mark.parametrize("bank_pin", ["abcdef", "12"])
def test_online_activation_flow_with_a_bad_pin_sends_nothing(card, bank_pin):
    reader = CountingReader(card)
    host = IssuerHost()
    with pytest.raises(ValueError):
        online_activation(reader, host, pan=PAN, bank_pin=bank_pin, date=CARD_DATE)
    assert (reader.resets, reader.apdus, host.pending) == (0, [], {})


# -- a refused script command stops its script ------------------------------------------------------------

def test_a_refused_pin_change_is_never_followed_by_the_activation_flag(card):
    host = wrong_mac_host()
    host.queue(PAN, IssuerHost.activation("246810"))
    reader = CountingReader(card)
    outcome = PaymentTerminal(reader, date=CARD_DATE).purchase(0, host=host)
    assert [(script_name(c), sw) for c, sw in outcome.script_results] == [("PIN CHANGE", 0x6988)]
    assert [script_name(c) for c in outcome.scripts_not_sent] == ["PUT DATA DF7F"]
    assert not any(apdu[:2] == b"\x04\xDA" for apdu in reader.apdus)  # PUT DATA never reached the card
    assert not card.financial_activated()


def test_each_script_stops_on_its_own(card):
    """Two scripts in one answer: the first one's refusal does not stop the second (EMV: per script)."""
    activate_financial(card)
    host = IssuerHost()
    refused = [lambda host, pan, psn, alg, atc, ac: bytes.fromhex("841E000004") + bytes(4)]  # a bad MAC
    host.queue(PAN, refused + IssuerHost.command(0x84, 0x1E))  # one script: its second command is not sent
    host.queue(PAN, IssuerHost.command(0x84, 0x24))  # a script of its own: sent
    outcome = PaymentTerminal(SimReader(card), date=CARD_DATE).purchase(0, host=host)
    assert [(script_name(c), sw) for c, sw in outcome.script_results] == [("APPLICATION BLOCK", 0x6988),
                                                                          ("PIN UNBLOCK", 0x9000)]
    assert [script_name(c) for c in outcome.scripts_not_sent] == ["APPLICATION BLOCK"]
    assert card.store["fin.state"].lock == "none"


@pytest.mark.parametrize("sw, goes_on", [(0x9000, True), (0x6283, True), (0x63C1, True), (0x6988, False),
                                         (0x6A80, False), (0x6985, False), (0x6700, False)])
def test_the_emv_rule_for_the_next_command_of_a_script(sw, goes_on):
    assert script_goes_on(sw) is goes_on


def test_the_activation_flow_says_which_scripts_the_card_ran(card):
    result = online_activation(SimReader(card), wrong_mac_host(), pan=PAN, date=CARD_DATE)
    assert not result.ok
    assert result.message == ("an issuer script answered 6988 (secure messaging data object incorrect (bad MAC)): "
                              "the card ran PIN CHANGE 6988; not sent: PUT DATA DF7F; the card is not activated")
    assert result.results("issuer script PIN CHANGE") == ["6988"]
    assert result.results("issuer script PUT DATA") == ["not sent (an earlier command of its script failed)"]
    assert not card.financial_activated()


def test_the_activation_flow_says_the_aac_is_expected(card):
    result = run_flow("online-activation", card)
    assert result.ok
    [transaction] = result.results("transaction of 1.00 yuan, online to the issuer host")
    assert transaction.startswith("declined (AAC, ATC 1, CVR 03801004): the financial application is not activated")
    assert transaction.endswith("(expected before activation: the issuer's scripts ran after this AAC)")
    assert result.message == "financial application activated: bank PIN set, DF7F 01 (by the next online transaction)"


# -- summaries that say what happened -----------------------------------------------------------------------

def purchase(card, **kw):
    return PaymentTerminal(SimReader(card), date=CARD_DATE).purchase(100, host=IssuerHost(), **kw)


def test_summary_of_a_refused_offline_pin(card):
    activate_financial(card, "246810")
    outcome = purchase(card, pin="111111")
    assert (outcome.approved, outcome.cid, outcome.pin_sw) == (True, TC, 0x63C2)
    assert outcome.summary == "PIN refused (63C2), purchase approved offline-PIN-failed (TC, ATC 2, CVR 03661000)"
    assert purchase(card, pin="246810").summary.startswith("PIN verified, purchase approved (TC, ATC 3")
    for _ in range(3):
        purchase(card, pin="111111")
    blocked = purchase(card, pin="111111")
    assert blocked.pin_sw == 0x6983
    assert blocked.summary.startswith("PIN blocked (6983), purchase approved offline-PIN-failed (TC")


def test_summary_of_declines_names_the_reason(card):
    outcome = purchase(card)
    assert (outcome.approved, outcome.cid) == (False, AAC)
    assert outcome.summary == "declined (AAC, ATC 1, CVR 03801004): the financial application is not activated"
    with_pin = purchase(card, pin="000000")
    assert with_pin.summary.startswith("PIN verified, purchase declined (AAC, ATC 2")
    assert with_pin.summary.endswith(": the financial application is not activated")
    activate_financial(card)
    host = IssuerHost()
    host.balances[PAN] = 50
    poor = PaymentTerminal(SimReader(card), date=CARD_DATE).purchase(100, host=host)
    assert poor.summary.endswith(": the issuer declined (ARC 05)")
    stranger = IssuerHost()
    stranger.imk["ac"] = OTHER_KEY
    unverified = PaymentTerminal(SimReader(card), date=CARD_DATE).purchase(100, host=stranger)
    assert unverified.summary.endswith(": the issuer host did not verify the card's cryptogram")
