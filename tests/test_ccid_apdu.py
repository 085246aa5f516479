"""The serial CCID reader at short APDU level (reader/ccid/levels.py, docs/ccid.md): Escape 1F 02 switches
the firmware from TPDU to short APDU exchanges, and the firmware then runs T=0 or T=1 towards the card
itself with the reader ends of reader/link.

In process: the level switch, T=0 with the firmware's own GET RESPONSE and 6Cxx re-issue (LD/T 32 P2
§9.3.1: 61xx and 6Cxx are transport-level), T=1 with the firmware's S(IFS) and chaining (ISO/IEC 7816-3
§11.6). End to end: Debian's pcscd and libccidtwin with the driver option 0x0002
(`python -m reader.pcsc.pcscd run --ccid LINK --ccid-level apdu`) give a client the same final bytes
as the TPDU level and the vpcd path, and a curated trace replayed with `sscard replay --reader` passes
at both levels on a card made as the trace says (its @profile on @issued, its @date, its @random).
"""

import json
import subprocess
import sys

import pytest
from helpers import CARD_DATE, DEFAULT_ATR, FCI, ROOT, SELECT_SSSE, T1_ATR, TRACES, require_ccid
from test_ccid_pcsc import Firmware as FirmwareProcess

from chip import Card
from chip.contacts.t1 import IFS, decode, s_block
from chip.contacts.timing import EDC_LRC
from reader.ccid import messages as m
from reader.ccid.firmware import Firmware
from reader.ccid.levels import ESCAPE_SET_APDU_LEVEL, SHORT_APDU, TPDU
from reader.ccid.pty import FRIENDLY_NAME
from reader.link.t1 import ReaderT1
from reader.pcsc import pcscd
from reader.traces.format import parse

READER = FRIENDLY_NAME + " 00 00"
RECORD_7 = "07095430303030303030319000"  # EF05 record 7, the card number T00000001, and 9000
WRONG_VERIFY = "0020000003000000"
T0, T1 = 1, 2  # SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1


def command(kind: int, data: bytes = b"", fields: bytes = bytes(3)) -> m.Message:
    return m.Message(kind, 0, 7, fields, data)


def xfr(fw: Firmware, hex_data: str) -> str:
    reply = fw.handle(command(m.XFR_BLOCK, bytes.fromhex(hex_data)))
    assert not reply.failed, reply
    return reply.data.hex().upper()


def apdu_level(profile: str = "default") -> Firmware:
    fw = Firmware(Card.from_profile(profile, date=CARD_DATE))
    assert fw.level == TPDU  # what the GemPC Twin announces, until the driver switches it
    reply = fw.handle(command(m.ESCAPE, ESCAPE_SET_APDU_LEVEL))
    assert (reply.type, reply.failed, reply.data) == (m.ESCAPE_ANSWER, False, b"")
    assert fw.level == SHORT_APDU
    assert not fw.handle(command(m.ICC_POWER_ON)).failed
    return fw


# -- in process ------------------------------------------------------------------------------------------

def test_t0_at_apdu_level_the_firmware_fetches_61xx_and_reissues_6cxx():
    fw = apdu_level()
    assert fw._reader_t0.transport  # the whole of 7816-3 §12.2, not the TPDU level's single TPDU
    assert xfr(fw, SELECT_SSSE) == FCI["sm4"] + "9000"  # case 3 on the line, 61 1E fetched by the firmware
    assert [sent.hex().upper() for sent, _ in fw._reader_t0.exchanges] == [SELECT_SSSE, "00C000001E"]
    assert xfr(fw, "00B2072C00") == RECORD_7  # Le 00: the card's 6C 0B, the command again with P3 0B
    assert [sent.hex().upper() for sent, _ in fw._reader_t0.exchanges] == ["00B2072C00", "00B2072C0B"]
    assert xfr(fw, WRONG_VERIFY) == "63C5"


def test_the_tpdu_level_keeps_61xx_and_6cxx_for_the_host():
    fw = Firmware(Card.from_profile("default", date=CARD_DATE))
    assert not fw.handle(command(m.ICC_POWER_ON)).failed
    assert not fw._reader_t0.transport
    assert xfr(fw, SELECT_SSSE) == "611E" and xfr(fw, "00B2072C00") == "6C0B"


