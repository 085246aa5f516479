"""Fleets (docs/fleets.md): many cards in one process, lazily loaded images, memory per card, the load
generator, `sscard serve --fleet DIR`."""

import os

import pytest
from helpers import CARD_DATE, VERIFY_OK
from ssse_helpers import SELECT_FIN, SELECT_SSSE, Terminal

from chip import Card, ImageError, load_profile
from chip.apps.keys import KEYS
from chip.fleet import Fleet, image_names, memory_per_card, variant
from chip.personalization import luhn
from reader.base import transmit_all
from reader.cli.errors import UsageError
from reader.cli.parser import build_parser
from reader.cli.serve import serve_images
from reader.sim import SimReader
from reader.terminals.fleet_load import HOSPITAL_AMOUNT, SSSE_COMMANDS, SSSE_MIX, load, schedule_of

SELECT = SELECT_SSSE
VERIFY = bytes.fromhex(VERIFY_OK)
READ_CARD_ID = bytes.fromhex("00B2012C12")  # EF05 01: region || RID || serial || auth code (V2 table 10)
READ_CARD_NUMBER = bytes.fromhex("00B2072C0B")  # EF05 07 (Le 00 would be answered 6C0B, P5 §6.10.4)


def _read(card, apdu):
    reader = SimReader(card)
    reader.reset()
    assert reader.transmit(SELECT)[-2:] == b"\x90\x00"
    response = reader.transmit(apdu)
    assert response[-2:] == b"\x90\x00"
    return response[:-2]


# -- profile variants --------------------------------------------------------------------------------
def test_luhn_digit_matches_the_profile_check():
    assert luhn.check_digit("623456000000000") == "8"  # the default profile's PAN 6234560000000008
    for body in ("4", "79927398713"[:-1], "623456000000123", "12345678901234567"):
        assert luhn.is_valid(body + luhn.check_digit(body))


def test_variants_differ_in_number_serial_and_pan_only():
    base = load_profile()
    a, b = variant(base, 7), variant(base, 12345678)
    assert (a.card_number, b.card_number) == ("T00000007", "T12345678")
    assert a.serial == bytes.fromhex("00000007") and b.serial == (12345678).to_bytes(4, "big")
    assert a.financial.pan != b.financial.pan and len(a.financial.pan) == len(base.financial.pan)
    assert luhn.is_valid(a.financial.pan) and luhn.is_valid(b.financial.pan)
    assert a.financial.pan.startswith(base.financial.pan[:6])
    assert a.holder_name == base.holder_name and a.keys is base.keys  # shared, not copied
    with pytest.raises(ValueError):
        variant(base, 10**8)


# -- in-memory fleets ----------------------------------------------------------------------------------
def test_in_memory_fleet_cards_are_distinct():
    fleet = Fleet(date=CARD_DATE)
    names = fleet.personalize(5)
    assert names == ["card-0001", "card-0002", "card-0003", "card-0004", "card-0005"]
    assert len(fleet) == 5 and list(fleet) == names and "card-0003" in fleet
    numbers = {_read(fleet[name], READ_CARD_NUMBER) for name in names}
    identifications = {_read(fleet[name], READ_CARD_ID) for name in names}
    assert len(numbers) == len(identifications) == 5
    assert _read(fleet["card-0003"], READ_CARD_NUMBER)[2:] == b"T00000003"
    pans = {fleet[name].applets["fin"].store["fin.records"].records[1] for name in names}
    assert len(pans) == 5
    rk = {fleet[name].store["ssse.key.ssse_rk"].value for name in names}
    assert len(rk) == 5  # distinct diversification data: distinct card keys


def test_in_memory_fleet_names_and_eviction():
    fleet = Fleet(date=CARD_DATE)
    fleet.personalize(3, prefix="x-", start=9)
    assert fleet.names() == ["x-0009", "x-0010", "x-0011"]
    with pytest.raises(ValueError, match="already has"):
        fleet.personalize(1, prefix="x-", start=10)
    assert fleet.evict("x-0010") is True
    assert "x-0010" not in fleet and len(fleet) == 2  # nothing to reopen an in-memory card from
    with pytest.raises(KeyError):
        fleet["x-0010"]


