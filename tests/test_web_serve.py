"""What the bench view needs of `sscard serve` (reader/pcsc/serve.py), without the view:

- the control language's `reset [N]` (a warm reset of a powered card, ISO/IEC 7816-3 §6.2.3: its
  volatile state goes, the power-up rules run - the activation deadline of
  docs/card/lifecycle.md §2) and `date [N] YYYY-MM-DD|today` (the simulated date, kept across
  `switch`);
- `Server.call(line, reply)`, the control channel's entry for another thread: the line runs in
  the serve loop like any other and its reply comes back; `on_command` sees every line run from
  any channel, `on_tick` each turn of the loop, `Slot.on_power` vpcd's power changes.
"""

import datetime
import socket
import threading
import time

import pytest
from helpers import CARD_DATE, SELECT_DF04, SELECT_SSSE, VERIFY_OK, free_port

from chip import Card
from reader.pcsc.serve import Server, Slot
from reader.pcsc.vpcd import Apdu, PowerOff, PowerOn, Reset

READ_DF04_REGION = bytes.fromhex("00B2842805")  # DF04 EF05 item 84: PIN or RK1DF04 (V2 table 7)


@pytest.fixture
def served(tmp_path):
    """A server with one card whose vpcd nobody listens on (it stays 'waiting for vpcd')."""
    image = str(tmp_path / "card.img")
    Card.from_profile(state=image, date=CARD_DATE).close()
    slot = Slot(0, image, "127.0.0.1", free_port())
    server = Server([slot])
    yield server, slot
    server.close()


def powered(slot) -> None:
    """As vpcd does when pcscd takes the card: connected, powered up."""
    slot.sock = socket.socket()  # stands for the vpcd connection (in_reader)
    slot.handle(PowerOn())


def test_date_sets_shows_and_gives_back_the_hosts_today(served):
    server, slot = served
    assert server.command("date") == f"card 0: date {datetime.date.today()} (the host's today)"
    assert server.command("date 0 2027-09-18") == "ok card 0 date 2027-09-18"
    assert slot.card.today == datetime.date(2027, 9, 18) and slot.date == datetime.date(2027, 9, 18)
    assert server.command("date") == "card 0: date 2027-09-18 (simulated)"
    assert server.command("date today") == f"ok card 0 date {datetime.date.today()} (the host's today)"
    assert slot.date is None and slot.card.today == datetime.date.today()


@pytest.mark.parametrize(("line", "reply"), [
    ("date 2027-13-01", "error: not a date YYYY-MM-DD: '2027-13-01' (date [N] YYYY-MM-DD|today)"),
    ("date 1949-12-31", "error: 1949-12-31 is a date the simulated card cannot use: it keeps dates as YYMMDD "
                        "(EMV two-digit years), so 1950-01-01 to 2049-12-31"),
    ("date 2027-09-18 now", "error: date [N] YYYY-MM-DD|today"),
    ("date 3 2027-09-18", "error: no card 3 (cards 0-0)"),
])
def test_a_bad_date_is_one_line_and_changes_nothing(served, line, reply):
    server, slot = served
    assert server.command(line) == reply
    assert slot.date is None


def test_the_date_stays_with_the_slot_across_a_switch(served, tmp_path):
    server, slot = served
    other = str(tmp_path / "other.img")
    Card.from_profile(state=other, date=CARD_DATE).close()
    server.command("date 2027-01-02")
    slot.switch(other)
    assert slot.card.today == datetime.date(2027, 1, 2)


def test_reset_needs_a_card_in_its_reader_and_powered(served):
    server, slot = served
    assert server.command("remove") == "ok removed card 0"
    assert server.command("reset") == "error: card 0 is not in its reader (insert 0)"
    slot.sock = socket.socket()
    assert server.command("reset 0") == ("error: card 0 is not powered (its reader powers it up when a client "
                                         "connects)")


def test_reset_is_a_warm_reset_volatile_state_goes(served):
    """A PIN verified before the reset no longer opens DF04 EF05 after it (P5 §6.14: 6982)."""
    server, slot = served
    powered(slot)
    slot.handle(Apdu(bytes.fromhex(SELECT_SSSE)))
    slot.handle(Apdu(bytes.fromhex("00C000001E")))
    assert slot.handle(Apdu(bytes.fromhex(VERIFY_OK))) == b"\x90\x00"
    slot.handle(Apdu(bytes.fromhex(SELECT_DF04)))
    assert slot.handle(Apdu(READ_DF04_REGION))[-2:] == b"\x90\x00"
    reply = server.command("reset")
    assert reply == f"ok card 0 reset, ATR {slot.card.atr.hex(' ').upper()}"
    assert slot.card.powered and slot.card.protocol == 0  # the card's own protocol kept
    slot.handle(Apdu(bytes.fromhex(SELECT_DF04)))
    assert slot.handle(Apdu(READ_DF04_REGION)) == bytes.fromhex("6982")


