"""The bench view's web application without a browser: Starlette's TestClient on the app, the
real serve loop (reader.pcsc.serve.Server in a thread) under it, and its card on a vpcd that
this test plays (tests/test_web.py does the same through pcscd in a real browser).

- viewing needs no token; acting needs the run's token, a JSON body and the same origin (403
  otherwise, and the card is untouched); a request naming another host is refused (a DNS name
  rebound to this address);
- the page's controls are control lines run by the serve loop: remove, insert, reset, date,
  fault, and the replies come back; verbs the page may not send (quit, status) are refused;
- the state and the stream follow the card: PIN tries after a wrong VERIFY (LD/T 32 P5 §6.14:
  63Cx), the deadline lock at the reset after the date passed it (docs/card/lifecycle.md §2);
- nothing of the card's keys or PINs is in any answer of the view.
"""

import datetime
import json
import socket
import threading
import time

import pytest
from helpers import CARD_DATE, PROFILES_DIR, SELECT_FIN, SELECT_SSSE

from chip import Card
from chip.kernel.pin import Secret
from reader.pcsc.serve import Server, Slot
from reader.web.bench import Bench

starlette_testclient = pytest.importorskip("starlette.testclient")

SSSE_PIN, FIN_PIN = "739184", "582647"  # distinctive: any leak of them is found, no false alarm
VIEW = "http://127.0.0.1:8080"
READ_EF05_07 = "00B2072C0B"  # READ RECORD 07 of EF05: the card number (T00000001)


def personalise(path) -> str:
    text = (PROFILES_DIR / "default.toml").read_text(encoding="utf-8")
    text = text.replace('initial_pin = "123456"', f'initial_pin = "{SSSE_PIN}"')
    text = text.replace('initial_pin = "000000"', f'initial_pin = "{FIN_PIN}"')
    profile = path.with_suffix(".toml")
    profile.write_text(text, encoding="utf-8")
    Card.from_profile(str(profile), state=str(path), date=CARD_DATE)
    return str(path)


def wait_until(condition, what: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.02)


class View:
    """A serve loop with one card, its vpcd played here, and the bench view's app on it."""

    def __init__(self, tmp_path):
        self.image = personalise(tmp_path / "card.img")
        self.vpcd = socket.create_server(("127.0.0.1", 0))
        self.vpcd.settimeout(5)
        slot = Slot(0, self.image, "127.0.0.1", self.vpcd.getsockname()[1], date=CARD_DATE)
        self.slot = slot
        self.server = Server([slot])
        self.bench = Bench("127.0.0.1", 8080)
        self.bench.hook(self.server)
        self.thread = threading.Thread(target=self.server.run, name="serve", daemon=True)
        self.thread.start()
        self.connection = self.accept()
        self.client = starlette_testclient.TestClient(self.bench.app, base_url=VIEW)
        self.client.__enter__()
        self.token = {"x-bench-token": self.bench.token}

    def accept(self) -> socket.socket:
        connection, _ = self.vpcd.accept()
        connection.settimeout(5)
        return connection

    # -- vpcd's side -----------------------------------------------------------------------------
    def send(self, payload: bytes) -> None:
        self.connection.sendall(len(payload).to_bytes(2, "big") + payload)

    def receive(self) -> bytes:
        head = self._exactly(2)
        return self._exactly(int.from_bytes(head, "big"))

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.connection.recv(n - len(data))
            assert chunk, "serve closed the vpcd connection"
            data += chunk
        return data

    def power_on(self) -> None:
        self.send(b"\x01")

    def apdu(self, hexapdu: str) -> str:
        """One command as pcscd sends it over T=0, GET RESPONSE included; the final answer in hex."""
        self.send(bytes.fromhex(hexapdu))
        answer = self.receive()
        if answer[-2] == 0x61:
            self.send(b"\x00\xC0\x00\x00" + answer[-1:])
            answer = self.receive()
        return answer.hex().upper()

    # -- the view ------------------------------------------------------------------------------------
    def control(self, line: str, headers=None):
        return self.client.post("/api/card/0/control", json={"line": line},
                                headers=self.token if headers is None else headers)

    def state(self) -> dict:
        return self.client.get("/api/card/0/state").json()

    def fresh_state(self, condition, what: str) -> dict:
        return wait_until(lambda: (state := self.state()) and condition(state) and state, what)

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.server.stop()
        self.thread.join(5)
        self.connection.close()
        self.vpcd.close()


@pytest.fixture
def view(tmp_path):
    v = View(tmp_path)
    v.power_on()
    assert v.apdu(SELECT_SSSE).endswith("9000")
    yield v
    v.close()


