"""The PSAM of LD/T 32 part 9: the terminal's secure access module, a card of its own.

A terminal never holds the issuer's root keys: its PSAM does, in key records
(P9 §6), and turns them into a card's process keys on request. Two algorithm
environments, both selectable at any time (P9 §5, figure 1):

  MF 3F00  `sx1.sh.社会保障`  the DES environment (DES and 3DES keys)
    0001 DIR, 0015 card public data, 0016 terminal number
    DF01 `D15600000590`  the social-security ADF
      0019 terminal transaction counter
      0011 / 0012 / 0013 national / provincial / city key files
    DDF1  `sx2.sh.社会保障`  the 16-byte environment: SM4 where P9 names SSF33 (docs/decisions.md S9)
      0001, 0015, 0016, DF01 `D15600000590` { 0019, 0011, 0012, 0013 } again

Commands (P9 §9; SELECT and READ BINARY/RECORD are the card OS's):

  00 84 00 00 Le                GET CHALLENGE              P9 §9.2
  BF EC 00 00 01 b              INITIALIZE ENVIRONMENT     P9 §9.3
  BF DE usage id Lc data        DELIVERY SESSION KEY       P9 §9.7
  80 FA P1 00 Lc data Le        CIPHER DATA                P9 §9.8
  80 70 01 00 Lc data 08        INIT SAM FOR PURCHASE      P9 §9.9 (MAC1)
  80 72 00 00 04 MAC2           CREDIT SAM FOR PURCHASE    P9 §9.10

DELIVERY SESSION KEY diversifies a root by the factors the terminal sends and
makes the process key of a card from it (P9 §7.3-7.4); CIPHER DATA then
enciphers (ECB) or MACs (CBC) whole blocks the terminal padded itself. The
temporary key register and the purchase session are volatile: a reset, a
deselect or a re-selection of the environment by name clears them.

Decisions where P9 is silent or ambiguous (docs/decisions.md):

- Factor order in DELIVERY SESSION KEY: the card-level factor first, then city,
  then province (S1, as P9 §9.9.3 lists them); the PSAM applies them from the
  root down, i.e. in reverse order of the data.
- The key is found by its type (usage b5-b1) and identifier; its level count
  comes from the PSAM's own record (P9 §6.2), and N factors that disagree with
  it are 6A80 (P9 §8: the terminal may try the other counts). Purchase keys
  (type 2) serve only INIT SAM FOR PURCHASE (P9 §6.3): 6985 in BF DE.
- CIPHER DATA restricts no key by type: docs/decisions.md S3 enciphers the new PIN under
  STK, a MAC key by P9 appendix B.
- The temporary key lasts for one computation of each kind (P9 §9.8.2,
  security.md §6.8): after a completed encryption (P1 00) it still serves one
  MAC (P1 05, or 07 03.. 01) and vice versa; a second computation of a kind
  already done is 6901, as is any CIPHER DATA without a key. P1 03 or 01
  without a MAC begun by 07 is 6985. A MAC answers its 4 bytes: the left half
  of the last DES block, the SM4 block folded (S7).
- INIT SAM FOR PURCHASE: N factors that disagree with the DPK's level count
  are 6700 (P9 §9.9.2 "an error"; Lc is what disagrees, and table 29 has no
  6A80); the DPK algorithm byte must name the environment's algorithm as the
  card's INITIALIZE FOR PURCHASE answers it, 01 DES family or 03 SM4 (the SSSE
  FCI flag, chip.apps.purse), else 6A88. Bad MAC2: 9302 (S18; the text's 63CF
  loses to table 31). A CREDIT SAM FOR PURCHASE, right or wrong, ends the
  purchase session.
- Terminal transaction counter (P9 §5.4): one counter behind both
  environments' 0019, so a terminal number and transaction number pair is
  never used twice. It holds the last number used (0 when new); INIT SAM FOR
  PURCHASE uses the next one and the OS makes it durable before the answer
  leaves the card. At FFFFFFFF the PSAM refuses (6985) instead of wrapping.
- INITIALIZE ENVIRONMENT checks that its byte is BCD (the first byte of a card
  identification code, two region digits; else 6A80); P9 §9.3 gives it no other
  effect, so it keeps none.
- Keyed commands (BF DE, 80 70) need the ADF, where the key files are: 6985
  elsewhere. GET CHALLENGE answers a random and keeps nothing: no PSAM command
  here consumes one (EXTERNAL AUTHENTICATE, CREATE KEY and CHANGE KEY of P9
  §9.4-9.6 are not modelled: 6D00; the key files are written at personalisation).
- Content P9 leaves open *(model)*: the terminal number is the profile's region
  code + `000001` (P9 §7.3: 6-digit city code, then 6 digits of the PSAM
  issuer); card public data: issuer 01, serial = the terminal number with
  leading zeros (20 digits), version 01, key-card type 00, FCI data 00 00; the
  DIR lists the ADF (label 社会保障 in GBK) and, in the MF, the 16-byte
  environment's DDF.
"""

