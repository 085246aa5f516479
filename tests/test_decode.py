"""The trace decoder (reader/decode.py) on real-shaped exchanges made by the simulator itself.

Each test drives a freshly personalised card (default profile, CARD_DATE)
through `SimReader` - by hand or with the terminal kernels - and reads the
exchanges with a `Decoder` as a human reads a trace: the command's name and
fields, the status word's meaning, the response data decoded with the layout
the card's current file or transaction calls for.
"""

from pathlib import Path

import pytest
from conftest import CARD_DATE, activate_financial
from hypothesis import given, settings
from hypothesis import strategies as st

import chip.financial as fin
from chip import Card
from chip.ssse import DDF_NAME
from reader import Reader, SimReader
from reader.decode import CVR_BITS, Decoder, cvr_lines, explain
from reader.issuer import IssuerHost
from reader.payment_terminal import PaymentTerminal
from reader.psam import Psam
from reader.report import exchange
from reader.ssse_terminal import SsseTerminal

SELECT_SSSE = "00A404000F" + DDF_NAME.hex().upper()
SELECT_PSE = "00A404000E" + b"1PAY.SYS.DDF01".hex().upper() + "00"
SELECT_PPSE = "00A404000E" + b"2PAY.SYS.DDF01".hex().upper() + "00"
SELECT_AID = "00A4040008A00000033301010100"
GPO_3DES = "80A800000B8309000000001234015600" + "00"
CDOL1_DATA = "000000001234" "000000000000" "0156" "0000000000" "0156" "261121" "00" "11223344"


class Traced(Reader):
    """A reader whose every exchange is read by a Decoder; `log` keeps (command lines, response lines)."""

    def __init__(self, reader: Reader, decoder: Decoder | None = None):
        self.reader = reader
        self.decoder = decoder if decoder is not None else Decoder()
        self.log = []

    def reset(self) -> bytes:
        self.decoder.reset()
        return self.reader.reset()

    def transmit(self, apdu: bytes) -> bytes:
        response = self.reader.transmit(apdu)
        self.log.append((self.decoder.command(apdu), self.decoder.response(response)))
        return response

    def power_off(self) -> None:
        self.reader.power_off()

    def send(self, hexstr: str) -> tuple[list[str], list[str]]:
        self.transmit(bytes.fromhex(hexstr))
        return self.log[-1]

    def find(self, title: str) -> tuple[list[str], list[str]]:
        """The last exchange whose command line starts with `title`."""
        for command, response in reversed(self.log):
            if command[0].startswith(title):
                return command, response
        raise AssertionError(f"no exchange {title!r} in {[c[0] for c, _ in self.log]}")

    def titles(self) -> list[str]:
        return [command[0] for command, _ in self.log]


@pytest.fixture
def traced(reader):
    """A T=1 reader on a fresh card, reset, with a decoder that saw the reset."""
    t = Traced(reader)
    t.decoder.reset()
    return t


def ssse_terminal(card, traced_reader) -> SsseTerminal:
    return SsseTerminal(traced_reader, Psam(SimReader(Card.psam(date=CARD_DATE))))


# -- financial application: directories, FCI, GPO, records ------------------------------------------------------
def test_pse_fci_exact(traced):
    command, response = traced.send(SELECT_PSE)
    assert command == ["SELECT by DF name 1PAY.SYS.DDF01 (PSE)"]
    assert response == [
        "SW 9000 OK",
        "6F FCI template",
        "  84 DF name: 315041592E5359532E4444463031 = 1PAY.SYS.DDF01 (PSE)",
        "  A5 FCI proprietary template",
        "    88 SFI of the directory EF: 01 = SFI 1",
        '    5F2D language preference: 7A68 = "zh"',
    ]
    command, response = traced.send("00B2010C00")
    assert command == ["READ RECORD 01 of payment system directory (SFI 1)"]
    assert response == [
        "SW 9000 OK",
        "70 record template",
        "  61 application template",
        "    4F application identifier (AID): A000000333010101 = UnionPay debit",
        '    50 application label: 556E696F6E506179204465626974 = "UnionPay Debit"',
        "    87 application priority indicator: 01 = priority 1",
    ]


