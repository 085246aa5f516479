"""The trace decoder (reader/decode/decoder.py) on real exchanges and on exchanges made by the simulator itself.

Real-trace tests feed a `Decoder` the bytes of real cards' traces (T1 `加密机方式指令流.txt`,
T2 `EgAPP-20180611.log`: tests/test_real_traces.py; the Sichuan reader spec's examples) and check
every line. Simulator tests drive a
freshly personalised card (default profile, CARD_DATE) - through `SimReader`,
or through a `tests/helpers.Session` whose cryptograms come from the
independent oracle - and read the exchanges as a human reads a trace: the
command's name and fields, the status word's meaning, the response data decoded
with the layout the card's current file or transaction calls for.
"""

from pathlib import Path

import helpers
import oracle
import pytest
from helpers import (
    CARD_DATE,
    DDF_NAME,
    HISTORICAL,
    REGION,
    SELECT_DF04,
    SELECT_SSSE,
    TRACES,
    VERIFY_OK,
    Session,
    activate_financial,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import chip.apps.financial as fin
from chip import Card, load_profile
from chip.card import KINDS
from reader import Reader, SimReader
from reader.decode.decoder import Decoder, explain
from reader.decode.tags import CVR_BITS, cvr_lines
from reader.report import exchange
from reader.terminals.issuer import IssuerHost
from reader.terminals.payment import PaymentTerminal
from reader.traces.format import parse as parse_trace
from reader.traces.replay import sim_reader_for

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

SELECT_PSE = helpers.SELECT_PSE + "00"
SELECT_PPSE = helpers.SELECT_PPSE + "00"
SELECT_AID = helpers.SELECT_FIN + "00"
GPO_3DES = "80A800000B8309000000001234015600" + "00"
CDOL1_DATA = "000000001234" "000000000000" "0156" "0000000000" "0156" "261121" "00" "11223344"

PSAM_SM4_NAME = "7378322E73682EC9E7BBE1B1A3D5CF"  # sx2.sh.社会保障: the PSAM's 16-byte environment (P9 §5)
SSSE_FCI_LINES = [
    "6F FCI template",
    "  84 DF name: 7378312E73682EC9E7BBE1B1A3D5CF = sx1.sh.社会保障 (SSSE)",
    "  A5 FCI proprietary template",
    "    88 SFI of the directory EF: 1E = SFI 1Eh",
    "    9F0C SSSE algorithm flag: 860103 = SM4, flag 03",
]


class _Log:
    """`log` keeps (command lines, response lines) of every exchange."""

    log: list

    def find(self, title: str) -> tuple[list[str], list[str]]:
        """The last exchange whose command line starts with `title`."""
        for command, response in reversed(self.log):
            if command[0].startswith(title):
                return command, response
        raise AssertionError(f"no exchange {title!r} in {[c[0] for c, _ in self.log]}")

    def titles(self) -> list[str]:
        return [command[0] for command, _ in self.log]

    def text(self) -> str:
        return "\n".join("\n".join(c + r) for c, r in self.log)


class Traced(_Log, Reader):
    """A reader whose every exchange is read by a Decoder."""

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

    def send_le(self, hexstr: str) -> tuple[list[str], list[str]]:
        """A case 2 command with Le 00, sent again with the Le of a `6Cxx` answer, as terminals do."""
        response = self.transmit(bytes.fromhex(hexstr))
        if len(response) == 2 and response[0] == 0x6C:
            self.transmit(bytes.fromhex(hexstr)[:-1] + response[1:])
        return self.log[-1]


class TracedSession(_Log, Session):
    """A `helpers.Session` (T=1: the card's own answers; oracle cryptograms) read by a Decoder."""

    def __init__(self, *args, **kwargs):
        self.decoder = Decoder()
        self.log = []
        super().__init__(*args, **kwargs)

    def reset(self, protocol: int | None = None) -> None:
        self.decoder.reset()
        super().reset(protocol)

    def tx(self, apdu: str) -> str:
        answer = self.last = super().tx(apdu)
        self.log.append((self.decoder.command(bytes.fromhex(apdu)), self.decoder.response(bytes.fromhex(answer))))
        return answer

    def send(self, apdu: str) -> tuple[list[str], list[str]]:
        self.tx(apdu)
        return self.log[-1]


def read_trace(decoder: Decoder, exchanges) -> list[tuple[list[str], list[str]]]:
    """Feed (command hex, response hex) pairs of a recorded trace to `decoder`."""
    return [(decoder.command(bytes.fromhex(c)), decoder.response(bytes.fromhex(r))) for c, r in exchanges]


@pytest.fixture
def traced(reader):
    """A reader on a fresh card (T=0: the reader fetches 61xx data, 6Cxx comes back), its decoder past the reset."""
    t = Traced(reader)
    t.decoder.reset()
    return t


@pytest.fixture
def session():
    return TracedSession()


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


# -- real traces (tests/test_real_traces.py) ----------------------------------------------------------------------
T1_FCI = "6F1C840F" + DDF_NAME + "A50988011E9F0C03860103" + "9000"


def test_t1_card_recognition_exact():
    """T1 steps 1-6: SELECT SSSE, SELECT EF05, READ RECORD by identifier 01, 03, 07."""
    decoder = Decoder()
    decoder.reset()
    assert read_trace(decoder, [
        ("00A404000F" + DDF_NAME, T1_FCI),
        ("00A4020002EF05", "9000"),
        ("00B2010012", "0110519900D15600000510000B26FFFFFFFF9000"),
        ("00B2030006", "0304332E30309000"),
        ("00B207000B", "0709484131303436393234" "9000"),
    ]) == [
        (["SELECT by DF name sx1.sh.社会保障 (SSSE)"], ["SW 9000 OK"] + SSSE_FCI_LINES),
        (["SELECT EF by FID EF05 (card data, SFI 5)"], ["SW 9000 OK"]),
        (["READ RECORD identifier 01 in the current EF EF05 (SFI 5) — card identification code"], [
            "SW 9000 OK",
            "01 card identification code: 519900D15600000510000B26FFFFFFFF = "
            "region 519900, RID D156000005, serial 10000B26, authentication code FFFFFFFF"]),
        (["READ RECORD identifier 03 in the current EF EF05 (SFI 5) — specification version"], [
            "SW 9000 OK", '03 specification version: 332E3030 = "3.00"']),
        (["READ RECORD identifier 07 in the current EF EF05 (SFI 5) — card number"], [
            "SW 9000 OK", '07 card number: 484131303436393234 = "HA1046924"']),
    ]


def test_t1_authentication_and_pin_reset_exact():
    """T1 steps 7-19: challenges, INTERNAL AUTHENTICATE (8-byte answer), EXTERNAL AUTHENTICATE with RKSSSE,
    protected EF06 reads, EXTERNAL AUTHENTICATE with PUK and the PIN reset 84 24 00 01 (enciphered)."""
    decoder = Decoder()
    decoder.reset()
    log = read_trace(decoder, [
        ("00A404000F" + DDF_NAME, T1_FCI),
        ("0084000008", "DBF7A936D0D18C9E9000"),
        ("0088000010" "32D9E876ADB31BBF" "DBF7A936D0D18C9E", "F4A0CF965BDCEA309000"),
        ("0082000A10" "774A08EDF447A1DE" "E603E2CAADAF02B6", "9000"),
        ("00A4020002EF06", "9000"),
        ("00B2080014", "0812" + b"510122201610225130".hex() + "9000"),
        ("00B2090020", "091E" "B0D7D5DCD3EE" + "00" * 24 + "9000"),
        ("00B24E0016", "4E14" + "00" * 20 + "9000"),
        ("0082000610" "50C45431554CBADC" "1B0D7286F2DC77AF", "9000"),
        ("00A404000F" + DDF_NAME, T1_FCI),
        ("0084000008", "2AFD6A015D2D9BAC9000"),
        ("8424000114" "2BC19C17AE974CD2427039C301CFF79F" "FD937AA7", "9000"),
    ])
    assert log[1] == (["GET CHALLENGE (8 bytes)"], ["SW 9000 OK", "challenge: DBF7A936D0D18C9E"])
    assert log[2] == ([
        "INTERNAL AUTHENTICATE with IRK (key 00)",
        "  R1 (process-key factor): 32D9E876ADB31BBF",
        "  R2 (original data): DBF7A936D0D18C9E",
    ], ["SW 9000 OK", "authentication data: F4A0CF965BDCEA30"])
    assert log[3] == ([
        "EXTERNAL AUTHENTICATE with RKSSSE (key 0A)",
        "  authentication data: 774A08EDF447A1DE",
        "  original data: E603E2CAADAF02B6",
    ], ["SW 9000 OK"])
    assert log[5] == (["READ RECORD identifier 08 in the current EF EF06 (SFI 6) — social security number"], [
        "SW 9000 OK", '08 social security number: 353130313232323031363130323235313330 = "510122201610225130"'])
    assert log[6][1] == ["SW 9000 OK", "09 name: B0D7D5DCD3EE" + "00" * 24 + ' = "白哲宇"']
    assert log[7][1] == ["SW 9000 OK", "4E name extension: " + "00" * 20 + ' = "" (empty)']
    assert log[8][0][0] == "EXTERNAL AUTHENTICATE with PUK (key 06)"
    assert log[11] == ([
        "PIN CHANGE/UNBLOCK: PIN reset (new PIN enciphered)",
        "  enciphered LD || PIN: 2BC19C17AE974CD2427039C301CFF79F (16 bytes)",
        "  MAC4: FD937AA7",
    ], ["SW 9000 OK"])


def test_t2_and_sichuan_examples():
    """T2's identification code (a real authentication code), the Sichuan spec's DES-form PUK
    authentication and PIN reset (§8.25), and an external authentication with a key version byte."""
    decoder = Decoder()
    decoder.reset()
    decoder.command(bytes.fromhex("00A404000F" + DDF_NAME))
    decoder.response(bytes.fromhex("6F1C840F" + DDF_NAME + "A50988011E9F0C038601019000"))
    assert read_trace(decoder, [
        ("00A4020002EF05", "9000"),
        ("00B2010012", "0110510100D156000005C0666779C8C975CC9000"),
        ("0082000610" "EAB79DF1F8396CAC" "0800000000000000", "9000"),
        ("842400010C" "3CE013167A69889E" "3EC87CA5", "9000"),
        ("0082000A11" "774A08EDF447A1DE" "E603E2CAADAF02B6" "01", "63C2"),
    ])[1:] == [
        (["READ RECORD identifier 01 in the current EF EF05 (SFI 5) — card identification code"], [
            "SW 9000 OK", "01 card identification code: 510100D156000005C0666779C8C975CC = "
                          "region 510100, RID D156000005, serial C0666779, authentication code C8C975CC"]),
        (["EXTERNAL AUTHENTICATE with PUK (key 06)", "  authentication data: EAB79DF1F8396CAC",
          "  original data: 0800000000000000"], ["SW 9000 OK"]),
        (["PIN CHANGE/UNBLOCK: PIN reset (new PIN enciphered)", "  enciphered LD || PIN: 3CE013167A69889E (8 bytes)",
          "  MAC4: 3EC87CA5"], ["SW 9000 OK"]),
        (["EXTERNAL AUTHENTICATE with RKSSSE (key 0A)", "  authentication data: 774A08EDF447A1DE",
          "  original data: E603E2CAADAF02B6", "  key version: 01"], ["SW 63C2 verification failed, 2 tries left"]),
    ]


def test_t1_and_t2_fci_name_the_algorithm():
    for flag, name in ((0x01, "DES family (3DES)"), (0x02, "SSF33"), (0x03, "SM4"), (0x04, None)):
        decoder = Decoder()
        decoder.command(bytes.fromhex("00A404000F" + DDF_NAME))
        line = decoder.response(bytes.fromhex(f"6F1C840F{DDF_NAME}A50988011E9F0C038601{flag:02X}9000"))[-1]
        expected = f"{name}, flag {flag:02X}" if name else f"unknown algorithm flag {flag:02X}"
        assert line == f"    9F0C SSSE algorithm flag: 8601{flag:02X} = {expected}"


# -- SSSE on the simulator: FCI, records, selection ------------------------------------------------------------------
def test_ssse_fci_exact(traced):
    assert traced.send(SELECT_SSSE) == (["SELECT by DF name sx1.sh.社会保障 (SSSE)"], ["SW 9000 OK"] + SSSE_FCI_LINES)


def test_ssse_fci_3des_flag():
    traced = Traced(SimReader(Card.from_profile("default-3des", date=CARD_DATE)))
    traced.reset()
    assert traced.send(SELECT_SSSE)[1][-1] == "    9F0C SSSE algorithm flag: 860101 = DES family (3DES), flag 01"


def test_ef05_records_exact(traced):
    traced.send(SELECT_SSSE)
    expected = {
        "01": ["READ RECORD 01 of EF05 (SFI 5) — card identification code",
               "01 card identification code: 110100D1560000050000000100000000 = "
               "region 110100, RID D156000005, serial 00000001, authentication code 00000000"],
        "02": ["READ RECORD 02 of EF05 (SFI 5) — card type", '02 card type: 33 = "3"'],
        "03": ["READ RECORD 03 of EF05 (SFI 5) — specification version", '03 specification version: 332E3030 = "3.00"'],
        "04": ["READ RECORD 04 of EF05 (SFI 5) — initialising institution",
               "04 initialising institution: 915600000211010011010001"],
        "05": ["READ RECORD 05 of EF05 (SFI 5) — issue date", "05 issue date: 20261121 = 2026-11-21"],
        "06": ["READ RECORD 06 of EF05 (SFI 5) — expiry date", "06 expiry date: 20361121 = 2036-11-21"],
        "07": ["READ RECORD 07 of EF05 (SFI 5) — card number", '07 card number: 543030303030303031 = "T00000001"'],
    }
    lengths = {"01": 0x12, "02": 3, "03": 6, "04": 0x0E, "05": 6, "06": 6, "07": 0x0B}
    for number, (title, line) in expected.items():  # Le counts the record's tag and length (P5 §6.10)
        assert traced.send(f"00B2{number}2C{lengths[number]:02X}") == ([title], ["SW 9000 OK", line])
    assert traced.send("00B2012C00") == (["READ RECORD 01 of EF05 (SFI 5) — card identification code"],
                                         ["SW 6C12 wrong Le: 18 bytes available"])


def test_ef06_records_after_rksse(session):
    session.select()
    assert session.send("00B2093020") == (["READ RECORD identifier 09 in EF06 (SFI 6) — name"], [
        "SW 6982 security status not satisfied"])
    assert session.external_auth("ssse_rk") == "9000"
    name = "C0EEBBAA" + "00" * 26  # 李华 in GBK, 00-padded to 30 bytes
    assert session.send("00B2093020") == (["READ RECORD identifier 09 in EF06 (SFI 6) — name"], [
        "SW 9000 OK", f'09 name: {name} = "李华"'])
    assert session.send("00B2083014") == (["READ RECORD identifier 08 in EF06 (SFI 6) — social security number"], [
        "SW 9000 OK", '08 social security number: 313130313031313939303033303731323333 = "110101199003071233"'])
    assert session.send("00B20D3006")[1] == ["SW 9000 OK", "0D birth date: 19900307 = 1990-03-07"]
    assert session.send("00B24E3016")[1] == ["SW 9000 OK", "4E name extension: " + "00" * 20 + ' = "" (empty)']
    # by record number: EF06 holds its items in the order 08 09 4E 0A 0B 0C 0D
    assert session.send("00B2043403") == (["READ RECORD 04 of EF06 (SFI 6) — gender"], [
        "SW 9000 OK", '0A gender: 31 = "1" male'])
    assert session.send("00B2053403")[1][1] == "0B ethnicity: 01 = GB/T 3304 code 01 (Han)"
    assert session.send("00B2063405")[1][1] == "0C birthplace: 110101 = region 110101"
    # the current EF is now EF06: P2 04 (record number) and 00 (identifier) in it
    assert session.send("00B2020420") == (["READ RECORD 02 of the current EF EF06 (SFI 6) — name"], [
        "SW 9000 OK", f'09 name: {name} = "李华"'])
    assert session.send("00B2080014")[0] == ["READ RECORD identifier 08 in the current EF EF06 (SFI 6) — "
                                            "social security number"]
    # the other addressing modes of P5 table 32
    assert session.send("00B2063500") == (["READ RECORD 06 to the last of EF06 (SFI 6)"],
                                          ["SW 6C0B wrong Le: 11 bytes available"])
    assert session.send("00B206350B") == (["READ RECORD 06 to the last of EF06 (SFI 6)"], [
        "SW 9000 OK", "0C birthplace: 110101 = region 110101", "0D birth date: 19900307 = 1990-03-07"])
    assert session.send("00B2063600")[0] == ["READ RECORD the last down to 06 of EF06 (SFI 6)"]
    assert session.send("00B2093100")[0] == ["READ RECORD last occurrence of identifier 09 in EF06 (SFI 6) — name"]
    assert session.send("00B2093200")[0] == ["READ RECORD next occurrence of identifier 09 in EF06 (SFI 6) — name"]
    assert session.send("00B2093300")[0] == [
        "READ RECORD previous occurrence of identifier 09 in EF06 (SFI 6) — name"]
    assert session.send("00B2013700")[0] == ["READ RECORD 01 of EF06 (SFI 6), P2 37 (addressing mode 7: RFU)"]


def test_dir_records_name_the_applications(traced):
    traced.send(SELECT_SSSE)
    assert traced.send("00B201F400") == (["READ RECORD 01 of directory (SFI 1Eh)"],
                                         ["SW 6C1A wrong Le: 26 bytes available"])
    assert traced.send("00B201F41A") == (["READ RECORD 01 of directory (SFI 1Eh)"], [
        "SW 9000 OK",
        "61 application template",
        "  4F application identifier (AID): D15600000500 = D156000005 00 (DF01 public: 公共应用信息区)",
        '  50 application label: B9ABB9B2D3A6D3C3D0C5CFA2C7F8 = "公共应用信息区"',
    ])
    labels = [traced.send_le(f"00B20{n}F400")[1][2] for n in range(2, 6)]
    assert labels == [
        "  4F application identifier (AID): D15600000501 = D156000005 01 (DF02 employment: 就业与失业信息区)",
        "  4F application identifier (AID): D15600000502 = D156000005 02 (DF03 social insurance 1: 社会保险信息区1)",
        "  4F application identifier (AID): D15600000503 = D156000005 03 (DF04 medical insurance: 社会保险信息区2)",
        "  4F application identifier (AID): D15600000504 = D156000005 04 (DF07 personnel: 人事人才信息区)",
    ]
    assert traced.send("00B206F400")[1] == ["SW 6A83 record not found"]
    assert traced.titles()[-2:] == ["READ RECORD 05 of directory (SFI 1Eh)", "READ RECORD 06 of directory (SFI 1Eh)"]


def test_select_by_name_fid_path_and_parent_track_the_current_ef(traced):
    traced.send(SELECT_SSSE)
    assert traced.send("00A4000002EF05") == (["SELECT by FID EF05 (card data, SFI 5)"], ["SW 9000 OK"])  # no FCI
    command, response = traced.send("00A4000402EF05")
    assert command == ["SELECT by FID EF05 (card data, SFI 5), FCP"]
    assert response == [
        "SW 9000 OK",
        "62 FCP template",
        "  82 file descriptor: 0521 = working EF, linear variable, simple-TLV records",
        "  83 file identifier: EF05",
        "  88 short EF identifier: 28 = SFI 5",
    ]
    assert traced.send("00B2070400")[0] == ["READ RECORD 07 of the current EF EF05 (SFI 5) — card number"]
    assert traced.send("00A4010C02DF04") == (["SELECT child DF by FID DF04 (medical insurance: 社会保险信息区2), "
                                              "no response data"], ["SW 9000 OK"])
    assert traced.send("00A4020002EF08") == (["SELECT EF by FID EF08 (medical transaction detail, SFI 8)"],
                                              ["SW 9000 OK"])
    assert traced.send("00A4030000")[0] == ["SELECT parent DF: DDF1 (SSSE)"]
    assert traced.send("00A4080004DDF1EF06")[0] == ["SELECT by path from MF DDF1/EF06 (holder data, SFI 6)"]
    assert traced.send("00B2010400")[0] == ["READ RECORD 01 of the current EF EF06 (SFI 6) — social security number"]
    titles = [traced.send(f"00A4040006D156000005{pix:02X}")[0][0] for pix in range(5)]
    assert titles == [
        "SELECT by DF name D156000005 00 (DF01 public: 公共应用信息区)",
        "SELECT by DF name D156000005 01 (DF02 employment: 就业与失业信息区)",
        "SELECT by DF name D156000005 02 (DF03 social insurance 1: 社会保险信息区1)",
        "SELECT by DF name D156000005 03 (DF04 medical insurance: 社会保险信息区2)",
        "SELECT by DF name D156000005 04 (DF07 personnel: 人事人才信息区)",
    ]
    assert traced.send("00A4040006D15600000503") == (["SELECT by DF name D156000005 03 (DF04 medical insurance: "
                                                      "社会保险信息区2)"], [
        "SW 9000 OK", "6F FCI template",
        "  84 DF name: D15600000503 = D156000005 03 (DF04 medical insurance: 社会保险信息区2)"])
    assert traced.send("00B2012C00")[0] == ["READ RECORD 01 of DF04 EF05 (SFI 5) — medical basic data"]
    assert traced.send("00A4040005D156000005")[0] == [
        "SELECT by DF name D156000005 (right-truncated: DF01 public: 公共应用信息区)"]


def test_medical_records_and_getdata(traced):
    traced.send(SELECT_SSSE)
    assert traced.send("80CADF7E00") == (["GET DATA DF7E SSSE activation state (extension)"], [
        "SW 9000 OK", "DF7E SSSE activation state (extension): 00 = issued"])
    assert traced.send("80CADF7D00") == (["GET DATA DF7D SSSE lock reason (extension)"], [
        "SW 9000 OK", "DF7D SSSE lock reason (extension): 00 = none"])
    traced.send(SELECT_DF04)
    assert traced.send("00B2012C05")[1] == ["SW 6982 security status not satisfied"]
    traced.send(VERIFY_OK)
    assert traced.send("00B2012C05") == (["READ RECORD 01 of DF04 EF05 (SFI 5) — medical basic data"], [
        "SW 9000 OK", "84 medical-insurance region: 110100 = region 110100"])
    assert traced.send("00B2028C00") == (["READ RECORD 02 of SFI 11h"], ["SW 6A82 file not found"])
    assert traced.send("00B28F2803") == (["READ RECORD identifier 8F in DF04 EF05 (SFI 5) — card-use mode"], [
        "SW 9000 OK", '8F card-use mode: 32 = "2" offline'])
    assert traced.send("00B2013403") == (["READ RECORD 01 of DF04 EF06 (SFI 6) — offline settlement"],
                                         ["SW 6982 security status not satisfied"])


def test_df04_settlement_and_special_records(session):
    session.select()
    session.tx(SELECT_DF04)
    session.tx(VERIFY_OK)
    assert session.external_auth("df04_rk1") == "9000"
    assert session.log[-1][0][0] == "EXTERNAL AUTHENTICATE with RK1DF04 (key 84)"
    assert [session.send(f"00B20{n}34{le:02X}")[1][1] for n, le in ((1, 3), (2, 6), (3, 4))] == [
        '90 offline settlement allowed: 31 = "1" allowed',
        "92 offline settlement total (fen): 0FFFFFFF = 0",
        '93 offline settlement count: 3030 = "00"',
    ]
    assert session.external_auth("df04_uk2") == "9000"
    assert session.send("00DC00AB03000132") == ([
        "UPDATE RECORD new record (mode 011) in DF04 EF15 (SFI 15h) with special settlement",
        "  special settlement: 000132",
        "    sequence number: 0001 = 1",
        '    category: 32 = "2" maternity medical',
    ], ["SW 9000 OK"])
    assert session.send("00B201AC03") == (["READ RECORD 01 of DF04 EF15 (SFI 15h) — special settlement"], [
        "SW 9000 OK", "special settlement: 000132", "  sequence number: 0001 = 1",
        '  category: 32 = "2" maternity medical'])


# -- PIN, authentication, maintenance: every command named, no PIN shown ------------------------------------------
def test_pin_and_maintenance_commands(session):
    session.select()
    assert session.tx("0020000003111111") == "63C5"
    assert session.tx(VERIFY_OK) == "9000"
    assert session.tx("00200000") == "63C6"
    assert session.tx("805E010007123456FF654321") == "9000"
    assert session.external_auth("ssse_puk") == "9000"
    assert session.tx(session.pin_reset_apdu(bytes.fromhex("123456"))) == "9000"
    assert session.external_auth("ssse_puk") == "9000"
    assert session.tx(session.mac_apdu("84240000")) == "9000"
    assert session.loss_lock() == "9000"
    session.tx(SELECT_SSSE)
    assert session.tx("80CADF7D00") == "DF7D01019000"
    assert session.unlock() == "9000"
    assert session.block_application() == "9000"
    assert session.tx(SELECT_SSSE) == "9303"
    assert session.tx("00B2012C12") == "9303"
    assert session.titles() == [
        "SELECT by DF name sx1.sh.社会保障 (SSSE)",
        "VERIFY SSSE PIN", "VERIFY SSSE PIN", "VERIFY SSSE PIN",
        "CHANGE PIN",
        "GET CHALLENGE (8 bytes)", "EXTERNAL AUTHENTICATE with PUK (key 06)",
        "GET CHALLENGE (8 bytes)", "PIN CHANGE/UNBLOCK: PIN reset (new PIN enciphered)",
        "GET CHALLENGE (8 bytes)", "EXTERNAL AUTHENTICATE with PUK (key 06)",
        "GET CHALLENGE (8 bytes)", "PIN CHANGE/UNBLOCK: PIN unblock (try counter only)",
        "GET CHALLENGE (8 bytes)", "EXTERNAL AUTHENTICATE with BK (key 05)",
        "GET CHALLENGE (8 bytes)", "APPLICATION BLOCK (loss lock, extension)",
        "SELECT by DF name sx1.sh.社会保障 (SSSE)",
        "GET DATA DF7D SSSE lock reason (extension)",
        "GET CHALLENGE (8 bytes)", "EXTERNAL AUTHENTICATE with BK (key 05)",
        "GET CHALLENGE (8 bytes)", "APPLICATION UNBLOCK (lifts the loss lock, extension)",
        "GET CHALLENGE (8 bytes)", "EXTERNAL AUTHENTICATE with BK (key 05)",
        "GET CHALLENGE (8 bytes)", "APPLICATION BLOCK (permanent)",
        "SELECT by DF name sx1.sh.社会保障 (SSSE)",
        "READ RECORD 01 of EF05 (SFI 5) — card identification code",
    ]
    assert session.log[1] == (["VERIFY SSSE PIN", "  PIN: 6 digits"], ["SW 63C5 verification failed, 5 tries left"])
    assert session.log[3][0] == ["VERIFY SSSE PIN", "  no data: asks whether a PIN is set (63Cx: tries left; "
                                                    "9000: no PIN)"]
    assert session.find("CHANGE PIN")[0][1] == "  old PIN: 6 digits, new PIN: 6 digits"
    reset = session.find("PIN CHANGE/UNBLOCK: PIN reset")[0]
    assert reset[1].startswith("  enciphered LD || PIN: ") and reset[1].endswith(" (16 bytes)")
    assert reset[2].startswith("  MAC4: ") and len(reset) == 3
    assert session.find("PIN CHANGE/UNBLOCK: PIN unblock")[0][1:] == [session.log[12][0][1]]
    assert session.log[12][0][1].startswith("  MAC4: ")
    assert session.find("EXTERNAL AUTHENTICATE")[0][2] == "  original data: 0102030405060708"
    assert session.log[17][1][0] == "SW 6283 selected application invalidated (locked)"
    assert session.log[18][1] == ["SW 9000 OK", "DF7D SSSE lock reason (extension): 01 = reported"]
    assert session.log[-2][1] == ["SW 9303 application permanently blocked"]
    assert session.log[-1][1] == ["SW 9303 application permanently blocked"]
    for pin in ("123456", "654321", "111111"):
        assert pin not in session.text()


def test_internal_authenticate_and_card_block(session):
    session.select()
    r1, r2 = session.challenge(), session.challenge()
    command, response = session.send(f"0088000011{r1.hex().upper()}{r2.hex().upper()}01")
    assert command == ["INTERNAL AUTHENTICATE with IRK (key 00)", f"  R1 (process-key factor): {r1.hex().upper()}",
                       f"  R2 (original data): {r2.hex().upper()}", "  key version: 01"]
    assert response[0] == "SW 9000 OK" and response[1].startswith("authentication data: ") and len(response[1]) == 37
    assert session.send("0084000010")[0] == ["GET CHALLENGE (16 bytes)"]
    assert session.block_card() == "9000"
    assert session.find("CARD BLOCK") == (["CARD BLOCK", session.log[-1][0][1]], ["SW 9000 OK"])
    assert session.send(SELECT_SSSE)[1] == ["SW 6A81 function not supported / card blocked"]


def test_update_record_and_update_binary(session):
    session.select()
    assert session.external_auth("ssse_uk") == "9000"
    record = "0709" + b"T00000002".hex().upper()
    assert session.send("00DC072C0B" + record) == ([
        "UPDATE RECORD 07 of EF05 (SFI 5) with card number",
        '  07 card number: 543030303030303032 = "T00000002"',
    ], ["SW 9000 OK"])
    command, response = session.send(session.mac_apdu("04DC0704", bytes.fromhex("0709" + b"T00000003".hex())))
    assert command[:2] == ["UPDATE RECORD 07 of the current EF EF05 (SFI 5) with card number, secure messaging (MAC)",
                           '  07 card number: 543030303030303033 = "T00000003"']
    assert command[2].startswith("  MAC4: ") and len(command) == 3
    assert response == ["SW 9000 OK"]
    assert session.send("00DC0200030201" "33")[0][0] == ("UPDATE RECORD identifier 02 in the current EF EF05 (SFI 5) "
                                                         "with card type")
    assert session.send("00D6870004DEADBEEF") == ([
        "UPDATE BINARY EF07 (SFI 7) from offset 0 — fingerprint", "  data (4 bytes): DEADBEEF"], ["SW 9000 OK"])
    command, response = session.send(session.mac_apdu("04D60004", bytes.fromhex("0102")))
    assert command[:2] == ["UPDATE BINARY the current EF EF07 (SFI 7) from offset 4 — fingerprint, "
                           "secure messaging (MAC)", "  data (2 bytes): 0102"]
    assert response == ["SW 9000 OK"]
    assert session.external_auth("ssse_rk") == "9000"
    assert session.send("00B0870006") == (["READ BINARY EF07 (SFI 7) from offset 0 — fingerprint"], [
        "SW 9000 OK", "6 bytes: DEADBEEF0102"])


# -- the medical purse of DF04 (P5 §7) ------------------------------------------------------------------------------
TERMINAL = "110100000001"
PURSE_KEYS = {name: oracle.card_key("sm4", load_profile().keys[name], 1, REGION, HISTORICAL)
              for name in ("df04_dlk", "df04_dpk")}


def test_medical_purse_commands_exact(session):
    session.select()
    session.tx(SELECT_DF04)
    assert session.send("B02C01000F" + "00" * 15 + "08")[1] == ["SW 6901 command not accepted (medical purse state)"]
    assert session.send("B026000104")[1] == ["SW 6982 security status not satisfied"]
    session.tx(VERIFY_OK)
    # load 10.00 from the host
    command, response = session.send("B02800010B" "01" "000003E8" + TERMINAL + "10")
    assert command == ["INITIALIZE FOR LOAD", "  key index: 01", "  amount: 000003E8 = 1000 fen = 10.00",
                       f"  terminal number: {TERMINAL}"]
    answer = bytes.fromhex(session.last[:-4])
    random, counter = answer[8:12], int.from_bytes(answer[4:6], "big")
    assert response == ["SW 9000 OK", "personal account balance: 0000C350 = 50000 fen = 500.00",
                        "load counter: 0000 = 0", "key version: 01", "algorithm: 03 = SM4",
                        f"pseudo-random: {random.hex().upper()}", f"MAC1: {answer[12:16].hex().upper()}"]
    ks = oracle.seslk("sm4", PURSE_KEYS["df04_dlk"], random, counter)
    mac2 = oracle.mac4("sm4", ks, bytes.fromhex("000003E8" "31" + TERMINAL + "20261121093000"))
    command, response = session.send("B02A00000B" "20261121093000" + mac2.hex().upper() + "04")
    assert command == ["CREDIT FOR LOAD", "  host time: 20261121093000 = 2026-11-21 09:30:00",
                       f"  MAC2: {mac2.hex().upper()}"]
    assert response[0] == "SW 9000 OK" and response[1].startswith("TAC: ") and len(response) == 2
    # a purchase of 12.34, 2.00 of it self-paid, 3.00 from the pooled fund
    amounts = "000004D2" "000000C8" "0000012C"
    command, response = session.send("B028010113" "01" + amounts + TERMINAL + "16")
    assert command == ["INITIALIZE FOR PURCHASE", "  key index: 01", "  account amount: 000004D2 = 1234 fen = 12.34",
                       "  self-pay amount: 000000C8 = 200 fen = 2.00",
                       "  pooled-fund amount: 0000012C = 300 fen = 3.00",
                       f"  terminal number: {TERMINAL}"]
    answer = bytes.fromhex(session.last[:-4])
    assert response[:7] == ["SW 9000 OK", "personal account balance: 0000C738 = 51000 fen = 510.00",
                            "annual self-pay total: 00000000 = 0 fen = 0.00",
                            "annual pooled-fund total: 00000000 = 0 fen = 0.00", "payment year: 0000 = none yet",
                            "purchase counter: 0000 = 0", "key version: 01"]
    assert response[7:] == ["algorithm: 03 = SM4", f"pseudo-random: {answer[18:22].hex().upper()}"]
    ks = oracle.sespk("sm4", PURSE_KEYS["df04_dpk"], answer[18:22], 0, bytes.fromhex("00000001"))
    mac1 = oracle.mac4("sm4", ks, bytes.fromhex(amounts + "32" + TERMINAL + "20261121100000"))
    command, response = session.send("B02C01000F" "00000001" "20261121100000" + mac1.hex().upper() + "08")
    assert command == ["DEBIT FOR PURCHASE", "  terminal transaction number: 00000001 = 1",
                       "  terminal time: 20261121100000 = 2026-11-21 10:00:00", f"  MAC1: {mac1.hex().upper()}"]
    mac2 = oracle.mac4("sm4", ks, bytes.fromhex(amounts))
    assert response[0] == "SW 9000 OK" and response[1].startswith("TAC: ")
    assert response[2] == f"MAC2: {mac2.hex().upper()}"
    tac = response[1][5:]
    # reads: balances, proof, starting day, the detail records of EF08
    assert session.send("B026000104") == (["GET BALANCE personal account (CIA)"], [
        "SW 9000 OK", "personal account balance: 0000C266 = 49766 fen = 497.66"])
    assert session.send("B026000206") == (["GET BALANCE annual self-pay total (SPIP)"], [
        "SW 9000 OK", "annual self-pay total: 000000C8 = 200 fen = 2.00", "payment year: 2026"])
    assert session.send("B026000306")[1][1] == "annual pooled-fund total: 0000012C = 300 fen = 3.00"
    assert session.send("B02E0032020000" "08") == ([
        "GET TRANSACTION PROOF of the last purchase (type 32)", "  transaction sequence number: 0000 = 0"], [
        "SW 9000 OK", f"MAC: {mac2.hex().upper()}", f"TAC: {tac}"])
    assert session.send("B02E0032020001" "08")[1] == ["SW 9406 required MAC not available"]
    assert session.send("B056010002") == (["GET STARTING DAY"], ["SW 9000 OK", "starting day: 0101 = month 01, day 01"])
    assert session.send("B05600000201" "01")[0] == ["UPDATE STARTING DAY", "  starting day: 0101 = month 01, day 01"]
    command, response = session.send("00B2014438")
    assert command == ["READ RECORD 01 of DF04 EF08 (SFI 8) — medical transaction detail"]
    assert response == [
        "SW 9000 OK",
        "medical transaction detail: 000032" + TERMINAL + "20261121100000" + amounts,
        "  sequence number: 0000 = 0",
        '  transaction type: 32 = "2" purchase',
        f"  terminal number: {TERMINAL}",
        "  time: 20261121100000 = 2026-11-21 10:00:00",
        "  account amount: 000004D2 = 1234 fen = 12.34",
        "  self-pay amount: 000000C8 = 200 fen = 2.00",
        "  pooled-fund amount: 0000012C = 300 fen = 3.00",
    ]
    command, response = session.send("00B2014538")  # records 1 to the last: 2 x 28 bytes
    assert command == ["READ RECORD 01 to the last of DF04 EF08 (SFI 8) — medical transaction detail"]
    assert response[9] == "medical transaction detail: 000031" + TERMINAL + "20261121093000" + "000003E8" + "00" * 8
    assert response[11] == '  transaction type: 31 = "1" load'
    # refusals of the purse
    assert session.send("B028010113" "01" "0000C267" + "00" * 8 + TERMINAL + "16")[1] == [
        "SW 9401 insufficient funds"]
    assert session.send("B028010113" "02" + amounts + TERMINAL + "16")[1] == ["SW 9403 key index not supported"]
    session.tx("B028010113" "01" + amounts + TERMINAL + "16")
    assert session.send("B02C01000F" "00000002" "20261121100000" "00000000" "08")[1] == ["SW 9302 MAC invalid"]
    assert "123456" not in session.text()  # the VERIFY's PIN


# -- the PSAM (P9 §9) -----------------------------------------------------------------------------------------------
def psam_traced() -> Traced:
    traced = Traced(SimReader(Card.psam(date=CARD_DATE)))
    traced.reset()
    return traced


def test_psam_sm4_environment_exact():
    traced = psam_traced()
    card_factor = HISTORICAL[5:13].hex().upper()
    city, province = b"110100sx".hex().upper(), b"110000sh".hex().upper()
    assert traced.send("00A404000F" + PSAM_SM4_NAME) == (["SELECT by DF name sx2.sh.社会保障 (PSAM SM4 environment)"], [
        "SW 9000 OK", "6F FCI template",
        "  84 DF name: 7378322E73682EC9E7BBE1B1A3D5CF = sx2.sh.社会保障 (PSAM SM4 environment)",
        "  A5 FCI proprietary template", "    88 SFI of the directory EF: 01 = SFI 1"])
    assert traced.send("00A4000002DF01") == (["SELECT by FID DF01 (PSAM sm4 social-security ADF)"], [
        "SW 9000 OK", "6F FCI template",
        "  84 DF name: D15600000590 = D156000005 90 (PSAM social-security ADF)"])
    assert traced.send("0084000010")[0] == ["GET CHALLENGE (16 bytes)"]
    assert traced.send("BFEC00000111") == (["INITIALIZE ENVIRONMENT",
                                            "  first byte of the card identification code: 11 (region 11….)"],
                                           ["SW 9000 OK"])
    # the terminal's external authentication (docs/card/commands.md §4-§5): RKSSSE (PSAM usage 67, id 0A),
    # 3 factors, then the card's challenge
    challenge = "42CF103E5F0E4D0A" + "00" * 8
    assert traced.send(f"BFDE670A28{card_factor}{city}{province}{challenge}") == ([
        "DELIVERY SESSION KEY RKSSSE root (usage 67: 3 levels, encryption; PSAM key 0A)",
        f"  card factor: {card_factor}",
        f'  city factor: {city} = "110100sx"',
        f'  province factor: {province} = "110000sh"',
        f"  process-key factor: {challenge}",
    ], ["SW 9000 OK"])
    command, response = traced.send("80FA000010" "294F0E67DFF409FE" + "00" * 8 + "10")
    assert command == ["CIPHER DATA encrypt, no block follows", "  data: 294F0E67DFF409FE" + "00" * 8]
    assert response[0] == "SW 9000 OK" and response[1].startswith("result: ") and len(response[1]) == 8 + 32
    # (c): the STK (usage 26, id 09, 1 level) for the MAC of APPLICATION BLOCK
    assert traced.send(f"BFDE260918{card_factor}{'1B0D7286F2DC77AF' + '00' * 8}")[0][0] == (
        "DELIVERY SESSION KEY STK root (usage 26: 1 level, MAC; PSAM key 09)")
    command, response = traced.send("80FA050020" + "00" * 16 + "841E00010480" + "00" * 10 + "04")
    assert command == ["CIPHER DATA MAC, only block", "  IV: " + "00" * 16, "  data: 841E00010480" + "00" * 10]
    assert response[0] == "SW 9000 OK" and response[1].startswith("MAC4: ") and len(response[1]) == 6 + 8
    assert traced.send("80FA050020" + "00" * 32)[1] == ["SW 6901 command not accepted (medical purse state)"]
    # a purchase: INIT SAM FOR PURCHASE (MAC1), CREDIT SAM FOR PURCHASE (MAC2)
    data = ("01020304" "0000" "000004D2" "000000C8" "0000012C" "32" "20261121" "100000" "01" "03" + card_factor)
    command, response = traced.send("8070010024" + data + "08")
    assert command == [
        "INIT SAM FOR PURCHASE (MAC1)",
        "  card random: 01020304",
        "  card purchase counter: 0000 = 0",
        "  account amount: 000004D2 = 1234 fen = 12.34",
        "  self-pay amount: 000000C8 = 200 fen = 2.00",
        "  pooled-fund amount: 0000012C = 300 fen = 3.00",
        '  transaction type: 32 = "2" purchase',
        "  date: 20261121 = 2026-11-21",
        "  time: 100000 = 10:00:00",
        "  DPK version: 01",
        "  DPK algorithm: 03 = SM4",
        f"  card factor: {card_factor}",
    ]
    assert response[:2] == ["SW 9000 OK", "terminal transaction number: 00000001 = 1"]
    assert response[2].startswith("MAC1: ") and len(response) == 3
    assert traced.send("8072000004DEADBEEF") == (["CREDIT SAM FOR PURCHASE (checks MAC2)", "  MAC2: DEADBEEF"],
                                                 ["SW 9302 MAC invalid"])


def test_psam_des_environment_after_the_decoder_knows_the_psam():
    traced = psam_traced()
    assert traced.send("BFEC00000111")[0][0] == "INITIALIZE ENVIRONMENT"  # a PSAM-only command: this is a PSAM
    traced.reset()
    assert traced.send("00A404000F" + DDF_NAME) == (["SELECT by DF name sx1.sh.社会保障 (PSAM MF, DES environment)"], [
        "SW 9000 OK", "6F FCI template",
        "  84 DF name: 7378312E73682EC9E7BBE1B1A3D5CF = sx1.sh.社会保障 (PSAM MF, DES environment)",
        "  A5 FCI proprietary template", "    88 SFI of the directory EF: 01 = SFI 1"])
    assert traced.send("00A4040006D15600000590")[0] == ["SELECT by DF name D156000005 90 (PSAM social-security ADF)"]
    card_factor = HISTORICAL[5:13].hex().upper()
    assert traced.send(f"BFDE260910{card_factor}1B0D7286F2DC77AF")[0] == [
        "DELIVERY SESSION KEY STK root (usage 26: 1 level, MAC; PSAM key 09)",
        f"  card factor: {card_factor}", "  process-key factor: 1B0D7286F2DC77AF"]
    command, response = traced.send("80FA050010" + "00" * 8 + "841E000104800000" + "04")
    assert command == ["CIPHER DATA MAC, only block", "  IV: " + "00" * 8, "  data: 841E000104800000"]
    assert response[1].startswith("MAC4: ") and len(response[1]) == 6 + 8
    assert traced.send("0084000008")[1][1].startswith("challenge: ")


def test_psam_command_lines_from_the_standard():
    """The terminal-PSAM sequences of docs/card/commands.md §4 (P9 §9), fed to a fresh decoder (the PSAM
    known by its commands)."""
    decoder = Decoder()
    log = read_trace(decoder, [
        ("BFDE6708" "20" + "11" * 24 + "32D9E876ADB31BBF", "9000"),
        ("80FA070010" + "00" * 8 + "8424000114800000", "9000"),
        ("80FA030008" "0102030405060708", "9000"),
        ("80FA010008" "8000000000000000", "A1B2C3D49000"),
        ("80FA020008" "0102030405060708", "0807060504030201" "9000"),
        ("80FA090008" "0102030405060708", "6A86"),
        ("BFDE2299" "10" + "00" * 16, "6A88"),
    ])
    assert log[0][0] == ["DELIVERY SESSION KEY IRK root (usage 67: 3 levels, encryption; PSAM key 08)",
                         "  card factor: " + "11" * 8, "  city factor: " + "11" * 8, "  province factor: " + "11" * 8,
                         "  process-key factor: 32D9E876ADB31BBF"]
    assert log[1][0] == ["CIPHER DATA MAC, first block", "  IV: " + "00" * 8, "  data: 8424000114800000"]
    assert log[2] == (["CIPHER DATA MAC, next block", "  data: 0102030405060708"], ["SW 9000 OK"])
    assert log[3] == (["CIPHER DATA MAC, last block", "  data: 8000000000000000"], ["SW 9000 OK", "MAC4: A1B2C3D4"])
    assert log[4][1] == ["SW 9000 OK", "result: 0807060504030201"]
    assert log[5] == (["CIPHER DATA with P1 09 (not a mode)", "  data: 0102030405060708"], ["SW 6A86 wrong P1/P2"])
    assert log[6][0] == ["DELIVERY SESSION KEY root (usage 22: 1 level, purchase; PSAM key 99)",
                         "  card factor: " + "00" * 8, "  process-key factor: " + "00" * 8]


def test_every_chip_command_is_named():
    """Every command an applet of either chip dispatches has a name in the decoder."""
    for kind in KINDS.values():
        for applet in kind.applets:
            for code in applet.COMMANDS:
                decoder = Decoder()
                lines = decoder.command(bytes((code >> 8, code & 0xFF, 0, 0)))
                assert "unknown command" not in lines[0], (kind.name, applet.NAME, f"{code:04X}")


# -- status words, T=0, state ------------------------------------------------------------------------------------------
def test_status_words(traced):
    traced.send(SELECT_SSSE)
    assert traced.send("0020000003111111")[1] == ["SW 63C5 verification failed, 5 tries left"]
    assert traced.send("00B2093000")[1] == ["SW 6982 security status not satisfied"]
    assert traced.send("00A4040008A00000033301010200") == (
        ["SELECT by DF name A000000333010102 (UnionPay credit)"], ["SW 6A82 file not found"])
    assert traced.send("FFEE000000") == (["unknown command CLA FF INS EE"], ["SW 6E00 class not supported"])
    assert traced.send("00C0000000") == (["GET RESPONSE (all remaining bytes)"],
                                         ["SW 6F00 data invalid / nothing to fetch"])
    assert traced.send("00840000")[1] == ["SW 6700 wrong length"]
    traced.send(SELECT_DF04)
    assert traced.send("B02C01000F" + "00" * 15 + "08")[1] == ["SW 6901 command not accepted (medical purse state)"]
    decoder = Decoder()
    for sw, text in (("6A85", "Lc inconsistent with the TLV structure"), ("9302", "MAC invalid"),
                     ("9303", "application permanently blocked"), ("9401", "insufficient funds"),
                     ("9402", "transaction counter at its maximum"), ("9403", "key index not supported"),
                     ("9406", "required MAC not available"), ("6C12", "wrong Le: 18 bytes available")):
        assert decoder.response(bytes.fromhex(sw)) == [f"SW {sw} {text}"]


def test_t0_get_response_chain(card):
    traced = Traced(SimReader(card, protocol="T=0", get_response=False))  # the card's own T=0 answers
    traced.reset()
    assert traced.send(SELECT_SSSE) == (["SELECT by DF name sx1.sh.社会保障 (SSSE)"],
                                        ["SW 611E 30 more bytes available (GET RESPONSE)"])
    command, response = traced.send("00C0000010")  # part of it: 16 bytes, then 61 0E
    assert command == ["GET RESPONSE (16 bytes) for SELECT by DF name sx1.sh.社会保障 (SSSE)"]
    assert response == ["SW 610E 14 more bytes available (GET RESPONSE)",
                        "16 bytes so far; the rest follows by GET RESPONSE"]
    command, response = traced.send("00C000000E")
    assert command == ["GET RESPONSE (14 bytes) for SELECT by DF name sx1.sh.社会保障 (SSSE)"]
    assert response[1:] == SSSE_FCI_LINES
    assert traced.send("00B2012C00") == (["READ RECORD 01 of EF05 (SFI 5) — card identification code"],
                                         ["SW 6C12 wrong Le: 18 bytes available"])
    assert traced.send("00B2012C12")[1][1].startswith("01 card identification code: 110100D156000005")
    assert traced.send("00A4020002EF05") == (["SELECT EF by FID EF05 (card data, SFI 5)"], ["SW 9000 OK"])


def test_reset_goes_back_to_the_mf_and_a_fresh_decoder_guesses(traced):
    traced.send(SELECT_SSSE)
    traced.reader.reset()
    traced.decoder.reset()
    assert traced.send("00B2012C00") == (["READ RECORD 01 of SFI 5"], ["SW 6A82 file not found"])
    assert traced.send("0020000003123456")[1] == ["SW 6A88 referenced data not found"]
    # a decoder that never saw the ATR does not know where the card is: SFI 5 is in the SSSE and in
    # every application DF, SFI 1E only the SSSE's DIR; the data tells an SSSE item all the same
    fresh = Decoder()
    assert fresh.command(bytes.fromhex("00B2012C00")) == ["READ RECORD 01 of SFI 5"]
    assert fresh.response(bytes.fromhex("0110" "110100D1560000050000000100000000" "9000"))[1].startswith(
        "01 card identification code: 110100D156000005")
    assert fresh.command(bytes.fromhex("00B2093000")) == ["READ RECORD identifier 09 in SFI 6 — name"]
    assert fresh.command(bytes.fromhex("00B201F400")) == ["READ RECORD 01 of directory (SFI 1Eh)"]
    fresh = Decoder()
    assert fresh.command(bytes.fromhex("0082000A10" + "00" * 16))[0] == "EXTERNAL AUTHENTICATE with RKSSSE (key 0A)"
    assert fresh.command(bytes.fromhex("0082008410" + "00" * 16))[0] == "EXTERNAL AUTHENTICATE with RK1DF04 (key 84)"


def test_keys_are_named_in_the_current_df(session):
    session.select()
    assert session.send("0082008410" + "00" * 16)[0][0] == "EXTERNAL AUTHENTICATE key 84"  # no key 84 in the SSSE
    assert session.send("0082000410" + "00" * 16)[0][0] == "EXTERNAL AUTHENTICATE with UKSSSE (key 04)"
    session.tx(SELECT_DF04)
    titles = [session.send(f"008200{key:02X}10" + "00" * 16)[0][0] for key in (0x84, 0x85, 0x86, 0x0A)]
    assert titles == ["EXTERNAL AUTHENTICATE with RK1DF04 (key 84)", "EXTERNAL AUTHENTICATE with UK1DF04 (key 85)",
                      "EXTERNAL AUTHENTICATE with UK2DF04 (key 86)", "EXTERNAL AUTHENTICATE key 0A"]
    assert session.send("0082000A08" + "00" * 8)[0] == ["EXTERNAL AUTHENTICATE key 0A",
                                                          "  data (8 bytes, expected 16 or 17): 0000000000000000"]


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
    ("B026000104", "0102039000", ["SW 9000 OK", "data (3 bytes, expected 4): 010203"]),
    ("B0260009", "0102039000", ["SW 9000 OK", "data (3 bytes): 010203"]),
    ("80FA0000080102030405060708", "0102039000", ["SW 9000 OK", "result: 010203"]),
])
def test_garbage_is_hex(command, response, expected):
    decoder = Decoder()
    decoder.reset()
    decoder.command(bytes.fromhex(SELECT_SSSE))
    decoder.response(b"\x90\x00")
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
    assert decoder.command(bytes.fromhex("B028010105AABBCCDDEE")) == [
        "INITIALIZE FOR PURCHASE", "  data (5 bytes, expected 19): AABBCCDDEE"]
    assert decoder.command(bytes.fromhex("BFDE670A03AABBCC")) == [
        "DELIVERY SESSION KEY RKSSSE root (usage 67: 3 levels, encryption; PSAM key 0A)",
        "  data (3 bytes): AABBCC"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=80)), max_size=6))