from hmac import compare_digest
from typing import NamedTuple

from chip.apps.keys import KEYS, PURCHASE, key_factors, root_length
from chip.iso.ber import ber_tlv
from chip.iso.ins import (
    CIPHER_DATA,
    CREDIT_SAM_FOR_PURCHASE,
    DELIVERY_SESSION_KEY,
    GET_CHALLENGE,
    INIT_SAM_FOR_PURCHASE,
    INITIALIZE_ENVIRONMENT,
    READ_BINARY,
    READ_RECORD,
)
from chip.iso.sw import (
    SW_COMMAND_NOT_ACCEPTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_MAC_INVALID,
    SW_OK,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    CardError,
)
from chip.kernel.applet import Applet
from chip.kernel.crypto import SM4, TDES, Algorithm
from chip.kernel.cryptograms import purchase_mac1_input, purchase_mac2_input, purchase_session_input
from chip.kernel.fs import DF, NEVER, LinearEF, TransparentEF
from chip.kernel.records import Records
from chip.kernel.store import Binary

DES_ENVIRONMENT_NAME = b"sx1.sh." + "社会保障".encode("gbk")  # 7378312E73682EC9E7BBE1B1A3D5CF
SM4_ENVIRONMENT_NAME = b"sx2.sh." + "社会保障".encode("gbk")  # 7378322E73682EC9E7BBE1B1A3D5CF
ADF_AID = bytes.fromhex("D15600000590")
ADF_FID = 0xDF01
LABEL = "社会保障".encode("gbk")

# -- key records (P9 §6) -------------------------------------------------------------------------

TYPE_MASK = 0x1F  # usage b5-b1: the key type; b8-b6: the diversification levels (P9 §6.2)
# the algorithm byte of a key record (P9 §6.2): 3DES (16-byte value), DES (8), SSF33 (16; SM4 here, S9)
ALGORITHM_3DES, ALGORITHM_DES, ALGORITHM_SSF33 = 0x00, 0x01, 0x02
NATIONAL_KEYS, PROVINCIAL_KEYS, CITY_KEYS = 0x0011, 0x0012, 0x0013
# which key file holds an identifier (P9 appendix A, table A1: user-card DDF keys, then application keys)
KEY_ID_RANGES = {
    NATIONAL_KEYS: (range(0x08, 0x10), range(0x20, 0x40)),
    PROVINCIAL_KEYS: (range(0x10, 0x18), range(0x40, 0x80)),
    CITY_KEYS: (range(0x18, 0x20), range(0x80, 0xC0)),
}


class KeyRecord(NamedTuple):
    """One record of a key file (P9 §6.1): usage | identifier (a version for purchase keys) |
    RFU 00 | algorithm | rights 00 00 | RFU 00 00 | value."""

    usage: int
    ident: int
    algorithm: int
    value: bytes

    @property
    def levels(self) -> int:
        return self.usage >> 5

    @property
    def kind(self) -> int:
        return self.usage & TYPE_MASK

    def encode(self) -> bytes:
        return bytes((self.usage, self.ident, 0, self.algorithm, 0, 0, 0, 0)) + self.value

    @classmethod
    def decode(cls, record: bytes) -> "KeyRecord":
        return cls(record[0], record[1], record[3], record[8:])


def key_file(spec) -> int:
    """The key file of a root (P9 appendix A); purchase keys, addressed by version, are national
    (P9 appendix B: DPK versions 01-03 are national keys)."""
    if spec.usage & TYPE_MASK == PURCHASE:
        return NATIONAL_KEYS
    for fid, ranges in KEY_ID_RANGES.items():
        if any(spec.psam_id in r for r in ranges):
            return fid
    raise ValueError(f"{spec.label}: PSAM key identifier {spec.psam_id:02X} is reserved (P9 appendix A)")