def test_ppse_fci_exact(traced):
    command, response = traced.send(SELECT_PPSE)
    assert command == ["SELECT by DF name 2PAY.SYS.DDF01 (PPSE)"]
    assert response == [
        "SW 9000 OK",
        "6F FCI template",
        "  84 DF name: 325041592E5359532E4444463031 = 2PAY.SYS.DDF01 (PPSE)",
        "  A5 FCI proprietary template",
        "    BF0C FCI issuer discretionary data",
        "      61 application template",
        "        4F application identifier (AID): A000000333010101 = UnionPay debit",
        '        50 application label: 556E696F6E506179204465626974 = "UnionPay Debit"',
        "        87 application priority indicator: 01 = priority 1",
    ]


def test_debit_aid_fci_and_gpo(traced):
    command, response = traced.send(SELECT_AID)
    assert command == ["SELECT by DF name A000000333010101 (UnionPay debit)"]
    assert response[:3] == ["SW 9000 OK", "6F FCI template", "  84 DF name: A000000333010101 = UnionPay debit"]
    assert response[5:9] == [
        "    87 application priority indicator: 01 = priority 1",
        "    9F38 PDOL: 9F02065F2A02DF6901",
        "      9F02 (6) amount, authorised",
        "      5F2A (2) transaction currency code",
    ]
    assert "    9F11 issuer code table index: 01 = ISO/IEC 8859-1" in response
    assert '    9F12 application preferred name: 556E696F6E506179204465626974 = "UnionPay Debit"' in response

    command, response = traced.send("80A800000B830900000000123401560100")
    assert command == [
        "GET PROCESSING OPTIONS (amount, currency, SM indicator DF69=01 SM4)",
        "  9F02 amount, authorised: 000000001234 = 12.34",
        "  5F2A transaction currency code: 0156 = CNY",
        "  DF69 SM algorithm indicator: 01 = SM4",
    ]
    assert response == [
        "SW 9000 OK",
        "77 response message template format 2",
        "  82 application interchange profile (AIP): 1C00 = cardholder verification supported, "
        "terminal risk management to be performed, issuer authentication supported",
        "  94 application file locator (AFL): 08010300",
        "    SFI 1, records 1-3, 0 for offline data authentication",
    ]


def test_the_three_emv_records(traced):
    traced.send(SELECT_AID)
    traced.send(GPO_3DES)
    command, first = traced.send("00B2010C00")
    assert command == ["READ RECORD 01 of application records (SFI 1)"]
    assert first == [
        "SW 9000 OK",
        "70 record template",
        "  57 track 2 equivalent data: 6234560000000008D36112200000000F = "
        "PAN 6234560000000008, expiry 2036-11, service code 220",
        '  5F20 cardholder name: 4C492F485541 = "LI/HUA"',
        "  9F1F track 1 discretionary data: (empty)",
    ]
    _, second = traced.send("00B2020C00")
    for line in (
        "  5A application PAN: 6234560000000008",
        "  5F24 application expiration date: 361121 = 2036-11-21",
        "  5F25 application effective date: 261121 = 2026-11-21",
        "  5F28 issuer country code: 0156 = China",
        "  8C CDOL1: 9F02069F03069F1A0295055F2A029A039C019F3704",
        "    9F37 (4) unpredictable number",
        "    8A (2) authorisation response code",
        "  9F42 application currency code: 0156 = CNY",
        "  9F44 application currency exponent: 02 = 2",
        "    4103: plaintext PIN verified by the ICC, if the terminal supports the CVM; next rule if unsuccessful",
    ):
        assert line in second
    cdol1 = second.index("  8C CDOL1: 9F02069F03069F1A0295055F2A029A039C019F3704")
    assert second[cdol1 + 1:cdol1 + 9] == [
        "    9F02 (6) amount, authorised", "    9F03 (6) amount, other", "    9F1A (2) terminal country code",
        "    95 (5) terminal verification results", "    5F2A (2) transaction currency code",
        "    9A (3) transaction date", "    9C (1) transaction type", "    9F37 (4) unpredictable number",
    ]
    _, third = traced.send("00B2030C00")
    assert third[2:] == [
        '  9F61 cardholder ID number: 313130313031313939303033303731323333 = "110101199003071233"',
        "  9F62 cardholder ID type: 00 = ID card",
    ]


# -- financial application: GENERATE AC, issuer authentication, scripts -----------------------------------------------
def purchase(card, sm4=False, pin="123456", activated=True):
    if activated:
        activate_financial(card)
    traced = Traced(SimReader(card))
    host = IssuerHost(card.config.profile)
    outcome = PaymentTerminal(traced, date=card.today).purchase(1234, pin=pin, sm4=sm4, host=host)
    return traced, outcome


