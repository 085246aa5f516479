"""Power-cut sweep of the SSSE's keyed and lifecycle commands (SPEC §2.3 anti-tearing, §2.4, §5.1).

For each command: APPLICATION BLOCK (temporary, permanent), APPLICATION UNBLOCK,
CARD BLOCK, PIN UNBLOCK of a blocked PIN, RELOAD PIN, EXTERNAL AUTHENTICATE
(wrong and right cryptogram), the activating CHANGE PIN and a medical APPEND
RECORD (first and second), on an image-backed card:

1. run it once with a hook that never cuts, to count its write points;
2. for every n, on a fresh card: build the command (GET CHALLENGE and the
   PSAM's MAC or cryptogram come first, before the hook is installed), install
   `cut_power_at(n)`, transmit; the cut raises `PowerLoss` out of transmit;
3. reopen the image with `Card.open`: the whole SSSE state (card state,
   lifecycle, lock and its reason, PIN value and tries, RK tries, medical
   records) is exactly the old one or the new one (or, for EXTERNAL
   AUTHENTICATE, the durable anti-tearing decrement in between): never a mix;
   which one follows from how many commits landed before the cut;
4. both the powered-again in-memory card and the reopened one hold that state
   and answer accordingly.

Run with `pytest -s` to see the counts.
"""

import collections
import datetime

import pytest

from chip import Card, CardNotPowered, PowerLoss
from chip.image import cut_power_at
from chip.pin import pack, unpack
from reader import SimReader
from reader.psam import Psam
from reader.ssse_terminal import SsseTerminal

D = datetime.date(2026, 11, 21)
PROFILES = ["default", "default-3des"]
SELECT_SSSE = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
SELECT_DF04 = bytes.fromhex("00A4010C02DF04")
IDENTIFICATION = bytes.fromhex("110100" "0000000001" "D156000005" "FFFFFF")
FILE_POINTS = ["open-tmp", "write-half", "fsync-tmp", "rename", "fsync-folder"]
OK = b"\x90\x00"
OLD_PIN, NEW_PIN, WRONG_PIN = "123456", "246810", "111111"
H_CODE = "H11010100001".encode().hex().upper()
VISIT_1 = bytes.fromhex("5115" + H_CODE + "01" + "20261121" + "000004D2")
VISIT_2 = bytes.fromhex("5115" + H_CODE + "02" + "20261121" + "00002710")


def apdu(cla, ins, p1, p2, data=b""):
    return bytes((cla, ins, p1, p2, len(data))) + data


def full_state(card) -> dict:
    """Every persistent SSSE value the commands under test may touch."""
    store = card.store
    state = store["ssse.state"]
    pin = store["ssse.pin"]
    return {
        "card": store["card"].state,
        "lifecycle": state.lifecycle,
        "lock": state.lock,
        "lock_reason": state.lock_reason,
        "pin": (unpack(pin.value), pin.tries),
        "rk": store["ssse.rk"].tries,
        "visits": store["ssse.visits"].records,
        "purchases": store["ssse.purchases"].records,
    }


INITIAL = {
    "card": "ok", "lifecycle": "issued", "lock": "none", "lock_reason": "",
    "pin": (OLD_PIN, 6), "rk": 3, "visits": (), "purchases": (),
}


class Bench:
    """A fresh image-backed card on D, its reader, and a terminal with its PSAM."""

    def __init__(self, profile, folder):
        folder.mkdir()
        self.path = str(folder / "card.img")
        self.card = Card.from_profile(profile, state=self.path, date=D)
        self.reader = SimReader(self.card)
        self.psam = Psam(SimReader(Card.psam(profile)))
        self.terminal = SsseTerminal(self.reader, self.psam, identification=IDENTIFICATION)
        assert self.terminal.start() == 0x9000

    def transmit(self, command: bytes) -> bytes:
        return self.reader.transmit(command)

    def mac_command(self, cla, ins, p1, p2, body=b"", key="stk") -> bytes:
        """GET CHALLENGE on the card, MAC4 from the PSAM: the command, built but not sent."""
        t = self.terminal
        iv = t.challenge().ljust(t.block, b"\x00")
        header = bytes((cla, ins, p1, p2, len(body) + 4))
        return header + body + self.psam.mac4(key, t.algorithm_flag, t.diversification, iv, header + body)

    def ext_auth(self, wrong=False) -> bytes:
        t = self.terminal
        cryptogram = self.psam.external_auth_cryptogram(t.algorithm_flag, t.diversification, t.challenge())
        if wrong:
            cryptogram = bytes((cryptogram[0] ^ 0x80,)) + cryptogram[1:]
        return apdu(0x00, 0x82, 0x00, 0x0A, cryptogram)


