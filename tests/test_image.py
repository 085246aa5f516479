"""The card image: personalise into a file, reopen, persistence, damage detection, atomic commits."""

import os
import random
import zlib

import pytest

import chip
from chip import Card, ImageError, PowerLoss
from chip.image import FORMAT_VERSION, IMAGE, MAGIC, cut_power_at
from chip.pin import pack
from reader import SimReader
from ssse_helpers import Terminal, read_record

SELECT_SSSE = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
VERIFY_RIGHT = bytes.fromhex("0020000003123456")
VERIFY_WRONG = bytes.fromhex("0020000003999999")
VERIFY_NEW = bytes.fromhex("0020000003654321")
CHANGE_PIN = bytes.fromhex("805E010007123456FF654321")
SW_OK = b"\x90\x00"
SW_MEMORY_FAILURE = b"\x65\x81"
GENERATION = slice(10, 18)  # magic (8) + version (2) + generation (8), inside the CRC-covered body

# READ RECORD with the records' exact lengths (Le 00 asks for them with 6Cxx, P5 §6.10.4)
EF05_READS = [read_record(n, 5, 4, le) for n, le in enumerate((18, 3, 6, 14, 6, 6, 11), 1)]  # by number, SFI 5
EF06_READS = [read_record(tag, 6, 0, le) for tag, le in  # by identifier, SFI 6
              ((0x08, 20), (0x09, 32), (0x4E, 22), (0x0A, 3), (0x0B, 3), (0x0C, 5), (0x0D, 6))]
SELECT_DF04 = bytes.fromhex("00A4040006D15600000503")
READ_DF04_EF05_84 = read_record(0x84, 5, 0, 5)  # DF04 EF05: the PIN or RK1DF04 (V2 table 7)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "card.img")


@pytest.fixture
def card(path):
    return Card.from_profile(state=path)


def session(card) -> SimReader:
    reader = SimReader(card)
    reader.reset()
    assert reader.transmit(SELECT_SSSE)[-2:] == SW_OK
    return reader


def pin_protected_read(reader) -> bytes:
    """A record only a verified PIN (or RK1DF04) opens: DF04 EF05 item 84."""
    assert reader.transmit(SELECT_DF04)[-2:] == SW_OK
    return reader.transmit(READ_DF04_EF05_84)


def snapshot(card) -> dict:
    return {name: obj.dump() for name, obj in card.store.objects.items()}


def parsed(path):
    with open(path, "rb") as f:
        return IMAGE.parse(f.read())


def generation(path) -> int:
    return parsed(path).body.value.generation


def image_error(path) -> str:
    with pytest.raises(ImageError) as excinfo:
        Card.open(path)
    assert excinfo.type is ImageError
    message = str(excinfo.value)
    assert message and "\n" not in message
    assert excinfo.value.__cause__ is None
    return message


# -- writing and reopening ---------------------------------------------------------------------

def test_from_profile_writes_an_image(card, path):
    assert card.path == path
    assert os.listdir(os.path.dirname(path)) == ["card.img"]  # no .tmp left behind
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"SSCARDIM" == MAGIC
    image = IMAGE.parse(data)
    body = image.body.value
    assert body.magic == b"SSCARDIM"
    assert body.version == FORMAT_VERSION == 1
    assert body.generation == 1
    assert image.crc32 == zlib.crc32(image.body.data)
    assert image.body.data == data[:-4]  # the CRC-32 covers the header (magic, version, generation) too
    assert int.from_bytes(data[-4:], "big") == zlib.crc32(data[:-4])
    objects = {obj.name: obj for obj in body.objects}
    assert objects["ssse.pin"].kind == "pin"
    pin = objects["ssse.pin"].body
    assert (pin.value, pin.limit, pin.tries) == (pack("123456"), 6, 6)
    assert list(objects) == list(card.store.objects)


def test_reopen_has_the_same_state(card, path):
    reopened = Card.open(path)
    assert reopened.path == path
    assert snapshot(reopened) == snapshot(card)
    pin = reopened.store["ssse.pin"]
    assert (pin.value, pin.limit, pin.tries) == (pack("123456"), 6, 6)
    assert reopened.store.backend.generation == 1


