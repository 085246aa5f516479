"""The GemPC PinPad's PIN pad (docs/ccid.md): PC_to_RDR_Secure's structures (USB CCID rev 1.1
§6.1.11), the APDU the reader builds from the template, the keypad's outcomes, the firmware's
Secure, and end to end through Debian's pcscd and libccid with `LINK:GemPCPinPad` (which opens
the PinPad because the echo is the command's header only: docs/ccid.md, "The echo").

The expected APDUs are written from the formats themselves: the SSSE's packed-BCD PIN (LD/T 32
P5 §6.14 VERIFY, §6.3 CHANGE PIN `old FF new`), ASCII digits, ISO 9564-1 format 2 (control 2,
the length nibble, the digits, F fill); the outcomes from PC/SC part 10 (6400 timeout, 6401
cancel, 6402 new PINs differ, 6403 wrong length) and the CCID bError codes (EF, F0).
"""

import json
import subprocess
import sys
import threading
from dataclasses import replace
from functools import reduce

import pytest
from helpers import CARD_DATE, FCI, ROOT, SELECT_SSSE
from test_ccid_pcsc import pcsc  # noqa: F401 - the fixture: PC/SC and libccidtwin present

from chip import Card
from reader.ccid import messages as m
from reader.ccid import pinpad
from reader.ccid.__main__ import main as ccid_main
from reader.ccid.firmware import Firmware
from reader.ccid.pinpad import Aborted, Keypad, StructureError, build, parse
from reader.ccid.pty import FRIENDLY_NAME, PtyReader

READER = FRIENDLY_NAME + " 00 00"
VERIFY_SSSE = "0020000003FFFFFF"  # VERIFY, Lc 3: six digits packed in BCD
CHANGE_PIN_SSSE = "805E010007FFFFFFFFFFFFFF"  # CHANGE PIN, Lc 7: old (3) FF new (3)


def verify_structure(template: str = VERIFY_SSSE, format_string: int = 0x81, block: int = 0x03,
                     length_format: int = 0x00, min_max: tuple[int, int] = (6, 6), prologue: str = "000000") -> bytes:
    """abData of a PC_to_RDR_Secure verification as libccid sends it (bTimeOut2 and ulDataLength dropped)."""
    low, high = min_max
    return bytes((0x00, 0x00, format_string, block, length_format, high, low, 0x02, 0x01, 0x09, 0x04, 0x00)) \
        + bytes.fromhex(prologue + template)


def modify_structure(template: str = CHANGE_PIN_SSSE, offset_old: int = 0, offset_new: int = 4, confirm: int = 0x03,
                     min_max: tuple[int, int] = (6, 6), prologue: str = "000000") -> bytes:
    """abData of a modification, the three bMsgIndex present (as libccid sends it to a GemPC PinPad)."""
    low, high = min_max
    return bytes((0x01, 0x00, 0x81, 0x03, 0x00, offset_old, offset_new, high, low, confirm, 0x02, 0x03, 0x09, 0x04,
                  0x00, 0x01, 0x02)) + bytes.fromhex(prologue + template)


def built(structure: bytes, *entries: str) -> str:
    return build(parse(structure), Keypad(entries)).hex().upper()


def aborted(structure: bytes, *entries: str) -> Aborted:
    with pytest.raises(Aborted) as caught:
        build(parse(structure), Keypad(entries))
    return caught.value


# -- the structures (§6.1.11.4, §6.1.11.7) ------------------------------------------------------------------

def test_a_verification_structure_is_read_field_by_field():
    op = parse(verify_structure(min_max=(4, 6), prologue="004000"))
    assert (op.operation, op.min_digits, op.max_digits, op.validation, op.messages) == (0x00, 4, 6, 0x02, 0x01)
    assert (op.units, op.position, op.right_justified, op.encoding) == (8, 0, False, pinpad.ENCODING_BCD)
    assert (op.length_bits, op.block_bits, op.prologue, op.apdu.hex().upper()) == (0, 24, b"\x00\x40\x00", VERIFY_SSSE)


