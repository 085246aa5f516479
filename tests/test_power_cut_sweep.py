"""An automatic power-cut sweep over EVERY state-changing command of both applications.

SSSE (LD/T 32 P5 §6-§7; docs/decisions.md §1, docs/card/lifecycle.md): VERIFY right/wrong, CHANGE PIN right/wrong, PIN UNBLOCK
`84 24 00 00` and PIN reset `84 24 00 01` (after PUK), APPLICATION BLOCK `84 1E 00 00|01`,
APPLICATION UNBLOCK `84 18`, CARD BLOCK `84 16` (after BK), EXTERNAL AUTHENTICATE right/wrong
with RKSSSE, PUK, UKSSSE, BK (whose failures count nothing), RK1DF04 and UK2DF04 (key try counters
with anti-tearing), UPDATE RECORD / UPDATE BINARY in the SSSE (CLA 00 after UKSSSE, CLA 04 with
a MAC under STK) and UPDATE RECORD in DF04 (EF05 after UK1DF04; EF06 items 92/93 and the cyclic
EF15 after UK2DF04, the first one activating; CLA 04 with a MAC under STKDF04; DF04 holds no
transparent EF, so no UPDATE BINARY there), and the medical purse: INITIALIZE FOR PURCHASE / LOAD (no
write), DEBIT FOR PURCHASE (the first one activating), CREDIT FOR LOAD, UPDATE STARTING DAY.
Financial: VERIFY right/wrong, first GENERATE AC, EXTERNAL AUTHENTICATE (ARPC), issuer scripts
PIN CHANGE, PIN UNBLOCK, PUT DATA DF7F/9F14, APPLICATION BLOCK/UNBLOCK, CARD BLOCK. On an
image-backed default card (T=0, SM4):

Each command is swept twice: on the steady path, where each commit appends one record to the image
(three write points: append, append-half, fsync), and with every commit compacting the image
(`log_limit` 0: the whole image rewritten, five write points: open-tmp, write-half, fsync-tmp, rename,
fsync-folder), the path of a compaction, of a format-1 image's migration and of a new image:

1. run it once through a hook that never cuts: count its write points (`hook.seen`) and keep
   the image (`chip.kernel.image.encode(objects, 0)`) after each commit that landed;
2. for every write point n, on a fresh card brought to the same state: cut the power there
   (tests/power_cut.py), read the image with `Card.open(path, read_only=True)` (the cut card still
   owns it: one owner per image), encode its objects; the powered-again in-memory card
   holds the same; then the cut card is closed and the image reopened by its next owner, which
   powers up;
3. the result must be exactly the old state or the new state, or - only for a command with
   anti-tearing (a success after a durable try-counter decrement) - the documented
   intermediate state "PIN/key try counter decremented by one"; never a mix. Which one it is
   follows from how many commits landed before the cut. A command that writes nothing (an
   INITIALIZE, BK's authentication) must pass no write point at all;
4. after every cut of a purse command the reopened card (the image's next owner) refuses the
   same DEBIT / CREDIT sent again (6901: the INITIALIZE session died with the power) and offers,
   at the next INITIALIZE, exactly the durable transaction counters, above every sequence number
   its EF08 records and transaction proofs hold: a counter is never used twice.

Every MAC, cryptogram, TAC and key of the SSSE comes from tests/oracle.py (through
tests/ssse_helpers.py); the financial ones from reader.terminals.issuer.IssuerHost. The card's random
source is deterministic per card, so the images of two cards brought to the same state are
byte-identical. Run with `pytest -s` for the counts.

The last test kills `sscard serve` with SIGKILL at seeded random moments while a PC/SC
client sends wrong VERIFYs and reads, over several rounds (skipped without a running pcscd).
"""

import collections
import os
import random
import signal
import threading
import time

import helpers
import pytest
import ssse_helpers as sh
from helpers import CARD_DATE, OK, activate_financial
from power_cut import (
    FILE_POINTS,
    REWRITE_POINTS,
    count_write_points,
    cut_at,
    deterministic_random,
    files_in,
    image_card,
    landed,
    left_by,
)

from chip import Card
from chip.apps.financial import pin_block
from chip.iso import ber
from chip.kernel import image
from chip.kernel.crypto import TDES
from chip.personalization.profile import SHIPPED
from reader import SimReader
from reader.terminals.issuer import IssuerHost
from reader.traces.pytest_plugin import require_pcsc

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

