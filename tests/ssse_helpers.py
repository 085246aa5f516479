"""Terminal side of the SSSE for the durability tests, the fuzzer and the benches.

`Terminal` builds the standard's authenticated and MAC-protected commands of
the social-security application (LD/T 32 P5 §6-§7, P7 §6, §11-§13) for one
card, with every cryptogram computed by the independent oracle
(`tests/oracle.py`), never by `chip.kernel.crypto`:

- the card keys: `oracle.card_key(family, root, levels, region, historical)`
  with the profile's root keys (`[keys]`), the number of levels of the key
  table (`chip.apps.keys.KEYS`: IRK and the RKs 3, the others 1; P9 §7.3), the
  region code of the profile (the first 6 digits of EF05 item 01) and the ATR
  historical bytes the card answers at reset (P9 §7.3.3: bytes 6-13 are the
  card factor), parsed here from the ATR as a terminal does;
- EXTERNAL AUTHENTICATE: GET CHALLENGE R, then
  `00 82 00 <key id> 10 <auth8> <original8>` with
  auth8 = auth_data(process_key(card key, R), original8) (P4 §9, P7 §6.6);
- a MAC-protected command: GET CHALLENGE R, then MAC4 under
  process_key(STK of the current DF, R) over `CLA INS P1 P2 Lc || data`, Lc
  counting the MAC (P4 §8.2); PIN reset also enciphers `LD || PIN (cn)` under
  the same process key (P4 §8.3; docs/decisions.md S2, S3);
- the medical purse (P7 §11-§12, §15): SESLK/SESPK MACs and TACs.

`Terminal.send` is the only way it talks to the card; builders that need a
challenge send GET CHALLENGE first and return the command *without sending
it*, so a power-cut test can install its hook between the two.

Commands here are bytes: the commands of tests/helpers.py (upper-case hex, their one home) are
given again as bytes for the tests that send bytes.
"""

import datetime

import helpers
import oracle
from helpers import OK

from chip.apps.keys import KEYS
from chip.personalization.profile import Profile, load_profile

SELECT_SSSE = bytes.fromhex(helpers.SELECT_SSSE)
SELECT_DF04 = bytes.fromhex(helpers.SELECT_DF04)  # DF04 by its AID D156000005 03 (V2 table 2)
SELECT_FIN = bytes.fromhex(helpers.SELECT_FIN)
READ_DF04_REGION = bytes.fromhex(helpers.READ_DF04_REGION)
FAMILY = {0x01: "des", 0x03: "sm4"}  # the SSSE FCI's algorithm flag (SR §10.1)
KEY = {spec.name: spec for spec in KEYS}
TERMINAL_NO = bytes.fromhex("110100000001")  # a PSAM terminal number (P9 0016: city code + 6 digits)
TYPE_LOAD, TYPE_PURCHASE = 0x31, 0x32  # the EF08 transaction types (V2 table 51; chip/apps/purse.py)


def cn(digits: str) -> bytes:
    """A PIN in cn (P5 §6.14): packed BCD, the last low nibble F when the count is odd."""
    return bytes.fromhex(digits + "F" * (len(digits) % 2))


def apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    return (bytes((cla, ins, p1, p2)) + (bytes((len(data),)) + data if data else b"")
            + (b"" if le is None else bytes((le,))))


def verify(pin: str) -> bytes:
    return apdu(0x00, 0x20, 0x00, 0x00, cn(pin))


def change_pin(old: str, new: str) -> bytes:
    return apdu(0x80, 0x5E, 0x01, 0x00, cn(old) + b"\xFF" + cn(new))


def read_record(p1: int, sfi: int, mode: int, le: int) -> bytes:
    """READ RECORD P1, P2 = SFI << 3 | mode (4 by number, 0 first with identifier P1)."""
    return bytes((0x00, 0xB2, p1, sfi << 3 | mode, le))


def historical_bytes(atr: bytes) -> bytes:
    """The historical bytes of an ATR (ISO 7816-3 §8.2: T0's low nibble counts them; they follow
    the interface bytes, which TDi chain)."""
    y, count, i = atr[1] >> 4, atr[1] & 0x0F, 2
    while True:
        td = None
        for bit in (0x1, 0x2, 0x4, 0x8):
            if y & bit:
                if bit == 0x8:
                    td = atr[i]
                i += 1
        if td is None:
            break
        y = td >> 4
    return bytes(atr[i:i + count])


def bcd(value: int, digits: int) -> bytes:
    return bytes.fromhex(f"{value:0{digits}d}")


