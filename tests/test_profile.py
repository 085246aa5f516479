"""Card profiles: loading, field validation with one-line errors, and the name split (docs/decisions.md §2.1)."""

import copy
import dataclasses
import datetime
import json
import tomllib
from pathlib import Path

import pytest
from helpers import DEFAULT_TOML, PROFILES_DIR, Session
from ssse_helpers import SELECT_SSSE, verify

import chip
from chip import Card, ProfileError, load_profile
from chip.personalization.idnumber import check_character
from chip.personalization.profile import parse_profile
from reader import SimReader

SRC = "under-test.toml"
VERIFY_123456 = verify("123456")

DEFAULT_ID = "110101199003071233"
DELETE = object()


def default_data() -> dict:
    with open(DEFAULT_TOML, "rb") as f:
        return tomllib.load(f)


def changed(changes: dict) -> dict:
    """The default profile's data with `{"table.field": value}` changes (DELETE removes the field)."""
    data = copy.deepcopy(default_data())
    for field, value in changes.items():
        table, _, key = field.partition(".")
        if not key:
            data[table] = value
        elif value is DELETE:
            del data[table][key]
        else:
            data[table][key] = value
    return data


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, datetime.date)):
        return value.isoformat() if isinstance(value, datetime.date) else str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    raise TypeError(value)


def dump_toml(data: dict) -> str:
    lines = []
    for table, fields in data.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def write_profile(tmp_path, changes: dict, name="holder.toml") -> Path:
    data = changed(changes)
    path = tmp_path / name
    path.write_text(dump_toml(data), encoding="utf-8")
    with open(path, "rb") as f:
        assert tomllib.load(f) == data  # the little writer round-trips
    return path


def with_check(first17: str) -> str:
    return first17 + check_character(first17)


def one_line_error(excinfo, source: str, field: str) -> str:
    message = str(excinfo.value)
    assert excinfo.type is ProfileError
    assert "\n" not in message
    assert message.startswith(f"{source}: {field}: "), message
    return message


# -- the shipped default ------------------------------------------------------------------

def test_default_check_character_is_right():
    assert check_character(DEFAULT_ID[:17]) == "3"


def test_load_default():
    profile = load_profile("default")
    assert profile.name == "default"
    assert profile.source == str(DEFAULT_TOML)
    assert profile.holder_name == "李华"
    assert profile.id_number == DEFAULT_ID
    assert profile.gender == "1"
    assert profile.ethnicity == 1
    assert profile.birthplace == "110101"
    assert profile.birth_date == datetime.date(1990, 3, 7)
    assert profile.card_number == "T00000001"
    assert profile.region_code == "110100"
    assert profile.serial == bytes.fromhex("00000001")
    assert profile.auth_code == bytes(4)
    # V2 table 12: issuer identification 9156000002 || issuing region || initialiser's region || sequence
    assert profile.institution == bytes.fromhex("915600000211010011010001")
    # P2 table 16: chip supplier, COS, manufacturer, region's first 4 digits, card serial
    assert profile.atr_historical == bytes.fromhex("00815353438699110100000001")
    assert profile.medical_balance == 50000 and profile.medical_start_day == "0101"
    assert profile.issue_date is None and profile.expiry_date is None and profile.validity_years == 10
    assert profile.initial_pin == "123456"
    assert profile.pin_tries == 6
    assert profile.activation_deadline_days == 300
    assert profile.algorithm_flag == 0x03  # SM4 (Sichuan reader spec §10.1)
    # the project's default roots: byte i of a key is its prefix + i
    prefixes = {"ssse_irk": 0x50, "ssse_rk": 0x40, "ssse_stk": 0x60, "ssse_puk": 0x70, "ssse_bk": 0x80,
                "ssse_uk": 0x90, "df04_stk": 0x20, "df04_rk1": 0xE0, "df04_uk1": 0xF0, "df04_uk2": 0x10,
                "df04_dpk": 0xA0, "df04_dlk": 0xB0, "df04_dtk": 0xC0, "df04_dsk": 0xD0}
    assert profile.keys == {
        **{name: bytes(range(prefix, prefix + 16)) for name, prefix in prefixes.items()},
        "fin_imk_ac": bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"),
        "fin_imk_smi": bytes.fromhex("FEDCBA98765432100123456789ABCDEF"),
        "fin_imk_smc": bytes.fromhex("89ABCDEF0123456776543210FEDCBA98"),
    }
    assert profile.dates(datetime.date(2026, 1, 15)) == (datetime.date(2026, 1, 15), datetime.date(2036, 1, 15))


