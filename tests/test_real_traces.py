"""Real cards' command streams and public readers' sequences, replayed on our card.

Two real SM4 generation-3.00 cards were traced by public reader code (the
repository gdgly/SI_3rdCard):

- T1, `加密机方式指令流.txt`: a contact read with a hardware security module
  (card recognition, internal and external authentication, protected reads,
  a PIN reset after external authentication with PUK);
- T2, `EgAPP-20180611.log`: a contactless read by a reader DLL.

Our card is personalised with each trace's public data (ATR historical bytes,
card identification code, region, holder records); our PSAM stands where the
HSM stood, since the real keys are secret. Every command is sent with the
trace's class, instruction, P1, P2 and lengths; the answers must have the
trace's length and status word, and byte for byte the trace's data wherever
that data is the card's personalisation (FCI, records). Cryptograms are
checked against the independent oracle of tests/oracle.py as well.

The public readers' sequences below are the ones the standard digests cite
(file and line of the reader source in each test's docstring).
"""

import dataclasses
import datetime

import oracle
import pytest

from chip import Card
from chip.personalization.profile import load_profile
from reader import SimReader
from reader.base import transmit_all
from reader.terminals.psam import Psam
from reader.terminals.ssse import SsseTerminal

H = bytes.fromhex

T1 = {  # 加密机方式指令流.txt lines 1, 11, 14, 17, 77-81
    "atr": H("3B6D000000814A444686605199000001AC"),
    "region": "519900", "serial": H("10000B26"), "auth": H("FFFFFFFF"), "number": "HA1046924",
    "id_number": "510122201610225130", "name": "白哲宇", "birth": datetime.date(2016, 10, 22),
    "issue": datetime.date(2018, 4, 3),  # not in T1; any date before the session's
}
T2 = {  # EgAPP-20180611.log lines 177, 215, 239, 391, 401, 425, 435
    "atr": H("3B6D0000") + H("0081544C9686845101C0666779"),  # the ATS historical bytes on a contact ATR
    "region": "510100", "serial": H("C0666779"), "auth": H("C8C975CC"), "number": "AI666666X",
    "id_number": "510723198706273115", "name": "李磊", "birth": datetime.date(1987, 6, 27),
    "issue": datetime.date(2018, 4, 3),
}
FCI = H("6F1C840F7378312E73682EC9E7BBE1B1A3D5CFA50988011E9F0C03860103")
SESSION_DAY = datetime.date(2018, 6, 11)  # T2's date: before the activation deadline


def personalised(trace: dict):
    profile = dataclasses.replace(
        load_profile(), atr_historical=trace["atr"][4:], region_code=trace["region"], serial=trace["serial"],
        auth_code=trace["auth"], card_number=trace["number"], id_number=trace["id_number"],
        holder_name=trace["name"], birth_date=trace["birth"], gender="1", issue_date=trace["issue"],
        expiry_date=trace["issue"].replace(year=trace["issue"].year + 10))
    card = Card.from_profile(profile, date=SESSION_DAY)
    return card, profile


def sm4_card_key(profile, name: str, levels: int) -> bytes:
    return oracle.card_key("sm4", profile.keys[name], levels, profile.region_code, profile.atr_historical)


def exchange(reader, apdu_hex: str) -> bytes:
    """What the traced reader got: its firmware fetches 61xx (P8), so the trace shows data + SW."""
    return transmit_all(reader, H(apdu_hex))


