"""ISO/IEC 7816-3 T=1 (§11): the block codec, the card's end (chip/contacts/t1.py) and the reader's (reader/link/t1.py).

The two ends are joined by `Link`, a tiny loop that moves bytes between them, can
drop, flip or inject bytes on the way, lets the card's character waiting time run
out on a partial block, and calls the reader's timeout() when nothing arrives.

The card is the shipped `t1` profile (the default card with an ATR offering T=0 and T=1, TA1 13);
the default card offers T=0 only (LD/T 32 P2). The photo (EF08) is read after EXTERNAL
AUTHENTICATE with RKSSSE, its cryptogram from the independent oracle (tests/oracle.py).
"""


import oracle
import pytest
from helpers import CARD_DATE, FCI, KEY_ID, T1_ATR, card_key, h
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ssse_helpers import SELECT_SSSE, verify

from chip import Card
from chip.contacts.t1 import (
    ABORT,
    IFS,
    RESYNCH,
    WTX,
    BlockReader,
    CardT1,
    Invalid,
    decode,
    describe,
    i_block,
    r_block,
    s_block,
)
from chip.contacts.timing import bwt_etu, crc, cwt_etu, lrc
from reader import SimReader
from reader.link.t1 import ReaderT1

FCI_SSSE = bytes.fromhex(FCI["sm4"] + "9000")  # 6F 1C ... 86 01 03 (SM4) + SW: 32 bytes
VERIFY = verify("123456")
READ_PHOTO = bytes.fromhex("00B0880000012C")  # READ BINARY EF08 (SFI 8), extended Le 300
PHOTO = bytes(range(256)) + bytes(44)
BWT = 61451  # 11 + 2^4 × 960 × 372 × 4 / 372 etu
EDCS = ("lrc", "crc")


def new_card(photo: bool = False) -> Card:
    card = Card.from_profile("t1", date=CARD_DATE)
    card.power_on(1)
    if photo:
        card.store.write(card.store["ssse.ef08"], "data", PHOTO)
        card.store.commit()
    return card


def twin(photo: bool = False) -> SimReader:
    """The same card in-process on T=1: what every exchange must give."""
    return SimReader(new_card(photo), protocol="T=1")


def rk_authentication(transmit) -> None:
    """GET CHALLENGE, then EXTERNAL AUTHENTICATE with RKSSSE, the photo's read key (P5 §6.4.3, P4 §9.3),
    through `transmit(apdu) -> response`; the cryptogram is the oracle's."""
    challenge = transmit(bytes.fromhex("0084000008"))
    assert challenge[-2:] == b"\x90\x00" and len(challenge) == 10, challenge
    ks = oracle.process_key("sm4", card_key("sm4", "ssse_rk"), challenge[:-2])
    original = bytes(range(1, 9))
    command = bytes((0x00, 0x82, 0x00, KEY_ID["ssse_rk"], 0x10)) + oracle.auth_data("sm4", ks, original) + original
    assert transmit(command) == b"\x90\x00"


def test_the_t1_profile_offers_t1():
    card = Card.from_profile("t1", date=CARD_DATE)
    assert card.atr.hex().upper() == T1_ATR
    assert SimReader(card).protocol == 0  # without PPS the first offered protocol, T=0, runs


class Link:
    """Carries each end's output to the other, block by block, through `fault(direction, n, data)`.

    direction is "to card" or "to reader", n counts the deliveries in that direction
    (from 0) and the fault returns what arrives instead (b"" or None: nothing).
    When neither end has anything to say, the card's character waiting time runs out
    on a partial block (CWT is shorter than BWT), or else the reader's wait does.
    """

    def __init__(self, reader: ReaderT1, card_end: CardT1, fault=None):
        self.reader = reader
        self.card_end = card_end
        self.fault = fault
        self.count = {"to card": 0, "to reader": 0}
        self.timeouts = 0
        self.busy = []  # the card's busy_etu before each of its deliveries
        self.wire = []  # (direction, bytes sent, bytes delivered)

    def transmit(self, apdu: bytes, max_steps: int = 3000) -> ReaderT1:
        reader, card_end = self.reader, self.card_end
        reader.start(apdu)
        for _ in range(max_steps):
            if reader.done:
                return reader
            data = reader.output()
            if data:
                self._deliver("to card", data, card_end.receive)
                continue
            data = card_end.output()
            if data:
                # the card's processing time fits in what the reader waits (WTX included)
                assert card_end.busy_etu <= reader.wait_etu, (card_end.busy_etu, reader.wait_etu)
                self.busy.append(card_end.busy_etu)
                self._deliver("to reader", data, reader.receive)
                continue
            if card_end.wait_etu:
                card_end.timeout()
            else:
                self.timeouts += 1
                reader.timeout()
        raise AssertionError("the exchange never ended")

    def _deliver(self, direction, data, receive) -> None:
        n = self.count[direction]
        self.count[direction] += 1
        arrived = self.fault(direction, n, data) if self.fault else data
        self.wire.append((direction, data, arrived))
        if arrived:
            receive(arrived)


