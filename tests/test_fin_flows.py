"""The financial application's flows end to end (docs/decisions.md §6; docs/card/lifecycle.md §2): the PBOC debit
application as a bank outlet, an online channel, a POS and the issuer see it.

Every flow goes through APDUs: `PaymentTerminal` is the terminal kernel and
`IssuerHost` the bank. Flows whose cryptography matters run with the 3DES
path (`DF69 = 00`) and the SM4 path (`DF69 = 01`).

CVR bytes are numbered as in `outcome.cvr` (index 0 is its length, `03`):
index 1 bits 0x80 second AC not requested, 0x40 second AC TC, 0x20 first AC
ARQC, 0x10 first AC TC, 0x08 issuer authentication failed, 0x04 offline PIN
performed; index 2 0x40 PIN try limit exceeded, 0x20 offline limit exceeded,
0x10 new card (no online transaction yet); index 3 0x08 script failed,
0x04 not activated, 0x02 application blocked, 0x01 foreign currency.
"""

import datetime

import helpers
import pytest
from helpers import AID, CARD_DATE, DDF_NAME, PAN, SELECT_MF, SELECT_PPSE, SELECT_PSE, SELECT_SSSE, activate_financial, tx

from chip import Card
from chip.apps.financial import AAC, ARQC, TC, pin_block
from reader import SimReader
from reader.terminals.issuer import IssuerHost
from reader.terminals.payment import KernelError, PaymentTerminal
from reader.terminals.psam import Psam
from reader.terminals.ssse import SsseTerminal

SELECT_FIN = helpers.SELECT_FIN + "00"
IDENTIFICATION = bytes.fromhex("1101000000000001D156000005FFFFFF")  # EF05 item 01, the issuer's records
# the financial application's FCI (docs/decisions.md §6: PDOL 9F02 06, 5F2A 02, DF69 01)
FIN_FCI = ("6F45" "8408" + AID + "A539" "500E" + b"UnionPay Debit".hex().upper() + "870101"
           "9F3809" "9F0206" "5F2A02" "DF6901" "5F2D02" "7A68" "9F110101" "9F120E" + b"UnionPay Debit".hex().upper())
USD = b"\x08\x40"

ALGS = pytest.mark.parametrize("sm4", [False, True], ids=["3des", "sm4"])


def verify_apdu(pin: str) -> str:
    return "0020008008" + pin_block(pin).hex().upper()


def fin_reader(card) -> SimReader:
    """A fresh session with the financial application selected."""
    reader = SimReader(card)
    reader.reset()
    assert tx(reader, SELECT_FIN)[-4:] in ("9000", "6283")
    return reader


def get_data(card, tag: str) -> str:
    return tx(fin_reader(card), "80CA" + tag + "00")


def purchase(card, amount: int = 0, **kw):
    return PaymentTerminal(SimReader(card), date=card.today).purchase(amount, **kw)


def activate(card, sm4: bool, pin: str = "246810"):
    """Bank-outlet activation: the scripts are queued and delivered in one transaction."""
    host = IssuerHost()
    host.queue(PAN, IssuerHost.activation(pin))
    outcome = purchase(card, host=host, sm4=sm4)
    assert [sw for _, sw in outcome.script_results] == [0x9000, 0x9000]
    return outcome


def deliver(card, builders, sm4: bool = False, amount: int = 0, host: IssuerHost | None = None):
    host = host or IssuerHost()
    host.queue(PAN, builders)
    return purchase(card, amount, host=host, sm4=sm4)


def approving_offline(card, sm4: bool) -> None:
    """Activate the card and let it approve offline (lower consecutive offline limit 9F14 = 5, by
    script): a 1.00 purchase asking for a TC is approved with a TC, in the home currency."""
    activate(card, sm4)
    assert sws(deliver(card, IssuerHost.command(0x04, 0xDA, 0x9F, 0x14, b"\x05"), sm4)) == [0x9000]
    home = purchase(card, 100, request=TC, sm4=sm4)
    assert (home.approved, home.cid) == (True, TC)


def sws(outcome) -> list[int]:
    return [sw for _, sw in outcome.script_results]


def ssse_terminal(card, profile: str = "default") -> SsseTerminal:
    psam = Psam(SimReader(Card.psam(profile)))
    return SsseTerminal(SimReader(card), psam, identification=IDENTIFICATION)


