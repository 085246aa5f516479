"""Real-world terminal flows (`reader/terminals/flows.py`, `sscard flow`) on a fresh default card.

The flows follow LD/T 32 part 7 (P7 §5 card recognition, §6 query, §7 update, §9 change PIN,
§12 medical purchase, §13 maintenance; docs/card/commands.md §5) and the project's extensions of
docs/card/lifecycle.md (activation, the 300-day deadline, the loss lock). Every flow runs through APDUs (SSSE terminal, PSAM,
payment kernel, issuer host). The tests check the card afterwards through
APDUs (SELECT, VERIFY, GET DATA DF7E/DF7F) and `describe()`; cryptograms are
checked with the independent oracle (tests/oracle.py, via tests/ssse_helpers.py);
"unchanged" means every persistent object of the card dumps the same before
and after.
"""

import dataclasses
import datetime

import helpers
import oracle
import pytest
from helpers import CARD_DATE, DDF_NAME, FCI, ITEM_08, SELECT_SSSE, cli, snapshot, tx
from ssse_helpers import TERMINAL_NO, TYPE_PURCHASE, Terminal, cn

from chip import Card
from chip.apps.financial import pin_block
from chip.personalization.idnumber import check_character
from chip.personalization.profile import load_profile
from reader import SimReader
from reader.terminals.flows import (
    DEFAULT_BANK_PIN,
    DEFAULT_ID_NUMBER,
    DEFAULT_SSSE_PIN,
    FLOWS,
    FlowResult,
    online_activation,
    parameters,
    parse_params,
    run_flow,
)
from reader.terminals.issuer import IssuerHost
from reader.terminals.payment import PaymentTerminal

FCI_SM4 = FCI["sm4"]  # P5 table 36 as real cards answer (docs/decisions.md S19, S9)
SELECT_DF04 = helpers.SELECT_DF04 + "00"  # DF04 by its AID D156000005 03 (V2 table 2)
ID_RECORD = ITEM_08  # EF06 item 08 (V2 table 9)
SELECT_FIN = helpers.SELECT_FIN + "00"
OTHER_ID = "11010119850615002" + check_character("11010119850615002")  # a valid ID, not the holder's
AGENT_ID = "11010219800101003" + check_character("11010219800101003")
DOCUMENTS = {"agent_id_number": AGENT_ID, "power_of_attorney": "POA-2026-0042"}
DEADLINE_DAY = CARD_DATE + datetime.timedelta(days=301)


# -- the card seen through APDUs ------------------------------------------------------------------
def ssse_select(card) -> str:
    reader = SimReader(card)
    reader.reset()
    return tx(reader, SELECT_SSSE)[-4:]


def ssse_verify(card, pin: str) -> str:
    reader = SimReader(card)
    reader.reset()
    assert tx(reader, SELECT_SSSE)[-4:] == "9000"
    digits = pin + "F" * (len(pin) % 2)
    return tx(reader, f"00200000{len(digits) // 2:02X}{digits}")


def fin_get(card, apdu: str) -> str:
    reader = SimReader(card)
    reader.reset()
    assert tx(reader, SELECT_FIN)[-4:] in ("9000", "6283")
    return tx(reader, apdu)


def activation_flag(card) -> str:
    """GET DATA DF7F: '01' activated, '00' not."""
    response = fin_get(card, "80CADF7F00")
    assert response[:6] == "DF7F01" and response[-4:] == "9000"
    return response[6:8]


def fin_verify(card, pin: str) -> str:
    return fin_get(card, "0020008008" + pin_block(pin).hex().upper())


def ssse(card) -> dict:
    return card.applets["ssse"].describe()


def block_ssse_pin(card) -> None:
    """The holder forgets the PIN: six wrong VERIFYs (default profile: 6 tries) block it."""
    reader = SimReader(card)
    reader.reset()
    assert tx(reader, SELECT_SSSE)[-4:] == "9000"
    for left in range(5, -1, -1):
        assert tx(reader, "0020000003999999") == f"63C{left}"
    assert tx(reader, "0020000003123456") == "6983"


def deadline_card() -> Card:
    """Personalised on CARD_DATE, seen 301 days later: the SSSE is deadline-locked at power-up."""
    card = Card.from_profile(date=CARD_DATE)
    card.set_date(DEADLINE_DAY)
    assert ssse_select(card) == "6283"
    assert ssse(card)["lock"] == "locked (deadline)"
    return card


def recorder():
    exchanges = []
    return exchanges, lambda command, response: exchanges.append((command, response))


def hexes(exchanges) -> list[tuple[str, str]]:
    return [(command.hex().upper(), response.hex().upper()) for command, response in exchanges]


def df04_item(card, tag: int) -> bytes:
    """A record of DF04 EF06 (temporary-offline settlement, V2 table 9) as the card stores it."""
    return next(record for record in card.store["df04.ef06"].records if record[0] == tag)


# -- registry and parameters -----------------------------------------------------------------------
def test_registry_names_and_defaults():
    assert list(FLOWS) == ["bank-activation", "entrusted-activation", "service-window-activation",
                           "hospital-activation", "pharmacy-activation", "online-activation", "loss-report",
                           "loss-unlock", "deadline-unlock", "pin-reset"]
    assert DEFAULT_ID_NUMBER == load_profile("default").id_number
    assert parameters("bank-activation") == {"id_number": DEFAULT_ID_NUMBER, "ssse_old_pin": "123456",
                                             "ssse_new_pin": DEFAULT_SSSE_PIN, "bank_pin": DEFAULT_BANK_PIN,
                                             "id_check": "auth"}
    assert parameters("entrusted-activation")["agent_id_number"] == ""  # no documents unless presented
    assert parameters("loss-unlock") == {}
    assert parameters("service-window-activation") == {"id_number": DEFAULT_ID_NUMBER, "old_pin": "123456",
                                                       "new_pin": DEFAULT_SSSE_PIN, "id_check": "auth"}
    assert parameters("hospital-activation") == {"pin": "123456", "amount": 0}
    assert parameters("pharmacy-activation") == {"pin": "123456", "amount": 1000, "self_pay": 0, "fund": 0}
    assert parameters("pin-reset")["method"] == "reset"
    for name in FLOWS:
        assert FLOWS[name].__doc__.strip()