SELECT_AID = sh.SELECT_FIN + b"\x00"
GPO = bytes.fromhex(helpers.GPO)
CDOL1 = bytes.fromhex(helpers.CDOL1)
PIN, NEW_PIN, WRONG = "123456", "246810", "999999"
FIN_PIN = "000000"
HOST = IssuerHost("default")
PAN, PSN = HOST.profile.financial.pan, HOST.profile.financial.psn
apdu = sh.apdu
CARD_NUMBER = bytes((0x07, 0x09)) + b"T00000002"  # EF05 item 07, a new card number (V2 table 9)
HEALTH_RECORD = bytes((0x87, 17)) + b"11010119900307123"  # DF04 EF05 item 87, added by identifier
SPECIAL = bytes.fromhex("010203")  # one 3-byte record of the cyclic DF04 EF15


class Bench:
    """A fresh image-backed card on CARD_DATE, powered, with an SSSE terminal (the oracle) on it."""

    def __init__(self, folder):
        self.card, self.path = image_card(folder, date=CARD_DATE)
        self.card.random = deterministic_random()
        self.reader = SimReader(self.card)  # the card's own protocol: T=0, 61xx fetched by the reader
        self.terminal = sh.Terminal(self.card, self.send)
        self.tx = None  # (atc, ac, cid) of the financial transaction's first GENERATE AC

    def send(self, command: bytes) -> bytes:
        return self.reader.transmit(command)

    def ok(self, command: bytes) -> bytes:
        response = self.send(command)
        assert response[-2:] in (OK, b"\x62\x83"), (command.hex().upper(), response.hex().upper())
        return response[:-2]

    # -- SSSE ------------------------------------------------------------------------------------
    def ssse(self):
        self.reader.reset()
        self.terminal.start()

    # -- financial -----------------------------------------------------------------------------
    def activate_fin(self):
        activate_financial(self.card, FIN_PIN)

    def fin_select(self):
        self.reader.reset()
        self.ok(SELECT_AID)

    def first_ac(self, p1=0x80) -> bytes:
        return apdu(0x80, 0xAE, p1, 0x00, CDOL1, le=0)

    def transaction(self):
        """SELECT, GPO, first GENERATE AC (ARQC asked): keeps the ATC and AC for scripts."""
        self.fin_select()
        self.ok(GPO)
        response = self.ok(self.first_ac())
        fields = dict(ber.parse(ber.parse(response)[0][1]))
        self.tx = (int.from_bytes(fields[0x9F36], "big"), fields[0x9F26], fields[0x9F27][0])

    def script(self, cla, ins, p1=0, p2=0, data=b"") -> bytes:
        atc, ac, _ = self.tx
        return HOST.script(PAN, PSN, TDES, atc, ac, cla, ins, p1, p2, data)

    def arpc(self) -> bytes:
        atc, ac, cid = self.tx
        assert cid == 0x80
        arpc = TDES.arpc(HOST.session_key("ac", PAN, PSN, TDES, atc), ac, b"00")
        return apdu(0x00, 0x82, 0x00, 0x00, arpc + b"00")


# -- the commands ----------------------------------------------------------------------------------------
# Each case: prepare(bench) puts the card in its state and returns the command (GET CHALLENGE and the
# terminal's cryptography happen before the hook goes in), the SW of the uncut command, and how many
# commits it makes: 0 (writes nothing), 1, or 2 (anti-tearing: a durable try-counter decrement before the
# comparison, then the restore with the command's effect).

def ssse(make, *setups):
    def prepare(b):
        b.ssse()
        for setup in setups:
            setup(b)
        return make(b.terminal)
    return prepare


def one_wrong(b):
    assert b.send(sh.verify(WRONG)) == b"\x63\xC5"


def pin_blocked(b):
    for left in range(5, -1, -1):
        assert b.send(sh.verify(WRONG)) == bytes((0x63, 0xC0 | left))
    assert b.send(sh.verify(PIN)) == b"\x69\x83"


def auth(key):
    def setup(b):
        b.terminal.authenticate(key)
    return setup


def one_wrong_key(key):
    def setup(b):
        assert b.send(b.terminal.external_authenticate(key, wrong=True)) == b"\x63\xC2"
    return setup