def faults(plan: dict):
    """A fault function from {(direction, n): action}; actions: "drop", ("flip", index, mask),
    ("inject", index, bytes) (index None: at the end), ("truncate", n) (keep n bytes),
    ("replace", bytes)."""

    def fault(direction, n, data):
        action = plan.get((direction, n))
        if action is None:
            return data
        if action == "drop":
            return b""
        kind = action[0]
        if kind == "flip":
            _, index, mask = action
            index %= len(data)
            return data[:index] + bytes((data[index] ^ mask,)) + data[index + 1:]
        if kind == "inject":
            _, index, extra = action
            index = len(data) if index is None else index
            return data[:index] + extra + data[index:]
        if kind == "truncate":
            return data[:action[1]]
        if kind == "replace":
            return action[1]
        raise ValueError(action)

    return fault


def link(card=None, fault=None, *, edc="lrc", ifsc=254, ifsd=254, card_ifsc=None, delay_etu=None, nad=0):
    card = card or new_card()
    card_end = CardT1(card, ifsc=card_ifsc or ifsc, edc=edc, delay_etu=delay_etu)
    return Link(ReaderT1(ifsc=ifsc, ifsd=ifsd, edc=edc, nad=nad), card_end, fault)


def open_photo(ln: Link) -> None:
    """SELECT the SSSE and authenticate with RKSSSE over the link: 3 I-blocks each way, so the next
    command goes in I(1) and its first answer block is I(1)."""
    assert ln.transmit(SELECT_SSSE).response == FCI_SSSE
    rk_authentication(lambda apdu: ln.transmit(apdu).response)


def blocks(reader: ReaderT1, start: int = 0) -> list[str]:
    """The reader's log in words, ">" sent and "<" received."""
    return [("> " if way == "out" else "< ") + reader.describe(raw) for way, raw in reader.exchanges[start:]]


# -- the block codec -------------------------------------------------------------------------------------


def test_lrc_and_crc():
    assert lrc(bytes.fromhex("00C101FE")) == b"\x3E"
    assert crc(b"123456789") == bytes.fromhex("6F91")  # x^16+x^12+x^5+1 reflected, init FFFF
    assert crc(b"") == b"\xFF\xFF"


def test_pcb_coding():
    assert i_block(0, b"").encode() == bytes.fromhex("00000000")
    assert i_block(1, b"\x01", more=True).encode() == bytes.fromhex("0060010160")
    assert r_block(1).encode() == bytes.fromhex("00900090")
    assert r_block(0, 1).encode() == bytes.fromhex("00810081")
    assert r_block(1, 2).encode() == bytes.fromhex("00920092")
    assert s_block(RESYNCH).encode() == bytes.fromhex("00C000C0")
    assert s_block(IFS, b"\x20", response=True).encode() == bytes.fromhex("00E10120C0")
    assert s_block(ABORT).encode() == bytes.fromhex("00C200C2")
    assert s_block(WTX, b"\x02").encode("crc") == bytes.fromhex("00C30102") + crc(bytes.fromhex("00C30102"))


def test_describe():
    assert describe(bytes.fromhex("0000050102030405") + lrc(bytes.fromhex("0000050102030405"))) \
        == "I(0, M=0) 5 bytes"
    assert describe(bytes.fromhex("00910091")) == "R(1) EDC error"
    assert describe(bytes.fromhex("00800080")) == "R(0)"
    assert describe(bytes.fromhex("00820082")) == "R(0) other error"
    assert describe(bytes.fromhex("00C30102C0")) == "S(WTX request) 2"
    assert describe(bytes.fromhex("00E101FE1E")) == "S(IFS response) 254"
    assert describe(bytes.fromhex("00E000E0")) == "S(RESYNCH response)"
    assert describe(bytes.fromhex("00C000C1")) == "invalid: EDC error"
    assert describe(s_block(WTX, b"\x02").encode("crc"), "crc") == "S(WTX request) 2"
    assert describe(s_block(WTX, b"\x02").encode("crc")) == "S(WTX request) 2"  # the length says CRC
    assert describe(s_block(WTX, b"\x02").encode("crc"), "lrc") == "invalid: 6 bytes where LEN 1 makes 5"
    assert describe(bytes.fromhex("00C30102C000")) == "invalid: EDC error"
    reader = ReaderT1(edc="crc")
    assert reader.describe(r_block(1, 1).encode("crc")) == "R(1) EDC error"


@pytest.mark.parametrize("raw, reason", [
    ("00C000C1", "EDC error"),
    ("0000FF00", "LEN FF is RFU"),
    ("000100", "shorter"),
    ("00A000A0", "R-block PCB A0 is RFU"),  # b6 set in an R-block
    ("00830083", "R-block PCB 83 is RFU"),  # error code 11
    ("0090010190", "R-block with 1 INF bytes"),
    ("00C400C4", "S-block type 04 is RFU"),
    ("00C10100C0", "S(IFS) value 00 is reserved"),
    ("00C300C3", "S(WTX) with 0 INF bytes instead of 1"),
    ("00010001", "I-block PCB 01"),
])
def test_invalid_blocks(raw, reason):
    result = decode(bytes.fromhex(raw))
    assert isinstance(result, Invalid)
    assert reason in result.reason
    assert result.edc == (reason == "EDC error")