def test_generate_ac_online_purchase(card):
    traced, outcome = purchase(card)
    assert outcome.approved
    command, response = traced.find("GENERATE AC first")
    assert command == [
        "GENERATE AC first requesting ARQC",
        "  9F02 amount, authorised: 000000001234 = 12.34",
        "  9F03 amount, other: 000000000000 = 0.00",
        "  9F1A terminal country code: 0156 = China",
        "  95 terminal verification results: 0000000000",
        "  5F2A transaction currency code: 0156 = CNY",
        "  9A transaction date: 261121 = 2026-11-21",
        "  9C transaction type: 00 = goods and services",
        "  9F37 unpredictable number: 11223344",
    ]
    assert response[:4] == [
        "SW 9000 OK",
        "77 response message template format 2",
        "  9F27 cryptogram information data: 80 = ARQC",
        "  9F36 application transaction counter (ATC): 0002 = 2",
    ]
    assert response[4].startswith("  9F26 application cryptogram: ") and len(response[4]) == 31 + 16
    assert response[5:] == [
        "  9F10 issuer application data: 07010A03A4100001",
        "    length 07, derivation key index 01, CVN 0A (3DES)",
        "    CVR 03A41000",
        "      first GENERATE AC: ARQC",
        "      second GENERATE AC: not requested",
        "      offline PIN verification performed",
        "      new card (never online)",
        "    algorithm 01 = 3DES",
    ]
    command, response = traced.find("EXTERNAL AUTHENTICATE")
    assert command[0] == "EXTERNAL AUTHENTICATE (issuer authentication: ARPC, ARC)"
    assert command[1].startswith("  ARPC: ")
    assert command[2] == '  8A authorisation response code: 3030 = "00" approved'
    assert response == ["SW 9000 OK"]
    command, response = traced.find("GENERATE AC second")
    assert command[:2] == ["GENERATE AC second requesting TC", '  8A authorisation response code: 3030 = "00" approved']
    assert command[2:] == traced.find("GENERATE AC first")[0][1:]  # the CDOL1 data again
    assert "  9F27 cryptogram information data: 40 = TC" in response
    assert response[-6:-1] == ["    CVR 03641000", "      first GENERATE AC: ARQC", "      second GENERATE AC: TC",
                               "      offline PIN verification performed", "      new card (never online)"]
    assert traced.find("VERIFY")[0] == ["VERIFY offline plaintext PIN (financial)", "  PIN block format 2: 6 digits"]


def test_generate_ac_sm4(card):
    traced, outcome = purchase(card, sm4=True)
    assert outcome.approved
    assert traced.find("GET PROCESSING OPTIONS")[0][0] == \
        "GET PROCESSING OPTIONS (amount, currency, SM indicator DF69=01 SM4)"
    response = traced.find("GENERATE AC first")[1]
    assert "    length 07, derivation key index 01, CVN 4A (SM4)" in response
    assert response[-1] == "    algorithm 04 = SM4"


def test_not_activated_card_declines_and_gets_activation_scripts(card):
    traced = Traced(SimReader(card))
    host = IssuerHost(card.config.profile)
    host.queue(host.profile.financial.pan, IssuerHost.activation("123456"))
    PaymentTerminal(traced, date=card.today).purchase(1234, host=host)
    response = traced.find("GENERATE AC first requesting ARQC")[1]
    assert "  9F27 cryptogram information data: 00 = AAC" in response
    cvr = response.index("    CVR 03801004")
    assert response[cvr + 1:cvr + 5] == ["      first GENERATE AC: AAC", "      second GENERATE AC: not requested",
                                         "      new card (never online)", "      application not activated"]
    command, response = traced.find("PIN CHANGE")
    assert command[0] == "PIN CHANGE (issuer script, new PIN enciphered)"
    assert command[1].startswith("  enciphered PIN block: ") and len(command[1]) == len("  enciphered PIN block: ") + 32
    assert command[2].startswith("  MAC4: ")
    command, response = traced.find("PUT DATA")
    assert command[:2] == ["PUT DATA DF7F activation flag (issuer script)", "  DF7F activation flag: 01 = activated"]
    assert response == ["SW 9000 OK"]
    assert card.financial_activated()


