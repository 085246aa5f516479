"""Command APDU decoding: `chip.iso.apdu.parse`/`build` and what `Card.transmit` makes of it.

References: ISO/IEC 7816-4 §5.1 (cases 1-4, short and extended Lc/Le), ISO/IEC
7816-3 §12.1; the status words as docs/card/commands.md §2 lists them.
"""

import pytest
from helpers import CARD_DATE, DDF_NAME, EF05, FCI, SELECT_SSSE, tx
from hypothesis import given, settings
from hypothesis import strategies as st

from chip import Card
from chip.iso.apdu import build, parse
from chip.iso.sw import CardError

SSSE_NAME = bytes.fromhex(DDF_NAME)
FCI_SSSE = FCI["sm4"]  # the default profile: SM4 (P5 table 36)
EF05_01 = EF05[1]  # region || RID || serial || authentication code (V2 table 10)


def fields(cmd):
    return (cmd.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data, cmd.ne, cmd.le_present, cmd.case, cmd.extended)


# -- parse: the seven well-formed encodings -------------------------------------------


@pytest.mark.parametrize("hexstr, expected", [
    # case 1: header only; like a missing Le, up to 256 bytes may come back (docs/decisions.md)
    ("00A40000", (0x00, 0xA4, 0x00, 0x00, b"", 256, False, 1, False)),
    # case 2 short: Le = 00 means 256 (7816-4 §5.1)
    ("00B2012C00", (0x00, 0xB2, 0x01, 0x2C, b"", 256, True, 2, False)),
    ("00B2012C12", (0x00, 0xB2, 0x01, 0x2C, b"", 0x12, True, 2, False)),
    # case 3 short: no Le; the card OS allows up to 256 bytes back (chip.iso.apdu docstring)
    ("00A4020002EF05", (0x00, 0xA4, 0x02, 0x00, b"\xEF\x05", 256, False, 3, False)),
    # case 4 short
    ("00A4020002EF0510", (0x00, 0xA4, 0x02, 0x00, b"\xEF\x05", 0x10, True, 4, False)),
    ("00A4020002EF0500", (0x00, 0xA4, 0x02, 0x00, b"\xEF\x05", 256, True, 4, False)),
    # case 2 extended: 00 Le1 Le2, Le = 0000 means 65536
    ("00B2012C000000", (0x00, 0xB2, 0x01, 0x2C, b"", 65536, True, 2, True)),
    ("00B2012C000123", (0x00, 0xB2, 0x01, 0x2C, b"", 0x123, True, 2, True)),
    # case 3 extended: 00 Lc1 Lc2 data
    ("00A40200000002EF05", (0x00, 0xA4, 0x02, 0x00, b"\xEF\x05", 65536, False, 3, True)),
    # case 4 extended: 00 Lc1 Lc2 data Le1 Le2
    ("00A40200000002EF050000", (0x00, 0xA4, 0x02, 0x00, b"\xEF\x05", 65536, True, 4, True)),
    ("00A40200000002EF050102", (0x00, 0xA4, 0x02, 0x00, b"\xEF\x05", 0x102, True, 4, True)),
])
def test_parse_cases(hexstr, expected):
    raw = bytes.fromhex(hexstr)
    cmd = parse(raw)
    assert fields(cmd) == expected
    assert cmd.raw == raw


def test_parse_long_data_short_and_extended():
    data = bytes(range(255))
    short = parse(b"\x80\x5E\x01\x00\xFF" + data)
    assert (short.case, short.extended, short.data) == (3, False, data)
    big = bytes(300)
    ext = parse(b"\x00\xDA\x00\x00\x00\x01\x2C" + big + b"\x00\x00")
    assert (ext.case, ext.extended, ext.data, ext.ne) == (4, True, big, 65536)


MALFORMED = [
    "",  # nothing
    "00",  # 1 byte
    "00B2",  # 2 bytes
    "00B201",  # 3 bytes: no complete header
    "00B2012C0000",  # 6 bytes starting 00 after the header: neither short nor extended
    "00B2012C0012",  # same
    "00A4020002EF",  # Lc = 2 but one data byte
    "00A4020002EF050000",  # Lc = 2, then two trailing bytes (short Le is one byte)
    "00A4020003EF05",  # Lc longer than the data
    "00A4040000000000",  # extended Lc = 0000 is not allowed (7816-4 §5.1: Lc 1..65535)
    "00A404000000007378",  # extended Lc = 0000 followed by data
    "00A40200000002EF",  # extended Lc = 2, one data byte
    "00A40200000002EF0500",  # extended case 4 with a one-byte Le
    "00A40200000002EF05000000",  # extended, three trailing bytes
    "00A40200000003EF05",  # extended Lc longer than the data
]


