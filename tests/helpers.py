"""Shared test helpers: the repository's paths, the default card's facts and commands, the small
functions many test files use, and a `Session` on the social-security application (SSSE).

Constants and functions live here, fixtures in conftest.py. Commands and responses are
upper-case hex strings, as `tx` and `Session.tx` send and answer them; a test that talks bytes
converts with `bytes.fromhex` where it sends.

Every cryptogram a `Session` sends is computed with `tests/oracle.py` (the
independent reading of LD/T 32 P4/P9), never with `chip.kernel.crypto`: the card keys
are diversified here from the default profile's root keys
(chip/personalization/profiles/default.toml `[keys]`; docs/card/security.md §1) by the number
of levels P9 appendix B gives (IRK and the RKs 3 levels, STK/PUK/BK/UK 1 level; P9 §7.3), with
the default profile's region code 110100 and ATR historical bytes (docs/card/README.md).

A `Session` talks to the card OS directly (`Card.power_on(protocol)` /
`Card.transmit`), so what a test sees is exactly the card's answer on the
chosen protocol: on T=0 a command with data answers `61xx` and the data waits
for GET RESPONSE (P2 T=0; P5 §6.6).
"""

import dataclasses
import datetime
import os
import random
import socket
from pathlib import Path

import oracle
import pytest

from chip import Card, load_profile
from reader import SimReader
from reader.ccid.pty import LIBCCIDTWIN
from reader.cli import main
from reader.terminals.issuer import IssuerHost
from reader.terminals.payment import PaymentTerminal
from reader.traces.pytest_plugin import require_pcsc

# -- the repository -------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "apdu_traces"  # the curated traces of the terminal flows
PROFILES_DIR = ROOT / "chip" / "personalization" / "profiles"  # the shipped profiles, as files of the tree
DEFAULT_TOML = PROFILES_DIR / "default.toml"

CARD_DATE = datetime.date(2026, 11, 21)  # the fixtures' personalisation = issue date (EF05 item 05)
OK = b"\x90\x00"  # SW 9000 as the card sends it

# -- the SSSE and its FCI (P5 table 36, as the real cards answer it: docs/decisions.md S9, S19) -------
DDF_NAME = "7378312E73682EC9E7BBE1B1A3D5CF"  # "sx1.sh." + GBK 社会保障
SELECT_SSSE = "00A404000F" + DDF_NAME
FCI = {
    # 6F { 84 DF name, A5 { 88 01 1E (DIR SFI 30), 9F0C 03 86 01 <algorithm> } }; 03 SM4, 01 DES (SR §10.1)
    "sm4": "6F1C840F" + DDF_NAME + "A50988011E9F0C03860103",
    "des": "6F1C840F" + DDF_NAME + "A50988011E9F0C03860101",
}
PROFILE_FAMILY = {"default": "sm4", "default-3des": "des"}  # the shipped SSSE profiles, one per family
PROFILES = list(PROFILE_FAMILY)
FAMILY_PROFILE = {family: profile for profile, family in PROFILE_FAMILY.items()}
SELECT_EF05 = "00A4020002EF05"
SELECT_EF06 = "00A4020002EF06"
SELECT_EF07 = "00A4020002EF07"
SELECT_DF04 = "00A4040006D15600000503"  # DF04 medical, AID D156000005 03 (V2 table 2)
SELECT_DF04_FID = "00A4000002DF04"
READ_DF04_REGION = "00B2842805"  # DF04 EF05 item 84 by identifier: PIN or RK1DF04 (V2 table 7)
DF04_REGION = "8403110100"  # its record: the medical-insurance region, cn 3 (V2 table 9)
SELECT_MF = "00A40000023F00"

# -- the financial application, PSE and PPSE (docs/decisions.md §6) --------------------------------
AID = "A000000333010101"  # UnionPay debit
SELECT_FIN = "00A4040008" + AID
PSE = b"1PAY.SYS.DDF01".hex().upper()  # the contact directory
PPSE = b"2PAY.SYS.DDF01".hex().upper()  # the contactless one
SELECT_PSE = "00A404000E" + PSE
SELECT_PPSE = "00A404000E" + PPSE
PAN = "6234560000000008"  # the default profile's
GPO = "80A800000B830900000000100001560000"  # PDOL data: amount 10.00, currency 0156, DF69 00 (3DES)
GPO_RESPONSE = "770A82021C00940408010300"  # format 2: AIP 1C00, AFL SFI 1 records 1-3
# CDOL1: amount 10.00, other 0, country 0156, TVR 0, currency 0156, date 261121, type 00, UN 11223344
CDOL1 = "000000001000" "000000000000" "0156" "0000000000" "0156" "261121" "00" "11223344"

