"""The bench view's web application (Starlette): the page, each card's state and stream, the
export, and the one endpoint that acts on a card.

| Route | What |
|---|---|
| `GET /`, `GET /card/N` | the page (plain HTML, CSS and JS from the package: no build step, no CDN) |
| `GET /api/cards` | the served cards |
| `GET /api/card/N/state` | card N's state (reader.web.state) |
| `GET /api/card/N/events` | Server-Sent Events: `state` when it changes, `entries` in batches |
| `GET /api/card/N/export` | the stream kept, as an `.apdu` trace |
| `POST /api/card/N/control` | `{"line": "VERB ARGS"}`: one control line for card N |

Viewing needs nothing; acting needs three things, or the answer is 403: the run's token (the
`X-Bench-Token` header; the page takes it from the URL serve printed), a JSON body (which no
cross-site form can send without a preflight, which is never granted), and the same origin:
an `Origin` header, when there is one, must be this view's, and `Sec-Fetch-Site`, when there
is one, `same-origin`. Every request must name this view's host (the `Host` header): a page of
another site that a DNS name has rebound to this address is refused (403) before anything.
A wildcard `--web 0.0.0.0:PORT` accepts any host name, the token still guarding the controls.
"""

import asyncio
import contextlib
import datetime
import ipaddress
import json
import secrets
from importlib import resources

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from reader.web.feed import APDU, ENTRY_BOUND, Watcher

