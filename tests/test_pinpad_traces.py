"""PIN-pad lines in `.apdu` traces (docs/traces.md): `keypad ENTRY` and `pinpad verify|modify TEMPLATE`,
their parsing with line-numbered errors, the replay in-process (SimReader, WireReader: the simulated
GemPC PinPad of reader/ccid/pinpad.py), the recording that writes them, and the replay over the real
pcscd + libccid through `sscard serve --ccid-reader GemPCPinPad`, its keypad on serve's control socket.

The expected bytes come from the formats: the PC/SC part 10 PIN_VERIFY_STRUCTURE / PIN_MODIFY_STRUCTURE
field by field; the SSSE's packed-BCD PIN (LD/T 32 P5 §6.14 VERIFY, §6.3 CHANGE PIN `current FF new`),
so a 3-byte block takes 5 or 6 digits; the pad's answers (PC/SC part 10: 6400 timeout, 6401 cancel,
6403 a wrong length); the default profile's PIN 123456 with 6 tries (a wrong one answers 63C5) and
the SSSE's activation by a new PIN (GET DATA DF7E 00, then 01).
"""

import io
import subprocess
import sys
import time

import pytest
from helpers import CARD_DATE, DEFAULT_ATR, FCI, ROOT, SELECT_SSSE, TRACES, cli
from test_ccid_pcsc import pcsc  # noqa: F401 - the fixture: PC/SC and libccidtwin present
from test_ccid_pinpad import Captured, WatchedKeypad
from test_ccid_serve import Served

from chip import Card
from reader.base import PinPadError
from reader.ccid import pinpad
from reader.ccid.pty import FRIENDLY_NAME
from reader.link.wire import WireReader
from reader.sim import SimReader
from reader.traces.format import TraceError, parse, to_text
from reader.traces.replay import RecordingReader, replay, sim_reader_for

CURATED = TRACES / "pinpad-verify-and-change.apdu"
VERIFY_SSSE = "00 20 00 00 03 FF FF FF"
CHANGE_PIN_SSSE = "80 5E 01 00 07 FF FF FF FF FF FF FF"
# PIN_VERIFY_STRUCTURE (PC/SC part 10) of `pinpad verify 00 20 00 00 03 FF FF FF`: bTimerOut 00, bTimerOut2 00,
# bmFormatString 81 (bytes, position 0, left, BCD), bmPINBlockString 03, bmPINLengthFormat 00, wPINMaxExtraDigit
# 0506 little-endian (5-6 digits), bEntryValidationCondition 02, bNumberMessage 01, wLangId 0409, bMsgIndex 00,
# bTeoPrologue 000000, ulDataLength 8, the template
SSSE_VERIFY_STRUCTURE = "0000" "81" "03" "00" "0605" "02" "01" "0904" "00" "000000" "08000000" "0020000003FFFFFF"
# PIN_MODIFY_STRUCTURE of `pinpad modify 80 5E 01 00 07 FF...`: bInsertionOffsetOld 0, New 4 (after the FF
# separator), wPINMaxExtraDigit 0506, bConfirmPIN 03 (the current PIN, the new one twice), 3 messages 00 01 02
SSSE_MODIFY_STRUCTURE = ("0000" "81" "03" "00" "00" "04" "0605" "03" "02" "03" "0904" "000102" "000000" "0C000000"
                         "805E010007FFFFFFFFFFFFFF")
HEADER = f"@date {CARD_DATE}\n@issued {CARD_DATE}\nreset\n> {SELECT_SSSE}\n"
READER = FRIENDLY_NAME + " 00 00"


def run(text: str, reader=None):
    trace = parse(text, "t.apdu")
    return replay(trace, reader or sim_reader_for(trace))


# -- the lines -------------------------------------------------------------------------------------------

def test_pinpad_lines_carry_the_ssse_pins_part_10_structure():
    trace = parse(f"keypad 123456\npinpad verify {VERIFY_SSSE}\n< 90 00\nkeypad Cancel\n"
                  f"pinpad modify 805E010007FFFFFFFFFFFFFF\n< 64 01\nkeypad timeout\n", "t.apdu")
    steps = trace.steps
    assert [(s.kind, s.entry) for s in steps] == [("keypad", "123456"), ("pinpad", ""), ("keypad", "cancel"),
                                                  ("pinpad", ""), ("keypad", "timeout")]
    assert (steps[1].feature, steps[1].structure().hex().upper()) == (0x06, SSSE_VERIFY_STRUCTURE)
    assert (steps[3].feature, steps[3].structure().hex().upper()) == (0x07, SSSE_MODIFY_STRUCTURE)
    assert steps[1].expect.text == "90 00" and steps[3].expect_line == 6
    assert trace.apdus == 2 and trace.unpowered_command() == 2  # a PIN entry is a command: it needs a reset