# -- viewing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "kind"), [
    ("/", "text/html"), ("/card/0", "text/html"), ("/static/bench.js", "text/javascript"),
    ("/static/bench.css", "text/css"), ("/api/cards", "application/json"), ("/api/card/0/state", "application/json"),
    ("/api/card/0/export", "text/plain"),
])
def test_viewing_needs_no_token(view, path, kind):
    answer = view.client.get(path)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_a_card_not_served_is_404(view):
    assert view.client.get("/card/3").status_code == 404
    assert view.client.get("/api/card/3/state").status_code == 404
    assert view.control("remove").status_code == 200  # card 0 exists
    assert view.client.post("/api/card/3/control", json={"line": "remove"}, headers=view.token).status_code == 404


@pytest.mark.parametrize("host", ["evil.example:8080", "127.0.0.1:9999", "localhost.evil.example:8080"])
def test_a_request_for_another_host_is_refused(view, host):
    """A page of another site whose name was rebound to 127.0.0.1 sends its own name as Host."""
    assert view.client.get("/api/card/0/state", headers={"host": host}).status_code == 403
    answer = view.client.post("/api/card/0/control", json={"line": "remove"}, headers={**view.token, "host": host})
    assert answer.status_code == 403
    assert view.slot.inserted


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"])
def test_the_loopback_names_of_the_view_are_its_own(view, host):
    assert view.client.get("/api/cards", headers={"host": host}).status_code == 200


# -- acting ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"x-bench-token": "not-the-token"}, {"x-bench-token": ""}])
def test_a_control_without_the_token_is_refused(view, headers):
    answer = view.control("remove", headers=headers)
    assert answer.status_code == 403 and "token" in answer.json()["error"]
    assert view.slot.inserted and view.apdu(READ_EF05_07).endswith("9000")  # untouched


@pytest.mark.parametrize(("extra", "why"), [
    ({"origin": "http://evil.example"}, "another origin"),
    ({"origin": "http://127.0.0.1:9999"}, "another origin"),
    ({"origin": "null"}, "another origin"),
    ({"sec-fetch-site": "cross-site"}, "same-origin only"),
    ({"sec-fetch-site": "same-site"}, "same-origin only"),
])
def test_a_control_from_another_origin_is_refused(view, extra, why):
    answer = view.control("remove", headers={**view.token, **extra})
    assert answer.status_code == 403 and why in answer.json()["error"]
    assert view.slot.inserted


def test_a_same_origin_control_with_the_token_acts(view):
    headers = {**view.token, "origin": VIEW, "sec-fetch-site": "same-origin"}
    answer = view.control("remove", headers=headers)
    assert answer.status_code == 200 and answer.json() == {"reply": "ok removed card 0", "ok": True}
    view.connection.settimeout(2)
    assert view.connection.recv(1) == b""  # serve closed its vpcd connection: the card is out
    assert view.control("insert").json()["reply"] == "ok inserting card 0"
    view.connection = view.accept()  # it comes back
    view.power_on()
    assert view.apdu(SELECT_SSSE).endswith("9000")


def test_control_is_post_only_and_json(view):
    assert view.client.get("/api/card/0/control", params={"line": "remove"}).status_code == 405
    form = view.client.post("/api/card/0/control", data={"line": "remove"}, headers=view.token)
    assert form.status_code == 415  # what a cross-site form could send
    assert view.client.post("/api/card/0/control", content=b"{not json", headers={**view.token,
                            "content-type": "application/json"}).status_code == 400
    assert view.slot.inserted


@pytest.mark.parametrize("line", ["quit", "status", "switch", "remove\nquit"])
def test_the_page_sends_only_its_verbs_one_line_at_a_time(view, line):
    answer = view.control(line)
    if line == "switch":  # a verb of the page, without its IMAGE: the serve loop's own error
        assert answer.json() == {"reply": "error: switch [N] IMAGE", "ok": False}
    else:
        assert answer.status_code == 400
    assert view.thread.is_alive() and view.slot.inserted


def test_a_wrong_verify_shows_in_the_pin_tries(view):
    before = view.fresh_state(lambda s: s["applications"], "state")
    assert before["applications"]["ssse"]["PIN tries left"] == "6 of 6"
    assert view.apdu("0020000003111111") == "63C5"  # P5 §6.14: 63Cx, x the tries left
    after = view.fresh_state(lambda s: s["applications"]["ssse"]["PIN tries left"] != "6 of 6", "new PIN count")
    assert after["applications"]["ssse"]["PIN tries left"] == "5 of 6"
    assert after["selected"] == {"application": "ssse", "df": "SSSE", "ef": None}


def test_the_date_and_reset_verbs_lock_the_ssse_past_its_deadline(view):
    """300 days after issue the SSSE is still open; past that, the next power-up (a warm reset
    here) loss-locks it with reason deadline (docs/card/lifecycle.md §2)."""
    last_day = CARD_DATE + datetime.timedelta(days=300)
    assert view.control(f"date {last_day}").json()["reply"] == f"ok card 0 date {last_day}"
    assert view.control("reset").json()["ok"]
    state = view.fresh_state(lambda s: s["date"] == str(last_day), "the new date")
    assert state["applications"]["ssse"]["lock"] == "none" and state["simulated_date"]
    past = last_day + datetime.timedelta(days=1)
    assert view.control(f"date {past}").json()["ok"]
    assert view.fresh_state(lambda s: s["date"] == str(past), "the date past")["applications"]["ssse"]["lock"] == "none"
    assert view.control("reset").json()["reply"].startswith("ok card 0 reset")
    state = view.fresh_state(lambda s: s["applications"]["ssse"]["lock"] != "none", "the lock")
    assert state["applications"]["ssse"]["lock"] == "locked (deadline)"
    assert view.control("date today").json()["reply"] == f"ok card 0 date {datetime.date.today()} (the host's today)"