class Terminal:
    """A terminal with its PSAM (here: the oracle and the profile's roots) in front of one card."""

    def __init__(self, card, send=None, profile=None):
        if not isinstance(profile, Profile):
            profile = load_profile(profile or card.config.profile)
        self.card = card
        self.send = send or card.transmit
        self.profile = profile
        self.family = FAMILY[profile.algorithm_flag]
        self.region = profile.region_code
        self.historical = historical_bytes(card.atr)
        self.keys = {}
        for name, spec in KEY.items():
            root = profile.keys[name]
            if spec.short_des and self.family == "des":
                root = root[:8]  # STK/STKDFxx: 8 bytes in the DES family (P9 appendix B; docs/decisions.md §2.2)
            self.keys[name] = oracle.card_key(self.family, root, spec.levels, self.region, self.historical)
        self.original = bytes.fromhex("0102030405060708")

    # -- plumbing -------------------------------------------------------------------------------
    def ok(self, command: bytes) -> bytes:
        response = self.send(command)
        assert response[-2:] == OK, (command.hex().upper(), response.hex().upper())
        return response[:-2]

    def challenge(self, length: int = 8) -> bytes:
        """GET CHALLENGE (P5 §6.5): the card's new current random."""
        random = self.ok(bytes((0x00, 0x84, 0x00, 0x00, length)))
        assert len(random) == length
        return random

    def process_key(self, key: str, challenge: bytes) -> bytes:
        return oracle.process_key(self.family, self.keys[key], challenge)

    # -- P4 §9, P7 §6.6: external authentication ---------------------------------------------------
    def auth_command(self, key: str, challenge: bytes, wrong: bool = False, original: bytes | None = None,
                     version: int | None = None) -> bytes:
        original = self.original if original is None else original
        auth = oracle.auth_data(self.family, self.process_key(key, challenge), original)
        if wrong:
            auth = bytes((auth[0] ^ 0x01,)) + auth[1:]
        data = auth + original + (b"" if version is None else bytes((version,)))
        return apdu(0x00, 0x82, 0x00, KEY[key].card_id, data)

    def external_authenticate(self, key: str = "ssse_rk", wrong: bool = False, **kwargs) -> bytes:
        """GET CHALLENGE now; the EXTERNAL AUTHENTICATE command for `key`, not sent."""
        return self.auth_command(key, self.challenge(), wrong, **kwargs)

    def authenticate(self, key: str = "ssse_rk") -> None:
        self.ok(self.external_authenticate(key))

    # -- P4 §8.2: MAC-protected commands -----------------------------------------------------------
    def mac(self, key: str, challenge: bytes, header: bytes, body: bytes) -> bytes:
        """MAC4 of `header || body` (`header` = CLA INS P1 P2 Lc, Lc counting the MAC)."""
        return oracle.mac4(self.family, self.process_key(key, challenge), header + body)

    def mac_command(self, cla: int, ins: int, p1: int, p2: int, body: bytes = b"", stk: str = "ssse_stk",
                    wrong: bool = False) -> bytes:
        """GET CHALLENGE now; the command with its MAC4 under the STK process key, not sent."""
        challenge = self.challenge()
        header = bytes((cla, ins, p1, p2, len(body) + 4))
        mac = self.mac(stk, challenge, header, body)
        if wrong:
            mac = bytes((mac[0] ^ 0x01,)) + mac[1:]
        return header + body + mac

    def pin_reset(self, new_pin: str) -> bytes:
        """PIN reset `84 24 00 01 Lc <enciphered LD || PIN> <MAC4>` (P5 §6.8; docs/decisions.md S2, S3), not sent."""
        challenge = self.challenge()
        ks = self.process_key("ssse_stk", challenge)
        enciphered = oracle.encipher(self.family, ks, cn(new_pin))
        header = bytes((0x84, 0x24, 0x00, 0x01, len(enciphered) + 4))
        return header + enciphered + oracle.mac4(self.family, ks, header + enciphered)

    def pin_unblock(self) -> bytes:
        return self.mac_command(0x84, 0x24, 0x00, 0x00)

    def lock(self, permanent: bool = False) -> bytes:
        return self.mac_command(0x84, 0x1E, 0x00, 0x01 if permanent else 0x00)

    def unlock(self) -> bytes:
        return self.mac_command(0x84, 0x18, 0x00, 0x00)

    def card_block(self) -> bytes:
        return self.mac_command(0x84, 0x16, 0x00, 0x00)

    # -- whole steps, for setting a card up ---------------------------------------------------------
    def start(self) -> None:
        """SELECT the SSSE (the FCI, 61xx on T=0, is not looked at)."""
        response = self.send(SELECT_SSSE)
        assert response[-2:] == OK or response[0] == 0x61, response.hex().upper()

    def do_lock(self, permanent: bool = False) -> None:
        self.authenticate("ssse_bk")
        self.ok(self.lock(permanent))

    def do_pin_unblock(self) -> None:
        self.authenticate("ssse_puk")
        self.ok(self.pin_unblock())

    # -- DF04 medical records (V2 table 9: EF06 items 92, 93) ---------------------------------------
    @staticmethod
    def settlement_total(fen: int) -> bytes:
        """UPDATE RECORD of DF04 EF06 item 92 (offline settlement total, cn 4), by identifier."""
        return apdu(0x00, 0xDC, 0x92, 6 << 3, bytes((0x92, 4)) + bcd(fen, 8))

    @staticmethod
    def settlement_count(count: int) -> bytes:
        """UPDATE RECORD of DF04 EF06 item 93 (offline settlement count, an 2), by identifier."""
        return apdu(0x00, 0xDC, 0x93, 6 << 3, bytes((0x93, 2)) + f"{count:02d}".encode())

    # -- the medical purse (P5 §7, P7 §11-§12, §15) --------------------------------------------------
    @staticmethod
    def init_purchase(account: int, self_pay: int = 0, fund: int = 0) -> bytes:
        data = b"\x01" + account.to_bytes(4, "big") + self_pay.to_bytes(4, "big") + fund.to_bytes(4, "big")
        return apdu(0xB0, 0x28, 0x01, 0x01, data + TERMINAL_NO, le=0x16)

    def debit(self, answer: bytes, account: int, self_pay: int = 0, fund: int = 0,
              time: str = "20261121103000", tx_no: bytes = bytes.fromhex("00001234")):
        """DEBIT FOR PURCHASE for an INITIALIZE FOR PURCHASE `answer`: (command, TAC || MAC2 expected, counter)."""
        random, counter = answer[18:22], int.from_bytes(answer[14:16], "big")
        ks = oracle.sespk(self.family, self.keys["df04_dpk"], random, counter, tx_no)
        amounts = account.to_bytes(4, "big") + self_pay.to_bytes(4, "big") + fund.to_bytes(4, "big")
        when = bytes.fromhex(time)
        mac1 = oracle.mac4(self.family, ks, amounts + bytes((TYPE_PURCHASE,)) + TERMINAL_NO + when)
        mac2 = oracle.mac4(self.family, ks, amounts)
        tac = oracle.tac(self.family, self.keys["df04_dtk"], amounts + bytes((TYPE_PURCHASE,)) + TERMINAL_NO
                         + tx_no + when)
        return apdu(0xB0, 0x2C, 0x01, 0x00, tx_no + when + mac1, le=0x08), tac + mac2, counter

    @staticmethod
    def init_load(amount: int) -> bytes:
        return apdu(0xB0, 0x28, 0x00, 0x01, b"\x01" + amount.to_bytes(4, "big") + TERMINAL_NO, le=0x10)

    def credit(self, answer: bytes, amount: int, time: str = "20261121110000"):
        """CREDIT FOR LOAD for an INITIALIZE FOR LOAD `answer` (its MAC1 checked): (command, TAC expected, counter)."""
        balance, counter = answer[0:4], int.from_bytes(answer[4:6], "big")
        random, mac1 = answer[8:12], answer[12:16]
        ks = oracle.seslk(self.family, self.keys["df04_dlk"], random, counter)
        amount4 = amount.to_bytes(4, "big")
        assert mac1 == oracle.mac4(self.family, ks, balance + amount4 + bytes((TYPE_LOAD,)) + TERMINAL_NO)
        when = bytes.fromhex(time)
        mac2 = oracle.mac4(self.family, ks, amount4 + bytes((TYPE_LOAD,)) + TERMINAL_NO + when)
        new_balance = (int.from_bytes(balance, "big") + amount).to_bytes(4, "big")
        tac = oracle.tac(self.family, self.keys["df04_dtk"], new_balance + counter.to_bytes(2, "big") + amount4
                         + bytes((TYPE_LOAD,)) + TERMINAL_NO + when)
        return apdu(0xB0, 0x2A, 0x00, 0x00, when + mac2, le=0x04), tac, counter

    def update_starting_day(self, mmdd: str) -> bytes:
        """UPDATE STARTING DAY `B0 56 00 00 06 <mmdd> <MAC4>` under the DSK process key (chip/apps/purse.py), not sent."""
        challenge = self.challenge()
        header = bytes.fromhex("B056000006")
        body = bytes.fromhex(mmdd)
        return header + body + self.mac("df04_dsk", challenge, header, body)

    def purchase(self, account: int, self_pay: int = 0, fund: int = 0, **kwargs) -> bytes:
        """INITIALIZE + DEBIT FOR PURCHASE (DF04 selected, PIN verified); returns TAC || MAC2."""
        answer = self.ok(self.init_purchase(account, self_pay, fund))
        command, expected, _ = self.debit(answer, account, self_pay, fund, **kwargs)
        assert self.ok(command) == expected
        return expected


def date_of(time: str) -> datetime.date:
    return datetime.date(int(time[:4]), int(time[4:6]), int(time[6:8]))