def test_a_modification_structure_has_its_offsets_and_confirmation():
    op = parse(modify_structure())
    assert (op.operation, op.offset_old, op.offset_new, op.confirm, op.messages) == (0x01, 0, 4, 0x03, 0x03)
    assert op.apdu.hex().upper() == CHANGE_PIN_SSSE


@pytest.mark.parametrize(("structure", "offset"), [  # bError: the field's offset in the message, abData at 10
    (b"\x04" + verify_structure()[1:], 10),  # bPINOperation 04 (cancel) is not taken
    (verify_structure(format_string=0x83), 12),  # encoding 11 is RFU: bmFormatString
    (verify_structure(min_max=(6, 4)), 15),  # fewest above most: wPINMaxExtraDigit
    (verify_structure(template="0020000004FFFFFF"), 25),  # Lc 4 and 3 data bytes: abPINApdu
    (verify_structure(format_string=0x89), 12),  # the block from byte 1 runs past the data field
    (verify_structure(template="00200000"), 1),  # no whole template: dwLength
    (b"", 1),
])
def test_a_structure_the_pad_cannot_run_is_failed_at_its_field(structure, offset):
    fw = active("default", "123456")
    assert secure(fw, structure).fields == bytes((0x40, offset, 0x00))
    assert len(fw.keypad or ()) == 1
    with pytest.raises(StructureError):
        parse(structure)


# -- the APDU built from the template ---------------------------------------------------------------------

def test_the_ssse_verify_gets_the_pin_packed_in_bcd():
    assert built(verify_structure(), "123456") == "0020000003" "123456"


def test_an_odd_pin_keeps_the_templates_filler_in_its_last_nibble():
    assert built(verify_structure(min_max=(5, 6)), "12345") == "0020000003" "12345F"  # as the card packs it


def test_right_justified_bcd_ends_at_the_blocks_end():
    assert built(verify_structure(format_string=0x85, min_max=(4, 6)), "1234") == "0020000003" "FF1234"


def test_ascii_digits_fill_one_byte_each():
    template = "0020000108" + "FF" * 8
    assert built(verify_structure(template, format_string=0x82, block=0x08, min_max=(4, 8)), "1234") \
        == "0020000108" "31323334FFFFFFFF"


def test_an_iso_9564_format_2_block_gets_the_length_nibble():
    # bytes, position 1, left, BCD; a 4-bit length at bit 4; a 7-byte block: C=2 N=4, PIN, F fill
    template = "0020000108" "20" + "FF" * 7
    assert built(verify_structure(template, format_string=0x89, block=0x47, length_format=0x04, min_max=(4, 12)),
                 "1234") == "0020000108" "241234FFFFFFFFFF"


def test_change_pin_gets_old_ff_new():
    assert built(modify_structure(), "123456", "654321", "654321") == "805E010007" "123456" "FF" "654321"


def test_a_modification_without_the_current_pin_asks_only_for_the_new_one():
    template = "805E010003FFFFFF"
    assert built(modify_structure(template, offset_new=0, confirm=0x01), "654321", "654321") == "805E010003654321"


# -- the keypad's outcomes ---------------------------------------------------------------------------------

def test_cancel_and_timeout_are_the_ccid_errors():
    assert aborted(verify_structure(), "cancel").error == m.PIN_CANCELLED == 0xEF
    assert aborted(verify_structure(), "timeout").error == m.PIN_TIMEOUT == 0xF0
    assert aborted(verify_structure()).error == 0xF0  # nobody presses a key: the time runs out
    assert aborted(modify_structure(), "123456", "cancel").error == 0xEF  # at any prompt


