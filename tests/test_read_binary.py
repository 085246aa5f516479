"""READ BINARY / UPDATE BINARY on the transparent EFs EF07 (fingerprint, 768 bytes) and EF08
(photo, 4096 bytes): P5 §6.9, §6.12; V2 tables 3 and 9 (docs/card/files.md §1.1, §2.3, §3).

Read control RKSSSE (`0A`), write control UKSSSE (`04`), both by external
authentication (P7 §7.2-7.3); CLA `04` adds a MAC under the STK process key (P10
STK row, P7 §7.4). Cryptograms come from tests/oracle.py through `helpers.Session`.
"""

import pytest
from helpers import SELECT_EF05, SELECT_EF07, VERIFY_OK, Session, h

from chip.kernel.store import Binary

FINGERPRINT = bytes((i * 7 + 3) & 0xFF for i in range(0x300))  # a whole EF07
EF07_SIZE, EF08_SIZE = 0x300, 0x1000


def write_ef07(s: Session, data: bytes = FINGERPRINT) -> None:
    """UPDATE BINARY by SFI 7 / 15-bit offsets in pieces of at most 255 bytes, after UKSSSE."""
    assert s.external_auth("ssse_uk") == "9000"
    assert s.tx(SELECT_EF07) == "9000"
    for offset in range(0, len(data), 0xF0):
        piece = data[offset:offset + 0xF0]
        assert s.tx(f"00D6{offset >> 8:02X}{offset & 0xFF:02X}{len(piece):02X}{h(piece)}") == "9000", offset


@pytest.fixture
def filled(s):
    """EF07 written in full, then RKSSSE authenticated: everything is readable."""
    write_ef07(s)
    assert s.external_auth("ssse_rk") == "9000"
    return s


# -- READ BINARY (P5 §6.9) --------------------------------------------------------------------------


def test_by_sfi_with_offset(filled):
    # P1 = 100x xxxx: SFI in the low 5 bits, P2 the offset
    assert filled.tx("00B0870010") == h(FINGERPRINT[:16]) + "9000"
    assert filled.tx("00B087F004") == h(FINGERPRINT[0xF0:0xF4]) + "9000"


def test_current_ef_with_15_bit_offset(filled):
    # P1 = 0xxx xxxx: offset = P1 * 256 + P2 in the current EF
    assert filled.tx(SELECT_EF07) == "9000"
    assert filled.tx("00B0010A05") == h(FINGERPRINT[0x10A:0x10F]) + "9000"
    assert filled.tx("00B002FF01") == h(FINGERPRINT[0x2FF:]) + "9000"


def test_le_00_reads_256_bytes_or_to_the_end(filled):
    assert filled.tx(SELECT_EF07) == "9000"
    assert filled.tx("00B0010000") == h(FINGERPRINT[0x100:0x200]) + "9000"
    assert filled.tx("00B0028000") == h(FINGERPRINT[0x280:]) + "9000"


def test_le_past_the_end_is_6Cxx(filled):
    # P5 table 30: 6Cxx (wrong Le, xx what is there); 6282 is not a P5 status word
    assert filled.tx(SELECT_EF07) == "9000"
    assert filled.tx("00B002F020") == "6C10"
    assert filled.tx("00B002F010") == h(FINGERPRINT[0x2F0:]) + "9000"


def test_offset_at_or_past_the_end_is_6B00(filled):
    assert filled.tx(SELECT_EF07) == "9000"
    assert filled.tx("00B0030001") == "6B00"
    assert filled.tx("00B0040000") == "6B00"


def test_needs_rkssse(s):
    write_ef07(s)
    s.power_cycle()
    s.select()
    assert s.tx("00B0870010") == "6982"
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx("00B0870010") == "6982"  # no PIN alternative (V2 table 3)
    assert s.external_auth("ssse_uk") == "9000"
    assert s.tx("00B0870010") == "6982"  # the update key does not grant reading
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx("00B0870010") == h(FINGERPRINT[:16]) + "9000"


@pytest.mark.parametrize("sfi, size", [(7, EF07_SIZE), (8, EF08_SIZE)])
def test_preset_file_has_its_declared_size(s, sfi, size):
    # V2 table 3 (docs/card/files.md §2.3): EF07 is 0x300 bytes, EF08 0x1000, "from offset 0000" (preset:
    # space and size fixed, content undefined). A transparent EF of that size is read anywhere inside
    # it; only an offset at or past its size is 6B00.
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx(f"00A4020002EF0{sfi}") == "9000"
    last = size - 1
    answer = s.tx(f"00B0{last >> 8:02X}{last & 0xFF:02X}01")
    assert len(answer) == 6 and answer[-4:] == "9000", answer
    answer = s.tx(f"00B0{0x80 | sfi:02X}0000")
    assert len(answer) == 2 * 256 + 4 and answer[-4:] == "9000", answer
    assert s.tx(f"00B0{size >> 8:02X}{size & 0xFF:02X}01") == "6B00"


@pytest.mark.parametrize("apdu", ["00B0850000", "00B0860000"])
def test_read_binary_on_a_record_ef_6981(s, apdu):
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx(apdu) == "6981"


def test_read_binary_errors(s):
    assert s.tx("00B0000000") == "6986"  # no current EF right after selecting the DDF
    assert s.tx("00B0890000") == "6A82"  # no EF with SFI 9 in the SSSE
    assert s.tx(SELECT_EF05) == "9000"
    assert s.tx("00B0000000") == "6981"  # EF05 is a record file


# -- UPDATE BINARY (P5 §6.12) -----------------------------------------------------------------------------


def test_update_binary_needs_ukssse(s):
    assert s.tx("00D6870004" "01020304") == "6982"
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx("00D6870004" "01020304") == "6982"


def test_update_binary_by_sfi_then_read_back(s):
    assert s.external_auth("ssse_uk") == "9000"
    assert s.tx("00D6871004" "A1A2A3A4") == "9000"  # SFI 7, offset 0x10
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx("00B0871004") == "A1A2A3A4" "9000"
    s.power_cycle()
    s.select()
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx("00B0871004") == "A1A2A3A4" "9000"  # persistent


def test_update_binary_past_the_end_6B00(s):
    assert s.external_auth("ssse_uk") == "9000"
    assert s.tx(SELECT_EF07) == "9000"
    assert s.tx("00D6030001" "00") == "6B00"


def test_update_binary_with_mac_cla_04(s):
    # CLA 04: MAC4 over 04 D6 P1 P2 Lc || data under the STK process key of the last challenge
    assert s.external_auth("ssse_uk") == "9000"
    apdu = s.mac_apdu("04D68700", bytes.fromhex("B1B2B3B4"))
    assert apdu[8:10] == "08"
    assert s.tx(apdu) == "9000"
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx("00B0870004") == "B1B2B3B4" "9000"


def test_update_binary_with_wrong_mac_6988_writes_nothing(s):
    write_ef07(s)
    assert s.tx(s.mac_apdu("04D68700", bytes.fromhex("B1B2B3B4"), corrupt=True)) == "6988"
    assert s.external_auth("ssse_rk") == "9000"
    assert s.tx("00B0870004") == h(FINGERPRINT[:4]) + "9000"


def test_update_binary_cla_04_without_mac_6987(s):
    # P7 §7.4: a missing MAC is 6987
    assert s.external_auth("ssse_uk") == "9000"
    s.challenge()
    assert s.tx("04D68700") == "6987"


def test_binary_object_round_trip():
    assert Binary.load(Binary(b"\x01\x02").dump()).data == b"\x01\x02"