# -- the default profile's personalisation (docs/card/README.md; V2 table 9) -------------------------
REGION = "110100"
HISTORICAL = bytes.fromhex("0081535343869911010000" "0001")  # 00 81 | 53 53 43 | 86 99 | 11 01 | 00 00 00 01
DEFAULT_ATR = "3B6D0000" + HISTORICAL.hex().upper()  # P2 table 7: T=0 only, TB1 00, TC1 00 (P2 table 16 bytes)
T1_ATR = "3B9D138031FE45" + HISTORICAL.hex().upper() + "48"  # the t1 profile: TA1 13, T=0 and T=1, TCK
IDENTIFICATION = "110100" "D156000005" "00000001" "00000000"  # V2 table 10
EF05 = {  # record = identifier (tag) || length || value
    0x01: "0110" + IDENTIFICATION,
    0x02: "0201" "33",  # card type '3'
    0x03: "0304" "332E3030",  # "3.00"
    0x04: "040C" "915600000211010011010001",  # initialising institution (V2 table 12)
    0x05: "0504" "20261121",  # issue date = personalisation date
    0x06: "0604" "20361121",  # expiry = issue + 10 years
    0x07: "0709" + b"T00000001".hex().upper(),
}
EF06 = [  # (identifier, record) in record order 08 09 4E 0A 0B 0C 0D (V2 table 9)
    (0x08, "0812" + b"110101199003071233".hex().upper()),
    (0x09, "091E" + "C0EEBBAA" + "00" * 26),  # 李华 GBK, 00-filled
    (0x4E, "4E14" + "00" * 20),
    (0x0A, "0A01" "31"),  # '1' male
    (0x0B, "0B01" "01"),  # ethnicity cn 1: Han 01
    (0x0C, "0C03" "110101"),
    (0x0D, "0D04" "19900307"),
]
ITEM_08 = EF06[0][1]

VERIFY_OK = "0020000003123456"
VERIFY_BAD = "0020000003111111"
VERIFY_STATUS = "00200000"  # no data (P5 §6.14.5)

# -- keys: roots of the default profile and their levels (docs/card/security.md §1; P9 §7.3, appendix B)
ROOTS = {
    "ssse_irk": "505152535455565758595A5B5C5D5E5F",
    "ssse_rk": "404142434445464748494A4B4C4D4E4F",
    "ssse_stk": "606162636465666768696A6B6C6D6E6F",
    "ssse_puk": "707172737475767778797A7B7C7D7E7F",
    "ssse_bk": "808182838485868788898A8B8C8D8E8F",
    "ssse_uk": "909192939495969798999A9B9C9D9E9F",
    "df04_stk": "202122232425262728292A2B2C2D2E2F",
    "df04_rk1": "E0E1E2E3E4E5E6E7E8E9EAEBECEDEEEF",
    "df04_uk1": "F0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF",
    "df04_uk2": "101112131415161718191A1B1C1D1E1F",
    "df04_dpk": "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF",
    "df04_dlk": "B0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF",
    "df04_dtk": "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF",
    "df04_dsk": "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF",
}
LEVELS = {"ssse_irk": 3, "ssse_rk": 3, "df04_rk1": 3}  # every other key: 1 level (the card factor)
SHORT_DES = ("ssse_stk", "df04_stk")  # 8-byte keys in the DES family (P9 appendix B; docs/decisions.md §2.2)
KEY_ID = {  # card key identifiers, P2 of EXTERNAL AUTHENTICATE (P9 table B1; 0A as real cards: docs/decisions.md S13)
    "ssse_rk": 0x0A, "ssse_puk": 0x06, "ssse_bk": 0x05, "ssse_uk": 0x04,
    "df04_rk1": 0x84, "df04_uk1": 0x85, "df04_uk2": 0x86,
}


# the default ATR explained field by field (P2 table 7 and table 16), as `sscard atr` prints it
DEFAULT_ATR_EXPLAINED = [
    "TS      3B  direct convention",
    "T0      6D  Y1=6: TB1 TC1 follow; K=13 historical bytes",
    "TB1     00  no VPP (P2 §8.3.3.3)",
    "TC1     00  extra guard time N=0: 12 etu per character to the card (the card's: 12)",
    "T1-T2   00 81  chip supplier registration number (P2 Table 16)",
    "T3-T5   53 53 43  chip / COS supplier's data (COS) 'SSC'",
    "T6-T7   86 99  card manufacturer registration number",
    "T8-T9   11 01  card serial part 1: region code 1101.. (first 4 digits, BCD)",
    "TA-TD   00 00 00 01  card serial part 2 (unique per card in the issuing area)",
]