@pytest.mark.parametrize(("min_max", "entry"), [((6, 6), "12345"), ((6, 6), "1234567"),
                                               ((6, 8), "1234567")])  # 7 digits: more than 3 bytes of BCD hold
def test_a_pin_of_the_wrong_length_is_6403(min_max, entry):
    outcome = aborted(verify_structure(min_max=min_max), entry)
    assert (outcome.error, outcome.sw) == (None, b"\x64\x03")


def test_new_pins_that_differ_are_6402():
    outcome = aborted(modify_structure(), "123456", "654321", "654322")
    assert (outcome.error, outcome.sw) == (None, b"\x64\x02")


class WatchedKeypad(Keypad):
    """A keypad that keeps a reference to every entry it hands out."""

    def __init__(self, entries):
        super().__init__(entries)
        self.taken: list[bytearray] = []

    def take(self) -> bytearray:
        self.taken.append(super().take())
        return self.taken[-1]


@pytest.mark.parametrize("entries", [["123456", "654321", "654321"], ["123456", "654321", "cancel"]])
def test_each_entry_is_wiped_once_used(entries):
    keypad = WatchedKeypad(entries)
    try:
        build(parse(modify_structure()), keypad)
    except Aborted:
        pass
    assert len(keypad.taken) == 3 and all(not any(entry) for entry in keypad.taken) and len(keypad) == 0


def test_the_keypad_takes_digits_cancel_or_timeout_only():
    for entry in ("12a4", "", "１２３４", "ok"):
        with pytest.raises(ValueError):
            Keypad([entry])
    assert len(Keypad(["0000", "Cancel", " timeout "])) == 3


# -- the PIN's length on the pad itself (LD/T 32 P8 §6.2.4: 4-12 digits; the Sichuan readers 4-16) ----------

ASCII_15 = "002000010F" + "FF" * 15  # ASCII digits, one byte each, in the longest block bmPINBlockString gives


@pytest.mark.parametrize(("digits", "keypad_bounds", "outcome"), [
    ("1" * 12, pinpad.P8_DIGITS, "built"),
    ("1" * 13, pinpad.P8_DIGITS, "6403"),  # the host allows 16, the pad lets the holder enter 12 at most
    ("1" * 13, (4, 16), "built"),  # a Sichuan reader's pad
    ("123", pinpad.P8_DIGITS, "6403"),  # the host allows 1, the pad wants 4 at least
    ("123", (3, 12), "built"),
])
def test_the_pads_own_bounds_meet_the_hosts(digits, keypad_bounds, outcome):
    structure = verify_structure(ASCII_15, format_string=0x82, block=0x0F, min_max=(1, 16))
    keypad = Keypad([digits], digits=keypad_bounds)
    if outcome == "built":
        assert build(parse(structure), keypad).hex().upper() == "002000010F" + digits.encode().hex().upper() \
            + "FF" * (15 - len(digits))
    else:
        with pytest.raises(Aborted) as caught:
            build(parse(structure), keypad)
        assert (caught.value.error, caught.value.sw) == (None, b"\x64\x03")  # PC/SC part 10: too short or too long
    assert len(keypad) == 0


@pytest.mark.parametrize(("structure", "offset"), [  # bError: the field's offset in the message, abData at 10
    (verify_structure(min_max=(1, 3)), 15),  # at most 3 digits: wPINMaxExtraDigit
    (verify_structure("0020000107" + "FF" * 7, format_string=0x82, block=0x07, min_max=(13, 16)), 15),  # at least 13
    (modify_structure(min_max=(2, 3)), 17),  # a modification's wPINMaxExtraDigit
    (verify_structure("0020000001FF", block=0x01, min_max=(4, 8)), 13),  # one byte of BCD holds 2: bmPINBlockString
])
def test_a_structure_the_pads_bounds_cannot_meet_is_failed_before_any_key(structure, offset):
    fw = active("default", "123456")
    assert secure(fw, structure).fields == bytes((0x40, offset, 0x00))
    assert len(fw.keypad or ()) == 1  # the holder was never asked
    with pytest.raises(StructureError):
        build(parse(structure), Keypad())


