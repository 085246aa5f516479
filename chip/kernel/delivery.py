"""Response delivery: which of a command's response data go back at once, and which wait for GET RESPONSE.

A command that made data answers them under its Le (ISO/IEC 7816-4 §5.1, §5.1.3) and the
protocol chosen at power-up:

- T=1 (and in-process by default): data + SW in one response. A case 2 command whose Le is
  shorter than the data gets `6Cxx` (xx = the right length, 00 = 256) and is sent again; a case
  4 command gets the first Le bytes and `61xx` (it has run: the rest waits for GET RESPONSE);
  Le = 00 or a longer Le gets all the data.
- T=0: a case 2 command follows the same Le rule; a command that carried data (case 3/4) or
  had no Le cannot receive data in the same exchange (ISO/IEC 7816-3 §12.2), so the card
  answers `61xx` and keeps the data.

GET RESPONSE (`00 C0 00 00 Le`, LD/T 32 P5 §6.6.4) takes the kept data: 6A86 with P1 P2 other
than 00 00, 6700 with command data, the selected application's refusal first (a blocked one
answers 9303), `6F00` with nothing kept, `6Cxx` to an Le longer than what is left (Le = 00: all
of it; in an application where Le 00 asks the length, `6Cxx` with the length), `61xx` after a
piece while data are left. Any other command, a malformed one, a reset or the power going
drops what is kept.

The card OS (`chip.Card`) holds one `Delivery`; the card's T=0 end (chip.contacts.t0) keeps
data through `Card.hold_response`. Applets apply the same Le rules to their own data (READ
RECORD with Le 00, READ BINARY past the end of the file) with `le_00_asks_length` and
`le_names_length`.
"""

from chip.iso.apdu import EXTENDED_MAX, SHORT_MAX, Command
from chip.iso.ins import GET_RESPONSE, cla_ins
from chip.iso.sw import SW1_MORE_DATA, SW1_WRONG_LE, SW_OK, SW_UNKNOWN, SW_WRONG_LENGTH, SW_WRONG_P1P2

SW_OK_BYTES = bytes((SW_OK >> 8, SW_OK & 0xFF))
GET_RESPONSE_HEADER = bytes((*cla_ins(GET_RESPONSE), 0x00, 0x00))


def status(sw: int) -> bytes:
    """SW1 SW2 as the card sends them."""
    return SW_OK_BYTES if sw == SW_OK else bytes((sw >> 8, sw & 0xFF))


_MORE_DATA = tuple(bytes((SW1_MORE_DATA, n)) for n in range(256))  # every 61xx, made once (T=0 answers one per SELECT)


def more_data(n: int) -> bytes:
    """`61xx`: `n` bytes wait for GET RESPONSE."""
    return _MORE_DATA[n if n < 256 else 0]


def wrong_le(n: int) -> bytes:
    """`6Cxx`: the command again with Le = `n` gets the data."""
    return bytes((SW1_WRONG_LE, n if n < 256 else 0))


def get_response(le: int) -> bytes:
    """The GET RESPONSE command that fetches `le` bytes (the xx of a `61xx`; 00 = 256)."""
    return GET_RESPONSE_HEADER + bytes((le,))


def le_names_length(cmd: Command) -> bool:
    """Whether the command's Le asks for that many bytes exactly, rather than for as many as there
    are (no Le, or the short 00 / extended 0000 maximum): a longer Le is answered `6Cxx`."""
    return cmd.le_present and cmd.ne != (EXTENDED_MAX if cmd.extended else SHORT_MAX)


def le_00_asks_length(cmd: Command, available: int) -> bool:
    """Whether a short Le 00 meets fewer than 256 bytes: where the application says so (LD/T 32 P5
    §6.6.4, §6.10.4), that asks the length, and the card answers `6Cxx`."""
    return cmd.le_present and cmd.ne == SHORT_MAX and not cmd.extended and available < SHORT_MAX


class Delivery:
    """The response data the card keeps for GET RESPONSE (`pending`: data, final SW), and the Le rules."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: tuple[bytes, int] | None = None

    def deliver(self, cmd: Command, data: bytes, sw: int, t0: bool) -> bytes:
        """The response to `cmd`, which made `data` (not empty) and ends with `sw`."""
        n = len(data)
        if t0 and cmd.case != 2:
            self.pending = (data, sw)
            return more_data(n)
        ne = cmd.ne
        if n <= ne:
            return data + (SW_OK_BYTES if sw == SW_OK else status(sw))  # the hot path: no call for 9000
        if cmd.le_present and n <= 256 and cmd.case == 2:
            # 6Cxx asks for the same command again: only for a command without data (READ RECORD,
            # GET DATA), which reads. A command with data may have changed state (GENERATE AC
            # moved the ATC): its answer is not thrown away but served by GET RESPONSE.
            return wrong_le(n)
        self.pending = (data[ne:], sw)
        return data[:ne] + more_data(n - ne)

    def hold(self, data: bytes, sw: bytes) -> bytes:
        """Keep `data` for GET RESPONSE, before what is already kept when `sw` is 61xx (a T=0
        transport that could not send it in this exchange); return the 61xx to answer."""
        pending = self.pending
        if sw[0] == SW1_MORE_DATA and pending is not None:
            data, final = data + pending[0], pending[1]
        else:
            final = sw[0] << 8 | sw[1]
        self.pending = (bytes(data), final)
        return more_data(len(data))

    def get_response(self, cmd: Command, applet) -> bytes:
        """GET RESPONSE in the selected `applet` (its `refusal()` and `LE_00_ASKS_LENGTH`)."""
        if cmd.p1 or cmd.p2:
            return status(SW_WRONG_P1P2)
        if cmd.data:
            return status(SW_WRONG_LENGTH)
        refusal = applet.refusal()
        if refusal:
            return status(refusal)
        pending = self.pending
        if pending is None:
            return status(SW_UNKNOWN)  # nothing waiting (LD/T 32 P5 §6.6.4)
        data, sw = pending
        n = len(data)
        ne = cmd.ne
        if ne == SHORT_MAX and applet.LE_00_ASKS_LENGTH and le_00_asks_length(cmd, n):  # ne first: no call
            return wrong_le(n)  # Le 00 with data waiting: the length (P5 §6.6.4)
        if ne > n:
            if le_names_length(cmd):
                return wrong_le(n)
            ne = n
        if ne < n:
            self.pending = (data[ne:], sw)
            return data[:ne] + more_data(n - ne)
        self.pending = None
        return data + (SW_OK_BYTES if sw == SW_OK else status(sw))