def test_fields_after_the_template_set_the_structure_and_come_back_in_the_text():
    # ISO 9564-1 format 2 in an 8-byte data field: bytes, position 1, BCD (89); a 4-bit length at bit 4 (04);
    # a 7-byte block (47); 4-12 digits
    line = "pinpad verify 00 20 00 01 08 20 FF FF FF FF FF FF FF format 89 block 47 length 04 digits 4-12"
    trace = parse(line + "\npinpad modify 80 5E 01 00 07 FF FF FF FF FF FF FF digits 6-6 confirm 01\n", "t.apdu")
    verify, modify = (step.pin for step in trace.steps)
    assert (verify.format_string, verify.block_string, verify.length_format) == (0x89, 0x47, 0x04)
    assert (verify.min_digits, verify.max_digits, modify.min_digits, modify.confirm) == (4, 12, 6, 0x01)
    assert to_text(trace).splitlines() == [line, "pinpad modify 80 5E 01 00 07 FF FF FF FF FF FF FF digits 6-6 "
                                                 "confirm 01"]
    assert parse(to_text(trace), "again").steps[0].structure() == trace.steps[0].structure()


@pytest.mark.parametrize(("text", "message"), [
    ("keypad", "t.apdu:1: keypad takes one entry"),
    ("keypad 12 34", "t.apdu:1: keypad takes one entry"),
    ("keypad 12a4", "t.apdu:1: a keypad entry is digits, 'cancel' or 'timeout', not '12a4'"),
    ("pinpad", "t.apdu:1: pinpad is followed by verify or modify"),
    ("pinpad unblock 0020000003FFFFFF", "t.apdu:1: pinpad is followed by verify or modify"),
    ("pinpad verify 00 20 00 00 04 FF FF FF", "t.apdu:1: pinpad verify: the template is a command APDU"),
    ("pinpad verify 00 20 00 00", "t.apdu:1: pinpad verify: the template is a command APDU"),
    ("pinpad verify 00 20 0G", "t.apdu:1: pinpad: '0G' is neither hex of the template nor a field"),
    ("pinpad verify 00 20 000", "t.apdu:1: '0' is not a hex byte or {capture}"),
    ("pinpad verify 00 20 00 00 03 {pin}", "t.apdu:1: a PIN-pad template is hex bytes only"),
    (f"pinpad verify {VERIFY_SSSE} offsets 0 4", "t.apdu:1: pinpad verify: offsets belongs to a modification"),
    (f"pinpad verify {VERIFY_SSSE} digits 6-4", "t.apdu:1: pinpad: digits needs FEWEST-MOST"),
    (f"pinpad verify {VERIFY_SSSE} format 8", "t.apdu:1: pinpad: format needs one hex byte"),
    (f"pinpad verify {VERIFY_SSSE} block 03 block 03", "t.apdu:1: pinpad: block given twice"),
    (f"pinpad verify {VERIFY_SSSE} colour 03", "t.apdu:1: pinpad: 'colour' is neither hex of the template nor a"),
    (f"pinpad modify {CHANGE_PIN_SSSE} offsets 0", "t.apdu:1: pinpad: offsets needs OLD NEW"),
    (f"pinpad verify {VERIFY_SSSE} block 05", "t.apdu:1: pinpad: the PIN block lies beyond the template's data"),
    (f"pinpad verify {VERIFY_SSSE} format 83", "t.apdu:1: pinpad: bmFormatString: encoding 11 is RFU"),
    ("keypad 1234\n< 90 00", "t.apdu:2: '<' without a '>' command before it"),
    (f"pinpad verify {VERIFY_SSSE}\n< 90 00\n< 90 00", "t.apdu:3: a second '<' for the command on line 1"),
])
def test_a_bad_pin_pad_line_is_one_error_with_its_line(text, message):
    with pytest.raises(TraceError) as error:
        parse(text, "t.apdu")
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