def test_a_sichuan_pad_takes_the_structure_a_p8_pad_refuses():
    structure = verify_structure(ASCII_15, format_string=0x82, block=0x0F, min_max=(13, 16))
    with pytest.raises(StructureError, match="13-16 digits, and this PIN pad takes 4-12"):
        build(parse(structure), Keypad(["1" * 13]))
    assert build(parse(structure), Keypad(["1" * 13], digits=(4, 16))).hex().upper() == \
        "002000010F" + "31" * 13 + "FFFF"


@pytest.mark.parametrize("digits", [(0, 12), (5, 4), (-1, 3)])
def test_the_pads_bounds_are_fewest_and_most(digits):
    with pytest.raises(ValueError, match="bounds"):
        Keypad(digits=digits)


# -- the pad's buffers are wiped after each entry (P8 §6.2.4) -----------------------------------------------

class Captured:
    """`pinpad.build`, keeping a reference to every APDU it hands out."""

    def __init__(self, monkeypatch):
        self.apdus: list[bytearray] = []
        real = pinpad.build

        def capture(op, keypad):
            self.apdus.append(real(op, keypad))
            return self.apdus[-1]

        monkeypatch.setattr(pinpad, "build", capture)


@pytest.mark.parametrize(("entries", "answer"), [
    (["123456"], "9000"), (["111111"], "63C5"), (["cancel"], ""), (["timeout"], ""), (["12345"], "6403"),
])
def test_no_digit_survives_a_secure(monkeypatch, entries, answer):
    captured = Captured(monkeypatch)
    keypad = WatchedKeypad(entries)
    fw = Firmware(Card.from_profile("default", date=CARD_DATE), keypad)
    fw.handle(m.Message(m.ICC_POWER_ON))
    fw.handle(m.Message(m.XFR_BLOCK, data=bytes.fromhex(SELECT_SSSE)))
    assert fw._reader_t0 is not None
    fw._reader_t0.exchanges = []  # the SELECT's, nothing secret
    assert secure(fw, verify_structure()).data.hex().upper() == answer
    assert keypad.taken and all(not any(entry) for entry in keypad.taken)  # every key typed
    assert all(not any(apdu) for apdu in captured.apdus)  # the APDU with the PIN in it
    assert fw._reader_t0.exchanges == []  # the T=0 engine's log of it


def test_a_timeout_after_the_current_pin_wipes_it():
    keypad = WatchedKeypad(["123456", "timeout"])
    assert aborted_on(keypad, modify_structure()).error == 0xF0
    assert keypad.taken[0] == bytearray(6) and len(keypad) == 0  # the current PIN typed before the pause


def aborted_on(keypad: Keypad, structure: bytes) -> Aborted:
    with pytest.raises(Aborted) as caught:
        build(parse(structure), keypad)
    return caught.value


# -- the host's side: PC/SC part 10 structures and what libccid makes of them -------------------------------

# PC_to_RDR_Secure's abData as libccid 1.5.2 sent it to the GemPC PinPad (docs/ccid.md, measured), for the SSSE's
# PIN_VERIFY_STRUCTURE / PIN_MODIFY_STRUCTURE of six digits
MEASURED_VERIFY = "0000810300060602010904000000000020000003FFFFFF"
MEASURED_MODIFY = "01008103000004060603020309040001020000" "00805E010007FFFFFFFFFFFFFF"


@pytest.mark.parametrize(("operation", "template", "measured"), [
    (pinpad.VERIFY, VERIFY_SSSE, MEASURED_VERIFY), (pinpad.MODIFY, CHANGE_PIN_SSSE, MEASURED_MODIFY)])