def test_parse_params():
    assert parse_params("hospital-activation", ["amount=1500", "pin=654321"]) == {"amount": 1500, "pin": "654321"}
    assert parse_params("pharmacy-activation", ["self-pay=300", "amount=2550"]) == {"self_pay": 300, "amount": 2550}
    assert parse_params("entrusted-activation", ["agent-id-number=" + AGENT_ID]) == {"agent_id_number": AGENT_ID}
    for bad in (["amount"], ["colour=red"], ["amount=two"], ["pan=6234560000000008"]):
        with pytest.raises(ValueError):
            parse_params("hospital-activation", bad)
    with pytest.raises(ValueError, match="unknown flow"):
        parse_params("tea-ceremony", [])


@pytest.mark.parametrize("name, pairs, message", [
    ("hospital-activation", ["kind=2"], "flow hospital-activation has no parameter kind any more: "),
    ("hospital-activation", ["institution=H11010100001"], "has no parameter institution any more"),
    ("pharmacy-activation", ["items=3"], "has no parameter items any more"),
    ("pharmacy-activation", ["pharmacy=P11010100001"], "has no parameter pharmacy any more"),
    ("pin-reset", ["method=reload"], "flow pin-reset: method=reload is gone: RELOAD PIN is not in LD/T 32"),
])
def test_parameters_the_standard_has_not_are_one_line_value_errors(card, name, pairs, message):
    with pytest.raises(ValueError, match=message) as raised:
        parse_params(name, pairs)
    assert "\n" not in str(raised.value)
    key, _, value = pairs[0].partition("=")
    exchanges, on_exchange = recorder()
    with pytest.raises(ValueError, match=message):
        run_flow(name, card, on_exchange=on_exchange, **{key: value})
    assert exchanges == []


def test_bad_parameters_are_value_errors_before_any_apdu(card):
    before = snapshot(card.store)
    for name, params in [("bank-activation", {"ssse_new_pin": "12a4"}), ("bank-activation", {"bank_pin": "123"}),
                         ("bank-activation", {"ssse_new_pin": "123456"}), ("bank-activation", {"id_check": "face"}),
                         ("pin-reset", {"method": "guess"}), ("pin-reset", {"method": "unblock"}),
                         ("pin-reset", {"method": "reload"}), ("hospital-activation", {"kind": 4}),
                         ("hospital-activation", {"pin": "12"}), ("hospital-activation", {"amount": -1}),
                         ("hospital-activation", {"amount": 100_000_000}), ("pharmacy-activation", {"items": 3}),
                         ("pharmacy-activation", {"pin": "12ab"}), ("pharmacy-activation", {"fund": -5}),
                         ("service-window-activation", {"new_pin": "123456"}),
                         ("service-window-activation", {"id_check": "face"}), ("online-activation", {"bank_pin": ""}),
                         ("loss-report", {"colour": "red"}), ("no-such-flow", {})]:
        exchanges, on_exchange = recorder()
        with pytest.raises(ValueError):
            run_flow(name, card, on_exchange=on_exchange, **params)
        assert exchanges == []
    assert snapshot(card.store) == before


# -- bank outlet --------------------------------------------------------------------------------------
@pytest.mark.parametrize("id_check", ["auth", "pin"])
@pytest.mark.parametrize("profile", ["default", "default-3des"])
def test_bank_activation(profile, id_check):
    card = Card.from_profile(profile, date=CARD_DATE)
    result = run_flow("bank-activation", card, id_check=id_check, ssse_new_pin="864201", bank_pin="975310")
    assert isinstance(result, FlowResult) and result.name == "bank-activation"
    assert result.ok, result
    assert result.results("ID check") == ["match"]
    assert result.results("CHANGE PIN (initial SSSE PIN -> holder's PIN: activates the SSSE)") == ["9000"]
    assert result.results("issuer script PIN CHANGE") == ["9000"]
    assert result.results("issuer script PUT DATA") == ["9000"]
    assert result.results("GET DATA DF7F (activation flag)") == ["01"]
    # the card afterwards
    assert ssse(card)["lifecycle"] == "active"
    assert ssse_verify(card, "864201") == "9000"
    assert ssse_verify(card, "123456") == "63C5"
    assert activation_flag(card) == "01"
    assert fin_verify(card, "975310") == "9000"
    assert fin_verify(card, "000000") == "63C2"  # the issued bank PIN is gone
    assert card.applets["fin"].describe()["activation"] == "activated"


@pytest.mark.parametrize("id_check", ["auth", "pin"])
def test_bank_activation_id_check_bytes(card, id_check):
    """P7 §5 recognition, then §6: (VERIFY,) two GET CHALLENGEs, EXTERNAL AUTHENTICATE with RKSSSE (key
    0A, auth data from the oracle), READ RECORD EF06 item 08 by identifier (P2 = SFI 6 << 3 | 000)."""
    exchanges, on_exchange = recorder()
    assert run_flow("bank-activation", card, id_check=id_check, on_exchange=on_exchange).ok
    ex = hexes(exchanges)
    assert ex[:4] == [(SELECT_SSSE + "00", FCI_SM4 + "9000"), ("00A4020002EF05", "9000"),
                      ("00B2010012", "0110" + "110100D156000005" + "00000001" + "00000000" + "9000"),
                      (SELECT_SSSE + "00", FCI_SM4 + "9000")]
    rest = ex[4:]
    if id_check == "pin":
        assert rest.pop(0) == ("0020000003123456", "9000")
    (c1, r1), (c2, r2), (auth, auth_sw), read = rest[:4]
    assert c1 == c2 == "0084000008" and r1[-4:] == r2[-4:] == "9000"
    terminal = Terminal(card)
    expected = terminal.auth_command("ssse_rk", bytes.fromhex(r2[:-4]), original=bytes.fromhex(r1[:-4]))
    assert (auth, auth_sw) == (expected.hex().upper(), "9000")
    assert read == ("00B2083014", ID_RECORD + "9000")
    assert rest[4] == ("805E010007123456FF" + DEFAULT_SSSE_PIN, "9000")  # CHANGE PIN (P5, P7 §9)