def test_get_data(traced):
    traced.send(SELECT_AID)
    assert traced.send("80CA9F3600") == (["GET DATA 9F36 ATC"], [
        "SW 9000 OK", "9F36 application transaction counter (ATC): 0000 = 0"])
    assert traced.send("80CA9F1700")[1][1] == "9F17 PIN try counter: 03 = 3 tries left"
    assert traced.send("80CADF7F00") == (["GET DATA DF7F activation flag"], [
        "SW 9000 OK", "DF7F activation flag: 00 = not activated"])
    command, response = traced.send("80CA9F4F00")
    assert command == ["GET DATA 9F4F log format"]
    assert "  9F4E (20) merchant name and location" in response


def test_every_cvr_bit_of_chip_financial_is_named():
    bits = {value for name, value in vars(fin).items() if name.startswith("CVR_")}
    ac_bits = {fin.CVR_FIRST_AC_ARQC, fin.CVR_FIRST_AC_TC, fin.CVR_SECOND_AC_TC, fin.CVR_SECOND_AC_NOT_REQUESTED}
    assert bits == set(CVR_BITS) | ac_bits
    assert cvr_lines(bytes.fromhex("03 00 00 0F")) == [
        "first GENERATE AC: AAC", "second GENERATE AC: AAC", "issuer script processing failed",
        "application not activated", "application blocked", "foreign currency declined offline",
    ]
    assert cvr_lines(bytes.fromhex("03 01 00 00"))[-1] == "byte 1 bit 01 (RFU)"


# -- SSSE: FCI, EF05/EF06 records (GBK), PIN, lifecycle ---------------------------------------------------------------
def test_ssse_fci_exact(traced):
    command, response = traced.send(SELECT_SSSE)
    assert command == ["SELECT by DF name sx1.sh.社会保障 (SSSE)"]
    assert response == [
        "SW 9000 OK",
        "6F FCI template",
        "  84 DF name: 7378312E73682EC9E7BBE1B1A3D5CF = sx1.sh.社会保障 (SSSE)",
        "  A5 FCI proprietary template",
        "    9F0C SSSE algorithm flag: 860104 = SM4 (flag 04)",
    ]


def test_ssse_fci_3des_flag():
    card = Card.from_profile("default-3des", date=CARD_DATE)
    traced = Traced(SimReader(card))
    traced.reset()
    assert traced.send(SELECT_SSSE)[1][-1] == "    9F0C SSSE algorithm flag: 860101 = 3DES (flag 01)"


def test_ef05_records_exact(traced):
    traced.send(SELECT_SSSE)
    assert traced.send("00B2012C00") == (["READ RECORD 01 of EF05 (SFI 5) — card identification code"], [
        "SW 9000 OK",
        "01 card identification code: 1101000000000001D156000005FFFFFF = "
        "region 110100, serial 0000000001, RID D156000005",
    ])
    assert traced.send("00B2052C00") == (["READ RECORD 05 of EF05 (SFI 5) — issue date"], [
        "SW 6982 security status not satisfied"])
    traced.send("0020000003123456")
    expected = {
        "02": ["READ RECORD 02 of EF05 (SFI 5) — card type", '02 card type: 33 = "3"'],
        "03": ["READ RECORD 03 of EF05 (SFI 5) — specification version", '03 specification version: 332E3030 = "3.00"'],
        "04": ["READ RECORD 04 of EF05 (SFI 5) — initialising institution",
               "04 initialising institution: 110100000000000000000001"],
        "05": ["READ RECORD 05 of EF05 (SFI 5) — issue date", "05 issue date: 20261121 = 2026-11-21"],
        "06": ["READ RECORD 06 of EF05 (SFI 5) — expiry date", "06 expiry date: 20361121 = 2036-11-21"],
        "07": ["READ RECORD 07 of EF05 (SFI 5) — card number", '07 card number: 543030303030303031 = "T00000001"'],
    }
    for number, (title, line) in expected.items():
        assert traced.send(f"00B2{number}2C00") == ([title], ["SW 9000 OK", line])


