"""The bench view in a real headless browser: Debian's chromium, driven by selenium through
chromium-driver, on the page `sscard serve --web` serves for a card on vpcd, while pyscard
(PcscReader) talks to that card through the private pcscd of `make test`.

What an engineer at the bench does, each checked on the page and on the PC/SC side:

- APDUs a terminal sends appear decoded in the stream (command names, files and records, the
  FCI's TLV tree with its GBK DF name), and a wrong VERIFY takes one of the SSSE PIN's tries
  (LD/T 32 P5 §6.14: 63Cx);
- Remove takes the card out: pcscd reports the reader empty; Insert puts it back;
- a fault armed on the page (`sw 6A82 ins B2 once`, chip/faults.py) answers the next READ
  RECORD; the export is a trace that `reader.traces.format.parse` accepts and that replays on the
  card as it was;
- a date past the activation deadline (the issue date + 300 days, docs/card/lifecycle.md §2),
  then Reset: the SSSE is loss-locked with reason "deadline";
- without the token the page only views, and a control request is refused; so is one from
  another origin;
- at a bench's pace (a burst of READ RECORDs, well over 100 APDU/s) the page keeps answering and
  keeps at most its bound of entries.

The fault test takes a screenshot of the page: into docs/bench-view.png (the README shows it) when
SSCARD_SCREENSHOT=1 is set (`SSCARD_SCREENSHOT=1 make test`), else into the test's own folder, so that
a test run leaves the tree as it found it.
Without chromium, chromium-driver or selenium these skip; with CI=true they fail.
"""

import datetime
import os
import selectors
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from helpers import CARD_DATE, CHROMEDRIVER, CHROMIUM, ROOT, SELECT_SSSE, free_port, require_browser, tx

from chip import Card
from reader.pcsc.serve import ServedProcess, wait_for_card
from reader.traces.format import parse
from reader.traces.replay import load_image_copy, replay, sim_reader_for

SCREENSHOT = ROOT / "docs" / "bench-view.png"  # written when SSCARD_SCREENSHOT=1
READER = "Virtual PCD 00 00"
READ_EF05_07 = "00B2072C0B"  # READ RECORD 07 of EF05 (SFI 5): the card number, 11 bytes
READ_EF05_01 = "00B2012C12"  # READ RECORD 01: the card identification code, 18 bytes
CARD_NUMBER = "0709" + b"T00000001".hex().upper() + "9000"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1500,1000")
WAIT = 10.0
BUSY = 2.0  # seconds of READ RECORDs as fast as they go


