"""End to end: Debian's own pcscd and libccid (libccidtwin, the GemPC Twin serial driver), unmodified,
drive our reader firmware on a pty, and a pyscard client talks to the card through them.

Each test makes a card image, starts `python -m reader.ccid LINK --state IMAGE` (the firmware must
answer before pcscd probes its serial readers), then runs the client under a private pcscd of its
own: `python -m reader.pcsc.pcscd run --ccid LINK --debug --log FILE -- python client.py` - nested
in the suite's, in namespaces of its own. The client checks exact bytes: the ATR, SELECT SSSE, a
record, a wrong VERIFY; on T=0 the `61xx` goes back to the client, which sends GET RESPONSE (the
reader works at TPDU level), as on the vpcd path; on T=1 the driver runs the blocks - PPS,
SetParameters, S(IFS 254) - and a 258-byte and a 302-byte response come in chained I-blocks.

Where PC/SC is unavailable these skip (fail with CI=true), like the other PC/SC tests.
"""

import json
import os
import re
import select
import subprocess
import sys

import pytest
from helpers import CARD_DATE, DEFAULT_ATR, FCI, ROOT, SELECT_SSSE, T1_ATR, require_ccid

from chip import Card
from reader.ccid.pty import FRIENDLY_NAME

READER = FRIENDLY_NAME + " 00 00"
PHOTO = bytes(range(256)) + bytes(44)  # EF08, 300 bytes: longer than the driver's IFSD of 254
NEW_PHOTO = bytes(reversed(range(256))) + bytes(44)  # what the client writes there
T0, T1 = 1, 2  # SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1

CLIENT = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import oracle
from helpers import KEY_ID, card_key
from smartcard.System import readers

protocol, photo = int(sys.argv[2]), sys.argv[3] == "photo"
names = [str(r) for r in readers()]
reader = [r for r in readers() if str(r) == sys.argv[4]][0]
connection = reader.createConnection()
connection.connect(protocol=protocol)
out = {"readers": names, "atr": bytes(connection.getATR()).hex().upper(), "exchanges": []}

def tx(apdu):
    data, sw1, sw2 = connection.transmit(list(apdu))
    response = bytes(data) + bytes((sw1, sw2))
    out["exchanges"].append([apdu.hex().upper(), response.hex().upper()])
    return response

answer = tx(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))
if answer[0] == 0x61:
    tx(bytes.fromhex("00C00000") + answer[1:])
tx(bytes.fromhex("00B2072C0B"))
tx(bytes.fromhex("0020000003000000"))
if photo:  # RKSSSE opens EF08 (P5 6.4.3): GET CHALLENGE, EXTERNAL AUTHENTICATE, then READ BINARY
    challenge = tx(bytes.fromhex("0084000008"))
    ks = oracle.process_key("sm4", card_key("sm4", "ssse_rk"), challenge[:-2])
    original = bytes(range(1, 9))
    tx(bytes((0x00, 0x82, 0x00, KEY_ID["ssse_rk"], 0x10)) + oracle.auth_data("sm4", ks, original) + original)
    tx(bytes.fromhex("00B0880000"))  # Le 256: 258 bytes back
    tx(bytes.fromhex("00B0880000012C"))  # extended Le 300: 302 bytes back
    # UKSSSE opens EF08 for update: a 307-byte command (case 3E), longer than the card's IFSC of 254
    challenge = tx(bytes.fromhex("0084000008"))
    ks = oracle.process_key("sm4", card_key("sm4", "ssse_uk"), challenge[:-2])
    tx(bytes((0x00, 0x82, 0x00, KEY_ID["ssse_uk"], 0x10)) + oracle.auth_data("sm4", ks, original) + original)
    tx(bytes.fromhex("00D6880000012C") + bytes(reversed(range(256))) + bytes(44))
    tx(bytes.fromhex("00B0880000012C"))
connection.disconnect()
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def pcsc():
    require_ccid("serial CCID end-to-end tests")


def image(tmp_path, profile: str, photo: bool = False) -> str:
    path = str(tmp_path / f"{profile}.img")
    card = Card.from_profile(profile, state=path, date=CARD_DATE)
    if photo:
        card.store.write(card.store["ssse.ef08"], "data", PHOTO)
        card.store.commit()
    card.close()
    return path


