"""Shared test helpers for the social-security application (SSSE): constants and a `Session`.

Every cryptogram a `Session` sends is computed with `tests/oracle.py` (the
independent reading of LD/T 32 P4/P9), never with `chip.kernel.crypto`: the card keys
are diversified here from the default profile's root keys
(chip/personalization/profiles/default.toml `[keys]`, SPEC §6) by the number of levels SPEC §6
gives (IRK and the RKs 3 levels, STK/PUK/BK/UK 1 level; P9 §7.3), with the
region code 110100 and the ATR historical bytes of SPEC §6.

A `Session` talks to the card OS directly (`Card.power_on(protocol)` /
`Card.transmit`), so what a test sees is exactly the card's answer on the
chosen protocol: on T=0 a command with data answers `61xx` and the data waits
for GET RESPONSE (P2 T=0; P5 §6.6).
"""

import dataclasses
import datetime
import random

import oracle
from chip import Card, load_profile

CARD_DATE = datetime.date(2026, 11, 21)  # personalisation = issue date (EF05 item 05), as conftest

# -- the SSSE and its FCI (P5 table 36; files.md §4.1: the real cards' FCI) ----------------------
DDF_NAME = "7378312E73682EC9E7BBE1B1A3D5CF"  # "sx1.sh." + GBK 社会保障
SELECT_SSSE = "00A404000F" + DDF_NAME
FCI = {
    # 6F { 84 DF name, A5 { 88 01 1E (DIR SFI 30), 9F0C 03 86 01 <algorithm> } }; 03 SM4, 01 DES (SR §10.1)
    "sm4": "6F1C840F" + DDF_NAME + "A50988011E9F0C03860103",
    "des": "6F1C840F" + DDF_NAME + "A50988011E9F0C03860101",
}
PROFILE_FAMILY = {"default": "sm4", "default-3des": "des"}
FAMILY_PROFILE = {family: profile for profile, family in PROFILE_FAMILY.items()}
SELECT_EF05 = "00A4020002EF05"
SELECT_EF06 = "00A4020002EF06"
SELECT_EF07 = "00A4020002EF07"
SELECT_DF04 = "00A4040006D15600000503"  # DF04 medical, AID D156000005 03 (V2 table 2)
SELECT_DF04_FID = "00A4000002DF04"
SELECT_FIN = "00A4040008A000000333010101"  # the financial application (SPEC §5)
SELECT_MF = "00A40000023F00"

# -- the default profile's personalisation (SPEC §6; V2 table 9) -----------------------------------
REGION = "110100"
HISTORICAL = bytes.fromhex("0081535343869911010000" "0001")  # 00 81 | 53 53 43 | 86 99 | 11 01 | 00 00 00 01
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

# -- keys: roots of the default profile and their levels (SPEC §6, P9 §7.3, appendix B) -----------
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
}
LEVELS = {"ssse_irk": 3, "ssse_rk": 3, "df04_rk1": 3}  # every other key: 1 level (the card factor)
SHORT_DES = ("ssse_stk", "df04_stk")  # 8-byte keys in the DES family (SPEC §2 key lengths)
KEY_ID = {  # card key identifiers, P2 of EXTERNAL AUTHENTICATE (P9 table B1; T1/T2 for 0A)
    "ssse_rk": 0x0A, "ssse_puk": 0x06, "ssse_bk": 0x05, "ssse_uk": 0x04,
    "df04_rk1": 0x84, "df04_uk1": 0x85, "df04_uk2": 0x86,
}


def h(data: bytes) -> str:
    return bytes(data).hex().upper()


def card_key(family: str, name: str) -> bytes:
    """The card key `name` as the oracle derives it from the root (P9 §7.3 figure 12)."""
    root = bytes.fromhex(ROOTS[name])
    if family == "des" and name in SHORT_DES:
        root = root[:8]
    return oracle.card_key(family, root, LEVELS.get(name, 1), REGION, HISTORICAL)


def generation2_profile():
    """The default profile as a 2.00 card (EF06 free, files.md §3.2)."""
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
        (security.md §1.5 reading A, SPEC §2 S2/S3)."""
        challenge = self.challenge()
        ks = oracle.process_key(self.family, self.key("ssse_stk"), challenge)
        cipher = oracle.encipher(self.family, ks, pin_cn)
        lc = len(cipher) + 4
        mac = bytearray(oracle.mac4(self.family, ks, bytes.fromhex("84240001") + bytes((lc,)) + cipher))
        if corrupt:
            mac[3] ^= 0x01
        return f"84240001{lc:02X}{h(cipher)}{h(mac)}"

    # -- maintenance shortcuts (SPEC §2 S5, §3.2) ----------------------------------------------
    def bk_mac(self, header: str, **kwargs) -> str:
        """External authentication with BK, then the MACed maintenance command; its answer."""
        assert self.external_auth("ssse_bk") == "9000"
        return self.tx(self.mac_apdu(header, **kwargs))

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