def test_ef06_records_exact(traced):
    traced.send(SELECT_SSSE)
    traced.send("0020000003123456")
    name = "C0EEBBAA" + "00" * 26  # 李华 in GBK, 00-padded to 30 bytes
    assert traced.send("00B2093000") == (["READ RECORD identifier 09 in EF06 (SFI 6) — name"], [
        "SW 9000 OK", f'09 name: {name} = "李华"'])
    assert traced.send("00B2083000") == (["READ RECORD identifier 08 in EF06 (SFI 6) — social security number"], [
        "SW 9000 OK", '08 social security number: 313130313031313939303033303731323333 = "110101199003071233"'])
    assert traced.send("00B20D3000")[1] == ["SW 9000 OK", "0D birth date: 19900307 = 1990-03-07"]
    assert traced.send("00B24E3000")[1] == ["SW 9000 OK", "4E name extension: " + "00" * 20 + ' = "" (empty)']
    # by record number: EF06 holds its items in the order 08 09 4E 0A 0B 0C 0D
    assert traced.send("00B2043400") == (["READ RECORD 04 of EF06 (SFI 6) — gender"], [
        "SW 9000 OK", '0A gender: 31 = "1" male'])
    assert traced.send("00B2053400")[1][1] == "0B ethnicity: 01 = GB/T 3304 code 1 (Han)"
    assert traced.send("00B2063400")[1][1] == "0C birthplace: 110101 = region 110101"
    # the current EF is now EF06: P2 04 (record number) and 00 (identifier) in it
    assert traced.send("00B2020400") == (["READ RECORD 02 of the current EF EF06 (SFI 6) — name"], [
        "SW 9000 OK", f'09 name: {name} = "李华"'])
    assert traced.send("00B2080000")[0] == ["READ RECORD identifier 08 in the current EF EF06 (SFI 6) — "
                                            "social security number"]


def test_select_by_fid_path_and_parent_track_the_current_ef(traced):
    traced.send(SELECT_SSSE)
    command, response = traced.send("00A4000002EF05")
    assert command == ["SELECT by FID EF05 (card data, SFI 5)"]
    assert response == [
        "SW 9000 OK",
        "62 FCP template",
        "  82 file descriptor: 0521 = working EF, linear variable, simple-TLV records",
        "  83 file identifier: EF05",
        "  88 short EF identifier: 28 = SFI 5",
    ]
    assert traced.send("00B2070400")[0] == ["READ RECORD 07 of the current EF EF05 (SFI 5) — card number"]
    assert traced.send("00A4010C02DF04") == (["SELECT child DF by FID DF04 (medical insurance), no response data"],
                                              ["SW 9000 OK"])
    assert traced.send("00A4030000")[0] == ["SELECT parent DF: DDF1 (SSSE)"]
    assert traced.send("00A4080004DDF1EF06")[0] == ["SELECT by path from MF DDF1/EF06 (holder data, SFI 6)"]
    assert traced.send("00B2010400")[0] == ["READ RECORD 01 of the current EF EF06 (SFI 6) — social security number"]
    assert traced.send("00A4040006D15600000504")[0] == ["SELECT by DF name D156000005 04 (DF04 medical insurance)"]


def test_ssse_security_commands_are_named_and_pins_not_shown(card, traced):
    terminal = ssse_terminal(card, traced)
    assert terminal.start() == 0x9000
    assert terminal.internal_authenticate(bytes(8), bytes(range(8)))
    assert terminal.change_pin("123456", "654321") == 0x9000
    assert terminal.verify("111111") == 0x63C5
    assert terminal.reload_pin("123456") == 0x9000
    assert terminal.unblock_pin() == 0x9000
    assert terminal.lock() == 0x9000
    assert terminal.start() == 0x6283
    assert terminal.unlock() == 0x9000
    assert terminal.lock(permanent=True) == 0x9000
    assert traced.titles() == [
        "SELECT by DF name sx1.sh.社会保障 (SSSE)",
        "READ RECORD 01 of EF05 (SFI 5) — card identification code",
        "INTERNAL AUTHENTICATE",
        "CHANGE PIN",
        "VERIFY SSSE PIN",
        "GET CHALLENGE (8 bytes)", "RELOAD PIN",
        "GET CHALLENGE (8 bytes)", "PIN UNBLOCK",
        "GET CHALLENGE (8 bytes)", "APPLICATION BLOCK (loss lock)",
        "SELECT by DF name sx1.sh.社会保障 (SSSE)",
        "GET CHALLENGE (8 bytes)", "APPLICATION UNBLOCK",
        "GET CHALLENGE (8 bytes)", "APPLICATION BLOCK (permanent)",
    ]
    command, response = traced.find("INTERNAL AUTHENTICATE")
    assert command[1:] == ["  factor: 0000000000000000", "  random: 0001020304050607"]
    assert response[0] == "SW 9000 OK" and response[1].startswith("answer E_IRK(random || factor): ")
    assert traced.find("CHANGE PIN")[0][1] == "  old PIN: 6 digits, new PIN: 6 digits"
    assert traced.find("VERIFY SSSE PIN") == (["VERIFY SSSE PIN", "  PIN: 6 digits"],
                                              ["SW 63C5 verification failed, 5 tries left"])
    assert traced.find("RELOAD PIN")[0][1] == "  new PIN: 6 digits"
    assert traced.find("SELECT by DF name")[1][0] == "SW 6283 selected application invalidated (locked)"
    assert traced.find("APPLICATION BLOCK (permanent)")[0][1].startswith("  MAC4: ")
    challenge = traced.find("GET CHALLENGE")[1]
    assert challenge[0] == "SW 9000 OK" and challenge[1].startswith("challenge: ")
    everything = "\n".join("\n".join(c + r) for c, r in traced.log)
    for pin in ("123456", "654321", "111111"):
        assert pin not in everything