def test_bank_activation_steps_in_order(card):
    result = run_flow("bank-activation", card)
    assert [description for description, _ in result.steps] == [
        "SELECT SSSE",
        "EXTERNAL AUTHENTICATE (PSAM, to read the holder's ID)",
        "READ RECORD EF06 item 08 (ID number)",
        "ID check",
        "CHANGE PIN (initial SSSE PIN -> holder's PIN: activates the SSSE)",
        "SELECT financial application (PSE, AID)",
        "READ RECORD financial application (PAN)",
        "issuer host: PIN CHANGE + PUT DATA DF7F 01 queued for 6234560000000008",
        "transaction of 0.00 yuan, online to the issuer host",
        "issuer script PIN CHANGE",
        "issuer script PUT DATA",
        "GET DATA DF7F (activation flag)",
    ]
    assert result.results("transaction of 0.00 yuan, online to the issuer host")[0].startswith("declined (AAC")
    assert result.message and result.final_line == "flow bank-activation: ok"


@pytest.mark.parametrize("id_check", ["auth", "pin"])
@pytest.mark.parametrize("presented", [OTHER_ID, "110101199003071234"], ids=["other-holder", "bad-check-digit"])
def test_bank_activation_id_mismatch_refused(card, id_check, presented):
    before = snapshot(card.store)
    result = run_flow("bank-activation", card, id_number=presented, id_check=id_check)
    assert not result.ok
    assert result.final_line.startswith("flow bank-activation: refused: the presented ID number")
    assert result.steps[-1][0] == "ID check"
    assert snapshot(card.store) == before  # nothing changed: still issued, full tries, bank not activated
    assert ssse(card)["lifecycle"] == "issued" and ssse(card)["PIN tries left"] == "6 of 6"
    assert activation_flag(card) == "00"


def test_bank_activation_id_ending_in_x_matches_in_either_case():
    x_id = next(f"11010119900307{seq}X" for seq in range(101, 1000, 2)
                if check_character(f"11010119900307{seq}") == "X")
    card = Card.from_profile(dataclasses.replace(load_profile("default"), id_number=x_id), date=CARD_DATE)
    result = run_flow("bank-activation", card, id_number=x_id.lower())
    assert result.ok and result.results("ID check") == ["match"]


def test_bank_activation_on_a_2_00_card():
    """EF06 is free on a 2.00 card (docs/card/README.md, Generations): the same authenticated read works there too."""
    card = Card.from_profile(dataclasses.replace(load_profile("default"), spec_version="2.00"), date=CARD_DATE)
    result = run_flow("bank-activation", card)
    assert result.ok and result.results("ID check") == ["match"]


def test_bank_activation_wrong_initial_pin_stops_before_the_bank(card):
    result = run_flow("bank-activation", card, ssse_old_pin="111111", id_check="pin")
    assert not result.ok and "63C5" in result.message
    assert ssse(card)["lifecycle"] == "issued" and ssse(card)["PIN tries left"] == "5 of 6"
    assert activation_flag(card) == "00"
    assert not any(step.startswith("issuer") for step, _ in result.steps)


def test_bank_activation_on_a_locked_card_is_refused(card):
    assert run_flow("loss-report", card).ok
    result = run_flow("bank-activation", card)
    assert not result.ok and result.steps == [("SELECT SSSE", "6283")]
    assert activation_flag(card) == "00"


# -- entrusted activation -------------------------------------------------------------------------------
@pytest.mark.parametrize("documents", [{}, {"agent_id_number": AGENT_ID}, {"power_of_attorney": "POA-1"},
                                       {"agent_id_number": "  ", "power_of_attorney": "POA-1"}],
                         ids=["none", "agent-id-only", "attorney-only", "blank-agent-id"])
def test_entrusted_without_documents_refused_and_card_unchanged(card, documents):
    before = snapshot(card.store)
    exchanges, on_exchange = recorder()
    result = run_flow("entrusted-activation", card, on_exchange=on_exchange, **documents)
    assert not result.ok
    assert result.message.startswith("entrusted activation needs")
    assert result.steps == [("documents (agent ID, power of attorney)", "missing")]
    assert exchanges == []  # not one APDU
    assert snapshot(card.store) == before
    assert ssse(card)["lifecycle"] == "issued" and activation_flag(card) == "00"


@pytest.mark.parametrize("agent, why", [("110102198001010030", "not valid"), (DEFAULT_ID_NUMBER, "the holder's")])
def test_entrusted_with_bad_agent_id_refused(card, agent, why):
    before = snapshot(card.store)
    exchanges, on_exchange = recorder()
    result = run_flow("entrusted-activation", card, on_exchange=on_exchange, agent_id_number=agent,
                      power_of_attorney="POA-1")
    assert not result.ok and why in result.message
    assert exchanges == [] and snapshot(card.store) == before


def test_entrusted_with_documents_activates_like_the_bank(card):
    result = run_flow("entrusted-activation", card, **DOCUMENTS)
    assert result.ok, result
    assert result.steps[0] == (f"documents: agent {AGENT_ID}, power of attorney POA-2026-0042", "checked")
    assert ssse(card)["lifecycle"] == "active"
    assert ssse_verify(card, DEFAULT_SSSE_PIN) == "9000"
    assert activation_flag(card) == "01" and fin_verify(card, DEFAULT_BANK_PIN) == "9000"


def test_entrusted_sends_the_chip_exactly_the_bank_commands():
    """The entrusted rule is the terminal's (reader/terminals/flows.py); the chip sees the same commands."""
    commands = {}
    for name, params in (("bank-activation", {}), ("entrusted-activation", DOCUMENTS)):
        card = Card.from_profile(date=CARD_DATE)
        card.random = lambda n: bytes(n)  # the same challenges, so the same cryptograms
        exchanges, on_exchange = recorder()
        assert run_flow(name, card, on_exchange=on_exchange, **params).ok
        commands[name] = [command for command, _ in exchanges]
    assert commands["bank-activation"] == commands["entrusted-activation"]


