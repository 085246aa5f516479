"""The card's Answer To Reset (ISO/IEC 7816-3 §8).

TS 3B (direct convention); T0 announces TA1, TD1 and the historical bytes;
TA1 13 (Fi 372, Di 4); TD1 80 (T=0 offered, TD2 follows); TD2 31 (T=1
offered, TA3 and TB3 follow); TA3 FE (IFSC 254); TB3 45 (BWI 4, CWI 5);
then the historical bytes and TCK, the XOR of T0..last byte, required because
T=1 is offered.
"""

from functools import reduce
from operator import xor

INTERFACE = bytes.fromhex("13" "80" "31" "FE" "45")  # TA1 TD1 TD2 TA3 TB3
DEFAULT_HISTORICAL = bytes.fromhex("80") + bytes((0x5A,)) + b"SSCARD-SIM"  # category 80, issuer data (tag 5, len 10)


def build_atr(historical: bytes) -> bytes:
    if len(historical) > 15:
        raise ValueError("an ATR carries at most 15 historical bytes")
    t0 = 0x90 | len(historical)  # TA1 and TD1 present
    body = bytes((t0,)) + INTERFACE + historical
    return b"\x3B" + body + bytes((reduce(xor, body, 0),))