def test_medical_visit_record(card, traced):
    terminal = ssse_terminal(card, traced)
    terminal.start()
    assert terminal.register(kind=2, amount=1234, date=CARD_DATE) == 0x9000
    assert traced.titles()[2:] == [
        "SELECT child DF by FID DF04 (medical insurance), no response data",
        "GET CHALLENGE (8 bytes)",
        "EXTERNAL AUTHENTICATE key 0A (RK)",
        "APPEND RECORD medical visit to EF15 (SFI 15h)",
    ]
    command, response = traced.find("APPEND RECORD")
    assert command == [
        "APPEND RECORD medical visit to EF15 (SFI 15h)",
        "  51 medical visit: 4831313031303130303030310220261121000004D2",
        '    institution: "H11010100001"',
        "    kind: 02 = outpatient",
        "    date: 2026-11-21",
        "    amount: 1234 fen = 12.34",
    ]
    assert response == ["SW 9000 OK"]
    assert traced.find("EXTERNAL AUTHENTICATE")[0][1].startswith("  cryptogram E_RK(challenge || 00..): ")
    command, response = traced.send("00B201AC00")  # record 1 of SFI 15h, still externally authenticated
    assert command == ["READ RECORD 01 of EF15 (SFI 15h) — medical visit"]
    assert response == ["SW 9000 OK"] + [line[2:] for line in traced.find("APPEND RECORD")[0][1:]]


def test_psam_commands(card):
    traced = Traced(SimReader(Card.psam(date=CARD_DATE)))
    psam = Psam(traced)
    psam.mac4("stk", 0x04, bytes.fromhex("1101000000000001"), bytes(16), bytes.fromhex("841E000004"))
    psam.encrypt("rk", 0x01, bytes.fromhex("1101000000000001"), bytes(16))
    assert traced.titles() == ["SELECT by DF name D156000005 PSAM (PSAM)", "DES INIT SM4 key 03 (STK master)",
                               "DES CRYPT MAC", "DES INIT 3DES key 01 (RK master)", "DES CRYPT encrypt"]
    command, response = traced.log[2]
    assert command == ["DES CRYPT MAC", "  IV: " + "00" * 16, "  message: 841E000004"]
    assert response[0] == "SW 9000 OK" and response[1].startswith("MAC4: ") and len(response[1]) == 6 + 8
    assert traced.log[1][0][1] == "  diversification data: 1101000000000001"
    assert traced.log[4][1][1].startswith("result: ")


# -- status words, T=0, state ------------------------------------------------------------------------------------------
def test_status_words(traced):
    traced.send(SELECT_SSSE)
    assert traced.send("0020000003111111")[1] == ["SW 63C5 verification failed, 5 tries left"]
    assert traced.send("00B2012C05")[1] == ["SW 6C12 wrong Le: 18 bytes available"]
    assert traced.send("00B2093000")[1] == ["SW 6982 security status not satisfied"]
    assert traced.send("00A4040008A00000033301010200") == (
        ["SELECT by DF name A000000333010102 (UnionPay credit)"], ["SW 6A82 file not found"])
    assert traced.send("FFEE000000") == (["unknown command CLA FF INS EE"], ["SW 6E00 class not supported"])
    assert traced.send("00C0000000") == (["GET RESPONSE (all remaining bytes)"],
                                         ["SW 6985 conditions of use not satisfied"])


