"""The vpcd framing layer, byte by byte, without sockets (reader.vpcd)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reader.vpcd import Apdu, GetAtr, PowerOff, PowerOn, Reset, Unknown, VpcdProtocol

SELECT = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
# what pcscd's vpcd driver sends when a client connects and selects: power on, ATR, APDU, reset, power off
STREAM = (b"\x00\x01\x01" b"\x00\x01\x04" + len(SELECT).to_bytes(2, "big") + SELECT
          + b"\x00\x01\x02" b"\x00\x01\x00")
EVENTS = [PowerOn(), GetAtr(), Apdu(SELECT), Reset(), PowerOff()]


def feed(chunks):
    protocol = VpcdProtocol()
    events = []
    for chunk in chunks:
        protocol.receive_data(chunk)
        events.extend(protocol.events())
    return events, protocol


def test_whole_stream_glued_in_one_read():
    events, protocol = feed([STREAM])
    assert events == EVENTS
    assert protocol.pending == 0


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_split_at_every_byte_boundary(cut):
    events, protocol = feed([STREAM[:cut], STREAM[cut:]])
    assert events == EVENTS
    assert protocol.pending == 0


def test_one_byte_at_a_time():
    events, protocol = feed([bytes((b,)) for b in STREAM])
    assert events == EVENTS


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split(cuts):
    points = sorted(set(cuts) | {0, len(STREAM)})
    events, protocol = feed([STREAM[a:b] for a, b in zip(points, points[1:])])
    assert events == EVENTS and protocol.pending == 0


def test_incomplete_frame_waits():
    protocol = VpcdProtocol()
    protocol.receive_data(b"\x00\x14" + SELECT[:10])
    assert protocol.next_event() is None
    assert protocol.pending == 12
    protocol.receive_data(SELECT[10:])
    assert protocol.next_event() == Apdu(SELECT)


def test_unknown_control_byte_is_an_event_without_reply():
    events, _ = feed([b"\x00\x01\x07"])
    assert events == [Unknown(7)]


def test_empty_payload_is_an_empty_apdu():
    events, _ = feed([b"\x00\x00"])
    assert events == [Apdu(b"")]


def test_send_frames_with_big_endian_length():
    assert VpcdProtocol.send(bytes.fromhex("9000")) == bytes.fromhex("00029000")
    assert VpcdProtocol.send(bytes(300))[:2] == b"\x01\x2C"
    with pytest.raises(ValueError):
        VpcdProtocol.send(bytes(0x10000))


def test_slot_answers_atr_without_touching_state(tmp_path):
    """ATR requests are answered from the ATR; power events drive the card's power model."""
    from chip import Card
    from reader.serve import Slot

    image = str(tmp_path / "card.img")
    Card.from_profile(state=image)
    slot = Slot(0, image, "127.0.0.1", 1)
    card = slot.card
    assert slot.handle(GetAtr()) == card.atr and not card.powered
    assert slot.handle(PowerOn()) is None and card.powered
    assert slot.handle(Apdu(SELECT))[-2:] == b"\x90\x00"
    assert slot.handle(Apdu(bytes.fromhex("0020000003123456"))) == b"\x90\x00"
    assert slot.handle(Apdu(bytes.fromhex("00B2093000")))[-2:] == b"\x90\x00"
    assert slot.handle(GetAtr()) == card.atr
    assert slot.handle(Apdu(bytes.fromhex("00B2093000")))[-2:] == b"\x90\x00"  # still verified
    slot.handle(Reset())
    assert slot.handle(Apdu(SELECT))[-2:] == b"\x90\x00"
    assert slot.handle(Apdu(bytes.fromhex("00B2093000"))) == bytes.fromhex("6982")  # reset cleared it
    slot.handle(PowerOff())
    assert not card.powered
