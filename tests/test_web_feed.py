"""The bench view's stream without a browser or a web server (reader.web.feed, reader.web.bench).

- the hand-over from the serve thread is bounded: a card keeps its newest HISTORY events; a page
  gets at most DRAIN_MOST new entries per drain and keeps the newest ENTRY_BOUND; what it is not
  shown is counted and said (a `gap` entry, after which the decoder starts afresh: it no longer
  knows the selection);
- the serve thread wakes the web loop only for a watched card, once per batch however many
  events it puts meanwhile, and the drain comes DRAIN_DELAY later;
- a watcher gets each entry once; the decoder runs only while someone watches;
- a PIN command's data is withheld (ISO/IEC 7816-4 §11.5.6 VERIFY, LD/T 32 P5 §6.3 CHANGE PIN);
- the export is a trace that `reader.traces.format.parse` accepts and that replays on the card
  it was taken from, a fault armed on the control channel included (`! fault`).
"""

import datetime
import re

import pytest
from helpers import CARD_DATE, SELECT_SSSE, VERIFY_BAD, VERIFY_OK

from chip import Card
from chip.faults import FaultPlan
from reader.errors import InputError
from reader.traces.format import parse
from reader.traces.replay import replay, sim_reader_for
from reader.web.bench import Bench, parse_address
from reader.web.feed import (
    APDU,
    CONTROL,
    DRAIN_DELAY,
    DRAIN_MOST,
    ENTRY_BOUND,
    GAP,
    HISTORY,
    POWER_OFF,
    RESET,
    Feed,
    control_trace,
    masked,
    withheld,
)

READ_EF05_01 = bytes.fromhex("00B2012C12")  # READ RECORD 01 of EF05 (SFI 5), Le 18: the identification code
OK = b"\x90\x00"


class Loop:
    """Stands for the web loop: records the wake-ups the serve thread asks for."""

    def __init__(self):
        self.calls = []

    def call_soon_threadsafe(self, callback, *args):
        self.calls.append((callback, args))

    def call_later(self, delay, callback):
        raise AssertionError("the serve thread schedules through call_soon_threadsafe only")


def exchange(feed: Feed, card: Card, hexapdu: str, seconds: float = 0.0002) -> bytes:
    apdu = bytes.fromhex(hexapdu)
    response = card.transmit(apdu)
    feed.put(APDU, 1.0, apdu, response, seconds)
    return response


def reads(feed: Feed, n: int) -> None:
    for _ in range(n):
        feed.put(APDU, 1.0, READ_EF05_01, OK, 0.0001)


def test_a_flood_keeps_the_newest_events_and_counts_what_the_page_is_not_shown():
    feed = Feed(0)
    feed.watch()
    flood = HISTORY + 300
    reads(feed, flood)
    assert len(feed.history) == HISTORY
    feed.drain()
    gap, *shown = feed.entries
    assert gap.kind == GAP and gap.json()["dropped"] == flood - DRAIN_MOST
    assert len(shown) == DRAIN_MOST and feed.dropped == flood - DRAIN_MOST
    ids = [entry.id for entry in feed.entries]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    reads(feed, 7)  # within the bound: every one shown, no gap
    feed.drain()
    assert [entry.kind for entry in feed.entries][-7:] == [APDU] * 7 and feed.dropped == flood - DRAIN_MOST


def test_the_serve_thread_wakes_the_web_loop_once_per_batch_and_only_when_watched():
    bench = Bench()
    bench.bind([], lambda line, reply: None)
    feed = Feed(0, bench._wake)
    bench.feeds = [feed]
    loop = Loop()
    bench.loop = loop
    reads(feed, 1000)
    assert loop.calls == []  # nobody watches: one append each, nothing else
    feed.watch()
    reads(feed, 1000)
    assert loop.calls == [(loop.call_later, (DRAIN_DELAY, bench.drain))]  # one, and the drain comes later
    bench.drain()
    assert len(feed.entries) == ENTRY_BOUND
    feed.put(APDU, 1.0, READ_EF05_01, OK, 0.0)
    assert len(loop.calls) == 2


def test_without_a_web_loop_the_history_waits_in_its_bound():
    bench = Bench()
    bench.bind([], lambda line, reply: None)
    feed = Feed(0, bench._wake)
    bench.feeds = [feed]
    feed.watch()
    feed.put(APDU, 1.0, READ_EF05_01, OK, 0.0)
    assert len(feed.history) == 1 and not feed.entries
    bench.started(Loop())  # the loop starts: what waited is drained at once
    assert len(feed.entries) == 1


