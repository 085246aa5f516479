"""Real-world terminal flows (`reader/flows.py`, `sscard flow`) on a fresh default card (SPEC §2.4, §3).

Every flow runs through APDUs (SSSE terminal, PSAM, payment kernel, issuer
host). The tests check the card afterwards through APDUs (SELECT, VERIFY,
GET DATA DF7F) and `describe()`; "unchanged" means every persistent object
of the card dumps the same before and after.
"""

import dataclasses
import datetime

import pytest
from conftest import CARD_DATE, tx

from chip import Card
from chip.financial import pin_block
from chip.idnumber import check_character
from chip.profile import load_profile
from reader import SimReader
from reader.cli import main
from reader.issuer import IssuerHost
from reader.payment_terminal import PaymentTerminal
from reader.flows import (
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

DDF_NAME = "7378312E73682EC9E7BBE1B1A3D5CF"
SELECT_SSSE = "00A404000F" + DDF_NAME
SELECT_FIN = "00A4040008A00000033301010100"
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


def snapshot(card) -> dict:
    """Every persistent object of the card, as the image stores it."""
    return {name: obj.dump() for name, obj in card.store.objects.items()}


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


# -- registry and parameters -----------------------------------------------------------------------
def test_registry_names_and_defaults():
    assert list(FLOWS) == ["bank-activation", "entrusted-activation", "hospital-activation", "pharmacy-activation",
                           "online-activation", "loss-report", "loss-unlock", "deadline-unlock", "pin-reset"]
    assert DEFAULT_ID_NUMBER == load_profile("default").id_number
    assert parameters("bank-activation") == {"id_number": DEFAULT_ID_NUMBER, "ssse_old_pin": "123456",
                                             "ssse_new_pin": DEFAULT_SSSE_PIN, "bank_pin": DEFAULT_BANK_PIN,
                                             "id_check": "auth"}
    assert parameters("entrusted-activation")["agent_id_number"] == ""  # no documents unless presented
    assert parameters("loss-unlock") == {}
    for name in FLOWS:
        assert FLOWS[name].__doc__.strip()


def test_parse_params():
    assert parse_params("hospital-activation", ["kind=2", "amount=1500", "institution=H11010100009"]) == {
        "kind": 2, "amount": 1500, "institution": "H11010100009"}
    assert parse_params("entrusted-activation", ["agent-id-number=" + AGENT_ID]) == {"agent_id_number": AGENT_ID}
    for bad in (["kind"], ["colour=red"], ["kind=two"], ["pan=6234560000000008"]):
        with pytest.raises(ValueError):
            parse_params("hospital-activation", bad)
    with pytest.raises(ValueError, match="unknown flow"):
        parse_params("tea-ceremony", [])


def test_bad_parameters_are_value_errors_before_any_apdu(card):
    before = snapshot(card)
    for name, params in [("bank-activation", {"ssse_new_pin": "12a4"}), ("bank-activation", {"bank_pin": "123"}),
                         ("bank-activation", {"ssse_new_pin": "123456"}), ("bank-activation", {"id_check": "face"}),
                         ("pin-reset", {"method": "guess"}), ("pin-reset", {"method": "unblock"}),
                         ("hospital-activation", {"kind": 4}), ("online-activation", {"bank_pin": ""}),
                         ("loss-report", {"colour": "red"}), ("no-such-flow", {})]:
        exchanges, on_exchange = recorder()
        with pytest.raises(ValueError):
            run_flow(name, card, on_exchange=on_exchange, **params)
        assert exchanges == []
    assert snapshot(card) == before


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
    before = snapshot(card)
    result = run_flow("bank-activation", card, id_number=presented, id_check=id_check)
    assert not result.ok
    assert result.final_line.startswith("flow bank-activation: refused: the presented ID number")
    assert result.steps[-1][0] == "ID check"
    assert snapshot(card) == before  # nothing changed: still issued, full tries, bank not activated
    assert ssse(card)["lifecycle"] == "issued" and ssse(card)["PIN tries left"] == "6 of 6"
    assert activation_flag(card) == "00"


def test_bank_activation_id_ending_in_x_matches_in_either_case():
    x_id = next(f"11010119900307{seq}X" for seq in range(101, 1000, 2)
                if check_character(f"11010119900307{seq}") == "X")
    card = Card.from_profile(dataclasses.replace(load_profile("default"), id_number=x_id), date=CARD_DATE)
    result = run_flow("bank-activation", card, id_number=x_id.lower())
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
    before = snapshot(card)
    exchanges, on_exchange = recorder()
    result = run_flow("entrusted-activation", card, on_exchange=on_exchange, **documents)
    assert not result.ok
    assert result.message.startswith("entrusted activation needs")
    assert result.steps == [("documents (agent ID, power of attorney)", "missing")]
    assert exchanges == []  # not one APDU
    assert snapshot(card) == before
    assert ssse(card)["lifecycle"] == "issued" and activation_flag(card) == "00"


@pytest.mark.parametrize("agent, why", [("110102198001010030", "not valid"), (DEFAULT_ID_NUMBER, "the holder's")])
def test_entrusted_with_bad_agent_id_refused(card, agent, why):
    before = snapshot(card)
    exchanges, on_exchange = recorder()
    result = run_flow("entrusted-activation", card, on_exchange=on_exchange, agent_id_number=agent,
                      power_of_attorney="POA-1")
    assert not result.ok and why in result.message
    assert exchanges == [] and snapshot(card) == before


def test_entrusted_with_documents_activates_like_the_bank(card):
    result = run_flow("entrusted-activation", card, **DOCUMENTS)
    assert result.ok, result
    assert result.steps[0] == (f"documents: agent {AGENT_ID}, power of attorney POA-2026-0042", "checked")
    assert ssse(card)["lifecycle"] == "active"
    assert ssse_verify(card, DEFAULT_SSSE_PIN) == "9000"
    assert activation_flag(card) == "01" and fin_verify(card, DEFAULT_BANK_PIN) == "9000"


def test_entrusted_sends_the_chip_exactly_the_bank_commands():
    """SPEC §2.4: the entrusted rule is the terminal's; the chip sees the same commands."""
    commands = {}
    for name, params in (("bank-activation", {}), ("entrusted-activation", DOCUMENTS)):
        card = Card.from_profile(date=CARD_DATE)
        card.random = lambda n: bytes(n)  # the same challenges, so the same cryptograms
        exchanges, on_exchange = recorder()
        assert run_flow(name, card, on_exchange=on_exchange, **params).ok
        commands[name] = [command for command, _ in exchanges]
    assert commands["bank-activation"] == commands["entrusted-activation"]


def test_entrusted_id_mismatch_refused(card):
    before = snapshot(card)
    result = run_flow("entrusted-activation", card, id_number=OTHER_ID, **DOCUMENTS)
    assert not result.ok and "not the card holder's" in result.message
    assert snapshot(card) == before


# -- hospital and pharmacy --------------------------------------------------------------------------------
def test_hospital_activation(card):
    result = run_flow("hospital-activation", card)
    assert result.ok, result
    assert result.results("INTERNAL AUTHENTICATE (is the card genuine?)") == ["genuine"]
    assert result.results("hospital visit record (DF04 EF15) (SELECT DF04, EXTERNAL AUTHENTICATE, APPEND RECORD)") \
        == ["9000"]
    described = ssse(card)
    assert described["lifecycle"] == "active" and described["medical visits"] == 1
    assert described["PIN tries left"] == "6 of 6"  # no PIN involved
    assert ssse_verify(card, "123456") == "9000"  # the initial PIN still works: activation did not change it
    assert activation_flag(card) == "00"  # the bank application is separate
    # active now: a medical write without external authentication is 6982 (it was 6985 before activation)
    reader = SimReader(card)
    reader.reset()
    tx(reader, SELECT_SSSE)
    assert tx(reader, "00A4010C02DF04") == "9000"
    record = "5115" + b"H11010100001".hex() + "01" + "20261121" + "00000000"
    assert tx(reader, "00E200A817" + record) == "6982"


def test_hospital_record_content(card):
    assert run_flow("hospital-activation", card, kind=2, amount=1234, institution="H11010100777").ok
    record = card.store["ssse.visits"].records[0]
    assert record == bytes.fromhex("5115" + b"H11010100777".hex() + "02" + "20261121" + "000004D2")


def test_pharmacy_activation(card):
    result = run_flow("pharmacy-activation", card, items=3, amount=2550)
    assert result.ok, result
    described = ssse(card)
    assert described["lifecycle"] == "active" and described["pharmacy purchases"] == 1
    assert card.store["ssse.purchases"].records[0] == bytes.fromhex(
        "5215" + b"P11010100001".hex() + "03" + "20261121" + "000009F6")


@pytest.mark.parametrize("name", ["hospital-activation", "pharmacy-activation"])
def test_medical_flows_refused_on_a_locked_card(card, name):
    assert run_flow("loss-report", card).ok
    before = snapshot(card)
    result = run_flow(name, card)
    assert not result.ok and "locked" in result.message
    assert snapshot(card) == before


def test_medical_flow_with_a_value_that_does_not_fit_is_a_value_error(card):
    with pytest.raises(ValueError):
        run_flow("hospital-activation", card, institution="H1101010000123456")
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
def test_loss_report_and_unlock(card):
    assert run_flow("bank-activation", card).ok
    result = run_flow("loss-report", card)
    assert result.ok, result
    assert result.results("APPLICATION BLOCK (loss lock, temporary)") == ["9000"]
    assert result.results("SELECT SSSE (locked: 6283)") == ["6283"]
    assert ssse(card)["lock"] == "locked (holder)"
    assert ssse_select(card) == "6283"
    reader = SimReader(card)
    reader.reset()
    tx(reader, SELECT_SSSE)
    assert tx(reader, "0020000003" + DEFAULT_SSSE_PIN) == "6985"  # every other SSSE command refused
    assert activation_flag(card) == "01"  # the financial application is not affected

    again = run_flow("loss-report", card)
    assert not again.ok and again.message == "the SSSE application is already locked"

    result = run_flow("loss-unlock", card)
    assert result.ok, result
    assert result.results("APPLICATION UNBLOCK") == ["9000"]
    assert ssse(card)["lock"] == "none" and ssse_select(card) == "9000"
    assert ssse_verify(card, DEFAULT_SSSE_PIN) == "9000"
    assert ssse(card)["lifecycle"] == "active"


def test_loss_report_id_mismatch_refused(card):
    before = snapshot(card)
    result = run_flow("loss-report", card, id_number=OTHER_ID)
    assert not result.ok and snapshot(card) == before and ssse_select(card) == "9000"


def test_loss_unlock_on_an_unlocked_card_refused(card):
    before = snapshot(card)
    exchanges, on_exchange = recorder()
    result = run_flow("loss-unlock", card, on_exchange=on_exchange)
    assert not result.ok and result.message == "the SSSE application is not locked"
    assert snapshot(card) == before
    assert [command[1] for command, _ in exchanges] == [0xA4, 0xB2]  # SELECT and the free EF05 01 only


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
    before = snapshot(card)
    result = run_flow("loss-unlock", card)
    assert not result.ok
    assert result.results("APPLICATION UNBLOCK") == ["6985"]
    assert snapshot(card) == before and ssse_select(card) == "6283"


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
    before = snapshot(card)
    result = run_flow("deadline-unlock", card)
    assert not result.ok and result.message == "the SSSE application is not locked"
    assert snapshot(card) == before


# -- PIN reset at a service window ---------------------------------------------------------------------------------
def test_pin_reset_by_reload(card):
    assert run_flow("bank-activation", card).ok
    block_ssse_pin(card)
    result = run_flow("pin-reset", card, new_pin="5555")
    assert result.ok, result
    assert result.results("ID check") == ["match"]
    assert result.results("VERIFY without data (PIN state)") == ["6983"]
    assert result.results("RELOAD PIN (new PIN, PSAM MAC)") == ["9000"]
    assert result.results("VERIFY new PIN") == ["9000"]
    assert ssse(card)["PIN tries left"] == "6 of 6"
    assert ssse_verify(card, "5555") == "9000"
    assert ssse_verify(card, DEFAULT_SSSE_PIN) == "63C5"
    assert ssse(card)["lifecycle"] == "active"


def test_pin_reset_by_unblock(card):
    block_ssse_pin(card)
    result = run_flow("pin-reset", card, method="unblock", old_pin="123456", new_pin="778899")
    assert result.ok, result
    assert result.results("PIN UNBLOCK (try counter, PSAM MAC)") == ["9000"]
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
    before = snapshot(card)
    result = run_flow("pin-reset", card, id_number=OTHER_ID)
    assert not result.ok and snapshot(card) == before
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
def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def image(tmp_path, capsys):
    path = tmp_path / "card.img"
    assert run(capsys, "--date", CARD_DATE, "personalize", "--state", path)[0] == 0
    return path


def test_cli_list(capsys):
    code, out, err = run(capsys, "flow", "--list")
    assert code == 0 and err == ""
    for name in FLOWS:
        assert any(line.startswith(name + " ") for line in out.splitlines())
    assert "id_number=110101199003071233" in out and "agent_id_number=(none)" in out


def test_cli_bank_activation(capsys, image):
    code, out, err = run(capsys, "--date", CARD_DATE, "flow", "bank-activation", "--state", image,
                         "--param", "ssse_new_pin=314159", "--param", "bank-pin=271828")
    lines = out.splitlines()
    assert code == 0 and err == ""
    assert lines[-1] == "flow bank-activation: ok"
    assert lines[0] == "> 00 A4 04 00 0F " + bytes.fromhex(DDF_NAME).hex(" ").upper()
    assert "> 80 5E 01 00 07 12 34 56 FF 31 41 59" in lines  # CHANGE PIN as sent
    assert "< 9000  OK" in lines
    assert "- ID check: match" in lines and "- GET DATA DF7F (activation flag): 01" in lines
    card = Card.open(image, date=CARD_DATE)
    assert ssse(card)["lifecycle"] == "active" and activation_flag(card) == "01"
    assert ssse_verify(card, "314159") == "9000" and fin_verify(card, "271828") == "9000"


def test_cli_entrusted_without_documents_exits_1_and_leaves_the_image(capsys, image):
    before = image.read_bytes()
    code, out, err = run(capsys, "--date", CARD_DATE, "flow", "entrusted-activation", "--state", image)
    assert code == 1 and err == ""
    assert out.splitlines()[-1] == ("flow entrusted-activation: refused: entrusted activation needs the agent's "
                                    "ID number and a power-of-attorney reference")
    assert not any(line.startswith("> ") for line in out.splitlines())
    assert image.read_bytes() == before
    code, out, _ = run(capsys, "--date", CARD_DATE, "flow", "entrusted-activation", "--state", image,
                       "--param", f"agent_id_number={AGENT_ID}", "--param", "power_of_attorney=POA-7")
    assert code == 0 and out.splitlines()[-1] == "flow entrusted-activation: ok"


def test_cli_id_mismatch_exits_1(capsys, image):
    code, out, _ = run(capsys, "--date", CARD_DATE, "flow", "bank-activation", "--state", image,
                       "--param", f"id_number={OTHER_ID}")
    assert code == 1
    assert out.splitlines()[-1].startswith("flow bank-activation: refused: the presented ID number")


def test_cli_deadline_unlock(capsys, image):
    code, out, _ = run(capsys, "--date", DEADLINE_DAY, "flow", "loss-unlock", "--state", image)
    assert code == 1 and out.splitlines()[-1].startswith("flow loss-unlock: refused: APPLICATION UNBLOCK answered 6985")
    code, out, _ = run(capsys, "--date", DEADLINE_DAY, "flow", "deadline-unlock", "--state", image)
    assert code == 0 and out.splitlines()[-1] == "flow deadline-unlock: ok"
    assert "- APPLICATION UNBLOCK before the financial activation: 6985" in out
    card = Card.open(image, date=DEADLINE_DAY)
    assert ssse_select(card) == "9000" and activation_flag(card) == "01"


@pytest.mark.parametrize("name", ["hospital-activation", "pharmacy-activation", "online-activation"])
def test_cli_other_flows(capsys, image, name):
    code, out, _ = run(capsys, "--date", CARD_DATE, "flow", name, "--state", image)
    assert code == 0 and out.splitlines()[-1] == f"flow {name}: ok"


def test_cli_loss_report_unlock_and_pin_reset(capsys, image):
    def flow(*argv):
        return run(capsys, "--date", CARD_DATE, "flow", *argv, "--state", image)

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
    (["flow", "hospital-activation", "--state", "x.img", "--param", "kind=two"], "whole number"),
    (["flow", "bank-activation", "--state", "IMAGE", "--param", "bank_pin=12"], "bank_pin must be 4 to 12 digits"),
    (["flow", "bank-activation", "--state", "missing.img"], "missing.img"),
])
def test_cli_usage_errors_are_one_line(capsys, image, argv, message):
    argv = [str(image) if a == "IMAGE" else a for a in argv]
    before = image.read_bytes()
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("sscard: error: ") and message in err
    assert image.read_bytes() == before
