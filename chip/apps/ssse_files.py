"""The SSSE's file system as data (V2 §5-§8 and tables 2-9; P3 §5-§6).

Declared once and shared by every card: the DDF `sx1.sh.社会保障`, its EFs, its
DIR file and the application DFs with their EFs, structures, sizes and access
rules, and the data items of the records the card is personalised with.
Per-card content lives in the card's store under each EF's key.

Access rules are V2's (tables 3-8) for generation 2.00 and 3.00 cards; the
one difference between them (EF06: free on 2.00, RKSSSE on 3.00, Sichuan
reader spec §10.2) is written as the alternative `gen2`, which the applet
grants on a 2.00 card.
"""

from construct import Bytes, Int8ub, Int16ub, Int32ub, Struct

from chip.iso.ber import ber_tlv
from chip.kernel.fs import ALWAYS, DF, NEVER, PIN, CyclicEF, LinearEF, TransparentEF, key, pin_and, pin_or
from chip.kernel.items import BINARY, Ascii, Bcd, BcdDate, Gbk, Item
from chip.kernel.records import CyclicRecords, Records
from chip.kernel.store import Binary, Persistent

DDF_NAME = b"sx1.sh." + "社会保障".encode("gbk")  # 7378312E73682EC9E7BBE1B1A3D5CF
RID = bytes.fromhex("D156000005")
DIR_SFI = 0x1E  # the real cards' FCI says 88 01 1E

# EF05 item 01, the card identification code (V2 §8.1.1.1, table 10): made at personalisation
# (chip.apps.ssse), split by the terminals (the region gives the key diversification factors) and
# the decoder.
IDENTIFICATION = Struct(
    "region" / Bytes(3),  # GB/T 2260 region code, BCD
    "rid" / Bytes(len(RID)),  # D156000005
    "serial" / Bytes(4),  # the card serial
    "auth_code" / Bytes(4),  # the authentication code
)
EF05_ITEMS = (  # V2 table 9, §8.1.1
    Item(0x01, "card identification code", BINARY(IDENTIFICATION.sizeof())),
    Item(0x02, "card type", Ascii(1)),
    Item(0x03, "specification version", Ascii(4)),
    Item(0x04, "initialising institution", BINARY(12)),
    Item(0x05, "issue date", BcdDate()),
    Item(0x06, "expiry date", BcdDate()),
    Item(0x07, "card number", Ascii(9)),
)
EF06_ITEMS = (  # V2 table 9, §8.1.2
    Item(0x08, "social security number", Ascii(18)),
    Item(0x09, "name", Gbk(30)),
    Item(0x4E, "name extension", Gbk(20)),
    Item(0x0A, "gender", Ascii(1)),
    Item(0x0B, "ethnicity", Bcd(1)),
    Item(0x0C, "birthplace", Bcd(3)),
    Item(0x0D, "birth date", BcdDate()),
)
DF04_EF05_ITEMS = (  # V2 table 9, §8.5: medical-insurance basic data
    Item(0x81, "medical scheme and flags", Ascii(8)),
    Item(0x84, "medical-insurance region", Bcd(3)),
    Item(0x87, "health-record number", Ascii(17)),
    Item(0x8C, "insured-person category", Bcd(1)),
    Item(0x80, "personal account opened", BcdDate()),
    Item(0x8B, "personal account number", Ascii(29)),
    Item(0x8A, "medical certificate number", Ascii(15)),
    Item(0x83, "designated hospital 1", Ascii(9)),
    Item(0x86, "designated hospital 2", Ascii(9)),
    Item(0x89, "designated hospital 3", Ascii(9)),
    Item(0x7D, "work-injury hospital 1", Ascii(9)),
    Item(0x7E, "work-injury hospital 2", Ascii(9)),
    Item(0x7F, "work-injury hospital 3", Ascii(9)),
    Item(0x8D, "maternity hospital 1", Ascii(9)),
    Item(0x8E, "maternity hospital 2", Ascii(9)),
    Item(0x8F, "card-use mode", Ascii(1)),
)
DF04_EF06_ITEMS = (  # V2 table 9, §8.5: temporary-offline settlement
    Item(0x90, "offline settlement allowed", Ascii(1)),
    Item(0x92, "offline settlement total (fen)", Bcd(4)),
    Item(0x93, "offline settlement count", Ascii(2)),
)
ITEMS = {item.tag: item for item in EF05_ITEMS + EF06_ITEMS}
MEDICAL_ITEMS = {item.tag: item for item in DF04_EF05_ITEMS + DF04_EF06_ITEMS}
# One record of DF04 EF08, the medical transaction detail (V2 file-structure notice after table 9,
# LD/T 32 P5 §7): written by the purse (chip.apps.purse) at each load and settlement, read by
# `sscard info`, the terminals' detail query and the decoder.
DETAIL = Struct(
    "seq" / Int16ub,  # the transaction's counter value
    "type" / Int8ub,  # the transaction type (chip.apps.purse.TYPES)
    "terminal" / Bytes(6),  # terminal number
    "time" / Bytes(7),  # cn YYYYMMDDhhmmss
    "account" / Int32ub,  # personal account amount, fen (a load: the amount loaded)
    "self_pay" / Int32ub,  # self-pay amount, fen
    "fund" / Int32ub,  # pooled-fund amount, fen
)
DETAIL_RECORD = DETAIL.sizeof()  # 28
DETAIL_DEPTH = 30  # the last 30 loads and settlements (V2 §8.5.3)
SPECIAL_RECORD, SPECIAL_DEPTH = 3, 8  # DF04 EF15