class Firmware:
    """`python -m reader.ccid LINK --state IMAGE --debug` (or `argv` with the link last), up once it
    printed its reader.conf entry."""

    def __init__(self, tmp_path, state: str, argv: list[str] | None = None):
        self.link = str(tmp_path / "gempc")
        self.log = tmp_path / "firmware.log"
        argv = argv + [self.link] if argv else ["-m", "reader.ccid", self.link, "--state", state, "--debug"]
        self.process = subprocess.Popen([sys.executable, *argv],
                                        stdout=subprocess.PIPE, stderr=open(self.log, "wb"), cwd=ROOT)
        assert self.process.stdout is not None
        if not select.select([self.process.stdout], [], [], 20)[0]:
            self.stop()
            pytest.fail(f"the firmware did not start: {self.log.read_text()}")
        assert self.process.stdout.readline().decode() == f'FRIENDLYNAME "{FRIENDLY_NAME}"\n'

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def answers(self) -> list[str]:
        """The hex data of every DataBlock the firmware sent, from its log."""
        return self._data(r"< RDR_to_PC_DataBlock")

    def commands(self) -> list[str]:
        """The hex data of every XfrBlock the host sent, from the firmware's log."""
        return self._data(r"> PC_to_RDR_XfrBlock")

    def _data(self, message: str) -> list[str]:
        return [match[1].replace(" ", "") for match in
                re.finditer(rf"^{message} .*?\] ?([0-9A-F ]*)$", self.log.read_text(), re.M)]


def drive(tmp_path, state: str, protocol: int, photo: bool = False) -> tuple[dict, Firmware]:
    """The client's results under a private pcscd driving the firmware, and the firmware (stopped)."""
    client = tmp_path / "client.py"
    client.write_text(CLIENT, encoding="utf-8")
    log = tmp_path / "pcscd.log"
    firmware = Firmware(tmp_path, state)
    try:
        run = subprocess.run([sys.executable, "-m", "reader.pcsc.pcscd", "run", "--ccid", firmware.link, "--debug",
                              "--log", str(log), "--", sys.executable, str(client), str(ROOT / "tests"),
                              str(protocol), "photo" if photo else "-", READER],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        firmware.stop()
    logs = f"\n--- run:\n{run.stderr}\n--- pcscd:\n{log.read_text()[-6000:] if log.exists() else ''}"
    assert run.returncode == 0, logs
    return json.loads(run.stdout.strip().splitlines()[-1]), firmware


def test_pcscd_and_libccid_drive_the_t0_card(pcsc, tmp_path):
    out, _ = drive(tmp_path, image(tmp_path, "default"), T0)
    assert READER in out["readers"]
    assert out["atr"] == DEFAULT_ATR == "3B6D000000815353438699110100000001"
    assert out["exchanges"] == [
        [SELECT_SSSE, "611E"],  # T=0 at TPDU level: the 61xx reaches the client, as on the vpcd path
        ["00C000001E", FCI["sm4"] + "9000"],
        ["00B2072C0B", "07095430303030303030319000"],
        ["0020000003000000", "63C5"],
    ]


def test_pcscd_and_libccid_drive_the_t1_card_with_chaining(pcsc, tmp_path):
    out, firmware = drive(tmp_path, image(tmp_path, "t1", photo=True), T1, photo=True)
    assert READER in out["readers"] and out["atr"] == T1_ATR
    exchanges = out["exchanges"]
    assert exchanges[:3] == [
        [SELECT_SSSE, FCI["sm4"] + "9000"],  # T=1: the data with the SW
        ["00B2072C0B", "07095430303030303030319000"],
        ["0020000003000000", "63C5"],
    ]
    assert exchanges[4][1] == "9000"  # EXTERNAL AUTHENTICATE with RKSSSE
    assert exchanges[5] == ["00B0880000", (PHOTO[:256] + b"\x90\x00").hex().upper()]
    assert exchanges[6] == ["00B0880000012C", (PHOTO + b"\x90\x00").hex().upper()]
    assert exchanges[9] == ["00D6880000012C" + NEW_PHOTO.hex().upper(), "9000"]  # case 3E
    assert exchanges[10] == ["00B0880000012C", (NEW_PHOTO + b"\x90\x00").hex().upper()]  # what was written
    commands = firmware.commands()
    sent = [c for c in commands if len(c) >= 6 and int(c[2:4], 16) & 0xA0 == 0x20]  # the host's I-blocks, M = 1
    assert sent and all(c[4:6] == "FE" for c in sent)  # the 307 bytes in pieces of the card's IFSC, 254
    answers = firmware.answers()
    assert "FF1113FD" in answers  # the driver's PPS for T=1 at TA1 13, echoed
    chained = [a for a in answers if len(a) >= 6 and int(a[2:4], 16) & 0xA0 == 0x20]  # I-blocks, M = 1
    assert chained and all(a[4:6] == "FE" for a in chained)  # each piece a full IFSD of 254


def test_a_reader_that_never_answers_fails_the_run(pcsc, tmp_path):
    """A pty nobody answers on: the driver's Escape 02 times out, pcscd lists no CCID reader, and
    the run fails (exit 1) instead of running COMMAND without it."""
    master, slave = os.openpty()
    link = tmp_path / "silent"
    os.symlink(os.ttyname(slave), link)
    try:
        run = subprocess.run([sys.executable, "-m", "reader.pcsc.pcscd", "run", "--ccid", str(link), "--",
                              sys.executable, "-c", "print('ran')"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    finally:
        os.close(master)
        os.close(slave)
    assert run.returncode == 1 and "ran" not in run.stdout
    assert "does the CCID firmware answer?" in run.stderr