def test_load_by_path_equals_load_by_name():
    assert load_profile(DEFAULT_TOML) == load_profile("default")
    assert load_profile(str(DEFAULT_TOML)) == load_profile("default")


def test_parse_profile_of_default_data_equals_shipped():
    parsed = parse_profile(default_data(), name="default", source=str(DEFAULT_TOML))
    assert parsed == load_profile("default")


# -- every bad field: ProfileError, one line, naming the field ------------------------------

_WRONG_CHECK = next(c for c in "0123456789X" if c != check_character(DEFAULT_ID[:17]))

BAD = [
    # holder.id_number
    ("id-wrong-check-character", {"holder.id_number": DEFAULT_ID[:17] + _WRONG_CHECK}, "holder.id_number",
     f"check character is {_WRONG_CHECK}, GB 11643 gives 3"),
    ("id-birth-date-disagrees", {"holder.id_number": with_check("11010119900308123")}, "holder.id_number",
     "birth date 19900308 disagrees with holder.birth_date 1990-03-07"),
    ("birth-date-disagrees-with-id", {"holder.birth_date": datetime.date(1990, 3, 8)}, "holder.id_number",
     "birth date 19900307 disagrees with holder.birth_date 1990-03-08"),
    ("id-impossible-birth-date", {"holder.id_number": with_check("11010119900230123")}, "holder.id_number",
     "(19900230) are not a valid birth date"),
    ("id-17-characters", {"holder.id_number": DEFAULT_ID[:17]}, "holder.id_number", "got 17"),
    ("id-letter-inside", {"holder.id_number": "1101011990030712A3"}, "holder.id_number",
     "17 digits and a check digit or X"),
    ("id-not-a-string", {"holder.id_number": 110101199003071233}, "holder.id_number", "must be str, got int"),
    # holder.gender
    ("gender-disagrees", {"holder.gender": "female"}, "holder.gender",
     "is female but the ID number's 17th digit says male"),
    ("gender-disagrees-even-digit", {"holder.id_number": with_check("11010119900307124")}, "holder.gender",
     "is male but the ID number's 17th digit says female"),
    ("gender-unknown", {"holder.gender": "m"}, "holder.gender", "got 'm'"),
    # holder.name
    ("name-emoji", {"holder.name": "李😀"}, "holder.name", "'😀' cannot be encoded in GBK"),
    ("name-ext-b", {"holder.name": "李𠀀"}, "holder.name", "'𠀀' cannot be encoded in GBK"),
    ("name-euro-sign", {"holder.name": "李€"}, "holder.name", "'€' cannot be encoded in GBK"),
    ("name-26-chinese", {"holder.name": "李" * 26}, "holder.name", "is 52 bytes in GBK, at most 30+20 fit"),
    ("name-51-ascii", {"holder.name": "A" * 51}, "holder.name", "is 51 bytes in GBK"),
    ("name-blank", {"holder.name": "  "}, "holder.name", "must not be empty"),
    ("name-missing", {"holder.name": DELETE}, "holder.name", "missing"),
    ("name-not-a-string", {"holder.name": 5}, "holder.name", "must be str, got int 5"),
    ("name-nul", {"holder.name": "李\x00华"}, "holder.name", "must not contain control characters"),
    ("name-newline", {"holder.name": "李\n华"}, "holder.name", "must not contain control characters"),
    ("name-del", {"holder.name": "李华\x7f"}, "holder.name", "must not contain control characters"),
    # other holder fields
    ("ethnicity-57", {"holder.ethnicity": 57}, "holder.ethnicity", "got 57"),
    ("ethnicity-0", {"holder.ethnicity": 0}, "holder.ethnicity", "got 0"),
    ("ethnicity-string", {"holder.ethnicity": "1"}, "holder.ethnicity", "must be int, got str '1'"),
    ("birthplace-5-digits", {"holder.birthplace": "11010"}, "holder.birthplace", "must be 6 digits"),
    ("birth-date-bad-string", {"holder.birth_date": "1990-3-7"}, "holder.birth_date", "YYYY-MM-DD"),
    ("birth-date-datetime", {"holder.birth_date": datetime.datetime(1990, 3, 7, 8, 0)}, "holder.birth_date",
     "not a date-time"),
    ("birth-date-int", {"holder.birth_date": 19900307}, "holder.birth_date", "got int"),
    ("birth-date-missing", {"holder.birth_date": DELETE}, "holder.birth_date", "missing"),
    ("id-missing", {"holder.id_number": DELETE}, "holder.id_number", "missing"),
    ("holder-not-a-table", {"holder": "李华"}, "holder", "must be a table"),
    # ssse
    ("pin-3-digits", {"ssse.initial_pin": "123"}, "ssse.initial_pin", "4-16 digits (LD/T 32 P5 §6.14), got '123'"),
    ("pin-17-digits", {"ssse.initial_pin": "12345678901234567"}, "ssse.initial_pin", "got '12345678901234567'"),
    ("pin-letter", {"ssse.initial_pin": "12a4"}, "ssse.initial_pin", "got '12a4'"),
    ("pin-fullwidth", {"ssse.initial_pin": "１２３４５６"}, "ssse.initial_pin", "4-16 digits"),
    ("pin-int", {"ssse.initial_pin": 123456}, "ssse.initial_pin", "must be str, got int"),
    ("pin-tries-0", {"ssse.pin_tries": 0}, "ssse.pin_tries", "must be 1-15 (63Cx holds it in 4 bits), got 0"),
    ("pin-tries-16", {"ssse.pin_tries": 16}, "ssse.pin_tries", "got 16"),
    ("pin-tries-string", {"ssse.pin_tries": "6"}, "ssse.pin_tries", "must be int, got str '6'"),
    ("pin-tries-bool", {"ssse.pin_tries": True}, "ssse.pin_tries", "must be int, got bool True"),
    ("algorithm-aes", {"ssse.algorithm": "aes"}, "ssse.algorithm", "got 'aes'"),
    ("deadline-0", {"ssse.activation_deadline_days": 0}, "ssse.activation_deadline_days", "got 0"),
    # card
    ("expiry-before-issue", {"card.issue_date": datetime.date(2026, 1, 15), "card.expiry_date": datetime.date(2026, 1, 14)},
     "card.expiry_date", "2026-01-14 is not after card.issue_date 2026-01-15"),
    ("expiry-equals-issue", {"card.issue_date": datetime.date(2026, 1, 15), "card.expiry_date": datetime.date(2026, 1, 15)},
     "card.expiry_date", "2026-01-15 is not after"),
    ("issue-date-bad-string", {"card.issue_date": "tomorrow"}, "card.issue_date", "got 'tomorrow'"),
    ("card-number-8", {"card.number": "T0000001"}, "card.number", "got 'T0000001'"),
    ("card-number-missing", {"card.number": DELETE}, "card.number", "missing"),
    ("region-code-letters", {"card.region_code": "11010A"}, "card.region_code", "must be 6 digits"),
    ("region-code-missing", {"card.region_code": DELETE}, "card.region_code", "missing"),
    ("serial-bad-hex", {"card.serial": "000000000G"}, "card.serial", "must be hexadecimal"),
    ("serial-5-bytes", {"card.serial": "0000000001"}, "card.serial", "must be 4 bytes (8 hex digits), got 5"),
    ("auth-code-3-bytes", {"card.auth_code": "000000"}, "card.auth_code", "must be 4 bytes (8 hex digits), got 3"),
    ("institution-not-issuer", {"card.institution": "110100000000000000000001"}, "card.institution",
     "must start with the issuer identification 9156000002 (V2 table 12)"),
    ("ethnicity-97", {"holder.ethnicity": 97}, "holder.ethnicity", "must be a GB 3304 code 1-56 or 99 (other), got 97"),
    ("medical-balance-negative", {"medical.balance": -1}, "medical.balance", "got -1"),
    ("medical-start-day-1332", {"medical.start_day": "1332"}, "medical.start_day", "got '1332'"),
    ("institution-short", {"card.institution": "1101"}, "card.institution", "must be 12 bytes"),
    ("card-type-2-chars", {"card.type": "33"}, "card.type", "got '33'"),
    ("spec-version-3-chars", {"card.spec_version": "3.0"}, "card.spec_version", "must be one of 2.00, 3.00, got '3.0'"),
    ("validity-0", {"card.validity_years": 0}, "card.validity_years", "got 0"),
    ("atr-historical-16-bytes", {"card.atr_historical": "00" * 16}, "card.atr_historical", "got 16"),
    ("atr-historical-12-bytes", {"card.atr_historical": "00" * 12}, "card.atr_historical",
     "must be the 13 historical bytes of LD/T 32 part 2 table 16, got 12"),
    # keys
    ("key-bad-hex", {"keys.ssse_rk": "4041424344454647XX494A4B4C4D4E4F"}, "keys.ssse_rk", "must be hexadecimal"),
    ("key-odd-length", {"keys.ssse_irk": "505152535455565758595A5B5C5D5E5"}, "keys.ssse_irk", "must be hexadecimal"),
    ("key-15-bytes", {"keys.fin_imk_smc": "89ABCDEF0123456776543210FEDCBA"}, "keys.fin_imk_smc",
     "must be 16 bytes (32 hex digits), got 15"),
    ("key-missing", {"keys.ssse_puk": DELETE}, "keys.ssse_puk", "missing"),
    ("keys-table-missing", {"keys": {}}, "keys.ssse_irk", "missing"),
    ("key-bk-missing", {"keys.ssse_bk": DELETE}, "keys.ssse_bk", "missing"),
    ("key-dpk-missing", {"keys.df04_dpk": DELETE}, "keys.df04_dpk", "missing"),
    ("key-int", {"keys.fin_imk_ac": 1}, "keys.fin_imk_ac", "must be str, got int 1"),
]


