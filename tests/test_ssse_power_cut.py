"""Power-cut sweep of the SSSE's keyed, lifecycle and medical commands, on both algorithm families.

For each command: APPLICATION BLOCK `84 1E 00 00` (the loss lock) and `84 1E 00 01`
(permanent), APPLICATION UNBLOCK `84 18`, CARD BLOCK `84 16` (each after external
authentication with BK), PIN UNBLOCK `84 24 00 00` of a blocked PIN and PIN reset
`84 24 00 01` (after PUK), EXTERNAL AUTHENTICATE with RKSSSE (wrong and right cryptogram,
full counter and one try spent), PUK (wrong) and BK (wrong: counts nothing, writes nothing),
the activating CHANGE PIN, DF04 UPDATE RECORD of EF06 items 92/93 after UK2DF04 (the first
activates), and the medical purse: DEBIT FOR PURCHASE (the first activates), CREDIT FOR LOAD,
UPDATE STARTING DAY; on an image-backed card of the SM4 profile and of the 3DES profile:

1. run it once with a hook that never cuts, to count its write points;
2. for every n, on a fresh card: build the command (GET CHALLENGE, INITIALIZE and the
   terminal's cryptogram come first, before the hook is installed), install
   `cut_power_at(n)`, transmit; the cut raises `PowerLoss` out of transmit (tests/power_cut.py);
3. read what is durable with `Card.open(path, read_only=True)` (the cut card still owns its
   image: one owner per image): the whole SSSE state (card state, lifecycle, lock and
   its reason, PIN value and tries, every counted key's tries, the DF04 settlement records,
   the purse's amounts, counters and start day, the EF08 detail records) is exactly the old
   one or the new one (or, for an anti-tearing success, the durable decrement in between):
   never a mix, never a try more than before, never a purse counter that goes back; which
   one follows from how many commits landed before the cut;
4. both the powered-again in-memory card and a card powered up from exactly what is durable (a
   byte copy of the image taken right after the cut, opened as the owner of the copy) hold that
   state and answer accordingly (no session survives: no write without a new authentication; the
   PIN and the purse counters are the durable ones); then the cut card is closed and the image's
   next owner finds what the cut card went on to write.

Every cryptogram is the oracle's (tests/oracle.py through tests/ssse_helpers.py).
Run with `pytest -s` to see the counts.
"""

import collections
import datetime

import pytest
import ssse_helpers as sh
from helpers import CARD_DATE, OK, PROFILES
from power_cut import (
    FILE_POINTS,
    count_write_points,
    cut_at,
    deterministic_random,
    image_card,
    landed,
    recording_hook,
    twin,
)

from chip import Card, CardNotPowered, PowerLoss
from chip.kernel.image import cut_power_at
from chip.kernel.pin import unpack
from reader import SimReader

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

OLD_PIN, NEW_PIN, WRONG_PIN = "123456", "246810", "111111"
TOTAL_1, TOTAL_2 = bytes.fromhex("9204" "00001234"), bytes.fromhex("9204" "00005678")  # DF04 EF06 item 92
COUNT_0, COUNT_1 = bytes.fromhex("9302") + b"00", bytes.fromhex("9302") + b"01"  # item 93
apdu = sh.apdu
KEYS = {"rk": "ssse.key.ssse_rk", "puk": "ssse.key.ssse_puk", "bk": "ssse.key.ssse_bk",
        "uk2": "df04.key.df04_uk2"}


def full_state(card) -> dict:
    """Every persistent SSSE value the commands under test may touch."""
    store = card.store
    state = store["ssse.state"]
    pin = store["ssse.pin"]
    purse = store["df04.purse"]
    ef06 = store["df04.ef06"].records
    return {
        "card": store["card"].state,
        "lifecycle": state.lifecycle,
        "lock": state.lock,
        "lock_reason": state.lock_reason,
        "pin": (unpack(pin.value), pin.tries),
        **{name: store[key].tries for name, key in KEYS.items()},
        "total": next(r for r in ef06 if r[0] == 0x92),
        "count": next(r for r in ef06 if r[0] == 0x93),
        "purse": (purse.balance, purse.offline, purse.online, purse.spip, purse.spfp, purse.year, purse.start_day),
        "details": tuple(int.from_bytes(r[0:2], "big") << 8 | r[2] for r in store["df04.ef08"].records),
    }


