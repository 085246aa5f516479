"""The social-security application (SSSE): its files, records and PIN (SPEC §2).

The DDF `sx1.sh.社会保障` holds EF05 (card and issuer data), EF06 (holder
data), EF07/EF08 (fingerprint, photo) and the DFs DF01-DF04. Everything
about the files is declared here as data; the commands are the shared
mechanisms of `chip.applet` and `chip.pin` plus the SSSE's own PIN commands.
"""

from .applet import VERIFY, Applet
from .fs import DF, EXTERNAL_AUTH, PIN, LinearEF, TransparentEF
from .items import BINARY, BYTE, Ascii, Bcd, BcdDate, Gbk, Item
from .pin import Pin, pack, well_formed
from .ber import ber_tlv
from .records import Records
from .store import Binary, Vars
from .sw import SW_OK, SW_REFERENCED_DATA_NOT_FOUND, SW_WRONG_DATA, SW_WRONG_LENGTH, SW_WRONG_P1P2, CardError

DDF_NAME = b"sx1.sh." + "社会保障".encode("gbk")  # 7378312E73682EC9E7BBE1B1A3D5CF
RID = bytes.fromhex("D156000005")
PROTECTED = PIN | EXTERNAL_AUTH

EF05_ITEMS = (
    Item(0x01, "card identification code", BINARY(16)),
    Item(0x02, "card type", Ascii(1)),
    Item(0x03, "specification version", Ascii(4)),
    Item(0x04, "initialising institution", BINARY(12)),
    Item(0x05, "issue date", BcdDate()),
    Item(0x06, "expiry date", BcdDate()),
    Item(0x07, "card number", Ascii(9)),
)
EF06_ITEMS = (
    Item(0x08, "social security number", Ascii(18)),
    Item(0x09, "name", Gbk(30)),
    Item(0x4E, "name extension", Gbk(20)),
    Item(0x0A, "gender", Ascii(1)),
    Item(0x0B, "ethnicity", BYTE),
    Item(0x0C, "birthplace", Bcd(3)),
    Item(0x0D, "birth date", BcdDate()),
)
ITEMS = {item.tag: item for item in EF05_ITEMS + EF06_ITEMS}

EF05 = LinearEF(0xEF05, 5, "ssse.ef05", "card data", read_records={5: PROTECTED, 6: PROTECTED})
EF06 = LinearEF(0xEF06, 6, "ssse.ef06", "holder data", read=PROTECTED)
EF07 = TransparentEF(0xEF07, 7, "ssse.ef07", "fingerprint", read=PROTECTED)
EF08 = TransparentEF(0xEF08, 8, "ssse.ef08", "photo", read=PROTECTED)

DDF = DF(0xDDF1, "SSSE", name=DDF_NAME, children=[
    EF05, EF06, EF07, EF08,
    DF(0xDF01, "DF01 public", name=RID + b"\x01"),
    DF(0xDF02, "DF02 employment", name=RID + b"\x02"),
    DF(0xDF03, "DF03 social insurance", name=RID + b"\x03"),
    DF(0xDF04, "DF04 medical insurance", name=RID + b"\x04"),
])


def identification_code(profile) -> bytes:
    """EF05 item 01 (16 bytes): region code (3, BCD) || card serial (5) || RID D156000005 (5) || FF FF FF.

    The serial sits in bytes 4-8 so that the first 8 bytes, the key
    diversification data of SPEC §5.1, differ from card to card.
    """
    return bytes.fromhex(profile.region_code) + profile.serial + RID + b"\xFF\xFF\xFF"