def test_block_reader_collects_split_deliveries_and_rejects_extra_bytes():
    raw = i_block(0, b"\x01\x02\x03").encode()
    reader = BlockReader()
    assert reader.feed(raw[:2]) is None and reader.partial
    assert reader.feed(raw[2:5]) is None
    block = reader.feed(raw[5:])
    assert block.inf == b"\x01\x02\x03" and block.raw == raw and not reader.partial
    longer = reader.feed(raw + b"\x00")
    assert isinstance(longer, Invalid) and "longer than LEN" in longer.reason
    assert reader.feed(b"\x00\x00") is None
    assert "incomplete" in reader.expire().reason
    assert reader.expire() is None


@given(st.binary(max_size=300), st.sampled_from(EDCS))
def test_decoding_garbage_never_raises(data, edc):
    result = decode(data, edc)
    assert isinstance(result, Invalid) or result.encode(edc) == data
    reader = BlockReader(edc)
    for i in range(0, len(data), 7):
        reader.feed(data[i:i + 7])
    reader.expire()


def test_timing():
    assert bwt_etu() == BWT
    assert bwt_etu(4, 512, 8) == 11 + 16 * 960 * 372 * 8 // 512
    assert cwt_etu(5) == 43
    assert ReaderT1().wait_etu == 0  # nothing to wait for before start()


# -- a clean session, exact bytes ------------------------------------------------------------------


@pytest.mark.parametrize("edc, blocks_hex", [
    ("lrc", ["00C101FE3E", "00E101FE1E",
             "00001400A404000F7378312E73682EC9E7BBE1B1A3D5CFE6",
             "0000206F1C840F7378312E73682EC9E7BBE1B1A3D5CFA50988011E9F0C0386010390003A"]),
    ("crc", ["00C101FE544E", "00E101FE5775",
             "00001400A404000F7378312E73682EC9E7BBE1B1A3D5CF9045",
             "0000206F1C840F7378312E73682EC9E7BBE1B1A3D5CFA50988011E9F0C038601039000A451"]),
])
def test_ifs_then_select_ssse(edc, blocks_hex):
    ln = link(edc=edc)
    reader = ln.transmit(SELECT_SSSE)
    assert reader.error is None
    assert reader.response == FCI_SSSE == twin().transmit(SELECT_SSSE)
    assert [h(raw) for _, raw in reader.exchanges] == blocks_hex
    assert blocks(reader) == ["> S(IFS request) 254", "< S(IFS response) 254",
                              "> I(0, M=0) 20 bytes", "< I(0, M=0) 32 bytes"]
    assert ln.card_end.ifsd == 254
    # the session is open: the next command goes straight in I(1), answered by I(1)
    reader = ln.transmit(VERIFY)
    assert reader.response == b"\x90\x00"
    assert [h(raw) for _, raw in reader.exchanges[4:]] == (
        ["00400800200000031234561B", "0040029000D2"] if edc == "lrc" else
        [h(i_block(1, VERIFY).encode("crc")), h(i_block(1, b"\x90\x00").encode("crc"))])
    assert ln.timeouts == 0


def test_ifsd_32_is_announced_too():
    ln = link(ifsd=32)
    ln.transmit(SELECT_SSSE)
    assert [h(raw) for _, raw in ln.reader.exchanges[:2]] == ["00C10120E0", "00E10120C0"]
    assert ln.card_end.ifsd == 32


def test_nad_is_answered_with_addresses_swapped():
    ln = link(nad=0x12)
    reader = ln.transmit(SELECT_SSSE)
    assert reader.response == FCI_SSSE
    assert [raw[0] for way, raw in reader.exchanges] == [0x12, 0x21, 0x12, 0x21]


def test_a_block_from_another_address_is_invalid():
    # the card answers NAD 00 to the reader's 12 → the reader never takes it
    ln = link(nad=0x12, fault=lambda d, n, data: bytes((0,)) + data[1:-1] + lrc(b"\x00" + data[1:-1])
              if d == "to reader" else data)
    reader = ln.transmit(SELECT_SSSE)
    assert reader.response is None and "warm reset" in reader.error


# -- chaining --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("edc", EDCS)
def test_300_byte_response_chained_with_ifsd_32(edc):
    card = new_card(photo=True)
    ln = link(card, edc=edc, ifsd=32)
    open_photo(ln)
    mark = len(ln.reader.exchanges)
    reader = ln.transmit(READ_PHOTO)
    assert reader.response == PHOTO + b"\x90\x00"
    pieces = [f"< I({(i + 1) % 2}, M=1) 32 bytes" for i in range(9)]  # the card's 4th I-block: N(S) 1
    acks = [f"> R({i % 2})" for i in range(9)]
    assert blocks(reader, mark) == (["> I(1, M=0) 7 bytes"]
                                    + [b for pair in zip(pieces, acks) for b in pair]
                                    + ["< I(0, M=0) 14 bytes"])
    log = [raw for _, raw in reader.exchanges[mark:]]
    if edc == "lrc":
        assert h(log[0]) == "00400700B0880000012C52"
        assert h(log[1]) == "006020" + h(PHOTO[:32]) + "40"  # LRC of 00..1F is 0, of 00 60 20 is 40
        assert h(log[2]) == "00800080" and h(log[4]) == "00900090"
        assert h(log[-1]) == "00000E" + "00" * 12 + "9000" + "9E"
    for raw in log[1:-1:2]:
        assert len(raw) == 3 + 32 + (1 if edc == "lrc" else 2)
    # the response is the in-process one
    same_card = twin(photo=True)
    same_card.transmit(SELECT_SSSE)
    rk_authentication(same_card.transmit)
    assert same_card.transmit(READ_PHOTO) == reader.response


