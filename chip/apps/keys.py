"""The social-security card's keys, in one table: who holds them, how they are named and derived.

Each row is one key of LD/T 32 (P10 §6.4.2 names and purposes; P9 appendix B
card key identifiers, PSAM usage bytes and key identifiers):

- `card_id`: the key identifier on the user card, P2 of EXTERNAL AUTHENTICATE
  (P5 table 14: b7 = 0 global, 1 DF-specific; b3-b0 the key number). `None`
  for keys the card uses only inside a command (STK for MACs, the purse keys).
- `df`: the DF that holds it (`ssse` the DDF, `df04` the medical DF); a key
  is found in the current application (P5 §6.4).
- `levels`: how many diversification levels turn the root key into the card
  key (P9 §7.3): 3 = province, city, card factor; 1 = the card factor only.
  The PSAM usage byte carries the same count in b8-b6 (P9 §6.2).
- `usage`, `psam_id`: how a PSAM addresses the root (P1, P2 of DELIVERY
  SESSION KEY `BF DE`); usage low 5 bits = key type (P9 §6.3: 2 purchase,
  6 MAC, 7 encryption, 8 MAC and encryption, 9 load, 12 TAC).
- `counted`: whether failed external authentications decrement the key's try
  counter (P7 §6.6); BK's never do, so a lost card can always be blocked
  (P7 §13.1-13.2).
- `external`: whether EXTERNAL AUTHENTICATE may name it; IRK (card id 00)
  serves INTERNAL AUTHENTICATE only, the card proving itself (P5 §6.7).
- `short_des`: an 8-byte key in the DES family (STK and STKDFxx, P9 table B1
  note; the Sichuan reader spec appendix B gives length 08), 16 bytes in SM4.

The card stores the finished card keys (P10 §5.2.5: the card never
diversifies); the PSAM stores the roots; both take the derivation from here.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class KeySpec:
    name: str  # the profile's `[keys]` field and the store name
    label: str  # the standard's name
    df: str
    card_id: int | None
    levels: int
    usage: int
    psam_id: int
    counted: bool = True
    short_des: bool = False
    external: bool = True

    @property
    def store_key(self) -> str:
        return f"{self.df}.key.{self.name}"


def _usage(levels: int, kind: int) -> int:
    return levels << 5 | kind


PURCHASE, MAC, ENCRYPT, MAC_AND_ENCRYPT, LOAD, TAC = 2, 6, 7, 8, 9, 12

KEYS = (
    KeySpec("ssse_irk", "IRK", "ssse", 0x00, 3, _usage(3, ENCRYPT), 0x08, external=False),
    KeySpec("ssse_rk", "RKSSSE", "ssse", 0x0A, 3, _usage(3, ENCRYPT), 0x0A),
    KeySpec("ssse_stk", "STK", "ssse", None, 1, _usage(1, MAC), 0x09, short_des=True),
    KeySpec("ssse_puk", "PUK", "ssse", 0x06, 1, _usage(1, ENCRYPT), 0x10),
    KeySpec("ssse_bk", "BK", "ssse", 0x05, 1, _usage(1, ENCRYPT), 0x11, counted=False),
    KeySpec("ssse_uk", "UKSSSE", "ssse", 0x04, 1, _usage(1, ENCRYPT), 0x12),
    KeySpec("df04_stk", "STKDF04", "df04", None, 1, _usage(1, MAC), 0x23, short_des=True),
    KeySpec("df04_rk1", "RK1DF04", "df04", 0x84, 3, _usage(3, ENCRYPT), 0x2D),
    KeySpec("df04_uk1", "UK1DF04", "df04", 0x85, 1, _usage(1, ENCRYPT), 0x49),
    KeySpec("df04_uk2", "UK2DF04", "df04", 0x86, 1, _usage(1, ENCRYPT), 0x2A),
    KeySpec("df04_dpk", "DPK", "df04", None, 1, _usage(1, PURCHASE), 0x01),
    KeySpec("df04_dlk", "DLK", "df04", None, 1, _usage(1, LOAD), 0x4B),
    KeySpec("df04_dtk", "DTK", "df04", None, 1, _usage(1, TAC), 0x4C),
    KeySpec("df04_dsk", "DSK", "df04", None, 1, _usage(1, MAC_AND_ENCRYPT), 0x4A),
)
BY_NAME = {spec.name: spec for spec in KEYS}
BY_CARD_ID = {(spec.df, spec.card_id): spec for spec in KEYS if spec.card_id is not None}
BY_PSAM = {(spec.usage, spec.psam_id): spec for spec in KEYS}
FINANCIAL_KEYS = ("fin_imk_ac", "fin_imk_smi", "fin_imk_smc")
EXTERNAL_AUTH_TRIES = 3  # per counted key (project choice: the standard gives no number, P7 §6.6)
KEY_VERSION = 0x01  # the one version each card key has (byte 17 of INTERNAL/EXTERNAL AUTHENTICATE)


def root_length(spec: KeySpec, block: int) -> int:
    """Bytes of a root (and card) key: 8 for the short DES-family keys, else 16."""
    return 8 if spec.short_des and block == 8 else 16


def key_factors(spec: KeySpec, factors) -> tuple:
    """What the key is diversified by: the last `spec.levels` of a card's (province, city, card)
    factors, root level first (P9 §7.3)."""
    return factors[3 - spec.levels:]


def card_key(algorithm, spec: KeySpec, root: bytes, factors) -> bytes:
    """The card key: `root` diversified by its `key_factors`."""
    return algorithm.diversify_levels(root[:root_length(spec, algorithm.block)], key_factors(spec, factors))
