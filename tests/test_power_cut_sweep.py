"""An automatic power-cut sweep over EVERY state-changing command of both applications.

For each command (SSSE: VERIFY right/wrong, CHANGE PIN right/wrong, RELOAD PIN, PIN UNBLOCK,
APPLICATION BLOCK 00/01, APPLICATION UNBLOCK, CARD BLOCK, EXTERNAL AUTHENTICATE right/wrong,
APPEND RECORD, UPDATE RECORD; financial: VERIFY right/wrong, first GENERATE AC, EXTERNAL
AUTHENTICATE (ARPC), issuer scripts PIN CHANGE, PIN UNBLOCK, PUT DATA DF7F/9F14, APPLICATION
BLOCK/UNBLOCK, CARD BLOCK), on an image-backed card:

1. run it once through a hook that never cuts: count its write points (`hook.seen`) and keep
   the image (`chip.image.encode(objects, 0)`) after each commit that landed;
2. for every write point n, on a fresh card brought to the same state: cut the power there
   (`cut_power_at(n)`), reopen the image with `Card.open`, encode its objects;
3. the result must be exactly the old state or the new state, or - only for a command with
   anti-tearing (a success after a durable try-counter decrement) - the documented
   intermediate state "PIN/key try counter decremented by one"; never a mix. Which one it is
   follows from how many commits landed before the cut.

The MACs, cryptograms and ARPCs are real: reader.psam.Psam (SSSE, through
reader.ssse_terminal.SsseTerminal) and reader.issuer.IssuerHost (financial). Run with
`pytest -s` for the counts.

The last test kills `sscard serve` with SIGKILL at seeded random moments while a PC/SC
client sends wrong VERIFYs and reads, over several rounds (skipped without a running pcscd).
"""

import collections
import datetime
import os
import random
import signal
import threading
import time

import pytest

from chip import Card, CardNotPowered, PowerLoss, ber, image
from chip.crypto import TDES
from chip.financial import AID, pin_block
from chip.image import cut_power_at
from chip.pin import pack
from chip.profile import SHIPPED
from reader import SimReader
from reader.issuer import IssuerHost
from reader.payment_terminal import PaymentTerminal
from reader.psam import Psam
from reader.ssse_terminal import SsseTerminal

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

D = datetime.date(2026, 11, 21)
FILE_POINTS = ["open-tmp", "write-half", "fsync-tmp", "rename", "fsync-folder"]
OK = b"\x90\x00"
SELECT_SSSE = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
SELECT_DF04 = bytes.fromhex("00A4010C02DF04")
SELECT_AID = b"\x00\xA4\x04\x00\x08" + AID + b"\x00"
GPO = bytes.fromhex("80A800000B830900000000100001560000")
CDOL1 = bytes.fromhex("000000001000" "000000000000" "0156" "0000000000" "0156" "261121" "00" "11223344")
PIN, NEW_PIN, WRONG = "123456", "246810", "999999"
FIN_PIN = "000000"
H_CODE = "H11010100001".encode().hex().upper()
VISIT_1 = bytes.fromhex("5115" + H_CODE + "01" + "20261121" + "000004D2")
VISIT_2 = bytes.fromhex("5115" + H_CODE + "02" + "20261121" + "00002710")
HOST = IssuerHost("default")
PAN, PSN = HOST.profile.financial.pan, HOST.profile.financial.psn


def apdu(cla, ins, p1, p2, data=b"", le=None):
    return bytes((cla, ins, p1, p2)) + (bytes((len(data),)) + data if data else b"") + (
        b"" if le is None else bytes((le,)))