def test_300_byte_response_by_chunks():
    ln = link(new_card(photo=True), ifsd=32)
    open_photo(ln)
    assert ln.transmit(bytes.fromhex("00A4020002EF08")).response == b"\x90\x00"  # an EF by FID: no FCP
    photo = b""
    for offset in range(0, 300, 200):
        apdu = bytes.fromhex("00B0") + offset.to_bytes(2, "big") + bytes((min(200, 300 - offset),))
        reader = ln.transmit(apdu)
        assert reader.response[-2:] == b"\x90\x00"
        photo += reader.response[:-2]
    assert photo == PHOTO


@pytest.mark.parametrize("edc", EDCS)
def test_260_byte_extended_command_chained_with_ifsc_32(edc):
    name = bytes(range(256)) + bytes(4)
    apdu = bytes.fromhex("00A40400" "000104") + name  # extended Lc = 260
    ln = link(edc=edc, ifsc=32)
    reader = ln.transmit(apdu)
    assert reader.response == bytes.fromhex("6A82") == twin().transmit(apdu)
    pieces = [f"> I({i % 2}, M=1) 32 bytes" for i in range(8)]
    acks = [f"< R({(i + 1) % 2})" for i in range(8)]
    assert blocks(reader) == (["> S(IFS request) 254", "< S(IFS response) 254"]
                              + [b for pair in zip(pieces, acks) for b in pair]
                              + ["> I(0, M=0) 11 bytes", "< I(0, M=0) 2 bytes"])
    log = [h(raw) for _, raw in reader.exchanges]
    assert b"".join(bytes.fromhex(raw)[3:-(1 if edc == "lrc" else 2)] for raw in log[2::2][:9]) == apdu
    if edc == "lrc":
        assert log[2] == "002020" "00A40400000104" + h(name[:25]) + "BD"
        assert log[3:6:2] == ["00900090", "00800080"]
        assert log[-2:] == ["00000BF9FAFBFCFDFEFF00000000F3", "0000026A82EA"]


def test_a_block_longer_than_ifsc_is_refused():
    # the reader believes IFSC is 254, the card only takes 32: every I-block is answered R(0) other error
    ln = link(ifsc=254, card_ifsc=32)
    reader = ln.transmit(bytes.fromhex("00A40400" "000104") + bytes(260))
    assert reader.response is None and reader.error
    assert "< R(0) other error" in blocks(reader)


# -- waiting time extension ------------------------------------------------------------------------


def slow_read_binary(apdu: bytes) -> int:
    return 200_000 if apdu[1:2] == b"\xB0" else 1000


@pytest.mark.parametrize("edc", EDCS)
def test_wtx_on_a_slow_command(edc):
    ln = link(new_card(photo=True), edc=edc, delay_etu=slow_read_binary)
    assert ln.transmit(SELECT_SSSE).response == FCI_SSSE
    assert ln.card_end.busy_etu == 1000  # within BWT: no extension
    rk_authentication(lambda apdu: ln.transmit(apdu).response)
    mark, busy = len(ln.reader.exchanges), len(ln.busy)
    reader = ln.transmit(READ_PHOTO)
    assert reader.response == PHOTO + b"\x90\x00"
    # 200000 etu > BWT 61451: multiplier ceil(200000 / 61451) = 4 before the answer
    assert blocks(reader, mark) == ["> I(1, M=0) 7 bytes", "< S(WTX request) 4", "> S(WTX response) 4",
                                    "< I(1, M=1) 254 bytes", "> R(0)", "< I(0, M=0) 48 bytes"]
    if edc == "lrc":
        assert [h(raw) for _, raw in reader.exchanges[mark + 1:mark + 3]] == ["00C30104C6", "00E30104E6"]
    assert ln.busy[busy:] == [0, 200_000, 0]  # S(WTX request) at once, the answer 200000 etu later
    assert 200_000 <= 4 * BWT
    assert ln.timeouts == 0


def test_wtx_wait_is_bwt_times_multiplier_for_that_block_only():
    card_end = CardT1(new_card(), delay_etu=lambda apdu: 3 * BWT)
    reader = ReaderT1()
    reader._ifs_done = card_end.ifsd = 254  # session already open
    reader.start(SELECT_SSSE)
    assert reader.wait_etu == BWT
    card_end.receive(reader.output())
    assert card_end.output() == s_block(WTX, b"\x03").encode()
    reader.receive(s_block(WTX, b"\x03").encode())
    assert reader.wait_etu == 3 * BWT
    card_end.receive(reader.output())
    assert card_end.busy_etu == 3 * BWT
    reader.receive(card_end.output())
    assert reader.done and reader.response == FCI_SSSE and reader.wait_etu == 0