def test_entrusted_id_mismatch_refused(card):
    before = snapshot(card.store)
    result = run_flow("entrusted-activation", card, id_number=OTHER_ID, **DOCUMENTS)
    assert not result.ok and "not the card holder's" in result.message
    assert snapshot(card.store) == before


# -- hospital and pharmacy --------------------------------------------------------------------------------
SETTLEMENT = "hospital settlement (DF04 EF06 items 92/93: SELECT DF04, VERIFY, RK1DF04 read, UK2DF04 write)"


def test_hospital_activation(card):
    exchanges, on_exchange = recorder()
    result = run_flow("hospital-activation", card, amount=1500, on_exchange=on_exchange)
    assert result.ok, result
    assert result.results("INTERNAL AUTHENTICATE (is the card genuine?)") == ["genuine"]
    assert result.results(SETTLEMENT) == ["9000"]
    assert result.results("GET DATA DF7E (SSSE activation state)") == ["01"]
    assert result.message == "settlement of 15.00 yuan written in DF04 EF06; the SSSE is active"
    # the commands (P5; P7 §5.4, §7): internal authentication, DF04, PIN, RK1DF04 (84), reads, UK2DF04 (86), writes
    ex = hexes(exchanges)
    commands = [command for command, _ in ex]
    internal = commands.index(next(c for c in commands if c.startswith("0088000010")))
    assert len(commands[internal]) == 2 * (5 + 16) and ex[internal][1][-4:] == "9000"
    assert len(ex[internal][1]) == 2 * (8 + 2)  # 8 bytes of authentication data (P5 §6.7)
    medical = ex[internal + 1:]
    assert medical[0] == (SELECT_DF04, "6F088406D15600000503" + "9000")
    assert medical[1] == ("0020000003123456", "9000")
    assert [c[:10] for c, _ in medical[2:5]] == ["0084000008", "0084000008", "0082008410"]
    assert medical[5] == ("00B2923006", "92040FFFFFFF" + "9000")  # item 92: total cn 4 (left-aligned, F-padded): 0
    assert medical[6] == ("00B2933004", "93023030" + "9000")  # item 93: count an 2, "00"
    assert [c[:10] for c, _ in medical[7:10]] == ["0084000008", "0084000008", "0082008610"]
    assert medical[10] == ("00DC923006" + "92041500FFFF", "9000")
    assert medical[11] == ("00DC933004" + "93023031", "9000")
    assert medical[12] == ("80CADF7E00", "DF7E0101" + "9000")
    # the card afterwards
    assert df04_item(card, 0x92) == bytes.fromhex("92041500FFFF")
    assert df04_item(card, 0x93) == b"\x93\x02" + b"01"
    described = ssse(card)
    assert described["lifecycle"] == "active"
    assert described["PIN tries left"] == "6 of 6"
    assert ssse_verify(card, "123456") == "9000"  # the initial PIN still works: activation did not change it
    assert activation_flag(card) == "00"  # the bank application is separate


def test_hospital_settlements_add_up_and_a_write_without_the_key_is_refused(card):
    """docs/card/lifecycle.md §1: before activation a DF04 write without UK2DF04 is 6985; after, 6982 (P5)."""
    def unauthorised_write() -> str:
        reader = SimReader(card)
        reader.reset()
        tx(reader, SELECT_SSSE)
        assert tx(reader, SELECT_DF04)[-4:] == "9000"
        assert tx(reader, "0020000003123456") == "9000"
        return tx(reader, "00DC923006" + "920499999999")

    assert unauthorised_write() == "6985"
    assert run_flow("hospital-activation", card, amount=1500).ok
    assert unauthorised_write() == "6982"
    assert run_flow("hospital-activation", card, amount=250).ok
    assert df04_item(card, 0x92) == bytes.fromhex("92041750FFFF") and df04_item(card, 0x93) == b"\x93\x0202"


def test_hospital_activation_with_a_wrong_pin_is_refused(card):
    result = run_flow("hospital-activation", card, pin="111111")
    assert not result.ok and result.results(SETTLEMENT) == ["63C5"]
    assert "63C5" in result.message
    assert ssse(card)["lifecycle"] == "issued" and ssse(card)["PIN tries left"] == "5 of 6"
    assert df04_item(card, 0x93) == b"\x93\x0200"


@pytest.mark.parametrize("profile", ["default", "default-3des"])
def test_pharmacy_activation(profile):
    card = Card.from_profile(profile, date=CARD_DATE)
    exchanges, on_exchange = recorder()
    result = run_flow("pharmacy-activation", card, amount=2550, on_exchange=on_exchange)
    assert result.ok, result
    assert result.results("INITIALIZE FOR PURCHASE (personal account balance)") == ["500.00 yuan"]
    [debit] = result.results("DEBIT FOR PURCHASE of 25.50 yuan (terminal transaction number, TAC)")
    assert result.results("CREDIT SAM FOR PURCHASE (the PSAM checked MAC2)") == ["9000"]
    assert result.results("READ RECORD DF04 EF08 record 1 (newest transaction detail)") == [
        "seq 0000, type 32, 25.50 yuan at 20261121100000"]
    assert result.results("GET DATA DF7E (SSSE activation state)") == ["01"]
    # P7 §12 on the card: INITIALIZE FOR PURCHASE, DEBIT FOR PURCHASE; the PSAM's 80 70 / 80 72 are elsewhere
    ex = hexes(exchanges)
    commands = [command for command, _ in ex]
    init = commands.index("B028010113" + "01" + "000009F6" + "00000000" + "00000000" + TERMINAL_NO.hex().upper()
                          + "16")
    assert ex[init - 2:init] == [(SELECT_DF04, "6F088406D15600000503" + "9000"), ("0020000003123456", "9000")]
    answer = bytes.fromhex(ex[init][1][:-4])
    assert ex[init][1][-4:] == "9000" and len(answer) == 22
    assert answer[:16] == bytes.fromhex("0000C350" "00000000" "00000000" "0000" "0000")  # CIA, SPIP, SPFP, year, seq
    assert answer[16:18] == bytes((0x01, card.applets["ssse"].state.algorithm))  # key version, algorithm id
    debit_command, debit_answer = ex[init + 1]
    assert debit_command[:10] == "B02C01000F" and debit_command[-2:] == "08"
    tx_no, when = bytes.fromhex(debit_command[10:18]), bytes.fromhex(debit_command[18:32])
    assert tx_no == bytes.fromhex("00000001") and when == bytes.fromhex("20261121100000")
    # TAC (P7 §15) and MAC2 (P7 §12.6) recomputed by the independent oracle
    expected_command, expected_answer, _ = Terminal(card).debit(answer, 2550, time="20261121100000", tx_no=tx_no)
    assert debit_command == expected_command.hex().upper() and debit_answer == expected_answer.hex().upper() + "9000"
    assert debit == f"00000001, TAC {debit_answer[:8]}"
    # the detail query: EF08 (SFI 8) record 1 by number, Le 28: seq, type, terminal, time, three amounts
    assert ex[init + 2] == ("00B201441C", "0000" + f"{TYPE_PURCHASE:02X}" + TERMINAL_NO.hex().upper() + "20261121100000"
                            + "000009F6" + "00000000" + "00000000" + "9000")
    # the card afterwards
    purse = card.applets["ssse"].purse.describe()
    assert (purse["balance"], purse["purchase counter"]) == (50000 - 2550, 1)
    assert ssse(card)["lifecycle"] == "active"
    assert result.message == (f"purchase of 25.50 yuan settled offline (terminal transaction 00000001, "
                              f"TAC {debit_answer[:8]}); balance 500.00 yuan -> 474.50 yuan; the SSSE is active")


