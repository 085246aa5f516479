"""The financial application's commands (PBOC 3.0 / EMV 4.3 Book 3 §6.5) and its issuer scripts.

GET PROCESSING OPTIONS and GENERATE AC carry data a DOL asked for: the PDOL of the FCI
and the CDOL1/CDOL2 of the records, which the decoder keeps as the card announces them
(until then the financial application's own, `chip.apps.financial`). The issuer
scripts (APPLICATION BLOCK/UNBLOCK, CARD BLOCK, PIN CHANGE/UNBLOCK: EMV 4.3 Book 3
§6.5.1-6.5.3, §6.5.10; PBOC's PUT DATA) and the issuer authentication (§6.5.4) share
their codes with the SSSE's commands; the SSSE's handlers (reader.decode.ssse) hand
them over here while the financial application is selected.
"""

from chip.apps import financial as fin
from chip.iso import ber
from chip.iso.ins import GENERATE_AC, GET_PROCESSING_OPTIONS, NAMES, PUT_DATA_SCRIPT
from reader.decode.context import Context, command_name
from reader.decode.fields import mac_lines
from reader.decode.tags import CID_NAMES, SHORT, primitive_lines, sm_indicator, tag_name
from reader.decode.values import INDENT, dump, hex_of, tag_text


def pin_block_text(data: bytes) -> str:
    """An offline plaintext PIN (VERIFY P2 80): its number of digits, never the digits."""
    if fin.pin_block_ok(data):
        return f"PIN block format 2: {int(hex_of(data)[1], 16)} digits"
    return f"PIN data ({len(data)} bytes, not a format-2 block)"


def _dol_length(dol: bytes) -> int:
    try:
        return sum(length for _, length in ber.parse_dol(dol))
    except (ValueError, IndexError):
        return -1


def _split(data: bytes, dol: bytes):
    """The data a DOL asked for, split into (tag, value); None when the length does not match."""
    try:
        entries = ber.parse_dol(dol)
    except (ValueError, IndexError):
        return None
    if sum(length for _, length in entries) != len(data):
        return None
    out, i = [], 0
    for tag, length in entries:
        out.append((tag, data[i:i + length]))
        i += length
    return out


def _tag_named(tag: int) -> str:
    """A tag in a command line: its hex and short name."""
    return f"{tag_text(tag)} {SHORT.get(tag, tag_name(tag))}"


def gpo(decoder, cmd):
    """GET PROCESSING OPTIONS `80 A8`: the PDOL data in an `83` template."""
    data = cmd.data
    name = NAMES[GET_PROCESSING_OPTIONS]
    if len(data) >= 2 and data[0] == 0x83 and data[1] == len(data) - 2:
        fields = _split(data[2:], decoder.pdol)
        if fields is not None:
            names = []
            for tag, value in fields:
                short = SHORT.get(tag, tag_name(tag))
                if tag == 0xDF69 and len(value) == 1:
                    algorithm = sm_indicator(value)
                    short += f" DF69={value[0]:02X}" + (f" {algorithm}" if algorithm else "")
                names.append(short)
            lines = [f"{name} ({', '.join(names)})"]
            for tag, value in fields:
                lines += primitive_lines(tag, value, INDENT)
            return Context("gpo"), lines
        return Context("gpo"), [name, f"{INDENT}PDOL data ({len(data) - 2} bytes, not the PDOL's length): "
                                      f"{dump(data[2:])}"]
    return Context("gpo"), [name, f"{INDENT}data (no 83 command template): {dump(data)}"]


def generate_ac(decoder, cmd):
    """GENERATE AC `80 AE`: first or second, by the data's length (CDOL1 or CDOL2), else by the session."""
    data = cmd.data
    requested = CID_NAMES[cmd.p1 & 0xC0]
    n1, n2 = _dol_length(decoder.cdol1), _dol_length(decoder.cdol2)
    if len(data) == n2 and len(data) != n1:
        second = True
    elif len(data) == n1 and len(data) != n2:
        second = False
    else:
        second = decoder.first_ac_done
    title = f"{NAMES[GENERATE_AC]} {'second' if second else 'first'} requesting {requested}"
    if cmd.p1 & 0x10:
        title += ", CDA signature requested"
    if cmd.p1 & 0x2F:
        title += f" (P1 {cmd.p1:02X})"
    dol = decoder.cdol2 if second else decoder.cdol1
    fields = _split(data, dol)
    lines = [title]
    if fields is None:
        lines.append(f"{INDENT}data ({len(data)} bytes, CDOL{'2' if second else '1'} asks for "
                     f"{_dol_length(dol)}): {dump(data)}")
    else:
        for tag, value in fields:
            lines += primitive_lines(tag, value, INDENT)
    return Context("generate_ac"), lines


def get_data(decoder, cmd):
    """GET DATA `80 CA` / `00 CA`: the tag in P1 P2 (the SSSE's extension objects too)."""
    return Context("get_data"), [f"{command_name(cmd)} {_tag_named(cmd.p1 << 8 | cmd.p2)}"]


def put_data(decoder, cmd):
    """PUT DATA `04 DA` (issuer script): the new value, then its MAC."""
    tag = cmd.p1 << 8 | cmd.p2
    data = cmd.data
    lines = [f"{NAMES[PUT_DATA_SCRIPT]} {_tag_named(tag)} (issuer script)"]
    if len(data) > 4:
        lines += primitive_lines(tag, data[:-4], INDENT)
    return Context("plain"), lines + mac_lines(data, with_body=False)


def pin_change_unblock(cmd):
    """PIN CHANGE/UNBLOCK `84 24` as an issuer script: P2 02 a new PIN enciphered, else the try counter."""
    data = cmd.data
    if cmd.p2 == 0x02:
        lines = ["PIN CHANGE (issuer script, new PIN enciphered)"]
        if len(data) > 4:
            lines.append(f"{INDENT}enciphered PIN block: {hex_of(data[:-4])}")
        return Context("plain"), lines + mac_lines(data, with_body=False)
    return Context("plain"), ["PIN UNBLOCK (issuer script, try counter only)"] + mac_lines(data)


def issuer_authentication(title: str, data: bytes):
    """EXTERNAL AUTHENTICATE of the financial application: ARPC 8 || ARC 2 (EMV Book 3 §6.5.4)."""
    lines = [f"{title} (issuer authentication: ARPC, ARC)"]
    if len(data) == 10:
        lines.append(f"{INDENT}ARPC: {hex_of(data[:8])}")
        lines += primitive_lines(0x8A, data[8:], INDENT)
    else:
        lines.append(f"{INDENT}data ({len(data)} bytes, expected ARPC 8 + ARC 2): {dump(data)}")
    return Context("plain"), lines