def test_random_streams_never_raise(stream):
    decoder = Decoder()
    for command, response in stream:
        lines = decoder.command(command) + decoder.response(response) + decoder.response(response, status=False)
        assert lines and all(isinstance(line, str) for line in lines)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["00A4040000", "00B2012C00", "00B2093000", "80A8000000", "80AE800000", "80CA9F1000",
                        "00B2014400", "00B201F400", "00B2014500", "BFDE670A00", "80FA050000", "80FA000000",
                        "B028000100", "B028010100", "B02A000000", "B02C010000", "B026000100", "B02E003200",
                        "B056010000", "8070010000", "0088000000", "00C0000000"]),
       st.binary(max_size=120), st.sampled_from([b"\x90\x00", b"\x61\x10", b"\x62\x83", b"\x6C\x05"]))
def test_random_data_after_real_commands_never_raises(command, data, sw):
    decoder = Decoder()
    decoder.reset()
    decoder.command(bytes.fromhex("00A404000F" + DDF_NAME))
    decoder.response(b"\x90\x00")
    decoder.command(bytes.fromhex("00A4040006D15600000503"))
    decoder.response(b"\x90\x00")
    decoder.command(bytes.fromhex(command))
    lines = decoder.response(data + sw)
    assert lines[0].startswith("SW ")