# -- a new card ----------------------------------------------------------------------------------

@ALGS
def test_new_card_declines_a_purchase(card, sm4):
    assert get_data(card, "9F36") == "9F360200009000"
    assert get_data(card, "DF7F") == "DF7F01009000"
    outcome = purchase(card, 1234, host=IssuerHost(), sm4=sm4)
    assert not outcome.approved
    assert outcome.cid == AAC
    assert outcome.cvr == bytes.fromhex("03801004")  # 2nd AC not requested, new card, not activated
    assert outcome.cvr[3] & 0x04
    assert outcome.issuer_auth_sw is None  # an AAC gets no ARPC: no EXTERNAL AUTHENTICATE
    assert outcome.arc == b"05"
    assert outcome.script_results == []
    assert outcome.atc == 1
    assert get_data(card, "9F36") == "9F360200019000"
    assert get_data(card, "9F13") == "9F130200009000"


@ALGS
def test_new_card_declines_offline_requests_too(card, sm4):
    for request in (TC, ARQC, AAC):
        outcome = purchase(card, 100, request=request, sm4=sm4)
        assert (outcome.approved, outcome.cid, outcome.cvr[3]) == (False, AAC, 0x04)
    assert get_data(card, "9F36") == "9F360200039000"


# -- activation ------------------------------------------------------------------------------------

@ALGS
def test_bank_outlet_activation(card, sm4):
    host = IssuerHost()
    host.queue(PAN, IssuerHost.activation("246810"))
    outcome = purchase(card, host=host, sm4=sm4)
    commands = [command for command, _ in outcome.script_results]
    assert sws(outcome) == [0x9000, 0x9000]
    assert commands[0][:5] == bytes.fromhex("8424000214")  # PIN CHANGE, 16 bytes enciphered + MAC4
    assert commands[1][:6] == bytes.fromhex("04DADF7F0501")  # PUT DATA DF7F 01 + MAC4
    assert host.pending == {}
    assert get_data(card, "DF7F") == "DF7F01019000"
    assert card.financial_activated()
    reader = fin_reader(card)
    assert tx(reader, verify_apdu("000000")) == "63C2"  # the initial PIN is gone
    assert tx(reader, verify_apdu("246810")) == "9000"
    assert tx(reader, "80CA9F1700") == "9F1701039000"


@ALGS
def test_activation_survives_reopening_the_image(tmp_path, sm4):
    img = str(tmp_path / "card.img")
    card = Card.from_profile(state=img, date=CARD_DATE)
    activate(card, sm4)
    card.close()  # one owner per image
    reopened = Card.open(img, date=CARD_DATE)
    assert get_data(reopened, "DF7F") == "DF7F01019000"
    reader = fin_reader(reopened)
    assert tx(reader, verify_apdu("246810")) == "9000"


@ALGS
def test_online_activation_from_the_app_waits_for_the_next_online_contact(card, sm4):
    host = IssuerHost()
    host.queue(PAN, IssuerHost.activation("135790"))  # the holder asked in a city-services app
    # an offline-only terminal: the card declines and the scripts stay at the host
    offline = purchase(card, 500, sm4=sm4)
    assert (offline.approved, offline.cid, offline.cvr[3]) == (False, AAC, 0x04)
    assert offline.script_results == []
    assert [len(script) for script in host.pending[PAN]] == [2]  # one script: PIN CHANGE, PUT DATA DF7F 01
    assert get_data(card, "DF7F") == "DF7F01009000"
    # the next online contact delivers them; that transaction itself was declined at its first AC
    delivering = purchase(card, 500, host=host, sm4=sm4)
    assert sws(delivering) == [0x9000, 0x9000]
    assert (delivering.approved, delivering.cid) == (False, AAC)
    assert host.pending == {}
    assert get_data(card, "DF7F") == "DF7F01019000"
    # from now on purchases are approved, with the PIN the holder chose
    approved = purchase(card, 500, pin="135790", host=host, sm4=sm4)
    assert approved.pin_sw == 0x9000
    assert (approved.approved, approved.cid) == (True, TC)
    assert approved.atc == 3


# -- online authorisation -----------------------------------------------------------------------------