class Bench:
    """A fresh image-backed card on D, powered, with an SSSE terminal (and its PSAM) on it."""

    psam_card = None

    def __init__(self, folder):
        folder.mkdir()
        self.path = str(folder / "card.img")
        self.card = Card.from_profile(state=self.path, date=D)
        self.reader = SimReader(self.card)
        if Bench.psam_card is None:
            Bench.psam_card = Card.psam(date=D)
        self.psam = Psam(SimReader(Bench.psam_card))
        self.terminal = SsseTerminal(self.reader, self.psam)
        self.tx = None  # (atc, ac) of the financial transaction's first GENERATE AC

    def send(self, command: bytes) -> bytes:
        return self.reader.transmit(command)

    def ok(self, command: bytes) -> bytes:
        response = self.send(command)
        assert response[-2:] in (OK, b"\x62\x83"), (command.hex().upper(), response.hex().upper())
        return response[:-2]

    # -- SSSE ------------------------------------------------------------------------------------
    def ssse(self):
        assert self.terminal.start() == 0x9000

    def mac_command(self, cla, ins, p1, p2, body=b"", key="stk") -> bytes:
        t = self.terminal
        iv = t.challenge().ljust(t.block, b"\x00")
        header = bytes((cla, ins, p1, p2, len(body) + 4))
        return header + body + self.psam.mac4(key, t.algorithm_flag, t.diversification, iv, header + body)

    def ext_auth(self, wrong=False) -> bytes:
        t = self.terminal
        cryptogram = self.psam.external_auth_cryptogram(t.algorithm_flag, t.diversification, t.challenge())
        if wrong:
            cryptogram = bytes((cryptogram[0] ^ 0x01,)) + cryptogram[1:]
        return apdu(0x00, 0x82, 0x00, 0x0A, cryptogram)

    # -- financial -----------------------------------------------------------------------------
    def activate_fin(self):
        host = IssuerHost("default")
        host.queue(PAN, IssuerHost.activation(FIN_PIN))
        outcome = PaymentTerminal(SimReader(self.card), date=D).purchase(0, host=host)
        assert [sw for _, sw in outcome.script_results] == [0x9000, 0x9000]

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
# Each case: prepare(bench) puts the card in its state and returns the command (MACs computed
# before the hook goes in), the SW of the uncut command, and whether it has anti-tearing (a durable
# try-counter decrement before the comparison: 2 commits on success).

def ssse_wrong_pins(n):
    def prepare(b):
        b.ssse()
        for _ in range(n):
            assert b.send(apdu(0x00, 0x20, 0x00, 0x00, pack(WRONG)))[0] in (0x63, 0x69)
    return prepare


def ssse(make, setup=None):
    def prepare(b):
        b.ssse()
        if setup:
            setup(b)
        return make(b)
    return prepare


def locked(b):
    assert b.terminal.lock() == 0x9000


def pin_blocked(b):
    for _ in range(6):
        b.send(apdu(0x00, 0x20, 0x00, 0x00, pack(WRONG)))
    assert b.send(apdu(0x00, 0x20, 0x00, 0x00, pack(PIN))) == b"\x69\x83"


def one_wrong(b):
    assert b.send(apdu(0x00, 0x20, 0x00, 0x00, pack(WRONG))) == b"\x63\xC5"


def one_wrong_rk(b):
    assert b.send(b.ext_auth(wrong=True)) == b"\x63\xC2"


def medical(b):
    assert b.send(SELECT_DF04) == OK
    assert b.send(b.ext_auth()) == OK


def medical_with_record(b):
    medical(b)
    assert b.send(apdu(0x00, 0xE2, 0x00, 0xA8, VISIT_1)) == OK


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