def factor_data(spec, factors) -> bytes:
    """A key's diversification factors as DELIVERY SESSION KEY and INIT SAM FOR PURCHASE carry
    them (P9 §9.7, §9.9.3): its `key_factors` of the card's (province, city, card), card level
    first (docs/decisions.md S1)."""
    return b"".join(reversed(key_factors(spec, factors)))


def _root_first(data: bytes) -> list:
    """The 8-byte factors of `factor_data`, root level first: the order the PSAM applies them."""
    return [data[i:i + 8] for i in range(0, len(data), 8)][::-1]


# -- the file system (P9 §5, figure 1) ------------------------------------------------------------

PUBLIC_DATA = "psam.0015"
TERMINAL_NUMBER = "psam.0016"
TRANSACTION_COUNTER = "psam.0019"
TERMINAL_SUFFIX = "000001"  # digits 7-12 of the terminal number, the PSAM issuer's (model)


def _environment(fid: int, label: str, name: bytes, env: str, *more) -> DF:
    """An environment's DDF: DIR, card public data, terminal number and the ADF (P9 §5.1-5.10).
    Both environments show the same card public data, terminal number and counter."""
    return DF(fid, label, name=name, children=[
        LinearEF(0x0001, 0x01, f"psam.{env}.dir", "DIR"),
        TransparentEF(0x0015, 0x15, PUBLIC_DATA, "card public data", size=15),
        TransparentEF(0x0016, 0x16, TERMINAL_NUMBER, "terminal number", size=6),
        DF(ADF_FID, f"{env} social-security ADF", name=ADF_AID, children=[
            TransparentEF(0x0019, 0x19, TRANSACTION_COUNTER, "terminal transaction counter", size=4),
            LinearEF(NATIONAL_KEYS, 0x11, f"psam.{env}.0011", "national key file", read=NEVER),
            LinearEF(PROVINCIAL_KEYS, 0x12, f"psam.{env}.0012", "provincial key file", read=NEVER),
            LinearEF(CITY_KEYS, 0x13, f"psam.{env}.0013", "city key file", read=NEVER),
        ]),
        *more,
    ])


DDF1 = _environment(0xDDF1, "SM4 environment", SM4_ENVIRONMENT_NAME, "sm4")
MF = _environment(0x3F00, "MF, DES environment", DES_ENVIRONMENT_NAME, "des", DDF1)
DES_ADF = MF.by_fid[ADF_FID]
SM4_ADF = DDF1.by_fid[ADF_FID]


def _dir_entry(name: bytes, label: bytes | None = None) -> bytes:
    """A DIR entry (P3 §6.3): `61` { `4F` DF name [, `50` label of an ADF] }."""
    return ber_tlv(0x61, ber_tlv(0x4F, name) + (ber_tlv(0x50, label) if label else b""))


# -- CIPHER DATA modes (P9 §9.8.3) ---------------------------------------------------------------

ENCRYPT, MAC = "encrypt", "MAC"


class CipherMode(NamedTuple):
    kind: str  # ENCRYPT or MAC
    iv: bool  # the data opens with the MAC's initial value (P9 §9.8.2)
    last: bool  # the block completes the computation
    label: str


ENCRYPT_LAST, ENCRYPT_MORE, MAC_FIRST, MAC_NEXT, MAC_LAST, MAC_ONLY = 0x00, 0x02, 0x07, 0x03, 0x01, 0x05
CIPHER_MODES = {
    ENCRYPT_LAST: CipherMode(ENCRYPT, False, True, "encrypt, no block follows"),
    ENCRYPT_MORE: CipherMode(ENCRYPT, False, False, "encrypt, blocks follow"),
    MAC_FIRST: CipherMode(MAC, True, False, "MAC, first block"),
    MAC_NEXT: CipherMode(MAC, False, False, "MAC, next block"),
    MAC_LAST: CipherMode(MAC, False, True, "MAC, last block"),
    MAC_ONLY: CipherMode(MAC, True, True, "MAC, only block"),
}
MAX_BLOCKS = 8  # Lc at most 40 (DES) / 80 (16-byte family)
PURCHASE_FIELDS = 0x1C  # INIT SAM FOR PURCHASE's data before the factors (P9 table 27)