# -- small functions -------------------------------------------------------------------------------

def h(data: bytes) -> str:
    """Bytes as upper-case hex."""
    return bytes(data).hex().upper()


def spaced(hexstr: str) -> str:
    """Upper-case hex with a space between bytes, as traces and `sscard` print it."""
    return bytes.fromhex(hexstr).hex(" ").upper()


def tx(reader, apdu: str) -> str:
    """Send a hex command APDU (spaces allowed); return the response as upper-case hex."""
    return reader.transmit(bytes.fromhex(apdu)).hex().upper()


def cli(capsys, *argv):
    """`sscard ARGV` in this process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def python_env(**extra: str) -> dict:
    """The environment of a child Python that imports this tree (not an installed sscard)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def unavailable(reason: str) -> None:
    """A test's tool is missing: skip, or fail when CI=true (there everything must be installed)."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def require_ccid(what: str) -> None:
    """Skip (fail when CI=true) unless the private PC/SC stack is up and Debian's serial CCID
    driver is installed: what the end-to-end CCID tests and benchmark need."""
    require_pcsc(what)
    if not os.path.exists(LIBCCIDTWIN):
        unavailable(f"{what}: no {LIBCCIDTWIN} (package libccid)")


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # Debian's chromium, chromium-driver


def require_browser(what: str) -> None:
    """Skip (fail when CI=true) unless the private PC/SC stack is up and a headless browser can be
    driven: Debian's chromium and chromium-driver, and selenium (the test extras)."""
    require_pcsc(what)
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.path.exists(path):
            unavailable(f"{what}: no {path} (package {package})")
    try:
        import selenium  # noqa: F401
    except ImportError:
        unavailable(f"{what}: no selenium (pip install -e '.[test]')")


def free_port() -> int:
    """A local TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot(store) -> dict:
    """Every persistent object of a card's store, as the image stores it."""
    return {name: obj.dump() for name, obj in store.objects.items()}


def activate_financial(card, pin: str = "123456") -> None:
    """The bank-outlet activation of the financial application, through APDUs: a transaction
    whose issuer scripts set the PIN and PUT DATA DF7F 01 (docs/decisions.md §6). Leaves the card
    reset."""
    host = IssuerHost(card.config.profile)
    host.queue(host.profile.financial.pan, IssuerHost.activation(pin))
    outcome = PaymentTerminal(SimReader(card), date=card.today).purchase(0, host=host)
    assert [sw for _, sw in outcome.script_results] == [0x9000, 0x9000]
    assert card.financial_activated()


def card_key(family: str, name: str) -> bytes:
    """The card key `name` as the oracle derives it from the root (P9 §7.3 figure 12)."""
    root = bytes.fromhex(ROOTS[name])
    if family == "des" and name in SHORT_DES:
        root = root[:8]
    return oracle.card_key(family, root, LEVELS.get(name, 1), REGION, HISTORICAL)


def generation2_profile():
    """The default profile as a 2.00 card (EF06 free: docs/card/README.md, Generations)."""
    return dataclasses.replace(load_profile(), spec_version="2.00")


