"""serve's exchange fast path (reader/pcsc/serve.py, reader/pcsc/vpcd.py), without pcscd.

- `VpcdProtocol.take_apdu`: a read that completes exactly one APDU frame gives the APDU at once;
  anything else goes through the buffer, and the events come out as `receive_data` gives them;
- the loop against a vpcd played by the test, which writes each frame as vpcd's driver does (the
  2-byte length, then the payload, in two writes): every message answered with the bytes the card
  gives, one reply per command; a card served alone still lets the control channel in between its
  commands; a lost connection comes back; two cards are answered in turn; the `on_apdu` hook sees
  each exchange and a mute fault answers nothing.

No timing is asserted here (bench/bench_serve_echo.py measures the loop against an echo card).
"""

import itertools
import socket
import threading

import pytest
from helpers import CARD_DATE, DEFAULT_ATR, EF05, FCI, SELECT_SSSE, free_port
from hypothesis import given
from hypothesis import strategies as st
from test_vpcd import EVENTS, STREAM

from chip import Card
from reader.pcsc.serve import Server, Slot
from reader.pcsc.vpcd import Apdu, GetAtr, PowerOn, VpcdProtocol

READ_7 = bytes.fromhex("00B2072C0B")  # EF05 record 7 by number (SFI 5), Le 11: one exchange on T=0 (P5 §6.10)
RECORD_7 = bytes.fromhex(EF05[0x07]) + b"\x90\x00"
GET_FCI = bytes.fromhex("00C000001E")  # GET RESPONSE for the SSSE's FCI (T=0: P2 §9.3)
TIMEOUT = 10.0  # a generous bound on every wait: this file asserts bytes, never time


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(2, "big") + payload


# -- take_apdu ------------------------------------------------------------------------------------------
def test_a_read_holding_one_whole_apdu_frame_gives_the_apdu():
    protocol = VpcdProtocol()
    assert protocol.take_apdu(frame(READ_7)) == READ_7
    assert protocol.pending == 0 and protocol.next_event() is None


def test_the_payload_after_a_buffered_length_gives_the_apdu():
    protocol = VpcdProtocol()
    assert protocol.take_apdu(b"\x00\x05") is None  # vpcd's first write: the length alone
    assert protocol.next_event() is None and protocol.pending == 2
    assert protocol.take_apdu(READ_7) == READ_7
    assert protocol.pending == 0


@pytest.mark.parametrize(("chunks", "events"), [
    ([b"\x00\x01\x04"], [GetAtr()]),  # a control message: an event, no shortcut
    ([b"\x00\x01", b"\x01"], [PowerOn()]),  # its byte after its length
    ([frame(READ_7) + frame(READ_7)], [Apdu(READ_7), Apdu(READ_7)]),  # two frames in one read
    ([b"\x00\x00"], [Apdu(b"")]),  # an empty payload is an (empty) APDU, as receive_data has it
    ([frame(READ_7)[:4], frame(READ_7)[4:]], [Apdu(READ_7)]),  # a frame cut inside its payload
])
def test_what_is_not_one_apdu_frame_goes_through_the_buffer(chunks, events):
    protocol = VpcdProtocol()
    seen = []
    for chunk in chunks:
        assert protocol.take_apdu(chunk) is None
        seen += protocol.events()
    assert seen == events and protocol.pending == 0


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_events_receive_data_gives(cuts):
    """The stream pcscd's vpcd driver sends when a client connects and selects, cut anywhere: the
    APDUs take_apdu hands back and the buffered events together are the stream's events, in order."""
    points = sorted(set(cuts) | {0, len(STREAM)})
    protocol, seen = VpcdProtocol(), []
    for a, b in itertools.pairwise(points):
        apdu = protocol.take_apdu(STREAM[a:b])
        seen += [Apdu(apdu)] if apdu is not None else protocol.events()
    assert seen == EVENTS and protocol.pending == 0


# -- the loop against a vpcd played by the test -------------------------------------------------------------
class Vpcd:
    """One vpcd port: listens, accepts the card's connection, writes each frame as vpcd's driver does
    (the length, then the payload: two writes) and reads whole replies."""

    def __init__(self):
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(TIMEOUT)
        self.sock = None
        self.buffer = b""

    def accept(self) -> None:
        self.sock, _ = self.listener.accept()
        self.sock.settimeout(TIMEOUT)
        self.buffer = b""

    def send(self, payload: bytes) -> None:
        self.sock.sendall(len(payload).to_bytes(2, "big"))
        self.sock.sendall(payload)

    def reply(self) -> bytes:
        while len(self.buffer) < 2 or len(self.buffer) < 2 + int.from_bytes(self.buffer[:2], "big"):
            chunk = self.sock.recv(65538)
            assert chunk, "the card closed the connection"
            self.buffer += chunk
        length = int.from_bytes(self.buffer[:2], "big")
        payload, self.buffer = self.buffer[2:2 + length], self.buffer[2 + length:]
        return payload

    def exchange(self, apdu: bytes) -> bytes:
        self.send(apdu)
        return self.reply()

    def closed(self) -> bool:
        """Whether the card closed its side (its next read gives nothing)."""
        return self.sock.recv(65538) == b""

    def close(self) -> None:
        for sock in (self.sock, self.listener):
            if sock is not None:
                sock.close()


@pytest.fixture
def image(tmp_path):
    path = str(tmp_path / "card.img")
    Card.from_profile(state=path, date=CARD_DATE).close()
    return path


