"""`sscard serve --ccid LINK`: a served card in the serial CCID reader, with serve's control channel.

Without pcscd: the firmware notifies a card inserted or removed with the two bytes `50 03` / `50 02`
(CCID rev 1.1 §6.3.1 RDR_to_PC_NotifySlotChange, unframed on the GemPC Twin's line) after the
host's next command and before its answer - never inside a frame - and GetSlotStatus says
bmICCStatus 1 (present, inactive) or 2 (absent). `sscard serve --ccid` prints the reader.conf
entry and the pcscd command, and `remove`, `insert`, `switch`, `status`, `quit` on its control
socket act on the CCID slot, which the test reads by speaking CCID on the pty itself.

Through the real pcscd and libccidtwin (a private pcscd nested in the suite's, as in
test_ccid_pcsc.py): `python -m reader.pcsc.pcscd run --ccid LINK -- python client.py`, where
the client reads the ATR and SELECT SSSE as on vpcd, sends `remove` (pcscd reports the reader
empty within REMOVAL_BOUND s, printed), `insert` (the card is back and answers), and
`fault sw 6A82 ins B2 once` (the next READ RECORD answers 6A82, the one after it the record),
`fault mute ins B2 once` (the next READ RECORD fails: the card end says nothing, the firmware
answers ICC_MUTE and pcscd SCARD_E_NOT_TRANSACTED; the one after it is answered). The keypad
of `--ccid-reader GemPCPinPad` from the control channel (`keypad 123456`: the client's
FEATURE_VERIFY_PIN_DIRECT answers 9000). And the firmware killed (SIGKILL) and restarted on the
same LINK and image, with a new pcscd: the card answers with the state it had.
Where PC/SC is unavailable those skip (fail with CI=true), like the other PC/SC tests.
"""

import json
import os
import select
import socket
import subprocess
import sys
import time

import pytest
from helpers import CARD_DATE, DEFAULT_ATR, FCI, ROOT, SELECT_SSSE, T1_ATR, require_ccid

from chip import Card
from reader.ccid import messages as m
from reader.ccid.firmware import Firmware
from reader.ccid.pty import FRIENDLY_NAME, LIBCCIDTWIN, PtyReader
from reader.ccid.serial import frame
from reader.pcsc.serve import SWAP_DELAY, control

READER = FRIENDLY_NAME + " 00 00"
READ_RECORD_7 = "00B2072C0B"
RECORD_7 = "07095430303030303030319000"  # EF05 record 7, the card number T00000001, and 9000
REMOVAL_BOUND = 0.5  # s: pcscd polls the reader every 0.4 s (GetSlotStatus)
SERVE = [sys.executable, "-m", "reader.cli", "serve", "--no-stdin"]


def image(tmp_path) -> str:
    path = str(tmp_path / "card.img")
    Card.from_profile("default", state=path, date=CARD_DATE).close()
    return path




class Line:
    """The host's end of the serial line: the pty's slave, raw, as libccidtwin opens it."""

    def __init__(self, link: str):
        import tty

        self.fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        self.seq = 0

    def read(self, size: int, timeout: float = 5.0) -> bytes:
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError(f"{len(data)} of {size} bytes: {data.hex(' ')}")
            data += os.read(self.fd, size - len(data))
        return data

    def exchange(self, kind: int, data: bytes = b"", reader: PtyReader | None = None) -> tuple[bytes, m.Message]:
        """Send one command (to `reader`, answered here, or to a reader in another process); the bytes
        before its echo (the notifications) and its answer."""
        self.seq = (self.seq + 1) % 256
        command = m.Message(kind, 0, self.seq, bytes(3), data).encode()
        os.write(self.fd, frame(command))
        if reader is not None:
            assert select.select([reader.fileno()], [], [], 5)[0]
            assert reader.readable()
        before = b""
        while True:  # what precedes the echo: NotifySlotChange messages, two bytes each
            head = self.read(1)
            if head[0] == 0x03:
                break
            before += head + self.read(1)
        echoed = head + self.read(10 + 2)  # the command's header with dwLength 0, then the LRC
        assert echoed == frame(command[:1] + bytes(4) + command[5:10])
        start = self.read(7)  # 03 06 and the header up to dwLength
        rest = self.read(int.from_bytes(start[3:7], "little") + 5 + 1)
        whole = start + rest
        return before, m.decode(whole[2:-1])

    def close(self) -> None:
        os.close(self.fd)