def test_very_slow_command_gets_several_extensions():
    ln = link(delay_etu=lambda apdu: 300 * BWT)
    reader = ln.transmit(SELECT_SSSE)
    assert reader.response == FCI_SSSE
    assert blocks(reader)[2:] == ["> I(0, M=0) 20 bytes", "< S(WTX request) 255", "> S(WTX response) 255",
                                  "< S(WTX request) 45", "> S(WTX response) 45", "< I(0, M=0) 32 bytes"]


def test_lost_wtx_response_makes_the_card_ask_again():
    # to card: 0 S(IFS), 1 SELECT, 2 GET CHALLENGE, 3 EXTERNAL AUTHENTICATE, 4 READ BINARY, 5 S(WTX
    # response): lost. After BWT × 4 the reader sends R(1); the card, still waiting for its answer,
    # repeats S(WTX request) (rule 7.3)
    ln = link(new_card(photo=True), delay_etu=slow_read_binary, fault=faults({("to card", 5): "drop"}))
    open_photo(ln)
    reader = ln.transmit(bytes.fromhex("00B0880004"))
    assert reader.response == PHOTO[:4] + b"\x90\x00"
    assert ln.timeouts == 1
    assert blocks(reader)[8:] == ["> I(1, M=0) 5 bytes", "< S(WTX request) 4", "> S(WTX response) 4",
                                  "> R(1) other error", "< S(WTX request) 4", "> S(WTX response) 4",
                                  "< I(1, M=0) 6 bytes"]


def test_corrupted_wtx_response_makes_the_card_ask_again():
    # to card: 5 the S(WTX response) (see above), one bit of its INF flipped: an EDC error
    ln = link(new_card(photo=True), delay_etu=slow_read_binary, fault=faults({("to card", 5): ("flip", 3, 1)}))
    open_photo(ln)
    reader = ln.transmit(bytes.fromhex("00B0880004"))
    assert reader.response == PHOTO[:4] + b"\x90\x00"
    assert blocks(reader)[9:] == ["< S(WTX request) 4", "> S(WTX response) 4", "< S(WTX request) 4",
                                  "> S(WTX response) 4", "< I(1, M=0) 6 bytes"]
    assert ln.timeouts == 0


# -- error recovery (§11.6) ------------------------------------------------------------------------


@pytest.mark.parametrize("edc", EDCS)
def test_corrupted_i_block_is_sent_again(edc):
    # to card: 0 S(IFS request), 1 the SELECT I-block: one bit of its INF flipped
    ln = link(edc=edc, fault=faults({("to card", 1): ("flip", 10, 0x01)}))
    reader = ln.transmit(SELECT_SSSE)
    assert reader.response == FCI_SSSE
    assert blocks(reader) == ["> S(IFS request) 254", "< S(IFS response) 254",
                              "> I(0, M=0) 20 bytes", "< R(0) EDC error",
                              "> I(0, M=0) 20 bytes", "< I(0, M=0) 32 bytes"]
    log = [raw for _, raw in reader.exchanges]
    assert log[4] == log[2]  # the same block, byte for byte
    assert h(log[3]) == ("00810081" if edc == "lrc" else h(r_block(0, 1).encode("crc")))


def test_corrupted_r_block_during_response_chaining():
    # to card: 0 S(IFS), 1 SELECT, 2 GET CHALLENGE, 3 EXTERNAL AUTHENTICATE, 4 READ BINARY, 5 R(0)
    # acknowledging the first piece: flipped
    ln = link(new_card(photo=True), ifsd=32, fault=faults({("to card", 5): ("flip", 1, 0x40)}))
    open_photo(ln)
    mark = len(ln.reader.exchanges)
    reader = ln.transmit(READ_PHOTO)
    assert reader.response == PHOTO + b"\x90\x00"
    # the card asks for the I-block it expects next (N(R) = 0), the reader repeats its R(0) (rule 7.2)
    assert blocks(reader, mark)[:6] == ["> I(1, M=0) 7 bytes", "< I(1, M=1) 32 bytes", "> R(0)",
                                        "< R(0) EDC error", "> R(0)", "< I(0, M=1) 32 bytes"]


def test_corrupted_r_block_from_the_card_during_command_chaining():
    # to reader: 0 S(IFS response), 1 R(1) acknowledging the first piece: EDC damaged
    ln = link(ifsc=32, fault=faults({("to reader", 1): ("flip", -1, 0xFF)}))
    reader = ln.transmit(bytes.fromhex("00A40400" "000104") + bytes(260))
    assert reader.response == bytes.fromhex("6A82")
    assert blocks(reader)[2:7] == ["> I(0, M=1) 32 bytes", "< invalid: EDC error", "> R(0) EDC error",
                                   "< R(1)", "> I(1, M=1) 32 bytes"]


@pytest.mark.parametrize("edc", EDCS)
def test_lost_response_block_is_asked_for_again(edc):
    ln = link(edc=edc, fault=faults({("to reader", 1): "drop"}))
    reader = ln.transmit(SELECT_SSSE)
    assert reader.response == FCI_SSSE
    assert ln.timeouts == 1
    assert blocks(reader)[2:] == ["> I(0, M=0) 20 bytes", "> R(0) other error", "< I(0, M=0) 32 bytes"]
    if edc == "lrc":
        assert h(reader.exchanges[3][1]) == "00820082"