class SsseApplet(Applet):
    NAME = "ssse"
    ROOT = DDF
    COMMANDS = {
        **Applet.COMMANDS,
        VERIFY: "verify",
        0x805E: "change_pin",
    }

    def __init__(self, card, store):
        super().__init__(card, store)
        self.pin: Pin = store["ssse.pin"]
        self.state: Vars = store["ssse.state"]
        self._proprietary = ber_tlv(0x9F0C, bytes((0x86, 0x01, self.state.algorithm)))

    @staticmethod
    def personalize(store, profile, today) -> None:
        """Create the SSSE's persistent objects from a profile."""
        issue, expiry = profile.dates(today)
        head, tail = profile.name_fields()
        ef05 = {
            0x01: identification_code(profile), 0x02: profile.card_type, 0x03: profile.spec_version,
            0x04: profile.institution, 0x05: issue, 0x06: expiry, 0x07: profile.card_number,
        }
        ef06 = {
            0x08: profile.id_number, 0x09: head.decode("gbk"), 0x4E: tail.decode("gbk"), 0x0A: profile.gender,
            0x0B: profile.ethnicity, 0x0C: profile.birthplace, 0x0D: profile.birth_date,
        }
        store.add("ssse.ef05", Records(item.record(ef05[item.tag]) for item in EF05_ITEMS))
        store.add("ssse.ef06", Records(item.record(ef06[item.tag]) for item in EF06_ITEMS))
        store.add("ssse.ef07", Binary())
        store.add("ssse.ef08", Binary())
        store.add("ssse.pin", Pin(pack(profile.initial_pin), profile.pin_tries))
        store.add("ssse.state", Vars(
            lifecycle="issued",
            algorithm=profile.algorithm_flag,
            initial_pin=pack(profile.initial_pin),
            deadline_days=profile.activation_deadline_days,
        ))

    # -- inspection (host tools, not an APDU path) ------------------------------
    def describe(self) -> dict:
        """Decoded records, PIN and state, for `sscard info`."""
        fields = {}
        for key in ("ssse.ef05", "ssse.ef06"):
            for record in self.store[key].records:
                item = ITEMS.get(record[0])
                if item is not None:
                    value = item.value(record)
                    fields[item.name] = value.hex().upper() if isinstance(value, bytes) else value
        algorithms = {0x01: "3DES", 0x04: "SM4"}
        return {
            "lifecycle": self.state.lifecycle,
            "algorithm": f"{algorithms.get(self.state.algorithm, '?')} (flag {self.state.algorithm:02X})",
            "PIN tries left": f"{self.pin.tries} of {self.pin.limit}" + (" (blocked)" if self.pin.blocked else ""),
            "records": fields,
        }

    # -- session -------------------------------------------------------------
    def deselect(self) -> None:
        self.pin.validated = False

    def satisfies(self, rule: int) -> bool:
        return bool(rule & PIN and self.pin.validated)

    def fci_proprietary(self, node) -> bytes:
        return self._proprietary if node is DDF else b""

    # -- commands ---------------------------------------------------------------
    def verify(self, cmd):
        """VERIFY (00 20 00 00): the SSSE PIN. Without data: 9000 if verified, else 63Cx / 6983."""
        if cmd.p1:
            raise CardError(SW_WRONG_P1P2)
        if cmd.p2:
            raise CardError(SW_REFERENCED_DATA_NOT_FOUND)
        pin = self.pin
        data = cmd.data
        if not data:
            if pin.tries == 0:
                pin.check(self.store, b"")  # raises 6983
            if pin.validated:
                return b"", SW_OK
            raise CardError(0x63C0 | pin.tries)
        if not 2 <= len(data) <= 6:
            raise CardError(SW_WRONG_LENGTH)
        if not well_formed(data):
            raise CardError(SW_WRONG_DATA)
        pin.check(self.store, data)
        return b"", SW_OK

    def change_pin(self, cmd):
        """CHANGE PIN (80 5E 01 00 Lc <old> FF <new>): the old PIN is checked with anti-tearing."""
        if cmd.p1 != 0x01 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        data = cmd.data
        sep = data.find(0xFF)
        if sep < 0:
            raise CardError(SW_WRONG_DATA if data else SW_WRONG_LENGTH)
        old, new = data[:sep], data[sep + 1:]
        if not well_formed(old) or not well_formed(new):
            raise CardError(SW_WRONG_DATA)
        self.pin.check(self.store, old)
        self.pin.update(self.store, new)
        return b"", SW_OK