@ALGS
def test_online_approval_with_arpc(card, sm4):
    activate(card, sm4)
    host = IssuerHost()
    host.balances[PAN] = 10_000
    outcome = purchase(card, 1234, pin="246810", host=host, sm4=sm4)
    assert outcome.pin_sw == 0x9000
    assert outcome.arc == b"00"
    assert outcome.issuer_auth_sw == 0x9000
    assert (outcome.approved, outcome.cid, outcome.atc) == (True, TC, 2)
    # second AC TC, first AC ARQC, offline PIN performed; new card (no online ATC before)
    assert outcome.cvr == bytes.fromhex("03641000")
    assert host.balances[PAN] == 10_000 - 1234
    assert get_data(card, "9F13") == "9F130200029000"
    assert get_data(card, "9F36") == "9F360200029000"


@ALGS
def test_first_ac_is_arqc_then_external_authenticate_then_tc(card, sm4):
    activate(card, sm4)
    log = []
    terminal = PaymentTerminal(SimReader(card), on_exchange=lambda c, r: log.append((c.hex().upper(), r.hex().upper())),
                               date=card.today)
    outcome = terminal.purchase(100, host=IssuerHost(), sm4=sm4)
    assert outcome.approved
    tail = [(c[:8], r) for c, r in log if c[:4] in ("80AE", "0082")]
    assert [c for c, _ in tail] == ["80AE8000", "00820000", "80AE4000"]
    assert tail[0][1][:18] == "771F9F2701809F3602"  # CID ARQC
    assert tail[1][1] == "9000"
    assert tail[2][1][:18] == "771F9F2701409F3602"  # CID TC
    cvn = "4A" if sm4 else "0A"
    assert all(f"9F1008" f"0701{cvn}" in r for _, r in (tail[0], tail[2]))


@ALGS
def test_host_declines_for_lack_of_funds(card, sm4):
    activate(card, sm4)
    host = IssuerHost()
    host.balances[PAN] = 0
    outcome = purchase(card, 100, host=host, sm4=sm4)
    assert outcome.arc == b"05"
    assert outcome.issuer_auth_sw == 0x9000  # the ARPC over ARC 05 is genuine
    assert (outcome.approved, outcome.cid) == (False, AAC)
    assert outcome.cvr == bytes.fromhex("03201000")  # first AC ARQC, second AC not TC
    assert host.balances[PAN] == 0


class TamperedArpcHost(IssuerHost):
    def authorise(self, *args, **kwargs):
        answer = super().authorise(*args, **kwargs)
        if answer.arpc is not None:
            answer.arpc = bytes((answer.arpc[0] ^ 0x01,)) + answer.arpc[1:]
        return answer


@ALGS
def test_wrong_arpc_fails_issuer_authentication_and_declines(card, sm4):
    activate(card, sm4)
    outcome = purchase(card, 100, host=TamperedArpcHost(), sm4=sm4)
    assert outcome.arc == b"00"  # the host approved, but its answer is not authentic
    assert outcome.issuer_auth_sw == 0x6300
    assert (outcome.approved, outcome.cid) == (False, AAC)
    assert outcome.cvr == bytes.fromhex("03281000")  # issuer authentication failed
    assert get_data(card, "9F13") == "9F130200009000"  # no online transaction recorded


# -- the offline PIN ----------------------------------------------------------------------------------

@ALGS
def test_pin_try_counter_blocks_then_goes_online_and_script_unblocks(card, sm4):
    approving_offline(card, sm4)  # so that going online below is the PIN's doing

    reader = fin_reader(card)
    assert [tx(reader, verify_apdu("111111")) for _ in range(3)] == ["63C2", "63C1", "63C0"]
    assert tx(reader, verify_apdu("246810")) == "6983"  # the right PIN too, once blocked
    assert tx(reader, verify_apdu("111111")) == "6983"
    assert tx(reader, "80CA9F1700") == "9F1701009000"

    blocked = purchase(card, 100, request=TC, pin="246810", sm4=sm4)
    assert blocked.pin_sw == 0x6983
    assert blocked.cid == ARQC  # the card wants to go online
    assert blocked.cvr[2] & 0x40  # PIN try limit exceeded
    assert not blocked.cvr[2] & 0x20  # not the offline limit
    assert not blocked.approved

    unblock = deliver(card, IssuerHost.command(0x84, 0x24), sm4)
    assert [(c[:5].hex().upper(), sw) for c, sw in unblock.script_results] == [("8424000004", 0x9000)]
    assert get_data(card, "9F17") == "9F1701039000"
    reader = fin_reader(card)
    assert tx(reader, verify_apdu("000000")) == "63C2"  # the counter only: the PIN is still 246810
    assert tx(reader, verify_apdu("246810")) == "9000"