def test_lost_command_block_is_sent_again():
    ln = link(fault=faults({("to card", 1): "drop"}))
    reader = ln.transmit(SELECT_SSSE)
    assert reader.response == FCI_SSSE
    assert blocks(reader)[2:] == ["> I(0, M=0) 20 bytes", "> R(0) other error", "< R(0)",
                                  "> I(0, M=0) 20 bytes", "< I(0, M=0) 32 bytes"]


def test_truncated_block_waits_for_the_character_waiting_time():
    # the card's answer loses its last bytes: the reader waits CWT, then asks again
    ln = link(fault=faults({("to reader", 1): ("replace", bytes.fromhex("0000206F1C"))}))
    reader = ln.transmit(SELECT_SSSE)
    assert reader.response == FCI_SSSE
    assert blocks(reader)[3:] == ["< invalid: 5 bytes where LEN 32 makes 36",
                                  "> R(0) other error", "< I(0, M=0) 32 bytes"]


def test_lengthened_block_to_the_card_times_out_there():
    # LEN 14 → 94: the card waits for bytes that never come; at CWT it answers R(0) other error
    ln = link(fault=faults({("to card", 1): ("flip", 2, 0x80)}))
    reader = ln.transmit(SELECT_SSSE)
    assert reader.response == FCI_SSSE
    assert blocks(reader)[2:] == ["> I(0, M=0) 20 bytes", "< R(0) other error",
                                  "> I(0, M=0) 20 bytes", "< I(0, M=0) 32 bytes"]
    assert ln.timeouts == 0


def test_injected_bytes_make_the_block_invalid():
    ln = link(fault=faults({("to reader", 1): ("inject", 0, b"\x55")}))
    reader = ln.transmit(SELECT_SSSE)
    assert reader.response == FCI_SSSE
    assert blocks(reader)[3:5] == ["< invalid: 37 bytes where LEN 0 makes 4", "> R(0) other error"]


def test_resynch_after_repeated_errors():
    # the card's first four answers to the SELECT are lost: 3 R-blocks, then S(RESYNCH request);
    # the SELECT had been delivered (the card ran it), so the exchange ends in a link error
    # rather than running the command twice, and the resynchronised link serves the next one
    plan = {("to reader", n): "drop" for n in range(1, 5)}
    ln = link(fault=faults(plan))
    reader = ln.transmit(SELECT_SSSE)
    assert reader.response is None and reader.error.startswith("link resynchronised after repeated errors")
    assert reader.resynchs == 1
    assert blocks(reader)[2:] == ["> I(0, M=0) 20 bytes",
                                  "> R(0) other error", "> R(0) other error", "> R(0) other error",
                                  "> S(RESYNCH request)", "< S(RESYNCH response)"]
    assert [h(raw) for _, raw in reader.exchanges[6:8]] == ["00C000C0", "00E000E0"]
    # both ends start again from N(S) = 0, with S(IFS) first
    ln.fault = None
    again = ln.transmit(SELECT_SSSE)
    assert again.response == FCI_SSSE
    assert blocks(again, start=8) == ["> S(IFS request) 254", "< S(IFS response) 254",
                             "> I(0, M=0) 20 bytes", "< I(0, M=0) 32 bytes"]
    assert blocks(ln.transmit(VERIFY))[-2:] == ["> I(1, M=0) 8 bytes", "< I(1, M=0) 2 bytes"]


def test_resynch_resets_the_card_end():
    card_end = CardT1(new_card())
    card_end.receive(s_block(IFS, b"\x80").encode())
    assert card_end.output() == s_block(IFS, b"\x80", response=True).encode() and card_end.ifsd == 128
    card_end.receive(i_block(0, SELECT_SSSE).encode())
    assert card_end.output() == i_block(0, FCI_SSSE).encode()
    card_end.receive(s_block(RESYNCH).encode())
    assert card_end.output() == bytes.fromhex("00E000E0")
    assert card_end.ifsd == 32
    card_end.receive(i_block(0, VERIFY).encode())  # N(S) 0 again, answered with N(S) 0
    assert card_end.output() == i_block(0, b"\x90\x00").encode()


@pytest.mark.parametrize("edc", EDCS)
def test_above_the_limit_the_reader_gives_up(edc):
    ln = link(edc=edc, fault=lambda direction, n, data: data if direction == "to card" or n == 0 else b"")
    reader = ln.transmit(SELECT_SSSE)
    assert reader.done and reader.response is None
    assert "warm reset" in reader.error
    assert blocks(reader)[2:] == (["> I(0, M=0) 20 bytes"] + ["> R(0) other error"] * 3
                                  + ["> S(RESYNCH request)"] * 3)
    # the link stays down until the caller's warm reset
    ln.fault = None
    assert ln.transmit(SELECT_SSSE).error and ln.reader.response is None
    ln.card_end.card.reset()
    ln.card_end.reset()
    ln.reader.reset()
    assert ln.transmit(SELECT_SSSE).response == FCI_SSSE


def test_garbage_answers_never_make_a_response():
    ln = link(fault=lambda direction, n, data: data if direction == "to card" or n == 0 else b"\x00\x00\x02\x90")
    reader = ln.transmit(SELECT_SSSE)
    assert reader.response is None and reader.error