@pytest.mark.parametrize("hexstr", MALFORMED)
def test_parse_malformed_raises_6700(hexstr):
    with pytest.raises(CardError) as info:
        parse(bytes.fromhex(hexstr))
    assert info.value.sw == 0x6700


def test_parse_seven_bytes_starting_00_is_extended_case_2_not_malformed():
    # 00 A4 04 00 | 00 00 00 : 7 bytes, B1 = 00 -> extended Le = 0000 (65536), case 2
    cmd = parse(bytes.fromhex("00A40400000000"))
    assert (cmd.case, cmd.extended, cmd.ne, cmd.data) == (2, True, 65536, b"")


# -- build ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args, expected", [
    ((0x00, 0xA4, 0x00, 0x00), "00A40000"),
    ((0x00, 0xB2, 0x01, 0x2C, b"", 256), "00B2012C00"),
    ((0x00, 0xB2, 0x01, 0x2C, b"", 0x12), "00B2012C12"),
    ((0x00, 0xA4, 0x04, 0x00, SSSE_NAME), SELECT_SSSE),
    ((0x00, 0xA4, 0x04, 0x00, SSSE_NAME, 256), SELECT_SSSE + "00"),
    ((0x00, 0xB2, 0x01, 0x2C, b"", 65536), "00B2012C000000"),
    ((0x00, 0xB2, 0x01, 0x2C, b"", 257), "00B2012C000101"),
    # Le > 256 forces the extended form for Lc too (7816-4: both fields in the same form)
    ((0x00, 0xA4, 0x02, 0x00, b"\xEF\x05", 0x1000), "00A40200000002EF051000"),
    ((0x00, 0xDA, 0x00, 0x00, bytes(256)), "00DA0000000100" + "00" * 256),
    ((0x00, 0xDA, 0x00, 0x00, bytes(256), 256), "00DA0000000100" + "00" * 256 + "0100"),
])
def test_build_encodings(args, expected):
    assert build(*args).hex().upper() == expected


@settings(max_examples=300, deadline=None)
@given(
    cla=st.integers(0, 255), ins=st.integers(0, 255), p1=st.integers(0, 255), p2=st.integers(0, 255),
    data=st.one_of(st.binary(max_size=300), st.binary(min_size=65530, max_size=65535)),
    le=st.one_of(st.none(), st.integers(1, 65536), st.sampled_from([1, 255, 256, 257, 65535, 65536])),
)
def test_build_parse_round_trip(cla, ins, p1, p2, data, le):
    cmd = parse(build(cla, ins, p1, p2, data, le))
    assert (cmd.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data) == (cla, ins, p1, p2, data)
    assert cmd.le_present == (le is not None)
    assert cmd.case == (1 if not data and le is None else 2 if not data else 3 if le is None else 4)
    assert cmd.extended == (len(data) > 255 or (le is not None and le > 256))
    if le is not None:
        assert cmd.ne == le


@settings(max_examples=1000, deadline=None)
@given(raw=st.one_of(
    st.binary(max_size=270),
    # mostly well-formed: header, then a length byte near the real data length
    st.tuples(st.binary(min_size=4, max_size=4), st.integers(0, 3), st.binary(max_size=20), st.binary(max_size=3))
    .map(lambda t: t[0] + bytes((len(t[2]) + t[1] - 1 & 0xFF,)) + t[2] + t[3]),
))
def test_parse_arbitrary_bytes_decodes_exactly_or_fails_with_6700(raw):
    try:
        cmd = parse(raw)
    except CardError as error:
        assert error.sw == 0x6700
        return
    nc = len(cmd.data)
    # the decoded case accounts for every byte of the input (7816-4 §5.1 length rules)
    expected_len = {
        (1, False): 4, (2, False): 5, (3, False): 5 + nc, (4, False): 6 + nc,
        (2, True): 7, (3, True): 7 + nc, (4, True): 9 + nc,
    }[cmd.case, cmd.extended]
    assert len(raw) == expected_len
    start = 7 if cmd.extended else 5
    assert cmd.data == raw[start:start + nc]
    assert (nc > 0) == (cmd.case in (3, 4))
    assert cmd.le_present == (cmd.case in (2, 4))