def test_a_fault_armed_from_the_page_answers_the_next_read_record(view):
    assert view.control("fault sw 6A82 ins B2 once").json()["reply"] == "ok card 0 fault sw 6A82 ins B2 once"
    assert view.apdu(READ_EF05_07) == "6A82"
    assert view.apdu(READ_EF05_07) == "0709" + b"T00000001".hex().upper() + "9000"
    state = view.fresh_state(lambda s: s["faults"] == ["sw 6A82 ins B2 once (fired 1)"], "the fault fired")
    assert state["faults"] == ["sw 6A82 ins B2 once (fired 1)"]
    export = view.client.get("/api/card/0/export").text
    assert "! fault sw 6A82 ins B2 once\n> 00 B2 07 2C 0B" in export
    assert view.control("fault clear").json()["reply"] == "ok card 0: faults cleared"


def test_the_stream_is_pushed_decoded(view):
    view.apdu(READ_EF05_07)
    entries = []
    with view.client.stream("GET", "/api/card/0/events") as stream:
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: ") and event == "entries":
                entries += json.loads(line[len("data: "):])["entries"]
                if any(entry.get("title", "").startswith("READ RECORD 07") for entry in entries):
                    break
    kinds = [entry["kind"] for entry in entries]
    assert kinds[:2] == ["reset", "apdu"]
    read = next(entry for entry in entries if entry.get("title", "").startswith("READ RECORD 07"))
    assert read["title"] == "READ RECORD 07 of EF05 (SFI 5) — card number"
    assert read["cmd"] == "00 B2 07 2C 0B" and read["sw"] == "9000" and read["answer"][0] == "SW 9000 OK"
    assert any("T00000001" in line for line in read["answer"])


# -- nothing secret --------------------------------------------------------------------------------

def secret_forms(card: Card) -> set[str]:
    """Every key and PIN of the card (the image's Secret objects), as hex in the spellings a page
    could use, and the PIN digits."""
    forms = {SSSE_PIN, FIN_PIN}
    for obj in card.store.objects.values():
        if isinstance(obj, Secret):
            value = obj.value
            forms |= {value.hex(), value.hex().upper(), value.hex(" "), value.hex(" ").upper()}
    return forms


def test_no_key_or_pin_is_in_any_answer(view):
    card = Card.open(view.image, read_only=True)
    forms = secret_forms(card)
    assert len(forms) > 40
    view.apdu(f"0020000003{SSSE_PIN}")  # the right PIN, typed by the terminal
    view.apdu(f"805E010007{SSSE_PIN}FF{SSSE_PIN}")  # CHANGE PIN (P5 §6.3: old FF new) to itself
    view.apdu(SELECT_FIN)
    view.apdu(f"002000800826{FIN_PIN}FFFFFFFF")  # the financial offline PIN, a format-2 block
    bodies = [view.client.get(path).text for path in
              ("/", "/card/0", "/static/bench.js", "/static/bench.css", "/api/cards")]
    bodies.append(json.dumps(view.fresh_state(lambda s: s["selected"]["application"] == "fin", "fin selected"),
                             ensure_ascii=False))
    bodies.append(view.client.get("/api/card/0/export").text)
    with view.client.stream("GET", "/api/card/0/events") as stream:
        seen = ""
        for line in stream.iter_lines():
            seen += line + "\n"
            if "0020008008" in seen.replace(" ", "") or "00 20 00 80 08" in seen:
                break
        bodies.append(seen)
    bodies.append(view.control("fault").text)
    for body in bodies:
        leaks = [form for form in forms if form in body]
        assert not leaks, f"{leaks} in {body[:200]}"
    assert "00 20 00 00 03 (3 data bytes withheld: VERIFY carries a PIN)" in bodies[-2]


def test_a_keypad_line_reaches_serve_but_never_the_stream(view):
    """The page's PIN pad sends `keypad N DIGITS` (a CCID reader's keypad); the digits are not
    recorded anywhere the view shows (this card is on vpcd: serve says it has no keypad)."""
    answer = view.control(f"keypad {SSSE_PIN}")
    assert answer.json() == {"reply": "error: card 0 is on vpcd, which has no keypad", "ok": False}
    assert view.control("remove").json()["ok"]  # a recorded line after it
    export = view.client.get("/api/card/0/export").text
    assert "# remove 0: ok removed card 0" in export and SSSE_PIN not in export