class _Register:
    """The temporary key register: a process key and the computations it has done (P9 §9.8.2)."""

    __slots__ = ("chain", "done", "key")

    def __init__(self, key: bytes):
        self.key = key
        self.done: set[str] = set()  # the kinds of computation completed with this key
        self.chain = None  # the CBC value of a MAC under way (P1 07, 03)


class _Purchase(NamedTuple):
    sespk: bytes
    amounts: bytes  # account 4 || self-pay 4 || fund 4, what MAC2 covers


class Environment(Applet):
    """One algorithm environment of the PSAM: its DDF (ROOT), ADF and key files, and the commands."""

    ROOT: DF  # the environment's DF
    ALGORITHM: Algorithm  # chip.kernel.crypto TDES or SM4
    ADF: DF
    KEY_ALGORITHMS: dict[int, int] = {}  # the record's algorithm byte by key length
    CHALLENGE_LENGTHS: tuple[int, ...] = ()  # P9 §9.2.3
    COMMANDS = {
        READ_BINARY: "read_binary",
        READ_RECORD: "read_record",
        GET_CHALLENGE: "get_challenge",
        INITIALIZE_ENVIRONMENT: "initialize_environment",
        DELIVERY_SESSION_KEY: "delivery_session_key",
        CIPHER_DATA: "cipher_data",
        INIT_SAM_FOR_PURCHASE: "init_sam_for_purchase",
        CREDIT_SAM_FOR_PURCHASE: "credit_sam_for_purchase",
    }

    def __init__(self, card, store):
        super().__init__(card, store)
        self.key_files = [store[ef.key] for ef in self.ADF.children if ef.fid in KEY_ID_RANGES]
        self.register = None  # DELIVERY SESSION KEY's process key
        self.purchase = None  # INIT SAM FOR PURCHASE's SESPK, for CREDIT SAM FOR PURCHASE

    @classmethod
    def personalize(cls, store, profile, today) -> None:
        """The environment's DIR and key files: every root of chip.apps.keys from the profile's `[keys]`,
        cut to its length in this environment (8 bytes for the STK keys in DES, P9 table B1)."""
        store.add(cls.ROOT.by_fid[0x0001].key, Records(cls.directory()))
        files: dict[int, list[bytes]] = {fid: [] for fid in KEY_ID_RANGES}
        for spec in KEYS:
            value = profile.keys[spec.name][:root_length(spec, cls.ALGORITHM.block)]
            record = KeyRecord(spec.usage, spec.psam_id, cls.KEY_ALGORITHMS[len(value)], value)
            files[key_file(spec)].append(record.encode())
        for ef in cls.ADF.children:
            if ef.fid in files:
                store.add(ef.key, Records(files[ef.fid]))

    @classmethod
    def directory(cls) -> list:
        """The DIR records (P9 §5.1): the ADF."""
        return [_dir_entry(ADF_AID, LABEL)]

    def deselect(self) -> None:
        self.register = None
        self.purchase = None

    def fci_proprietary(self, node) -> bytes:
        """`A5` of an environment's DDF: the SFI of its DIR, `88 01 01` (P5 table 36 layout)."""
        return ber_tlv(0x88, b"\x01") if node is self.ROOT else b""

    # -- helpers ---------------------------------------------------------------------------------
    def _in_adf(self) -> None:
        if self.card.current_df is not self.ADF:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)

    def _root(self, kind: int, ident: int) -> KeyRecord:
        """The key record of type `kind` and identifier (or version) `ident`, or 6A88."""
        for content in self.key_files:
            for record in map(KeyRecord.decode, content.records):
                if record.kind == kind and record.ident == ident:
                    return record
        raise CardError(SW_REFERENCED_DATA_NOT_FOUND)

    def _card_key(self, record: KeyRecord, factors: bytes) -> bytes:
        """The root diversified by the factors of `factor_data`, applied from the root down
        (P9 §7.3, docs/decisions.md S1)."""
        return self.ALGORITHM.diversify_levels(record.value, _root_first(factors))

    # -- commands --------------------------------------------------------------------------------
    def get_challenge(self, cmd):
        """GET CHALLENGE (00 84 00 00 Le), P9 §9.2: Le 04 or 08 (10 too in the 16-byte environment)."""
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        if cmd.data or not cmd.le_present or cmd.ne not in self.CHALLENGE_LENGTHS:
            raise CardError(SW_WRONG_LENGTH)
        return self.card.random(cmd.ne), SW_OK

    def initialize_environment(self, cmd):
        """INITIALIZE ENVIRONMENT (BF EC 00 00 01 b), P9 §9.3: b = the first byte of the user
        card's identification code, two BCD digits of its region code (else 6A80)."""
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        if len(cmd.data) != 1:
            raise CardError(SW_WRONG_LENGTH)
        b = cmd.data[0]
        if b >> 4 > 9 or b & 0x0F > 9:
            raise CardError(SW_WRONG_DATA)
        return b"", SW_OK

    def delivery_session_key(self, cmd):
        """DELIVERY SESSION KEY (BF DE usage id Lc, N x 8 factors || process factor M), P9 §9.7.

        Lc = M + 8N, M = the block (8 DES, 16 SM4), N = 0-3 (else 6700). The key of type
        usage b5-b1 and identifier P2 (6A88) is diversified by the N factors, which must be
        as many as its levels (6A80), then the process key E_K(process factor) (P4 §8.4)
        goes into the temporary register. The register is emptied first, whatever the outcome.
        """
        self.register = None
        data = cmd.data
        m = self.ALGORITHM.block
        n, odd = divmod(len(data) - m, 8)
        if odd or not 0 <= n <= 3:
            raise CardError(SW_WRONG_LENGTH)
        self._in_adf()
        record = self._root(cmd.p1 & TYPE_MASK, cmd.p2)
        if record.kind == PURCHASE:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)
        if record.levels != n:
            raise CardError(SW_WRONG_DATA)
        card_key = self._card_key(record, data[:8 * n])
        self.register = _Register(self.ALGORITHM.process_key(card_key, data[8 * n:]))
        return b"", SW_OK

    def cipher_data(self, cmd):
        """CIPHER DATA (80 FA P1 00 Lc data Le), P9 §9.8: ECB encryption or a CBC MAC under the
        temporary key, over whole blocks (the terminal pads).

        P1 (6A86 otherwise): see CIPHER_MODES; with 07 and 05 the first block is the MAC's
        initial value. Lc: whole blocks, at most 8; at least one (two for 05): else 6700.
        """
        mode = CIPHER_MODES.get(cmd.p1)
        if mode is None or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        data = cmd.data
        block = self.ALGORITHM.block
        fewest = 2 if cmd.p1 == MAC_ONLY else 1
        if len(data) % block or not fewest * block <= len(data) <= MAX_BLOCKS * block:
            raise CardError(SW_WRONG_LENGTH)
        register = self.register
        if register is None or mode.kind in register.done:
            raise CardError(SW_COMMAND_NOT_ACCEPTED)
        if mode.kind == ENCRYPT:
            answer = self.ALGORITHM.encrypt(register.key, data)
        else:
            if mode.iv:
                chain, data = data[:block], data[block:]
            elif register.chain is None:
                raise CardError(SW_CONDITIONS_NOT_SATISFIED)
            else:
                chain = register.chain
            chain = self.ALGORITHM.cbc(register.key, data, chain)
            register.chain = None if mode.last else chain
            answer = self.ALGORITHM.mac_result(chain) if mode.last else b""
        if mode.last:
            register.done.add(mode.kind)
            if len(register.done) == 2:
                self.register = None
        return answer, SW_OK

    def init_sam_for_purchase(self, cmd):
        """INIT SAM FOR PURCHASE (80 70 01 00 Lc=1C+8N ... 08), P9 §9.9: MAC1.

        Data: card random 4 || purchase counter 2 || account 4 || self-pay 4 || fund 4 ||
        transaction type 1 || date 4 || time 3 || DPK version 1 || DPK algorithm 1 || N = 1-3
        factors, card level first. DPK = the root of that version diversified by them; the
        terminal transaction number is the counter's next value; SESPK = process_key(DPK,
        random || counter || the number's right two bytes) (P7 §12.2); MAC1 = MAC_SESPK(the
        three amounts || type || terminal number || date || time) (P7 §12.3). Answer: the
        terminal transaction number 4 || MAC1 4.
        """
        self.purchase = None
        if cmd.p1 != 0x01 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        data = cmd.data
        n, odd = divmod(len(data) - PURCHASE_FIELDS, 8)
        if odd or not 1 <= n <= 3:
            raise CardError(SW_WRONG_LENGTH)
        self._in_adf()
        random, counter, amounts, kind, when = data[0:4], data[4:6], data[6:18], data[18], data[19:26]
        version, algorithm = data[26], data[27]
        record = self._root(PURCHASE, version)
        if algorithm != self.ALGORITHM.flag:
            raise CardError(SW_REFERENCED_DATA_NOT_FOUND)
        if record.levels != n:
            raise CardError(SW_WRONG_LENGTH)
        number = self._next_transaction_number()
        dpk = self._card_key(record, data[PURCHASE_FIELDS:])
        sespk = self.ALGORITHM.process_key(dpk, purchase_session_input(random, counter, number))
        terminal = self.store[TERMINAL_NUMBER].data
        mac1 = self.ALGORITHM.command_mac(sespk, purchase_mac1_input(amounts, kind, terminal, when))
        self.purchase = _Purchase(sespk, amounts)
        return number + mac1, SW_OK

    def _next_transaction_number(self) -> bytes:
        """The counter moves on inside this command's transaction (durable before the answer)."""
        counter = self.store[TRANSACTION_COUNTER]
        last = int.from_bytes(counter.data, "big")
        if last == 0xFFFFFFFF:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)
        number = (last + 1).to_bytes(4, "big")
        self.store.write(counter, "data", number)
        return number

    def credit_sam_for_purchase(self, cmd):
        """CREDIT SAM FOR PURCHASE (80 72 00 00 04 MAC2), P9 §9.10: MAC2 = MAC_SESPK(the three
        amounts) (P7 §12.6), else 9302; 6901 without an INIT SAM FOR PURCHASE before."""
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        if len(cmd.data) != 4:
            raise CardError(SW_WRONG_LENGTH)
        purchase, self.purchase = self.purchase, None
        if purchase is None:
            raise CardError(SW_COMMAND_NOT_ACCEPTED)
        if not compare_digest(self.ALGORITHM.command_mac(purchase.sespk, purchase_mac2_input(purchase.amounts)),
                              cmd.data):
            raise CardError(SW_MAC_INVALID)
        return b"", SW_OK