def _current(path: Path, text: str) -> bool:
    """Whether a curated trace was recorded from the card its profile makes now (its first ATR matches)."""
    atr = next((line.partition("#")[0].split(None, 1)[1] for line in text.splitlines()
                if line.lower().startswith("reset ")), None)
    if atr is None:
        return True
    reader = sim_reader_for(parse_trace(text, path.name))
    return reader.reset() == bytes.fromhex(atr)


def test_curated_traces_decode_completely():
    """Every exchange of the project's curated traces gets a name and a decoded answer (traces recorded
    from an earlier card, whose ATR the card no longer answers, wait to be recorded again)."""
    paths = sorted(TRACES.glob("*.apdu"))
    texts = {path: path.read_text(encoding="utf-8") for path in paths}
    current = [path for path in paths if _current(path, texts[path])]
    if not current:
        pytest.skip("no curated traces of the current card")
    exchanges = 0
    for path in current:
        decoder = Decoder()
        for raw in texts[path].splitlines():
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
    assert exchanges > 5 * len(current)


# -- explain() and report.exchange() ---------------------------------------------------------------------------------
def test_explain(traced):
    response = traced.reader.transmit(bytes.fromhex(SELECT_SSSE))
    assert explain(bytes.fromhex(SELECT_SSSE), response) == "\n".join(
        ["SELECT by DF name sx1.sh.社会保障 (SSSE)", "    SW 9000 OK"] + ["    " + line for line in SSSE_FCI_LINES])
    decoder = Decoder()
    decoder.reset()
    assert explain(bytes.fromhex("0020000003111111"), bytes.fromhex("63C5"), decoder) == \
        "VERIFY SSSE PIN\n  PIN: 6 digits\n    SW 63C5 verification failed, 5 tries left"