def test_verify_before_and_after_gpo_on_a_new_card(card):
    reader = fin_reader(card)
    assert tx(reader, verify_apdu("000000")) == "9000"  # the initial PIN works before activation
    assert tx(reader, "80A800000B830900000000010001560000") == "770A82021C0094040801030090" "00"
    assert tx(reader, verify_apdu("999999")) == "63C2"
    assert tx(reader, "80CA9F1700") == "9F1701029000"


# -- block, unblock, card block -------------------------------------------------------------------------

@ALGS
def test_application_block_and_unblock_by_script(card, sm4):
    activate(card, sm4)
    reader = fin_reader(card)
    assert tx(reader, SELECT_FIN) == FIN_FCI + "9000"

    blocking = deliver(card, IssuerHost.command(0x84, 0x1E), sm4)
    assert sws(blocking) == [0x9000]
    assert (blocking.approved, blocking.cid) == (False, AAC)  # blocked before its second AC

    reader = SimReader(card)
    reader.reset()
    assert tx(reader, SELECT_FIN) == FIN_FCI + "6283"  # FCI still returned
    for request in (TC, ARQC):
        outcome = purchase(card, 100, request=request, sm4=sm4)
        assert outcome.select_sw == 0x6283
        assert (outcome.approved, outcome.cid) == (False, AAC)
        assert outcome.cvr == bytes.fromhex("03800002")  # application blocked
    online = purchase(card, 100, host=IssuerHost(), sm4=sm4)
    assert (online.approved, online.cid, online.issuer_auth_sw) == (False, AAC, None)

    unblocking = deliver(card, IssuerHost.command(0x84, 0x18), sm4)
    assert sws(unblocking) == [0x9000]
    reader.reset()
    assert tx(reader, SELECT_FIN) == FIN_FCI + "9000"
    approved = purchase(card, 100, host=IssuerHost(), sm4=sm4)
    assert (approved.approved, approved.cid, approved.select_sw) == (True, TC, 0x9000)


def test_financial_block_leaves_the_ssse_alone(card):
    activate_financial(card)
    assert sws(deliver(card, IssuerHost.command(0x84, 0x1E))) == [0x9000]
    reader = SimReader(card)
    reader.reset()
    assert tx(reader, SELECT_SSSE) == "6F1C840F" + DDF_NAME + "A50988011E9F0C03860103" + "9000"
    assert tx(reader, "0020000003123456") == "9000"
    assert tx(reader, "00B2012C12") == "0110" "110100D156000005" "00000001" "00000000" "9000"  # V2 table 10


@ALGS
def test_ssse_loss_lock_does_not_stop_a_purchase(card, sm4):
    activate(card, sm4)
    terminal = ssse_terminal(card)
    assert terminal.start() == 0x9000
    assert terminal.lock() == 0x9000
    outcome = purchase(card, 100, host=IssuerHost(), sm4=sm4)
    assert (outcome.approved, outcome.cid, outcome.select_sw) == (True, TC, 0x9000)
    reader = SimReader(card)
    reader.reset()
    assert tx(reader, SELECT_SSSE)[-4:] == "6283"  # the SSSE is still locked


def _assert_card_blocked(card):
    reader = SimReader(card)
    reader.reset()
    for select in (SELECT_FIN, SELECT_SSSE, SELECT_PSE, SELECT_PPSE, SELECT_MF):
        assert tx(reader, select) == "6A81"


@ALGS
def test_card_block_by_script_is_final(tmp_path, sm4):
    img = str(tmp_path / "card.img")
    card = Card.from_profile(state=img, date=CARD_DATE)
    outcome = deliver(card, IssuerHost.command(0x84, 0x16), sm4)  # delivered with the AAC advice
    assert [(c[:5].hex().upper(), sw) for c, sw in outcome.script_results] == [("8416000004", 0x9000)]
    _assert_card_blocked(card)
    _assert_card_blocked(card)  # after another reset
    card.close()  # one owner per image
    with Card.open(img, date=CARD_DATE) as reopened:
        _assert_card_blocked(reopened)
    with Card.open(img, date=CARD_DATE) as reopened, pytest.raises(KernelError, match="SELECT PSE answered 6A81"):
        purchase(reopened, 100, host=IssuerHost(), sm4=sm4)