@pytest.mark.parametrize("changes, field, reason", [pytest.param(c, f, r, id=i) for i, c, f, r in BAD])
def test_bad_field_is_one_line_error_naming_it(changes, field, reason):
    with pytest.raises(ProfileError) as excinfo:
        parse_profile(changed(changes), source=SRC)
    message = one_line_error(excinfo, SRC, field)
    assert reason in message


@pytest.mark.parametrize("changes, field, reason", [pytest.param(c, f, r, id=i) for i, c, f, r in BAD[:6]])
def test_bad_field_from_a_toml_file_names_the_file(tmp_path, changes, field, reason):
    path = write_profile(tmp_path, changes)
    for load in (load_profile, Card.from_profile):
        with pytest.raises(ProfileError) as excinfo:
            load(str(path))
        assert reason in one_line_error(excinfo, str(path), field)


# -- boundaries that must be accepted ---------------------------------------------------------

_X_SEQUENCE = next(s for s in range(1, 1000, 2) if check_character(f"11010119900307{s:03d}") == "X")


@pytest.mark.parametrize("changes, attribute, value", [
    ({"ssse.initial_pin": "1234"}, "initial_pin", "1234"),
    ({"ssse.initial_pin": "123456789012"}, "initial_pin", "123456789012"),
    ({"ssse.pin_tries": 1}, "pin_tries", 1),
    ({"ssse.pin_tries": 15}, "pin_tries", 15),
    ({"holder.name": "李" * 25}, "holder_name", "李" * 25),
    ({"holder.name": "A" * 50}, "holder_name", "A" * 50),
    ({"holder.ethnicity": 56}, "ethnicity", 56),
    ({"holder.ethnicity": 99}, "ethnicity", 99),
    ({"ssse.initial_pin": "1234567890123456"}, "initial_pin", "1234567890123456"),
    ({"card.spec_version": "2.00"}, "spec_version", "2.00"),
    ({"holder.id_number": f"11010119900307{_X_SEQUENCE:03d}x"}, "id_number", f"11010119900307{_X_SEQUENCE:03d}X"),
    ({"card.issue_date": datetime.date(2026, 1, 15), "card.expiry_date": datetime.date(2026, 1, 16)},
     "expiry_date", datetime.date(2026, 1, 16)),
    ({"card.issue_date": "2026-01-15"}, "issue_date", datetime.date(2026, 1, 15)),
    ({"ssse.algorithm": "3DES"}, "algorithm_flag", 0x01),
    ({"holder.gender": "female", "holder.id_number": with_check("11010119900307124")}, "gender", "2"),
], ids=["pin-4", "pin-12", "tries-1", "tries-15", "name-50-bytes-gbk", "name-50-ascii", "ethnicity-56",
        "ethnicity-99", "pin-16", "generation-2", "id-lowercase-x", "expiry-next-day", "issue-date-string",
        "algorithm-3des", "female"])
