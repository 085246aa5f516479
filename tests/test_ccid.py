"""The serial CCID reader without pcscd: the CCID messages, the GemPC Twin framing, the firmware's
slot and TPDU handling, the pty adapter, and the `run --ccid` arguments (docs/ccid.md)."""

import os
import select
import threading

import pytest
from helpers import CARD_DATE, DEFAULT_ATR, FCI, SELECT_SSSE, T1_ATR

from chip import Card
from chip.contacts.t1 import IFS, i_block, r_block, s_block
from chip.contacts.t1 import decode as decode_block
from chip.faults import FaultPlan, parse_fault
from reader.ccid import messages as m
from reader.ccid.firmware import FIRMWARE_NAME, Firmware
from reader.ccid.pty import LIBCCIDTWIN, PtyReader, stanza
from reader.ccid.serial import NAK_FRAME, SerialFraming, frame, variant_echoes
from reader.pcsc import pcscd

READ_RECORD_7 = "00B2072C0B"
RECORD_7 = "0709543030303030303031"  # EF05 record 7: the card number T00000001
WRONG_VERIFY = "0020000003000000"
GET_SLOT_STATUS = bytes.fromhex("65000000000002000000")  # as libccidtwin sends it, bSeq 2


def firmware(profile: str = "default") -> Firmware:
    return Firmware(Card.from_profile(profile, date=CARD_DATE))


def command(kind: int, data: bytes = b"", fields: bytes = bytes(3), slot: int = 0, seq: int = 7) -> m.Message:
    return m.Message(kind, slot, seq, fields, data)


def xfr(fw: Firmware, hex_data: str) -> m.Message:
    return fw.handle(command(m.XFR_BLOCK, bytes.fromhex(hex_data)))


def powered(profile: str = "default") -> Firmware:
    fw = firmware(profile)
    assert not fw.handle(command(m.ICC_POWER_ON)).failed
    return fw


# -- the messages (CCID rev 1.1 §6) -------------------------------------------------------------------------

def test_a_message_encodes_as_header_and_data():
    message = m.Message(m.XFR_BLOCK, 0, 0x11, bytes((4, 0, 0)), b"\x00\xa4")
    assert message.encode().hex().upper() == "6F020000000011040000" "00A4"
    assert m.decode(message.encode()) == message
    assert m.message_size(message.encode()[:5]) == 12 and m.message_size(b"\x6f\x02") is None


@pytest.mark.parametrize("kind", sorted(m.KINDS))
def test_every_message_type_round_trips(kind):
    message = m.Message(kind, 0, 3, b"\x01\x02\x03", bytes(range(kind & 0x0F)))
    assert m.decode(message.encode()) == message
    assert message.name == m.KINDS[kind].name


@pytest.mark.parametrize("data", [b"", bytes(9), bytes.fromhex("6F0100000000000000"),  # short
                                  bytes.fromhex("65000000000000000000FF")])  # one byte beyond dwLength
def test_decode_refuses_what_is_not_one_message(data):
    with pytest.raises(m.MessageError):
        m.decode(data)


@pytest.mark.parametrize(("kind", "answer_type"), [
    (m.ICC_POWER_ON, m.DATA_BLOCK), (m.XFR_BLOCK, m.DATA_BLOCK), (m.SECURE, m.DATA_BLOCK),
    (m.ICC_POWER_OFF, m.SLOT_STATUS), (m.GET_SLOT_STATUS, m.SLOT_STATUS), (m.ICC_CLOCK, m.SLOT_STATUS),
    (m.T0_APDU, m.SLOT_STATUS), (m.MECHANICAL, m.SLOT_STATUS), (m.ABORT, m.SLOT_STATUS),
    (m.GET_PARAMETERS, m.PARAMETERS), (m.RESET_PARAMETERS, m.PARAMETERS), (m.SET_PARAMETERS, m.PARAMETERS),
    (m.ESCAPE, m.ESCAPE_ANSWER), (m.SET_DATA_RATE_AND_CLOCK_FREQUENCY, m.DATA_RATE_AND_CLOCK_FREQUENCY),
    (0x99, m.SLOT_STATUS),  # no such command: a slot status says so
])
def test_each_command_has_its_answer_type(kind, answer_type):
    reply = m.answer(command(kind, seq=0x42), m.ICC_ACTIVE, m.CMD_NOT_SUPPORTED)
    assert (reply.type, reply.seq, reply.status, reply.error) == (answer_type, 0x42, 0x40, 0x00)
    assert reply.failed and reply.icc_status == m.ICC_ACTIVE