BALANCE = 50000  # the profiles' medical balance at issue (fen)
INITIAL = {
    "card": "ok", "lifecycle": "issued", "lock": "none", "lock_reason": "",
    "pin": (OLD_PIN, 6), "rk": 3, "puk": 3, "bk": 3, "uk2": 3,
    "total": bytes.fromhex("9204" "0FFFFFFF"), "count": COUNT_0,  # cn "0": left-aligned, F-padded
    "purse": (BALANCE, 0, 0, 0, 0, 0, "0101"), "details": (),
}


class Bench:
    """A fresh image-backed card on CARD_DATE, its reader, and a terminal (the oracle) on it, SSSE selected."""

    def __init__(self, profile, folder):
        self.card, self.path = image_card(folder, profile, CARD_DATE)
        self.card.random = deterministic_random()  # the same challenges on every fresh card: identical states
        self.reader = SimReader(self.card)
        self.reader.reset()
        self.terminal = sh.Terminal(self.card, self.reader.transmit)
        self.terminal.start()
        self.expected = b""  # the response data the command under test must answer (TAC || MAC2, TAC)

    def transmit(self, command: bytes) -> bytes:
        return self.reader.transmit(command)


# -- the commands: setup (before), the command (built just before the hook), its SW, state changes --

def no_setup(b):
    pass


def setup(*steps):
    def run(b):
        for step in steps:
            step(b)
    return run


def auth(key):
    return lambda b: b.terminal.authenticate(key)


def locked(b):
    b.terminal.do_lock()


def pin_blocked(b):
    for left in range(5, -1, -1):
        assert b.transmit(sh.verify(WRONG_PIN)) == bytes((0x63, 0xC0 | left))
    assert b.transmit(sh.verify(OLD_PIN)) == b"\x69\x83"


def one_wrong_pin(b):
    assert b.transmit(sh.verify(WRONG_PIN)) == b"\x63\xC5"


def one_wrong_rk(b):
    assert b.transmit(b.terminal.external_authenticate("ssse_rk", wrong=True)) == b"\x63\xC2"


def df04(b):
    assert b.transmit(sh.SELECT_DF04)[-2:] == OK


def verified(b):
    assert b.transmit(sh.verify(OLD_PIN)) == OK


def medical_active(b):
    df04(b)
    b.terminal.authenticate("df04_uk2")
    assert b.transmit(b.terminal.settlement_total(1234)) == OK


def purchased(b):
    b.terminal.purchase(1000, 600, 400, time="20261121103000")


def debit(account, self_pay, fund):
    def build(b):
        t = b.terminal
        answer = t.ok(t.init_purchase(account, self_pay, fund))
        command, b.expected, _ = t.debit(answer, account, self_pay, fund, time="20261121120000")
        return command
    return build


def credit(amount):
    def build(b):
        t = b.terminal
        command, b.expected, _ = t.credit(t.ok(t.init_load(amount)), amount)
        return command
    return build


class Case:
    def __init__(self, setup, build, sw, before, steps):
        self.setup = setup
        self.build = build  # Bench -> command bytes (may talk to the card: GET CHALLENGE, INITIALIZE)
        self.sw = sw
        self.before = before  # changes to INITIAL made by the setup
        self.steps = steps  # the state after each of the command's commits, as changes to `before`

    def states(self):
        before = {**INITIAL, **self.before}
        return [before] + [{**before, **step} for step in self.steps]


AFTER_PURCHASE = {"lifecycle": "active", "pin": (OLD_PIN, 6), "purse": (BALANCE - 1000, 1, 0, 600, 400, 2026, "0101"),
                  "details": (0 << 8 | 0x32,)}