RK = "ssse_rk"
UK = "ssse_uk"
EF05 = LinearEF(0xEF05, 5, "ssse.ef05", "card data", items=EF05_ITEMS, update=key(UK))
EF06 = LinearEF(0xEF06, 6, "ssse.ef06", "holder data", items=EF06_ITEMS, read=(("gen2",), (RK,)), update=key(UK))
EF07 = TransparentEF(0xEF07, 7, "ssse.ef07", "fingerprint", read=key(RK), update=key(UK), size=0x300)
EF08 = TransparentEF(0xEF08, 8, "ssse.ef08", "photo", read=key(RK), update=key(UK), size=0x1000)
DIR = LinearEF(None, DIR_SFI, "ssse.dir", "directory")


def _records(df: str, *specs) -> list:
    """Linear EFs of an application DF declared as (FID, label, read, update); content empty at issue."""
    return [LinearEF(fid, fid & 0xFF, f"{df}.ef{fid & 0xFF:02x}", label, read=read, update=update)
            for fid, label, read, update in specs]


def _reserved(df: str, fids, size: int, read) -> list:
    return [TransparentEF(fid, fid & 0xFF, f"{df}.ef{fid & 0xFF:02x}", "reserved", read=read, update=NEVER, size=size)
            for fid in fids]


_DF01_READ = pin_or("df01_rk1")
DF01 = DF(0xDF01, "DF01 public", name=RID + b"\x00", children=_records(
    "df01",
    (0xEF05, "household registration", _DF01_READ, key("df01_uk1")),
    (0xEF06, "residence and contacts", _DF01_READ, key("df01_uk4")),
    (0xEF07, "employment status", _DF01_READ, key("df01_uk2")),
    (0xEF08, "marital status", _DF01_READ, key("df01_uk3")),
    (0xEF09, "identity and employer", _DF01_READ, key("df01_uk2")),
    (0xEF0A, "nationality and politics", _DF01_READ, key("df01_uk5")),
    (0xEF15, "education", _DF01_READ, key("df01_uk6")),
) + _reserved("df01", range(0xEF16, 0xEF1B), 0x128, ALWAYS))
_DF02_READ = pin_or("df02_rk1")
DF02 = DF(0xDF02, "DF02 employment", name=RID + b"\x01", children=_records(
    "df02",
    (0xEF05, "occupation and skills", _DF02_READ, key("df02_uk1")),
    (0xEF06, "employment status", _DF02_READ, key("df02_uk2")),
    (0xEF09, "registration card", _DF02_READ, key("df02_uk4")),
    (0xEF15, "employment aid", _DF02_READ, key("df02_uk5")),
) + [
    CyclicEF(0xEF07, 7, "df02.ef07", "employment history", 0x55, 4, read=_DF02_READ, update=key("df02_uk3")),
    CyclicEF(0xEF16, 0x16, "df02.ef16", "support policies", 0x12, 4, read=_DF02_READ, update=key("df02_uk6")),
])
_DF03_READ = pin_or("df03_rk1")
DF03 = DF(0xDF03, "DF03 social insurance 1", name=RID + b"\x02", children=_records(
    "df03",
    (0xEF05, "unemployment insurance", pin_or("df03_rk2"), key("df03_uk1")),
    (0xEF06, "work-ability appraisal", _DF03_READ, key("df03_uk2")),
    (0xEF07, "pension insurance", _DF03_READ, key("df03_uk3")),
    (0xEF15, "work-injury insurance", _DF03_READ, key("df03_uk4")),
    (0xEF16, "maternity insurance", _DF03_READ, key("df03_uk5")),
    (0xEF17, "work-injury recognition", _DF03_READ, key("df03_uk6")),
    (0xEF18, "dependants", _DF03_READ, key("df03_uk7")),
    (0xEF19, "insurance certificates", _DF03_READ, key("df03_uk8")),
))
_DF04_READ = pin_or("df04_rk1")
DF04_EF05 = LinearEF(0xEF05, 5, "df04.ef05", "medical basic data", items=DF04_EF05_ITEMS, read=_DF04_READ,
                     update=key("df04_uk1"))
