"""The PSAM: the terminal's secure access module, a card of its own (SPEC §2.2, §5.1).

A terminal never holds the issuer's master keys in the clear: its PSAM does.
The PSAM diversifies a master key with a card's diversification data and
then encrypts or MACs with the card key, so the terminal can compute
external-authentication cryptograms and command MACs for that one card.
Commands follow the PBOC PSAM style:

- `80 1A P1 P2 08 <D>` DES INIT: P1 algorithm flag (01 3DES, 04 SM4), P2 the
  master key (01 RK, 02 IRK, 03 STK, 04 PUK); derive the card key from D.
- `80 FA 00 00 Lc <data>` DES CRYPT, encrypt ECB with that card key.
- `80 FA 05 00 Lc <IV><message>` DES CRYPT, MAC: answers the MAC4.

The derived key lives only in the session (cleared by reset and deselect).
"""

from .applet import Applet
from .crypto import BY_FLAG
from .fs import DF
from .pin import Key
from .sw import SW_CONDITIONS_NOT_SATISFIED, SW_OK, SW_REFERENCED_DATA_NOT_FOUND, SW_WRONG_LENGTH, SW_WRONG_P1P2, CardError

PSAM_NAME = bytes.fromhex("D156000005") + b"PSAM"
ADF = DF(0xDF10, "PSAM", name=PSAM_NAME)

MASTER_KEYS = {0x01: "ssse_rk", 0x02: "ssse_irk", 0x03: "ssse_stk", 0x04: "ssse_puk"}

DES_INIT = 0x801A
DES_CRYPT = 0x80FA
MODE_ENCRYPT = 0x00
MODE_MAC = 0x05


class PsamApplet(Applet):
    NAME = "psam"
    ROOT = ADF
    COMMANDS = {DES_INIT: "des_init", DES_CRYPT: "des_crypt"}

    def __init__(self, card, store):
        super().__init__(card, store)
        self.masters = {ref: store[f"psam.{name}"] for ref, name in MASTER_KEYS.items()}
        self.session = None  # (algorithm, card key) after DES INIT

    @staticmethod
    def personalize(store, profile, today) -> None:
        for name in MASTER_KEYS.values():
            store.add(f"psam.{name}", Key(profile.keys[name], 0))

    def deselect(self) -> None:
        self.session = None

    def des_init(self, cmd):
        algorithm = BY_FLAG.get(cmd.p1)
        if algorithm is None:
            raise CardError(SW_WRONG_P1P2)
        master = self.masters.get(cmd.p2)
        if master is None:
            raise CardError(SW_REFERENCED_DATA_NOT_FOUND)
        if len(cmd.data) != 8:
            raise CardError(SW_WRONG_LENGTH)
        self.session = (algorithm, algorithm.diversify(master.value, cmd.data))
        return b"", SW_OK

    def des_crypt(self, cmd):
        if self.session is None:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)
        if cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        algorithm, key = self.session
        data = cmd.data
        block = algorithm.block
        if cmd.p1 == MODE_ENCRYPT:
            if not data or len(data) % block:
                raise CardError(SW_WRONG_LENGTH)
            return algorithm.encrypt(key, data), SW_OK
        if cmd.p1 == MODE_MAC:
            if len(data) < block:
                raise CardError(SW_WRONG_LENGTH)
            return algorithm.mac4(key, data[block:], data[:block]), SW_OK
        raise CardError(SW_WRONG_P1P2)