CASES = {
    "lock": Case(auth("ssse_bk"), lambda b: b.terminal.lock(), OK, {},
                 [{"lock": "locked", "lock_reason": "reported"}]),
    "lock-permanent": Case(auth("ssse_bk"), lambda b: b.terminal.lock(permanent=True), OK, {},
                           [{"lock": "blocked", "lock_reason": "permanent"}]),
    "unlock": Case(locked, lambda b: b.terminal.unlock(), OK,
                   {"lock": "locked", "lock_reason": "reported"}, [{"lock": "none", "lock_reason": ""}]),
    "card-block": Case(auth("ssse_bk"), lambda b: b.terminal.card_block(), OK, {}, [{"card": "blocked"}]),
    "pin-unblock": Case(setup(pin_blocked, auth("ssse_puk")), lambda b: b.terminal.pin_unblock(), OK,
                        {"pin": (OLD_PIN, 0)}, [{"pin": (OLD_PIN, 6)}]),
    "pin-reset": Case(setup(one_wrong_pin, auth("ssse_puk")), lambda b: b.terminal.pin_reset(NEW_PIN), OK,
                      {"pin": (OLD_PIN, 5)}, [{"pin": (NEW_PIN, 6)}]),
    "ext-auth-wrong": Case(no_setup, lambda b: b.terminal.external_authenticate("ssse_rk", wrong=True),
                           b"\x63\xC2", {}, [{"rk": 2}]),
    "ext-auth-wrong-2": Case(one_wrong_rk, lambda b: b.terminal.external_authenticate("ssse_rk", wrong=True),
                             b"\x63\xC1", {"rk": 2}, [{"rk": 1}]),
    # success: the anti-tearing decrement is durable first, then the counter is restored
    "ext-auth-right": Case(no_setup, lambda b: b.terminal.external_authenticate("ssse_rk"), OK, {},
                           [{"rk": 2}, {"rk": 3}]),
    "ext-auth-right-2": Case(one_wrong_rk, lambda b: b.terminal.external_authenticate("ssse_rk"), OK, {"rk": 2},
                             [{"rk": 1}, {"rk": 3}]),
    "ext-auth-puk-wrong": Case(no_setup, lambda b: b.terminal.external_authenticate("ssse_puk", wrong=True),
                               b"\x63\xC2", {}, [{"puk": 2}]),
    # BK's failures decrement nothing (P7 §13.1-13.2, docs/decisions.md S10): no write at all
    "ext-auth-bk-wrong": Case(no_setup, lambda b: b.terminal.external_authenticate("ssse_bk", wrong=True),
                              b"\x63\xC3", {}, []),
    # CHANGE PIN away from the initial PIN: anti-tearing decrement, then new PIN, full counter and activation
    "change-pin-activating": Case(no_setup, lambda b: sh.change_pin(OLD_PIN, NEW_PIN), OK, {},
                                  [{"pin": (OLD_PIN, 5)}, {"pin": (NEW_PIN, 6), "lifecycle": "active"}]),
    # the first medical write: the record and the activation land together
    "update-first": Case(setup(df04, auth("df04_uk2")), lambda b: b.terminal.settlement_total(1234), OK, {},
                         [{"total": TOTAL_1, "lifecycle": "active"}]),
    "update-second": Case(medical_active, lambda b: b.terminal.settlement_count(1), OK,
                          {"total": TOTAL_1, "lifecycle": "active"}, [{"count": COUNT_1}]),
    # the purse: amounts, counter, detail record, proof and (first purchase) activation in one commit
    "debit-first": Case(setup(verified, df04), debit(1000, 600, 400), OK, {}, [AFTER_PURCHASE]),
    "debit-second": Case(setup(verified, df04, purchased), debit(250, 100, 0), OK, AFTER_PURCHASE,
                         [{"purse": (BALANCE - 1250, 2, 0, 700, 400, 2026, "0101"),
                           "details": (1 << 8 | 0x32, 0 << 8 | 0x32)}]),
    "credit": Case(setup(verified, df04, purchased), credit(5000), OK, AFTER_PURCHASE,
                   [{"purse": (BALANCE - 1000 + 5000, 1, 1, 600, 400, 2026, "0101"),
                     "details": (0 << 8 | 0x31, 0 << 8 | 0x32)}]),
    "starting-day": Case(df04, lambda b: b.terminal.update_starting_day("0701"), OK, {},
                         [{"purse": (BALANCE, 0, 0, 0, 0, 0, "0701")}]),
}
OUTCOMES = ("old", "intermediate", "new")


def outcome_name(landed: int, commits: int) -> str:
    return "old" if landed == 0 else "new" if landed == commits else "intermediate"