def locked(b):
    b.terminal.do_lock()


def df04(b):
    assert b.send(sh.SELECT_DF04)[-2:] == OK


def medical_active(b):
    """DF04 selected, UK2DF04 authenticated, the SSSE activated by a first settlement record."""
    df04(b)
    b.terminal.authenticate("df04_uk2")
    assert b.send(b.terminal.settlement_total(1234)) == OK


def verified(b):
    assert b.send(sh.verify(PIN)) == OK


def purchased(b):
    """One purchase of 10.00 done (the SSSE activated); DF04 selected, PIN verified."""
    b.terminal.purchase(1000, 600, 400)


def debit(account, self_pay, fund):
    def make(t):
        answer = t.ok(t.init_purchase(account, self_pay, fund))
        return t.debit(answer, account, self_pay, fund)[0]
    return make


def credit(amount):
    def make(t):
        return t.credit(t.ok(t.init_load(amount)), amount)[0]
    return make


def fin(make, activated=False, wrong_pins=0, blocked=False, transaction=True):
    def prepare(b):
        if activated or blocked:
            b.activate_fin()
        if wrong_pins:
            b.fin_select()
            for _ in range(wrong_pins):
                assert b.send(b"\x00\x20\x00\x80\x08" + pin_block(WRONG))[0] in (0x63, 0x69)
        if blocked:
            b.transaction()
            assert b.send(b.script(0x84, 0x1E)) == OK
        if transaction:
            b.transaction()
        else:
            b.fin_select()
        return make(b)
    return prepare


def fin_gpo(b):
    b.fin_select()
    b.ok(GPO)
    return b.first_ac()


def fin_gpo_activated(b):
    b.activate_fin()
    return fin_gpo(b)