def test_a_watcher_gets_each_entry_once_and_the_newest_when_behind():
    feed = Feed(0)
    watcher = feed.watch()
    reads(feed, DRAIN_MOST)
    feed.drain()
    assert watcher.ready.is_set()
    _, batch, skipped = feed.news(watcher)
    assert [entry["id"] for entry in batch] == list(range(1, DRAIN_MOST + 1)) and skipped == 0
    assert feed.news(watcher)[1] == []
    for _ in range(ENTRY_BOUND // DRAIN_MOST + 2):  # drains faster than this watcher reads
        reads(feed, DRAIN_MOST)
        feed.drain()
    _, batch, skipped = feed.news(watcher)
    assert len(batch) == ENTRY_BOUND and skipped == 2 * DRAIN_MOST


def test_the_state_goes_to_a_watcher_once_per_change():
    feed = Feed(0)
    watcher = feed.watch()
    feed.put_state({"powered": True})
    feed.drain()
    assert feed.news(watcher)[0] == {"powered": True}
    assert feed.news(watcher)[0] is None
    feed.drain()  # nothing new
    assert feed.news(watcher)[0] is None


def test_the_decoder_runs_only_while_watched():
    card = Card.from_profile(date=CARD_DATE)
    feed = Feed(0)
    feed.put(RESET, 1.0, card.power_on(1), 1)
    exchange(feed, card, SELECT_SSSE)
    exchange(feed, card, READ_EF05_01.hex())
    feed.drain()
    assert not feed.entries  # nobody watches: the events wait in the history, undecoded
    watcher = feed.watch()  # decodes the history, from the start
    reset, select, read = feed.entries
    assert reset.kind == RESET and select.lines[0].startswith("SELECT by DF name sx1.sh.社会保障")
    assert read.json()["title"] == "READ RECORD 01 of EF05 (SFI 5) — card identification code"
    assert read.json()["answer"][0] == "SW 9000 OK"
    feed.unwatch(watcher)
    exchange(feed, card, READ_EF05_01.hex())
    feed.drain()
    assert len(feed.entries) == 3


def test_events_not_shown_still_move_the_selection_but_lost_ones_leave_the_decoder_afresh():
    card = Card.from_profile(date=CARD_DATE)
    card.power_on(1)
    feed = Feed(0)
    feed.watch()
    exchange(feed, card, SELECT_SSSE)
    feed.drain()
    before = feed.decoder
    exchange(feed, card, "00A4040006D15600000503")  # SELECT DF04, among the events not shown
    reads(feed, DRAIN_MOST + 3)
    feed.drain()
    gap = feed.entries[-DRAIN_MOST - 1]
    assert gap.kind == GAP and gap.fields == (4,) and feed.decoder is before
    assert feed.entries[-1].json()["title"] == "READ RECORD 01 of DF04 EF05 (SFI 5) — medical basic data"
    reads(feed, HISTORY + 1)  # more than the history holds before the next drain
    feed.drain()
    assert feed.decoder is not before
    assert feed.entries[-1].json()["title"] != "READ RECORD 01 of DF04 EF05 (SFI 5) — medical basic data"


@pytest.mark.parametrize(("apdu", "shown"), [
    (VERIFY_OK, "3 data bytes withheld: VERIFY carries a PIN"),
    ("002000800824123456FFFFFFFF", "8 data bytes withheld: VERIFY carries a PIN"),  # the financial offline PIN
    ("805E010007123456FF654321", "7 data bytes withheld: CHANGE PIN carries a PIN"),
    ("0024000006123456654321", "6 data bytes withheld: CHANGE REFERENCE DATA carries a PIN"),
    ("002C000003123456", "3 data bytes withheld: RESET RETRY COUNTER carries a PIN"),
])
def test_a_pin_commands_data_is_withheld(apdu, shown):
    assert withheld(bytes.fromhex(apdu)) == shown


@pytest.mark.parametrize("apdu", ["00200000", "00B2012C12", SELECT_SSSE])
def test_other_commands_are_shown_whole(apdu):
    assert withheld(bytes.fromhex(apdu)) is None


def test_a_withheld_command_is_cut_on_the_page_and_a_comment_of_the_export():
    card = Card.from_profile(date=CARD_DATE)
    card.power_on(1)
    feed = Feed(0)
    feed.watch()
    exchange(feed, card, SELECT_SSSE)
    exchange(feed, card, VERIFY_OK)
    feed.drain()
    entry = feed.entries[-1].json()
    assert entry["cmd"] == "00 20 00 00 03 (3 data bytes withheld: VERIFY carries a PIN)"
    assert entry["detail"] == ["  PIN: 6 digits"]  # the decoder gives the number of digits only
    text = feed.export([], None)
    assert "# > 00 20 00 00 03 (3 data bytes withheld: VERIFY carries a PIN)\n# < 90 00\n" in text
    assert "12 34 56" not in text and "123456" not in text.replace(" ", "")


@pytest.mark.parametrize(("line", "reply", "trace"), [
    ("fault 0 sw 6A82 ins B2 once", "ok card 0 fault sw 6A82 ins B2 once", ["! fault sw 6A82 ins B2 once"]),
    ("fault 0 clear", "ok card 0: faults cleared", ["! fault clear"]),
    ("fault 0 sw 6A8", "error: bad status word", ["# fault 0 sw 6A8: error: bad status word"]),
    ("date 0 2027-09-18", "ok card 0 date 2027-09-18", ["# date 0 2027-09-18: ok card 0 date 2027-09-18"]),
])
def test_control_lines_in_the_trace(line, reply, trace):
    assert control_trace(line, reply) == trace


def test_the_export_parses_and_replays_on_the_card_it_came_from():
    """A T=0 session as pcscd runs it (GET RESPONSE sent by the client, so `@protocol T=0 raw`),
    a wrong PIN (a comment: its try is not replayed, nothing after it depends on it), a fault
    armed mid-stream and the READ RECORD it answered. Nobody watched: the export needs no page."""
    card = Card.from_profile(date=CARD_DATE)
    card.set_date(CARD_DATE + datetime.timedelta(days=3))
    start = Card.from_profile(date=CARD_DATE)  # the same card as it was before the session
    feed = Feed(0)
    feed.put(RESET, 1.0, card.power_on(0), 0)
    assert exchange(feed, card, SELECT_SSSE) == bytes.fromhex("611E")
    exchange(feed, card, "00C000001E")
    exchange(feed, card, READ_EF05_01.hex())
    exchange(feed, card, VERIFY_BAD)
    card.faults = FaultPlan(["sw 6A82 ins B2 once"])
    feed.put(CONTROL, 1.0, "fault 0 sw 6A82 ins B2 once", "ok card 0 fault sw 6A82 ins B2 once", None)
    assert exchange(feed, card, READ_EF05_01.hex()) == bytes.fromhex("6A82")
    exchange(feed, card, READ_EF05_01.hex())
    feed.put(POWER_OFF, 1.0)
    state = {"profile": "default", "issued": CARD_DATE, "date": card.today, "protocol": None}
    text = feed.export(["a test"], state)
    trace = parse(text, "export.apdu")
    assert trace.apdus == 5  # the withheld VERIFY is a comment
    assert trace.raw and trace.profile == "default"
    assert "@date 2026-11-24" in text and "! fault sw 6A82 ins B2 once" in text
    stamp = datetime.datetime.fromtimestamp(1.0).isoformat(timespec="microseconds")
    assert f"> 00 B2 01 2C 12  # {stamp}\n< 6A 82  # 0.200 ms\n" in text  # the time the card answered
    result = replay(trace, sim_reader_for(trace, start))
    assert result.ok, result.report()
    fresh = replay(trace, sim_reader_for(trace))  # on the card its directives make
    assert fresh.ok, fresh.report()


def test_the_export_gives_the_date_in_force_at_its_start():
    feed = Feed(0)
    feed.put(CONTROL, 1.0, "date 0 2027-09-18", "ok card 0 date 2027-09-18", datetime.date(2026, 11, 21))
    text = feed.export([], {"profile": "default", "issued": CARD_DATE, "date": datetime.date(2027, 9, 18),
                            "protocol": "T=1"})
    assert "@date 2026-11-21" in text
    assert "# date 0 2027-09-18: ok card 0 date 2027-09-18" in text


@pytest.mark.parametrize(("text", "address"), [
    ("8080", ("127.0.0.1", 8080)), ("0", ("127.0.0.1", 0)), ("localhost:9000", ("localhost", 9000)),
    ("[::1]:8080", ("::1", 8080)), ("0.0.0.0:80", ("0.0.0.0", 80)),
])
def test_web_addresses(text, address):
    assert parse_address(text) == address


@pytest.mark.parametrize(("text", "message"), [
    ("80a", "'80a' is not a TCP port"), ("70000", "'70000' is not a TCP port"),
    ("::1:8080", "an IPv6 host in brackets"), (":8080", "give [HOST:]PORT"),
])
def test_bad_web_addresses_are_one_line(text, message):
    with pytest.raises(InputError, match=re.escape(message)):
        parse_address(text)


@pytest.mark.parametrize(("command", "kept"), [
    ("0020000003123456", "0020000003000000"),  # SSSE VERIFY, packed BCD (P5 §6.14)
    ("002000000312345F", "002000000300000F"),  # five digits and the F filler
    ("805E00000712345FFF65432F", "805E00000700000FFF00000F"),  # CHANGE PIN: old FF new (P5 §6.3)
    ("0020008008241234FFFFFFFFFF", "0020008008240000FFFFFFFFFF"),  # EMV PIN block format 2: C=2, N=4 kept
    ("00B2072C0B", "00B2072C0B"),  # not a PIN command: as it is
])
def test_the_view_keeps_a_pin_commands_digits_as_zeros(command, kept):
    assert masked(bytes.fromhex(command)).hex().upper() == kept