# -- replay in-process: the simulated GemPC PinPad ---------------------------------------------------------

def test_the_curated_trace_replays_and_leaves_the_card_activated_with_the_new_pin():
    trace = parse(CURATED.read_text(encoding="utf-8"), CURATED.name)
    reader = sim_reader_for(trace)
    result = replay(trace, reader)
    assert result.ok, result.report()
    assert result.apdus == trace.apdus == 8 and reader.keypad is None  # the replay's own pad is gone again
    reader.reset()
    for command, answer in ((SELECT_SSSE, FCI["sm4"] + "9000"), ("80CADF7E00", "DF7E0101" "9000"),
                            ("0020000003654321", "9000"), ("0020000003123456", "63C5")):
        assert reader.transmit(bytes.fromhex(command)).hex().upper() == answer


def test_a_missing_keypad_line_times_out_and_fails_at_its_answer():
    lines = CURATED.read_text(encoding="utf-8").splitlines()
    number = lines.index("keypad 111111")
    del lines[number]
    result = run("\n".join(lines))
    assert not result.ok
    assert result.failure.line == number + 2  # the `< 63 C5` line, one up now
    assert result.failure.message == ("response byte 0 is 64, expected 63: got [64] 00 to the PIN entry into "
                                      "00 20 00 00 03 ...")  # 6400: nobody typed, the time ran out


def test_the_fields_drive_the_financial_applications_format_2_pin_block():
    # the financial application's offline PIN (docs/decisions.md §6: ISO 9564-1 format 2, 2N + digits + F fill;
    # initial PIN 000000, 3 tries): the pad writes the length nibble N and the digits after the control nibble 2
    fields = "format 89 block 47 length 04 digits 4-12"
    text = (f"@date {CARD_DATE}\n@issued {CARD_DATE}\nreset\n> 00 A4 04 00 08 A0 00 00 03 33 01 01 01 00\n"
            f"keypad 0000\npinpad verify 00 20 00 80 08 20 FF FF FF FF FF FF FF {fields}\n< 63 C2\n"
            f"keypad 000000\npinpad verify 00 20 00 80 08 20 FF FF FF FF FF FF FF {fields}\n< 90 00\n")
    assert run(text).ok
    op = parse(text, "t.apdu").steps[3].pin
    assert pinpad.build(op, pinpad.Keypad(["000000"])).hex().upper() == "0020008008" "26000000FFFFFFFF"


def test_the_p8_lengths_hold_on_every_in_process_reader():
    structure = "format 82 block 0D digits 1-13"  # ASCII, 13 bytes: the host allows 13 digits, the pad 12
    template = "00 20 00 00 0D" + " FF" * 13
    text = HEADER + f"keypad {'1' * 13}\npinpad verify {template} {structure}\n< 64 03\n" \
                    f"pinpad verify {VERIFY_SSSE} digits 1-3\n< 90 00\n"
    for reader in (None, WireReader(Card.from_profile("default", date=CARD_DATE), protocol="T=0")):
        result = run(text, reader)
        assert result.failure.line == 8  # the 13 digits were 6403 (line 7); a host asking 1-3 digits is refused
        assert result.failure.message == ("pinpad: the PIN pad refuses the structure: wPINMaxExtraDigit: 1-3 digits, "
                                          "and this PIN pad takes 4-12")


def test_a_reader_without_a_pin_pad_fails_the_step_in_one_line():
    card = Card.from_profile("default", date=CARD_DATE)
    result = run(HEADER + f"pinpad verify {VERIFY_SSSE}\n< 64 00\n", RecordingReader(SimReader(card), io.StringIO()))
    assert (result.failure.line, result.failure.message) == (5, "pinpad: SimReader has no PIN pad (no keypad)")
    result = run(HEADER + "keypad 123456\n", RecordingReader(SimReader(card), io.StringIO()))
    assert result.failure.line == 5
    assert result.failure.message.startswith("keypad 123456: no way to this reader's keypad")
    with pytest.raises(PinPadError, match="no keypad"):
        SimReader(card).pin_entry(pinpad.FEATURE_VERIFY_PIN_DIRECT, bytes.fromhex(SSSE_VERIFY_STRUCTURE))