PURSE = "purse"  # the cases after whose cuts the purse counters are checked (step 4)
CASES = {
    # SSSE: PIN (P5 §6.3, §6.8, §6.14)
    "ssse-verify-right": (ssse(lambda t: sh.verify(PIN), one_wrong), OK, 2),
    "ssse-verify-wrong": (ssse(lambda t: sh.verify(WRONG)), b"\x63\xC5", 1),
    "ssse-change-pin": (ssse(lambda t: sh.change_pin(PIN, NEW_PIN)), OK, 2),
    "ssse-change-pin-wrong": (ssse(lambda t: sh.change_pin(WRONG, NEW_PIN)), b"\x63\xC5", 1),
    "ssse-pin-unblock": (ssse(lambda t: t.pin_unblock(), pin_blocked, auth("ssse_puk")), OK, 1),
    "ssse-pin-reset": (ssse(lambda t: t.pin_reset(NEW_PIN), one_wrong, auth("ssse_puk")), OK, 1),
    # SSSE: maintenance after BK (P5 §6.1-6.2; docs/card/lifecycle.md §3)
    "ssse-application-block-00": (ssse(lambda t: t.lock(), auth("ssse_bk")), OK, 1),
    "ssse-application-block-01": (ssse(lambda t: t.lock(permanent=True), auth("ssse_bk")), OK, 1),
    "ssse-application-unblock": (ssse(lambda t: t.unlock(), locked), OK, 1),
    "ssse-card-block": (ssse(lambda t: t.card_block(), auth("ssse_bk")), OK, 1),
    # SSSE: EXTERNAL AUTHENTICATE with each kind of key (P7 §6.6; docs/decisions.md S10)
    "ssse-external-authenticate-rk-right": (ssse(lambda t: t.external_authenticate("ssse_rk"),
                                                 one_wrong_key("ssse_rk")), OK, 2),
    "ssse-external-authenticate-rk-wrong": (ssse(lambda t: t.external_authenticate("ssse_rk", wrong=True)),
                                            b"\x63\xC2", 1),
    "ssse-external-authenticate-puk-right": (ssse(lambda t: t.external_authenticate("ssse_puk"),
                                                  one_wrong_key("ssse_puk")), OK, 2),
    "ssse-external-authenticate-puk-wrong": (ssse(lambda t: t.external_authenticate("ssse_puk", wrong=True)),
                                             b"\x63\xC2", 1),
    "ssse-external-authenticate-uk-right": (ssse(lambda t: t.external_authenticate("ssse_uk"),
                                                 one_wrong_key("ssse_uk")), OK, 2),
    "ssse-external-authenticate-bk-right": (ssse(lambda t: t.external_authenticate("ssse_bk")), OK, 0),
    "ssse-external-authenticate-bk-wrong": (ssse(lambda t: t.external_authenticate("ssse_bk", wrong=True)),
                                            b"\x63\xC3", 0),
    "df04-external-authenticate-rk1-right": (ssse(lambda t: t.external_authenticate("df04_rk1"), df04,
                                                  one_wrong_key("df04_rk1")), OK, 2),
    "df04-external-authenticate-uk2-wrong": (ssse(lambda t: t.external_authenticate("df04_uk2", wrong=True),
                                                  df04), b"\x63\xC2", 1),
    # SSSE: updates (P5 §6.12-6.13)
    "ssse-update-record-ef05": (ssse(lambda t: apdu(0x00, 0xDC, 0x07, 5 << 3 | 4, CARD_NUMBER),
                                     auth("ssse_uk")), OK, 1),
    "ssse-update-record-ef05-sm": (ssse(lambda t: t.mac_command(0x04, 0xDC, 0x07, 5 << 3 | 4, CARD_NUMBER),
                                        auth("ssse_uk")), OK, 1),
    "ssse-update-binary-ef07": (ssse(lambda t: apdu(0x00, 0xD6, 0x87, 0x00, bytes(range(32))),
                                     auth("ssse_uk")), OK, 1),
    "ssse-update-binary-ef08-sm": (ssse(lambda t: t.mac_command(0x04, 0xD6, 0x88, 0x10, b"\xFF\xD8\xFF\xE0"),
                                        auth("ssse_uk")), OK, 1),
    "df04-update-record-ef05": (ssse(lambda t: apdu(0x00, 0xDC, 0x87, 5 << 3, HEALTH_RECORD), df04,
                                     auth("df04_uk1")), OK, 1),
    "df04-update-record-92-first": (ssse(lambda t: t.settlement_total(1234), df04, auth("df04_uk2")), OK, 1),
    "df04-update-record-93": (ssse(lambda t: t.settlement_count(1), medical_active), OK, 1),
    "df04-update-record-93-sm": (ssse(lambda t: t.mac_command(0x04, 0xDC, 0x93, 6 << 3, bytes((0x93, 2)) + b"07",
                                                            stk="df04_stk"), medical_active), OK, 1),
    "df04-update-record-ef15": (ssse(lambda t: apdu(0x00, 0xDC, 0x00, 0x15 << 3 | 3, SPECIAL), medical_active),
                                OK, 1),
    # the medical purse (P5 §7, P7 §11-12)
    "df04-initialize-for-purchase": (ssse(lambda t: t.init_purchase(1000, 600, 400), verified, df04), OK, 0),
    "df04-debit-for-purchase-first": (ssse(debit(1000, 600, 400), verified, df04), OK, 1),
    "df04-debit-for-purchase": (ssse(debit(250, 0, 0), verified, df04, purchased), OK, 1),
    "df04-initialize-for-load": (ssse(lambda t: t.init_load(5000), verified, df04), OK, 0),
    "df04-credit-for-load": (ssse(credit(5000), verified, df04, purchased), OK, 1),
    "df04-update-starting-day": (ssse(lambda t: t.update_starting_day("0701"), df04), OK, 1),
    # financial
    "fin-verify-right": (fin(lambda b: b"\x00\x20\x00\x80\x08" + pin_block(FIN_PIN), wrong_pins=1,
                             transaction=False), OK, 2),
    "fin-verify-wrong": (fin(lambda b: b"\x00\x20\x00\x80\x08" + pin_block(WRONG), transaction=False),
                         b"\x63\xC2", 1),
    "fin-first-generate-ac": (fin_gpo_activated, OK, 1),
    "fin-first-generate-ac-new-card": (fin_gpo, OK, 1),
    "fin-external-authenticate": (fin(lambda b: b.arpc(), activated=True), OK, 1),
    "fin-script-pin-change": (fin(lambda b: HOST.pin_change(PAN, PSN, TDES, b.tx[0], b.tx[1], "482915"),
                                  wrong_pins=1), OK, 1),
    "fin-script-pin-unblock": (fin(lambda b: b.script(0x84, 0x24, 0x00, 0x00), wrong_pins=3), OK, 1),
    "fin-script-put-data-df7f": (fin(lambda b: b.script(0x04, 0xDA, 0xDF, 0x7F, b"\x01")), OK, 1),
    "fin-script-put-data-9f14": (fin(lambda b: b.script(0x04, 0xDA, 0x9F, 0x14, b"\x05"), activated=True), OK, 1),
    "fin-script-application-block": (fin(lambda b: b.script(0x84, 0x1E), activated=True), OK, 1),
    "fin-script-application-unblock": (fin(lambda b: b.script(0x84, 0x18), blocked=True), OK, 1),
    "fin-script-card-block": (fin(lambda b: b.script(0x84, 0x16)), OK, 1),
}
PURSE_CASES = {name for name in CASES if "purchase" in name or "load" in name}


