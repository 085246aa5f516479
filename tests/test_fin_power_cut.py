"""Power cuts in the financial application (the ATC is durable before the response leaves,
docs/decisions.md §6; VERIFY's try counter with the anti-tearing of the SSSE's).

On an image-backed card, cut the power at every write point of one command
(first GENERATE AC, EXTERNAL AUTHENTICATE, each issuer script, VERIFY), then
read the image (`Card.open(path, read_only=True)`: the cut card still owns it,
one owner per image): the card's whole persistent state equals the state before
the command or after one of its commits - exactly the one the landed commits
decide - never a mix; the ATC never goes back; the powered-again in-memory
card agrees with the image; and once the cut card is closed, the image's next
owner goes on working from exactly what is durable.

Mechanism (tests/power_cut.py): `card.store.backend.write_point =
chip.kernel.image.cut_power_at(n)`; a file-backed commit passes three write points
(it appends one record to the image) and only the last (fsync) comes after the record is whole.
"""

import os

import pytest
from helpers import CARD_DATE, GPO, SELECT_FIN, snapshot, tx
from power_cut import FILE_POINTS, count_write_points, cut_at, files_in, image_card, landed
from test_fin_crypto import SM4, TDES, Transaction, activate_by_hand, cdol1, pin_block

from chip import Card
from reader import SimReader

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

SELECT_AID = bytes.fromhex(SELECT_FIN + "00")
APPROVED = b"00"


def fin(snap: dict) -> dict:
    """The financial fields a reader of these tests cares about, from a snapshot."""
    state, pin = snap["fin.state"], snap["fin.pin"]
    return {"atc": state["atc"], "last_online_atc": state["last_online_atc"], "activation": state["activation"],
            "lock": state["lock"], "card": snap["card"]["state"], "pin": pin["value"].hex().upper(),
            "tries": pin["tries"], "lower_limit": state["lower_limit"]}


# -- scenarios: prepare(reader) -> the APDU to cut, after putting the card in the right state --------------------


def first_ac(p1: int, alg, activated: bool):
    def prepare(reader):
        if activated:
            activate_by_hand(reader, alg, "123456")
        Transaction(reader, alg)
        return bytes((0x80, 0xAE, p1, 0x00, 29)) + cdol1() + b"\x00"
    return prepare


def after_first_ac(make, alg=TDES, activated=False, wrong_pins=0):
    """Run a transaction up to its first GENERATE AC (ARQC asked), then build the command with `make(t)`."""
    def prepare(reader):
        if activated:
            activate_by_hand(reader, alg, "123456")
        if wrong_pins:
            assert reader.transmit(SELECT_AID)[-2:] == b"\x90\x00"
            for i in range(wrong_pins):
                assert reader.transmit(bytes.fromhex("0020008008") + pin_block("999999")) == bytes((0x63, 0xC2 - i))
            reader.reset()
        t = Transaction(reader, alg)
        t.first_ac(0x80)
        return make(t)
    return prepare


def blocked_application(make):
    def prepare(reader):
        activate_by_hand(reader, TDES, "123456")
        t = Transaction(reader, TDES)
        t.first_ac(0x80)
        assert reader.transmit(t.script("841E0000")) == b"\x90\x00"
        reader.reset()
        t = Transaction(reader, TDES, select_sw="6283")
        t.first_ac(0x80)
        return make(t)
    return prepare


def verify(digits: str, wrong_before: int = 0):
    def prepare(reader):
        assert reader.transmit(SELECT_AID)[-2:] == b"\x90\x00"
        for i in range(wrong_before):
            assert reader.transmit(bytes.fromhex("0020008008") + pin_block("999999")) == bytes((0x63, 0xC2 - i))
        return bytes.fromhex("0020008008") + pin_block(digits)
    return prepare


# name: (prepare, SW of the uncut command, number of commits it makes, check(before, after) of the fin fields)
SCENARIOS = {
    "first-ac-new-card-3des": (first_ac(0x80, TDES, False), b"\x90\x00", 1,
                               lambda b, a: a["atc"] == b["atc"] + 1),
    "first-ac-new-card-sm4": (first_ac(0x00, SM4, False), b"\x90\x00", 1,
                              lambda b, a: a["atc"] == b["atc"] + 1),
    "first-ac-arqc-activated": (first_ac(0x80, TDES, True), b"\x90\x00", 1,
                                lambda b, a: (b["atc"], a["atc"]) == (1, 2)),
    "external-authenticate": (after_first_ac(lambda t: bytes.fromhex("008200000A") + t.arpc(APPROVED) + APPROVED,
                                             activated=True), b"\x90\x00", 1,
                              lambda b, a: (b["last_online_atc"], a["last_online_atc"]) == (0, 2)),
    "put-data-activation": (after_first_ac(lambda t: t.script("04DADF7F", b"\x01")), b"\x90\x00", 1,
                            lambda b, a: (b["activation"], a["activation"]) == ("not_activated", "activated")),
    "put-data-activation-sm4": (after_first_ac(lambda t: t.script("04DADF7F", b"\x01"), alg=SM4), b"\x90\x00", 1,
                                lambda b, a: (b["activation"], a["activation"]) == ("not_activated", "activated")),
    "put-data-lower-limit": (after_first_ac(lambda t: t.script("04DA9F14", b"\x05"), activated=True),
                             b"\x90\x00", 1, lambda b, a: (b["lower_limit"], a["lower_limit"]) == (0, 5)),
    "pin-change": (after_first_ac(lambda t: t.pin_change("482915"), wrong_pins=1), b"\x90\x00", 1,
                   lambda b, a: (b["pin"], b["tries"], a["pin"], a["tries"])
                   == ("26000000FFFFFFFF", 2, "26482915FFFFFFFF", 3)),
    "pin-change-sm4": (after_first_ac(lambda t: t.pin_change("482915"), alg=SM4, wrong_pins=2), b"\x90\x00", 1,
                       lambda b, a: (b["tries"], a["pin"], a["tries"]) == (1, "26482915FFFFFFFF", 3)),
    "pin-unblock": (after_first_ac(lambda t: t.script("84240000"), wrong_pins=3), b"\x90\x00", 1,
                    lambda b, a: (b["pin"], b["tries"], a["pin"], a["tries"])
                    == ("26000000FFFFFFFF", 0, "26000000FFFFFFFF", 3)),
    "application-block": (after_first_ac(lambda t: t.script("841E0000"), activated=True), b"\x90\x00", 1,
                          lambda b, a: (b["lock"], a["lock"]) == ("none", "blocked")),
    "application-unblock": (blocked_application(lambda t: t.script("84180000")), b"\x90\x00", 1,
                            lambda b, a: (b["lock"], a["lock"]) == ("blocked", "none")),
    "card-block": (after_first_ac(lambda t: t.script("84160000")), b"\x90\x00", 1,
                   lambda b, a: (b["card"], a["card"]) == ("ok", "blocked")),
    "verify-right": (verify("000000", wrong_before=1), b"\x90\x00", 2,
                     lambda b, a: (b["tries"], a["tries"]) == (2, 3)),
    "verify-wrong": (verify("111111"), b"\x63\xC2", 1, lambda b, a: (b["tries"], a["tries"]) == (3, 2)),
}


