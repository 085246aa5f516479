"""pcsc-tools' scriptor and OpenSC's opensc-tool, unmodified, on the serial CCID reader through Debian's
pcscd and libccid: the same bytes they get on the vpcd path (tests/test_pcsc.py), at both exchange levels,
with the default T=0 card and the `t1` profile's T=1 card.

scriptor sends each line as it is written, so what it shows is the reader's level: at TPDU level on
T=0 the card's `611E` and `6C12` reach it (the host's transport layer is scriptor's own script), at
short APDU level the firmware fetched and re-issued them (LD/T 32 P2 §9.3.1), and on T=1 there are
none to fetch, a `6Cxx` excepted, which T=1 passes on at both levels. opensc-tool is a terminal: it
sends GET RESPONSE and re-issues `6Cxx` itself, so its answers are the same everywhere.

Where PC/SC is unavailable these skip (fail with CI=true), like the other PC/SC tests.
"""

import shutil

import pytest
from helpers import CARD_DATE, DEFAULT_ATR, EF05, FCI, SELECT_SSSE, T1_ATR, require_ccid
from test_ccid_apdu import READER, nested

from chip import Card
from reader.ccid.levels import SHORT_APDU, TPDU

SCRIPT = ("# select the SSSE, read EF05 records 01 (Le 00 first) and 07, a wrong VERIFY\n"
          f"{SELECT_SSSE}\n"
          "00 B2 01 2C 00\n"
          "00 B2 07 2C 0B\n"
          "00 20 00 00 03 00 00 00\n")
RECORD_1, RECORD_7 = EF05[0x01] + "9000", EF05[0x07] + "9000"
SCRIPTOR = {  # what scriptor prints back for each line of SCRIPT, by protocol and level
    (0, TPDU): ["611E", "6C12", RECORD_7, "63C5"],
    (0, SHORT_APDU): [FCI["sm4"] + "9000", RECORD_1, RECORD_7, "63C5"],
    (1, TPDU): [FCI["sm4"] + "9000", "6C12", RECORD_7, "63C5"],
    (1, SHORT_APDU): [FCI["sm4"] + "9000", "6C12", RECORD_7, "63C5"],
}


@pytest.fixture(scope="module")
def tools():
    require_ccid("scriptor and opensc-tool on the serial CCID reader")
    for tool, package in (("scriptor", "pcsc-tools"), ("opensc-tool", "opensc")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} ({package}) is missing: `make test` installs it")


def run_tools(tmp_path, profile: str, level: str) -> tuple[str, str]:
    """scriptor's and opensc-tool's output, one pcscd driving the firmware that serves a fresh card."""
    image = str(tmp_path / f"{profile}.img")
    Card.from_profile(profile, state=image, date=CARD_DATE).close()
    script = tmp_path / "ssse.scriptor"
    script.write_text(SCRIPT, encoding="utf-8")
    scriptor_out, opensc_out = tmp_path / "scriptor.out", tmp_path / "opensc.out"
    shell = (f"scriptor -r '{READER}' {script} > {scriptor_out} && "
             f"opensc-tool -r '{READER}' -a -s {SELECT_SSSE}00 -s 00B2072C00 -s 0020000003000000 > {opensc_out}")
    nested(tmp_path, image, level, ["sh", "-c", shell])
    return scriptor_out.read_text(), opensc_out.read_text()


@pytest.mark.parametrize("level", [TPDU, SHORT_APDU])
@pytest.mark.parametrize(("profile", "protocol", "atr"), [("default", 0, DEFAULT_ATR), ("t1", 1, T1_ATR)],
                         ids=["t0-card", "t1-card"])
def test_scriptor_and_opensc_tool_get_the_vpcd_paths_bytes(tools, tmp_path, profile, protocol, atr, level):
    scriptor, opensc = run_tools(tmp_path, profile, level)
    assert f"Using T={protocol} protocol" in scriptor
    responses = ["".join(r.split(":")[0].split()).upper() for r in scriptor.split("< ")[1:]]
    assert responses == SCRIPTOR[protocol, level], scriptor
    lines = opensc.strip().splitlines()
    assert lines[0].replace(":", "").upper() == atr, opensc  # -a: the ATR first
    blocks = [block.split("Sending:")[0] for block in opensc.split("Received ")[1:]]
    assert len(blocks) == 3, opensc
    assert blocks[0].startswith("(SW1=0x90, SW2=0x00)")  # the FCI, 61xx fetched by OpenSC or the reader
    assert "".join(line[:48].replace(" ", "") for line in blocks[0].splitlines()[1:]).upper() == FCI["sm4"]
    assert blocks[1].startswith("(SW1=0x90, SW2=0x00)") and "07 09 54 30 30 30 30 30 30 30 31" in blocks[1]
    assert blocks[2].startswith("(SW1=0x63, SW2=0xC4)")  # the second wrong PIN (scriptor's first): 4 tries left