def test_pharmacy_activation_with_a_wrong_pin_is_refused(card):
    result = run_flow("pharmacy-activation", card, pin="111111")
    assert not result.ok
    assert result.results("medical purchase (SELECT DF04, VERIFY, B0 28, 80 70, B0 2C, 80 72)") == ["63C5"]
    assert card.applets["ssse"].purse.describe()["balance"] == 50000 and ssse(card)["lifecycle"] == "issued"


def test_pharmacy_activation_beyond_the_balance_is_9401(card):
    result = run_flow("pharmacy-activation", card, amount=50001)
    assert not result.ok and "9401" in result.message  # P5 table 72: insufficient balance
    assert card.applets["ssse"].purse.describe()["balance"] == 50000 and ssse(card)["lifecycle"] == "issued"


@pytest.mark.parametrize("name", ["hospital-activation", "pharmacy-activation"])
def test_medical_flows_refused_on_a_locked_card(card, name):
    assert run_flow("loss-report", card).ok
    before = snapshot(card.store)
    result = run_flow(name, card)
    assert not result.ok and "locked" in result.message
    assert snapshot(card.store) == before


def test_medical_flow_with_a_value_that_does_not_fit_is_a_value_error(card):
    for name, params in (("hospital-activation", {"amount": 100_000_000}), ("pharmacy-activation", {"pin": "1"})):
        with pytest.raises(ValueError):
            run_flow(name, card, **params)
    assert ssse(card)["lifecycle"] == "issued"


# -- online activation ---------------------------------------------------------------------------------------
def test_online_activation(card):
    result = run_flow("online-activation", card, bank_pin="424242")
    assert result.ok, result
    assert result.results("city-services app: activation requested, scripts queued for 6234560000000008") \
        == ["queued"]
    purchase = result.results("transaction of 1.00 yuan, online to the issuer host")
    assert len(purchase) == 1 and purchase[0].startswith("declined (AAC")  # not yet activated
    assert result.results("issuer script PIN CHANGE") == ["9000"]
    assert result.results("issuer script PUT DATA") == ["9000"]
    assert result.results("GET DATA DF7F (activation flag)") == ["01"]
    assert activation_flag(card) == "01" and fin_verify(card, "424242") == "9000"
    assert ssse(card)["lifecycle"] == "issued"  # the SSSE is activated separately


def test_online_activation_then_purchases_are_approved(card):
    assert run_flow("online-activation", card).ok
    assert run_flow("online-activation", card).ok  # a second request: the purchase is approved this time
    outcome = PaymentTerminal(SimReader(card), date=card.today).purchase(500, host=IssuerHost())
    assert outcome.approved


def test_online_activation_for_another_account_delivers_nothing(card):
    result = online_activation(SimReader(card), IssuerHost(), pan="6234560000000016", date=CARD_DATE)
    assert not result.ok and "no issuer scripts" in result.message
    assert activation_flag(card) == "00"
    with pytest.raises(ValueError, match="PAN"):
        online_activation(SimReader(card), IssuerHost())


# -- loss report and unlock --------------------------------------------------------------------------------------
def check_bk_mac_command(card, ex, header: str) -> None:
    """docs/decisions.md S5, docs/card/lifecycle.md §3: EXTERNAL AUTHENTICATE with BK (key 05),
    GET CHALLENGE (4 bytes), then `header`
    with the MAC4 of P4 §8.2 under the STK process key of that challenge (both recomputed by the oracle)."""
    (c1, r1), (c2, r2), (auth, auth_sw), (challenge, random), (command, sw) = ex
    terminal = Terminal(card)
    assert (c1, c2) == ("0084000008", "0084000008")
    expected = terminal.auth_command("ssse_bk", bytes.fromhex(r2[:-4]), original=bytes.fromhex(r1[:-4]))
    assert (auth, auth_sw) == (expected.hex().upper(), "9000")
    assert challenge == "0084000004" and len(random) == 2 * (4 + 2)
    mac = terminal.mac("ssse_stk", bytes.fromhex(random[:-4]), bytes.fromhex(header), b"")
    assert command == header + mac.hex().upper()
    assert sw in ("9000", "6985")