@pytest.fixture(scope="module")
def downloads():
    folder = Path(tempfile.mkdtemp(prefix="sscard-downloads-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(downloads):
    require_browser("the bench view in a browser")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="sscard-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Bench:
    """A card served with the bench view, the page's URL, and the browser on it."""

    def __init__(self, tmp_path, driver):
        self.image = str(tmp_path / "card.img")
        Card.from_profile(state=self.image, date=CARD_DATE).close()
        self.start = str(tmp_path / "start.img")  # the card as it was, for replaying an export
        shutil.copyfile(self.image, self.start)
        self.port = free_port()
        self.served = ServedProcess([self.image], control=str(tmp_path / "control.sock"),
                                    extra=["--web", f"127.0.0.1:{self.port}"])
        self.url = self._printed_url()
        self.driver = driver
        self.reader = None

    def _printed_url(self) -> str:
        stdout = self.served.process.stdout
        with selectors.DefaultSelector() as watch:
            watch.register(stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                if watch.select(0.2):
                    line = stdout.readline()
                    if line.startswith("bench view: "):
                        return line.split()[-1]
        pytest.fail("sscard serve --web printed no URL")

    def open(self, token: bool = True) -> None:
        base = f"http://127.0.0.1:{self.port}/card/0"
        self.driver.get(base + self.url[self.url.index("?"):] if token else base)
        self.wait(lambda d: d.find_element("id", "link").text == "live", "the stream")
        self.wait(lambda d: d.find_elements("css selector", "#app-ssse"), "the card's state")

    def wait(self, condition, what: str, timeout: float = WAIT):
        from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(
                condition)
        except TimeoutException:
            pytest.fail(f"the page shows no {what} after {timeout:g} s")

    def text(self, css: str) -> str:
        """The element's text now; found again if the page re-rendered it between finding and reading."""
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(2):
            try:
                return self.driver.find_element("css selector", css).text
            except StaleElementReferenceException:
                continue
        return self.driver.find_element("css selector", css).text

    def cell(self, app: str, key: str) -> str:
        return self.text(f'#app-{app} td[data-key="{key}"]')

    def titles(self) -> list[str]:
        return [li.text for li in self.driver.find_elements("css selector", "#stream li .title")]

    def entry(self, title: str):
        """The newest entry of the stream whose title starts with `title`."""
        return next(li for li in self.driver.find_elements("css selector", '#stream li[data-kind="apdu"]')
                    if li.find_element("css selector", ".title").text.startswith(title))

    def open_entry(self, title: str) -> None:
        self.entry(title).find_element("css selector", ".entry-head").click()

    def entry_body(self, title: str) -> str:
        return self.entry(title).find_element("css selector", ".entry-body").text

    def click(self, element_id: str) -> None:
        self.driver.find_element("id", element_id).click()

    def reply(self, start: str) -> str:
        """The reply line once it is there (the page shows "LINE …" while the line is on its way)."""
        return self.wait(lambda d: (text := d.find_element("id", "reply").text).startswith(start)
                         and not text.endswith(" …") and text, start)

    def pcsc(self):
        from reader.pcsc.reader import PcscReader

        if self.reader is None:
            self.reader = PcscReader(READER, connect_timeout=10)
            self.reader.reset()
        return self.reader

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.served.stop()


@pytest.fixture
def bench(tmp_path, browser):
    b = Bench(tmp_path, browser)
    yield b
    b.close()


def test_the_stream_is_decoded_and_the_pin_tries_follow_a_wrong_verify(bench):
    bench.open()
    assert bench.cell("ssse", "PIN tries left") == "6 of 6"
    reader = bench.pcsc()  # PcscReader fetches the T=0 card's 61xx with GET RESPONSE, as terminals do
    assert tx(reader, SELECT_SSSE).endswith("9000")
    assert tx(reader, READ_EF05_01).endswith("9000")
    assert tx(reader, READ_EF05_07) == CARD_NUMBER
    bench.wait(lambda d: "READ RECORD 07 of EF05 (SFI 5) — card number" in bench.titles(), "decoded READ RECORD")
    titles = bench.titles()
    assert titles[0] == "READ RECORD 07 of EF05 (SFI 5) — card number"  # newest first
    assert "READ RECORD 01 of EF05 (SFI 5) — card identification code" in titles
    assert any(title.startswith("SELECT by DF name sx1.sh.社会保障") for title in titles)  # GBK
    assert tx(reader, "0020000003111111") == "63C5"
    bench.wait(lambda d: bench.cell("ssse", "PIN tries left") == "5 of 6", "5 tries left")
    verify = bench.driver.find_element("css selector", '#stream li[data-kind="apdu"]')
    assert "VERIFY SSSE PIN" in verify.text and "63C5" in verify.text
    bench.open_entry("GET RESPONSE")  # the FCI: its TLV tree, the DF name in GBK
    body = bench.entry_body("GET RESPONSE")
    assert "6F FCI template" in body and "84 DF name: 7378312E73682EC9E7BBE1B1A3D5CF = sx1.sh.社会保障 (SSSE)" in body
    assert "withheld" in verify.find_element("css selector", ".entry-body").get_attribute("textContent")


def test_remove_and_insert_as_pcscd_sees_them(bench):
    bench.open()
    bench.click("remove")
    assert bench.reply("remove: ") == "remove: ok removed card 0"
    assert wait_for_card(READER, present=False, timeout=5)  # pcscd reports the reader empty
    bench.wait(lambda d: d.find_element("id", "chip-power").text == "removed", "the card removed")
    bench.click("insert")
    assert bench.reply("insert: ") == "insert: ok inserting card 0"
    assert wait_for_card(READER, present=True, timeout=5)
    assert tx(bench.pcsc(), SELECT_SSSE).endswith("9000")


def test_a_fault_armed_on_the_page_and_the_export_that_replays(bench, downloads, tmp_path):
    bench.open()
    reader = bench.pcsc()
    assert tx(reader, SELECT_SSSE).endswith("9000")
    assert tx(reader, READ_EF05_01).endswith("9000")
    assert tx(reader, "0020000003111111") == "63C5"  # withheld: a comment of the export
    bench.driver.find_element("id", "fault-input").send_keys("sw 6A82 ins B2 once")
    bench.click("fault-arm")
    assert bench.reply("fault ") == "fault sw 6A82 ins B2 once: ok card 0 fault sw 6A82 ins B2 once"
    assert tx(reader, READ_EF05_07) == "6A82"  # the next READ RECORD answers it
    assert tx(reader, READ_EF05_07) == CARD_NUMBER  # once
    bench.wait(lambda d: any("6A82" in li.text for li in d.find_elements("css selector", '#stream li[data-kind="apdu"]')),
               "the faulted READ RECORD")
    bench.open_entry("GET RESPONSE")
    shot = SCREENSHOT if os.environ.get("SSCARD_SCREENSHOT") == "1" else tmp_path / SCREENSHOT.name
    assert bench.driver.save_screenshot(str(shot))  # the README's picture: a few decoded exchanges, one opened
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for old in downloads.glob("*.apdu"):
        old.unlink()
    bench.click("export")
    exported = bench.wait(lambda d: [p for p in downloads.glob("*.apdu") if p.stat().st_size], "a download")[0]
    text = exported.read_text(encoding="utf-8")
    trace = parse(text, exported.name)
    assert "! fault sw 6A82 ins B2 once" in text and "@protocol T=0 raw" in text
    assert trace.apdus >= 4
    result = replay(trace, sim_reader_for(trace, load_image_copy(bench.start)))
    assert result.ok, result.report()


def test_a_date_past_the_deadline_and_a_reset_lock_the_ssse(bench):
    bench.open()
    reader = bench.pcsc()  # connected: the card is powered, so Reset is a warm reset
    assert tx(reader, SELECT_SSSE).endswith("9000")
    assert bench.cell("ssse", "lock") == "none"
    past = CARD_DATE + datetime.timedelta(days=301)  # the deadline is issue + 300: passed
    field = bench.driver.find_element("id", "date-input")
    bench.driver.execute_script("arguments[0].value = arguments[1]", field, past.isoformat())
    bench.click("date-set")
    assert bench.reply(f"date {past}: ") == f"date {past}: ok card 0 date {past}"
    bench.wait(lambda d: str(past) in bench.text('#card-table td[data-key="date"]'), "the new date")
    assert bench.cell("ssse", "lock") == "none"  # the rule runs at power-up
    bench.click("reset")
    assert bench.reply("reset: ").startswith("reset: ok card 0 reset")
    bench.wait(lambda d: bench.cell("ssse", "lock") == "locked (deadline)", "the deadline lock")
    assert bench.text("#chip-ssse") == "SSSE issued, lock locked (deadline)"


def test_without_the_token_the_page_only_views_and_control_is_refused(bench):
    bench.open(token=False)
    assert bench.text("#mode") == "view only"
    assert not bench.driver.find_element("id", "remove").is_enabled()
    status = bench.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/api/card/0/control', {method: 'POST', headers: {'content-type': 'application/json'},
                                      body: JSON.stringify({line: 'remove'})})
          .then(r => r.json().then(j => done([r.status, j.error])));""")
    assert status[0] == 403 and "token" in status[1]
    assert wait_for_card(READER, present=True, timeout=1)


def test_a_control_from_another_origin_is_refused(bench):
    token = bench.url.split("token=")[1]
    # a page of another origin posting a form (the only cross-site request without a preflight)
    target = f"http://127.0.0.1:{bench.port}/api/card/0/control"
    bench.driver.get("data:text/html,<form method=post action='" + target + "'><input name=line value=remove>"
                     "</form><script>document.forms[0].submit()</script>")
    bench.wait(lambda d: "another origin" in d.find_element("tag name", "body").text, "the refusal")
    # the view under another of its names is another origin: a fetch with the token needs a CORS
    # preflight there, which the view never grants
    bench.driver.get(f"http://localhost:{bench.port}/card/0")
    outcome = bench.driver.execute_async_script(f"""
        const done = arguments[arguments.length - 1];
        fetch('http://127.0.0.1:{bench.port}/api/card/0/control', {{method: 'POST',
              headers: {{'content-type': 'application/json', 'x-bench-token': '{token}'}},
              body: JSON.stringify({{line: 'remove'}})}}).then(r => done('answered ' + r.status), e => done(String(e)));""")
    assert outcome.startswith("TypeError")
    assert wait_for_card(READER, present=True, timeout=1)
    assert tx(bench.pcsc(), SELECT_SSSE).endswith("9000")


def test_the_page_keeps_up_with_a_busy_bench(bench):
    bench.open()
    reader = bench.pcsc()
    assert tx(reader, SELECT_SSSE).endswith("9000")
    done, timing = threading.Event(), {}

    def terminal():  # as fast as pcscd goes, for BUSY seconds
        start, count = time.monotonic(), 0
        while time.monotonic() - start < BUSY:
            assert tx(reader, READ_EF05_07) == CARD_NUMBER
            count += 1
        timing["rate"] = count / (time.monotonic() - start)
        done.set()

    worker = threading.Thread(target=terminal)
    worker.start()
    slowest = 0.0
    while not done.is_set():  # the page answers script calls all along
        before = time.monotonic()
        bench.driver.execute_script("return document.querySelectorAll('#stream li').length")
        slowest = max(slowest, time.monotonic() - before)
        time.sleep(0.05)
    worker.join()
    assert timing["rate"] > 100
    bench.wait(lambda d: d.execute_script(
        "return document.querySelector('#stream li .title').textContent") == "READ RECORD 07 of EF05 (SFI 5) — card number",
        "the last READ RECORD")
    rows = bench.driver.execute_script("return document.querySelectorAll('#stream li').length")
    assert rows == 500  # the page's bound: the oldest rows went
    gaps = bench.driver.find_elements("css selector", '#stream li[data-kind="gap"] .title')
    if timing["rate"] > 1000:  # faster than a page shows: said where it happened, and counted
        assert gaps and "events not shown here" in gaps[0].get_attribute("textContent")
        assert "not shown (faster than 1,000 a second)" in bench.text("#stream-count")
    assert slowest < 1.0, f"the page took {slowest:.2f} s to answer during the burst"