# -- the GemPC Twin framing -------------------------------------------------------------------------------

def test_a_frame_is_sync_ack_message_lrc():
    assert frame(GET_SLOT_STATUS).hex().upper() == "0306" "65000000000002000000" "62"  # 03^06^65^02 = 62
    assert NAK_FRAME == bytes.fromhex("031516")


def test_frames_in_any_pieces_give_the_messages_in_order():
    two = frame(GET_SLOT_STATUS) + frame(bytes.fromhex("6B01000000000300000002"))
    framing = SerialFraming()
    got = []
    for byte in two:  # one byte at a time
        got += framing.receive(bytes((byte,)))
    assert got == [GET_SLOT_STATUS, bytes.fromhex("6B01000000000300000002")]
    assert SerialFraming().receive(two) == got  # both in one read
    split = SerialFraming()
    assert split.receive(two[:7]) == [] and split.partial
    assert split.receive(two[7:]) == got and not split.partial


def test_a_bad_lrc_is_answered_nak_and_the_next_frame_still_arrives():
    bad = bytearray(frame(GET_SLOT_STATUS))
    bad[-1] ^= 0xFF
    framing = SerialFraming()
    assert framing.receive(bytes(bad) + frame(GET_SLOT_STATUS)) == [GET_SLOT_STATUS]
    assert framing.output() == NAK_FRAME and framing.naks_sent == 1


def test_a_length_beyond_the_reader_is_answered_nak():
    framing = SerialFraming()
    header = bytes.fromhex("6F") + (m.MAX_MESSAGE).to_bytes(4, "little") + bytes(5)
    assert framing.receive(bytes((0x03, 0x06)) + header) == []
    assert framing.output() == NAK_FRAME and not framing.partial


def test_noise_before_a_frame_is_skipped():
    framing = SerialFraming()
    assert framing.receive(b"\x00\xff\x03\x99" + frame(GET_SLOT_STATUS)) == [GET_SLOT_STATUS]
    assert framing.noise == 4 and framing.output() == b""


@pytest.mark.parametrize(("variant", "echo"), [("GemPCTwin", True), ("gempcpinpad", True), ("GemCorePOSPro", False),
                                               ("GemCoreSIMPro", False)])
def test_the_echo_comes_before_the_answer_on_the_twin_and_pinpad(variant, echo):
    framing = SerialFraming(echo=variant_echoes(variant))
    answer = bytes.fromhex("81000000000002010001")
    framing.send(GET_SLOT_STATUS, answer)
    assert framing.output() == (frame(GET_SLOT_STATUS) if echo else b"") + frame(answer)


def test_an_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown reader 'GemPC410'"):
        variant_echoes("GemPC410")


def test_a_nak_from_the_host_sends_the_last_answer_again():
    framing = SerialFraming()
    answer = bytes.fromhex("81000000000002010001")
    framing.send(GET_SLOT_STATUS, answer)
    sent = framing.output()
    assert framing.receive(NAK_FRAME) == [] and framing.output() == sent and framing.naks_received == 1


# -- the firmware: the slot ---------------------------------------------------------------------------------

def test_the_slot_states_absent_present_active():
    fw = Firmware(None)
    assert fw.handle(command(m.GET_SLOT_STATUS)).fields == bytes((m.ICC_ABSENT, 0, 1))
    power_on = fw.handle(command(m.ICC_POWER_ON))
    assert (power_on.type, power_on.status, power_on.error) == (m.DATA_BLOCK, 0x42, m.ICC_MUTE)
    fw.insert(Card.from_profile("default", date=CARD_DATE))
    assert fw.handle(command(m.GET_SLOT_STATUS)).fields == bytes((m.ICC_INACTIVE, 0, 1))  # clock stopped
    assert xfr(fw, SELECT_SSSE).fields == bytes((0x41, m.ICC_MUTE, 0))  # not powered: mute
    power_on = fw.handle(command(m.ICC_POWER_ON, fields=b"\x01\x00\x00", seq=8))
    assert (power_on.type, power_on.seq, power_on.fields) == (m.DATA_BLOCK, 8, bytes(3))
    assert power_on.data.hex().upper() == DEFAULT_ATR
    assert fw.handle(command(m.GET_SLOT_STATUS)).fields == bytes((m.ICC_ACTIVE, 0, 0))
    off = fw.handle(command(m.ICC_POWER_OFF))
    assert off.type == m.SLOT_STATUS and off.fields == bytes((m.ICC_INACTIVE, 0, 1)) and not fw.card.powered
    fw.remove()
    assert fw.handle(command(m.GET_SLOT_STATUS)).icc_status == m.ICC_ABSENT


