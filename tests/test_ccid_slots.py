"""The two-slot serial CCID reader, SEC1210: a slot for the user's card and one for the SAM (LD/T 32 P8
§5.1.1.5: at least two ICC connectors, one for the card and one secure one for the PSAM), as Debian's
libccid 1.5.2 drives it (`DEVICENAME LINK:SEC1210`: bMaxSlotIndex 1, no echo, dwFeatures 0x000100B2
with automatic PPS, Escape 06 as its open check; docs/ccid.md "The SEC1210").

In process: each slot keeps its own card, ATR, protocol and parameters; RDR_to_PC_NotifySlotChange
carries both slots' bits (CCID rev 1.1 §6.3.1: bits 0-1 slot 0, bits 2-3 slot 1, "present" then
"changed"); Escape 06 answers the firmware's name; a SetParameters asking for other parameters has the
firmware run the PPS itself (CCID §5.1 CCID_CLASS_AUTO_PPS_CUR; ISO/IEC 7816-3 §9) with the card's own
PPS end, and the slot then runs what the card agreed to.

End to end (a private pcscd nested in the suite's, as tests/test_ccid_pcsc.py does): pcscd lists
`sscard CCID 00 00` and `00 01`; the user card answers in slot 0 what it answers in the GemPC Twin, the
PSAM in slot 1 what P9 says (its environment's FCI, the terminal number, DELIVERY SESSION KEY and CIPHER
DATA checked against tests/oracle.py); the SSSE terminal's EXTERNAL AUTHENTICATE with RKSSSE, whose
authentication data the PSAM in slot 1 computes, and its INTERNAL AUTHENTICATE pass over the two PC/SC
readers; two clients at once on the two slots get every answer right (pcscd serialises the slots: the
driver says TAG_IFD_SLOT_THREAD_SAFE 0); the t1 card's TA1 13 is negotiated by the reader itself. And
`sscard serve --ccid-reader SEC1210 --psam`: the card slot removed and inserted while the SAM stays, and
the SAM slot (card 1 of the control channel) removed and inserted while the card stays.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import time

import oracle
import pytest
from helpers import CARD_DATE, DEFAULT_ATR, FCI, ROOT, SELECT_SSSE, T1_ATR, cli, h, require_ccid
from test_ccid_pcsc import Firmware as FirmwareProcess
from test_ccid_serve import Served
from test_psam import ADF_FCI, ENV, SELECT_ADF, TERMINAL, cipher, delivery, fci, process_key

from chip import Card, load_profile
from chip.contacts.t1 import decode as decode_block
from chip.contacts.t1 import i_block
from chip.contacts.timing import EDC_LRC
from reader.ccid import messages as m
from reader.ccid.firmware import FIRMWARE_NAME, Firmware
from reader.ccid.pty import slot_names
from reader.ccid.serial import VARIANTS

SEC1210 = "SEC1210"
CARD_READER, SAM_READER = slot_names(VARIANTS[SEC1210])
READ_RECORD_7 = "00B2072C0B"
RECORD_7 = "07095430303030303030319000"  # EF05 record 7, the card number T00000001, and 9000
READ_TERMINAL = "00B0960006"  # READ BINARY by SFI 16: the PSAM's terminal number (P9 §5.3)
SELECT_SM4 = "00A404000F" + ENV["sm4"]  # the PSAM's SM4 environment, the default card's algorithm (FCI 03)
SET_T1 = "13100045" "00FE00"  # libccid's SetParameters T=1 for the t1 card: TA1 13, LRC, BWI/CWI 45, IFSC FE
SET_T0_TA1 = "1300000A00"  # ... T=0 at TA1 13, WI 10
T0, T1 = 1, 2  # SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1


def command(kind: int, data: bytes = b"", fields: bytes = bytes(3), slot: int = 0) -> m.Message:
    return m.Message(kind, slot, 7, fields, data)


def sec1210(card_profile: str | None = "default", psam: bool = True) -> Firmware:
    card = Card.from_profile(card_profile, date=CARD_DATE) if card_profile else None
    others = (Card.psam(date=CARD_DATE),) if psam else ()
    return Firmware(card, variant=SEC1210, others=others)


def xfr(fw: Firmware, slot: int, hex_data: str) -> str:
    reply = fw.handle(command(m.XFR_BLOCK, bytes.fromhex(hex_data), slot=slot))
    assert not reply.failed, reply
    return h(reply.data)


def set_parameters(fw: Firmware, protocol: int, structure: str) -> m.Message:
    return fw.handle(command(m.SET_PARAMETERS, bytes.fromhex(structure), fields=bytes((protocol, 0, 0))))


# -- the two slots, in process -----------------------------------------------------------------------------

def test_each_slot_has_its_own_card_and_session():
    fw = sec1210()
    card_atr, sam_atr = (fw.handle(command(m.ICC_POWER_ON, slot=slot)) for slot in (0, 1))
    assert (card_atr.slot, h(card_atr.data)) == (0, DEFAULT_ATR)
    assert (sam_atr.slot, h(sam_atr.data)) == (1, DEFAULT_ATR)  # the PSAM's ATR is the profile's (P2 table 16)
    assert xfr(fw, 0, SELECT_SSSE) == "611E"  # T=0 at TPDU level in both slots
    assert xfr(fw, 1, SELECT_SM4) == "6118"
    assert xfr(fw, 1, "00C0000018") == fci("sm4")  # each slot's GET RESPONSE fetches its own card's data
    assert xfr(fw, 0, "00C000001E") == FCI["sm4"] + "9000"
    off = fw.handle(command(m.ICC_POWER_OFF, slot=0))
    assert off.fields == bytes((m.ICC_INACTIVE, 0, 1))
    assert fw.handle(command(m.GET_SLOT_STATUS, slot=1)).fields == bytes((m.ICC_ACTIVE, 0, 0))  # the SAM stays on
    assert xfr(fw, 1, READ_TERMINAL) == TERMINAL + "9000"
    assert fw.handle(command(m.GET_PARAMETERS, slot=1)).data.hex().upper() == "1100000A00"
    assert fw.handle(command(m.GET_PARAMETERS, slot=0)).error == m.ICC_MUTE  # no session in slot 0


def test_a_slot_beyond_the_second_is_bslot_in_error():
    reply = sec1210().handle(command(m.GET_SLOT_STATUS, slot=2))
    assert (reply.slot, reply.status, reply.error) == (2, 0x42, 5)  # failed, no ICC; bError = offset of bSlot


def test_an_empty_sam_slot_answers_absent():
    fw = sec1210(psam=False)
    assert fw.handle(command(m.GET_SLOT_STATUS, slot=1)).fields == bytes((m.ICC_ABSENT, 0, 1))
    assert fw.handle(command(m.ICC_POWER_ON, slot=1)).error == m.ICC_MUTE
    assert fw.handle(command(m.ICC_POWER_ON, slot=0)).data.hex().upper() == DEFAULT_ATR


@pytest.mark.parametrize(("moves", "notified"), [
    ([("insert", 1)], "500C"),  # slot 1 present (b2) and changed (b3), slot 0 empty
    ([("insert", 1), ("insert", 0)], "500C" "5007"),  # then slot 0 present and changed, slot 1 present
    ([("insert", 1), ("insert", 0), ("remove", 0)], "500C" "5007" "5006"),  # card out, SAM stays
    ([("insert", 0), ("insert", 1), ("remove", 1)], "5003" "500D" "5009"),  # SAM out, card stays
    ([("insert", 0), ("remove", 1)], "5003"),  # an empty slot's removal: nothing to tell
])
def test_notify_slot_change_carries_both_slots(moves, notified):
    fw = sec1210(card_profile=None, psam=False)
    for move, slot in moves:
        if move == "insert":
            fw.insert(Card.psam(date=CARD_DATE) if slot else Card.from_profile(date=CARD_DATE), slot)
        else:
            fw.remove(slot)
    assert h(fw.slot_changes()) == notified
    assert fw.slot_changes() == b""


def test_the_sec1210_is_checked_with_escape_06():
    """libccid opens a SEC1210 with Escape 06 (ccid_serial.c OpenSerialByName: it must succeed within 2 s,
    and its answer is logged as "Firmware: ..."); it sends a GemPC Escape 02 instead."""
    fw = sec1210()
    check = fw.handle(command(m.ESCAPE, b"\x06"))
    assert (check.type, check.failed, check.data) == (m.ESCAPE_ANSWER, False, FIRMWARE_NAME)
    assert len(FIRMWARE_NAME) < 50  # the driver reads the answer into 50 bytes and ends it with a NUL
    assert fw.handle(command(m.ESCAPE, b"\x02")).error == m.CMD_NOT_SUPPORTED
    assert Firmware(None).handle(command(m.ESCAPE, b"\x06")).error == m.CMD_NOT_SUPPORTED


# -- automatic PPS (CCID_CLASS_AUTO_PPS_CUR), in process -----------------------------------------------------

def powered_t1(variant: str = SEC1210) -> Firmware:
    fw = Firmware(Card.from_profile("t1", date=CARD_DATE), variant=variant)
    assert h(fw.handle(command(m.ICC_POWER_ON)).data) == T1_ATR  # T=0 runs first, at Fd/Dd
    return fw


def test_setparameters_for_t1_at_ta1_has_the_reader_run_the_pps():
    fw = powered_t1()
    reply = set_parameters(fw, 1, SET_T1)
    assert (reply.type, reply.failed, reply.fields[2], h(reply.data)) == (m.PARAMETERS, False, 1, SET_T1)
    # PPSS FF, PPS0 11 (PPS1 follows, T=1), PPS1 13, PCK FD; the card echoes it (ISO/IEC 7816-3 §9.3)
    assert fw.slots[0].pps == (bytes.fromhex("FF1113FD"), bytes.fromhex("FF1113FD"))
    assert h(fw.handle(command(m.GET_PARAMETERS)).data) == SET_T1
    block = decode_block(bytes.fromhex(xfr(fw, 0, h(i_block(0, bytes.fromhex(SELECT_SSSE)).encode(EDC_LRC)))), EDC_LRC)
    assert h(block.inf) == FCI["sm4"] + "9000"  # T=1 now: the data with the SW in one I-block


def test_setparameters_for_t0_at_ta1_negotiates_the_speed_only():
    fw = powered_t1()
    assert h(set_parameters(fw, 0, SET_T0_TA1).data) == SET_T0_TA1
    assert fw.slots[0].pps == (bytes.fromhex("FF1013FC"), bytes.fromhex("FF1013FC"))  # T=0, PPS1 13
    assert xfr(fw, 0, SELECT_SSSE) == "611E"


def test_the_parameters_already_running_need_no_pps():
    fw = Firmware(Card.from_profile(date=CARD_DATE), variant=SEC1210)
    fw.handle(command(m.ICC_POWER_ON))
    assert h(set_parameters(fw, 0, "1100000A00").data) == "1100000A00"  # the default card's, from its ATR
    assert fw.slots[0].pps is None


def test_a_speed_the_card_cannot_do_leaves_fd_dd():
    """PPS1 96 asks for Fi 512, which TA1 13 (Fi 372) does not offer: the card answers without PPS1
    (7816-3 §9.3), T=1 runs at Fd/Dd, and the Parameters answer says so."""
    fw = powered_t1()
    reply = set_parameters(fw, 1, "96100045" "00FE00")
    assert fw.slots[0].pps == (bytes.fromhex("FF119678"), bytes.fromhex("FF01FE"))  # PPS0 01: T=1, no PPS1
    assert not reply.failed and h(reply.data) == "11100045" "00FE00"


def test_a_card_that_does_not_answer_the_pps_is_deactivated():
    """A specific-mode card (TA2: T=1 at TA1 13 at once, 7816-3 §6.3.1) refuses any other Fi/Di by staying
    silent; the reader deactivates it (§9.3) and the SetParameters fails ICC_MUTE."""
    t1 = load_profile("t1")
    fw = Firmware(Card.from_profile(dataclasses.replace(t1, atr=dataclasses.replace(t1.atr, specific=1)),
                                    date=CARD_DATE), variant=SEC1210)
    fw.handle(command(m.ICC_POWER_ON))
    assert h(fw.handle(command(m.GET_PARAMETERS)).data) == SET_T1  # TA1's values from the ATR on
    assert not set_parameters(fw, 1, SET_T1).failed and fw.slots[0].pps is None  # what runs: no PPS
    reply = set_parameters(fw, 1, "11100045" "00FE00")
    assert fw.slots[0].pps == (bytes.fromhex("FF01FE"), b"")  # T=1 at Fd/Dd: no PPS1, and no answer
    assert (reply.failed, reply.error, reply.icc_status) == (True, m.ICC_MUTE, m.ICC_INACTIVE)
    assert not fw.card.powered


def test_a_gempc_twin_leaves_the_pps_to_the_driver():
    fw = powered_t1("GemPCTwin")
    assert h(set_parameters(fw, 1, SET_T1).data) == SET_T1 and fw.slots[0].pps is None


# -- the command lines ----------------------------------------------------------------------------------------

def test_personalize_psam_makes_a_psam_image(tmp_path, capsys):
    image = tmp_path / "psam.img"
    code, out, _ = cli(capsys, "personalize", "--psam", "--state", image)
    assert code == 0 and out.startswith(f"personalised {image}: a PSAM (LD/T 32 P9)")
    with Card.open(image) as psam:
        assert psam.config.kind == "psam"
        psam.power_on(1)
        assert h(psam.transmit(bytes.fromhex(SELECT_SM4))) == fci("sm4")


@pytest.mark.parametrize(("argv", "says"), [
    (["--psam", "P"], "give --ccid LINK --ccid-reader SEC1210"),
    (["--ccid", "L", "--psam", "P"], "the GemPCTwin has one slot"),
])
def test_serve_psam_wants_a_reader_with_a_sam_slot(tmp_path, capsys, argv, says):
    image = str(tmp_path / "card.img")
    Card.from_profile(date=CARD_DATE, state=image).close()
    code, _, err = cli(capsys, "serve", "--no-stdin", "--state", image,
                       *[str(tmp_path / a) if a in "LP" else a for a in argv])
    assert code == 2 and says in err and len(err.splitlines()) == 1
    assert not os.path.lexists(tmp_path / "L")


def test_the_firmware_command_wants_a_sam_slot_for_psam(tmp_path):
    run = subprocess.run([sys.executable, "-m", "reader.ccid", str(tmp_path / "L"), "--profile", "default",
                          "--psam", "p.img"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "--psam: the GemPCTwin has one slot" in run.stderr


# -- end to end: pcscd and libccidtwin -----------------------------------------------------------------------

CLIENT = r'''
import json, sys, threading
from smartcard.System import readers
from reader.pcsc.reader import PcscReader
from reader.terminals.psam import Psam
from reader.terminals.ssse import SsseTerminal

card_name, sam_name, protocol = sys.argv[1], sys.argv[2], int(sys.argv[3])
plan = json.loads(sys.argv[4])
out = {"readers": [str(r) for r in readers()]}

def connect(name, protocol=1):
    connection = [r for r in readers() if str(r) == name][0].createConnection()
    connection.connect(protocol=protocol)
    return connection

def tx(connection, apdu):
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex(apdu)))
    return (bytes(data) + bytes((sw1, sw2))).hex().upper()

for name, slot_protocol, key in ((card_name, protocol, "card"), (sam_name, 1, "sam")):
    connection = connect(name, slot_protocol)
    out[key] = [bytes(connection.getATR()).hex().upper()] + [tx(connection, apdu) for apdu in plan[key]]
    connection.disconnect()

if plan["flow"]:  # the SSSE terminal over the two PC/SC readers: its keyed steps from the PSAM in slot 1
    terminal = SsseTerminal(PcscReader(card_name), Psam(PcscReader(sam_name)))
    out["flow"] = [terminal.start(), terminal.external_authenticate("ssse_rk"), terminal.internal_authenticate()]

    def hammer(name, apdu, expected, wrong):  # one client per slot, both at once
        connection = connect(name)
        for _ in range(plan["rounds"]):
            if tx(connection, apdu) != expected:
                wrong.append(name)
        connection.disconnect()

    wrong = []
    threads = [threading.Thread(target=hammer, args=(name, *plan[key], wrong))
               for name, key in ((card_name, "card_read"), (sam_name, "sam_read"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out["wrong"] = wrong
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def pcsc():
    require_ccid("SEC1210 end-to-end tests")


def images(tmp_path, profile: str) -> tuple[str, str]:
    card, psam = str(tmp_path / f"{profile}.img"), str(tmp_path / "psam.img")
    Card.from_profile(profile, state=card, date=CARD_DATE).close()
    Card.psam(state=psam, date=CARD_DATE).close()
    return card, psam


def drive(tmp_path, profile: str, protocol: int, plan: dict) -> tuple[dict, FirmwareProcess]:
    """The client's results under a private pcscd that drives the SEC1210 firmware holding a card of
    `profile` in slot 0 and a PSAM in slot 1; and the firmware (stopped), whose log has every message."""
    card, psam = images(tmp_path, profile)
    client = tmp_path / "client.py"
    client.write_text(CLIENT, encoding="utf-8")
    log = tmp_path / "pcscd.log"
    firmware = FirmwareProcess(tmp_path, card, argv=["-m", "reader.ccid", "--reader", SEC1210, "--state", card,
                                                     "--psam", psam, "--debug"])
    try:
        run = subprocess.run([sys.executable, "-m", "reader.pcsc.pcscd", "run", "--ccid", f"{firmware.link}:{SEC1210}",
                              "--debug", "--log", str(log), "--", sys.executable, str(client), CARD_READER,
                              SAM_READER, str(protocol), json.dumps(plan)],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        firmware.stop()
    driver = log.read_text() if log.exists() else ""
    assert run.returncode == 0, f"{run.stderr}\n--- pcscd:\n{driver[-6000:]}"
    assert "Reader supports 2 slot(s)" in driver and "Opening slot: 1" in driver  # ccid_serial.c, ifdhandler.c
    assert "Firmware: sscard CCID 1.0" in driver  # the answer to Escape 06
    return json.loads(run.stdout.strip().splitlines()[-1]), firmware


def test_pcscd_drives_the_card_and_the_psam_in_their_slots(pcsc, tmp_path):
    challenge, original = bytes.fromhex("1122334455667788"), bytes.fromhex("0102030405060708")
    plan = {
        "card": [SELECT_SSSE, "00C000001E", READ_RECORD_7],
        # P9: the SM4 environment's FCI after 61 18, the terminal number (case 2: no 61xx), the ADF's FCI,
        # then sequence (a) for RKSSSE: DELIVERY SESSION KEY with the card's factors and a challenge,
        # CIPHER DATA P1 00 over original || 00*8 (the 16-byte family), its 16 bytes after 61 10
        "sam": [SELECT_SM4, "00C0000018", READ_TERMINAL, SELECT_ADF, "00C000000A",
                delivery("sm4", "ssse_rk", challenge), cipher(0x00, original + bytes(8), 16), "00C0000010"],
        "flow": True, "rounds": 25,
        "card_read": [SELECT_SSSE, "611E"], "sam_read": [SELECT_SM4, "6118"],
    }
    started = time.monotonic()
    out, firmware = drive(tmp_path, "default", T0, plan)
    print(f"\nSEC1210 through pcscd: two slots, the SSSE flow and 2 x {plan['rounds']} concurrent exchanges, "
          f"nested pcscd included, {time.monotonic() - started:.2f} s")
    assert CARD_READER in out["readers"] and SAM_READER in out["readers"]
    assert out["card"] == [DEFAULT_ATR, "611E", FCI["sm4"] + "9000", RECORD_7]  # as in the GemPC Twin
    assert out["sam"][:8] == [DEFAULT_ATR, "6118", fci("sm4"), TERMINAL + "9000", "610A", ADF_FCI, "9000", "6110"]
    enciphered = bytes.fromhex(out["sam"][8])
    assert enciphered[16:] == b"\x90\x00"
    ks = process_key("sm4", "ssse_rk", challenge)  # the oracle's RKSSSE process key for the default card
    assert bytes(a ^ b for a, b in zip(enciphered[:8], enciphered[8:16])) == oracle.auth_data("sm4", ks, original)
    assert out["flow"] == [0x9000, 0x9000, True]  # SELECT SSSE, EXTERNAL AUTHENTICATE (RKSSSE), genuine card
    assert out["wrong"] == []
    log = firmware.log.read_text()
    assert "> PC_to_RDR_Escape slot 0 seq 0 [00 00 00] 06\n" in log  # the open's check, first on the line
    assert not re.search(r"Escape slot \d seq \d+ \[00 00 00\] 01 01 01\n", log)  # no card movement mode set
    assert not re.search(r"XfrBlock slot \d seq \d+ \[00 00 00\] FF", log)  # no PPS from the driver


def test_the_t1_cards_pps_is_run_by_the_reader(pcsc, tmp_path):
    plan = {"card": [SELECT_SSSE, READ_RECORD_7], "sam": [SELECT_SM4], "flow": False}
    out, firmware = drive(tmp_path, "t1", T1, plan)
    assert out["card"] == [T1_ATR, FCI["sm4"] + "9000", RECORD_7]  # T=1: no 61xx
    assert out["sam"] == [DEFAULT_ATR, "6118"]
    log = firmware.log.read_text()
    assert re.search(r"> PC_to_RDR_SetParameters slot 0 seq \d+ \[01 00 00\] 13 10 00 45 00 FE 00\n"
                     r"  PPS FF 11 13 FD -> FF 11 13 FD\n"
                     r"< RDR_to_PC_Parameters slot 0 seq \d+ \[00 00 01\] 13 10 00 45 00 FE 00\n", log), log
    assert not re.search(r"XfrBlock slot \d seq \d+ \[00 00 00\] FF", log)  # the driver sent no PPS itself
    assert re.search(r"XfrBlock slot 0 seq \d+ \[00 00 00\] 00 C1 01 FE 3E\n", log)  # its S(IFS 254): no auto IFSD


SERVE_CLIENT = r'''
import json, sys, time
from smartcard.System import readers
from reader.pcsc.serve import control as serve_control, wait_for_card

control_path, card_name, sam_name = sys.argv[1:4]
plan = json.loads(sys.argv[4])
out = {"steps": []}

def connect(name):
    connection = [r for r in readers() if str(r) == name][0].createConnection()
    connection.connect()
    return connection

def tx(connection, apdu):
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex(apdu)))
    return (bytes(data) + bytes((sw1, sw2))).hex().upper()

def step(line, name, present):
    """A control line, and how long until pcscd reports reader `name` with (or without) its card."""
    since = time.monotonic()
    reply = serve_control(control_path, line)
    seen = wait_for_card(name, present, timeout=3)
    out["steps"].append([reply, round(time.monotonic() - since, 3) if seen else None])

card, sam = connect(card_name), connect(sam_name)
out["before"] = [tx(card, plan["card"]), tx(sam, plan["sam"])]
step("remove", card_name, False)
out["status_card_out"] = serve_control(control_path, "status")
out["sam_while_card_out"] = [wait_for_card(sam_name, True, timeout=0.5), tx(sam, plan["sam_read"])]
step("insert", card_name, True)
try:
    card.disconnect()  # the removed card's connection
except Exception:
    pass
card = connect(card_name)
out["card_back"] = tx(card, plan["card"])
step("remove 1", sam_name, False)
out["card_while_sam_out"] = [wait_for_card(card_name, True, timeout=0.5), tx(card, plan["card_read"])]
step("insert 1", sam_name, True)
try:
    sam.disconnect()
except Exception:
    pass
sam = connect(sam_name)
out["sam_back"] = tx(sam, plan["sam"])
out["status"] = serve_control(control_path, "status")
print(json.dumps(out))
'''


def test_serve_a_card_and_a_psam_in_the_sec1210(pcsc, tmp_path):
    card, psam = images(tmp_path, "default")
    served = Served(tmp_path, "--ccid-reader", SEC1210, "--psam", psam, state=card)
    plan = {"card": SELECT_SSSE, "card_read": READ_RECORD_7, "sam": SELECT_SM4, "sam_read": READ_TERMINAL}
    started = time.monotonic()
    lines = served.stanza()
    assert lines[1] == f"DEVICENAME {served.link}:{SEC1210}\n"
    out = served.run_client(tmp_path, SERVE_CLIENT, CARD_READER, SAM_READER, json.dumps(plan), variant=SEC1210)
    print(f"\nserve SEC1210: card out seen after {out['steps'][0][1]} s, in after {out['steps'][1][1]} s; "
          f"SAM out after {out['steps'][2][1]} s, in after {out['steps'][3][1]} s; "
          f"the whole run {time.monotonic() - started:.2f} s")
    assert out["before"] == ["611E", "6118"]
    replies = [reply for reply, _ in out["steps"]]
    assert replies == ["ok removed card 0", "ok inserting card 0", "ok removed card 1", "ok inserting card 1"]
    assert all(seen is not None and seen < 1.0 for _, seen in out["steps"])  # pcscd polls every 0.4 s
    card_line, sam_line = out["status_card_out"].splitlines()
    assert card_line.startswith(f"card 0: {card} in the CCID reader {served.link} ({SEC1210}, slot 0), removed, ")
    assert sam_line.startswith(f"card 1: {psam} in the CCID reader {served.link} ({SEC1210}, slot 1), "
                               "inserted, powered, ")
    assert out["sam_while_card_out"] == [True, TERMINAL + "9000"]  # the SAM's session went on
    assert out["card_back"] == "611E"
    assert out["card_while_sam_out"] == [True, RECORD_7]  # the card's session went on
    assert out["sam_back"] == "6118"
    assert all(re.search(r"\(SEC1210, slot [01]\), inserted, powered, \d+ CCID commands$", line)
               for line in out["status"].splitlines())
