"""ISO/IEC 7816-3 transmission parameters and the times they give, for both ends of the contacts.

The card's ends (chip/contacts), the reader's (reader/link) and the ATR parser take every
clock-rate table, character time, waiting time and error detection code from here.

- Fi, Di (§8.3, Tables 7 and 8): TA1 - or the PPS1 that replaces it (§9) - holds the index of
  the clock rate conversion integer Fi (high nibble; with it comes the highest clock frequency
  f(max) the card accepts) and of the baud rate adjustment integer Di (low nibble). Without TA1
  and until a PPS: Fd = 372, Dd = 1 (TA1 11). One etu lasts Fi / Di clock cycles.
- Characters (§7, §8.3): 10 etu on the line (start bit, 8 data bits, parity), then at
  least 2 etu of guard time: 12 etu start-to-start. The reader's characters are 12 + N etu
  apart, N from TC1; N = 255 is the minimum, 12 etu on T=0 and 11 on T=1. TC1 binds the reader
  only, so the card's characters are 12 etu apart (LD/T 32 P2 §9.2.2.1). A T=0 receiver that
  sees a parity error holds I/O low (the error signal) and the sender repeats the character (§7.3).
- T=0 (§10.2): the work waiting time WWT = 960 × WI × Di etu (WI from TC2, 10 without it); a
  card still busy when a WWT is about to run out sends a NULL (60), which starts another.
- T=1 (§11.4.3): the character waiting time CWT = 11 + 2^CWI etu and the block waiting time
  BWT = 11 + 2^BWI × 960 × 372 × Di / Fi etu (BWI, CWI from TB3: 4 and 13 without it).
- T=1 error detection code (§11.4.4, TC3 b1): LRC, one byte, the XOR of the block; or CRC, two
  bytes, ISO/IEC 3309 (x^16 + x^12 + x^5 + 1, initial FFFF, computed LSB-first, sent high byte
  first: what the CCID driver computes).
"""

# -- Fi and Di (§8.3, Tables 7 and 8) ---------------------------------------------------------------------

# Fi index -> (Fi, f(max) in Hz); Di index -> Di. Missing indices are RFU.
FI_TABLE = {0x0: (372, 4_000_000), 0x1: (372, 5_000_000), 0x2: (558, 6_000_000), 0x3: (744, 8_000_000),
            0x4: (1116, 12_000_000), 0x5: (1488, 16_000_000), 0x6: (1860, 20_000_000),
            0x9: (512, 5_000_000), 0xA: (768, 7_500_000), 0xB: (1024, 10_000_000),
            0xC: (1536, 15_000_000), 0xD: (2048, 20_000_000)}
DI_TABLE = {0x1: 1, 0x2: 2, 0x3: 4, 0x4: 8, 0x5: 16, 0x6: 32, 0x7: 64, 0x8: 12, 0x9: 20}

DEFAULT_FI_DI = 0x11  # Fd = 372, Dd = 1: the values before (and without) TA1 or PPS
FD, DD = 372, 1
DEFAULT_CLOCK = 4_000_000  # Hz: the simulated clock frequency f


def fi_di_values(fi_di: int) -> tuple[int, int, int] | None:
    """(Fi, Di, f(max)) for a TA1/PPS1 byte, None if either index is RFU."""
    if fi_di >> 4 not in FI_TABLE or fi_di & 0xF not in DI_TABLE:
        return None
    fi, f_max = FI_TABLE[fi_di >> 4]
    return fi, DI_TABLE[fi_di & 0xF], f_max


def etu_seconds(etu: int, fi: int, di: int, clock: int) -> float:
    """The duration of `etu` elementary time units: one etu is Fi / Di clock cycles."""
    return etu * fi / (di * clock)


# -- characters (§7, §8.3) --------------------------------------------------------------------------------

CHARACTER_ETU = 10  # start bit, 8 data bits, parity
MIN_CHARACTER_ETU = 12  # start-to-start of characters with no extra guard time (10 etu + 2 etu guard time)
CARD_CHARACTER_ETU = MIN_CHARACTER_ETU  # the card's characters: TC1 binds the reader only
ERROR_SIGNAL_ETU = 2  # a T=0 receiver holds I/O low after a parity error; the sender repeats the character
REPEATED_CHARACTER_ETU = ERROR_SIGNAL_ETU + MIN_CHARACTER_ETU  # what a T=0 character repeated once adds


def character_etu(n: int, protocol: int) -> int:
    """Start-to-start of two characters the reader sends, in etu: 12 + N (TC1); N = 255 means the
    minimum, 12 on T=0 and 11 on T=1."""
    if n == 255:
        return CHARACTER_ETU + 1 if protocol == 1 else MIN_CHARACTER_ETU
    return MIN_CHARACTER_ETU + n


# -- T=0 waiting time (§10.2) -----------------------------------------------------------------------------

DEFAULT_WI = 10


def wwt_etu(wi: int = DEFAULT_WI, di: int = DD) -> int:
    """The T=0 work waiting time in etu: 960 × WI × Di; 9600 on the default card (WI 10, Di 1:
    P2 §9.2.2.1). At Dd (960 × WI) it is also how long a reader waits for the PPS answer."""
    return 960 * wi * di


def nulls_for(busy_etu: int, wwt: int) -> int:
    """NULL bytes a T=0 card sends while busy for `busy_etu`: one per WWT it would otherwise stay silent."""
    return (busy_etu - 1) // wwt if busy_etu > wwt else 0


# -- T=1 waiting times (§11.4.3) --------------------------------------------------------------------------

DEFAULT_BWI, DEFAULT_CWI = 4, 13  # without TB3


def bwt_etu(bwi: int = DEFAULT_BWI, fi: int = FD, di: int = 4) -> int:
    """Block waiting time in etu: 11 + 2^BWI × 960 × 372 × Di / Fi, rounded up."""
    return 11 + -(-((1 << bwi) * 960 * 372 * di) // fi)


def cwt_etu(cwi: int = 5) -> int:
    """Character waiting time in etu: 11 + 2^CWI."""
    return 11 + (1 << cwi)


# -- T=1 error detection code (§11.4.4) -------------------------------------------------------------------

EDC_LRC = "lrc"
EDC_CRC = "crc"
EDC_KINDS = (EDC_LRC, EDC_CRC)


def _crc_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def lrc(data: bytes) -> bytes:
    """The one-byte LRC: XOR of every byte."""
    value = 0
    for byte in data:
        value ^= byte
    return bytes((value,))


def crc(data: bytes) -> bytes:
    """The two-byte CRC (ISO 3309 polynomial 1021 reflected, initial FFFF), high byte first."""
    value = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        value = (value >> 8) ^ table[(value ^ byte) & 0xFF]
    return bytes((value >> 8, value & 0xFF))


def edc(data: bytes, kind: str = EDC_LRC) -> bytes:
    """The epilogue of a block whose prologue + INF is `data`."""
    return crc(data) if kind == EDC_CRC else lrc(data)


def edc_size(kind: str) -> int:
    return 2 if kind == EDC_CRC else 1


def check_edc_kind(kind: str) -> str:
    if kind not in EDC_KINDS:
        raise ValueError(f"edc must be 'lrc' or 'crc', not {kind!r}")
    return kind