def test_the_deadline_lock_takes_effect_at_the_reset_after_the_date(served):
    server, slot = served
    powered(slot)
    ssse = slot.card.applets["ssse"]
    assert server.command(f"date {CARD_DATE + datetime.timedelta(days=300)}").startswith("ok")
    server.command("reset")
    assert ssse.describe()["lock"] == "none"  # the last day of the 300
    assert server.command(f"date {CARD_DATE + datetime.timedelta(days=301)}").startswith("ok")
    assert ssse.describe()["lock"] == "none"  # the rule runs at power-up
    server.command("reset")
    assert ssse.describe()["lock"] == "locked (deadline)"


def test_the_power_hook_sees_vpcds_power_changes(served):
    _, slot = served
    seen = []
    slot.on_power = lambda s, what: seen.append((s, what))
    slot.handle(PowerOn())
    slot.handle(Reset())
    slot.handle(PowerOff())
    slot.handle(Apdu(bytes.fromhex(SELECT_SSSE)))  # vpcd skipped the power-up: the card powers on
    assert seen == [(slot, "on"), (slot, "reset"), (slot, "off"), (slot, "on")]


def test_call_runs_a_line_in_the_loop_from_another_thread(served):
    server, slot = served
    seen, ticks, replies = [], [], []
    server.on_command = lambda line, reply: seen.append((line, reply, threading.current_thread().name))
    server.on_tick = lambda: ticks.append(1)
    loop = threading.Thread(target=server.run, name="serve loop")
    loop.start()
    try:
        done = threading.Event()

        def reply(text):
            replies.append((text, threading.current_thread().name))
            if len(replies) == 3:
                done.set()

        for line in ("date 2027-09-18", "fault sw 6A82 ins B2 once", "remove"):
            server.call(line, reply)
        assert done.wait(5)
    finally:
        server.stop()
        loop.join(5)
    assert replies == [("ok card 0 date 2027-09-18", "serve loop"), ("ok card 0 fault sw 6A82 ins B2 once", "serve loop"),
                       ("ok removed card 0", "serve loop")]
    assert [(line, reply) for line, reply, _ in seen] == [
        ("date 2027-09-18", "ok card 0 date 2027-09-18"), ("fault sw 6A82 ins B2 once", "ok card 0 fault sw 6A82 ins B2 once"),
        ("remove", "ok removed card 0")]
    assert {thread for *_, thread in seen} == {"serve loop"} and ticks
    assert not slot.inserted


def test_call_after_the_loop_stopped_does_not_raise(served):
    server, _ = served
    server.close()
    server.call("remove", lambda text: pytest.fail("no loop: no reply"))
    time.sleep(0.05)


def test_a_card_in_the_ccid_reader_feeds_the_view_its_power_and_apdus(tmp_path):
    """The bench view's stream of a `--ccid` card: the firmware's IccPowerOn/Off and each APDU the card's
    ends of the contacts put together from the driver's TPDUs (reader/ccid/firmware.py WatchedCard)."""
    from reader.ccid import messages as m
    from reader.pcsc.serve import CcidReader, CcidSlot
    from reader.web.bench import Bench
    from reader.web.feed import APDU, POWER_OFF, RESET

    image = str(tmp_path / "card.img")
    Card.from_profile(state=image, date=CARD_DATE).close()
    ccid = CcidReader(str(tmp_path / "gempc"))
    slot = CcidSlot(0, image, ccid)
    server = Server([slot])
    try:
        bench = Bench("127.0.0.1", 0)
        bench.hook(server)
        slot.connect()
        firmware = ccid.firmware
        for kind, data in ((m.ICC_POWER_ON, b""), (m.XFR_BLOCK, bytes.fromhex(SELECT_SSSE)),
                           (m.XFR_BLOCK, bytes.fromhex("00C000001E")), (m.ICC_POWER_OFF, b"")):
            assert not firmware.handle(m.Message(kind, 0, 1, bytes(3), data)).failed
        events = [(kind, fields) for _, kind, _, fields in bench.feeds[0].history]
        assert [kind for kind, _ in events] == [RESET, APDU, APDU, POWER_OFF]
        assert events[0][1][0] == slot.card.atr
        assert events[1][1][:2] == (bytes.fromhex(SELECT_SSSE), bytes.fromhex("611E"))
        assert events[2][1][1][-2:] == b"\x90\x00"
        slot.on_apdu = None  # nobody watches: the firmware gives the card its ends directly again
        assert firmware.on_apdu is None
    finally:
        server.close()