def test_card_end_s_blocks():
    card_end = CardT1(new_card())
    card_end.receive(bytes.fromhex("00C10120E0"))
    assert card_end.output() == bytes.fromhex("00E10120C0")
    # S(ABORT) drops a command chain half received
    card_end.receive(i_block(0, SELECT_SSSE[:5], more=True).encode())
    assert card_end.output() == r_block(1).encode()
    card_end.receive(s_block(ABORT).encode())
    assert card_end.output() == s_block(ABORT, response=True).encode()
    card_end.receive(i_block(1, SELECT_SSSE).encode())
    assert card_end.output() == i_block(0, FCI_SSSE).encode()
    # a response S-block with nothing asked, and S(WTX request) from the reader: R other error
    card_end.receive(s_block(IFS, b"\x20", response=True).encode())
    assert card_end.output() == r_block(0, 2).encode()
    card_end.receive(s_block(WTX, b"\x01").encode())
    assert card_end.output() == r_block(0, 2).encode()


def test_card_end_first_block_invalid_gets_r0():
    card_end = CardT1(new_card())
    card_end.receive(bytes.fromhex("00C10120E1"))
    assert card_end.output() == bytes.fromhex("00810081")
    card_end.receive(bytes.fromhex("0000FF"))  # LEN FF: invalid at once
    assert card_end.output() == bytes.fromhex("00820082")


def test_card_end_retransmits_on_request():
    card_end = CardT1(new_card())
    card_end.ifsd = 16
    card_end.receive(i_block(0, SELECT_SSSE).encode())
    first = card_end.output()
    assert first == i_block(0, FCI_SSSE[:16], more=True).encode()
    card_end.receive(r_block(0, 1).encode())  # the reader did not get it
    assert card_end.output() == first
    card_end.receive(r_block(1).encode())  # acknowledged: the next piece
    assert card_end.output() == i_block(1, FCI_SSSE[16:], more=False).encode()
    card_end.receive(r_block(1, 1).encode())
    assert card_end.output() == i_block(1, FCI_SSSE[16:], more=False).encode()


def test_a_card_without_power_is_silent():
    ln = link()
    assert ln.transmit(SELECT_SSSE).response == FCI_SSSE
    ln.card_end.card.power_off()
    reader = ln.transmit(VERIFY)
    assert reader.response is None and reader.error
    assert ln.card_end.output() == b""
    assert blocks(reader)[4:] == (["> I(1, M=0) 8 bytes"] + ["> R(1) other error"] * 3
                                  + ["> S(RESYNCH request)"] * 3)


def test_start_during_an_exchange_is_a_programming_error():
    reader = ReaderT1()
    reader.start(SELECT_SSSE)
    with pytest.raises(RuntimeError):
        reader.start(SELECT_SSSE)


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        ReaderT1(ifsc=255)
    with pytest.raises(ValueError):
        ReaderT1(edc="parity")
    with pytest.raises(ValueError):
        ReaderT1(nad=0x08)
    with pytest.raises(ValueError):
        CardT1(new_card(), ifsc=0)


def test_card_end_powers_the_card_for_t1():
    card = Card.from_profile("t1", date=CARD_DATE)
    CardT1(card)
    assert card.powered and card.protocol == 1  # not the T=0 the card runs without PPS


# -- properties ------------------------------------------------------------------------------------

# short SSSE commands; the reads and selects give the same answer when a resynchronisation makes the
# reader send them again, VERIFY with a wrong PIN does not (its counter moves twice)
IDEMPOTENT = [
    SELECT_SSSE,
    VERIFY,
    bytes.fromhex("00A4020002EF05"),
    bytes.fromhex("00B2052C00"),
    bytes.fromhex("00B2083000"),
    bytes.fromhex("00B0880010"),
    bytes.fromhex("00B0880000"),
    bytes.fromhex("00B0882004"),
    bytes.fromhex("00A4000002EF08"),
    bytes.fromhex("00CA000000"),
    bytes.fromhex("00A40400" "08A000000333010101"),
    bytes.fromhex("00A40400" "0E315041592E5359532E4444463031"),
    bytes.fromhex("00B2010C00"),
    bytes.fromhex("00B0000A05"),
    bytes.fromhex("0084000008"),  # GET CHALLENGE: compared by length and SW only
]
GET_CHALLENGE = bytes.fromhex("0084000008")


def fixed_random(n: int) -> bytes:
    """Both cards of a property test draw the same challenges: 00 01 .. n-1."""
    return bytes(range(n))


def _rk_authentication_for_fixed_random() -> bytes:
    ks = oracle.process_key("sm4", card_key("sm4", "ssse_rk"), fixed_random(8))
    original = bytes(range(1, 9))
    return bytes((0x00, 0x82, 0x00, KEY_ID["ssse_rk"], 0x10)) + oracle.auth_data("sm4", ks, original) + original


# a wrong PIN and EXTERNAL AUTHENTICATE move try counters (each run counts), so they are drawn only
# where no command runs twice; after GET CHALLENGE the authentication opens the photo to the reads above
STATEFUL = [bytes.fromhex("0020000003111111"), bytes.fromhex("00200000"), _rk_authentication_for_fixed_random()]