class Session:
    """One card on one protocol, with the terminal-side computations of the oracle."""

    def __init__(self, profile="default", protocol: int = 1, card: Card | None = None, date=CARD_DATE,
                 seed: int = 1):
        self.card = card if card is not None else Card.from_profile(profile, date=date)
        flag = self.card.store["ssse.state"].algorithm
        self.family = "sm4" if flag == 0x03 else "des"
        self.block = oracle.BLOCK[self.family]
        self.fci = FCI[self.family]
        self.protocol = protocol
        self.card.random = random.Random(seed).randbytes  # deterministic, each challenge different
        self.last_challenge: bytes | None = None
        self.reset()

    # -- plumbing -----------------------------------------------------------------------------
    def reset(self, protocol: int | None = None) -> None:
        if protocol is not None:
            self.protocol = protocol
        self.card.power_on(self.protocol)

    def power_cycle(self) -> None:
        self.card.power_off()
        self.reset()

    def tx(self, apdu: str) -> str:
        return h(self.card.transmit(bytes.fromhex(apdu)))

    def key(self, name: str) -> bytes:
        return card_key(self.family, name)

    def select(self, sw: str = "9000") -> None:
        """SELECT the SSSE by name and expect FCI + `sw` (T=1)."""
        assert self.tx(SELECT_SSSE) == self.fci + sw

    def challenge(self, n: int = 8) -> bytes:
        answer = self.tx(f"00840000{n:02X}")
        assert answer[-4:] == "9000" and len(answer) == 2 * n + 4, answer
        self.last_challenge = bytes.fromhex(answer[:-4])
        return self.last_challenge

    # -- EXTERNAL AUTHENTICATE (P5 §6.4.3, P4 §9.3, P7 §6.6) -----------------------------------
    def auth(self, name: str, challenge: bytes, original: bytes) -> bytes:
        """auth8 = authentication data of `original` under KS = process key of `challenge`."""
        ks = oracle.process_key(self.family, self.key(name), challenge)
        return oracle.auth_data(self.family, ks, original)

    def external_auth_apdu(self, name: str, *, challenge_length: int = 8, original: bytes | None = None,
                           corrupt: bool = False, version: int | None = None) -> str:
        """GET CHALLENGE on the card, then `00 82 00 <key id> 10|11 auth8 original8 [version]`."""
        challenge = self.challenge(challenge_length)
        original = original if original is not None else bytes.fromhex("0102030405060708")
        auth8 = bytearray(self.auth(name, challenge, original))
        if corrupt:
            auth8[0] ^= 0x01
        data = bytes(auth8) + original + (b"" if version is None else bytes((version,)))
        return f"008200{KEY_ID[name]:02X}{len(data):02X}{h(data)}"

    def external_auth(self, name: str, **kwargs) -> str:
        return self.tx(self.external_auth_apdu(name, **kwargs))

    # -- secure messaging (P4 §8.2-8.4; P7 §13) ------------------------------------------------
    def mac_apdu(self, header: str, body: bytes = b"", *, key: str = "ssse_stk", corrupt: bool = False,
                 challenge_length: int = 8) -> str:
        """GET CHALLENGE, then header || Lc || body || MAC4; MAC4 over CLA INS P1 P2 Lc || body,
        Lc counting the MAC, under the process key of the challenge (P4 §8.2.3-8.2.4)."""
        challenge = self.challenge(challenge_length)
        ks = oracle.process_key(self.family, self.key(key), challenge)
        lc = len(body) + 4
        mac = bytearray(oracle.mac4(self.family, ks, bytes.fromhex(header) + bytes((lc,)) + body))
        if corrupt:
            mac[3] ^= 0x01
        return f"{header}{lc:02X}{h(body)}{h(mac)}"

    def pin_reset_apdu(self, pin_cn: bytes, *, corrupt: bool = False) -> str:
        """84 24 00 01: ciphertext of LD || PIN (cn) and the MAC, one STK process key for both
        (P4 §8.3; docs/decisions.md S2, S3)."""
        challenge = self.challenge()
        ks = oracle.process_key(self.family, self.key("ssse_stk"), challenge)
        cipher = oracle.encipher(self.family, ks, pin_cn)
        lc = len(cipher) + 4
        mac = bytearray(oracle.mac4(self.family, ks, bytes.fromhex("84240001") + bytes((lc,)) + cipher))
        if corrupt:
            mac[3] ^= 0x01
        return f"84240001{lc:02X}{h(cipher)}{h(mac)}"

    # -- maintenance shortcuts (docs/decisions.md S4, S5; docs/card/lifecycle.md §3) -------------
    def keyed_mac(self, key: str, header: str, **kwargs) -> str:
        """External authentication with `key`, then the MACed command `header`; its answer."""
        assert self.external_auth(key) == "9000"
        return self.tx(self.mac_apdu(header, **kwargs))

    def bk_mac(self, header: str, **kwargs) -> str:
        """A maintenance command after external authentication with BK (S5); its answer."""
        return self.keyed_mac("ssse_bk", header, **kwargs)

    def loss_lock(self) -> str:
        return self.bk_mac("841E0000")

    def unlock(self) -> str:
        return self.bk_mac("84180000")

    def block_application(self) -> str:
        return self.bk_mac("841E0001")

    def block_card(self) -> str:
        return self.bk_mac("84160000")

    def get_response_all(self, first: str) -> str:
        """T=0: follow `61xx` with GET RESPONSE until the last piece; return data + final SW."""
        data, sw = "", first
        while sw[:2] == "61":
            answer = self.tx("00C00000" + sw[2:4])
            data, sw = data + answer[:-4], answer[-4:]
        return data + sw