# -- the commands: setup (before), the command (built just before the hook), its SW, state changes --

def no_setup(b):
    pass


def setup_locked(b):
    assert b.terminal.lock() == 0x9000


def setup_pin_blocked(b):
    for left in range(5, -1, -1):
        assert b.transmit(apdu(0x00, 0x20, 0x00, 0x00, pack(WRONG_PIN))) == bytes((0x63, 0xC0 | left))
    assert b.transmit(apdu(0x00, 0x20, 0x00, 0x00, pack(OLD_PIN))) == b"\x69\x83"


def setup_one_wrong_pin(b):
    assert b.transmit(apdu(0x00, 0x20, 0x00, 0x00, pack(WRONG_PIN))) == b"\x63\xC5"


def setup_one_wrong_rk(b):
    assert b.transmit(b.ext_auth(wrong=True)) == b"\x63\xC2"


def setup_medical_issued(b):
    assert b.transmit(SELECT_DF04) == OK
    assert b.transmit(b.ext_auth()) == OK


def setup_medical_active(b):
    setup_medical_issued(b)
    assert b.transmit(apdu(0x00, 0xE2, 0x00, 0xA8, VISIT_1)) == OK


class Case:
    def __init__(self, setup, build, sw, before, steps):
        self.setup = setup
        self.build = build  # Bench -> command bytes (may talk to the card: GET CHALLENGE)
        self.sw = sw
        self.before = before  # changes to INITIAL made by the setup
        self.steps = steps  # the state after each of the command's commits, as changes to `before`

    def states(self):
        before = {**INITIAL, **self.before}
        return [before] + [{**before, **step} for step in self.steps]


CASES = {
    "lock": Case(no_setup, lambda b: b.mac_command(0x84, 0x1E, 0x00, 0x00), OK, {},
                 [{"lock": "locked", "lock_reason": "holder"}]),
    "lock-permanent": Case(no_setup, lambda b: b.mac_command(0x84, 0x1E, 0x00, 0x01), OK, {},
                           [{"lock": "blocked", "lock_reason": "permanent"}]),
    "unlock": Case(setup_locked, lambda b: b.mac_command(0x84, 0x18, 0x00, 0x00), OK,
                   {"lock": "locked", "lock_reason": "holder"}, [{"lock": "none", "lock_reason": ""}]),
    "card-block": Case(no_setup, lambda b: b.mac_command(0x84, 0x16, 0x00, 0x00), OK, {},
                       [{"card": "blocked"}]),
    "pin-unblock": Case(setup_pin_blocked, lambda b: b.mac_command(0x84, 0x24, 0x00, 0x00, key="puk"), OK,
                        {"pin": (OLD_PIN, 0)}, [{"pin": (OLD_PIN, 6)}]),
    "reload-pin": Case(setup_one_wrong_pin, lambda b: b.mac_command(0x80, 0x5E, 0x00, 0x00, pack(NEW_PIN)), OK,
                       {"pin": (OLD_PIN, 5)}, [{"pin": (NEW_PIN, 6)}]),
    "ext-auth-wrong": Case(no_setup, lambda b: b.ext_auth(wrong=True), b"\x63\xC2", {}, [{"rk": 2}]),
    "ext-auth-wrong-2": Case(setup_one_wrong_rk, lambda b: b.ext_auth(wrong=True), b"\x63\xC1",
                             {"rk": 2}, [{"rk": 1}]),
    # success: the anti-tearing decrement is durable first, then the counter is restored
    "ext-auth-right": Case(no_setup, lambda b: b.ext_auth(), OK, {}, [{"rk": 2}, {"rk": 3}]),
    "ext-auth-right-2": Case(setup_one_wrong_rk, lambda b: b.ext_auth(), OK, {"rk": 2}, [{"rk": 1}, {"rk": 3}]),
    # CHANGE PIN away from the initial PIN: anti-tearing decrement, then new PIN, full counter and activation
    "change-pin-activating": Case(no_setup, lambda b: apdu(0x80, 0x5E, 0x01, 0x00,
                                                          pack(OLD_PIN) + b"\xFF" + pack(NEW_PIN)), OK, {},
                                  [{"pin": (OLD_PIN, 5)}, {"pin": (NEW_PIN, 6), "lifecycle": "active"}]),
    # the first medical write: the record and the activation land together
    "append-first": Case(setup_medical_issued, lambda b: apdu(0x00, 0xE2, 0x00, 0xA8, VISIT_1), OK, {},
                         [{"visits": (VISIT_1,), "lifecycle": "active"}]),
    "append-second": Case(setup_medical_active, lambda b: apdu(0x00, 0xE2, 0x00, 0xA8, VISIT_2), OK,
                          {"visits": (VISIT_1,), "lifecycle": "active"},
                          [{"visits": (VISIT_1, VISIT_2)}]),
}
OUTCOMES = ("old", "intermediate", "new")