# -- folder fleets ----------------------------------------------------------------------------------------
def test_folder_fleet_is_lazily_loaded(tmp_path):
    fleet = Fleet(tmp_path / "farm", date=CARD_DATE)
    names = fleet.personalize(4)
    assert sorted(os.listdir(tmp_path / "farm")) == [f"{name}.img" for name in names]
    assert fleet.loaded() == []  # personalised to disk, nothing open
    card = fleet["card-0002"]
    assert fleet.loaded() == ["card-0002"] and card.path == str(tmp_path / "farm" / "card-0002.img")
    assert fleet["card-0002"] is card  # opened once
    assert _read(card, READ_CARD_NUMBER)[2:] == b"T00000002"

    reopened = Fleet(tmp_path / "farm", date=CARD_DATE)  # a new process: the folder is the fleet
    assert reopened.names() == names and reopened.loaded() == []
    assert _read(reopened["card-0004"], READ_CARD_NUMBER)[2:] == b"T00000004"
    with pytest.raises(KeyError):
        reopened["card-0099"]


def test_folder_fleet_eviction_keeps_state(tmp_path):
    fleet = Fleet(tmp_path, date=CARD_DATE)
    fleet.personalize(2)
    card = fleet["card-0001"]
    reader = SimReader(card)
    reader.reset()
    reader.transmit(SELECT)
    assert reader.transmit(bytes.fromhex("0020000003654321"))[-2:] == b"\x63\xC5"  # a wrong PIN: 5 tries left
    assert fleet.evict("card-0001") is True and not card.powered
    assert fleet.loaded() == [] and "card-0001" in fleet and len(fleet) == 2
    assert fleet.evict("card-0001") is False
    again = fleet["card-0001"]
    assert again is not card and again.store["ssse.pin"].tries == 5  # reopened from its image


def test_folder_fleet_max_loaded_evicts_least_recently_used(tmp_path):
    fleet = Fleet(tmp_path, date=CARD_DATE, max_loaded=2, sync=False)
    fleet.personalize(3)
    fleet["card-0001"], fleet["card-0002"]
    fleet["card-0001"]  # most recently used
    fleet["card-0003"]
    assert fleet.loaded() == ["card-0001", "card-0003"]


def test_folder_fleet_refuses_to_overwrite_and_add(tmp_path):
    Fleet(tmp_path, date=CARD_DATE).personalize(1)
    other = Fleet(tmp_path, date=CARD_DATE)
    with pytest.raises(ValueError, match="already has card-0001"):
        other.personalize(1)
    extra = other.add("extra", Card.from_profile(date=CARD_DATE))
    assert extra.path == str(tmp_path / "extra.img") and "extra" in Fleet(tmp_path)
    with pytest.raises(ValueError, match="already exists"):
        Fleet(tmp_path).add("extra", Card.from_profile(date=CARD_DATE))


# -- memory ------------------------------------------------------------------------------------------------
def test_memory_per_card_is_under_the_goal():
    per_card = memory_per_card(300, date=CARD_DATE)
    assert 1024 < per_card <= 20 * 1024, f"{per_card / 1024:.1f} KiB per card"


# -- the load generator -------------------------------------------------------------------------------------
def test_schedule_interleaves_the_mix():
    assert schedule_of({"ssse": 3, "purchase": 1, "hospital": 1}) == ["ssse", "purchase", "hospital", "ssse", "ssse"]
    assert schedule_of("ssse") == ["ssse"]
    with pytest.raises(ValueError, match="unknown flow"):
        schedule_of({"teleport": 1})
    with pytest.raises(ValueError):
        schedule_of({"ssse": 0})