@ALGS
def test_card_block_by_script_on_an_activated_card(tmp_path, sm4):
    img = str(tmp_path / "card.img")
    card = Card.from_profile(state=img, date=CARD_DATE)
    activate(card, sm4)
    outcome = deliver(card, IssuerHost.command(0x84, 0x16), sm4)
    assert [(c[:5].hex().upper(), sw) for c, sw in outcome.script_results] == [("8416000004", 0x9000)]
    assert not outcome.approved
    card.close()  # one owner per image
    with Card.open(img, date=CARD_DATE) as reopened:
        _assert_card_blocked(reopened)


# -- script MACs --------------------------------------------------------------------------------------

def tampered(builders: list) -> list:
    """The same scripts with one byte of each MAC flipped."""
    def wrap(make):
        def build(*args):
            command = make(*args)
            return command[:-1] + bytes((command[-1] ^ 0x01,))
        return build
    return [wrap(make) for make in builders]


@ALGS
def test_wrong_script_mac_changes_nothing(card, sm4):
    outcome = deliver(card, tampered(IssuerHost.activation("246810")), sm4)
    assert sws(outcome) == [0x6988]  # the PIN CHANGE failed: the script stops, PUT DATA is never sent
    assert [c[:4].hex().upper() for c in outcome.scripts_not_sent] == ["04DADF7F"]
    assert get_data(card, "DF7F") == "DF7F01009000"
    reader = fin_reader(card)
    assert tx(reader, "80CA9F1700") == "9F1701039000"
    assert tx(reader, verify_apdu("246810")) == "63C2"
    assert tx(reader, verify_apdu("000000")) == "9000"  # the initial PIN is still the PIN
    # and the genuine scripts still work afterwards
    activate(card, sm4)
    assert get_data(card, "DF7F") == "DF7F01019000"


@ALGS
def test_wrong_mac_on_application_block_leaves_the_card_open(card, sm4):
    activate(card, sm4)
    outcome = deliver(card, tampered(IssuerHost.command(0x84, 0x1E)), sm4)
    assert sws(outcome) == [0x6988]
    assert (outcome.approved, outcome.cid) == (True, TC)
    assert outcome.cvr[3] == 0x08  # issuer script processing failed
    reader = SimReader(card)
    reader.reset()
    assert tx(reader, SELECT_FIN) == FIN_FCI + "9000"


@ALGS
def test_script_mac_binds_the_transaction(card, sm4):
    """A script MACed for one transaction (its ATC and AC) is refused in the next one."""
    activate(card, sm4)
    captured = deliver(card, IssuerHost.command(0x04, 0xDA, 0x9F, 0x14, b"\x03"), sm4)
    assert sws(captured) == [0x9000]
    replay = captured.script_results[0][0]
    replay_host = IssuerHost()
    replay_host.queue(PAN, [lambda *args: replay])
    outcome = purchase(card, 0, host=replay_host, sm4=sm4)
    assert sws(outcome) == [0x6988]


# -- card risk management ---------------------------------------------------------------------------------

@ALGS
def test_foreign_currency_offline_request_is_declined(card, sm4):
    approving_offline(card, sm4)
    foreign = purchase(card, 100, request=TC, currency=USD, sm4=sm4)
    assert (foreign.approved, foreign.cid) == (False, AAC)
    assert foreign.cvr == bytes.fromhex("03800001")
    assert foreign.cvr[3] & 0x01