def test_the_hosts_structure_reaches_the_pad_as_libccid_sends_it(operation, template, measured):
    op = replace(pinpad.ssse_operation(operation, bytes.fromhex(template)), min_digits=6)  # six digits exactly
    assert pinpad.ccid_data(pinpad.feature_of(op), pinpad.pcsc_structure(op)).hex().upper() == measured
    assert parse(bytes.fromhex(measured)) == op


def test_the_ssse_structure_takes_the_pins_a_block_of_bcd_holds():
    op = pinpad.ssse_operation(pinpad.VERIFY, bytes.fromhex(VERIFY_SSSE))  # 3 bytes: 5 or 6 digits (F ends an odd one)
    assert (op.format_string, op.block_string, op.min_digits, op.max_digits) == (0x81, 0x03, 5, 6)
    change = pinpad.ssse_operation(pinpad.MODIFY, bytes.fromhex(CHANGE_PIN_SSSE))
    assert (change.offset_old, change.offset_new, change.confirm, change.messages) == (0, 4, 0x03, 3)
    assert build(change, Keypad(["123456", "654321", "654321"])).hex().upper() == "805E010007" "123456FF654321"


def test_libccid_forces_the_gempc_pinpads_message_and_validation_fields():
    structure = bytearray(pinpad.pcsc_structure(parse(verify_structure())))
    structure[7], structure[8] = 0x01, 0x00  # the application asks for a timeout validation and no message
    data = pinpad.ccid_data(pinpad.FEATURE_VERIFY_PIN_DIRECT, bytes(structure))
    assert (data[7], data[8]) == (0x02, 0x01)  # the validation key, one message: what this reader takes


@pytest.mark.parametrize(("feature", "structure", "reason"), [
    (0x08, bytes(30), "feature 08"),
    (pinpad.FEATURE_VERIFY_PIN_DIRECT, bytes(22), "fewer than the structure"),
    (pinpad.FEATURE_VERIFY_PIN_DIRECT, bytes.fromhex("0000810300060602010904000000000900000020000003FFFFFF"),
     "ulDataLength"),
    (pinpad.FEATURE_MODIFY_PIN_DIRECT, bytes(11) + b"\x04" + bytes(8) + bytes.fromhex("04000000" "80200000"),
     "bNumberMessage"),
])
def test_what_libccid_refuses_itself_is_a_structure_error(feature, structure, reason):
    with pytest.raises(StructureError, match=reason) as caught:
        pinpad.ccid_data(feature, structure)
    assert caught.value.field is None


# -- the firmware's Secure (§6.1.11) -----------------------------------------------------------------------

def secure(fw: Firmware, structure: bytes, fields: bytes = bytes(3)) -> m.Message:
    return fw.handle(m.Message(m.SECURE, 0, 9, fields, structure))


def active(profile: str, *entries: str) -> Firmware:
    fw = Firmware(Card.from_profile(profile, date=CARD_DATE), Keypad(entries))
    assert not fw.handle(m.Message(m.ICC_POWER_ON)).failed
    return fw


def lrc(block: bytes) -> bytes:
    return bytes((reduce(lambda a, b: a ^ b, block, 0),))  # ISO/IEC 7816-3 §11.4.4: the XOR of every byte


def test_a_reader_without_keypad_does_not_take_secure():
    fw = Firmware(Card.from_profile("default", date=CARD_DATE))
    fw.handle(m.Message(m.ICC_POWER_ON))
    assert secure(fw, verify_structure()).fields == bytes((0x40, 0x00, 0x00))  # failed, CMD_NOT_SUPPORTED