def same(apdu: bytes, got: bytes, expected: bytes) -> bool:
    if apdu == GET_CHALLENGE:
        return len(got) == len(expected) and got[-2:] == expected[-2:]
    return got == expected


@st.composite
def short_commands(draw, pool):
    return draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5))


# What an EDC is there to catch: one damaged byte in a block (any bit pattern), a lost block, a block cut
# short, bytes after its end. (Bytes slipped in before a block's end shift its framing: a 00 in
# front of a block leaves its LRC unchanged, so that is a fault LRC cannot see and is not drawn.)
FAULT_ACTIONS = st.one_of(
    st.just("drop"),
    st.tuples(st.just("flip"), st.integers(0, 300), st.integers(1, 255)),
    st.tuples(st.just("inject"), st.none(), st.binary(min_size=1, max_size=3)),
    st.tuples(st.just("truncate"), st.integers(0, 40)),
)


def fault_action(draw):
    return draw(FAULT_ACTIONS)


@st.composite
def sparse_faults(draw):
    """Faults on deliveries at least 6 apart (counted over both directions): each one is recovered
    (at most 2 recovery blocks) before the next can strike, so the retry limit is never reached."""
    plan, n = {}, draw(st.integers(0, 4))
    while n < 120:
        plan[n] = fault_action(draw)
        n += draw(st.integers(6, 20))
    return plan


@st.composite
def dense_faults(draw):
    """Every delivery among the first 150 is damaged with a probability drawn between 0.2 and 0.9."""
    rate = draw(st.floats(0.2, 0.9))
    return {n: fault_action(draw) for n in range(150) if draw(st.floats(0, 1)) < rate}


def apply(action, data: bytes) -> bytes:
    return faults({("x", 0): action})("x", 0, data)


class Counter:
    def __init__(self, plan):
        self.plan = plan
        self.n = 0

    def __call__(self, direction, n, data):
        action = self.plan.get(self.n)
        self.n += 1
        return data if action is None else apply(action, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(short_commands(IDEMPOTENT + STATEFUL), sparse_faults(), st.sampled_from(EDCS),
       st.sampled_from([(254, 254), (32, 32), (16, 254), (254, 8)]))
def test_faults_below_the_retry_limit_change_nothing(commands, plan, edc, sizes):
    ifsc, ifsd = sizes
    same_card = twin(photo=True)
    card = new_card(photo=True)
    card.random = same_card.card.random = fixed_random
    ln = link(card, Counter(plan), edc=edc, ifsc=ifsc, ifsd=ifsd)
    for apdu in commands:
        reader = ln.transmit(apdu)
        assert reader.error is None
        assert same(apdu, reader.response, same_card.transmit(apdu))
    assert ln.reader.resynchs == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(short_commands(IDEMPOTENT), dense_faults(), st.sampled_from(EDCS))
def test_more_faults_give_a_link_error_never_a_wrong_response(commands, plan, edc):
    card = new_card(photo=True)
    same_card = twin(photo=True)
    ln = link(card, Counter(plan), edc=edc)
    for apdu in commands:
        reader = ln.transmit(apdu)
        expected = same_card.transmit(apdu)
        event("link error" if reader.error else "resynchronised" if ln.reader.resynchs else "recovered")
        if reader.error:
            assert reader.response is None
            # the caller's warm reset, on both cards
            card.reset()
            same_card.card.reset()
            ln.card_end.reset()
            reader.reset()
        else:
            assert same(apdu, reader.response, expected)


def test_every_delivery_dropped_is_always_an_error():
    for n in range(12):
        ln = link(new_card(), Counter(dict.fromkeys(range(n, 400), "drop")))
        reader = ln.transmit(SELECT_SSSE)
        if reader.error is None:
            assert reader.response == FCI_SSSE  # the answer made it before the link went dead
        else:
            assert reader.response is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=12), st.sampled_from(EDCS))
def test_ends_never_raise_on_garbage(chunks, edc):
    card_end = CardT1(new_card(), edc=edc)
    reader = ReaderT1(edc=edc)
    reader.start(SELECT_SSSE)
    for i, chunk in enumerate(chunks):
        card_end.receive(chunk)
        reader.receive(chunk)
        if i % 3 == 2:
            card_end.timeout()
            reader.timeout()
        card_end.output()
        reader.output()
    assert reader.response is None or reader.done


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["I", "R", "S"]), st.integers(0, 255), st.binary(max_size=8)),
                max_size=10))
def test_card_end_never_raises_on_well_formed_nonsense(sequence):
    card_end = CardT1(new_card())
    for kind, pcb_bits, inf in sequence:
        if kind == "I":
            block = i_block(pcb_bits & 1, SELECT_SSSE[:5] + inf, more=bool(pcb_bits & 2))
        elif kind == "R":
            block = r_block(pcb_bits & 1, pcb_bits >> 1 & 3 if pcb_bits >> 1 & 3 != 3 else 0)
        else:
            block = s_block(pcb_bits & 3, inf[:1] or b"\x01", response=bool(pcb_bits & 4))
        card_end.receive(block.encode())
        out = card_end.output()
        assert out and not isinstance(decode(out), Invalid)