def fresh(folder, prepare):
    card, path = image_card(folder, date=CARD_DATE)
    reader = SimReader(card)
    reader.reset()
    apdu = prepare(reader)
    return card, reader, path, apdu


def follow_up(card) -> int:
    """Run one more transaction on `card` and return its ATC (the card must go on working)."""
    reader = SimReader(card)
    reader.reset()
    response = reader.transmit(SELECT_AID)
    assert response[-2:] in (b"\x90\x00", b"\x62\x83")
    assert tx(reader, GPO)[-4:] == "9000"
    response = tx(reader, "80AE00001D" + cdol1().hex() + "00")
    assert response[-4:] == "9000", response
    return int(response[response.index("9F3602") + 6:][:4], 16)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_power_cut_at_every_write_point(scenario, tmp_path):
    prepare, sw, commits, check = SCENARIOS[scenario]

    # 1. the uncut command: its write points and the state after each commit
    card, reader, _, apdu = fresh(tmp_path / "count", prepare)
    states = [snapshot(card.store)]
    response, hook = count_write_points(card, reader.transmit, apdu, lambda: snapshot(card.store))
    assert response[-2:] == sw
    states += hook.states
    assert list(hook.seen) == FILE_POINTS * commits
    assert len(states) == commits + 1
    before, after = fin(states[0]), fin(states[-1])
    assert check(before, after), (before, after)
    for middle in states[1:-1]:  # only VERIFY commits twice: the anti-tearing decrement, durable first
        assert fin(middle) == {**before, "tries": before["tries"] - 1}
    assert after["atc"] >= before["atc"]

    # 2. cut at each write point
    landed_counts = []
    for n in range(1, len(hook.seen) + 1):
        card, reader, path, apdu = fresh(tmp_path / f"cut{n}", prepare)
        assert snapshot(card.store) == states[0]
        generation = card.store.backend.generation
        cut = cut_at(n, card, reader.transmit, apdu, hook.seen, SELECT_AID)

        durable = Card.open(path, date=CARD_DATE, read_only=True)  # what is durable: the cut card still owns it
        commits_landed = landed(n, cut)
        landed_counts.append(commits_landed)
        assert durable.store.backend.generation - generation == commits_landed
        got = snapshot(durable.store)
        assert got in states, f"cut {n} at {cut.point}: a mixed state {fin(got)}"
        assert got == states[commits_landed], (n, cut.point, fin(got))
        state = fin(got)
        assert state["atc"] >= before["atc"]  # the ATC never goes back
        assert state["atc"] in (before["atc"], after["atc"])

        # the powered-again in-memory card agrees with the image
        card.store.backend.write_point = None
        reader.reset()
        assert card.store.journal == []
        assert snapshot(card.store) == got
        assert card.store.backend.generation == durable.store.backend.generation

        # and both go on working: the next transaction counts on from the durable ATC (on the image's next
        # owner, once the cut card has left: it opens exactly what is durable)
        if state["card"] == "ok":
            card.close()
            with Card.open(path, date=CARD_DATE) as reopened:
                assert snapshot(reopened.store) == got
                assert follow_up(reopened) == state["atc"] + 1
            assert fin(snapshot(Card.open(path, read_only=True).store))["atc"] == state["atc"] + 1
            assert files_in(os.path.dirname(path)) == ["card.img"]  # the new owner tidied what the cut left
        else:
            r = SimReader(card)
            r.reset()
            assert r.transmit(SELECT_AID) == b"\x6A\x81"
            card.close()
            with Card.open(path, date=CARD_DATE) as reopened:
                assert snapshot(reopened.store) == got
                r = SimReader(reopened)
                r.reset()
                assert r.transmit(SELECT_AID) == b"\x6A\x81"

    # every cut before the last point of a commit keeps that commit's old state; at its last point it landed
    assert landed_counts == [i // len(FILE_POINTS) + (i % len(FILE_POINTS) == len(FILE_POINTS) - 1)
                             for i in range(commits * len(FILE_POINTS))]
    assert landed_counts.count(commits) == 1