def encoded(objects) -> bytes:
    return image.encode(objects, 0)


def tries_decremented(old: bytes, middle: bytes) -> bool:
    """`middle` is `old` with exactly one PIN/key try counter down by one (the anti-tearing state)."""
    before, _ = image.decode(old)
    after, _ = image.decode(middle)
    changed = [name for name in before if before[name].dump() != after[name].dump()]
    if len(changed) != 1 or before.keys() != after.keys():
        return False
    a, b = before[changed[0]].dump(), after[changed[0]].dump()
    return isinstance(a, dict) and "tries" in a and {**a, "tries": a["tries"] - 1} == b


def check_purse_counters(card, command: bytes) -> None:
    """Step 4: the counters the next INITIALIZE offers are the durable ones, above every used sequence number;
    the cut command sent again (a terminal retrying) finds no session and changes nothing (6901)."""
    purse = card.store["df04.purse"]
    records = card.store["df04.ef08"].records
    for kind, counter, proof in ((sh.TYPE_LOAD, purse.online, purse.load_proof),
                                 (sh.TYPE_PURCHASE, purse.offline, purse.purchase_proof)):
        used = [int.from_bytes(r[0:2], "big") for r in records if r[2] == kind]
        assert len(used) == len(set(used)) and all(seq < counter for seq in used), (kind, used, counter)
        assert used == list(range(counter - 1, counter - 1 - len(used), -1)), (kind, used, counter)
        assert (proof[:2] == (counter - 1).to_bytes(2, "big")) if counter else proof == b"", (kind, proof)
    card.random = deterministic_random(7)
    r = SimReader(card)
    r.reset()
    t = sh.Terminal(card, r.transmit)
    t.start()
    t.ok(sh.verify(PIN))
    t.ok(sh.SELECT_DF04)
    if command[0] == 0xB0 and command[1] in (0x2A, 0x2C):
        before = encoded(card.store.objects)
        assert t.send(command) == b"\x69\x01"  # P5 table 49: no INITIALIZE since the power came back
        assert encoded(card.store.objects) == before
    assert int.from_bytes(t.ok(t.init_purchase(1))[14:16], "big") == purse.offline
    assert int.from_bytes(t.ok(t.init_load(1))[4:6], "big") == purse.online


RESULTS = {}


MODES = {"append": FILE_POINTS, "compaction": REWRITE_POINTS}  # the write points of one commit on each path


def prepared(b, prepare, mode: str) -> bytes:
    """The card in the command's state, its commits from now on on the `mode` path; the command."""
    command = prepare(b)
    if mode == "compaction":
        b.card.store.backend.log_limit = 0  # every commit folds the log into a new base: a whole rewrite
    return command