def check_behaviour(card, state) -> None:
    """A card powered again answers as its state says (T=1: every answer in one exchange)."""
    r = SimReader(card, protocol="T=1")
    r.reset()
    t = sh.Terminal(card, r.transmit)
    select = r.transmit(sh.SELECT_SSSE)
    if state["card"] == "blocked":
        assert select == b"\x6A\x81"
        return
    if state["lock"] == "blocked":
        assert select == b"\x93\x03"
        assert r.transmit(sh.verify(state["pin"][0])) == b"\x93\x03"
        return
    assert select[-2:] == (OK if state["lock"] == "none" else b"\x62\x83")
    if state["lock"] != "none":
        assert r.transmit(sh.verify(state["pin"][0])) == b"\x69\x85"
        return
    assert r.transmit(sh.SELECT_DF04)[-2:] == OK
    # no session survives the cut: no write without a new external authentication
    no_auth = b"\x69\x85" if state["lifecycle"] == "issued" else b"\x69\x82"
    assert r.transmit(t.settlement_total(9999)) == no_auth
    assert r.transmit(sh.read_record(0x92, 6, 0, 6)) == b"\x69\x82"  # EF06: PIN and RK1DF04
    value, tries = state["pin"]
    assert r.transmit(sh.verify(value)) == (OK if tries else b"\x69\x83")
    if not tries:
        return
    t.authenticate("df04_rk1")
    assert r.transmit(sh.read_record(0x92, 6, 0, 6)) == state["total"] + OK
    assert r.transmit(sh.read_record(0x93, 6, 0, 4)) == state["count"] + OK
    # the purse offers the durable counters and balance: no counter is used twice
    balance, offline, online = state["purse"][:3]
    answer = t.ok(t.init_purchase(1))
    assert (int.from_bytes(answer[0:4], "big"), int.from_bytes(answer[14:16], "big")) == (balance, offline)
    answer = t.ok(t.init_load(1))
    assert (int.from_bytes(answer[0:4], "big"), int.from_bytes(answer[4:6], "big")) == (balance, online)
    assert t.ok(bytes.fromhex("B056010002")) == bytes.fromhex(state["purse"][6])


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
    response, hook = count_write_points(b.card, b.transmit, command)
    assert response == b.expected + case.sw
    seen = list(hook.seen)
    assert seen == FILE_POINTS * commits
    assert full_state(b.card) == states[-1]
    assert full_state(Card.open(b.path, read_only=True)) == states[-1]

    # 2. cut at each of them
    outcomes = collections.Counter()
    for n in range(1, len(seen) + 1):
        b = Bench(profile, tmp_path / f"{tag}-cut{n}")
        case.setup(b)
        command = case.build(b)  # GET CHALLENGE, INITIALIZE and the terminal's work happen before the hook
        generation_before = b.card.store.backend.generation
        cut = cut_at(n, b.card, b.transmit, command, seen, sh.SELECT_SSSE)

        durable = Card.open(b.path, date=CARD_DATE, read_only=True)  # what is durable: the cut card still owns it
        revived = twin(b.path, tmp_path / f"{tag}-cut{n}-twin", CARD_DATE)
        assert full_state(revived) == full_state(durable)
        state = full_state(durable)
        assert state in states, f"cut {n} at {cut.point}: mixed state {state}"
        # key and PIN tries never above what they were, except the restored counter of a success
        for counter in KEYS:
            assert state[counter] <= states[0][counter] or state == states[-1], (n, counter, state)
        assert state["pin"][1] <= states[0]["pin"][1] or state == states[-1], (n, state)
        # the purse counters never go back
        assert state["purse"][1:3] >= states[0]["purse"][1:3], (n, state)
        commits_landed = landed(n, cut)
        assert durable.store.backend.generation - generation_before == commits_landed, (n, cut.point)
        assert state == states[commits_landed], (n, cut.point, state)
        outcomes[outcome_name(commits_landed, commits)] += 1

        # the in-memory card agrees with what is durable, and both answer accordingly
        b.card.store.backend.write_point = None
        assert b.card.store.journal == []
        assert full_state(b.card) == state
        assert b.card.store.backend.generation == durable.store.backend.generation
        check_behaviour(b.card, state)
        check_behaviour(revived, state)
        revived.close()
        # what the cut card went on to write is durable; once it leaves, the image's next owner holds it
        went_on = full_state(b.card)
        assert full_state(Card.open(b.path, date=CARD_DATE, read_only=True)) == went_on
        b.card.close()
        with Card.open(b.path, date=CARD_DATE) as reopened:
            assert full_state(reopened) == went_on
    outcomes["cuts"] = len(seen)
    print(f"\n{profile:12} {name:22}: {len(seen):2} cuts -> old {outcomes['old']}, "
          f"intermediate {outcomes['intermediate']}, new {outcomes['new']}")
    return outcomes