def test_escape_1f_02_with_a_card_active_changes_the_firmwares_end_at_once():
    fw = Firmware(Card.from_profile("default", date=CARD_DATE))
    assert not fw.handle(command(m.ICC_POWER_ON)).failed
    assert xfr(fw, SELECT_SSSE) == "611E"
    assert not fw.handle(command(m.ESCAPE, ESCAPE_SET_APDU_LEVEL)).failed
    assert xfr(fw, SELECT_SSSE) == FCI["sm4"] + "9000"
    fw.handle(command(m.ICC_POWER_OFF))
    assert not fw.handle(command(m.ICC_POWER_ON)).failed
    assert fw.level == SHORT_APDU and xfr(fw, SELECT_SSSE) == FCI["sm4"] + "9000"  # the level outlives the power


def test_an_extended_apdu_is_refused_at_short_apdu_level():
    """7816-4 §5.1: Lc or Le on two bytes is no short APDU; its response (up to 65538 bytes) need not fit
    the reader's 261 bytes of message data. The card never sees it; a malformed APDU still reaches it."""
    fw = apdu_level()
    assert xfr(fw, SELECT_SSSE) == FCI["sm4"] + "9000"
    reply = fw.handle(command(m.XFR_BLOCK, bytes.fromhex("00B0880000012C")))
    assert (reply.failed, reply.error, reply.data) == (True, 10, b"")  # bError: the offset of abData
    assert [sent.hex().upper() for sent, _ in fw._reader_t0.exchanges] == [SELECT_SSSE, "00C000001E"]  # untouched
    assert xfr(fw, "00B2072C0B01") == "6700"  # Lc 0B and one byte: no APDU, the card's answer


def t1_session(ifsc: int) -> Firmware:
    """The t1 card at APDU level as the driver sets it up: PPS FF 11 13 FD, then SetParameters T=1 with `ifsc`."""
    fw = apdu_level("t1")
    assert xfr(fw, "FF1113FD") == "FF1113FD"
    structure = bytes((0x13, 0x10, 0x00, 0x45, 0x00, ifsc, 0x00))
    assert not fw.handle(command(m.SET_PARAMETERS, structure, bytes((1, 0, 0)))).failed
    assert isinstance(fw._reader_t1, ReaderT1) and fw._reader_t0 is None
    return fw


def test_t1_at_apdu_level_the_firmware_sets_ifsd_and_chains():
    fw = t1_session(ifsc=0xFE)
    assert xfr(fw, SELECT_SSSE) == FCI["sm4"] + "9000"
    reader = fw._reader_t1
    assert reader is not None
    assert reader.exchanges[0] == ("out", s_block(IFS, b"\xfe").encode(EDC_LRC))  # the firmware's own IFSD, 254
    assert reader.exchanges[0][1].hex().upper() == "00C101FE3E"
    assert xfr(fw, "00B2072C00") == "6C0B"  # on T=1 the APDU and its response go through unchanged
    assert xfr(fw, WRONG_VERIFY) == "63C5"

    small = t1_session(ifsc=0x10)  # IFSC 16: the 20-byte SELECT goes in two chained I-blocks
    assert xfr(small, SELECT_SSSE) == FCI["sm4"] + "9000"
    assert small._reader_t1 is not None
    sent = [decode(raw, EDC_LRC) for way, raw in small._reader_t1.exchanges if way == "out"]
    pieces = [block for block in sent if block.is_i]
    assert [(len(block.inf), block.more) for block in pieces] == [(16, True), (4, False)]


def test_run_takes_the_ccid_level():
    assert pcscd._run_arguments(["--ccid", "/tmp/l", "--ccid-level", "apdu", "--", "true"]) == (
        pcscd.RunOptions(ccid="/tmp/l", ccid_level="apdu"), ["true"])
    assert pcscd._run_arguments(["--ccid-level", "tpdu", "--", "true"]) == (pcscd.RunOptions(ccid_level="tpdu"), ["true"])
    assert pcscd.main(["run", "--ccid-level", "apdu", "--", "true"]) == 2  # a level, and no reader to set it for
    assert pcscd._run_arguments(["--ccid-level", "character", "--", "true"]) is None
    assert pcscd.RunOptions(ccid="/tmp/l", ccid_level="apdu").argv() == ["--ccid", "/tmp/l", "--ccid-level", "apdu"]