def outcome_name(landed: int, commits: int) -> str:
    return "old" if landed == 0 else "new" if landed == commits else "intermediate"


def check_behaviour(card, state) -> None:
    """A card powered again answers as its state says."""
    r = SimReader(card)
    r.reset()
    select = r.transmit(SELECT_SSSE)
    if state["card"] == "blocked":
        assert select == b"\x6A\x81"
        return
    assert select[-2:] == (OK if state["lock"] == "none" else b"\x62\x83")
    if state["lock"] != "none":
        assert r.transmit(apdu(0x00, 0x20, 0x00, 0x00, pack(state["pin"][0]))) == b"\x69\x85"
        return
    assert r.transmit(SELECT_DF04) == OK
    # no session survives the cut: no write without a new external authentication
    no_auth = b"\x69\x85" if state["lifecycle"] == "issued" else b"\x69\x82"
    assert r.transmit(apdu(0x00, 0xE2, 0x00, 0xA8, VISIT_2)) == no_auth
    assert r.transmit(apdu(0x00, 0xB2, 0x01, 0xAC)) == (b"\x69\x82" if state["visits"] else b"\x6A\x83")
    value, tries = state["pin"]
    assert r.transmit(apdu(0x00, 0x20, 0x00, 0x00, pack(value))) == (OK if tries else b"\x69\x83")
    if state["visits"]:
        assert r.transmit(apdu(0x00, 0xB2, 0x01, 0xAC)) == state["visits"][0] + OK


def sweep(profile: str, name: str, tmp_path) -> collections.Counter:
    case = CASES[name]
    states = case.states()
    commits = len(case.steps)
    tag = f"{profile}-{name}"

    # 1. count the write points
    b = Bench(profile, tmp_path / f"{tag}-count")
    case.setup(b)
    assert full_state(b.card) == states[0]
    command = case.build(b)
    hook = cut_power_at(10**9)
    b.card.store.backend.write_point = hook
    assert b.transmit(command) == case.sw
    seen = list(hook.seen)
    assert seen == FILE_POINTS * commits
    assert full_state(b.card) == states[-1]
    assert full_state(Card.open(b.path)) == states[-1]

    # 2. cut at each of them
    outcomes = collections.Counter()
    for n in range(1, len(seen) + 1):
        b = Bench(profile, tmp_path / f"{tag}-cut{n}")
        case.setup(b)
        command = case.build(b)  # GET CHALLENGE and the PSAM's work happen before the hook
        generation_before = b.card.store.backend.generation
        b.card.store.backend.write_point = cut_power_at(n)
        with pytest.raises(PowerLoss) as excinfo:
            b.transmit(command)
        cut = excinfo.value
        assert cut.point == seen[n - 1]
        assert cut.landed == (cut.point == "fsync-folder")
        assert not b.card.powered
        with pytest.raises(CardNotPowered):
            b.transmit(SELECT_SSSE)

        durable = Card.open(b.path, date=D)
        state = full_state(durable)
        assert state in states, f"cut {n} at {cut.point}: mixed state {state}"
        # RK and PIN tries never above what they were, except the restored counter of a success
        assert state["rk"] <= states[0]["rk"] or state == states[-1], (n, state)
        assert state["pin"][1] <= states[0]["pin"][1] or state == states[-1], (n, state)
        landed = (n - 1) // len(FILE_POINTS) + cut.landed
        assert durable.store.backend.generation - generation_before == landed, (n, cut.point)
        assert state == states[landed], (n, cut.point, state)
        outcomes[outcome_name(landed, commits)] += 1

        # the in-memory card agrees with what is durable, and both answer accordingly
        b.card.store.backend.write_point = None
        assert b.card.store.journal == []
        assert full_state(b.card) == state
        check_behaviour(b.card, state)
        check_behaviour(durable, state)
    outcomes["cuts"] = len(seen)
    print(f"\n{profile:12} {name:16}: {len(seen):2} cuts -> old {outcomes['old']}, "
          f"intermediate {outcomes['intermediate']}, new {outcomes['new']}")
    return outcomes