def test_a_slot_that_does_not_exist_is_bslot_in_error():
    reply = firmware().handle(command(m.GET_SLOT_STATUS, slot=1))
    assert (reply.slot, reply.status, reply.error) == (1, 0x42, 5)


def test_the_escapes_the_driver_sends_at_start_up():
    fw = firmware()
    version = fw.handle(command(m.ESCAPE, b"\x02"))
    assert (version.type, version.failed, version.data) == (m.ESCAPE_ANSWER, False, FIRMWARE_NAME)
    assert fw.handle(command(m.ESCAPE, b"\x01\x01\x01")) == m.Message(m.ESCAPE_ANSWER, 0, 7, bytes((1, 0, 0)))
    features = fw.handle(command(m.ESCAPE, b"\x6a"))  # GET_FIRMWARE_FEATURES: not this reader's
    assert features.failed and features.error == m.CMD_NOT_SUPPORTED and features.data == b""


@pytest.mark.parametrize("kind", [m.ICC_CLOCK, m.T0_APDU, m.SECURE, m.MECHANICAL, m.ABORT,
                                  m.SET_DATA_RATE_AND_CLOCK_FREQUENCY, 0x50, 0x99])
def test_other_commands_are_not_supported(kind):
    reply = powered().handle(command(kind))
    assert reply.failed and reply.error == m.CMD_NOT_SUPPORTED and reply.icc_status == m.ICC_ACTIVE


# -- the firmware: parameters (§6.1.7) -----------------------------------------------------------------------

def test_the_parameters_come_from_the_atr_and_can_be_set():
    fw = powered()
    got = fw.handle(command(m.GET_PARAMETERS))
    assert (got.type, got.fields[2], got.data.hex().upper()) == (m.PARAMETERS, 0, "1100000A00")  # T=0, WI 10
    wanted = bytes.fromhex("1100000500")
    reply = fw.handle(command(m.SET_PARAMETERS, wanted, fields=bytes(3)))
    assert not reply.failed and reply.data == wanted
    assert fw.handle(command(m.GET_PARAMETERS)).data == wanted
    assert fw.handle(command(m.RESET_PARAMETERS)).data.hex().upper() == "1100000A00"


@pytest.mark.parametrize(("protocol", "data", "error"), [
    (0, "11000000", 1),  # T=0 takes 5 bytes
    (1, "1110004500FE00", 7),  # the default card offers T=0 only: bProtocolNum
    (0, "7000000A00", 10),  # Fi index 7 and Di index 0 are RFU: bmFindexDindex
])
def test_parameters_it_cannot_take_are_pointed_at(protocol, data, error):
    reply = powered().handle(command(m.SET_PARAMETERS, bytes.fromhex(data), fields=bytes((protocol, 0, 0))))
    assert reply.failed and reply.error == error


def test_a_t1_ifsc_of_zero_is_pointed_at():
    reply = powered("t1").handle(command(m.SET_PARAMETERS, bytes.fromhex("1310004500" "00" "00"),
                                         fields=b"\x01\x00\x00"))
    assert reply.failed and reply.error == 15  # bIFSC


# -- the firmware: T=0 at TPDU level --------------------------------------------------------------------------

def test_t0_select_answers_61xx_and_get_response_the_fci():
    fw = powered()
    assert xfr(fw, SELECT_SSSE).data.hex().upper() == "611E"  # the host sends GET RESPONSE itself
    assert xfr(fw, "00C000001E").data.hex().upper() == FCI["sm4"] + "9000"
    assert xfr(fw, READ_RECORD_7).data.hex().upper() == RECORD_7 + "9000"
    assert xfr(fw, WRONG_VERIFY).data.hex().upper() == "63C5"


def test_t0_6cxx_goes_back_unchanged():
    fw = powered()
    xfr(fw, SELECT_SSSE)
    assert xfr(fw, "00C0000000").data.hex().upper() == "6C1E"  # the host repeats with P3 1E
    assert xfr(fw, "00C000001E").data.hex().upper() == FCI["sm4"] + "9000"


def test_t0_case_4_loses_le_and_case_1_gets_p3():
    fw = powered()
    assert xfr(fw, SELECT_SSSE + "00").data.hex().upper() == "611E"
    assert fw._reader_t0.exchanges[0][0].hex().upper() == SELECT_SSSE  # header, ACK, data: no Le
    xfr(fw, "00A40000")
    assert fw._reader_t0.exchanges[0][0].hex().upper() == "00A4000000"