# name -> (cuts, old, intermediate, new), per profile
EXPECTED = {
    "lock": (3, 2, 0, 1),
    "lock-permanent": (3, 2, 0, 1),
    "unlock": (3, 2, 0, 1),
    "card-block": (3, 2, 0, 1),
    "pin-unblock": (3, 2, 0, 1),
    "pin-reset": (3, 2, 0, 1),
    "ext-auth-wrong": (3, 2, 0, 1),
    "ext-auth-wrong-2": (3, 2, 0, 1),
    "ext-auth-right": (6, 2, 3, 1),
    "ext-auth-right-2": (6, 2, 3, 1),
    "ext-auth-puk-wrong": (3, 2, 0, 1),
    "ext-auth-bk-wrong": (0, 0, 0, 0),
    "change-pin-activating": (6, 2, 3, 1),
    "update-first": (3, 2, 0, 1),
    "update-second": (3, 2, 0, 1),
    "debit-first": (3, 2, 0, 1),
    "debit-second": (3, 2, 0, 1),
    "credit": (3, 2, 0, 1),
    "starting-day": (3, 2, 0, 1),
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
          f"new {totals['new']}; mixed states 0, extra tries 0, reused purse counters 0")
    assert dict(totals) == {"cuts": 126, "old": 72, "intermediate": 18, "new": 36}


# -- the activation-deadline lock is a write at power-up (docs/card/lifecycle.md §2) ------------------

DAY_301 = CARD_DATE + datetime.timedelta(days=301)


def deadline_card(folder):
    card, path = image_card(folder, date=CARD_DATE)
    card.set_date(DAY_301)
    return card, path


def test_power_cut_while_the_deadline_lock_is_written(tmp_path):
    card, _ = deadline_card(tmp_path / "count")
    hook = recording_hook()
    card.store.backend.write_point = hook
    card.power_on()
    assert hook.seen == FILE_POINTS
    outcomes = collections.Counter()
    for n in range(1, len(FILE_POINTS) + 1):
        card, path = deadline_card(tmp_path / f"cut{n}")
        card.store.backend.write_point = cut_power_at(n)
        with pytest.raises(PowerLoss) as excinfo:
            card.power_on()
        durable = Card.open(path, date=DAY_301, read_only=True)  # what is durable: the cut card still owns it
        state = full_state(durable)
        locked = {**INITIAL, "lock": "locked", "lock_reason": "deadline"}
        assert state == (locked if excinfo.value.landed else INITIAL), (n, state)
        outcomes["new" if excinfo.value.landed else "old"] += 1
        # whatever landed, the next power-up applies the rule: the lock is never lost (the cut card, and a
        # card powered up from a copy of exactly what is durable)
        revived = twin(path, tmp_path / f"cut{n}-twin", DAY_301)
        assert full_state(revived) == state
        for c in (card, revived):
            c.store.backend.write_point = None
            r = SimReader(c)
            r.reset()
            assert r.transmit(sh.SELECT_SSSE)[-2:] == b"\x62\x83"
            assert full_state(c) == locked
        revived.close()
        assert full_state(Card.open(path, date=DAY_301, read_only=True)) == locked
        card.close()
        with Card.open(path, date=DAY_301) as reopened:
            assert full_state(reopened) == locked
    print(f"\npower-up deadline lock: {len(FILE_POINTS)} cuts -> old {outcomes['old']}, new {outcomes['new']}")
    assert dict(outcomes) == {"old": 2, "new": 1}


@pytest.mark.parametrize("n", range(1, len(FILE_POINTS) + 1))
def test_power_cut_at_power_up_leaves_the_card_unpowered(tmp_path, n):
    card, _ = deadline_card(tmp_path / "card")
    card.store.backend.write_point = cut_power_at(n)
    with pytest.raises(PowerLoss):
        card.power_on()
    card.store.backend.write_point = None
    assert not card.powered
    with pytest.raises(CardNotPowered):
        card.transmit(sh.SELECT_SSSE)