def test_secure_on_t0_answers_the_cards_status_words():
    fw = active("default", "123456", "111111", "cancel", "timeout", "12345",
                "123456", "654321", "654322", "123456", "654321", "654321", "654321")
    assert fw.handle(m.Message(m.XFR_BLOCK, data=bytes.fromhex(SELECT_SSSE))).data == b"\x61\x1e"
    answers = [secure(fw, verify_structure()) for _ in range(5)]
    assert [(a.type, a.fields, a.data.hex().upper()) for a in answers] == [
        (m.DATA_BLOCK, bytes(3), "9000"),
        (m.DATA_BLOCK, bytes(3), "63C5"),  # the card's: one try gone
        (m.DATA_BLOCK, bytes((0x40, 0xEF, 0)), ""),  # failed, PIN_CANCELLED
        (m.DATA_BLOCK, bytes((0x40, 0xF0, 0)), ""),  # failed, PIN_TIMEOUT
        (m.DATA_BLOCK, bytes(3), "6403"),
    ]
    assert secure(fw, modify_structure()).data == b"\x64\x02"  # the card never sees it
    assert secure(fw, modify_structure()).data == b"\x90\x00"
    assert secure(fw, verify_structure()).data == b"\x90\x00"  # 654321 now


def test_secure_on_t1_at_tpdu_level_is_one_i_block_from_the_hosts_prologue():
    fw = active("t1", "123456")
    assert not fw.handle(m.Message(m.SET_PARAMETERS, fields=b"\x01\x00\x00",
                                   data=bytes.fromhex("11100045 00FE00"))).failed
    select = bytes.fromhex("000014" + SELECT_SSSE)
    assert fw.handle(m.Message(m.XFR_BLOCK, data=select + lrc(select))).data[:2] == b"\x00\x00"  # I(0) back
    answer = secure(fw, verify_structure(prologue="004008"))  # I(1), as the driver numbers it
    reply = bytes.fromhex("004002" "9000")
    assert answer.fields == bytes(3) and answer.data == reply + lrc(reply)


def test_secure_wants_the_whole_structure_at_once():
    fw = active("default", "123456")
    assert secure(fw, verify_structure(), fields=b"\x00\x01\x00").fields == bytes((0x40, 0x08, 0x00))
    assert len(fw.keypad or ()) == 1  # nothing was asked of the keypad


def test_secure_without_an_active_card_is_mute():
    fw = Firmware(Card.from_profile("default", date=CARD_DATE), Keypad(["123456"]))
    assert secure(fw, verify_structure()).fields == bytes((0x41, m.ICC_MUTE, 0x00))


def test_the_firmware_takes_the_drivers_prompts_for_the_display():
    fw = active("default")
    prompts = b"\xb2\xa0\x00\x4d\x4c" + b"Enter PIN".ljust(16) * 10  # libccid's load strings, ten 16-byte prompts
    assert fw.handle(m.Message(m.ESCAPE, data=prompts)).fields == bytes(3)
    assert Firmware(None).handle(m.Message(m.ESCAPE, data=prompts)).fields[:2] == b"\x42\x00"  # no keypad: unsupported