@ALGS
def test_lower_offline_limit_by_put_data(card, sm4):
    activate(card, sm4)
    assert get_data(card, "9F14") == "9F1401009000"
    # with the default limit 0, an offline request goes online
    first = purchase(card, 100, request=TC, sm4=sm4)
    assert (first.cid, first.cvr[2] & 0x20) == (ARQC, 0x20)
    setting = deliver(card, IssuerHost.command(0x04, 0xDA, 0x9F, 0x14, b"\x02"), sm4)
    assert [(c[:6].hex().upper(), sw) for c, sw in setting.script_results] == [("04DA9F140502", 0x9000)]
    assert setting.issuer_auth_sw == 0x9000
    assert get_data(card, "9F14") == "9F1401029000"
    online_atc = setting.atc
    assert get_data(card, "9F13") == f"9F1302{online_atc:04X}9000"
    for n in (1, 2):
        offline = purchase(card, 100, request=TC, sm4=sm4)
        assert (offline.approved, offline.cid, offline.atc) == (True, TC, online_atc + n)
        assert offline.cvr == bytes.fromhex("03900000")  # first AC TC, no second AC
        assert offline.issuer_auth_sw is None
    third = purchase(card, 100, request=TC, host=IssuerHost(), sm4=sm4)
    assert third.cvr[1] & 0x20 and third.cvr[2] & 0x20  # first AC ARQC: offline limit exceeded
    assert third.issuer_auth_sw == 0x9000
    assert (third.approved, third.cid, third.atc) == (True, TC, online_atc + 3)
    # the online contact restarts the count
    again = purchase(card, 100, request=TC, sm4=sm4)
    assert (again.approved, again.cid) == (True, TC)


# -- the SSSE deadline follows the real financial activation (docs/card/lifecycle.md §2) ------------------

PAST_DEADLINE = CARD_DATE + datetime.timedelta(days=301)
PAIRS = pytest.mark.parametrize("profile, sm4", [("default", True), ("default-3des", False)],
                                ids=["ssse-sm4", "ssse-3des"])


def select_ssse(card) -> str:
    reader = SimReader(card)
    reader.reset()
    return tx(reader, SELECT_SSSE)[-4:]


@PAIRS
def test_deadline_locks_an_ssse_whose_financial_application_was_not_activated(profile, sm4):
    card = Card.from_profile(profile, date=CARD_DATE)
    card.set_date(CARD_DATE + datetime.timedelta(days=300))
    assert select_ssse(card) == "9000"  # day 300 is inside the window
    card.set_date(PAST_DEADLINE)
    assert select_ssse(card) == "6283"
    assert card.store["ssse.state"].lock_reason == "deadline"


@PAIRS
def test_bank_outlet_activation_before_the_deadline_prevents_the_lock(profile, sm4):
    card = Card.from_profile(profile, date=CARD_DATE)
    card.set_date(CARD_DATE + datetime.timedelta(days=299))
    activate(card, sm4)
    card.set_date(PAST_DEADLINE)
    assert select_ssse(card) == "9000"
    card.set_date(CARD_DATE + datetime.timedelta(days=3000))
    assert select_ssse(card) == "9000"


@PAIRS
def test_failed_activation_scripts_do_not_prevent_the_lock(profile, sm4):
    card = Card.from_profile(profile, date=CARD_DATE)
    assert sws(deliver(card, tampered(IssuerHost.activation("246810")), sm4)) == [0x6988]
    card.set_date(PAST_DEADLINE)
    assert select_ssse(card) == "6283"


@PAIRS
def test_deadline_lock_lifts_only_after_financial_activation(profile, sm4):
    card = Card.from_profile(profile, date=CARD_DATE)
    card.set_date(PAST_DEADLINE)
    terminal = ssse_terminal(card, profile)
    assert terminal.start() == 0x6283
    assert terminal.unlock() == 0x6985  # the financial application is not activated yet
    assert select_ssse(card) == "6283"
    # a locked SSSE does not stop the bank outlet from activating the financial application
    activate(card, sm4)
    assert select_ssse(card) == "6283"  # activation alone does not unlock
    assert terminal.start() == 0x6283
    assert terminal.unlock() == 0x9000
    assert select_ssse(card) == "9000"
    assert card.store["ssse.state"].lock == "none"
    assert select_ssse(card) == "9000"  # and the next power-up does not lock it again


def test_card_personalised_past_a_fixed_issue_date_follows_the_rule(card):
    # personalised on CARD_DATE, used 301 days later: locked at power-up
    card.set_date(PAST_DEADLINE)
    reader = SimReader(card)
    reader.reset()
    assert tx(reader, SELECT_SSSE) == "6F1C840F" + DDF_NAME + "A50988011E9F0C03860103" + "6283"
    assert tx(reader, "0020000003123456") == "6985"
    # the financial application is not affected by the SSSE lock, but is still not activated
    outcome = purchase(card, 100, host=IssuerHost())
    assert (outcome.approved, outcome.cid, outcome.cvr[3]) == (False, AAC, 0x04)
