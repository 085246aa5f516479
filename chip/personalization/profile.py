"""Card profiles: the TOML description a card is personalised from.

Every field is checked when the profile is loaded, and a problem is reported
in one line that names the file and the field (`holder.id_number: ...`), so a
user fixes it without reading code. A key or a table the profile format does
not have is an error naming it and the closest known one (a misspelt
`activation_deadline_dayz` would otherwise silently leave the default in
place). Shipped profiles live in `chip/personalization/profiles/NAME.toml`; any other TOML
file (UTF-8) can be given by path.
"""

import dataclasses
import datetime
import difflib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, overload

from chip.apps.keys import FINANCIAL_KEYS, KEYS
from chip.contacts.atr import PROTOCOL_NAMES, PROTOCOLS_BY_NAME, AtrConfig
from chip.contacts.timing import DI_TABLE, EDC_CRC, EDC_LRC, FI_TABLE
from chip.inputs import read_regular
from chip.kernel.crypto import SM4_FLAG, TDES_FLAG
from chip.kernel.pin import valid_digits
from chip.personalization import idnumber, luhn

SHIPPED = Path(__file__).with_name("profiles")

ALGORITHMS = {"3des": TDES_FLAG, "sm4": SM4_FLAG}
NAME_BYTES, NAME_EXTENSION_BYTES = 30, 20
KEY_NAMES = tuple(spec.name for spec in KEYS) + FINANCIAL_KEYS
ISSUER_ID = bytes.fromhex("9156000002")  # initialising institution bytes 1-5 (V2 table 12)
GENERATIONS = ("2.00", "3.00")  # the file-access rules differ (EF06 free on 2.00, RKSSSE on 3.00)


class ProfileError(ValueError):
    """A profile that cannot be used; the message is one line naming the field."""


# Every table and key of the profile format (chip/personalization/profiles/t1.toml describes the [atr] ones). A key
# that parse_profile reads must be here: tests/test_profile.py checks it.
PROFILE_KEYS = {
    "holder": ("name", "id_number", "gender", "ethnicity", "birthplace", "birth_date"),
    "card": ("number", "region_code", "serial", "auth_code", "chip_supplier", "cos", "manufacturer",
             "atr_historical", "type", "spec_version", "institution", "issue_date", "expiry_date",
             "validity_years"),
    "ssse": ("initial_pin", "pin_tries", "activation_deadline_days", "algorithm"),
    "financial": ("pan", "psn", "holder_name", "label", "initial_pin", "pin_tries", "atc_limit"),
    "medical": ("balance", "start_day"),
    "keys": KEY_NAMES,
    "atr": ("protocols", "fi_di", "tb1", "guard_time", "wi", "ifsc", "bwi", "cwi", "edc", "specific_protocol"),
}


def _closest(word: str, candidates) -> str | None:
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def check_keys(data: dict, source: str) -> None:
    """Refuse a table or a key the profile format does not have, naming the closest known one."""
    everywhere = {f"{table}.{key}": key for table, keys in PROFILE_KEYS.items() for key in keys}
    for table, value in data.items():
        if table not in PROFILE_KEYS:
            if isinstance(value, dict):
                near = _closest(table, PROFILE_KEYS)
                hint = f"; did you mean [{near}]?" if near else f" (the tables are {', '.join(f'[{t}]' for t in PROFILE_KEYS)})"
                raise ProfileError(f"{source}: [{table}]: unknown table{hint}")
            near = _closest(table, everywhere.values())
            hint = next((f"; did you mean {name}?" for name, key in everywhere.items() if key == near), "")
            raise ProfileError(f"{source}: {table}: unknown key outside any table{hint}")
        if not isinstance(value, dict):
            raise ProfileError(f"{source}: {table}: must be a table")
        for key in value:
            if key in PROFILE_KEYS[table]:
                continue
            near = _closest(key, PROFILE_KEYS[table])
            if near:
                hint = f"; did you mean {near}?"
            else:
                others = {name: bare for name, bare in everywhere.items() if not name.startswith(table + ".")}
                near = _closest(key, others.values())
                elsewhere = next((name for name, bare in others.items() if bare == near), None)
                hint = (f"; did you mean {elsewhere}?" if elsewhere
                        else f" (known in [{table}]: {', '.join(PROFILE_KEYS[table])})")
            raise ProfileError(f"{source}: {table}.{key}: unknown key{hint}")


