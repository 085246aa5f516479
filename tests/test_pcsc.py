"""End to end through a real PC/SC stack: `sscard serve` on vpcd, pcscd, and clients we did not
write (pyscard, pcsc-tools' scriptor, OpenSC's opensc-tool), each checking exact responses.

The served card is the default one: its ATR offers T=0 only (LD/T 32 P2), so pcscd connects
over T=0 and `sscard serve` gives the card T=0 behaviour - a SELECT answers `61 1E` and its FCI
waits for GET RESPONSE, a READ RECORD with Le 00 answers `6C xx` (the SSSE's rule) - and each
client is checked on what it does with that: pyscard and scriptor show the raw exchanges, OpenSC
and our PcscReader fetch and re-issue as terminals do.

`make test` runs these with its own pcscd (reader.pcsc.pcscd run), in private mount and network
namespaces: they never reach the machine's pcscd, nor a card someone serves there (see
test_isolation.py). Anywhere else - plain `pytest`, or a machine without the PC/SC pieces or
without namespaces - they skip with the reason; in CI (`CI=true`) that fails loudly.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import helpers
import pytest
from helpers import EF05, SELECT_SSSE, tx

from chip import Card
from chip.personalization.profile import SHIPPED
from reader.pcsc.serve import ServedProcess
from reader.traces.pytest_plugin import require_pcsc

READER = "Virtual PCD 00 00"
READER_2 = "Virtual PCD 00 01"
SELECT = SELECT_SSSE
# 6F { 84 DF name, A5 { 88 01 1E (DIR SFI 30), 9F0C 03 86 01 03 (SM4) } } (P5 table 36): 30 bytes
FCI = helpers.FCI["sm4"]
EF05_01 = EF05[0x01]  # card identification code, 18 bytes
EF05_07 = EF05[0x07]  # card number, 11 bytes


@pytest.fixture(scope="module")
def pcsc():
    require_pcsc("PC/SC end-to-end tests")


def run_client(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)


def Served(tmp_path, images, ports=(35963,), extra=()):
    return ServedProcess(images, ports=ports, control=str(tmp_path / "control.sock"), extra=extra)


def personalise(path, number="T00000001"):
    text = (SHIPPED / "default.toml").read_text(encoding="utf-8").replace('"T00000001"', f'"{number}"')
    profile = path.with_suffix(".toml")
    profile.write_text(text, encoding="utf-8")
    Card.from_profile(str(profile), state=str(path))
    return str(path)


@pytest.fixture
def served(pcsc, tmp_path):
    image = personalise(tmp_path / "card.img")
    server = Served(tmp_path, [image])
    yield server
    assert server.stop() == 0, server.process.stderr.read()


def pcsc_reader(name=READER, **kw):
    from reader.pcsc.reader import PcscReader

    return PcscReader(name, connect_timeout=10, **kw)


# -- three clients we did not write ------------------------------------------------------------------

def test_pyscard_high_level_api(served):
    from smartcard.System import readers

    reader = next(r for r in readers() if str(r) == READER)
    deadline = time.monotonic() + 10
    while True:
        connection = reader.createConnection()
        try:
            connection.connect()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    from smartcard.CardConnection import CardConnection

    atr = bytes(connection.getATR())
    assert atr == Card.open(served.images[0], read_only=True).atr  # serve owns it
    assert atr.hex().upper() == "3B6D0000" "00815353438699110100000001"
    assert connection.getProtocol() == CardConnection.T0_protocol  # the only one the ATR offers
    # pyscard shows the raw T=0 exchanges: the FCI waits for GET RESPONSE, Le 00 is answered 6C12
    assert connection.transmit(list(bytes.fromhex(SELECT))) == ([], 0x61, 0x1E)
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex("00C000001E")))
    assert bytes(data).hex().upper() == FCI and (sw1, sw2) == (0x90, 0x00)
    assert connection.transmit(list(bytes.fromhex("00B2012C00"))) == ([], 0x6C, 0x12)
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex("00B2012C12")))
    assert bytes(data).hex().upper() == EF05_01 and (sw1, sw2) == (0x90, 0x00)
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex("00B2013412")))  # EF06: RKSSSE first
    assert (data, sw1, sw2) == ([], 0x69, 0x82)
    connection.disconnect()


def test_scriptor_selects_the_ssse_and_reads_ef05(served, tmp_path):
    if shutil.which("scriptor") is None:
        pytest.fail("scriptor (pcsc-tools) is missing")
    script = tmp_path / "ssse.scriptor"
    # scriptor sends each line as it is, so the script does T=0's work: GET RESPONSE, Le from 6Cxx
    script.write_text("# select the SSSE, read EF05 records 01 and 07\n"
                      "00 A4 04 00 0F 73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF\n"
                      "00 C0 00 00 1E\n"
                      "00 B2 01 2C 00\n"
                      "00 B2 01 2C 12\n"
                      "00 B2 07 2C 0B\n")
    pcsc_reader().reset()  # wait until pcscd has seen the card
    result = run_client(["scriptor", "-r", READER, str(script)])
    assert result.returncode == 0, result.stderr
    assert "Using T=0 protocol" in result.stdout
    responses = result.stdout.split("< ")[1:]
    flat = ["".join(r.split(":")[0].split()).upper() for r in responses]
    assert flat == ["611E", FCI + "9000", "6C12", EF05_01 + "9000", EF05_07 + "9000"]


def test_opensc_tool_atr_and_apdus(served):
    if shutil.which("opensc-tool") is None:
        pytest.fail("opensc-tool (opensc) is missing")
    atr = Card.open(served.images[0], read_only=True).atr
    pcsc_reader().reset()
    result = run_client(["opensc-tool", "-r", READER, "-a"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == atr.hex(":")
    # OpenSC is a terminal: it fetches 61xx with GET RESPONSE (the SELECT carries Le, case 4) and
    # re-issues a 6Cxx with the Le it names
    result = run_client(["opensc-tool", "-r", READER, "-s", SELECT + "00", "-s", "00B2072C00",
                         "-s", "0020000003000000"])
    assert result.returncode == 0, result.stderr
    blocks = [block.split("Sending:")[0] for block in result.stdout.split("Received ")[1:]]
    assert len(blocks) == 3, result.stdout
    assert blocks[0].startswith("(SW1=0x90, SW2=0x00)")
    data = "".join(line[:48].replace(" ", "") for line in blocks[0].splitlines()[1:]).upper()
    assert data == FCI
    assert blocks[1].startswith("(SW1=0x90, SW2=0x00)") and "07 09 54 30 30 30 30 30 30 30 31" in blocks[1]
    assert blocks[2].startswith("(SW1=0x63, SW2=0xC5)")  # a wrong PIN, 5 tries left


# -- our PcscReader and sscard apdu --reader -------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--t0"]], ids=["the-cards-own", "t0"])
def test_pcsc_reader_follows_61xx_like_a_terminal(pcsc, tmp_path, extra):
    from smartcard import scard

    image = personalise(tmp_path / "card.img")
    server = Served(tmp_path, [image], extra=extra)
    try:
        raw = pcsc_reader(get_response=False)
        raw.reset()
        assert raw.protocol == scard.SCARD_PROTOCOL_T0
        assert tx(raw, SELECT) == "611E"
        assert tx(raw, "00C000001E") == FCI + "9000"
        assert tx(raw, "00C000001E") == "6F00"  # nothing waiting any more
        assert tx(raw, "00B2012C10") == "6C12"
        raw.close()
        reader = pcsc_reader()
        reader.reset()
        assert tx(reader, SELECT) == FCI + "9000"
        assert tx(reader, SELECT + "00") == FCI + "9000"
        assert tx(reader, "00B2012C10") == EF05_01 + "9000"  # 6C12 re-issued with Le 12
        assert tx(reader, "00B2072C00") == EF05_07 + "9000"
        reader.close()
    finally:
        assert server.stop() == 0


def test_serve_t1_overrides_the_cards_protocol(pcsc, tmp_path):
    """`--t1`: the card answers as on T=1 (data with the SW, no 61xx), whatever its ATR offers."""
    image = personalise(tmp_path / "card.img")
    server = Served(tmp_path, [image], extra=["--t1"])
    try:
        raw = pcsc_reader(get_response=False)
        raw.reset()
        assert tx(raw, SELECT) == FCI + "9000"
        assert tx(raw, "00B2012C12") == EF05_01 + "9000"
        assert tx(raw, "00B2012C00") == "6C12"  # the SSSE's own answer to Le 00, on T=1 too
        raw.close()
    finally:
        assert server.stop() == 0


def test_sscard_apdu_and_readers_commands(served):
    pcsc_reader().reset()
    result = run_client([sys.executable, "-m", "reader.cli", "readers"])
    assert result.returncode == 0 and READER in result.stdout.splitlines()
    result = run_client([sys.executable, "-m", "reader.cli", "apdu", "--reader", READER, SELECT, "00B2072C00"])
    assert result.returncode == 0, result.stderr
    assert "< 07 09 54 30 30 30 30 30 30 30 31\n< 9000  OK" in result.stdout


# -- removal, reinsertion, switching, several cards -------------------------------------------------

def test_removal_and_reinsertion_seen_by_pyscard(served):
    from reader.pcsc.reader import PcscError

    reader = pcsc_reader()
    reader.reset()
    assert tx(reader, SELECT) == FCI + "9000"
    assert served.command("remove") == "ok removed card 0"
    with pytest.raises(PcscError):
        tx(reader, "00B2012C00")  # the card left: the transmit fails at once
    reader.close()
    gone = pcsc_reader()
    gone.connect_timeout = 0.3
    time.sleep(0.6)  # pcscd notices removal at its next poll (about 0.4 s)
    with pytest.raises(PcscError, match=r"no card|No smart card|unpowered|removed"):
        gone.reset()
    gone.close()
    assert served.command("insert") == "ok inserting card 0"
    back = pcsc_reader()
    back.reset()  # retries until pcscd has seen the insertion
    assert tx(back, SELECT) == FCI + "9000"
    back.close()


def test_switch_image(pcsc, tmp_path):
    first = personalise(tmp_path / "a.img", "T00000001")
    second = personalise(tmp_path / "b.img", "T00000002")
    server = Served(tmp_path, [first])
    try:
        reader = pcsc_reader()
        reader.reset()
        tx(reader, SELECT)
        assert tx(reader, "00B2072C00") == EF05_07 + "9000"
        reader.close()
        assert server.command(f"switch {second}") == f"ok card 0 is now {second}"
        reader = pcsc_reader()
        reader.reset()
        tx(reader, SELECT)
        assert tx(reader, "00B2072C00") == "0709" + b"T00000002".hex().upper() + "9000"
        assert "b.img" in server.command("status")
        assert server.command("switch /nonexistent.img").startswith("error: /nonexistent.img: no such card image")
        reader.close()
    finally:
        assert server.stop() == 0


def test_two_cards_in_one_process(pcsc, tmp_path):
    first = personalise(tmp_path / "a.img", "T00000001")
    second = personalise(tmp_path / "b.img", "T00000002")
    server = Served(tmp_path, [first, second], ports=(35963, 35964))
    try:
        for name, number in ((READER, "T00000001"), (READER_2, "T00000002")):
            reader = pcsc_reader(name)
            reader.reset()
            tx(reader, SELECT)
            assert tx(reader, "00B2072C00") == "0709" + number.encode().hex().upper() + "9000"
            reader.close()
    finally:
        assert server.stop() == 0


# -- pcscd restarts, the card process dies --------------------------------------------------------------

def test_pcscd_restart_while_serving(served, tmp_path):
    from reader.pcsc import pcscd

    pidfile = os.environ.get(pcscd.PIDFILE_ENV)
    if not pidfile:
        if os.environ.get("CI") == "true":
            pytest.fail("make test must run pytest under `python -m reader.pcsc.pcscd run` (no pcscd PID file)")
        pytest.skip("this pcscd was not started by `python -m reader.pcsc.pcscd run`; not killing it")
    reader = pcsc_reader()
    reader.reset()
    assert tx(reader, SELECT) == FCI + "9000"
    reader.close()
    with open(pidfile) as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pcscd.readers() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    log = tmp_path / "pcscd.log"
    for attempt in range(3):  # the killed pcscd's PID and socket may take a moment to clear
        try:
            process = pcscd.start(str(log), detach=True)
            break
        except RuntimeError:
            if attempt == 2:
                raise RuntimeError(f"pcscd would not restart: {log.read_text(errors='replace')[-500:]}") from None
            time.sleep(0.5)
    with open(pidfile, "w") as f:  # the wrapper stops this one at the end
        f.write(str(process.pid))
    fresh = pcsc_reader()
    fresh.reset()  # the card reconnected to the new pcscd's vpcd by itself
    assert tx(fresh, SELECT) == FCI + "9000"
    assert tx(fresh, "00B2072C00") == EF05_07 + "9000"
    fresh.close()
    assert served.process.poll() is None  # the same card process served both


def test_kill_9_with_a_command_in_flight_leaves_the_image_consistent(pcsc, tmp_path):
    """Wrong PINs through PC/SC while the card process is killed: the image opens and the
    tries-left count is at most what the last answered 63Cx said."""
    text = (SHIPPED / "default.toml").read_text(encoding="utf-8").replace("pin_tries = 6", "pin_tries = 15")
    profile = tmp_path / "p.toml"
    profile.write_text(text, encoding="utf-8")
    image = str(tmp_path / "card.img")
    Card.from_profile(str(profile), state=image)
    server = Served(tmp_path, [image])
    reader = pcsc_reader()
    reader.reset()
    tx(reader, SELECT)
    answered = []
    killed = False
    from reader.pcsc.reader import PcscError

    try:
        for i in range(14):
            if i == 5:
                server.process.send_signal(signal.SIGKILL)  # between or during commands
                killed = True
            try:
                sw = tx(reader, "0020000003000000")
            except PcscError:
                break
            answered.append(int(sw[-1], 16))
    finally:
        server.stop()
        reader.close()
    assert killed and answered and answered == list(range(14, 14 - len(answered), -1))
    tries = Card.open(image).store["ssse.pin"].tries
    assert tries <= answered[-1]
    assert tries >= answered[-1] - 1  # at most the one command in flight was counted