def test_loss_report_and_unlock(card):
    assert run_flow("bank-activation", card).ok
    exchanges, on_exchange = recorder()
    result = run_flow("loss-report", card, on_exchange=on_exchange)
    assert result.ok, result
    assert result.results("APPLICATION BLOCK (loss lock, temporary)") == ["9000"]
    assert result.results("SELECT SSSE (locked: 6283)") == ["6283"]
    ex = hexes(exchanges)
    block = next(i for i, (command, _) in enumerate(ex) if command.startswith("841E"))
    check_bk_mac_command(card, ex[block - 4:block + 1], "841E000004")  # P2 00: the loss lock (docs/card/lifecycle.md §3)
    assert ex[block][1] == "9000"
    assert ex[block + 1] == (SELECT_SSSE + "00", FCI_SM4 + "6283")  # the FCI, then 6283 (docs/card/lifecycle.md §3)
    assert ssse(card)["lock"] == "locked (reported)"
    assert ssse_select(card) == "6283"
    reader = SimReader(card)
    reader.reset()
    tx(reader, SELECT_SSSE)
    assert tx(reader, "0020000003" + DEFAULT_SSSE_PIN) == "6985"  # every other SSSE command refused
    assert activation_flag(card) == "01"  # the financial application is not affected

    again = run_flow("loss-report", card)
    assert not again.ok and again.message == "the SSSE application is already locked"

    exchanges, on_exchange = recorder()
    result = run_flow("loss-unlock", card, on_exchange=on_exchange)
    assert result.ok, result
    assert result.results("APPLICATION UNBLOCK") == ["9000"]
    ex = hexes(exchanges)
    assert ex[0] == (SELECT_SSSE + "00", FCI_SM4 + "6283")  # locked: no EF05 read, the issuer's records give item 01
    check_bk_mac_command(card, ex[1:6], "8418000004")
    assert ex[5][1] == "9000" and ex[6] == (SELECT_SSSE + "00", FCI_SM4 + "9000")
    assert ssse(card)["lock"] == "none" and ssse_select(card) == "9000"
    assert ssse_verify(card, DEFAULT_SSSE_PIN) == "9000"
    assert ssse(card)["lifecycle"] == "active"


def test_loss_report_id_mismatch_refused(card):
    before = snapshot(card.store)
    result = run_flow("loss-report", card, id_number=OTHER_ID)
    assert not result.ok and snapshot(card.store) == before and ssse_select(card) == "9000"


def test_loss_unlock_on_an_unlocked_card_refused(card):
    before = snapshot(card.store)
    exchanges, on_exchange = recorder()
    result = run_flow("loss-unlock", card, on_exchange=on_exchange)
    assert not result.ok and result.message == "the SSSE application is not locked"
    assert snapshot(card.store) == before
    # card recognition only: SELECT, SELECT EF05, READ RECORD item 01 (free), SELECT again (P7 §5)
    assert [command[:2] for command, _ in exchanges] == [b"\x00\xA4", b"\x00\xA4", b"\x00\xB2", b"\x00\xA4"]


# -- activation deadline -------------------------------------------------------------------------------------------
def test_deadline_unlock():
    card = deadline_card()
    result = run_flow("deadline-unlock", card, bank_pin="202020")
    assert result.ok, result
    assert result.steps[0] == ("SELECT SSSE", "6283")
    assert result.results("APPLICATION UNBLOCK before the financial activation") == ["6985"]
    assert result.results("GET DATA DF7F (activation flag)") == ["00", "01"]
    assert result.results("APPLICATION UNBLOCK (HR terminal)") == ["9000"]
    descriptions = [d for d, _ in result.steps]
    assert descriptions.index("issuer script PUT DATA") < descriptions.index("APPLICATION UNBLOCK (HR terminal)")
    # the card afterwards, still 301 days on: unlocked, and no new lock at the next power-ups
    assert ssse(card)["lock"] == "none"
    assert ssse_select(card) == "9000" and ssse_select(card) == "9000"
    assert activation_flag(card) == "01" and fin_verify(card, "202020") == "9000"
    assert ssse(card)["lifecycle"] == "issued"  # unlocking does not activate the SSSE


def test_loss_unlock_cannot_lift_a_deadline_lock():
    card = deadline_card()
    before = snapshot(card.store)
    exchanges, on_exchange = recorder()
    result = run_flow("loss-unlock", card, on_exchange=on_exchange)
    assert not result.ok
    assert result.results("APPLICATION UNBLOCK") == ["6985"]
    check_bk_mac_command(card, hexes(exchanges)[1:6], "8418000004")  # a right MAC: refused for the deadline
    assert snapshot(card.store) == before and ssse_select(card) == "6283"


def test_deadline_unlock_with_the_bank_already_activated():
    card = deadline_card()
    assert run_flow("online-activation", card).ok  # the financial side works while the SSSE is locked
    assert ssse_select(card) == "6283"  # the lock stays until an HR terminal lifts it
    result = run_flow("deadline-unlock", card)
    assert result.ok, result
    assert result.results("APPLICATION UNBLOCK before the financial activation") == []
    assert result.results("APPLICATION UNBLOCK (HR terminal)") == ["9000"]
    assert ssse_select(card) == "9000"


def test_deadline_unlock_on_an_unlocked_card_refused(card):
    before = snapshot(card.store)
    result = run_flow("deadline-unlock", card)
    assert not result.ok and result.message == "the SSSE application is not locked"
    assert snapshot(card.store) == before


# -- PIN reset at a service window ---------------------------------------------------------------------------------
def check_puk_authentication(card, ex) -> None:
    """P7 §13.3: two GET CHALLENGEs and EXTERNAL AUTHENTICATE with PUK (key 06), recomputed by the oracle."""
    (c1, r1), (c2, r2), (auth, auth_sw) = ex
    assert (c1, c2) == ("0084000008", "0084000008")
    expected = Terminal(card).auth_command("ssse_puk", bytes.fromhex(r2[:-4]), original=bytes.fromhex(r1[:-4]))
    assert (auth, auth_sw) == (expected.hex().upper(), "9000")