@pytest.mark.parametrize("argv", [["--keypad", "12a4"], ["--reader", "GemPCTwin", "--keypad", "1234"]])
def test_the_keypad_option_wants_entries_and_a_pin_pad(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        ccid_main(["/nonexistent/gempc", "--profile", "default", "--reader", "GemPCPinPad", *argv])
    assert caught.value.code == 2 and "keypad" in capsys.readouterr().err


# -- end to end: pcscd, libccidtwin as a GemPC PinPad, SCardControl ----------------------------------------

CLIENT = r'''
import json, sys
from smartcard.System import readers
from smartcard.scard import SCARD_CTL_CODE

reader = [r for r in readers() if str(r) == sys.argv[1]][0]
connection = reader.createConnection()
connection.connect(protocol=int(sys.argv[2]))  # SCARD_PROTOCOL_T0 1, T1 2
tlv = bytes(connection.control(SCARD_CTL_CODE(3400), []))  # CM_IOCTL_GET_FEATURE_REQUEST
features = {tlv[i]: int.from_bytes(tlv[i + 2:i + 2 + tlv[i + 1]], "big") for i in range(0, len(tlv), 2 + 4)}
verify, modify = features[0x06], features[0x07]  # FEATURE_VERIFY_PIN_DIRECT, FEATURE_MODIFY_PIN_DIRECT

def tx(apdu):
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex(apdu)))
    return (bytes(data) + bytes((sw1, sw2))).hex().upper()

# PIN_VERIFY_STRUCTURE (PC/SC part 10): bTimerOut bTimerOut2 bmFormatString bmPINBlockString bmPINLengthFormat
# wPINMaxExtraDigit bEntryValidationCondition bNumberMessage wLangId bMsgIndex bTeoPrologue ulDataLength abData
VERIFY = bytes.fromhex("0000" "81" "03" "00" "0606" "02" "01" "0904" "00" "000000" "08000000" "0020000003FFFFFF")
# PIN_MODIFY_STRUCTURE: ... bInsertionOffsetOld bInsertionOffsetNew wPINMaxExtraDigit bConfirmPIN ...
MODIFY = bytes.fromhex("0000" "81" "03" "00" "00" "04" "0606" "03" "02" "03" "0904" "000102" "000000" "0C000000"
                       "805E010007FFFFFFFFFFFFFF")
out = {"features": sorted(features), "select": tx("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"), "pin": []}
for control in (verify, verify, verify, verify, verify, modify, modify, verify):
    out["pin"].append(bytes(connection.control(control, list(VERIFY if control == verify else MODIFY))).hex().upper())
connection.disconnect()
print(json.dumps(out))
'''

ENTRIES = ["123456", "111111", "cancel", "timeout", "12345",  # five VERIFY
           "123456", "111111", "222222",  # a MODIFY whose new PINs differ
           "123456", "654321", "654321",  # a MODIFY that passes
           "654321"]  # VERIFY with the new PIN


@pytest.mark.parametrize(("profile", "protocol", "select"), [
    ("default", 1, "611E"),  # T=0: the firmware's T=0 engine runs the VERIFY
    ("t1", 2, FCI["sm4"] + "9000"),  # T=1 at TPDU level: one I-block from the driver's bTeoPrologue
])
def test_pcscd_and_libccid_drive_the_pin_pad(pcsc, tmp_path, profile, protocol, select):  # noqa: F811 - the fixture
    card = Card.from_profile(profile, state=str(tmp_path / "card.img"), date=CARD_DATE)
    keypad = Keypad(ENTRIES)
    client = tmp_path / "client.py"
    client.write_text(CLIENT, encoding="utf-8")
    log = tmp_path / "pcscd.log"
    with card, PtyReader(str(tmp_path / "gempc"), Firmware(card, keypad), "GemPCPinPad") as reader:
        thread = threading.Thread(target=reader.serve, daemon=True)
        thread.start()
        try:
            run = subprocess.run([sys.executable, "-m", "reader.pcsc.pcscd", "run", "--ccid",
                                  f"{reader.link}:GemPCPinPad", "--debug", "--log", str(log), "--",
                                  sys.executable, str(client), READER, str(protocol)],
                                 capture_output=True, text=True, timeout=120, cwd=ROOT)
        finally:
            reader.stop()
            thread.join(10)
    logs = f"\n--- run:\n{run.stderr}\n--- pcscd:\n{log.read_text()[-6000:] if log.exists() else ''}"
    assert run.returncode == 0, logs
    out = json.loads(run.stdout.strip().splitlines()[-1])
    # bPINSupport 03: VERIFY_PIN_DIRECT 06, MODIFY_PIN_DIRECT 07, IFD_PIN_PROPERTIES 0A; GET_TLV_PROPERTIES 12
    assert out["features"] == [0x06, 0x07, 0x0A, 0x12], logs
    assert out["select"] == select
    assert out["pin"] == ["9000", "63C5", "6401", "6400", "6403", "6402", "9000", "9000"], logs
    assert len(keypad) == 0
