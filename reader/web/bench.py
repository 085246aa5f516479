"""The bench view attached to a running `sscard serve`: hooks in the serve thread, the web loop
in a thread of its own.

`Bench.attach(server)` (in the serve thread, before its loop runs) gives every served card a
`Feed`, puts the bench's hooks on the server and its slots, binds the listening socket (a bad
address is a one-line InputError before anything is served) and starts uvicorn on an asyncio
loop of its own thread. From then on:

- serve thread -> web loop: the hooks only append to a feed's bounded deque and, for a watched
  card when no wake-up is pending yet, `loop.call_soon_threadsafe`: the web loop drains
  `DRAIN_DELAY` later, so a burst is one wake-up and one drain; no lock, no wait on the web side.
  State snapshots are taken at the serve loop's tick, at most every `STATE_INTERVAL` per watched
  card, only when something changed;
- web loop -> serve thread: a control request becomes a control line handed to `server.call`,
  the control channel's own entry for another thread (reader.pcsc.serve.Server.call); the serve
  loop runs it with `Server.command`, like a line from stdin or the control socket, and the reply
  comes back through `call_soon_threadsafe`. The page has no other way to act on a card.

The page may only send the verbs of `WEB_VERBS`, always with its card's index; it needs the
run's token for that (reader.web.app).
"""

import asyncio
import ipaddress
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING

from reader.errors import InputError
from reader.web.app import create_app
from reader.web.feed import APDU, CONTROL, DRAIN_DELAY, POWER_OFF, RESET, SWITCH, Feed, masked
from reader.web.state import card_state, fingerprint

if TYPE_CHECKING:
    import uvicorn

    from reader.pcsc.serve import Server

DEFAULT_HOST = "127.0.0.1"
STATE_INTERVAL = 0.1  # at most ten state snapshots a second per watched card
STATE_REFRESH = 5.0  # and one every 5 s anyway (the host's date moves on, a status line changes)
TICK_INTERVAL = 0.02  # the serve loop's tick does its work at most this often
CONTROL_TIMEOUT = 10.0  # a control line's reply; a switch gives up opening its image well before
RECORDED_VERBS = frozenset(("remove", "insert", "reset", "switch", "fault", "date"))  # shown in the stream
WEB_VERBS = RECORDED_VERBS | {"keypad"}  # the keypad's line is never recorded: it holds digits
STOP_TIMEOUT = 5.0


def parse_address(text: str) -> tuple[str, int]:
    """`--web [HOST:]PORT`: the host (default 127.0.0.1, an IPv6 one in brackets) and the port
    (0: any free port); an InputError names what is wrong."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host = DEFAULT_HOST
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif not host or ":" in host:
        raise InputError(f"--web {text}: give [HOST:]PORT (an IPv6 host in brackets: [::1]:8080)")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InputError(f"--web {text}: {port_text!r} is not a TCP port (0-65535, 0: any free one)")
    return host, int(port_text)


def listen(host: str, port: int) -> socket.socket:
    """The bench view's listening socket; an InputError (one line) when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(f"--web {host}:{port}: no such host ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise InputError(f"--web {host}:{port}: cannot listen there ({exc.strerror or exc})") from None
    sock.setblocking(False)
    return sock


def url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


class _Side:
    """What the serve thread keeps of one card for the bench: never read by the web loop."""

    def __init__(self, slot):
        self.card = slot.card
        self.print = None
        self.dirty = True
        self.state_at = float("-inf")
        self.date = slot.card.today  # the card's date, as the `date` lines left it


