"""The exchange levels of a CCID reader's XfrBlock (USB CCID rev 1.1 §5.1 dwFeatures, §6.1.4): what one
XfrBlock carries, and who runs the transmission protocol towards the card.

- TPDU level, what the GemPC Twin announces (dwFeatures 0x00010230): the host runs the protocol
  and the firmware moves its units. On T=1 an XfrBlock is one block (ISO/IEC 7816-3 §11.3) for
  the card's T=1 end, and the block it answers comes back. On T=0 it is a short command APDU the
  firmware maps to one TPDU (7816-3 §12.2) with `ReaderT0(transport=False)`; a `61xx` or `6Cxx`
  is the answer, and the host sends GET RESPONSE, or the command again with the right P3, itself.
- Short APDU level: an XfrBlock is one short command APDU whatever the protocol, and the
  firmware runs the protocol itself with the reader ends of `reader.link`, joined to the card's
  ends by `Pump`. On T=0 `ReaderT0` maps it to TPDUs: `61xx` and `6Cxx` are transport-level and
  never reach the application (LD/T 32 P2 §9.3.1; 7816-3 §12.2): the reader sends GET RESPONSE,
  or the command again with P3 = xx (which P5 §6.10.4's READ RECORD with Le 00 relies on, the
  reader firmware re-issuing it). On T=1 `ReaderT1` announces the reader's own IFSD with
  S(IFS request) when the session starts, chains both ways and recovers (§11.6); the APDU and
  its response go through unchanged, a `6Cxx` included, as on every T=1 path.

The GemPC Twin switches to the short APDU level on its Escape `1F 02` (libccid's
ESC_GEMPC_SET_APDU_MODE). libccid sends it once, when it opens a GemPC Twin or GemPC Key and its
driver option 0x02 (DRIVER_OPTION_GEMPC_TWIN_KEY_APDU, `ifdDriverOptions` in the Info.plist of
`ifd-ccid.bundle` under PCSCLITE_HP_DROPDIR) is set; on success it drives the reader at short
APDU level (ccid.c, ccid_open_hack_post). The level holds until the firmware stops: powering the
card off and on does not change it.
"""

from collections.abc import Callable

from chip import Card
from chip.contacts.t0 import CardT0
from chip.contacts.t1 import IFS_MAX, CardT1
from chip.contacts.timing import EDC_CRC, EDC_LRC, fi_di_values
from chip.iso.apdu import parse
from chip.iso.sw import CardError
from reader.ccid.messages import TCCKS_CRC
from reader.link.t0 import ReaderT0
from reader.link.t1 import ReaderT1
from reader.link.wire import Pump

TPDU, SHORT_APDU = "tpdu", "apdu"
LEVELS = (TPDU, SHORT_APDU)
ESCAPE_SET_APDU_LEVEL = b"\x1f\x02"  # Gemalto's "set APDU mode": answered with no data, the level switched


def link_parameters(protocol: int, structure: bytes) -> dict:
    """The keyword arguments both ends of the contacts take for `protocol` from the §6.1.7 structure:
    T=0 the waiting integer and Di; T=1 IFSC, the checksum, BWI/CWI, Fi and Di."""
    values = fi_di_values(structure[0])
    assert values is not None
    fi, di, _ = values
    if protocol == 0:
        return {"wi": structure[3], "di": di}
    return {"ifsc": structure[5], "edc": EDC_CRC if structure[1] & TCCKS_CRC else EDC_LRC,
            "bwi": structure[3] >> 4, "cwi": structure[3] & 0x0F, "fi": fi, "di": di}


def reader_end(level: str, protocol: int, parameters: dict) -> ReaderT0 | ReaderT1 | None:
    """The firmware's end of the contacts at `level` (None: TPDU level on T=1, the host's blocks go
    to the card's end as they are)."""
    if protocol == 0:
        return ReaderT0(transport=level != TPDU, **parameters)
    return None if level == TPDU else ReaderT1(ifsd=IFS_MAX, **parameters)


def carries(level: str, data: bytes) -> bool:
    """Whether one XfrBlock at `level` takes `data`. At short APDU level a command APDU with extended
    lengths (ISO/IEC 7816-4 §5.1) is refused: its response may not fit the reader's messages
    (dwMaxCCIDMessageLength 271, 261 bytes of data). Bytes that are no APDU at all go on to the card,
    which answers them 6700 as on every path."""
    if level != SHORT_APDU:
        return True
    try:
        return not parse(data).extended
    except CardError:
        return True


def exchange(reader: ReaderT0 | ReaderT1 | None, card_end: CardT0 | CardT1, data: bytes) -> bytes | None:
    """What one XfrBlock's `data` gets from the card (None: nothing, the card is mute or the link
    failed); `LinkError` when the ends never finish."""
    if reader is None:
        assert isinstance(card_end, CardT1)
        return pass_block(card_end, data)
    done = Pump(reader, card_end).run(data)
    return None if done.error else done.response


def pass_block(card_end: CardT1, block: bytes) -> bytes | None:
    """TPDU level on T=1: the host's block to the card's end, and the block it answers (None: none)."""
    card_end.receive(block)
    if not card_end.has_output and card_end.wait_etu:  # a block shorter than its LEN: its CWT runs out
        card_end.timeout()
    return card_end.output() or None


def processing_etu(card: Card) -> Callable[[bytes], int]:
    """The card's processing time of a command, in etu, for its end of the contacts (`delay_etu`):
    what the card's fault plan gives it (a `delay` fault), read when the command comes - a plan armed
    later on serve's control line counts too. A slow card asks for time as a real one does: NULLs on
    T=0, S(WTX request) on T=1 (ISO/IEC 7816-3 §10.2, §11.4.3)."""

    def etu(apdu: bytes) -> int:
        plan = card.faults
        return 0 if plan is None else plan.slow_etu(apdu)

    return etu