@dataclass(frozen=True)
class FinancialProfile:
    """The `[financial]` table: the PBOC debit application."""

    pan: str
    psn: str
    holder_name: str  # 5F20, ASCII
    label: str  # application label 50
    initial_pin: str
    pin_tries: int
    atc_limit: int


@dataclass(frozen=True)
class Profile:
    name: str
    source: str
    # holder (EF06)
    holder_name: str
    id_number: str
    gender: str  # "1" male, "2" female (EF06 item 0A)
    ethnicity: int
    birthplace: str
    birth_date: datetime.date
    # card (EF05)
    card_number: str
    region_code: str
    serial: bytes  # 4 bytes: card identification code bytes 9-12 (V2 table 10)
    auth_code: bytes  # 4 bytes: card identification code bytes 13-16
    card_type: str
    spec_version: str
    institution: bytes
    issue_date: datetime.date | None  # None: the day of personalisation
    expiry_date: datetime.date | None
    validity_years: int
    atr_historical: bytes
    # SSSE application
    initial_pin: str
    pin_tries: int
    activation_deadline_days: int
    algorithm_flag: int
    keys: dict
    financial: FinancialProfile
    medical_balance: int  # fen, the DF04 purse balance at issue
    medical_start_day: str  # mmdd, the medical year's starting day
    atr: AtrConfig = dataclasses.field(default_factory=AtrConfig)  # the [atr] table; its historical bytes are atr_historical's

    def atr_config(self) -> AtrConfig:
        """The card's ATR configuration, with this profile's historical bytes."""
        return dataclasses.replace(self.atr, historical=self.atr_historical)

    def dates(self, today: datetime.date) -> tuple[datetime.date, datetime.date]:
        """Issue and expiry dates of a card personalised on `today`."""
        issue = self.issue_date or today
        expiry = self.expiry_date or _add_years(issue, self.validity_years)
        if expiry <= issue:
            raise ProfileError(f"{self.source}: card.expiry_date: {expiry} is not after the issue date {issue}")
        return issue, expiry

    def name_fields(self) -> tuple[bytes, bytes]:
        """The holder name split into EF06 item 09 (30 bytes) and 4E (20 bytes), GBK, on character boundaries."""
        head, tail = b"", b""
        for ch in self.holder_name:
            code = ch.encode("gbk")
            if not tail and len(head) + len(code) <= NAME_BYTES:
                head += code
            else:
                tail += code
        return head, tail


def _add_years(day: datetime.date, years: int) -> datetime.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.toml"))


def load_profile(profile: str | os.PathLike = "default") -> Profile:
    """Load a shipped profile by name, or a TOML file by path, and validate it."""
    text = os.fspath(profile)
    path = Path(text)
    shipped = SHIPPED / f"{text}.toml"
    looks_like_path = text.endswith(".toml") or os.sep in text or bool(os.altsep and os.altsep in text)
    if not looks_like_path and not (path.exists() and not (path.is_dir() and shipped.is_file())):
        path = shipped
        if not path.exists():
            raise ProfileError(f"no shipped profile {text!r} (shipped: {', '.join(shipped_names())}; or give a .toml path)")
    return parse_profile(_read_toml(path), name=path.stem, source=str(path))