def test_boundary_values_are_accepted(changes, attribute, value):
    profile = parse_profile(changed(changes), source=SRC)
    assert getattr(profile, attribute) == value


def test_expiry_before_personalisation_day(tmp_path):
    """issue_date = "personalisation": a fixed expiry before that day is refused when the card is made."""
    path = write_profile(tmp_path, {"card.expiry_date": datetime.date(2025, 12, 31)})
    assert load_profile(str(path)).expiry_date == datetime.date(2025, 12, 31)
    with pytest.raises(ProfileError) as excinfo:
        Card.from_profile(str(path), date=datetime.date(2026, 1, 1))
    message = one_line_error(excinfo, str(path), "card.expiry_date")
    assert message.endswith("2025-12-31 is not after the issue date 2026-01-01")
    Card.from_profile(str(path), date=datetime.date(2025, 12, 30))  # the day before is fine


# -- loading by name and by path --------------------------------------------------------------

def test_unknown_shipped_name_lists_shipped_names():
    shipped = sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))
    assert "default" in shipped
    with pytest.raises(ProfileError) as excinfo:
        load_profile("no-such-region")
    message = str(excinfo.value)
    assert excinfo.type is ProfileError and "\n" not in message
    assert message == f"no shipped profile 'no-such-region' (shipped: {', '.join(shipped)}; or give a .toml path)"
    with pytest.raises(ProfileError):
        Card.from_profile("no-such-region")