DF04_EF06 = LinearEF(0xEF06, 6, "df04.ef06", "offline settlement", items=DF04_EF06_ITEMS,
                     read=pin_and("df04_rk1"), update=key("df04_uk2"))
DF04_EF08 = CyclicEF(0xEF08, 8, "df04.ef08", "medical transaction detail", DETAIL_RECORD, DETAIL_DEPTH,
                     read=((PIN,),), update=NEVER)
DF04_EF15 = CyclicEF(0xEF15, 0x15, "df04.ef15", "special settlement", SPECIAL_RECORD, SPECIAL_DEPTH,
                     read=_DF04_READ, update=key("df04_uk2"))
DF04 = DF(0xDF04, "DF04 medical insurance", name=RID + b"\x03",
          children=[DF04_EF05, DF04_EF06, DF04_EF08, DF04_EF15])
DF07 = DF(0xDF07, "DF07 personnel", name=RID + b"\x04", children=_records(
    "df07",
    (0xEF05, "honours", key("df07_rk1"), key("df07_uk1")),
    (0xEF06, "expert status", key("df07_rk2"), key("df07_uk2")),
    (0xEF07, "demobilised officer", key("df07_rk3"), key("df07_uk3")),
))

APPLICATIONS = ((DF01, "公共应用信息区"), (DF02, "就业与失业信息区"), (DF03, "社会保险信息区1"),
                (DF04, "社会保险信息区2"), (DF07, "人事人才信息区"))  # V2 table 2 labels
DDF = DF(0xDDF1, "SSSE", name=DDF_NAME, children=[EF05, EF06, EF07, EF08, DIR] + [df for df, _ in APPLICATIONS])
DF_TAGS = {DDF: "ssse", DF04: "df04"}  # where chip.apps.keys finds a DF's keys


def directory_records() -> list[bytes]:
    """DIR entries (P3 §5.1.4, tables 2-3): one `61 { 4F AID, 50 label }` record per application."""
    records = []
    for df, label in APPLICATIONS:
        assert df.name is not None  # an application DF is declared with its name (its AID)
        records.append(ber_tlv(0x61, ber_tlv(0x4F, df.name) + ber_tlv(0x50, label.encode("gbk"))))
    return records


def personalize_files(store, profile, ef05: dict, ef06: dict) -> None:
    """Every file's content at issue: EF05/EF06 from the profile, DF04's medical records, the rest empty."""
    store.add("ssse.ef05", Records(item.record(ef05[item.tag]) for item in EF05_ITEMS))
    store.add("ssse.ef06", Records(item.record(ef06[item.tag]) for item in EF06_ITEMS))
    store.add("ssse.dir", Records(directory_records()))
    medical = {0x84: profile.region_code, 0x8F: "2"}  # region; card-use mode 2 = offline (V2 table 49)
    settlement = {0x90: "1", 0x92: "0", 0x93: "00"}  # offline settlement allowed, nothing settled yet
    for node in DDF.walk():
        if node.is_df or node.key in store.objects:
            continue
        content: Persistent
        if node is DF04_EF05:
            content = Records(item.record(medical[item.tag]) for item in DF04_EF05_ITEMS if item.tag in medical)
        elif node is DF04_EF06:
            content = Records(item.record(settlement[item.tag]) for item in DF04_EF06_ITEMS)
        elif node.structure == "cyclic":
            content = CyclicRecords(capacity=node.capacity)
        elif node.structure == "transparent":
            content = Binary()
        else:
            content = Records()
        store.add(node.key, content)


__all__ = ["DDF", "DDF_NAME", "DF04", "DF_TAGS", "EF05_ITEMS", "EF06_ITEMS", "ITEMS", "MEDICAL_ITEMS", "RID",
           "personalize_files"]