BATCH_INTERVAL = 0.1  # a stream sends at most ten batches a second
KEEPALIVE = 15.0  # a comment line on an idle stream, so that a gone client is noticed
STATE_WAIT = 2.0  # how long a request waits for a card's first state snapshot
TOKEN_HEADER = "x-bench-token"
LOOPBACK_NAMES = frozenset(("localhost", "127.0.0.1", "::1"))
WILDCARDS = frozenset(("0.0.0.0", "::", ""))
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                 b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # the token in the URL goes nowhere
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def split_host(header: str) -> tuple[str, int]:
    """A Host header's name and port ("[::1]:8080" -> ("::1", 8080); no port: 80)."""
    if header.startswith("["):
        name, _, rest = header[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = header.partition(":")
    return name.lower(), int(port) if port.isdigit() else (80 if not port else -1)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(header: str, host: str, port: int) -> bool:
    """Whether a request's Host header names the view bound to `host`:`port`."""
    name, asked = split_host(header)
    if asked != port:
        return False
    if host in WILDCARDS:
        return True
    if _loopback(host):
        return name in LOOPBACK_NAMES or _loopback(name)
    return name == host.lower()


class Guard:
    """ASGI middleware: a request for another host is refused; every answer gets the page's
    security headers (no framing, no referrer, no caching, scripts and styles from here only)."""

    def __init__(self, app, bench):
        self.app = app
        self.bench = bench

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = Headers(scope=scope).get("host", "")
        if not host_allowed(host, self.bench.host, self.bench.port):
            refusal = PlainTextResponse(f"not this bench view's host: {host!r}", status_code=403)
            return await refusal(scope, receive, self._secured(send))
        return await self.app(scope, receive, self._secured(send))

    @staticmethod
    def _secured(send):
        async def secured(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + SECURITY_HEADERS}
            await send(message)
        return secured


def to_json(data) -> str:
    return json.dumps(data, default=_plain, ensure_ascii=False, separators=(",", ":"))


def _plain(value):
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def sse(event: str, data) -> str:
    """One Server-Sent Event (HTML Living Standard §9.2): JSON has no raw newline, so one data line."""
    return f"event: {event}\ndata: {to_json(data)}\n\n"


def create_app(bench) -> Starlette:
    page = resources.files("reader.web").joinpath("static/index.html").read_text(encoding="utf-8")

    def feed_of(request: Request):
        index = request.path_params["index"]
        if not 0 <= index < len(bench.feeds):
            return None
        return bench.feeds[index]

    def no_card(request: Request) -> JSONResponse:
        return JSONResponse({"error": f"no card {request.path_params['index']} (cards 0-{len(bench.feeds) - 1})"},
                            status_code=404)

    async def state_of(feed) -> dict | None:
        """The card's state now: a watched card's is kept fresh; for another, a snapshot is asked
        of the serve loop's next tick (None if it gives none within STATE_WAIT)."""
        if feed.watched and feed.state is not None:
            return feed.state
        waiter = Watcher()
        feed.watchers.add(waiter)
        before = feed.state_version
        feed.want_state = True
        deadline = asyncio.get_running_loop().time() + STATE_WAIT
        try:
            while feed.state_version == before:
                waiter.ready.clear()
                await asyncio.wait_for(waiter.ready.wait(), max(0.0, deadline - asyncio.get_running_loop().time()))
        except TimeoutError:
            pass
        finally:
            feed.watchers.discard(waiter)
        return feed.state

    async def show(request: Request) -> Response:
        if "index" in request.path_params and feed_of(request) is None:
            return no_card(request)
        return HTMLResponse(page)

    async def cards(request: Request) -> Response:
        return JSONResponse([{"index": slot.index, "image": slot.image} for slot in bench.slots])

    async def state(request: Request) -> Response:
        feed = feed_of(request)
        if feed is None:
            return no_card(request)
        return Response(to_json(await state_of(feed)), media_type="application/json")

    async def events(request: Request) -> Response:
        feed = feed_of(request)
        if feed is None:
            return no_card(request)

        async def stream():
            watcher = feed.watch()
            try:
                yield sse("hello", {"index": feed.index, "bound": ENTRY_BOUND})
                while not bench.closing:
                    watcher.ready.clear()  # before reading: what arrives meanwhile wakes the next turn
                    state, entries, skipped = feed.news(watcher)
                    if state is not None:
                        yield sse("state", state)
                    if entries or skipped:
                        yield sse("entries", {"entries": entries, "skipped": skipped, "dropped": feed.dropped})
                    try:
                        await asyncio.wait_for(watcher.ready.wait(), KEEPALIVE)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    await asyncio.sleep(BATCH_INTERVAL)  # let a burst gather into one batch
            finally:
                feed.unwatch(watcher)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    async def export(request: Request) -> Response:
        feed = feed_of(request)
        if feed is None:
            return no_card(request)
        state = await state_of(feed)
        image = state["image"] if state else bench.slots[feed.index].image
        kept = sum(1 for event in feed.exported() if event[1] == APDU)
        header = [f"the bench view's stream of card {feed.index} ({image}): the {kept} exchanges it kept",
                  "PIN commands are comments: the view never sends their data"]
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        return PlainTextResponse(feed.export(header, state), media_type="text/plain; charset=utf-8",
                                 headers={"content-disposition": f'attachment; filename="card{feed.index}-{stamp}.apdu"'})

    async def control(request: Request) -> Response:
        refusal = refused(request, bench.token)
        if refusal:
            return JSONResponse({"error": refusal}, status_code=403)
        if feed_of(request) is None:
            return no_card(request)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return JSONResponse({"error": "send the control line as JSON: {\"line\": \"VERB ARGS\"}"}, status_code=415)
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            body = None
        line = body.get("line") if isinstance(body, dict) else None
        if not isinstance(line, str) or not line.strip() or "\n" in line or "\r" in line:
            return JSONResponse({"error": "send {\"line\": \"VERB ARGS\"}: one control line"}, status_code=400)
        try:
            reply = await bench.control(request.path_params["index"], line)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"reply": reply, "ok": reply.startswith("ok")})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        bench.started(asyncio.get_running_loop())
        try:
            yield
        finally:
            bench.stopped()

    routes = [
        Route("/", show),
        Route("/card/{index:int}", show),
        Route("/api/cards", cards),
        Route("/api/card/{index:int}/state", state),
        Route("/api/card/{index:int}/events", events),
        Route("/api/card/{index:int}/export", export),
        Route("/api/card/{index:int}/control", control, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("reader.web", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(Guard, bench=bench)
    return app


def refused(request: Request, token: str) -> str | None:
    """Why a control request is refused (None: it is not): another origin, or no or a wrong token."""
    headers = request.headers
    origin = headers.get("origin")
    if origin is not None and origin.lower() != f"http://{headers.get('host', '').lower()}":
        return f"control from another origin ({origin}) is refused"
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return f"control from a {site} request is refused (same-origin only)"
    given = headers.get(TOKEN_HEADER, "")
    if not given or not secrets.compare_digest(given.encode(), token.encode()):
        return "control needs this run's token (the ?token= of the URL sscard serve printed)"
    return None