CASES = {
    # SSSE
    "ssse-verify-right": (ssse(lambda b: apdu(0x00, 0x20, 0x00, 0x00, pack(PIN)), one_wrong), OK, True),
    "ssse-verify-wrong": (ssse(lambda b: apdu(0x00, 0x20, 0x00, 0x00, pack(WRONG))), b"\x63\xC5", False),
    "ssse-change-pin": (ssse(lambda b: apdu(0x80, 0x5E, 0x01, 0x00, pack(PIN) + b"\xFF" + pack(NEW_PIN))), OK, True),
    "ssse-change-pin-wrong": (ssse(lambda b: apdu(0x80, 0x5E, 0x01, 0x00, pack(WRONG) + b"\xFF" + pack(NEW_PIN))),
                              b"\x63\xC5", False),
    "ssse-reload-pin": (ssse(lambda b: b.mac_command(0x80, 0x5E, 0x00, 0x00, pack(NEW_PIN)), one_wrong), OK, False),
    "ssse-pin-unblock": (ssse(lambda b: b.mac_command(0x84, 0x24, 0x00, 0x00, key="puk"), pin_blocked), OK, False),
    "ssse-application-block-00": (ssse(lambda b: b.mac_command(0x84, 0x1E, 0x00, 0x00)), OK, False),
    "ssse-application-block-01": (ssse(lambda b: b.mac_command(0x84, 0x1E, 0x00, 0x01)), OK, False),
    "ssse-application-unblock": (ssse(lambda b: b.mac_command(0x84, 0x18, 0x00, 0x00), locked), OK, False),
    "ssse-card-block": (ssse(lambda b: b.mac_command(0x84, 0x16, 0x00, 0x00)), OK, False),
    "ssse-external-authenticate-right": (ssse(lambda b: b.ext_auth(), one_wrong_rk), OK, True),
    "ssse-external-authenticate-wrong": (ssse(lambda b: b.ext_auth(wrong=True)), b"\x63\xC2", False),
    "ssse-append-record": (ssse(lambda b: apdu(0x00, 0xE2, 0x00, 0xA8, VISIT_1), medical), OK, False),
    "ssse-update-record": (ssse(lambda b: apdu(0x00, 0xDC, 0x01, 0xAC, VISIT_2), medical_with_record), OK, False),
    # financial
    "fin-verify-right": (fin(lambda b: b"\x00\x20\x00\x80\x08" + pin_block(FIN_PIN), wrong_pins=1,
                             transaction=False), OK, True),
    "fin-verify-wrong": (fin(lambda b: b"\x00\x20\x00\x80\x08" + pin_block(WRONG), transaction=False),
                         b"\x63\xC2", False),
    "fin-first-generate-ac": (fin_gpo_activated, OK, False),
    "fin-first-generate-ac-new-card": (fin_gpo, OK, False),
    "fin-external-authenticate": (fin(lambda b: b.arpc(), activated=True), OK, False),
    "fin-script-pin-change": (fin(lambda b: HOST.pin_change(PAN, PSN, TDES, b.tx[0], b.tx[1], "482915"),
                                  wrong_pins=1), OK, False),
    "fin-script-pin-unblock": (fin(lambda b: b.script(0x84, 0x24, 0x00, 0x00), wrong_pins=3), OK, False),
    "fin-script-put-data-df7f": (fin(lambda b: b.script(0x04, 0xDA, 0xDF, 0x7F, b"\x01")), OK, False),
    "fin-script-put-data-9f14": (fin(lambda b: b.script(0x04, 0xDA, 0x9F, 0x14, b"\x05"), activated=True), OK, False),
    "fin-script-application-block": (fin(lambda b: b.script(0x84, 0x1E), activated=True), OK, False),
    "fin-script-application-unblock": (fin(lambda b: b.script(0x84, 0x18), blocked=True), OK, False),
    "fin-script-card-block": (fin(lambda b: b.script(0x84, 0x16)), OK, False),
}


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


RESULTS = {}


def sweep(name, tmp_path) -> collections.Counter:
    if name in RESULTS:
        return RESULTS[name]
    prepare, sw, anti_tearing = CASES[name]

    # 1. the uncut command: its write points, and the image after each commit that landed
    b = Bench(tmp_path / f"{name}-count")
    command = prepare(b)
    states = [encoded(b.card.store.objects)]
    hook = cut_power_at(10**9)

    def record(point, landed):
        hook(point, landed)
        if landed:
            states.append(encoded(b.card.store.objects))

    b.card.store.backend.write_point = record
    assert b.send(command)[-2:] == sw
    seen = list(hook.seen)
    commits = 2 if anti_tearing and sw == OK else 1
    assert seen == FILE_POINTS * commits, seen
    assert len(states) == commits + 1
    assert states[-1] != states[0], "the command changed nothing"
    assert encoded(Card.open(b.path).store.objects) == states[-1]
    if commits == 2:
        assert tries_decremented(states[0], states[1])
    if sw != OK:  # a failure with anti-tearing: its one commit is the decrement
        assert tries_decremented(states[0], states[1])

    # 2. cut at each write point and reopen
    outcomes = collections.Counter()
    for n in range(1, len(seen) + 1):
        b = Bench(tmp_path / f"{name}-cut{n}")
        command = prepare(b)
        assert encoded(b.card.store.objects) == states[0]
        b.card.store.backend.write_point = cut_power_at(n)
        with pytest.raises(PowerLoss) as excinfo:
            b.send(command)
        cut = excinfo.value
        assert cut.point == seen[n - 1] and not b.card.powered
        with pytest.raises(CardNotPowered):
            b.send(SELECT_SSSE)
        durable = Card.open(b.path, date=D)
        got = encoded(durable.store.objects)
        landed = (n - 1) // len(FILE_POINTS) + cut.landed
        if got == states[0]:
            outcome = "old"
        elif got == states[-1]:
            outcome = "new"
        elif anti_tearing and got in states[1:-1] and tries_decremented(states[0], got):
            outcome = "intermediate"
        else:
            outcome = "mixed"
        outcomes[outcome] += 1
        assert outcome != "mixed", f"{name}: cut {n} at {cut.point} left a mixed state"
        assert got == states[landed], (name, n, cut.point, outcome)
        # the powered-again in-memory card agrees with the image, and the reopened card powers up
        b.card.store.backend.write_point = None
        b.reader.reset()
        assert b.card.store.journal == [] and encoded(b.card.store.objects) == got
        durable.power_on()
        assert durable.transmit(SELECT_SSSE)[-2:] in (OK, b"\x62\x83", b"\x6A\x81")
        assert sorted(os.listdir(os.path.dirname(b.path))) in (["card.img"], ["card.img", "card.img.tmp"])
    outcomes["cuts"] = len(seen)
    outcomes["commits"] = commits
    print(f"\n{name:34}: {len(seen):2} cuts -> old {outcomes['old']}, intermediate {outcomes['intermediate']}, "
          f"new {outcomes['new']}, mixed {outcomes['mixed']}")
    RESULTS[name] = outcomes
    return outcomes


