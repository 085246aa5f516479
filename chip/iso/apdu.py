"""Command APDU decoding (ISO/IEC 7816-3 §12.1, 7816-4 §5.1): cases 1-4, short and extended.

The decoder only answers "which case, what data, how many bytes may come
back". What a malformed form is worth is decided here once: every length
inconsistency is `6700`, as a real card's OS rejects it before any applet runs.
The class and the instruction come first, though: `Card.transmit` answers a
malformed APDU of a class it does not speak `6E00`, and one with an unknown INS
`6D00` (`Card.knows`). On T=0 the card has only the 5-byte header when it must
answer (ISO/IEC 7816-3 §10.3.3) and checks CLA, then INS, before any data
arrive; ISO/IEC 7816-4 leaves the order of the checks to the card, so the
simulator uses the one that gives a command the same SW on every transport.
"""

from chip.iso.sw import SW_WRONG_LENGTH, CardError

SHORT_MAX = 256
EXTENDED_MAX = 65536


class Command:
    """One decoded command APDU.

    `ne` is the number of response bytes the terminal accepts; `le_present`
    tells a case 2/4 command from a case 1/3 one. Without an Le field `ne` is
    the short maximum (256; 65536 for extended): real cards answer FCI to a
    case 3 SELECT too. `case` is 1-4.

    `decode` fills one in place: the card OS keeps one Command and decodes every APDU into it, as
    a card's OS reuses its one APDU buffer (Java Card's APDU object), so the hot path allocates no
    object per command; a handler may keep values out of it, never the Command itself. `parse`
    decodes into a new one.
    """

    __slots__ = ("case", "cla", "data", "extended", "ins", "le_present", "ne", "p1", "p2", "raw")
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    ne: int
    le_present: bool
    case: int
    extended: bool
    raw: bytes

    def __repr__(self) -> str:
        return f"Command({self.raw.hex().upper()})"


def parse(raw: bytes) -> Command:
    """Decode `raw` into a new Command, or raise CardError(6700) for any inconsistent length."""
    return decode(Command(), raw)


def decode(cmd: Command, raw: bytes) -> Command:
    """Decode `raw` into `cmd` (every field anew) and return it, or raise CardError(6700) for any
    inconsistent length."""
    n = len(raw)
    if n < 4:
        raise CardError(SW_WRONG_LENGTH)
    cmd.cla, cmd.ins, cmd.p1, cmd.p2 = raw[0], raw[1], raw[2], raw[3]
    cmd.raw = raw
    # each case sets: data, ne, le_present, case, extended
    if n == 5:  # case 2 short: Le = 00 means 256
        cmd.data, cmd.ne, cmd.le_present, cmd.case, cmd.extended = b"", raw[4] or SHORT_MAX, True, 2, False
        return cmd
    if n == 4:  # case 1: like a missing Le in case 3, up to 256 bytes may come back
        cmd.data, cmd.ne, cmd.le_present, cmd.case, cmd.extended = b"", SHORT_MAX, False, 1, False
        return cmd
    b4 = raw[4]
    if b4:  # short Lc
        end = 5 + b4
        if n == end:
            cmd.data, cmd.ne, cmd.le_present, cmd.case, cmd.extended = raw[5:end], SHORT_MAX, False, 3, False
            return cmd
        if n == end + 1:
            cmd.data, cmd.ne, cmd.le_present, cmd.case, cmd.extended = raw[5:end], raw[end] or SHORT_MAX, True, 4, False
            return cmd
        raise CardError(SW_WRONG_LENGTH)
    # b4 == 0 and more than 5 bytes: extended length
    if n == 7:  # case 2 extended: Le = 0000 means 65536
        cmd.data, cmd.ne, cmd.le_present, cmd.case, cmd.extended = b"", (raw[5] << 8 | raw[6]) or EXTENDED_MAX, True, 2, True
        return cmd
    if n < 8:
        raise CardError(SW_WRONG_LENGTH)
    lc = raw[5] << 8 | raw[6]
    if lc == 0:
        raise CardError(SW_WRONG_LENGTH)
    end = 7 + lc
    if n == end:
        cmd.data, cmd.ne, cmd.le_present, cmd.case, cmd.extended = raw[7:end], EXTENDED_MAX, False, 3, True
        return cmd
    if n == end + 2:
        ne = (raw[end] << 8 | raw[end + 1]) or EXTENDED_MAX
        cmd.data, cmd.ne, cmd.le_present, cmd.case, cmd.extended = raw[7:end], ne, True, 4, True
        return cmd
    raise CardError(SW_WRONG_LENGTH)


def build(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    """Encode a command APDU, choosing short or extended form as the lengths require.

    `le` is the number of bytes expected (256 = short `00`, 65536 = extended `0000`);
    None means no Le field.
    """
    head = bytes((cla, ins, p1, p2))
    extended = len(data) > 255 or (le is not None and le > SHORT_MAX)
    if not extended:
        body = (bytes((len(data),)) + data) if data else b""
        tail = b"" if le is None else bytes((le % SHORT_MAX,))
        return head + body + tail
    body = (b"\x00" + len(data).to_bytes(2, "big") + data) if data else b"\x00"
    tail = b"" if le is None else (le % EXTENDED_MAX).to_bytes(2, "big")
    return head + body + tail