def test_no_digit_survives_an_in_process_pin_entry(monkeypatch):
    captured = Captured(monkeypatch)
    keypad = WatchedKeypad(["123456", "654321", "654321", "123456", "timeout"])
    reader = SimReader(Card.from_profile("default", date=CARD_DATE), keypad=keypad)
    reader.reset()
    reader.transmit(bytes.fromhex(SELECT_SSSE))
    modify, verify = bytes.fromhex(SSSE_MODIFY_STRUCTURE), bytes.fromhex(SSSE_VERIFY_STRUCTURE)
    assert reader.pin_entry(pinpad.FEATURE_MODIFY_PIN_DIRECT, modify) == b"\x90\x00"
    assert reader.pin_entry(pinpad.FEATURE_VERIFY_PIN_DIRECT, verify) == b"\x63\xc5"  # the old PIN now
    assert reader.pin_entry(pinpad.FEATURE_VERIFY_PIN_DIRECT, verify) == b"\x64\x00"  # libccid's SW for PIN_TIMEOUT
    assert len(keypad.taken) == 5 and all(not any(entry) for entry in keypad.taken)
    assert len(captured.apdus) == 2 and all(not any(apdu) for apdu in captured.apdus)  # wiped once the card had it


# -- recording ---------------------------------------------------------------------------------------------

def test_a_recorded_pin_pad_session_replays():
    out = io.StringIO()
    card = Card.from_profile("default", date=CARD_DATE)
    recorder = RecordingReader(SimReader(card, keypad=pinpad.Keypad()), out,
                               directives={"date": CARD_DATE, "issued": CARD_DATE})
    recorder.reset()
    recorder.transmit(bytes.fromhex(SELECT_SSSE))
    recorder.keypad.press("000000")
    six = bytes.fromhex(SSSE_VERIFY_STRUCTURE.replace("0605", "0606"))  # a host asking exactly 6 digits
    assert recorder.pin_entry(pinpad.FEATURE_VERIFY_PIN_DIRECT, six) == b"\x63\xc5"
    assert recorder.pin_entry(pinpad.FEATURE_VERIFY_PIN_DIRECT, six) == b"\x64\x00"  # nothing typed: a timeout
    for entry in ("123456", "135790", "135790"):
        recorder.keypad.press(entry)
    assert recorder.pin_entry(pinpad.FEATURE_MODIFY_PIN_DIRECT, bytes.fromhex(SSSE_MODIFY_STRUCTURE)) == b"\x90\x00"
    recorder.keypad.press("135790")  # typed, never taken: the recording holds only what a PIN entry took
    lines = [line.split("#")[0].strip() for line in out.getvalue().splitlines() if line[:1] in "<>kp"]
    assert lines[2:] == ["keypad 000000", f"pinpad verify {VERIFY_SSSE} digits 6-6", "< 63 C5",
                         f"pinpad verify {VERIFY_SSSE} digits 6-6", "< 64 00",
                         "keypad 123456", "keypad 135790", "keypad 135790", f"pinpad modify {CHANGE_PIN_SSSE}",
                         "< 90 00"]
    recorded = parse(out.getvalue(), "recorded.apdu")
    assert next(step.structure() for step in recorded.steps if step.kind == "pinpad") == six
    result = replay(recorded, sim_reader_for(recorded))
    assert result.ok and result.apdus == 4, result.report()


def test_a_pad_the_host_cannot_see_is_said_in_the_recording():
    class OwnPad(SimReader):  # a reader whose keys the host does not hold: it answers without `keypad`
        def pin_entry(self, feature, structure):
            return b"\x90\x00"

    out = io.StringIO()
    RecordingReader(OwnPad(Card.from_profile("default", date=CARD_DATE)), out).pin_entry(
        pinpad.FEATURE_VERIFY_PIN_DIRECT, bytes.fromhex(SSSE_VERIFY_STRUCTURE))
    lines = out.getvalue().splitlines()
    assert lines[1] == "# keypad: typed on the reader's own PIN pad, which never shows the host the entries"
    assert lines[2].startswith(f"pinpad verify {VERIFY_SSSE}  # ") and lines[3].startswith("< 90 00  # ")


# -- the commands ------------------------------------------------------------------------------------------

def test_sscard_replays_the_pin_pad_trace_over_the_simulated_contacts(capsys):
    for wire in ("t0", "t1"):
        code, out, _ = cli(capsys, "replay", CURATED, "--wire", wire)
        assert code == 0 and out.startswith(f"PASS {CURATED} (8 APDUs"), out