@pytest.mark.parametrize("profile, lc", [("default", 0x14), ("default-3des", 0x0C)])
def test_pin_reset_by_reset(profile, lc):
    card = Card.from_profile(profile, date=CARD_DATE)
    assert run_flow("bank-activation", card).ok
    block_ssse_pin(card)
    exchanges, on_exchange = recorder()
    result = run_flow("pin-reset", card, new_pin="5555", on_exchange=on_exchange)
    assert result.ok, result
    assert result.results("ID check") == ["match"]
    assert result.results("VERIFY without data (PIN state)") == ["6983"]  # S11: blocked
    assert result.results("PIN RESET 84 24 00 01 (PUK, new PIN enciphered, PSAM MAC)") == ["9000"]
    assert result.results("VERIFY new PIN") == ["9000"]
    # docs/decisions.md S2/S3: 84 24 00 01 Lc || E(LD || PIN cn, padded) || MAC4, one STK process key from the challenge
    ex = hexes(exchanges)
    reset = next(i for i, (command, _) in enumerate(ex) if command.startswith("84240001"))
    check_puk_authentication(card, ex[reset - 4:reset - 1])
    challenge, random = ex[reset - 1]
    assert challenge == "0084000004" and random[-4:] == "9000"
    terminal = Terminal(card)
    ks = terminal.process_key("ssse_stk", bytes.fromhex(random[:-4]))
    enciphered = oracle.encipher(terminal.family, ks, cn("5555"))
    header = bytes((0x84, 0x24, 0x00, 0x01, lc))
    assert len(enciphered) + 4 == lc
    assert ex[reset] == ((header + enciphered + oracle.mac4(terminal.family, ks, header + enciphered)).hex().upper(),
                         "9000")
    assert ssse(card)["PIN tries left"] == "6 of 6"
    assert ssse_verify(card, "5555") == "9000"
    assert ssse_verify(card, DEFAULT_SSSE_PIN) == "63C5"
    assert ssse(card)["lifecycle"] == "active"


def test_pin_reset_by_unblock(card):
    block_ssse_pin(card)
    exchanges, on_exchange = recorder()
    result = run_flow("pin-reset", card, method="unblock", old_pin="123456", new_pin="778899",
                      on_exchange=on_exchange)
    assert result.ok, result
    assert result.results("PIN UNBLOCK 84 24 00 00 (PUK, PSAM MAC)") == ["9000"]
    ex = hexes(exchanges)
    unblock = next(i for i, (command, _) in enumerate(ex) if command.startswith("84240000"))
    check_puk_authentication(card, ex[unblock - 4:unblock - 1])
    _challenge, random = ex[unblock - 1]
    mac = Terminal(card).mac("ssse_stk", bytes.fromhex(random[:-4]), bytes.fromhex("8424000004"), b"")
    assert ex[unblock] == ("8424000004" + mac.hex().upper(), "9000")  # docs/decisions.md S4
    assert ex[unblock + 1] == ("805E010007123456FF778899", "9000")
    assert result.results("CHANGE PIN (remembered PIN -> new PIN)") == ["9000"]
    assert ssse_verify(card, "778899") == "9000"
    assert ssse(card)["PIN tries left"] == "6 of 6"
    assert ssse(card)["lifecycle"] == "active"  # the CHANGE PIN away from the initial PIN activated it


def test_pin_reset_by_unblock_keeping_the_pin(card):
    block_ssse_pin(card)
    result = run_flow("pin-reset", card, method="unblock", old_pin="123456", new_pin="123456")
    assert result.ok and result.results("CHANGE PIN (remembered PIN -> new PIN)") == []
    assert ssse_verify(card, "123456") == "9000" and ssse(card)["lifecycle"] == "issued"


def test_pin_reset_id_mismatch_refused(card):
    block_ssse_pin(card)
    before = snapshot(card.store)
    result = run_flow("pin-reset", card, id_number=OTHER_ID)
    assert not result.ok and snapshot(card.store) == before
    assert ssse_verify(card, DEFAULT_SSSE_PIN) == "6983"


def test_pin_reset_without_the_issuer_keys_refused():
    """A card of another issuer's keys: the window's PSAM fails external authentication, nothing is reset."""
    profile = load_profile("default")
    other = {**profile.keys, "ssse_rk": bytes(range(16)), "ssse_stk": bytes(range(16)), "ssse_puk": bytes(range(16))}
    card = Card.from_profile(dataclasses.replace(profile, keys=other), date=CARD_DATE)
    block_ssse_pin(card)
    result = run_flow("pin-reset", card)
    assert not result.ok and result.results("EXTERNAL AUTHENTICATE (PSAM, to read the holder's ID)") == ["63C2"]
    assert ssse_verify(card, "123456") == "6983"


# -- the sscard flow command -----------------------------------------------------------------------------------------
@pytest.fixture
def image(tmp_path, capsys):
    path = tmp_path / "card.img"
    assert cli(capsys, "--date", CARD_DATE, "personalize", "--state", path)[0] == 0
    return path


# -- service window activation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("id_check", ["auth", "pin"])
def test_service_window_activation(card, id_check):
    exchanges, on_exchange = recorder()
    result = run_flow("service-window-activation", card, new_pin="8642", id_check=id_check, on_exchange=on_exchange)
    assert result.ok, result
    assert [d for d, _ in result.steps] == (
        ["SELECT SSSE"] + (["VERIFY SSSE PIN (the holder types it)"] if id_check == "pin" else [])
        + ["EXTERNAL AUTHENTICATE (PSAM, to read the holder's ID)", "READ RECORD EF06 item 08 (ID number)",
           "ID check", "CHANGE PIN (initial SSSE PIN -> holder's PIN: activates the SSSE)",
           "GET DATA DF7E (SSSE activation state)"])
    assert result.results("GET DATA DF7E (SSSE activation state)") == ["01"]
    ex = hexes(exchanges)
    assert ex[-2:] == [("805E010006123456FF8642", "9000"), ("80CADF7E00", "DF7E0101" + "9000")]
    assert ssse(card)["lifecycle"] == "active"
    assert ssse_verify(card, "8642") == "9000" and ssse_verify(card, "123456") == "63C5"
    assert activation_flag(card) == "00"  # the bank is not involved