def test_reopen_answers_the_same_records(card, path):
    answers = []
    for c in (card, Card.open(path)):
        reader = session(c)
        free = [reader.transmit(apdu) for apdu in EF05_READS]
        assert all(a[-2:] == SW_OK for a in free)  # EF05 is free (V2 table 3)
        assert [reader.transmit(apdu) for apdu in EF06_READS] == [b"\x69\x82"] * 7
        assert reader.transmit(VERIFY_RIGHT) == SW_OK
        assert reader.transmit(EF06_READS[0]) == b"\x69\x82"  # a 3.00 card opens EF06 to RKSSSE only
        Terminal(c, reader.transmit).authenticate("ssse_rk")
        protected = [reader.transmit(apdu) for apdu in EF06_READS]
        assert all(a[-2:] == SW_OK for a in protected)
        assert pin_protected_read(reader) == bytes.fromhex("8403110100") + SW_OK
        answers.append(free + protected)
    assert answers[0] == answers[1]
    assert answers[0][0] == bytes.fromhex("0110110100D1560000050000000100000000") + SW_OK
    assert answers[0][7] == b"\x08\x12110101199003071233" + SW_OK
    assert answers[0][7 + 1] == b"\x09\x1e" + "李华".encode("gbk") + bytes(26) + SW_OK


def test_reopening_writes_nothing(card, path):
    with open(path, "rb") as f:
        before = f.read()
    reader = session(Card.open(path))
    for apdu in EF05_READS:
        reader.transmit(apdu)
    with open(path, "rb") as f:
        assert f.read() == before
    assert os.listdir(os.path.dirname(path)) == ["card.img"]


def test_wrong_pins_persist_across_reopen(card, path):
    assert session(card).transmit(VERIFY_WRONG) == b"\x63\xC5"
    assert Card.open(path).store["ssse.pin"].tries == 5
    assert session(Card.open(path)).transmit(VERIFY_WRONG) == b"\x63\xC4"
    reopened = Card.open(path)
    assert reopened.store["ssse.pin"].tries == 4
    reader = session(reopened)
    assert reader.transmit(bytes.fromhex("00200000")) == b"\x63\xC4"  # status only: no try spent
    assert reader.transmit(VERIFY_RIGHT) == SW_OK
    assert Card.open(path).store["ssse.pin"].tries == 6


def test_blocked_pin_persists(card, path):
    reader = session(card)
    for left in range(5, -1, -1):
        assert reader.transmit(VERIFY_WRONG) == bytes((0x63, 0xC0 | left))
    reopened = Card.open(path)
    assert reopened.store["ssse.pin"].tries == 0
    assert session(reopened).transmit(VERIFY_RIGHT) == b"\x69\x83"


def test_change_pin_persists(card, path):
    reader = session(card)
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC5"
    assert reader.transmit(CHANGE_PIN) == SW_OK
    pin = Card.open(path).store["ssse.pin"]
    assert (pin.value, pin.tries) == (pack("654321"), 6)
    reader = session(Card.open(path))
    assert reader.transmit(VERIFY_RIGHT) == b"\x63\xC5"
    assert reader.transmit(VERIFY_NEW) == SW_OK


def test_generation_grows_with_each_commit(card, path):
    assert generation(path) == 1
    reader = session(card)
    assert generation(path) == 1  # SELECT writes nothing
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC5"
    assert generation(path) == 2  # one commit: the decrement
    assert reader.transmit(VERIFY_RIGHT) == SW_OK
    assert generation(path) == 4  # the decrement, then the restore
    assert reader.transmit(CHANGE_PIN) == SW_OK
    assert generation(path) == 6
    reopened = Card.open(path)
    assert reopened.store.backend.generation == 6
    assert session(reopened).transmit(VERIFY_WRONG) == b"\x63\xC5"
    assert generation(path) == 7


def test_generation_grows_after_a_cut_that_landed(card, path):
    reader = session(card)
    card.store.backend.write_point = cut_power_at(5)  # fsync-folder of the decrement: the new image has landed
    with pytest.raises(PowerLoss) as excinfo:
        reader.transmit(VERIFY_WRONG)
    assert (excinfo.value.point, excinfo.value.landed) == ("fsync-folder", True)
    assert generation(path) == 2
    card.store.backend.write_point = None
    reader = session(card)
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC4"
    assert generation(path) == 3