def sweep(name, tmp_path, mode="append") -> collections.Counter:
    if (name, mode) in RESULTS:
        return RESULTS[name, mode]
    prepare, sw, commits = CASES[name]
    points = MODES[mode]

    # 1. the uncut command: its write points, and the image after each commit that landed
    b = Bench(tmp_path / f"{name}-{mode}-count")
    command = prepared(b, prepare, mode)
    states = [encoded(b.card.store.objects)]
    response, hook = count_write_points(b.card, b.send, command, lambda: encoded(b.card.store.objects))
    states += hook.states
    assert response[-2:] == sw
    seen = list(hook.seen)
    assert seen == points * commits, seen
    assert len(states) == commits + 1
    assert encoded(Card.open(b.path, read_only=True).store.objects) == states[-1]
    if commits:
        assert states[-1] != states[0], "the command changed nothing"
    else:
        assert encoded(b.card.store.objects) == states[0], "a command without write points changed the card"
    if commits == 2:
        assert tries_decremented(states[0], states[1])
    if sw != OK and commits:  # a failure that writes: its one commit is the decrement
        assert tries_decremented(states[0], states[1])

    # 2. cut at each write point and reopen
    outcomes = collections.Counter()
    for n in range(1, len(seen) + 1):
        b = Bench(tmp_path / f"{name}-{mode}-cut{n}")
        command = prepared(b, prepare, mode)
        assert encoded(b.card.store.objects) == states[0]
        cut = cut_at(n, b.card, b.send, command, seen, sh.SELECT_SSSE)
        durable = Card.open(b.path, date=CARD_DATE, read_only=True)  # what is durable: the cut card still owns it
        got = encoded(durable.store.objects)
        commits_landed = landed(n, cut, points)
        if got == states[0]:
            outcome = "old"
        elif got == states[-1]:
            outcome = "new"
        elif commits == 2 and got in states[1:-1] and tries_decremented(states[0], got):
            outcome = "intermediate"
        else:
            outcome = "mixed"
        outcomes[outcome] += 1
        assert outcome != "mixed", f"{name}: cut {n} at {cut.point} left a mixed state"
        assert got == states[commits_landed], (name, n, cut.point, outcome)
        # the powered-again in-memory card agrees with the image, and the reopened card powers up
        b.card.store.backend.write_point = None
        b.reader.reset()
        assert b.card.store.journal == [] and encoded(b.card.store.objects) == got
        assert b.card.store.backend.generation == durable.store.backend.generation
        # a cut after the new file was made and before it was renamed leaves it (the next owner tidies)
        left = left_by(cut.point)
        assert files_in(os.path.dirname(b.path)) == left
        b.card.close()  # the cut card leaves: the image's next owner opens what is durable
        with Card.open(b.path, date=CARD_DATE) as reopened:
            assert encoded(reopened.store.objects) == got
            reopened.power_on(1)
            assert reopened.transmit(sh.SELECT_SSSE)[-2:] in (OK, b"\x62\x83", b"\x93\x03", b"\x6A\x81")
        assert files_in(os.path.dirname(b.path)) == left  # powering up wrote nothing
        if name in PURSE_CASES:
            with Card.open(b.path, date=CARD_DATE) as reopened:
                check_purse_counters(reopened, command)
            assert files_in(os.path.dirname(b.path)) == ["card.img"]  # its first commit tidied what the cut left
            outcomes["purse checks"] += 1
    outcomes["cuts"] = len(seen)
    outcomes["commits"] = commits
    print(f"\n{name:40} {mode:10}: {len(seen):2} cuts -> old {outcomes['old']}, intermediate "
          f"{outcomes['intermediate']}, new {outcomes['new']}, mixed {outcomes['mixed']}")
    RESULTS[name, mode] = outcomes
    return outcomes


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", list(CASES))
def test_power_cut_at_every_write_point(name, mode, tmp_path):
    outcomes = sweep(name, tmp_path, mode)
    commits = outcomes["commits"]
    # every cut before a commit's last point (fsync, fsync-folder) keeps its old state; exactly one cut sees
    # the final state
    size = len(MODES[mode])
    assert outcomes["cuts"] == size * commits
    expected = (size - 1, size * (commits - 1), 1, 0) if commits else (0, 0, 0, 0)
    assert (outcomes["old"], outcomes["intermediate"], outcomes["new"], outcomes["mixed"]) == expected


@pytest.mark.parametrize("mode", list(MODES))
def test_power_cut_sweep_totals(tmp_path, mode):
    """The whole table with its totals (each case is swept once per session, whichever test runs it first)."""
    totals = collections.Counter()
    for name in CASES:
        outcomes = sweep(name, tmp_path, mode)
        totals += outcomes
        totals["commands"] += 1
    print(f"\npower-cut sweep, {mode}: {totals['commands']} commands, {totals['cuts']} cuts -> old {totals['old']}, "
          f"new {totals['new']}, intermediate {totals['intermediate']}, mixed {totals['mixed']}; "
          f"{totals['purse checks']} purse-counter checks")
    assert totals["commands"] == len(CASES) == 46
    assert totals["mixed"] == 0
    writing = sum(1 for _, _, commits in CASES.values() if commits)
    anti_tearing_successes = sum(1 for _, sw, commits in CASES.values() if commits == 2)
    assert (writing, anti_tearing_successes) == (42, 7)
    size = len(MODES[mode])
    assert totals["cuts"] == size * writing + size * anti_tearing_successes
    assert (totals["old"], totals["intermediate"], totals["new"]) == (
        (size - 1) * writing, size * anti_tearing_successes, writing)