def test_sscard_replay_takes_a_keypad_channel_only_with_a_pc_sc_reader(capsys):
    code, _, err = cli(capsys, "replay", CURATED, "--keypad-control", "/tmp/ctl.sock")
    assert code == 2 and err.count("\n") == 1 and "--keypad-control goes with --reader" in err


def test_scriptor_has_no_pin_pad(tmp_path, capsys):
    code, _, err = cli(capsys, "scriptor", "export", CURATED, "-o", tmp_path / "s.script")
    assert code == 2 and f"{CURATED}:17: scriptor has no PIN pad (keypad line)" in err


def test_decode_says_what_the_pad_does(capsys):
    code, out, _ = cli(capsys, "decode", CURATED)
    assert code == 0
    assert "  17  keypad 123456\n        6 digits and the validation key, on the reader's PIN pad" in out
    assert "  18  pinpad verify 00 20 00 00 03 FF FF FF\n        VERIFY SSSE PIN, the PIN typed" in out
    assert "  25  < 64 01\n        SW 6401 cancelled on the keypad (PC/SC part 10, the PIN pad's answer)" in out


# -- over the real pcscd and libccid: `sscard serve --ccid-reader GemPCPinPad` ------------------------------

def replay_through_pcscd(served: Served, variant: str, *argv) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "reader.pcsc.pcscd", "run", "--ccid", f"{served.link}:{variant}",
                          "--", sys.executable, "-m", "reader.cli", "replay", *map(str, argv), "--reader", READER],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    return run, time.monotonic() - started


def test_the_curated_trace_replays_through_pcscd_on_the_gempc_pinpad(pcsc, tmp_path):  # noqa: F811 - the fixture
    refused = tmp_path / "refused.apdu"  # a host asking 1-3 digits: the pad refuses it (bError 15), libccid fails
    refused.write_text(f"reset\npinpad verify {VERIFY_SSSE} digits 1-3\n< 64 03\n", encoding="utf-8")
    served = Served(tmp_path, "--ccid-reader", "GemPCPinPad")
    try:
        without, _ = replay_through_pcscd(served, "GemPCPinPad", CURATED)
        run, seconds = replay_through_pcscd(served, "GemPCPinPad", CURATED, refused, "--keypad-control", served.control)
    finally:
        served.stop()
    print(f"\nthe PIN-pad trace through pcscd, libccid and the GemPC PinPad: {seconds:.2f} s, nested pcscd included")
    assert without.returncode == 1
    assert f"FAIL {CURATED}:17: keypad 123456: no way to this reader's keypad" in without.stdout, without.stdout
    assert f"PASS {CURATED} (8 APDUs" in run.stdout, f"{run.stdout}\n{run.stderr}\n--- serve:\n{served.err.read_text()}"
    assert f"FAIL {refused}:2: pinpad: reader '{READER}': FEATURE_VERIFY_PIN_DIRECT failed: " in run.stdout
    assert "(0x80100016) (the PIN pad refused the structure" in run.stdout  # SCARD_E_NOT_TRANSACTED
    assert "123456" not in served.err.read_text() and "654321" not in served.err.read_text()  # serve logs no digits
    card = Card.open(served.image)
    try:
        assert card.power_on() == bytes.fromhex(DEFAULT_ATR)
        assert card.transmit(bytes.fromhex(SELECT_SSSE)) == b"\x61\x1e"  # T=0: the FCI waits for GET RESPONSE
        assert card.transmit(bytes.fromhex("0020000003654321")) == b"\x90\x00"  # the image has the new PIN
    finally:
        card.close()


def test_a_reader_without_a_pin_pad_fails_the_pinpad_step_through_pcscd(pcsc, tmp_path):  # noqa: F811
    trace = tmp_path / "twin.apdu"
    trace.write_text(f"reset\n> {SELECT_SSSE}\npinpad verify {VERIFY_SSSE}\n< 64 00\n", encoding="utf-8")
    served = Served(tmp_path)  # the GemPC Twin: no keys
    try:
        run, _ = replay_through_pcscd(served, "GemPCTwin", trace)
    finally:
        served.stop()
    assert run.returncode == 1, run.stdout + run.stderr
    assert (f"FAIL {trace}:3: pinpad: reader '{READER}' has no PIN pad: it does not offer FEATURE_VERIFY_PIN_DIRECT "
            "(PC/SC part 10)") in run.stdout.splitlines()