def test_the_driver_options_copy_changes_only_ifddriveroptions(tmp_path):
    original = f"{pcscd.CCID_DROPDIR}/{pcscd.CCID_BUNDLE}/Contents/Info.plist"
    try:
        text = open(original, encoding="utf-8").read()
    except OSError:
        pytest.skip(f"no {original} (package libccid)")
    dropdir = pcscd.driver_options_dropdir(str(tmp_path), pcscd.DRIVER_OPTION_GEMPC_TWIN_KEY_APDU)
    copy = open(f"{dropdir}/{pcscd.CCID_BUNDLE}/Contents/Info.plist", encoding="utf-8").read()
    before, after = (f"<key>ifdDriverOptions</key>\n\t<string>{value}</string>" for value in ("0x0000", "0x0002"))
    assert text.count(before) == 1 and copy == text.replace(before, after)  # Debian's value, 0x0000, replaced


# -- end to end: pcscd and libccidtwin ---------------------------------------------------------------------

SERVE = r'''
import signal, sys
sys.path.insert(0, sys.argv[1])
from chip import Card
from reader.ccid.firmware import Firmware
from reader.ccid.pty import PtyReader, stanza
from reader.traces.format import parse
from reader.traces.replay import issue_date, seeded

image, trace_path, link = sys.argv[2], sys.argv[3], sys.argv[4]
card = Card.open(image)
if trace_path != "-":  # the trace's day and random source, as a replay on a card of its own sets them
    trace = parse(open(trace_path, encoding="utf-8").read(), trace_path)
    card.set_date(trace.today(issue_date(card)))
    if trace.random is not None:
        card.random = seeded(trace.random)
with card, PtyReader(link, Firmware(card)) as reader:
    print(stanza(reader.link), end="", flush=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: reader.stop())
    reader.serve()
'''