def test_toml_syntax_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(DEFAULT_TOML.read_text(encoding="utf-8").replace("[card]", "[card", 1), encoding="utf-8")
    with pytest.raises(ProfileError) as excinfo:
        load_profile(str(path))
    message = str(excinfo.value)
    assert excinfo.type is ProfileError and "\n" not in message
    assert message.startswith(f"{path}: not valid TOML (")
    with pytest.raises(ProfileError):
        Card.from_profile(str(path))


def test_missing_toml_path(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ProfileError) as excinfo:
        load_profile(str(path))
    assert str(excinfo.value) == f"{path}: no such profile file"


def test_toml_file_profile_is_named_after_the_file(tmp_path):
    path = write_profile(tmp_path, {"holder.name": "王芳", "holder.gender": "female",
                                    "holder.id_number": with_check("11010119900307124")}, name="wangfang.toml")
    profile = load_profile(path)
    assert (profile.name, profile.source, profile.holder_name, profile.gender) == ("wangfang", str(path), "王芳", "2")


def test_from_profile_accepts_a_parsed_profile():
    profile = parse_profile(changed({"holder.name": "王芳"}), name="parsed", source=SRC)
    card = Card.from_profile(profile)
    assert card.config.profile == "parsed"


# -- values that pass str.isdigit() but are not ASCII digits -------------------------------------

_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.mark.parametrize("changes, field", [
    ({"holder.id_number": DEFAULT_ID[:17].translate(_FULLWIDTH) + "3"}, "holder.id_number"),
    ({"holder.id_number": "1101011990030712²3"}, "holder.id_number"),
    ({"card.region_code": "110100".translate(_FULLWIDTH)}, "card.region_code"),
    ({"holder.birthplace": "110101".translate(_FULLWIDTH)}, "holder.birthplace"),
    ({"holder.birthplace": "11010²"}, "holder.birthplace"),
], ids=["id-fullwidth", "id-superscript", "region-fullwidth", "birthplace-fullwidth", "birthplace-superscript"])
def test_non_ascii_digits_are_a_profile_error(tmp_path, changes, field):
    path = write_profile(tmp_path, changes)
    with pytest.raises(ProfileError) as excinfo:
        Card.from_profile(str(path))
    one_line_error(excinfo, str(path), field)