def _read_toml(path: Path) -> dict:
    """A profile file's TOML; anything that stops it (a folder, no permission, not UTF-8, nesting
    deeper than the parser goes) is one ProfileError naming the file."""
    raw = read_regular(path, "profile", ProfileError, hint=" (give a TOML file)", missing="no such profile file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 text (byte {raw[exc.start]:02X} at offset {exc.start}); "
                           f"a TOML profile is UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ProfileError(f"{path}: arrays or tables nested too deeply to be a profile") from None


class _Fields:
    """Typed access to the profile's tables, each failure naming `table.field`."""

    def __init__(self, data: dict, source: str):
        self.data = data
        self.source = source

    def fail(self, field: str, why: str) -> NoReturn:
        raise ProfileError(f"{self.source}: {field}: {why}")

    def get(self, field: str, kind, default=...):
        table, _, key = field.partition(".")
        section = self.data.get(table, {})
        if not isinstance(section, dict):
            self.fail(table, "must be a table")
        if key not in section:
            if default is ...:
                self.fail(field, "missing")
            return default
        value = section[key]
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.fail(field, f"must be {names}, got {type(value).__name__} {value!r}")
        return value

    def digits(self, field: str, count: int, default=...) -> str:
        value = self.get(field, str, default)
        if not (len(value) == count and value.isascii() and value.isdigit()):
            self.fail(field, f"must be {count} digits, got {value!r}")
        return value

    def hexbytes(self, field: str, count: int, default=...) -> bytes:
        value = self.get(field, str, default)
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            self.fail(field, f"must be hexadecimal, got {value!r}")
        if count and len(raw) != count:
            self.fail(field, f"must be {count} bytes ({2 * count} hex digits), got {len(raw)}")
        return raw

    @overload
    def number(self, field: str, low: int, high: int, default: int = ..., why: str = "") -> int: ...
    @overload
    def number(self, field: str, low: int, high: int, default: None, why: str = "") -> int | None: ...

    def number(self, field, low, high, default=..., why=""):
        """A whole number in low..high (None allowed as a default: the field is optional)."""
        value = self.get(field, int, default)
        if value is not None and not low <= value <= high:
            self.fail(field, f"must be {low}-{high}{why}, got {value}")
        return value

    @overload
    def date(self, field: str) -> datetime.date: ...
    @overload
    def date(self, field: str, default: None) -> datetime.date | None: ...

    def date(self, field, default=...):
        value = self.get(field, (datetime.date, str), default)
        if value is None or (isinstance(value, datetime.date) and not isinstance(value, datetime.datetime)):
            return value
        if isinstance(value, datetime.datetime):
            self.fail(field, "must be a date (YYYY-MM-DD), not a date-time")
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            self.fail(field, f"must be a date YYYY-MM-DD, got {value!r}")


def parse_profile(data: dict, name: str = "profile", source: str = "profile") -> Profile:
    check_keys(data, source)
    f = _Fields(data, source)

    holder_name = f.get("holder.name", str)
    if not holder_name.strip():
        f.fail("holder.name", "must not be empty")
    if not holder_name.isprintable():
        f.fail("holder.name", "must not contain control characters")
    try:
        encoded = holder_name.encode("gbk")
    except UnicodeEncodeError as exc:
        f.fail("holder.name", f"{holder_name[exc.start]!r} cannot be encoded in GBK")
    if len(encoded) > NAME_BYTES + NAME_EXTENSION_BYTES:
        f.fail("holder.name", f"is {len(encoded)} bytes in GBK, at most {NAME_BYTES}+{NAME_EXTENSION_BYTES} fit")

    id_number = f.get("holder.id_number", str).upper()
    why = idnumber.problem(id_number)
    if why:
        f.fail("holder.id_number", why)
    birth_date = f.date("holder.birth_date")
    if idnumber.birth_date(id_number) != birth_date:
        f.fail("holder.id_number", f"birth date {id_number[6:14]} disagrees with holder.birth_date {birth_date}")

    gender = f.get("holder.gender", str)
    if gender not in ("male", "female"):
        f.fail("holder.gender", f"must be 'male' or 'female', got {gender!r}")
    if (gender == "male") != idnumber.is_male(id_number):
        says = "male" if idnumber.is_male(id_number) else "female"
        f.fail("holder.gender", f"is {gender} but the ID number's 17th digit says {says}")

    ethnicity = f.get("holder.ethnicity", int)
    if not (1 <= ethnicity <= 56 or ethnicity == 99):
        f.fail("holder.ethnicity", f"must be a GB 3304 code 1-56 or 99 (other), got {ethnicity}")

    region_code = f.digits("card.region_code", 6)
    card_number = f.get("card.number", str)
    if len(card_number) != 9 or not card_number.isascii() or not card_number.isalnum():
        f.fail("card.number", f"must be 9 ASCII letters or digits, got {card_number!r}")
    card_type = f.get("card.type", str, "3")
    if len(card_type) != 1 or not card_type.isascii():
        f.fail("card.type", f"must be one ASCII character, got {card_type!r}")
    spec_version = f.get("card.spec_version", str, "3.00")
    if spec_version not in GENERATIONS:
        f.fail("card.spec_version", f"must be one of {', '.join(GENERATIONS)}, got {spec_version!r}")

    issue = f.get("card.issue_date", (datetime.date, str), "personalisation")
    issue_date = None if issue == "personalisation" else f.date("card.issue_date")
    expiry_date = f.date("card.expiry_date", None)
    validity_years = f.number("card.validity_years", 1, 50, 10)
    if issue_date and expiry_date and expiry_date <= issue_date:
        f.fail("card.expiry_date", f"{expiry_date} is not after card.issue_date {issue_date}")

    serial = f.hexbytes("card.serial", 4)
    historical = f.hexbytes("card.atr_historical", 0, None) if "atr_historical" in data.get("card", {}) else None
    if historical is None:
        historical = (f.hexbytes("card.chip_supplier", 2, "0081") + f.hexbytes("card.cos", 3, "535343")
                      + f.hexbytes("card.manufacturer", 2, "8699") + bytes.fromhex(region_code[:4]) + serial)
    elif len(historical) != 13:
        f.fail("card.atr_historical", f"must be the 13 historical bytes of LD/T 32 part 2 table 16, got {len(historical)}")
    institution = f.hexbytes("card.institution", 12, (ISSUER_ID + bytes.fromhex(region_code) * 2 + b"\x01").hex())
    if institution[:5] != ISSUER_ID:
        f.fail("card.institution", f"must start with the issuer identification {ISSUER_ID.hex().upper()} (V2 table 12)")

    atr = _atr_table(f, historical)

    initial_pin = f.get("ssse.initial_pin", str, "123456")
    if not valid_digits(initial_pin, 4, 16):
        f.fail("ssse.initial_pin", f"must be 4-16 digits (LD/T 32 P5 §6.14), got {initial_pin!r}")
    pin_tries = f.number("ssse.pin_tries", 1, 15, 6, " (63Cx holds it in 4 bits)")
    deadline = f.number("ssse.activation_deadline_days", 1, 3650, 300)
    algorithm = f.get("ssse.algorithm", str, "sm4").lower()
    if algorithm not in ALGORITHMS:
        f.fail("ssse.algorithm", f"must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")

    keys = {key: f.hexbytes(f"keys.{key}", 16) for key in KEY_NAMES}
    medical_balance = f.number("medical.balance", 0, 0xFFFFFFFF, 0, " fen (4 bytes)")
    start_day = f.digits("medical.start_day", 4, "0101")
    try:
        datetime.date(2000, int(start_day[:2]), int(start_day[2:]))
    except ValueError:
        f.fail("medical.start_day", f"must be a day of the year as mmdd, got {start_day!r}")

    pan = f.get("financial.pan", str)
    if not (13 <= len(pan) <= 19 and pan.isascii() and pan.isdigit()):
        f.fail("financial.pan", f"must be 13-19 digits, got {pan!r}")
    if not luhn.is_valid(pan):
        f.fail("financial.pan", f"{pan} fails the Luhn check")
    fin_holder = f.get("financial.holder_name", str)
    if not (2 <= len(fin_holder) <= 26 and fin_holder.isascii() and fin_holder.isprintable()):
        f.fail("financial.holder_name", f"must be 2-26 printable ASCII characters (5F20), got {fin_holder!r}")
    label = f.get("financial.label", str, "UnionPay Debit")
    if not (1 <= len(label) <= 16 and label.isascii() and label.isprintable()):
        f.fail("financial.label", f"must be 1-16 printable ASCII characters, got {label!r}")
    fin_pin = f.get("financial.initial_pin", str, "000000")
    if not valid_digits(fin_pin):
        f.fail("financial.initial_pin", f"must be 4-12 digits, got {fin_pin!r}")
    fin_tries = f.number("financial.pin_tries", 1, 15, 3)
    atc_limit = f.number("financial.atc_limit", 1, 65535, 65535, " (the ATC has 2 bytes)")
    financial = FinancialProfile(pan=pan, psn=f.digits("financial.psn", 2, "01"), holder_name=fin_holder,
                                 label=label, initial_pin=fin_pin, pin_tries=fin_tries, atc_limit=atc_limit)

    return Profile(
        name=name, source=source, holder_name=holder_name, id_number=id_number,
        gender="1" if gender == "male" else "2", ethnicity=ethnicity,
        birthplace=f.digits("holder.birthplace", 6), birth_date=birth_date,
        card_number=card_number, region_code=region_code, serial=serial,
        auth_code=f.hexbytes("card.auth_code", 4, "00000000"),
        card_type=card_type, spec_version=spec_version, institution=institution,
        issue_date=issue_date, expiry_date=expiry_date, validity_years=validity_years,
        atr_historical=historical, initial_pin=initial_pin, pin_tries=pin_tries,
        activation_deadline_days=deadline, algorithm_flag=ALGORITHMS[algorithm], keys=keys, financial=financial,
        medical_balance=medical_balance, medical_start_day=start_day, atr=atr,
    )


def _atr_table(f: _Fields, historical: bytes) -> AtrConfig:
    """The optional `[atr]` table (ISO 7816-3 interface bytes; every field is described in
    profiles/t1.toml). Absent fields give P2's basic ATR: T=0 only, no TA1, TB1 00, TC1 00."""
    default = AtrConfig()
    names = ", ".join(repr(name) for name in PROTOCOLS_BY_NAME)
    chosen = f.get("atr.protocols", str, PROTOCOL_NAMES[default.protocols])
    if chosen.lower() not in PROTOCOLS_BY_NAME:
        f.fail("atr.protocols", f"must be one of {names}, got {chosen!r}")
    protocols = PROTOCOLS_BY_NAME[chosen.lower()]
    table = f.data.get("atr", {})  # a table: f.get above refused anything else

    def absent(value) -> bool:
        return isinstance(value, str) and value.lower() == "absent"

    def hex_byte(field: str, fallback, what: str) -> int | None:
        value = f.get(field, str, None if fallback is None else f"{fallback:02X}")
        if value is None or absent(value):
            return None
        if len(value) != 2 or any(c not in "0123456789abcdefABCDEF" for c in value):
            f.fail(field, f"must be {what} as 2 hex digits or 'absent', got {value!r}")
        return int(value, 16)

    fi_di = hex_byte("atr.fi_di", default.fi_di, "the TA1 byte like '13' (Fi index, Di index)")
    if fi_di is not None and fi_di >> 4 not in FI_TABLE:
        f.fail("atr.fi_di", f"Fi index {fi_di >> 4:X} (TA1 {fi_di:02X}) is RFU")
    if fi_di is not None and fi_di & 0xF not in DI_TABLE:
        f.fail("atr.fi_di", f"Di index {fi_di & 0xF:X} (TA1 {fi_di:02X}) is RFU")
    tb1 = hex_byte("atr.tb1", default.tb1, "the TB1 byte like '00' (no VPP)")
    if tb1 is not None and tb1 & 0x80:
        f.fail("atr.tb1", f"b8 must be 0 (P2 §8.3.3.3), got {tb1:02X}")

    guard_time = f.get("atr.guard_time", object, default.guard_time)
    if absent(guard_time):
        guard_time = None
    elif guard_time is not None and (isinstance(guard_time, bool) or not isinstance(guard_time, int)
                                     or not 0 <= guard_time <= 255):
        f.fail("atr.guard_time", f"must be 0-255 (TC1 extra guard time N) or 'absent', "
                                 f"got {type(guard_time).__name__} {guard_time!r}")
    wi = f.number("atr.wi", 1, 255, None, " (TC2)")
    ifsc = f.number("atr.ifsc", 1, 254, default.ifsc, " (TA3)")
    bwi = f.number("atr.bwi", 0, 9, default.bwi, " (TB3 high nibble; A-F are RFU)")
    cwi = f.number("atr.cwi", 0, 15, default.cwi, " (TB3 low nibble)")
    edc = f.get("atr.edc", str, default.edc).lower()
    if edc not in (EDC_LRC, EDC_CRC):
        f.fail("atr.edc", f"must be 'lrc' or 'crc', got {edc!r}")
    if 1 not in protocols:
        for name in ("ifsc", "bwi", "cwi", "edc"):
            if name in table:
                f.fail(f"atr.{name}", f"is a T=1 parameter, but atr.protocols is {chosen!r} "
                                      f"(T=1 needs 't0+t1' or 't1')")
    specific = f.get("atr.specific_protocol", int, None)
    if specific is not None and specific not in (0, 1):
        f.fail("atr.specific_protocol", f"must be 0 (T=0) or 1 (T=1), got {specific}")
    if specific is not None and specific not in protocols:
        f.fail("atr.specific_protocol", f"T={specific} is not offered (atr.protocols is {chosen!r})")
    try:
        return AtrConfig(fi_di=fi_di, tb1=tb1, guard_time=guard_time, protocols=protocols, wi=wi, ifsc=ifsc,
                         bwi=bwi, cwi=cwi, edc=edc, specific=specific, historical=historical)
    except ValueError as problem:  # a combination the checks above missed: still one line naming the field
        field, _, why = str(problem).partition(": ")
        f.fail({"historical": "card.atr_historical", "specific": "atr.specific_protocol"}.get(field, f"atr.{field}"),
               why)