# -- images that cannot be used ---------------------------------------------------------------------

def test_open_missing_file(tmp_path):
    path = str(tmp_path / "absent.img")
    message = image_error(path)
    assert message.startswith(f"{path}: no such card image")


def test_open_a_folder(tmp_path):
    message = image_error(str(tmp_path))
    assert message.startswith(f"{tmp_path}: cannot read card image")


@pytest.mark.parametrize("content", [b"", b"hello, world\n", b"SSCARDI", random.Random(7).randbytes(600)],
                         ids=["empty", "text", "short-magic", "random"])
def test_open_garbage(path, content):
    with open(path, "wb") as f:
        f.write(content)
    assert image_error(path) == f"{path}: not an sscard card image (bad magic)"


def test_open_truncated_image_every_length(card, path):
    with open(path, "rb") as f:
        good = f.read()
    for length in range(len(good)):
        with open(path, "wb") as f:
            f.write(good[:length])
        message = image_error(path)
        assert message.startswith(f"{path}: "), length
        if length >= len(MAGIC):
            assert message.startswith(f"{path}: damaged card image ("), length


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_open_image_with_one_flipped_byte(card, path, mask):
    with open(path, "rb") as f:
        good = f.read()
    for i in range(len(good)):  # the generation too: the CRC-32 covers the header
        damaged = bytearray(good)
        damaged[i] ^= mask
        with open(path, "wb") as f:
            f.write(damaged)
        message = image_error(path)
        assert message.startswith(f"{path}: "), i
        assert "bad magic" in message if i < 8 else "damaged card image (" in message, (i, message)


@pytest.mark.parametrize("offset", [GENERATION.start, GENERATION.stop - 1])
def test_open_image_with_flipped_generation_byte(card, path, offset):
    with open(path, "rb") as f:
        damaged = bytearray(f.read())
    damaged[offset] ^= 0x01
    with open(path, "wb") as f:
        f.write(damaged)
    assert image_error(path).startswith(f"{path}: damaged card image (")


def test_open_image_with_a_trailing_byte(card, path):
    with open(path, "rb") as f:
        good = f.read()
    for extra in (b"\x00", b"\xFF"):
        with open(path, "wb") as f:
            f.write(good + extra)
        assert image_error(path).startswith(f"{path}: damaged card image ("), extra
    with open(path, "wb") as f:
        f.write(good)
    assert snapshot(Card.open(path)) == snapshot(card)


def test_open_image_of_another_format_version(card, path):
    with open(path, "rb") as f:
        damaged = bytearray(f.read())
    damaged[8:10] = (FORMAT_VERSION + 1).to_bytes(2, "big")
    with open(path, "wb") as f:
        f.write(damaged)
    assert image_error(path).startswith(f"{path}: damaged card image (")


def test_open_image_with_unknown_object_kind(card, path):
    image = parsed(path)
    items = [{"name": o.name, "kind": o.kind, "body": o.body} for o in image.body.value.objects]
    items.append({"name": "future.thing", "kind": "hologram", "body": b"\x01\x02"})
    with open(path, "wb") as f:
        f.write(IMAGE.build({"body": {"value": {"generation": 9, "objects": items}}}))
    assert image_error(path) == f"{path}: object 'future.thing' has unknown kind 'hologram' (newer sscard?)"


def test_image_built_with_the_layout_opens(card, path):
    """IMAGE is the whole layout: rebuilding what it parsed gives the same bytes."""
    with open(path, "rb") as f:
        data = f.read()
    image = IMAGE.parse(data)
    body = image.body.value
    items = [{"name": o.name, "kind": o.kind, "body": o.body} for o in body.objects]
    assert IMAGE.build({"body": {"value": {"generation": body.generation, "objects": items}}}) == data


# -- the temporary file ------------------------------------------------------------------------------