# -- the holder name on the card: GBK, split on a character boundary ------------------------------

TWENTY = "张王李赵刘陈杨黄吴周徐孙马朱胡郭何高林罗"


def read_name_records(path) -> tuple[bytes, bytes]:
    """EF06 items 09 and 4E of a card made from `path`: on a 3.00 card after external
    authentication with RKSSSE (V2 table 3, Sichuan reader spec §10.2)."""
    session = Session(card=Card.from_profile(str(path)))
    session.select()
    assert session.tx("00B2093020") == "6982"
    assert session.external_auth("ssse_rk") == "9000"
    r09, r4e = session.tx("00B2093020"), session.tx("00B24E3016")
    assert r09[-4:] == "9000" and r4e[-4:] == "9000"
    return bytes.fromhex(r09[:-4]), bytes.fromhex(r4e[:-4])


@pytest.mark.parametrize("name, head, tail", [
    (TWENTY, TWENTY[:15], TWENTY[15:]),
    ("李华", "李华", ""),
    ("李" * 25, "李" * 15, "李" * 10),
    ("A" + TWENTY[:15] + "B", "A" + TWENTY[:14], TWENTY[14] + "B"),
    ("AB" + TWENTY[:14] + "C", "AB" + TWENTY[:14], "C"),
], ids=["20-chinese", "default", "25-chinese", "boundary-mid-character", "exactly-30"])
def test_name_split_on_character_boundary(tmp_path, name, head, tail):
    path = write_profile(tmp_path, {"holder.name": name})
    r09, r4e = read_name_records(path)
    head_gbk, tail_gbk = head.encode("gbk"), tail.encode("gbk")
    assert len(head_gbk) + len(tail_gbk) == len(name.encode("gbk"))
    assert r09 == b"\x09\x1e" + head_gbk + b"\x00" * (30 - len(head_gbk))
    assert r4e == b"\x4e\x14" + tail_gbk + b"\x00" * (20 - len(tail_gbk))
    assert (r09[2:].rstrip(b"\x00") + r4e[2:].rstrip(b"\x00")).decode("gbk") == name


def test_twenty_chinese_characters_exact_bytes(tmp_path):
    path = write_profile(tmp_path, {"holder.name": TWENTY})
    r09, r4e = read_name_records(path)
    assert len(r09) == 32 and len(r4e) == 22
    assert r09[2:].decode("gbk") == TWENTY[:15]  # 30 bytes, no padding
    assert r4e[2:12].decode("gbk") == TWENTY[15:]  # 10 bytes
    assert r4e[12:] == bytes(10)


def test_profile_fields_reach_ef06(tmp_path):
    first17 = f"11010119900307{_X_SEQUENCE:03d}"
    path = write_profile(tmp_path, {"holder.id_number": first17 + "x", "holder.ethnicity": 10,
                                    "holder.birthplace": "440305", "card.spec_version": "2.00"})
    reader = SimReader(Card.from_profile(str(path)), protocol="T=1")
    reader.reset()
    reader.transmit(SELECT_SSSE)
    # a 2.00 card: EF06 free (V2 table 3); ethnicity 朝鲜族 10 is cn, the byte 10 (V2 table 14)
    assert reader.transmit(bytes.fromhex("00B2083014")) == b"\x08\x12" + (first17 + "X").encode() + b"\x90\x00"
    assert reader.transmit(bytes.fromhex("00B20A3003")) == b"\x0a\x01" + b"1" + b"\x90\x00"
    assert reader.transmit(bytes.fromhex("00B20B3003")) == b"\x0b\x01\x10\x90\x00"
    assert reader.transmit(bytes.fromhex("00B20C3005")) == b"\x0c\x03\x44\x03\x05\x90\x00"
    assert reader.transmit(bytes.fromhex("00B20D3006")) == b"\x0d\x04\x19\x90\x03\x07\x90\x00"