@pytest.mark.parametrize("name", list(CASES))
def test_power_cut_at_every_write_point(name, tmp_path):
    outcomes = sweep(name, tmp_path)
    commits = outcomes["commits"]
    # every cut before a commit's fsync-folder keeps its old state; exactly one cut sees the final state
    assert outcomes["cuts"] == 5 * commits
    assert (outcomes["old"], outcomes["intermediate"], outcomes["new"], outcomes["mixed"]) == (
        4, 5 * (commits - 1), 1, 0)


def test_power_cut_sweep_totals(tmp_path):
    """The whole table with its totals (each case is swept once per session, whichever test runs it first)."""
    totals = collections.Counter()
    for name in CASES:
        outcomes = sweep(name, tmp_path)
        totals += outcomes
        totals["commands"] += 1
    print(f"\npower-cut sweep: {totals['commands']} commands, {totals['cuts']} cuts -> old {totals['old']}, "
          f"new {totals['new']}, intermediate {totals['intermediate']}, mixed {totals['mixed']}")
    assert totals["commands"] == len(CASES) == 26
    assert totals["mixed"] == 0
    anti_tearing_successes = sum(1 for prepare, sw, anti in CASES.values() if anti and sw == OK)
    assert anti_tearing_successes == 4
    assert totals["cuts"] == 5 * len(CASES) + 5 * anti_tearing_successes
    assert (totals["old"], totals["intermediate"], totals["new"]) == (
        4 * len(CASES), 5 * anti_tearing_successes, len(CASES))


# -- kill -9 on `sscard serve` under PC/SC load ------------------------------------------------------------

ROUNDS = 10
WRONG_VERIFY = bytes.fromhex("0020000003999999")
READS = [bytes.fromhex("00B2012C00"), bytes.fromhex("00B2072C00"), bytes.fromhex("00B2083400")]


def _pcsc_missing() -> list[str]:
    try:
        from reader.pcscd import missing, readers
    except ImportError as exc:  # pyscard absent
        return [str(exc)]
    lacks = missing()
    if not lacks and readers() is None:
        lacks.append("a running pcscd (python -m reader.pcscd run -- pytest)")
    return lacks


def test_kill_9_serve_under_pcsc_load_many_rounds(tmp_path):
    lacks = _pcsc_missing()
    if lacks:
        pytest.skip("needs PC/SC: " + "; ".join(lacks))
    from reader.pcsc import PcscError
    from reader.serve import ServedProcess

    text = (SHIPPED / "default.toml").read_text(encoding="utf-8").replace("pin_tries = 6", "pin_tries = 15")
    profile = tmp_path / "p.toml"
    profile.write_text(text, encoding="utf-8")
    img = str(tmp_path / "card.img")
    Card.from_profile(str(profile), state=img)
    rng = random.Random(20261121)
    stats = collections.Counter()
    for round_ in range(ROUNDS):
        tries_before = Card.open(img).store["ssse.pin"].tries
        server = ServedProcess([img], control=str(tmp_path / f"control{round_}.sock"))
        reader = server.reader()
        answered = []
        kill_at = rng.randint(1, 12)  # the command during which (or just after which) the kill lands
        killer = None
        try:
            reader.reset()
            assert reader.transmit(SELECT_SSSE)[-2:] == OK
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
        # the image always opens; tries never grew, and at most the one VERIFY in flight was not answered
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
        # between rounds the issuer unblocks the PIN (PIN UNBLOCK under the PUK, in-process, not under test)
        terminal = SsseTerminal(SimReader(card), Psam(SimReader(Card.psam(str(profile)))))
        assert terminal.start() == 0x9000
        assert terminal.unblock_pin() == 0x9000
        assert Card.open(img).store["ssse.pin"].tries == 15
    print(f"\nkill -9 under PC/SC load: {stats['rounds']} rounds, {stats['apdus']} APDUs answered, "
          f"{stats['verifies answered']} wrong VERIFYs answered, {stats['in flight counted']} in-flight tries "
          f"counted, tries never grew")
    assert stats["rounds"] == ROUNDS