CLIENT = r'''
import json, sys
from smartcard.System import readers

protocol = int(sys.argv[1])
reader = [r for r in readers() if str(r) == sys.argv[2]][0]
connection = reader.createConnection()
connection.connect(protocol=protocol)
out = {"atr": bytes(connection.getATR()).hex().upper(), "line": [], "final": []}

def tx(apdu):
    data, sw1, sw2 = connection.transmit(list(apdu))
    response = bytes(data) + bytes((sw1, sw2))
    out["line"].append([apdu.hex().upper(), response.hex().upper()])
    return response

for apdu in sys.argv[3:]:
    answer = tx(bytes.fromhex(apdu))
    if answer[0] == 0x61:  # what a terminal's transport layer does with 61xx (P2 9.3.1)
        answer = tx(bytes.fromhex("00C00000") + answer[1:])
    out["final"].append(answer.hex().upper())
connection.disconnect()
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def pcsc():
    require_ccid("serial CCID end-to-end tests at APDU level")


def served(tmp_path, image: str, trace: str = "-") -> FirmwareProcess:
    """The firmware on a pty, serving `image` (date and random source from `trace`, if any)."""
    script = tmp_path / "serve.py"
    script.write_text(SERVE, encoding="utf-8")
    return FirmwareProcess(tmp_path, image, argv=[str(script), str(ROOT), image, trace])


def nested(tmp_path, image: str, level: str, command: list[str], trace: str = "-") -> subprocess.CompletedProcess:
    """`command` under a private pcscd that drives the firmware serving `image` at `level`."""
    log = tmp_path / f"pcscd-{level}.log"
    firmware = served(tmp_path, image, trace)
    try:
        run = subprocess.run([sys.executable, "-m", "reader.pcsc.pcscd", "run", "--ccid", firmware.link,
                              "--ccid-level", level, "--debug", "--log", str(log), "--", *command],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        firmware.stop()
    driver = log.read_text() if log.exists() else ""
    assert run.returncode == 0, f"{run.stdout}\n--- run:\n{run.stderr}\n--- pcscd:\n{driver[-6000:]}"
    assert ("DriverOptions: 0x0002" in driver) == (level == SHORT_APDU)
    assert ("00 00 00 1F 02" in driver) == (level == SHORT_APDU)  # the Escape 1F 02 on the line
    return run


def client(tmp_path, profile: str, level: str, protocol: int, apdus: list[str]) -> dict:
    image = str(tmp_path / f"{profile}-{level}.img")
    Card.from_profile(profile, state=image, date=CARD_DATE).close()
    script = tmp_path / "client.py"
    script.write_text(CLIENT, encoding="utf-8")
    run = nested(tmp_path, image, level, [sys.executable, str(script), str(protocol), READER, *apdus])
    return json.loads(run.stdout.strip().splitlines()[-1])


APDUS = [SELECT_SSSE, "00B2072C0B", WRONG_VERIFY]
FINAL = [FCI["sm4"] + "9000", RECORD_7, "63C5"]  # what the vpcd path gives a terminal (tests/test_pcsc.py)


def test_the_t0_card_gives_the_same_bytes_at_both_levels(pcsc, tmp_path):
    tpdu = client(tmp_path, "default", TPDU, T0, APDUS)
    apdu = client(tmp_path, "default", SHORT_APDU, T0, APDUS)
    assert tpdu["atr"] == apdu["atr"] == DEFAULT_ATR
    assert tpdu["final"] == apdu["final"] == FINAL
    assert tpdu["line"][:2] == [[SELECT_SSSE, "611E"], ["00C000001E", FCI["sm4"] + "9000"]]  # the host fetches
    assert apdu["line"][0] == [SELECT_SSSE, FCI["sm4"] + "9000"]  # the firmware fetched it


def test_the_t1_card_gives_the_same_bytes_at_both_levels(pcsc, tmp_path):
    tpdu = client(tmp_path, "t1", TPDU, T1, APDUS)
    apdu = client(tmp_path, "t1", SHORT_APDU, T1, APDUS)
    assert tpdu["atr"] == apdu["atr"] == T1_ATR
    assert tpdu["final"] == apdu["final"] == FINAL
    assert tpdu["line"] == apdu["line"]


CURATED = sorted(path.stem for path in TRACES.glob("*.apdu") if not path.stem.startswith("pinpad"))  # keypad: test_pinpad_traces


def on_the_t1_card(text: str) -> str:
    """A curated trace as it runs on the `t1` profile's card: the same card (holder, keys, records), whose
    ATR offers T=1 as well (TA1 13, TCK); the trace's responses are written as on T=1 already."""
    lines = []
    for line in text.splitlines():
        if line.startswith("@profile "):
            line = "@profile t1"
        elif line.startswith("reset 3B"):
            line = "reset " + bytes.fromhex(T1_ATR).hex(" ").upper()
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", CURATED)
@pytest.mark.parametrize("profile", ["default", "t1"], ids=["t0-card", "t1-card"])  # pcscd runs T=1 when offered
@pytest.mark.parametrize("level", [TPDU, SHORT_APDU])
def test_the_curated_traces_replay_over_the_ccid_reader(pcsc, tmp_path, level, profile, name):
    path = TRACES / f"{name}.apdu"
    if profile == "t1":
        copy = tmp_path / path.name
        copy.write_text(on_the_t1_card(path.read_text(encoding="utf-8")), encoding="utf-8")
        path = copy
    trace = parse(path.read_text(encoding="utf-8"), str(path))
    image = str(tmp_path / "card.img")  # a fresh personalisation, as the trace's @profile and @issued say
    Card.from_profile(trace.profile, state=image, date=trace.expected_issue).close()
    run = nested(tmp_path, image, level, [sys.executable, "-m", "reader.cli", "replay", "--reader", READER, str(path)],
                 trace=str(path))
    assert f"PASS {path}" in run.stdout and run.stdout.endswith("1 passed, 0 failed\n"), run.stdout