def test_profile_dataclass_is_frozen():
    profile = load_profile("default")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.pin_tries = 15  # type: ignore[misc]
    assert chip.ProfileError is ProfileError and issubclass(ProfileError, ValueError)


# -- strict input: unknown keys and tables, unreadable files ---------------------------------------------------

@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["ssse"].update(activation_deadline_dayz=d["ssse"].pop("activation_deadline_days")),
     "ssse.activation_deadline_dayz: unknown key; did you mean activation_deadline_days?"),
    (lambda d: d.update(sse=d.pop("ssse")), "[sse]: unknown table; did you mean [ssse]?"),
    (lambda d: d["financial"].update(pam=d["financial"].pop("pan")), "financial.pam: unknown key; did you mean pan?"),
    (lambda d: d["ssse"].update(pan="6234560000000008"), "ssse.pan: unknown key; did you mean financial.pan?"),
    (lambda d: d.update(birth_date=datetime.date(1990, 3, 7)),
     "birth_date: unknown key outside any table; did you mean holder.birth_date?"),
    (lambda d: d["atr"].update(fidi="13") if "atr" in d else d.update(atr={"fidi": "13"}),
     "atr.fidi: unknown key; did you mean fi_di?"),
    (lambda d: d.update(colour={"x": 1}), "[colour]: unknown table (the tables are [holder], [card], [ssse]"),
    (lambda d: d["medical"].update(zzz=1), "medical.zzz: unknown key (known in [medical]: balance, start_day)"),
    (lambda d: d.update(ssse=3), "ssse: must be a table"),
])
def test_unknown_keys_and_tables_are_errors_naming_the_closest(mutate, message):
    data = copy.deepcopy(default_data())
    mutate(data)
    with pytest.raises(ProfileError) as excinfo:
        parse_profile(data, source=SRC)
    assert str(excinfo.value).startswith(f"{SRC}: {message}") and "\n" not in str(excinfo.value)


def test_every_key_the_parser_reads_is_a_known_key(monkeypatch):
    """PROFILE_KEYS is the format: a field parse_profile reads but the table lacks would be refused."""
    from chip.personalization import profile as profile_module

    read = set()
    original = profile_module._Fields.get

    def spy(self, field, kind, default=...):
        read.add(field)
        return original(self, field, kind, default)

    monkeypatch.setattr(profile_module._Fields, "get", spy)
    for path in sorted(PROFILES_DIR.glob("*.toml")):
        load_profile(path)
    data = changed({"card.expiry_date": datetime.date(2036, 1, 1), "card.atr_historical": "00" * 13})
    data["atr"] = {"protocols": "t0+t1", "fi_di": "13", "tb1": "00", "guard_time": 0, "wi": 10, "ifsc": 32,
                   "bwi": 4, "cwi": 5, "edc": "lrc", "specific_protocol": 1}
    parse_profile(data, source=SRC)
    known = {f"{table}.{key}" for table, keys in profile_module.PROFILE_KEYS.items() for key in keys}
    assert read == known, (read - known, known - read)


def test_profile_files_that_cannot_be_read(tmp_path, monkeypatch):
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    with pytest.raises(ProfileError, match=r"folder.toml: is a folder, not a profile \(give a TOML file\)$"):
        load_profile(str(folder))
    gbk = tmp_path / "gbk.toml"
    gbk.write_bytes(DEFAULT_TOML.read_text(encoding="utf-8").encode("gbk"))
    with pytest.raises(ProfileError, match=r"gbk.toml: not UTF-8 text \(byte .. at offset \d+\); a TOML profile is"):
        load_profile(str(gbk))
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=r"deep.toml: arrays or tables nested too deeply to be a profile"):
        load_profile(str(deep))
    with pytest.raises(ProfileError, match=r"^/dev/null: is not a regular file, so not a profile"):
        load_profile("/dev/null")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()  # a folder named like a shipped profile does not hide it
    assert load_profile("default") == load_profile(DEFAULT_TOML)
    (tmp_path / "mine").mkdir()
    with pytest.raises(ProfileError, match=r"^mine: is a folder, not a profile \(give a TOML file\)$"):
        load_profile("mine")