def test_t0_get_response_chain(t0reader):
    traced = Traced(t0reader)
    traced.decoder.reset()
    assert traced.send(SELECT_SSSE) == (["SELECT by DF name sx1.sh.社会保障 (SSSE)"],
                                        ["SW 611B 27 more bytes available (GET RESPONSE)"])
    command, response = traced.send("00C0000010")  # part of it: 16 bytes, then 61 0B
    assert command == ["GET RESPONSE (16 bytes) for SELECT by DF name sx1.sh.社会保障 (SSSE)"]
    assert response == ["SW 610B 11 more bytes available (GET RESPONSE)",
                        "16 bytes so far; the rest follows by GET RESPONSE"]
    command, response = traced.send("00C000000B")
    assert command == ["GET RESPONSE (11 bytes) for SELECT by DF name sx1.sh.社会保障 (SSSE)"]
    assert response[1:] == ["6F FCI template",
                            "  84 DF name: 7378312E73682EC9E7BBE1B1A3D5CF = sx1.sh.社会保障 (SSSE)",
                            "  A5 FCI proprietary template",
                            "    9F0C SSSE algorithm flag: 860104 = SM4 (flag 04)"]
    assert traced.send("00B2012C00")[0] == ["READ RECORD 01 of EF05 (SFI 5) — card identification code"]


def test_reset_goes_back_to_the_mf_and_a_fresh_decoder_guesses(traced):
    traced.send(SELECT_SSSE)
    traced.reader.reset()
    traced.decoder.reset()
    assert traced.send("00B2012C00") == (["READ RECORD 01 of SFI 5"], ["SW 6A82 file not found"])
    assert traced.send("0020000003123456")[1] == ["SW 6A88 referenced data not found"]
    # a decoder that never saw the ATR does not know where the card is: SFI 5 is only EF05's
    fresh = Decoder()
    assert fresh.command(bytes.fromhex("00B2012C00")) == ["READ RECORD 01 of EF05 (SFI 5) — card identification code"]
    assert fresh.response(bytes.fromhex("0110" "1101000000000001D156000005FFFFFF" "9000"))[1].startswith(
        "01 card identification code: ")
    assert fresh.command(bytes.fromhex("00B2093000")) == ["READ RECORD identifier 09 in EF06 (SFI 6) — name"]


def test_a_new_transaction_starts_with_a_first_generate_ac(card):
    traced, _ = purchase(card)
    titles = [t for t in traced.titles() if t.startswith("GENERATE AC")]
    assert titles == ["GENERATE AC first requesting ARQC", "GENERATE AC second requesting TC"]
    traced.reset()
    traced.send(SELECT_AID)
    traced.send(GPO_3DES)
    assert traced.send("80AE4000" + "1D" + CDOL1_DATA + "00")[0][0] == "GENERATE AC first requesting TC"


# -- garbage never raises ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command, response, expected", [
    ("00B2012C00", "0110AAAAAA9000", ["SW 9000 OK", "not a simple-TLV record: 0110AAAAAA"]),
    ("00B2093000", "091E" + "FF" * 30 + "9000", ["SW 9000 OK", "09 name: " + "FF" * 30 + " (does not decode)"]),
    ("00B2013000", "0902C0EE9000", ["SW 9000 OK", "09 name: C0EE (expected 30 bytes, got 2)"]),
    ("00A4040008A00000033301010100", "6F03840899" + "9000", ["SW 9000 OK", "6F FCI template",
                                                             "  not BER-TLV (3 bytes): 840899"]),
    ("80AE80001D" + CDOL1_DATA + "00", "77FF9000", ["SW 9000 OK", "not BER-TLV (2 bytes): 77FF"]),
    ("0084000008", "9F", ["response without a status word (1 bytes): 9F"]),
    ("", "", ["response without a status word (0 bytes): (none)"]),
    ("00B2011C00", "DEADBEEF9000", ["SW 9000 OK", "data (4 bytes): DEADBEEF"]),
])
def test_garbage_is_hex(command, response, expected):
    decoder = Decoder()
    decoder.command(bytes.fromhex(command))
    assert decoder.response(bytes.fromhex(response)) == expected