def test_a_pps_on_the_default_card_confirms_t0_and_t1_is_refused():
    fw = powered()
    assert xfr(fw, "FF00FF").data.hex().upper() == "FF00FF"
    refused = xfr(fw, "FF01FE")
    assert refused.failed and refused.error == m.ICC_MUTE


def mute_once(fw: Firmware, ins: int) -> None:
    assert fw.card is not None
    fw.card.faults = FaultPlan()
    fw.card.faults.add(parse_fault(f"mute ins {ins:02X} once"))


def test_t0_a_mute_card_is_icc_mute_and_the_next_command_is_answered():
    """The card end sends nothing; the firmware's T=0 end waits its WWT out (CCID rev 1.1 §6.2.6)."""
    fw = powered()
    xfr(fw, SELECT_SSSE)
    mute_once(fw, 0xB2)
    silent = xfr(fw, READ_RECORD_7)
    assert silent.failed and silent.error == m.ICC_MUTE and silent.data == b""
    assert xfr(fw, READ_RECORD_7).data.hex().upper() == RECORD_7 + "9000"


def test_t1_a_mute_card_sends_no_block_and_the_host_s_block_again_is_answered():
    fw = t1_firmware()
    mute_once(fw, 0xA4)
    select = i_block(0, bytes.fromhex(SELECT_SSSE)).encode().hex()
    silent = xfr(fw, select)
    assert silent.failed and silent.error == m.ICC_MUTE
    # the block counts as never received: the same I(0) again (the driver's retry) is answered
    reply = decode_block(xfr(fw, select).data)
    assert reply.is_i and reply.ns == 0 and reply.inf.hex().upper() == FCI["sm4"] + "9000"


# -- the firmware: T=1 blocks ------------------------------------------------------------------------------------

def t1_firmware(on_apdu=None) -> Firmware:
    """The t1 card as libccid sets it up: PPS for T=1 at TA1 13, SetParameters, S(IFS 254)."""
    fw = firmware("t1")
    fw.on_apdu = on_apdu
    assert fw.handle(command(m.ICC_POWER_ON)).data.hex().upper() == T1_ATR
    assert xfr(fw, "FF1113FD").data.hex().upper() == "FF1113FD"
    parameters = fw.handle(command(m.SET_PARAMETERS, bytes.fromhex("1310004500FE00"), fields=b"\x01\x00\x00"))
    assert not parameters.failed and parameters.fields[2] == 1
    assert xfr(fw, s_block(IFS, b"\xfe").encode().hex()).data == s_block(IFS, b"\xfe", response=True).encode()
    return fw


def test_t1_blocks_go_to_the_card_and_its_block_comes_back():
    fw = t1_firmware()
    reply = decode_block(xfr(fw, i_block(0, bytes.fromhex(SELECT_SSSE)).encode().hex()).data)
    assert reply.is_i and reply.inf.hex().upper() == FCI["sm4"] + "9000"


def test_t1_a_response_longer_than_ifsd_comes_in_a_chain():
    """The host acknowledges each piece with an R-block; every block is one XfrBlock."""
    fw = t1_firmware()
    assert xfr(fw, s_block(IFS, b"\x10").encode().hex()).data == s_block(IFS, b"\x10", response=True).encode()
    pieces = [decode_block(xfr(fw, i_block(0, bytes.fromhex(SELECT_SSSE)).encode().hex()).data)]
    while pieces[-1].more:
        pieces.append(decode_block(xfr(fw, r_block(pieces[-1].ns ^ 1).encode().hex()).data))
    assert [len(p.inf) for p in pieces] == [16, 16]  # IFSD 16: the 32 bytes of FCI + SW in two blocks
    assert b"".join(p.inf for p in pieces).hex().upper() == FCI["sm4"] + "9000"


def test_t1_a_partial_block_is_answered_after_its_character_waiting_time():
    fw = t1_firmware()
    reply = decode_block(xfr(fw, "000005" "00B2").data)  # LEN 5, 2 bytes of INF, no EDC
    assert reply.is_r and reply.err != 0


# -- the pty ------------------------------------------------------------------------------------------------------

def test_the_pty_answers_each_frame_with_its_echo_and_answer(tmp_path):
    link = str(tmp_path / "reader")
    with PtyReader(link, firmware()) as reader:
        thread = threading.Thread(target=reader.serve)
        thread.start()
        try:
            port = os.open(link, os.O_RDWR | os.O_NOCTTY)
            try:
                os.write(port, frame(GET_SLOT_STATUS)[:4])  # split: the answer waits for the rest
                os.write(port, frame(GET_SLOT_STATUS)[4:])
                expected = frame(GET_SLOT_STATUS) + frame(bytes.fromhex("81000000000002010001"))
                got = b""
                while len(got) < len(expected) and select.select([port], [], [], 5)[0]:
                    got += os.read(port, 100)
                assert got == expected
            finally:
                os.close(port)
        finally:
            reader.stop()
            thread.join(5)
        assert reader.commands == 1 and os.readlink(link).startswith("/dev/pts/")
    assert not os.path.lexists(link)