class DesEnvironment(Environment):
    """The DES environment, the MF itself (P9 §5.1-5.4, §7.1): it also creates the files
    both environments share (card public data, terminal number, transaction counter)."""

    NAME = "psam_des"
    ROOT = MF
    ALGORITHM = TDES
    ADF = DES_ADF
    KEY_ALGORITHMS = {8: ALGORITHM_DES, 16: ALGORITHM_3DES}
    CHALLENGE_LENGTHS = (4, 8)

    @classmethod
    def personalize(cls, store, profile, today) -> None:
        terminal = profile.region_code + TERMINAL_SUFFIX
        store.add(PUBLIC_DATA, Binary(b"\x01" + bytes.fromhex(terminal.rjust(20, "0")) + b"\x01\x00\x00\x00"))
        store.add(TERMINAL_NUMBER, Binary(bytes.fromhex(terminal)))
        store.add(TRANSACTION_COUNTER, Binary(bytes(4)))
        super().personalize(store, profile, today)

    @classmethod
    def directory(cls) -> list:
        """The ADF, then the 16-byte environment's DDF (P9 §5.1 table 1: records 1 and 2)."""
        return [_dir_entry(ADF_AID, LABEL), _dir_entry(SM4_ENVIRONMENT_NAME)]


class Sm4Environment(Environment):
    """The 16-byte environment DDF1 (P9 §7.2), SM4 where P9 names SSF33 (docs/decisions.md S9)."""

    NAME = "psam_sm4"
    ROOT = DDF1
    ALGORITHM = SM4
    ADF = SM4_ADF
    KEY_ALGORITHMS = {16: ALGORITHM_SSF33}
    CHALLENGE_LENGTHS = (4, 8, 16)


class PsamKind:
    """The PSAM as a kind of chip for the card OS (chip.card.Kind's interface). Its MF is the
    DES environment itself, named `sx1.sh.社会保障` (P9 §5), so the tree is declared here whole
    instead of under a generic MF. The two ADFs share one AID: SELECT by that name finds the
    DES one (the first declared); the helper selects the ADF by FID, which P9 table 11 allows."""

    name = "psam"
    applets = (DesEnvironment, Sm4Environment)  # Sm4Environment owns DDF1's subtree
    mf = MF

    def __init__(self):
        self.by_name = {}
        for node in MF.walk():
            if node.is_df and node.name:
                self.by_name.setdefault(node.name, node)


PSAM = PsamKind()