# -- kill -9 on `sscard serve` under PC/SC load ------------------------------------------------------------

ROUNDS = 10
WRONG_VERIFY = sh.verify(WRONG)
READS = [bytes.fromhex("00B2012C12"), bytes.fromhex("00B2072C0B"), bytes.fromhex("00B2083014")]


def test_kill_9_serve_under_pcsc_load_many_rounds(tmp_path):
    require_pcsc("needs PC/SC")
    from reader.pcsc.reader import PcscError
    from reader.pcsc.serve import ServedProcess

    text = (SHIPPED / "default.toml").read_text(encoding="utf-8").replace("pin_tries = 6", "pin_tries = 15")
    profile = tmp_path / "p.toml"
    profile.write_text(text, encoding="utf-8")
    img = str(tmp_path / "card.img")
    Card.from_profile(str(profile), state=img).close()  # personalised; `sscard serve` owns it from now on
    rng = random.Random(20261121)
    stats = collections.Counter()
    for round_ in range(ROUNDS):
        tries_before = Card.open(img, read_only=True).store["ssse.pin"].tries
        server = ServedProcess([img], control=str(tmp_path / f"control{round_}.sock"))
        reader = server.reader()
        answered = []
        kill_at = rng.randint(1, 12)  # the command during which (or just after which) the kill lands
        killer = None
        try:
            reader.reset()
            assert reader.transmit(sh.SELECT_SSSE)[-2:] == OK
            started = time.monotonic()
            for index in range(1000):
                command = WRONG_VERIFY if rng.random() < 0.7 else rng.choice(READS)
                if index == kill_at:  # a seeded moment within about two commands from now
                    per_command = (time.monotonic() - started) / index
                    killer = threading.Timer(rng.uniform(0, 2 * per_command), server.process.send_signal,
                                             (signal.SIGKILL,))
                    killer.start()
                try:
                    response = reader.transmit(command)
                except PcscError:
                    break
                stats["apdus"] += 1
                if command == WRONG_VERIFY:
                    assert response[0] == 0x63 or response == b"\x69\x83", response.hex()
                    answered.append(response[1] & 0x0F if response[0] == 0x63 else 0)
            else:
                pytest.fail("the served card was never killed")
        finally:
            if killer is not None:
                killer.cancel()
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGKILL)
            server.stop()
            reader.close()
        assert server.process.returncode == -signal.SIGKILL
        # the image always opens (the killed server's lock went with it); tries never grew, and at most the
        # one VERIFY in flight was not answered
        card = Card.open(img)
        tries = card.store["ssse.pin"].tries
        assert tries <= tries_before
        if answered:
            expected = [max(tries_before - 1 - i, 0) for i in range(len(answered))]
            assert answered == expected, (tries_before, answered)
            assert max(answered[-1] - 1, 0) <= tries <= answered[-1]
        else:
            assert max(tries_before - 1, 0) <= tries <= tries_before
        stats["rounds"] += 1
        stats["verifies answered"] += len(answered)
        stats["in flight counted"] += (answered[-1] if answered else tries_before) - tries
        # between rounds the issuer unblocks the PIN (PUK authentication, then PIN UNBLOCK 84 24 00 00;
        # in-process, not under test)
        reader = SimReader(card)
        reader.reset()
        terminal = sh.Terminal(card, reader.transmit, profile=str(profile))
        terminal.start()
        terminal.do_pin_unblock()
        assert Card.open(img, read_only=True).store["ssse.pin"].tries == 15
        card.close()  # the next round's server owns the image
    print(f"\nkill -9 under PC/SC load: {stats['rounds']} rounds, {stats['apdus']} APDUs answered, "
          f"{stats['verifies answered']} wrong VERIFYs answered, {stats['in flight counted']} in-flight tries "
          f"counted, tries never grew")
    assert stats["rounds"] == ROUNDS