def test_the_pty_does_not_replace_a_file(tmp_path):
    path = tmp_path / "card.img"
    path.write_bytes(b"x")
    with pytest.raises(FileExistsError):
        PtyReader(str(path), firmware()).open()
    assert path.read_bytes() == b"x"


def test_the_reader_conf_stanza(tmp_path):
    assert stanza(str(tmp_path / "link"), "GemPCPinPad") == (
        f'FRIENDLYNAME "sscard CCID"\nDEVICENAME {tmp_path}/link:GemPCPinPad\nLIBPATH {LIBCCIDTWIN}\n')


# -- `python -m reader.pcsc.pcscd run --ccid` ---------------------------------------------------------------------

def test_run_takes_its_options_before_the_command():
    assert pcscd._run_arguments(["--ccid", "/tmp/l:GemPCPinPad", "--debug", "--", "true"]) == (
        pcscd.RunOptions(ccid="/tmp/l:GemPCPinPad", debug=True), ["true"])
    assert pcscd._run_arguments(["--", "true", "--debug"]) == (pcscd.RunOptions(), ["true", "--debug"])
    assert pcscd._run_arguments(["pytest", "-q"]) == (pcscd.RunOptions(), ["pytest", "-q"])
    assert pcscd._run_arguments(["--bogus", "--", "true"]) is None
    assert pcscd.ccid_link("/tmp/l:gempcpinpad") == ("/tmp/l", "gempcpinpad")
    assert pcscd.ccid_link("/tmp/l") == ("/tmp/l", "GemPCTwin")


def test_run_refuses_a_link_that_is_no_serial_port(tmp_path, capsys):
    code = pcscd.run(["true"], pcscd.RunOptions(ccid=str(tmp_path / "missing")))
    assert code == 2 and "is not a serial port: start the reader first" in capsys.readouterr().err


def test_the_command_refuses_a_missing_image(tmp_path, capsys):
    from reader.ccid.__main__ import main

    assert main([str(tmp_path / "link"), "--state", str(tmp_path / "none.img")]) == 1
    assert "no such card image" in capsys.readouterr().err and not os.path.lexists(tmp_path / "link")


def test_a_firmware_bug_is_answered_hw_error_not_silence(tmp_path, monkeypatch):
    fw = firmware()
    monkeypatch.setattr(fw, "handle", lambda command: 1 / 0)
    with PtyReader(str(tmp_path / "link"), fw) as reader:
        reader.feed(frame(GET_SLOT_STATUS))
        assert os.read(reader._slave, 100) == frame(GET_SLOT_STATUS) + frame(bytes.fromhex("81000000000002" "41FB00"))


# -- what a bench view sees of the card ---------------------------------------------------------------------

def test_a_watched_firmware_tells_each_apdu_the_card_answers_whatever_the_driver_moved():
    seen: list = []
    fw = firmware()
    fw.on_apdu = fw_seen(seen)
    assert not fw.handle(command(m.ICC_POWER_ON)).failed
    assert xfr(fw, SELECT_SSSE).data == bytes.fromhex("611E")  # T=0 at TPDU level: one TPDU each
    assert xfr(fw, "00C000001E").data.hex().upper() == FCI["sm4"] + "9000"
    assert seen == [(0, SELECT_SSSE, "611E"), (0, "00C000001E", FCI["sm4"] + "9000")]
    seen.clear()
    fw = t1_firmware(fw_seen(seen))
    block = decode_block(xfr(fw, i_block(0, bytes.fromhex(SELECT_SSSE)).encode().hex()).data)
    assert block.inf.hex().upper() == FCI["sm4"] + "9000"  # T=1 at TPDU level: one I-block each way
    assert seen == [(0, SELECT_SSSE, FCI["sm4"] + "9000")]  # the APDU inside the blocks


def fw_seen(seen: list):
    return lambda slot, apdu, response, seconds: seen.append((slot, apdu.hex().upper(), response.hex().upper()))


def test_an_unwatched_firmware_gives_the_card_its_ends_directly():
    fw = powered()
    assert fw.on_apdu is None and fw.slots[0].end.card is fw.card  # no proxy on a bench without a view