# -- through the card ----------------------------------------------------------------------


@pytest.mark.parametrize("hexstr", MALFORMED)
def test_transmit_malformed_gives_6700_from_mf(reader, hexstr):
    assert tx(reader, hexstr) == "6700"


@pytest.mark.parametrize("hexstr", MALFORMED + [
    "0020000003123456FF00",  # VERIFY: Lc = 3 then 2 more bytes
    "805E010007123456FF6543",  # CHANGE PIN: Lc = 7, 6 data bytes
])
def test_transmit_malformed_gives_6700_inside_ssse(reader, hexstr):
    assert tx(reader, SELECT_SSSE) == FCI_SSSE + "9000"
    assert tx(reader, hexstr) == "6700"
    # a malformed APDU changes nothing: the application is still selected, the PIN untouched
    assert tx(reader, "00200000") == "63C6"


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\x00\xB2", b"\x00\xB2\x01", b"\xFF\xFF\xFF"])
def test_fewer_than_four_bytes_never_raise(reader, raw):
    assert reader.transmit(raw) == b"\x67\x00"


_FUZZ_CARD = Card.from_profile(date=CARD_DATE)


@settings(max_examples=500, deadline=None)
@given(
    selected=st.booleans(),
    raw=st.one_of(
        st.binary(max_size=40),
        # known CLA/INS pairs with arbitrary P1 P2 and body, to reach the handlers
        st.tuples(st.sampled_from(["00A4", "00B2", "0020", "805E", "00C0", "0084", "0082", "0088", "80CA",
                                   "841E", "8424", "00DC", "00D6", "00B0"]), st.binary(max_size=30))
        .map(lambda t: bytes.fromhex(t[0]) + t[1]),
    ),
)
def test_transmit_arbitrary_bytes_never_raises_nor_6F00(selected, raw):
    # 6F00 must never be seen in practice except as GET RESPONSE's answer when nothing waits
    # (P5 §6.6.4; docs/card/commands.md §0, §2); any input gets a status word
    card = _FUZZ_CARD
    card.power_on(1)
    if selected:
        card.transmit(bytes.fromhex(SELECT_SSSE))
    response = card.transmit(raw)
    assert len(response) >= 2
    if response[-2:] == b"\x6F\x00":
        assert raw[:2] == b"\x00\xC0", raw.hex()


def test_select_in_every_case_and_form(reader):
    # case 3 short, case 4 short, case 3 extended, case 4 extended: same FCI + 9000 on T=1
    name = SSSE_NAME.hex().upper()
    assert tx(reader, "00A404000F" + name) == FCI_SSSE + "9000"
    assert tx(reader, "00A404000F" + name + "00") == FCI_SSSE + "9000"
    assert tx(reader, "00A4040000000F" + name) == FCI_SSSE + "9000"
    assert tx(reader, "00A4040000000F" + name + "0000") == FCI_SSSE + "9000"


def test_read_record_case_2_short_and_extended(reader):
    tx(reader, SELECT_SSSE)
    assert tx(reader, "00B2012C00") == "6C12"  # Le 00: the length (P5 §6.10.4, docs/decisions.md S12)
    assert tx(reader, "00B2012C12") == EF05_01 + "9000"
    assert tx(reader, "00B2012C000012") == EF05_01 + "9000"  # extended Le = exact length
    assert tx(reader, "00B2012C000011") == "6C12"  # extended Le one short


@pytest.mark.parametrize("hexstr", ["00B2012C0100", "00B2012C010000", "00B2012C00000100"])
def test_read_record_with_data_field_is_wrong_length(reader, hexstr):
    # READ RECORD has no command data (ISO 7816-4 READ RECORD: Lc field absent) -> 6700
    tx(reader, SELECT_SSSE)
    assert tx(reader, hexstr) == "6700"


# -- unknown INS / CLA ---------------------------------------------------------------------


@pytest.mark.parametrize("hexstr", [
    "0002000000",  # no such interindustry INS
    "00FF000000",
    "0050000000",
    "80B2012C00",  # READ RECORD exists only in class 00
    "84B2012C00",
    "8020000003123456",  # VERIFY exists only in class 00
    "005E010007123456FF654321",  # CHANGE PIN exists only in class 80
])
@pytest.mark.parametrize("in_ssse", [False, True])
def test_unknown_ins_6D00(reader, hexstr, in_ssse):
    if in_ssse:
        tx(reader, SELECT_SSSE)
    assert tx(reader, hexstr) == "6D00"