@pytest.mark.parametrize("trace", [T1, T2], ids=["T1", "T2"])
def test_card_recognition_answers_the_traced_bytes(trace):
    """T1 lines 1-17, T2 lines 177-239: ATR, SELECT SSSE, SELECT EF05 (no FCI), items 01, 03, 07."""
    card, _profile = personalised(trace)
    reader = SimReader(card)
    assert reader.reset() == trace["atr"]
    assert exchange(reader, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF") == FCI + H("9000")
    assert exchange(reader, "00A4020002EF05") == H("9000")
    identification = H(trace["region"]) + H("D156000005") + trace["serial"] + trace["auth"]
    assert exchange(reader, "00B2010012") == H("0110") + identification + H("9000")
    assert exchange(reader, "00B2030006") == H("0304332E3030") + H("9000")
    assert exchange(reader, "00B207000B") == H("0709") + trace["number"].encode() + H("9000")


@pytest.mark.parametrize("trace", [T1, T2], ids=["T1", "T2"])
def test_authentication_and_protected_reads_as_traced(trace):
    """T1 lines 20-81 (T2 lines 277-447): two challenges, INTERNAL AUTHENTICATE without Le (8-byte
    answer), two challenges, EXTERNAL AUTHENTICATE with RKSSSE (0A), then EF05 03/05/06 and EF06
    08/09/4E. Our PSAM computes what the HSM computed."""
    card, profile = personalised(trace)
    reader = SimReader(card)
    terminal = SsseTerminal(reader, Psam(SimReader(Card.psam())))
    assert terminal.start() == 0x9000
    assert exchange(reader, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF") == FCI + H("9000")
    r2 = exchange(reader, "0084000008")
    r1 = exchange(reader, "0084000008")
    assert len(r2) == len(r1) == 10 and r2[-2:] == r1[-2:] == H("9000")
    answer = exchange(reader, "0088000010" + r1[:8].hex() + r2[:8].hex())
    assert len(answer) == 10 and answer[-2:] == H("9000")
    irk = sm4_card_key(profile, "ssse_irk", 3)
    assert answer[:8] == oracle.auth_data("sm4", oracle.process_key("sm4", irk, r1[:8]), r2[:8])
    assert answer[:8] == terminal.psam.internal_auth_expected(terminal.factors, r1[:8], r2[:8])

    original = exchange(reader, "0084000008")[:8]
    challenge = exchange(reader, "0084000008")[:8]
    auth = terminal.psam.external_auth("ssse_rk", terminal.factors, challenge, original)
    rk = sm4_card_key(profile, "ssse_rk", 3)
    assert auth == oracle.auth_data("sm4", oracle.process_key("sm4", rk, challenge), original)
    assert exchange(reader, "0082000A10" + auth.hex() + original.hex()) == H("9000")

    assert exchange(reader, "00A4020002EF05") == H("9000")
    assert exchange(reader, "00B2030006") == H("0304332E30309000")
    assert exchange(reader, "00B2050006") == H("0504") + H(trace["issue"].strftime("%Y%m%d")) + H("9000")
    expiry = trace["issue"].replace(year=trace["issue"].year + 10)
    assert exchange(reader, "00B2060006") == H("0604") + H(expiry.strftime("%Y%m%d")) + H("9000")
    assert exchange(reader, "00A4020002EF06") == H("9000")
    assert exchange(reader, "00B2080014") == H("0812") + trace["id_number"].encode() + H("9000")
    name = trace["name"].encode("gbk").ljust(30, b"\x00")
    assert exchange(reader, "00B2090020") == H("091E") + name + H("9000")
    assert exchange(reader, "00B24E0016") == H("4E14") + bytes(20) + H("9000")


def test_t1_pin_reset_after_puk():
    """T1 lines 84-125: GET CHALLENGE x2, EXTERNAL AUTHENTICATE with PUK (P2 06, line 108),
    GET CHALLENGE, PIN reset `84 24 00 01 14` (16 enciphered bytes + MAC, line 124) -> 9000;
    then VERIFY of the reset PIN 123456 works."""
    card, profile = personalised(T1)
    reader = SimReader(card)
    terminal = SsseTerminal(reader, Psam(SimReader(Card.psam())))
    terminal.start()
    original = exchange(reader, "0084000008")[:8]
    challenge = exchange(reader, "0084000008")[:8]
    auth = terminal.psam.external_auth("ssse_puk", terminal.factors, challenge, original)
    assert exchange(reader, "0082000610" + auth.hex() + original.hex()) == H("9000")
    challenge = exchange(reader, "0084000008")[:8]
    data = terminal.psam.pin_reset_data(terminal.factors, challenge, H("123456"), H("84240001"))
    stk = sm4_card_key(profile, "ssse_stk", 1)
    ks = oracle.process_key("sm4", stk, challenge)
    ciphertext = oracle.encipher("sm4", ks, H("123456"))
    assert data == ciphertext + oracle.mac4("sm4", ks, H("8424000114") + ciphertext)
    assert len(data) == 0x14
    assert exchange(reader, "8424000114" + data.hex()) == H("9000")
    assert exchange(reader, "0020000003123456") == H("9000")


def test_dll_selects_ef05_by_fid_and_needs_9000_on_t0():
    """hdxj.cpp lines 81-83 test the SW of `00 A4 02 00 02 EF05` for 9000 on a T=0 reader:
    an FCP answer (61xx) would abort them (P5 §6.11.1: an AEF answers no FCI)."""
    card = Card.from_profile()
    card.power_on(protocol=0)
    assert card.transmit(H("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))[:1] == H("61")
    assert card.transmit(H("00A4020002EF05")) == H("9000")
    assert card.transmit(H("00A4020002EF06")) == H("9000")


def test_reader_reads_ef05_issue_and_expiry_without_pin():
    """yiwu.cs lines 682 and 690, z390.cpp line 2296: EF05 items 05/06 read with no PIN and no
    authentication (V2 table 3: EF05 is free)."""
    card = Card.from_profile(date=datetime.date(2026, 12, 1))
    reader = SimReader(card)
    reader.reset()
    exchange(reader, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
    assert exchange(reader, "00B2052C06")[-2:] == H("9000")
    assert exchange(reader, "00B2062C06")[-2:] == H("9000")


def test_le_of_the_value_length_gets_6cxx_and_the_retry_works():
    """A reader that asks for the value length only (Le 04 for the 6-byte record 05) gets 6C06
    and re-issues (P5 §6.10.4; the reader handles 6Cxx, P8); `00 B2 01 04 00` (z390.cpp line
    1718, Le 00 in the current EF) gets 6C12, then the record."""
    card = Card.from_profile()
    reader = SimReader(card)
    reader.reset()
    exchange(reader, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
    assert reader.transmit(H("00B2052C04")) == H("6C06")
    assert reader.transmit(H("00B2052C06"))[-2:] == H("9000")
    assert reader.transmit(H("00A4020002EF05")) == H("9000")
    assert reader.transmit(H("00B2010400")) == H("6C12")
    assert reader.transmit(H("00B2010412"))[:2] == H("0110")


def test_card_number_read_by_record_number_in_sfi_5():
    """hdxj.cpp line 67: `00 B2 07 2C 0B` reads record number 7 of SFI 5 (record number = item)."""
    card = Card.from_profile()
    reader = SimReader(card)
    reader.reset()
    exchange(reader, "00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
    assert exchange(reader, "00B2072C0B") == H("0709") + load_profile().card_number.encode() + H("9000")


def test_ukssse_external_authentication_before_writing_ef06():
    """z390.cpp line 1987: `00 82 00 04 10 ...` (UKSSSE) before an SSSE EF06 update (V2 table 3)."""
    card = Card.from_profile()
    reader = SimReader(card)
    terminal = SsseTerminal(reader, Psam(SimReader(Card.psam())))
    terminal.start()
    record = H("0C03") + H("110102")  # birthplace item 0C
    assert exchange(reader, "00DC0C3005" + record.hex()) == H("6982")
    assert terminal.external_authenticate("ssse_uk") == 0x9000
    assert exchange(reader, "00DC0C3005" + record.hex()) == H("9000")
    assert exchange(reader, "00B20C3005") == H("6982")  # reading EF06 needs RKSSSE on 3.00
    assert terminal.external_authenticate("ssse_rk") == 0x9000
    assert exchange(reader, "00B20C3005") == record + H("9000")