class Bench:
    """The bench view of one `sscard serve` run (docs/bench-view.md)."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0, token: str | None = None):
        self.host, self.port = host, port
        self.token = token or secrets.token_urlsafe(24)
        self.slots: list = []
        self.feeds: list[Feed] = []
        self.sides: list[_Side] = []
        self.server: Server | None = None  # the serve loop watched
        self.call = _not_bound  # the control channel's entry: call(line, reply) from any thread
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closing = False
        self._wake_pending = False
        self._next_tick = 0.0
        self._sock: socket.socket | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = create_app(self)

    @property
    def url(self) -> str:
        return f"http://{url_host(self.host)}:{self.port}/?token={self.token}"

    # -- set-up (serve thread) --------------------------------------------------------------------
    def bind(self, slots, call) -> None:
        """Feeds for `slots` and the control entry `call(line, reply)`; no hooks, no thread (tests
        drive a bench this way with Starlette's TestClient)."""
        self.slots = list(slots)
        self.call = call
        self.feeds = [Feed(slot.index, self._wake) for slot in self.slots]
        self.sides = [_Side(slot) for slot in self.slots]

    def hook(self, server) -> None:
        """Feeds for the cards of `server` (a reader.pcsc.serve.Server, not yet running) and the
        bench's hooks on it and its slots; no web server (tests drive the app with TestClient)."""
        self.server = server
        self.bind(server.slots, server.call)
        for slot in self.slots:
            slot.on_apdu = _chain(getattr(slot, "on_apdu", None), self.apdu)
            slot.on_power = self.power
        server.on_command = self.command
        server.on_tick = self.tick

    def attach(self, server) -> None:
        """Listen (an InputError when the address cannot be had), hook `server` and serve the view."""
        self._sock = listen(self.host, self.port)
        self.host, self.port = self._sock.getsockname()[:2]
        self.hook(server)
        self._start()

    def _start(self) -> None:
        import uvicorn

        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on", ws="none",
                                timeout_graceful_shutdown=1)
        self._uvicorn = server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, args=(server, self._sock), name="bench view", daemon=True)
        self._thread.start()

    @staticmethod
    def _run(server, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        finally:
            loop.close()

    def close(self) -> None:
        """Stop the view (its streams end, uvicorn stops); the cards are not touched."""
        self.closing = True
        loop = self.loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake_all)
            except RuntimeError:  # the loop has already stopped
                pass
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
        if self._sock is not None:
            self._sock.close()

    # -- the web loop's start and end (the app's lifespan) -----------------------------------------
    def started(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._wake_pending = False
        self.drain()

    def stopped(self) -> None:
        self.loop = None

    # -- serve thread -> web loop ----------------------------------------------------------------------
    def _wake(self) -> None:
        """Ask the web loop to drain the feeds, once per batch (serve thread; never blocks)."""
        if self._wake_pending:
            return
        loop = self.loop
        if loop is None:
            return  # no loop yet: the feeds keep their events (bounded) for its first drain
        self._wake_pending = True
        try:
            loop.call_soon_threadsafe(loop.call_later, DRAIN_DELAY, self.drain)
        except RuntimeError:  # the loop closed meanwhile
            self._wake_pending = False

    def drain(self) -> None:
        self._wake_pending = False  # first: an event put from here on schedules another drain
        for feed in self.feeds:
            feed.drain()

    def _wake_all(self) -> None:
        for feed in self.feeds:
            for watcher in feed.watchers:
                watcher.ready.set()

    # -- the serve thread's hooks ---------------------------------------------------------------------
    def apdu(self, slot, apdu: bytes, response: bytes, seconds: float) -> None:
        side = self.sides[slot.index]
        if slot.card is not side.card:
            self._switched(slot, side)
        side.dirty = True
        self.feeds[slot.index].put(APDU, time.time(), masked(apdu), response, seconds)

    def power(self, slot, what: str) -> None:
        """`what`: "on" (cold reset), "reset" (warm) or "off"."""
        side = self.sides[slot.index]
        if slot.card is not side.card:
            self._switched(slot, side)
        side.dirty = True
        feed = self.feeds[slot.index]
        if what == "off":
            feed.put(POWER_OFF, time.time())
        else:
            feed.put(RESET, time.time(), slot.card.atr, slot.card.protocol)

    def command(self, line: str, reply) -> None:
        """A control line the serve loop has run (from any channel) and its reply (a str, or a
        Switch still opening its image): the recorded verbs go into the card's stream."""
        words = line.split()
        if not words or words[0].lower() not in RECORDED_VERBS:
            return
        verb = words[0].lower()
        index = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
        if not 0 <= index < len(self.feeds):
            return
        slot, side, feed = self.slots[index], self.sides[index], self.feeds[index]
        text = reply if isinstance(reply, str) else f"ok opening {words[-1]}"
        now = time.time()
        before = None
        if verb == "date":
            before, side.date = side.date, slot.card.today
        feed.put(CONTROL, now, " ".join(words), text, before)
        if text.startswith("ok"):
            if verb == "remove":
                feed.put(POWER_OFF, now)
            elif verb == "reset":
                feed.put(RESET, now, slot.card.atr, slot.card.protocol)
        side.dirty = True

    def tick(self) -> None:
        """At each turn of the serve loop: a card switched, and state snapshots for watched cards."""
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + TICK_INTERVAL
        for slot, side, feed in zip(self.slots, self.sides, self.feeds):
            if slot.card is not side.card:
                self._switched(slot, side)
            if not (feed.watched or feed.want_state):
                continue
            seen = fingerprint(slot)
            if seen != side.print:
                side.print, side.dirty = seen, True
            since = now - side.state_at
            if feed.want_state or (side.dirty and since >= STATE_INTERVAL) or since >= STATE_REFRESH:
                feed.want_state = False
                side.dirty, side.state_at = False, now
                feed.put_state(card_state(slot, slot.date is not None))

    def _switched(self, slot, side: _Side) -> None:
        side.card, side.dirty, side.date = slot.card, True, slot.card.today
        self.feeds[slot.index].put(SWITCH, time.time(), slot.image, "", None)

    # -- web loop -> serve thread ---------------------------------------------------------------------
    async def control(self, index: int, line: str) -> str:
        """Run `VERB ARGS` on card `index` through the serve loop's control channel; its reply.
        ValueError for a verb the page may not send."""
        words = line.split()
        if not words or words[0].lower() not in WEB_VERBS:
            raise ValueError(f"the view sends only {', '.join(sorted(WEB_VERBS))}")
        loop = asyncio.get_running_loop()
        answer: asyncio.Future = loop.create_future()

        def reply(text: str) -> None:  # the serve thread's
            loop.call_soon_threadsafe(_resolve, answer, text)

        self.call(" ".join([words[0].lower(), str(index), *words[1:]]), reply)
        try:
            return await asyncio.wait_for(answer, CONTROL_TIMEOUT)
        except TimeoutError:
            return f"error: serve did not answer within {CONTROL_TIMEOUT:g} s"


def _not_bound(line: str, reply) -> None:
    reply("error: the bench view is not attached to a serve loop")


def _resolve(future: asyncio.Future, text: str) -> None:
    if not future.done():
        future.set_result(text)


def _chain(first, second):
    """Both hooks, `first` (--record's) then `second`; `second` alone when there is no first."""
    if first is None:
        return second

    def both(*args):
        first(*args)
        second(*args)
    return both
