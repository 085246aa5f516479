"""The CCID firmware's activation (LD/T 32 P2 §6.1.3, §8.5), a slow card's waiting time extension, and the
`--realtime` pace of a real card, in process and through Debian's pcscd and libccid.

Numbers come from the standards, not from the modules: the default card's activation is RST held
low 400 clocks, TS 400 clocks after RST rises (P2 §6.1.3: 400 ... 40 000), then 17 characters of 12
initial etu of 372 clocks (ISO/IEC 7816-3 §7.1, §8.1); a T=1 card busy beyond BWT asks for a waiting
time extension, S(WTX request), PCB C3 (§11.3.2, §11.4.3); libccid's T=1 read timeout is
260 EGT + BWT + 260 CWT + 1 s (ifdhandler.c T1_card_timeout), which a card busy longer exceeds
unless the reader sends time-request bytes (ccid_serial.c ReadSerial).
"""

import json
import os
import subprocess
import sys
import time

import pytest
from helpers import CARD_DATE, ROOT, SELECT_SSSE, T1_ATR, require_ccid
from test_ccid import command
from test_ccid_pcsc import Firmware as FirmwareProcess

from chip import Card
from chip.faults import FaultPlan
from reader.ccid import messages as m
from reader.ccid.firmware import Firmware
from reader.ccid.pace import TIME_REQUEST
from reader.ccid.pty import FRIENDLY_NAME, PtyReader
from reader.ccid.serial import frame

READER = FRIENDLY_NAME + " 00 00"
CLOCK = 4_000_000  # the GemPC Twin's clock, 4 MHz (libccid: dwDefaultClock 4000 kHz)
T1 = 2  # SCARD_PROTOCOL_T1
READ_RECORD_7, RECORD_7 = "00B2072C0B", "07095430303030303030319000"


def faulted(profile: str, fault: str | None = None, paced: bool = False) -> Firmware:
    card = Card.from_profile(profile, date=CARD_DATE)
    if fault:
        card.faults = FaultPlan([fault])
    return Firmware(card, paced=paced)


# -- IccPowerOn runs the reader's activation -----------------------------------------------------

def test_power_on_takes_the_activations_time():
    fw = faulted("default", paced=True)
    reply = fw.handle(command(m.ICC_POWER_ON))
    assert not reply.failed and reply.data.hex().upper().startswith("3B6D")
    assert fw.pace.seconds == pytest.approx((400 + 400 + 17 * 12 * 372) / CLOCK)  # 19.2 ms


def test_a_bad_tck_on_the_cold_reset_is_repaired_by_the_warm_one():
    fw = faulted("t1", "atr tck once", paced=True)
    reply = fw.handle(command(m.ICC_POWER_ON))
    assert not reply.failed and reply.data.hex().upper() == T1_ATR  # the warm reset's answer
    # two resets: each RST low 400 clocks, TS after 400, 21 characters of 12 etu (7 + 13 historical + TCK)
    assert fw.pace.seconds == pytest.approx(2 * (400 + 400 + 21 * 12 * 372) / CLOCK)


@pytest.mark.parametrize(("fault", "berror"), [("atr ts", 0xF8), ("atr tck", 0xF7), ("atr mute", 0xFE),
                                               ("atr late once", 0xFE)])
def test_an_answer_the_reader_refuses_deactivates_the_card(fault, berror):
    fw = faulted("t1", fault)
    reply = fw.handle(command(m.ICC_POWER_ON))
    assert reply.failed and reply.error == berror  # CCID rev 1.1 §6.2.6
    assert fw.icc_status == m.ICC_INACTIVE and not fw.card.powered
    assert fw.handle(command(m.XFR_BLOCK, bytes.fromhex(SELECT_SSSE))).error == m.ICC_MUTE


# -- --realtime on the pty ----------------------------------------------------------------------------