@pytest.mark.parametrize("leftover", ["garbage", "newer-image"])
def test_leftover_tmp_is_ignored_then_replaced(card, path, leftover):
    tmp = path + ".tmp"
    if leftover == "garbage":
        with open(tmp, "wb") as f:
            f.write(b"SSCARDIM half an image")
    else:  # a complete newer image that never got renamed (power cut at the rename)
        card.store.backend.write_point = cut_power_at(4)
        with pytest.raises(PowerLoss) as excinfo:
            session(card).transmit(VERIFY_WRONG)
        assert (excinfo.value.point, excinfo.value.landed) == ("rename", False)
        assert generation(tmp) == 2 and Card.open(tmp).store["ssse.pin"].tries == 5
    assert os.path.exists(tmp)
    reopened = Card.open(path)
    assert reopened.store["ssse.pin"].tries == 6
    assert reopened.store.backend.generation == 1
    assert session(reopened).transmit(VERIFY_WRONG) == b"\x63\xC5"
    assert not os.path.exists(tmp)
    assert generation(path) == 2
    assert Card.open(path).store["ssse.pin"].tries == 5


def test_personalise_over_an_existing_image(card, path):
    assert session(card).transmit(VERIFY_WRONG) == b"\x63\xC5"
    fresh = Card.from_profile(state=path)
    assert fresh.store["ssse.pin"].tries == 6
    assert Card.open(path).store["ssse.pin"].tries == 6
    assert not os.path.exists(path + ".tmp")


# -- storage failure: 6581 and nothing changes ---------------------------------------------------------

def _failing_replace(calls_that_work: int):
    real = os.replace
    calls = []

    def replace(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) > calls_that_work:
            raise OSError(28, "No space left on device")
        return real(src, dst, *args, **kwargs)

    replace.calls = calls
    return replace


@pytest.mark.parametrize("apdu, wrong_before", [
    (VERIFY_WRONG, 0), (VERIFY_RIGHT, 0), (VERIFY_RIGHT, 1), (CHANGE_PIN, 0), (CHANGE_PIN, 1)],
    ids=["verify-wrong", "verify-right", "verify-right-after-wrong", "change-pin", "change-pin-after-wrong"])
def test_storage_failure_answers_6581_and_keeps_the_old_state(card, path, monkeypatch, apdu, wrong_before):
    reader = session(card)
    for _ in range(wrong_before):
        reader.transmit(VERIFY_WRONG)
    before_memory = snapshot(card)
    with open(path, "rb") as f:
        before_file = f.read()
    replace = _failing_replace(0)
    monkeypatch.setattr(os, "replace", replace)
    assert reader.transmit(apdu) == SW_MEMORY_FAILURE
    assert replace.calls == [path]
    assert snapshot(card) == before_memory
    assert card.store.journal == []
    monkeypatch.undo()
    with open(path, "rb") as f:
        assert f.read() == before_file
    assert snapshot(Card.open(path)) == before_memory
    # the PIN was not verified: protected records stay closed in this session
    assert pin_protected_read(reader) == b"\x69\x82"
    # and the card goes on working once the storage does
    tries = card.store["ssse.pin"].tries
    assert reader.transmit(VERIFY_WRONG) == bytes((0x63, 0xC0 | tries - 1))
    assert Card.open(path).store["ssse.pin"].tries == tries - 1


@pytest.mark.parametrize("apdu", [VERIFY_RIGHT, CHANGE_PIN], ids=["verify-right", "change-pin"])
def test_storage_failure_on_the_restore_keeps_the_durable_decrement(card, path, monkeypatch, apdu):
    """The decrement commits, the restore fails: memory and file agree on tries - 1 and 6581 is answered."""
    reader = session(card)
    assert reader.transmit(VERIFY_WRONG) == b"\x63\xC5"
    replace = _failing_replace(1)
    monkeypatch.setattr(os, "replace", replace)
    assert reader.transmit(apdu) == SW_MEMORY_FAILURE
    assert replace.calls == [path, path]
    monkeypatch.undo()
    for c in (card, Card.open(path)):
        pin = c.store["ssse.pin"]
        assert (pin.value, pin.tries) == (pack("123456"), 4)


@pytest.mark.parametrize("apdu", [VERIFY_RIGHT, CHANGE_PIN], ids=["verify-right", "change-pin"])
def test_storage_failure_on_the_restore_leaves_pin_unverified(card, path, monkeypatch, apdu):
    reader = session(card)
    monkeypatch.setattr(os, "replace", _failing_replace(1))
    assert reader.transmit(apdu) == SW_MEMORY_FAILURE
    monkeypatch.undo()
    assert pin_protected_read(reader) == b"\x69\x82"


def test_image_error_is_exported():
    assert chip.ImageError is ImageError