@pytest.mark.parametrize("cla", ["10", "FF", "20", "A0", "C0"])
@pytest.mark.parametrize("rest", ["A404000F" + DDF_NAME, "B2012C00", "C0000000", "20000003123456"])
@pytest.mark.parametrize("in_ssse", [False, True])
def test_unknown_cla_6E00(reader, cla, rest, in_ssse):
    if in_ssse:
        tx(reader, SELECT_SSSE)
    assert tx(reader, cla + rest) == "6E00"


def test_unknown_cla_does_not_select(reader):
    assert tx(reader, "10A404000F" + DDF_NAME) == "6E00"
    # still at the MF: an SSSE-only command is not known there
    assert tx(reader, "805E010007123456FF654321") == "6D00"


# -- wrong P1/P2, wrong data -----------------------------------------------------------------


@pytest.mark.parametrize("hexstr", [
    "00A405000F" + DDF_NAME,  # SELECT P1 = 05: no such selection method
    "00A4FF0000",
    "00A404010F" + DDF_NAME,  # P2 bit 1 set (RFU)
    "00A404080F" + DDF_NAME,  # P2 = 08: response option 10 is RFU
    "00A404100F" + DDF_NAME,  # P2 high nibble RFU
    "00A4040D0F" + DDF_NAME,
    "00B2012F00",  # READ RECORD P2 mode 111: not defined (P5 table 32)
    "00B201FC00",  # SFI 11111 is RFU (ISO 7816-4 READ RECORD P2)
    "00C0010000",  # GET RESPONSE P1P2 must be 0000
])
def test_wrong_p1p2_6A86(reader, hexstr):
    tx(reader, SELECT_SSSE)
    assert tx(reader, hexstr) == "6A86"


@pytest.mark.parametrize("hexstr", [
    "0020010003123456",  # VERIFY P1 must be 00
    "805E010107123456FF654321",
])
def test_wrong_p1p2_in_pin_commands_6A86(reader, hexstr):
    tx(reader, SELECT_SSSE)
    assert tx(reader, hexstr) == "6A86"
    assert tx(reader, "00200000") == "63C6"  # no try consumed


@pytest.mark.parametrize("hexstr", [
    # CHANGE PIN lists 6A80 (P5 §6.3); PINs are cn, only the last nibble may be F (P5 §6.3.1)
    "805E010003123456",  # CHANGE PIN without the FF separator
    "805E0100071234AAFF654321",  # CHANGE PIN, old PIN not cn
    "805E010007123456FF6543AA",  # CHANGE PIN, new PIN not cn
    "805E010007123456FF1F3456",  # F pad in the middle of the new PIN
])
def test_wrong_data_6A80(reader, hexstr):
    tx(reader, SELECT_SSSE)
    assert tx(reader, hexstr) == "6A80"
    assert tx(reader, "00200000") == "63C6"  # a malformed PIN costs no try
    assert tx(reader, "0020000003123456") == "9000"  # and changes nothing


# -- GET RESPONSE (P5 §6.6; docs/card/commands.md §0) -----------------------------------------------


@pytest.mark.parametrize("apdu", ["00C0000000", "00C0000008", "00C000001E"])
@pytest.mark.parametrize("fixture", ["reader", "t0reader"])
def test_get_response_with_nothing_waiting_6F00(request, fixture, apdu):
    r = request.getfixturevalue(fixture)
    assert tx(r, apdu) == "6F00"
    assert tx(r, "00A4040C0F" + DDF_NAME) == "9000"
    assert tx(r, apdu) == "6F00"
    assert tx(r, "00B2012C12") == EF05_01 + "9000"  # a case 2 answer leaves nothing behind
    assert tx(r, apdu) == "6F00"


def test_get_response_after_delivery_6F00(t0reader):
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, "00C000001E") == FCI_SSSE + "9000"
    assert tx(t0reader, "00C000001E") == "6F00"


def test_get_response_le_00_with_data_waiting_6Cxx(t0reader):
    # P5 §6.6.4 (docs/card/commands.md §0): Le 00 is answered 6Cxx when data is waiting
    assert tx(t0reader, SELECT_SSSE) == "611E"
    assert tx(t0reader, "00C0000000") == "6C1E"
    assert tx(t0reader, "00C000001E") == FCI_SSSE + "9000"