def test_load_generator_runs_50_cards_without_errors():
    fleet = Fleet(date=CARD_DATE)
    fleet.personalize(50)
    result = load(fleet, rounds=40)
    assert result.errors == 0, result.samples
    assert result.visits == 50 * 40
    assert set(result.flows) == {"ssse", "purchase", "hospital"}
    # SELECT, its GET RESPONSE on T=0, VERIFY, 7 READ RECORDs
    assert result.apdus > 10 * result.flows["ssse"] and result.seconds > 0
    card = fleet["card-0007"]
    assert card.financial_activated() and card.store["fin.state"].atc >= 4
    assert settlements(card) == (4, 4 * HOSPITAL_AMOUNT)
    assert card.applets["ssse"].state.lifecycle == "active"  # the first settlement activated it (docs/card/lifecycle.md §1)


def settlements(card) -> tuple[int, int]:
    """DF04 EF06 items 93 (count, an 2) and 92 (total in fen, cn 4: F-padded digits), V2 table 9."""
    records = {record[0]: record[2:] for record in card.store["df04.ef06"].records}
    return int(records[0x93].decode()), int(records[0x92].hex().rstrip("f"))


def test_load_generator_hospital_settlements_add_up():
    fleet = Fleet(date=CARD_DATE)
    fleet.personalize(2)
    result = load(fleet, rounds=35, mix={"hospital": 1})
    assert result.errors == 0, result.samples
    assert settlements(fleet["card-0001"]) == (35, 35 * HOSPITAL_AMOUNT)


def test_ssse_mix_is_standard_commands_only():
    """SELECT, VERIFY (P5 §6.14) and READ RECORD of EF05 by number with each record's length as Le:
    every one answers 9000 on T=1; on T=0 (the default card) the SELECT's FCI comes by GET RESPONSE,
    which SSSE_MIX carries as the contacts see it (P2 §9.3)."""
    assert [apdu[:2] for apdu in SSSE_COMMANDS] == [b"\x00\xA4", b"\x00\x20"] + [b"\x00\xB2"] * 7
    assert SSSE_MIX == SSSE_COMMANDS[:1] + (bytes.fromhex("00C000001E"),) + SSSE_COMMANDS[1:]
    card = Card.from_profile(date=CARD_DATE)
    card.power_on()  # the card's own protocol: T=0
    assert [card.transmit(apdu)[-2:] for apdu in SSSE_MIX] == [b"\x61\x1E"] + [b"\x90\x00"] * 9
    reader = SimReader(Card.from_profile(date=CARD_DATE), protocol="T=1")
    reader.reset()
    assert all(reader.transmit(apdu)[-2:] == b"\x90\x00" for apdu in SSSE_COMMANDS)


def test_load_generator_threads_and_seconds(tmp_path):
    fleet = Fleet(tmp_path, date=CARD_DATE, sync=False)
    fleet.personalize(6)
    result = load(fleet, cards=4, seconds=0.3, threads=3, mix=["ssse", "purchase"])
    assert result.errors == 0, result.samples
    assert result.apdus > 0 and 0.3 <= result.seconds < 5
    assert sorted(fleet.loaded()) == ["card-0001", "card-0002", "card-0003", "card-0004"]


def test_load_generator_reports_errors():
    fleet = Fleet(date=CARD_DATE)
    fleet.personalize(2)
    blocked = fleet["card-0002"]
    blocked.store["ssse.pin"].tries = 0  # the PIN is blocked: VERIFY fails
    result = load(fleet, rounds=1, mix="ssse")
    assert result.errors == 1 and result.samples[0].startswith("card-0002 ssse: 0020")
    with pytest.raises(ValueError):
        load(fleet, mix="ssse")  # neither seconds nor rounds