def test_service_window_activation_refusals(card):
    before = snapshot(card.store)
    result = run_flow("service-window-activation", card, id_number=OTHER_ID)
    assert not result.ok and result.steps[-1] == ("ID check", "mismatch") and snapshot(card.store) == before
    result = run_flow("service-window-activation", card, old_pin="654321", id_check="pin")
    assert not result.ok and result.results("VERIFY SSSE PIN (the holder types it)") == ["63C5"]
    assert ssse(card)["lifecycle"] == "issued"
    assert run_flow("loss-report", card).ok
    result = run_flow("service-window-activation", card)
    assert not result.ok and result.steps == [("SELECT SSSE", "6283")]


def test_cli_list(capsys):
    code, out, err = cli(capsys, "flow", "--list")
    assert code == 0 and err == ""
    for name in FLOWS:
        assert any(line.startswith(name + " ") for line in out.splitlines())
    assert "id_number=110101199003071233" in out and "agent_id_number=(none)" in out


def test_cli_bank_activation(capsys, image):
    code, out, err = cli(capsys, "--date", CARD_DATE, "flow", "bank-activation", "--state", image,
                         "--param", "ssse_new_pin=314159", "--param", "bank-pin=271828")
    lines = out.splitlines()
    assert code == 0 and err == ""
    assert lines[-1] == "flow bank-activation: ok"
    assert lines[0] == "> 00 A4 04 00 0F " + bytes.fromhex(DDF_NAME).hex(" ").upper() + " 00"
    assert "> 80 5E 01 00 07 12 34 56 FF 31 41 59" in lines  # CHANGE PIN as sent
    assert "< 9000  OK" in lines
    assert "- ID check: match" in lines and "- GET DATA DF7F (activation flag): 01" in lines
    card = Card.open(image, date=CARD_DATE)
    assert ssse(card)["lifecycle"] == "active" and activation_flag(card) == "01"
    assert ssse_verify(card, "314159") == "9000" and fin_verify(card, "271828") == "9000"


def test_cli_entrusted_without_documents_exits_1_and_leaves_the_image(capsys, image):
    before = image.read_bytes()
    code, out, err = cli(capsys, "--date", CARD_DATE, "flow", "entrusted-activation", "--state", image)
    assert code == 1 and err == ""
    assert out.splitlines()[-1] == ("flow entrusted-activation: refused: entrusted activation needs the agent's "
                                    "ID number and a power-of-attorney reference")
    assert not any(line.startswith("> ") for line in out.splitlines())
    assert image.read_bytes() == before
    code, out, _ = cli(capsys, "--date", CARD_DATE, "flow", "entrusted-activation", "--state", image,
                       "--param", f"agent_id_number={AGENT_ID}", "--param", "power_of_attorney=POA-7")
    assert code == 0 and out.splitlines()[-1] == "flow entrusted-activation: ok"


def test_cli_id_mismatch_exits_1(capsys, image):
    code, out, _ = cli(capsys, "--date", CARD_DATE, "flow", "bank-activation", "--state", image,
                       "--param", f"id_number={OTHER_ID}")
    assert code == 1
    assert out.splitlines()[-1].startswith("flow bank-activation: refused: the presented ID number")


def test_cli_deadline_unlock(capsys, image):
    code, out, _ = cli(capsys, "--date", DEADLINE_DAY, "flow", "loss-unlock", "--state", image)
    assert code == 1 and out.splitlines()[-1].startswith("flow loss-unlock: refused: APPLICATION UNBLOCK answered 6985")
    code, out, _ = cli(capsys, "--date", DEADLINE_DAY, "flow", "deadline-unlock", "--state", image)
    assert code == 0 and out.splitlines()[-1] == "flow deadline-unlock: ok"
    assert "- APPLICATION UNBLOCK before the financial activation: 6985" in out
    card = Card.open(image, date=DEADLINE_DAY)
    assert ssse_select(card) == "9000" and activation_flag(card) == "01"


@pytest.mark.parametrize("name", ["service-window-activation", "hospital-activation", "pharmacy-activation",
                                  "online-activation"])
def test_cli_other_flows(capsys, image, name):
    code, out, _ = cli(capsys, "--date", CARD_DATE, "flow", name, "--state", image)
    assert code == 0 and out.splitlines()[-1] == f"flow {name}: ok"


def test_cli_loss_report_unlock_and_pin_reset(capsys, image):
    def flow(*argv):
        return cli(capsys, "--date", CARD_DATE, "flow", *argv, "--state", image)

    assert flow("loss-report")[0] == 0
    assert ssse_select(Card.open(image, date=CARD_DATE)) == "6283"
    code, out, _ = flow("loss-report")
    assert code == 1 and out.splitlines()[-1] == "flow loss-report: refused: the SSSE application is already locked"
    assert flow("loss-unlock")[0] == 0
    block_ssse_pin(Card.open(image, date=CARD_DATE))
    code, out, _ = flow("pin-reset", "--param", "new_pin=9876")
    assert code == 0 and out.splitlines()[-1] == "flow pin-reset: ok"
    assert ssse_verify(Card.open(image, date=CARD_DATE), "9876") == "9000"


@pytest.mark.parametrize("argv, message", [
    (["flow"], "give a flow NAME and --state"),
    (["flow", "bank-activation"], "give a flow NAME and --state"),
    (["flow", "tea-ceremony", "--state", "x.img"], "unknown flow"),
    (["flow", "bank-activation", "--state", "x.img", "--param", "colour=red"], "KEY one of id_number"),
    (["flow", "hospital-activation", "--state", "x.img", "--param", "amount=two"], "whole number"),
    (["flow", "hospital-activation", "--state", "x.img", "--param", "kind=2"], "no parameter kind any more"),
    (["flow", "pin-reset", "--state", "x.img", "--param", "method=reload"], "method=reload is gone"),
    (["flow", "bank-activation", "--state", "IMAGE", "--param", "bank_pin=12"], "bank_pin must be 4 to 12 digits"),
    (["flow", "bank-activation", "--state", "missing.img"], "missing.img"),
])
def test_cli_usage_errors_are_one_line(capsys, image, argv, message):
    argv = [str(image) if a == "IMAGE" else a for a in argv]
    before = image.read_bytes()
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("sscard: error: ") and message in err
    assert image.read_bytes() == before