def test_malformed_commands():
    decoder = Decoder()
    assert decoder.command(b"\x00\xA4") == [
        "malformed command APDU (2 bytes, a command has at least CLA INS P1 P2): 00A4"]
    assert decoder.command(bytes.fromhex("00A4040005AABB")) == [
        "malformed command APDU (CLA 00 INS A4): the length fields do not match the data (a card answers 6700): "
        "00A4040005AABB"]
    assert decoder.command(bytes.fromhex("80AE8000")) == ["GENERATE AC first requesting ARQC",
                                                          "  data (0 bytes, CDOL1 asks for 29): (none)"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=80)), max_size=6))
def test_random_streams_never_raise(stream):
    decoder = Decoder()
    for command, response in stream:
        lines = decoder.command(command) + decoder.response(response) + decoder.response(response, status=False)
        assert lines and all(isinstance(line, str) for line in lines)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["00A4040000", "00B2012C00", "00B2093000", "80A8000000", "80AE800000", "80CA9F1000",
                        "00B201AC00", "801A040100", "80FA050000", "00C0000000"]),
       st.binary(max_size=120), st.sampled_from([b"\x90\x00", b"\x61\x10", b"\x62\x83", b"\x6C\x05"]))
def test_random_data_after_real_commands_never_raises(command, data, sw):
    decoder = Decoder()
    decoder.command(bytes.fromhex(command))
    lines = decoder.response(data + sw)
    assert lines[0].startswith("SW ")


def test_curated_traces_decode_completely():
    """Every exchange of the project's curated traces gets a name and a decoded answer."""
    paths = sorted((Path(__file__).parent.parent / "apdu_traces").glob("*.apdu"))
    if not paths:
        pytest.skip("no curated traces")
    exchanges = 0
    for path in paths:
        decoder = Decoder()
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.partition("#")[0].strip()
            if line.lower().startswith("reset"):
                decoder.reset()
            elif line[:1] in (">", "<") and line:
                try:
                    data = bytes.fromhex(line[1:])
                except ValueError:  # a masked or captured expectation: not plain bytes
                    continue
                lines = decoder.command(data) if line[0] == ">" else decoder.response(data)
                text = "\n".join(lines)
                assert "unknown command" not in text and "not decoded" not in text, f"{path.name}: {text}"
                assert "not BER-TLV" not in text and "data (" not in text, f"{path.name}: {text}"
                exchanges += line[0] == ">"
    assert exchanges > 50


# -- explain() and report.exchange() ---------------------------------------------------------------------------------
def test_explain(traced):
    response = traced.reader.transmit(bytes.fromhex(SELECT_SSSE))
    assert explain(bytes.fromhex(SELECT_SSSE), response) == "\n".join([
        "SELECT by DF name sx1.sh.社会保障 (SSSE)",
        "    SW 9000 OK",
        "    6F FCI template",
        "      84 DF name: 7378312E73682EC9E7BBE1B1A3D5CF = sx1.sh.社会保障 (SSSE)",
        "      A5 FCI proprietary template",
        "        9F0C SSSE algorithm flag: 860104 = SM4 (flag 04)",
    ])
    decoder = Decoder()
    decoder.reset()
    assert explain(bytes.fromhex("0020000003111111"), bytes.fromhex("63C5"), decoder) == \
        "VERIFY SSSE PIN\n  PIN: 6 digits\n    SW 63C5 verification failed, 5 tries left"


def test_exchange_keeps_its_lines_and_appends_the_decoder(traced):
    command = bytes.fromhex("00B2072C00")
    traced.reader.transmit(bytes.fromhex(SELECT_SSSE))
    response = traced.reader.transmit(command)
    plain = "> 00 B2 07 2C 00    # card number\n< 07 09 54 30 30 30 30 30 30 30 31\n< 9000  OK"
    assert exchange(command, response, "card number") == plain
    decoder = Decoder()
    decoder.command(bytes.fromhex(SELECT_SSSE))
    decoder.response(b"\x90\x00")
    assert exchange(command, response, "card number", decoder=decoder) == plain + "\n" + "\n".join([
        "    READ RECORD 07 of EF05 (SFI 5) — card number",
        '    07 card number: 543030303030303031 = "T00000001"',
    ])
    assert exchange(bytes.fromhex("0020000003111111"), bytes.fromhex("63C5"), decoder=decoder) == "\n".join([
        "> 00 20 00 00 03 11 11 11",
        "< 63C5  verification failed, 5 tries left",
        "    VERIFY SSSE PIN",
        "      PIN: 6 digits",
    ])