def test_exchange_keeps_its_lines_and_appends_the_decoder(traced):
    command = bytes.fromhex("00B207040B")
    traced.reader.transmit(bytes.fromhex(SELECT_SSSE))
    traced.reader.transmit(bytes.fromhex("00A4020002EF05"))
    response = traced.reader.transmit(command)
    plain = "> 00 B2 07 04 0B    # card number\n< 07 09 54 30 30 30 30 30 30 30 31\n< 9000  OK"
    assert exchange(command, response, "card number") == plain
    decoder = Decoder()
    for apdu in (SELECT_SSSE, "00A4020002EF05"):
        decoder.command(bytes.fromhex(apdu))
        decoder.response(b"\x90\x00")
    assert exchange(command, response, "card number", decoder=decoder) == plain + "\n" + "\n".join([
        "    READ RECORD 07 of the current EF EF05 (SFI 5) — card number",
        '    07 card number: 543030303030303031 = "T00000001"',
    ])
    assert exchange(bytes.fromhex("0020000003111111"), bytes.fromhex("63C5"), decoder=decoder) == "\n".join([
        "> 00 20 00 00 03 11 11 11",
        "< 63C5  verification failed, 5 tries left",
        "    VERIFY SSSE PIN",
        "      PIN: 6 digits",
    ])