@pytest.fixture
def serving():
    """Start `Server(slots).run()` in a thread; stopped and joined at the end."""
    started = []

    def start(slots):
        server = Server(slots)
        thread = threading.Thread(target=server.run, name="serve loop", daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.stop()
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def call(server: Server, line: str) -> str:
    """A control line run by the loop (Server.call), its reply."""
    done, replies = threading.Event(), []
    server.call(line, lambda text: (replies.append(text), done.set()))
    assert done.wait(TIMEOUT), f"no reply to {line!r}"
    return replies[0]


def power_up(vpcd: Vpcd) -> None:
    """What pcscd's vpcd driver does when a client connects: power on, the ATR, then SELECT SSSE (T=0)."""
    vpcd.send(b"\x01")  # power on: no reply
    assert vpcd.exchange(b"\x04") == bytes.fromhex(DEFAULT_ATR)
    assert vpcd.exchange(bytes.fromhex(SELECT_SSSE)) == b"\x61\x1E"  # T=0: the FCI waits (P2 §9.3)
    assert vpcd.exchange(GET_FCI) == bytes.fromhex(FCI["sm4"]) + b"\x90\x00"


def test_a_card_served_alone_answers_each_command_and_lets_the_control_channel_in(image, serving):
    vpcd = Vpcd()
    try:
        server = serving([Slot(0, image, "127.0.0.1", vpcd.port)])
        vpcd.accept()
        power_up(vpcd)
        for n in range(200):  # back to back: the loop awaits each next command in the card's own read
            assert vpcd.exchange(READ_7) == RECORD_7
            if n == 100:  # between two commands, a line of the control channel is run (2 + 101 APDUs so far)
                assert call(server, "status").endswith("inserted, connected, 103 APDUs")
        vpcd.sock.sendall(frame(READ_7))  # the whole frame in one write answers the same
        assert vpcd.reply() == RECORD_7
        assert call(server, "remove") == "ok removed card 0"
        assert vpcd.closed()
        assert call(server, "insert") == "ok inserting card 0"
        vpcd.accept()  # back in the reader: a new connection, powered up afresh
        power_up(vpcd)
        assert vpcd.exchange(READ_7) == RECORD_7
    finally:
        vpcd.close()


def test_a_lost_connection_comes_back(image, serving):
    """pcscd stopped (vpcd closed the connection): the card reconnects, with backoff, and answers."""
    vpcd = Vpcd()
    try:
        server = serving([Slot(0, image, "127.0.0.1", vpcd.port)])
        vpcd.accept()
        power_up(vpcd)
        vpcd.sock.close()
        vpcd.accept()
        power_up(vpcd)
        assert vpcd.exchange(READ_7) == RECORD_7
        assert call(server, "status").endswith("inserted, connected, 5 APDUs")
    finally:
        vpcd.close()


def test_two_cards_are_answered_in_turn(image, tmp_path, serving):
    """Neither card holds the loop: each command sent to both at once gets both answers."""
    other = str(tmp_path / "other.img")
    Card.from_profile(state=other, date=CARD_DATE).close()
    readers = [Vpcd(), Vpcd()]
    try:
        serving([Slot(0, image, "127.0.0.1", readers[0].port), Slot(1, other, "127.0.0.1", readers[1].port)])
        for vpcd in readers:
            vpcd.accept()
            power_up(vpcd)
        for _ in range(50):
            for vpcd in readers:
                vpcd.send(READ_7)
            assert [vpcd.reply() for vpcd in reversed(readers)] == [RECORD_7, RECORD_7]
    finally:
        for vpcd in readers:
            vpcd.close()


def test_the_apdu_hook_sees_each_exchange_and_a_mute_fault_answers_nothing(image, serving):
    vpcd = Vpcd()
    seen = []
    slot = Slot(0, image, "127.0.0.1", vpcd.port,
                on_apdu=lambda s, apdu, response, seconds: seen.append((s, apdu, response, seconds >= 0)))
    try:
        server = serving([slot])
        vpcd.accept()
        power_up(vpcd)
        assert vpcd.exchange(READ_7) == RECORD_7
        assert call(server, "fault mute ins B2 once") == "ok card 0 fault mute ins B2 once"
        vpcd.send(READ_7)  # muted: no reply, and the next command is answered as the first
        assert vpcd.exchange(READ_7) == RECORD_7
        assert seen == [(slot, bytes.fromhex(SELECT_SSSE), b"\x61\x1E", True),
                        (slot, GET_FCI, bytes.fromhex(FCI["sm4"]) + b"\x90\x00", True),
                        (slot, READ_7, RECORD_7, True), (slot, READ_7, RECORD_7, True)]
    finally:
        vpcd.close()


def test_a_frame_in_many_writes_is_one_apdu(image, serving):
    """An extended APDU (ISO/IEC 7816-4 §5.1: Lc in 3 bytes) of 4,000 data bytes written in pieces, the
    length first: the card gets it whole, and answers what it answers in process to the same bytes."""
    apdu = bytes.fromhex("00A40400") + b"\x00" + (4000).to_bytes(2, "big") + bytes(range(256)) * 15 + bytes(160)
    reference = Card.open(image, read_only=True)  # the same card, in process, brought to where power_up brings it
    reference.power_on(0)
    for command in (bytes.fromhex(SELECT_SSSE), GET_FCI):
        reference.transmit(command)
    expected = reference.transmit(apdu)
    reference.close()
    vpcd = Vpcd()
    try:
        serving([Slot(0, image, "127.0.0.1", vpcd.port)])
        vpcd.accept()
        power_up(vpcd)
        vpcd.sock.sendall(len(apdu).to_bytes(2, "big"))
        for start in range(0, len(apdu), 1000):
            vpcd.sock.sendall(apdu[start:start + 1000])
        assert vpcd.reply() == expected
        assert vpcd.exchange(READ_7) == RECORD_7  # and the next command is answered as ever
    finally:
        vpcd.close()
