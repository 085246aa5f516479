"""READ BINARY (00 B0) on the transparent EFs EF07/EF08, with content (ISO 7816-4 §11.2.3)."""

import pytest

from chip.store import Binary
from conftest import tx

SELECT_SSSE = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF"
PHOTO = bytes(range(40))


@pytest.fixture
def photo_reader(card, reader):
    card.store.write(card.store["ssse.ef08"], "data", PHOTO)
    card.store.commit()
    assert tx(reader, SELECT_SSSE).endswith("9000")
    assert tx(reader, "0020000003123456") == "9000"
    return reader


def test_by_sfi_with_offset(photo_reader):
    # P1 = 80 | SFI 8, P2 = offset
    assert tx(photo_reader, "00B0880010") == PHOTO[:16].hex().upper() + "9000"
    assert tx(photo_reader, "00B0882004") == PHOTO[32:36].hex().upper() + "9000"


def test_current_ef_with_15_bit_offset(photo_reader):
    assert tx(photo_reader, "00A4020002EF08").endswith("9000")
    assert tx(photo_reader, "00B0000A05") == PHOTO[10:15].hex().upper() + "9000"


def test_explicit_le_past_the_end_gives_what_is_there_and_6282(photo_reader):
    assert tx(photo_reader, "00B0882010") == PHOTO[32:].hex().upper() + "6282"


def test_le_00_gives_all_that_is_there_and_9000(photo_reader):
    assert tx(photo_reader, "00B0880000") == PHOTO.hex().upper() + "9000"
    assert tx(photo_reader, "00B0881400") == PHOTO[20:].hex().upper() + "9000"


def test_offset_at_or_past_the_end_is_6b00(photo_reader):
    assert tx(photo_reader, "00B0882800") == "6B00"
    assert tx(photo_reader, "00B0883000") == "6B00"


def test_empty_file_le_00_is_9000_with_no_data(reader):
    tx(reader, SELECT_SSSE)
    tx(reader, "0020000003123456")
    assert tx(reader, "00B0870000") == "9000"
    assert tx(reader, "00B0870004") == "6282"


def test_binary_object_round_trip():
    assert Binary.load(Binary(b"\x01\x02").dump()).data == b"\x01\x02"
