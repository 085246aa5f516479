"""Human-readable APDU exchanges, shared by `sscard apdu`, the demo and (later) traces."""

from chip.iso.sw import meaning, sw_of
from reader.errors import InputError


def spaced(data: bytes) -> str:
    return data.hex(" ").upper()


def parse_hex(text: str) -> bytes:
    """Hex with optional spaces, colons or underscores; InputError names the bad text."""
    cleaned = "".join(ch for ch in text if ch not in " :_\t")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise InputError(f"not hexadecimal: {text!r}") from None


def exchange(command: bytes, response: bytes, note: str = "", decoder=None) -> str:
    """Three lines: the command, the response data (if any), the SW and its meaning.

    With a `reader.decode.Decoder`, its explanation follows, indented by four
    spaces: the command's name and fields, then the decoded response data (the
    SW and its meaning are already on the line above, so they are not repeated).
    """
    sw = sw_of(response) if len(response) >= 2 else 0  # a reader's short answer has no status word
    lines = [f"> {spaced(command)}" + (f"    # {note}" if note else "")]
    if len(response) > 2:
        lines.append(f"< {spaced(response[:-2])}")
    lines.append(f"< {sw:04X}  {meaning(sw)}")
    if decoder is not None:
        explained = decoder.command(command) + decoder.response(response, status=False)
        lines += ["    " + line for line in explained]
    return "\n".join(lines)