# name -> (cuts, old, intermediate, new), per profile
EXPECTED = {
    "lock": (5, 4, 0, 1),
    "lock-permanent": (5, 4, 0, 1),
    "unlock": (5, 4, 0, 1),
    "card-block": (5, 4, 0, 1),
    "pin-unblock": (5, 4, 0, 1),
    "reload-pin": (5, 4, 0, 1),
    "ext-auth-wrong": (5, 4, 0, 1),
    "ext-auth-wrong-2": (5, 4, 0, 1),
    "ext-auth-right": (10, 4, 5, 1),
    "ext-auth-right-2": (10, 4, 5, 1),
    "change-pin-activating": (10, 4, 5, 1),
    "append-first": (5, 4, 0, 1),
    "append-second": (5, 4, 0, 1),
}
assert set(EXPECTED) == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("profile", PROFILES)
def test_power_cut_at_every_write_point(profile, name, tmp_path):
    outcomes = sweep(profile, name, tmp_path)
    cuts, old, intermediate, new = EXPECTED[name]
    assert (outcomes["cuts"], outcomes["old"], outcomes["intermediate"], outcomes["new"]) == EXPECTED[name]
    assert old + intermediate + new == cuts


def test_power_cut_sweep_totals(tmp_path):
    """The whole sweep in one table (`pytest -s`), with its grand totals."""
    totals = collections.Counter()
    for profile in PROFILES:
        for name in CASES:
            totals += sweep(profile, name, tmp_path)
    print(f"total: {totals['cuts']} cuts -> old {totals['old']}, intermediate {totals['intermediate']}, "
          f"new {totals['new']}; mixed states 0, extra tries 0")
    assert dict(totals) == {"cuts": 160, "old": 104, "intermediate": 30, "new": 26}


# -- the activation-deadline lock is a write at power-up (SPEC §2.4) ---------------------------------

DAY_301 = D + datetime.timedelta(days=301)


def deadline_card(folder):
    folder.mkdir()
    path = str(folder / "card.img")
    card = Card.from_profile(state=path, date=D)
    card.set_date(DAY_301)
    return card, path


def test_power_cut_while_the_deadline_lock_is_written(tmp_path):
    card, _ = deadline_card(tmp_path / "count")
    hook = cut_power_at(10**9)
    card.store.backend.write_point = hook
    card.power_on()
    assert hook.seen == FILE_POINTS
    outcomes = collections.Counter()
    for n in range(1, len(FILE_POINTS) + 1):
        card, path = deadline_card(tmp_path / f"cut{n}")
        card.store.backend.write_point = cut_power_at(n)
        with pytest.raises(PowerLoss) as excinfo:
            card.power_on()
        durable = Card.open(path, date=DAY_301)
        state = full_state(durable)
        locked = {**INITIAL, "lock": "locked", "lock_reason": "deadline"}
        assert state == (locked if excinfo.value.landed else INITIAL), (n, state)
        outcomes["new" if excinfo.value.landed else "old"] += 1
        # whatever landed, the next power-up applies the rule: the lock is never lost
        for c in (card, durable):
            c.store.backend.write_point = None
            r = SimReader(c)
            r.reset()
            assert r.transmit(SELECT_SSSE)[-2:] == b"\x62\x83"
            assert full_state(c) == locked
    print(f"\npower-up deadline lock: {len(FILE_POINTS)} cuts -> old {outcomes['old']}, new {outcomes['new']}")
    assert dict(outcomes) == {"old": 4, "new": 1}


@pytest.mark.parametrize("n", range(1, len(FILE_POINTS) + 1))
def test_power_cut_at_power_up_leaves_the_card_unpowered(tmp_path, n):
    card, _ = deadline_card(tmp_path / "card")
    card.store.backend.write_point = cut_power_at(n)
    with pytest.raises(PowerLoss):
        card.power_on()
    card.store.backend.write_point = None
    assert not card.powered
    with pytest.raises(CardNotPowered):
        card.transmit(SELECT_SSSE)