def test_a_paced_answer_waits_for_its_time_and_a_slow_card_sends_time_requests(tmp_path):
    fw = faulted("default", "delay 30000 ins B2 once")
    with PtyReader(str(tmp_path / "link"), fw, realtime=True) as pty:
        slave = os.open(os.readlink(pty.link), os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            def host(message: m.Message) -> bytes:
                pty.feed(frame(message.encode()))
                return b""

            host(command(m.ICC_POWER_ON))
            assert pty.next_due() is not None and os_read(slave) == b""  # 19.2 ms to come
            time.sleep(pty.next_due() + 0.01)
            pty.tick()
            assert os_read(slave)[:2] == b"\x03\x06"  # the echo and the ATR, framed
            host(command(m.XFR_BLOCK, bytes.fromhex(SELECT_SSSE)))
            time.sleep(pty.next_due() + 0.01)
            pty.tick()
            os_read(slave)
            started = time.monotonic()
            host(command(m.XFR_BLOCK, bytes.fromhex(READ_RECORD_7)))
            written = b""
            while pty.next_due() is not None:
                time.sleep(pty.next_due() + 0.005)
                pty.tick()
                written += os_read(slave)
            elapsed = time.monotonic() - started
        finally:
            os.close(slave)
    # 30,000 etu of processing at 372/1 and 4 MHz is 2.79 s; the reader asks for time every 0.5 s of it
    assert 30000 * 372 / CLOCK <= elapsed < 30000 * 372 / CLOCK + 0.5
    requests = len(written) - len(written.lstrip(TIME_REQUEST))
    assert requests == 5 and written[requests:requests + 2] == b"\x03\x06"


def os_read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


# -- through pcscd + libccid ---------------------------------------------------------------------------

SERVE = r'''
import logging, signal, sys
sys.path.insert(0, sys.argv[1])
from chip import Card
from chip.faults import FaultPlan
from reader.ccid.firmware import Firmware
from reader.ccid.pty import PtyReader, stanza

image, fault, realtime, link = sys.argv[2], sys.argv[3], sys.argv[4] == "realtime", sys.argv[5]
logging.basicConfig(level=logging.DEBUG, format="%(message)s")
card = Card.open(image)
card.faults = FaultPlan([fault])
with card, PtyReader(link, Firmware(card), realtime=realtime) as reader:
    print(stanza(reader.link), end="", flush=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: reader.stop())
    reader.serve()
'''

CLIENT = r'''
import json, sys, time
from smartcard.System import readers

connection = [r for r in readers() if str(r) == sys.argv[1]][0].createConnection()
connection.connect(protocol=2)
out = {"line": []}
for apdu in sys.argv[2:]:
    started = time.monotonic()
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex(apdu)))
    out["line"].append([apdu, (bytes(data) + bytes((sw1, sw2))).hex().upper(), time.monotonic() - started])
connection.disconnect()
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def pcsc():
    require_ccid("the CCID reader's WTX and --realtime through pcscd")


def slow_card(tmp_path, fault: str, level: str, realtime: bool) -> tuple[dict, str]:
    """READ RECORD twice from the t1 card with `fault`, through pcscd at `level`: the client's
    exchanges with their times, and the firmware's log."""
    image = str(tmp_path / "t1.img")
    Card.from_profile("t1", state=image, date=CARD_DATE).close()
    serve, client = tmp_path / "serve.py", tmp_path / "client.py"
    serve.write_text(SERVE, encoding="utf-8")
    client.write_text(CLIENT, encoding="utf-8")
    firmware = FirmwareProcess(tmp_path, image, argv=[str(serve), str(ROOT), image, fault,
                                                      "realtime" if realtime else "-"])
    try:
        run = subprocess.run([sys.executable, "-m", "reader.pcsc.pcscd", "run", "--ccid", firmware.link,
                              "--ccid-level", level, "--", sys.executable, str(client), READER,
                              SELECT_SSSE, READ_RECORD_7, READ_RECORD_7],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        firmware.stop()
    assert run.returncode == 0, f"{run.stderr}\n--- firmware:\n{firmware.log.read_text()[-4000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1]), firmware.log.read_text()


def test_a_slow_t1_card_gets_its_wtx_from_the_drivers_t1_engine(pcsc, tmp_path):
    out, log = slow_card(tmp_path, "delay 100000 ins B2 once", "tpdu", realtime=False)
    assert [response for _, response, _ in out["line"]] == [out["line"][0][1], RECORD_7, RECORD_7]
    # the card's S(WTX request) went to the host (TPDU level), whose T=1 engine answered S(WTX response)
    answers = [line for line in log.splitlines() if line.startswith("< RDR_to_PC_DataBlock")]
    commands = [line for line in log.splitlines() if line.startswith("> PC_to_RDR_XfrBlock")]
    # after the PPS to TA1 13 (Di 4) BWT at BWI 4 is 11 + 16 × 960 × 4 = 61,451 etu: 100,000 asks for ×2
    assert any(line.endswith("00 C3 01 02 C0") for line in answers), answers
    assert any(line.endswith("00 E3 01 02 E0") for line in commands), commands


def test_realtime_keeps_the_driver_waiting_for_a_card_slower_than_its_timeout(pcsc, tmp_path):
    # at APDU level the firmware runs T=1 and the driver only waits: after the PPS to TA1 13 (Fi 372,
    # Di 4) an etu is 23.25 us, the driver's timeout 260 EGT + BWT + 260 CWT + 1 s = 2.76 s, and
    # 150,000 etu of processing take 3.49 s
    out, log = slow_card(tmp_path, "delay 150000 ins B2 once", "apdu", realtime=True)
    (_, select, _), (_, slow, took), (_, fast, quick) = out["line"]
    assert select.endswith("9000") and slow == fast == RECORD_7
    assert 150000 * 372 / 4 / CLOCK <= took < 150000 * 372 / 4 / CLOCK + 1.0
    assert quick < 0.5
    assert log.count("time request") >= 6  # one every 0.5 s of the card's work
