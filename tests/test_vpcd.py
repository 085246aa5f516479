"""The vpcd framing layer, byte by byte, without sockets (reader.pcsc.vpcd)."""

import itertools

import helpers
import pytest
import ssse_helpers as sh
from hypothesis import given
from hypothesis import strategies as st

from reader.pcsc.vpcd import Apdu, GetAtr, PowerOff, PowerOn, Reset, Unknown, VpcdProtocol

SELECT = sh.SELECT_SSSE
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
    events, _protocol = feed([bytes((b,)) for b in STREAM])
    assert events == EVENTS


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split(cuts):
    points = sorted(set(cuts) | {0, len(STREAM)})
    events, protocol = feed([STREAM[a:b] for a, b in itertools.pairwise(points)])
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


FCI = bytes.fromhex(helpers.FCI["sm4"])  # the SSSE's, SM4
VERIFY = bytes.fromhex(helpers.VERIFY_OK)
SELECT_DF04 = bytes.fromhex(helpers.SELECT_DF04_FID)
READ_DF04_REGION = sh.READ_DF04_REGION  # DF04 EF05 item 84: PIN or RK1DF04 (V2 table 7)
DF04_REGION = bytes.fromhex(helpers.DF04_REGION)


def get_response(slot, first: bytes) -> bytes:
    """What a T=0 client does with 61xx: GET RESPONSE until the last piece."""
    data, answer = b"", first
    while answer[-2] == 0x61:
        data += answer[:-2]
        answer = slot.handle(Apdu(b"\x00\xC0\x00\x00" + answer[-1:]))
    return data + answer


def test_slot_answers_atr_without_touching_state(tmp_path):
    """ATR requests are answered from the ATR; power events drive the card's power model, on the
    card's own protocol: T=0 on the default card, so a client sees 61xx and fetches the data."""
    from chip import Card
    from reader.pcsc.serve import Slot

    image = str(tmp_path / "card.img")
    Card.from_profile(state=image)
    slot = Slot(0, image, "127.0.0.1", 1)
    card = slot.card
    assert slot.handle(GetAtr()) == card.atr and not card.powered
    assert slot.handle(PowerOn()) is None and card.powered
    assert slot.protocol == card.protocol == 0
    first = slot.handle(Apdu(SELECT))
    assert first == bytes((0x61, len(FCI)))  # T=0: the FCI waits for GET RESPONSE
    assert get_response(slot, first) == FCI + b"\x90\x00"
    assert slot.handle(Apdu(VERIFY)) == b"\x90\x00"
    assert get_response(slot, slot.handle(Apdu(SELECT_DF04)))[-2:] == b"\x90\x00"
    assert slot.handle(Apdu(READ_DF04_REGION)) == DF04_REGION + b"\x90\x00"
    assert slot.handle(GetAtr()) == card.atr
    assert slot.handle(Apdu(READ_DF04_REGION)) == DF04_REGION + b"\x90\x00"  # still verified
    slot.handle(Reset())
    assert card.protocol == 0
    assert get_response(slot, slot.handle(Apdu(SELECT))) == FCI + b"\x90\x00"
    get_response(slot, slot.handle(Apdu(SELECT_DF04)))
    assert slot.handle(Apdu(READ_DF04_REGION)) == bytes.fromhex("6982")  # reset cleared it
    slot.handle(PowerOff())
    assert not card.powered


def test_slot_protocol_forced_or_the_cards_own(tmp_path):
    """`--t1` (protocol 1) answers as on T=1 whatever the ATR; by default each card gets the protocol
    its ATR runs without PPS, and a switched image brings its own."""
    from chip import Card
    from chip.personalization.profile import SHIPPED
    from reader.pcsc.serve import Slot

    default = str(tmp_path / "card.img")
    Card.from_profile(state=default)
    forced = Slot(0, default, "127.0.0.1", 1, protocol=1)
    forced.handle(PowerOn())
    assert forced.card.protocol == 1 and forced.handle(Apdu(SELECT)) == FCI + b"\x90\x00"
    t1 = str(tmp_path / "t1.img")
    Card.from_profile("t1", state=t1)
    slot = Slot(0, t1, "127.0.0.1", 1)
    slot.handle(PowerOn())
    assert slot.card.protocol == 0  # T=0 and T=1 offered: the first, T=0
    profile = tmp_path / "t1-only.toml"
    profile.write_text((SHIPPED / "default.toml").read_text(encoding="utf-8") + '\n[atr]\nprotocols = "t1"\n',
                       encoding="utf-8")
    t1_only = str(tmp_path / "t1-only.img")
    Card.from_profile(str(profile), state=t1_only)
    slot.switch(t1_only)
    assert slot.protocol == 1
    slot.handle(PowerOn())
    assert slot.card.protocol == 1 and slot.handle(Apdu(SELECT)) == FCI + b"\x90\x00"
    slot.handle(Reset())
    assert slot.card.protocol == 1
