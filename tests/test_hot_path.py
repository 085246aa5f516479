"""What the card OS derives once on its hot path follows every change it is derived from.

The in-process speed work (bench/README.md, "sscard against vpicc") keeps a few things instead
of remaking them for every command; each test here changes what one of them comes from, through
APDUs, and checks the card answers as the changed state says:

- the identifier index of a record file (READ RECORD by identifier, LD/T 32 P5 §6.10): made
  from the file's records and made again after a write, and after a write that did not land;
- the activation deadline (issue date, EF05 item 05, + the profile's days; docs/card/lifecycle.md
  §2), decoded once from the record: an UPDATE RECORD of the issue date moves it;
- the applets a reset clears: only those entered since the last reset hold volatile state, and
  the SSSE's verified PIN outlives leaving the application (P7 §5.8) but not a reset;
- the card's one APDU buffer (chip.iso.apdu.decode): every field is decoded anew.
"""

import datetime

import pytest
from helpers import CARD_DATE, SELECT_DF04, SELECT_PSE, SELECT_SSSE, VERIFY_OK, Session

from chip.faults import FaultPlan
from chip.iso.apdu import Command, decode, parse

READ_DF04_81 = "00B281280A"  # DF04 EF05 (SFI 5) item 81 by identifier (mode 0), its 10 bytes
UPDATE_DF04_81 = "00DC81280A" + "8108" + b"12345678".hex().upper()  # mode 0: added when absent (P5 §6.13)
READ_DF04_87 = "00B2872813"  # item 87, the health-record number (17 bytes)
UPDATE_DF04_87 = "00DC872813" + "8711" + b"H0000000000000001".hex().upper()
READ_EF08_1 = "00B201441C"  # DF04 EF08 (SFI 8) record 1, 28 bytes: PIN (V2 table 7)


def in_df04(profile="default") -> Session:
    s = Session(profile)
    s.select()
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    return s


@pytest.mark.parametrize("profile", ["default", "default-3des"])
def test_a_record_written_after_a_search_is_found_by_the_next_one(profile):
    s = in_df04(profile)
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx(READ_DF04_81) == "6A83"  # the search indexes the file as issued: no item 81 in it
    assert s.external_auth("df04_uk1") == "9000"
    assert s.tx(UPDATE_DF04_81) == "9000"
    assert s.tx(READ_DF04_81) == UPDATE_DF04_81[10:] + "9000"
    assert s.tx(READ_DF04_87) == "6A83"
    s.card.faults = FaultPlan(["write once"])  # the write's commit fails: 6581, the old records stay
    assert s.tx(UPDATE_DF04_87) == "6581"
    s.card.faults = None
    assert s.tx(VERIFY_OK) == "9000"  # a command that did not land ends the session's grants (chip.card)
    assert s.tx(READ_DF04_87) == "6A83"
    assert s.tx(READ_DF04_81) == UPDATE_DF04_81[10:] + "9000"


def test_the_activation_deadline_follows_a_rewritten_issue_date():
    s = Session()  # issued on CARD_DATE, powered up on it: well inside its 300 days
    s.select()
    issued = CARD_DATE - datetime.timedelta(days=301)  # the deadline was yesterday
    assert s.external_auth("ssse_uk") == "9000"
    assert s.tx("00DC052C06" + "0504" + issued.strftime("%Y%m%d")) == "9000"  # EF05 record 5, UK (V2 table 3)
    s.reset()  # the power-up rule sees the new issue date: the SSSE is loss-locked for the deadline
    assert s.tx(SELECT_SSSE) == s.fci + "6283"
    assert s.tx("80CADF7D00") == "DF7D01029000"  # lock reason 02: the activation deadline


def test_a_reset_ends_the_session_of_an_application_left_before_it():
    s = in_df04()
    assert s.tx(VERIFY_OK) == "9000"
    assert s.tx(READ_EF08_1) == "6A83"  # PIN verified; the detail file is empty at issue
    assert s.tx(SELECT_PSE)[-4:] == "9000"  # another application: the SSSE's PIN stays verified
    s.select()
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.tx(READ_EF08_1) == "6A83"
    assert s.tx(SELECT_PSE)[-4:] == "9000"
    s.reset()  # the PSE is selected when the reset comes; the SSSE's session ends too
    s.select()
    assert s.tx(SELECT_DF04)[-4:] == "9000"
    assert s.tx(READ_EF08_1) == "6982"


APDUS = [  # every case, short and extended (ISO/IEC 7816-3 §12.1), in an order that changes each field
    "0020000003123456",  # case 3 short
    "00B2012C12",  # case 2 short
    "00A404000F7378312E73682EC9E7BBE1B1A3D5CF00",  # case 4 short
    "00B0000000",  # case 2 short, Le 00
    "80CA0000",  # case 1
    "00B00000000100",  # case 2 extended
    "00D60000000003AABBCC",  # case 3 extended
    "00D60000000002AABB0000",  # case 4 extended, Le 0000
    "00B2012C12",
]


def test_decoding_into_one_buffer_gives_every_field_of_a_fresh_decode():
    buffer = Command()
    for apdu in APDUS:
        raw = bytes.fromhex(apdu)
        fresh = parse(raw)
        assert decode(buffer, raw) is buffer
        assert {f: getattr(buffer, f) for f in Command.__slots__} == {f: getattr(fresh, f) for f in Command.__slots__}