# -- the slot change on the line, sans pcscd ---------------------------------------------------------------

def test_slot_changes_come_before_the_next_answer_never_inside_a_frame(tmp_path):
    firmware = Firmware(None)
    with PtyReader(str(tmp_path / "gempc"), firmware) as reader:
        line = Line(reader.link)
        try:
            def exchange(kind, data=b""):
                return line.exchange(kind, data, reader)

            before, reply = exchange(m.GET_SLOT_STATUS)
            assert before == b"" and reply.icc_status == m.ICC_ABSENT
            firmware.insert(Card.from_profile("default", date=CARD_DATE))
            assert not select.select([line.fd], [], [], 0.05)[0]  # nothing on the line until the host asks
            before, reply = exchange(m.GET_SLOT_STATUS)
            assert before == b"\x50\x03" and reply.icc_status == m.ICC_INACTIVE
            before, reply = exchange(m.ICC_POWER_ON)
            assert before == b"" and reply.data.hex().upper() == DEFAULT_ATR
            firmware.remove()
            firmware.remove()  # an empty slot: no second notification
            before, reply = exchange(m.GET_SLOT_STATUS)
            assert before == b"\x50\x02" and reply.icc_status == m.ICC_ABSENT
            firmware.insert(Card.from_profile("default", date=CARD_DATE))
            firmware.remove()
            before, reply = exchange(m.XFR_BLOCK, bytes.fromhex(READ_RECORD_7))
            assert before == b"\x50\x03\x50\x02" and reply.failed and reply.error == m.ICC_MUTE
        finally:
            line.close()