# -- sscard serve --fleet DIR ---------------------------------------------------------------------------------
def test_serve_fleet_expands_the_folder(tmp_path):
    fleet = Fleet(tmp_path / "farm", date=CARD_DATE, sync=False)
    fleet.personalize(3)
    (tmp_path / "farm" / "notes.txt").write_text("not a card")
    (tmp_path / "farm" / "card-0002.img.tmp").write_bytes(b"leftover")
    args = build_parser().parse_args(["serve", "--fleet", str(tmp_path / "farm"), "--port", "40000"])
    images = serve_images(args)
    assert images == [str(tmp_path / "farm" / f"card-000{i}.img") for i in (1, 2, 3)]
    assert image_names(tmp_path / "farm") == images
    mixed = build_parser().parse_args(["serve", "--state", "a.img", "--fleet", str(tmp_path / "farm")])
    assert serve_images(mixed) == ["a.img"] + images


def test_serve_fleet_refuses_empty_and_missing_folders(tmp_path):
    with pytest.raises(UsageError, match="no card images"):
        serve_images(build_parser().parse_args(["serve", "--fleet", str(tmp_path)]))
    with pytest.raises(ImageError, match="no such fleet folder"):
        serve_images(build_parser().parse_args(["serve", "--fleet", str(tmp_path / "none")]))
    with pytest.raises(UsageError, match="--state"):
        serve_images(build_parser().parse_args(["serve"]))


def test_serve_fleet_ports_count_up(tmp_path, monkeypatch):
    import reader.cli as cli

    Fleet(tmp_path, date=CARD_DATE, sync=False).personalize(3)
    seen = {}
    monkeypatch.setattr(cli.serve, "serve", lambda images, ports, **kw: seen.update(images=images, ports=ports) or 0)
    assert cli.main(["serve", "--fleet", str(tmp_path), "--port", "41000", "--no-stdin"]) == 0
    assert len(seen["images"]) == 3 and seen["ports"] == [41000]  # serve() counts the rest up: 41001, 41002


# -- SECURITY.md: no APDU reads a key ---------------------------------------------------------------------
def test_no_read_or_get_data_answers_key_material():
    """READ RECORD / READ BINARY over every SFI and record, GET DATA over every 9F/DF/5F/BF tag,
    with the PIN verified (and, in the SSSE, external authentication with RKSSSE, which opens EF06-EF08
    on a 3.00 card): no response carries 8 consecutive bytes of any key the card holds. A `6Cxx` is
    followed with the length it names, as terminals do (P5 §6.10.4)."""
    card = Card.from_profile(variant(load_profile(), 3), date=CARD_DATE)
    secrets = [obj.value for name, obj in card.store.objects.items() if type(obj).__name__ == "Key"]
    assert len(secrets) == len(KEYS) + 6  # the SSSE and DF04 keys, the financial 3DES and SM4 keys
    pieces = {secret[i:i + 8] for secret in secrets for i in range(len(secret) - 7)}
    reader = SimReader(card)
    responses = []
    for select, verify in ((SELECT, VERIFY), (SELECT_FIN,
                                              bytes.fromhex("0020008008") + bytes.fromhex("26000000FFFFFFFF"))):
        reader.reset()
        reader.transmit(select)
        assert reader.transmit(verify)[-2:] == b"\x90\x00"
        if select == SELECT:
            Terminal(card, send=reader.transmit).authenticate("ssse_rk")
        for sfi in range(1, 31):
            responses.append(transmit_all(reader, bytes((0x00, 0xB0, 0x80 | sfi, 0x00, 0x00))))
            for number in range(1, 12):
                responses.append(transmit_all(reader, bytes((0x00, 0xB2, number, sfi << 3 | 4, 0x00))))
        for p1 in (0x5F, 0x9F, 0xBF, 0xDF):
            for p2 in range(256):
                responses.append(transmit_all(reader, bytes((0x80, 0xCA, p1, p2, 0x00))))
    assert sum(r[-2:] == b"\x90\x00" for r in responses) > 20  # the sweep did read things
    assert any(r[:2] == b"\x08\x12" for r in responses)  # EF06 item 08 among them
    for response in responses:
        assert not any(piece in response for piece in pieces)