class Served:
    """`sscard serve --ccid LINK --state IMAGE --control SOCKET --no-stdin`, up once its control socket is
    (`state`: an image already made, else a fresh default card)."""

    def __init__(self, tmp_path, *extra: str, state: str | None = None):
        self.link = str(tmp_path / "gempc")
        self.control = str(tmp_path / "ctl.sock")
        self.err = tmp_path / "serve.err"
        self.image = state or image(tmp_path)
        self.process = subprocess.Popen(SERVE + ["--ccid", self.link, "--state", self.image,
                                                 "--control", self.control, *extra],
                                        stdout=subprocess.PIPE, stderr=open(self.err, "ab"), cwd=ROOT)
        deadline = time.monotonic() + 20
        while not self.listening():  # a socket file alone may be a killed serve's
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"sscard serve --ccid did not start: {self.err.read_text()}")
            time.sleep(0.02)

    def listening(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(self.control)
            except OSError:
                return False
        return True

    def stanza(self) -> list[str]:
        assert self.process.stdout is not None
        return [self.process.stdout.readline().decode() for _ in range(5)]

    def run_client(self, tmp_path, script: str, *args: str, variant: str | None = None) -> dict:
        """`script` (a Python client) with the control socket, then `args`, under a private pcscd that
        drives this serve's CCID reader (`variant`: as given to serve); serve stopped after it. The JSON
        the client printed last."""
        client = tmp_path / "client.py"
        client.write_text(script, encoding="utf-8")
        link = self.link if variant is None else f"{self.link}:{variant}"
        try:
            run = subprocess.run([sys.executable, "-m", "reader.pcsc.pcscd", "run", "--ccid", link, "--",
                                  sys.executable, str(client), self.control, *args],
                                 capture_output=True, text=True, timeout=120, cwd=ROOT)
        finally:
            self.stop()
        assert run.returncode == 0, f"{run.stderr}\n--- serve:\n{self.err.read_text()}"
        return json.loads(run.stdout.strip().splitlines()[-1])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def test_serve_ccid_prints_the_reader_conf_entry_and_obeys_its_control_channel(tmp_path):
    served = Served(tmp_path, "--ccid-reader", "GemPCPinPad")
    try:
        lines = served.stanza()
        assert lines[:3] == [f'FRIENDLYNAME "{FRIENDLY_NAME}"\n', f"DEVICENAME {served.link}:GemPCPinPad\n",
                             f"LIBPATH {LIBCCIDTWIN}\n"]
        assert lines[3].startswith("# ") and "--config" in lines[3]
        assert f"python -m reader.pcsc.pcscd run --ccid {served.link}:GemPCPinPad -- COMMAND" in lines[4]
        line = Line(served.link)
        try:
            before, reply = line.exchange(m.GET_SLOT_STATUS)  # the card went in as the server started
            assert before == b"\x50\x03" and reply.icc_status == m.ICC_INACTIVE
            assert not line.exchange(m.ICC_POWER_ON)[1].failed
            assert "in the CCID reader" in control(served.control, "status")
            assert control(served.control, "status").endswith(
                "(GemPCPinPad, keypad: 0 entries waiting), inserted, powered, 2 CCID commands")
            assert control(served.control, "keypad 123456") == "ok card 0 keypad: 6 digits queued"
            assert control(served.control, "keypad 0 cancel") == "ok card 0 keypad: cancel queued"
            assert control(served.control, "keypad 12a456") == "error: a keypad entry is digits, cancel or timeout"
            assert "keypad: 2 entries waiting" in control(served.control, "status")
            assert control(served.control, "remove") == "ok removed card 0"
            before, reply = line.exchange(m.GET_SLOT_STATUS)
            assert before == b"\x50\x02" and reply.icc_status == m.ICC_ABSENT
            assert line.exchange(m.ICC_POWER_ON)[1].error == m.ICC_MUTE
            assert control(served.control, "status").endswith(", removed, 4 CCID commands")
            assert control(served.control, "insert") == "ok inserting card 0"
            before, reply = line.exchange(m.GET_SLOT_STATUS)
            assert before == b"\x50\x03" and reply.icc_status == m.ICC_INACTIVE
            assert control(served.control, "fault sw 6A82 ins B2 once") == "ok card 0 fault sw 6A82 ins B2 once"
            other = str(tmp_path / "other.img")
            Card.from_profile("t1", state=other, date=CARD_DATE).close()
            assert control(served.control, f"switch {other}") == f"ok card 0 is now {other}"
            before, reply = line.exchange(m.GET_SLOT_STATUS)  # out for SWAP_DELAY, so that pcscd sees it
            assert before == b"\x50\x02" and reply.icc_status == m.ICC_ABSENT
            time.sleep(SWAP_DELAY + 0.2)
            before, reply = line.exchange(m.GET_SLOT_STATUS)
            assert before == b"\x50\x03" and reply.icc_status == m.ICC_INACTIVE
            assert line.exchange(m.ICC_POWER_ON)[1].data.hex().upper() == T1_ATR
            assert control(served.control, "quit") == "ok quit"
        finally:
            line.close()
        assert served.process.wait(10) == 0
        assert not os.path.lexists(served.link)  # the pty and its link are gone with the server
    finally:
        served.stop()


def test_a_keypad_line_on_a_reader_without_one_says_so(tmp_path):
    served = Served(tmp_path)  # GemPCTwin
    try:
        assert control(served.control, "keypad 123456") == "error: card 0's reader (GemPCTwin) has no keypad"
        assert "(GemPCTwin), inserted" in control(served.control, "status")
        assert control(served.control, "keypad timeout").count("\n") == 0
    finally:
        served.stop()


def test_serve_ccid_does_not_record(tmp_path):
    run = subprocess.run(SERVE + ["--ccid", str(tmp_path / "gempc"), "--state", image(tmp_path),
                                  "--record", str(tmp_path / "t.apdu")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "--record" in run.stderr and "--ccid" in run.stderr
    assert not os.path.lexists(tmp_path / "gempc")


def test_realtime_wants_the_ccid_reader(tmp_path):
    run = subprocess.run(SERVE + ["--state", image(tmp_path), "--realtime"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "--realtime" in run.stderr and "--ccid LINK" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_serve_ccid_refuses_a_link_that_is_not_a_symlink(tmp_path):
    (tmp_path / "gempc").write_text("mine")
    run = subprocess.run(SERVE + ["--ccid", str(tmp_path / "gempc"), "--state", image(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "not a symlink" in run.stderr and len(run.stderr.splitlines()) == 1
    assert (tmp_path / "gempc").read_text() == "mine"


# -- through pcscd and libccidtwin -------------------------------------------------------------------------

CLIENT = r'''
import json, socket, sys, time
from smartcard import scard
from smartcard.System import readers
from reader.pcsc.serve import control as serve_control

control_path, name = sys.argv[1], sys.argv[2]
out = {"exchanges": []}

def control(line):
    return serve_control(control_path, line)

def wait(present, since, timeout=3.0):
    """Seconds from `since` until pcscd reports the reader with (or without) a card; None on timeout."""
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    try:
        states = [(name, scard.SCARD_STATE_UNAWARE)]
        while time.monotonic() - since < timeout:
            hresult, states = scard.SCardGetStatusChange(context, 20, states)
            if hresult == scard.SCARD_S_SUCCESS and bool(states[0][1] & scard.SCARD_STATE_PRESENT) == present:
                return time.monotonic() - since
            states = [(n, e & ~scard.SCARD_STATE_CHANGED) for n, e, *_ in states]
        return None
    finally:
        scard.SCardReleaseContext(context)

def connect():
    connection = [r for r in readers() if str(r) == name][0].createConnection()
    connection.connect()
    out["exchanges"].append(["ATR", bytes(connection.getATR()).hex().upper()])
    return connection

def tx(connection, apdu):
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex(apdu)))
    out["exchanges"].append([apdu, (bytes(data) + bytes((sw1, sw2))).hex().upper()])

out["readers"] = [str(r) for r in readers()]
card = connect()
tx(card, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
tx(card, "00C000001E")
tx(card, "00B2072C0B")
since = time.monotonic()
out["remove"] = control("remove")
out["removed_after"] = wait(False, since)
out["removed_status"] = control("status")
try:
    tx(card, "00B2072C0B")
except Exception as exc:  # the card is gone
    out["after_removal"] = type(exc).__name__
try:
    card.disconnect()  # before a new connection (the old one's disposition would reset the new card)
except Exception:
    pass
since = time.monotonic()
out["insert"] = control("insert")
out["inserted_after"] = wait(True, since)
card = connect()
tx(card, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
out["fault"] = control("fault sw 6A82 ins B2 once")
tx(card, "00B2072C0B")
tx(card, "00B2072C0B")
out["mute"] = control("fault mute ins B2 once")
since = time.monotonic()
try:
    tx(card, "00B2072C0B")
except Exception as exc:  # the card said nothing: SCardTransmit fails
    out["muted"] = [type(exc).__name__, str(exc)]
out["muted_after"] = time.monotonic() - since
tx(card, "00B2072C0B")
card.disconnect()
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def pcsc():
    require_ccid("sscard serve --ccid end-to-end tests")


def test_pcscd_sees_the_served_card_go_out_and_in_and_its_faults(pcsc, tmp_path):
    started = time.monotonic()
    out = Served(tmp_path).run_client(tmp_path, CLIENT, READER)
    print(f"\nserve --ccid through pcscd: removal seen after {out['removed_after']:.3f} s, insertion after "
          f"{out['inserted_after']:.3f} s, the mute READ RECORD failed after {out['muted_after']:.3f} s "
          f"({out.get('muted')}), the whole run {time.monotonic() - started:.2f} s")
    assert READER in out["readers"]
    assert out["exchanges"][:4] == [
        ["ATR", DEFAULT_ATR],
        [SELECT_SSSE, "611E"],  # T=0 at TPDU level: as on the vpcd path
        ["00C000001E", FCI["sm4"] + "9000"],
        [READ_RECORD_7, RECORD_7],
    ]
    assert out["remove"] == "ok removed card 0"
    assert out["removed_after"] is not None and out["removed_after"] < REMOVAL_BOUND
    assert out["removed_status"].startswith("card 0: ") and ", removed, " in out["removed_status"]
    assert "after_removal" in out  # the old connection's card is gone
    assert out["insert"] == "ok inserting card 0"
    assert out["inserted_after"] is not None and out["inserted_after"] < REMOVAL_BOUND + 0.5
    assert out["fault"] == "ok card 0 fault sw 6A82 ins B2 once"
    assert out["exchanges"][4:] == [
        ["ATR", DEFAULT_ATR],
        [SELECT_SSSE, "611E"],
        [READ_RECORD_7, "6A82"],  # the fault, once
        [READ_RECORD_7, RECORD_7],
        [READ_RECORD_7, RECORD_7],  # after the mute one, which got no answer at all
    ]
    assert out["mute"] == "ok card 0 fault mute ins B2 once"
    assert "80100016" in out["muted"][1]  # the firmware's ICC_MUTE: SCardTransmit fails, SCARD_E_NOT_TRANSACTED


PINPAD_CLIENT = r"""
import json, socket, sys
from smartcard.System import readers
from smartcard.scard import SCARD_CTL_CODE
from reader.pcsc.serve import control as serve_control

control_path, name = sys.argv[1], sys.argv[2]

def control(line):
    return serve_control(control_path, line)

connection = [r for r in readers() if str(r) == name][0].createConnection()
connection.connect()
tlv = bytes(connection.control(SCARD_CTL_CODE(3400), []))  # CM_IOCTL_GET_FEATURE_REQUEST
features = {tlv[i]: int.from_bytes(tlv[i + 2:i + 2 + tlv[i + 1]], "big") for i in range(0, len(tlv), 2 + 4)}
verify = features[0x06]  # FEATURE_VERIFY_PIN_DIRECT
# PIN_VERIFY_STRUCTURE (PC/SC part 10) for the SSSE's VERIFY, six BCD digits
VERIFY = bytes.fromhex("0000" "81" "03" "00" "0606" "02" "01" "0904" "00" "000000" "08000000" "0020000003FFFFFF")
data, sw1, sw2 = connection.transmit(list(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")))
out = {"select": (bytes(data) + bytes((sw1, sw2))).hex().upper(), "steps": []}
for entry in ("123456", "000000"):
    reply = control("keypad " + entry)
    waiting = control("status")
    pin = bytes(connection.control(verify, list(VERIFY))).hex().upper()
    out["steps"].append([reply, waiting, pin, control("status")])
connection.disconnect()
print(json.dumps(out))
"""


def test_the_control_channels_keypad_feeds_pcscs_verify_pin_direct(pcsc, tmp_path):
    started = time.monotonic()
    served = Served(tmp_path, "--ccid-reader", "GemPCPinPad")
    out = served.run_client(tmp_path, PINPAD_CLIENT, READER, variant="GemPCPinPad")
    print(f"\nserve --ccid GemPCPinPad, keypad on the control channel: {time.monotonic() - started:.2f} s")
    assert out["select"] == "611E"
    (good, wrong) = out["steps"]
    assert good[0] == "ok card 0 keypad: 6 digits queued" and "123456" not in good[1]
    assert "keypad: 1 entry waiting" in good[1] and "keypad: 0 entries waiting" in good[3]
    assert good[2] == "9000"  # the right PIN, from the keypad into the card's VERIFY
    assert wrong[0] == "ok card 0 keypad: 6 digits queued"
    assert wrong[2] == "63C5"  # a wrong one: one try gone
    assert "123456" not in served.err.read_text() and "000000" not in served.err.read_text()


VERIFY_CLIENT = r"""
import json, sys
from smartcard.System import readers

connection = [r for r in readers() if str(r) == sys.argv[1]][0].createConnection()
connection.connect()
out = []
for apdu in ("00A404000F7378312E73682EC9E7BBE1B1A3D5CF", "0020000003000000"):  # SELECT SSSE, a wrong VERIFY
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex(apdu)))
    out.append((bytes(data) + bytes((sw1, sw2))).hex().upper())
connection.disconnect()
print(json.dumps(out))
"""


def test_the_firmware_killed_and_restarted_serves_the_card_with_its_state(pcsc, tmp_path):
    """SIGKILL: no cleanup at all (the symlink and the control socket stay, the image's lock goes with
    the process). The same LINK and image again, and a new pcscd (libccid probes serial readers only
    when pcscd starts): the card answers, and the PIN try the first run spent is still spent."""
    client = tmp_path / "client.py"
    client.write_text(VERIFY_CLIENT, encoding="utf-8")

    def run() -> list[str]:
        done = subprocess.run([sys.executable, "-m", "reader.pcsc.pcscd", "run", "--ccid", served.link, "--",
                               sys.executable, str(client), READER], capture_output=True, text=True, timeout=120,
                              cwd=ROOT)
        assert done.returncode == 0, f"{done.stderr}\n--- serve:\n{served.err.read_text()}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    served = Served(tmp_path)
    try:
        assert run() == ["611E", "63C5"]
        served.process.kill()
        assert served.process.wait(10) == -9
    finally:
        served.stop()
    assert os.path.islink(served.link)  # left behind by the killed firmware
    restarted = time.monotonic()
    served = Served(tmp_path, state=served.image)
    try:
        up = time.monotonic() - restarted
        assert run() == ["611E", "63C4"]  # no try lost or gained across the kill
        print(f"\nserve --ccid killed and restarted: up again in {up:.2f} s, the card answered "
              f"{time.monotonic() - restarted:.2f} s after the restart, nested pcscd included")
    finally:
        served.stop()
    with Card.open(served.image, read_only=True) as card:
        assert card.store["ssse.pin"].tries == 4


REALTIME_CLIENT = r"""
import json, sys, time
from smartcard.System import readers
from reader.pcsc.serve import control

control_path, name = sys.argv[1], sys.argv[2]
connection = [r for r in readers() if str(r) == name][0].createConnection()
connection.connect()
out = {"fault": control(control_path, "fault delay 20000 ins B2 once"), "line": []}
for apdu in ("00A404000F7378312E73682EC9E7BBE1B1A3D5CF", "00B2072C0B", "00B2072C0B"):
    started = time.monotonic()
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex(apdu)))
    out["line"].append([(bytes(data) + bytes((sw1, sw2))).hex().upper(), time.monotonic() - started])
connection.disconnect()
print(json.dumps(out))
"""


def test_serve_realtime_answers_at_the_cards_pace(pcsc, tmp_path):
    """serve's own loop keeps the pace: the default card's READ RECORD with 20,000 etu of processing
    (1.86 s at 372/1 and 4 MHz) answers after that time, the next one at once."""
    out = Served(tmp_path, "--realtime").run_client(tmp_path, REALTIME_CLIENT, READER)
    assert out["fault"] == "ok card 0 fault delay 20000 ins B2 once"
    (select, _), (slow, took), (fast, quick) = out["line"]
    assert select == "611E" and slow == fast == RECORD_7
    assert 20000 * 372 / 4_000_000 <= took < 20000 * 372 / 4_000_000 + 1.0
    assert quick < 0.3
