"""The SSSE's PIN, authentication and maintenance commands (LD/T 32 P5 §6.1-§6.8, §6.14).

Their codes are shared: the financial application takes VERIFY with P2 80, EXTERNAL
AUTHENTICATE as issuer authentication and the same `84` codes as issuer scripts
(reader.decode.emv); a PSAM takes GET CHALLENGE and INTERNAL AUTHENTICATE with its own
keys. Which one a command is for follows from the application the decoder saw selected.
The keys a P2 names come from the key table (`chip.apps.keys`) and the DF they belong to
(`chip.apps.ssse_files.DF_TAGS`). PINs are never printed, only their number of digits
(enciphered PINs as ciphertext).
"""

from chip.apps.keys import BY_CARD_ID
from chip.apps.ssse_files import DF_TAGS
from reader.decode import emv
from reader.decode.context import Context, command_name
from reader.decode.fields import mac_lines
from reader.decode.files import FINANCIAL, PSAM, SSSE, UNKNOWN
from reader.decode.values import INDENT, dump, hex_of


def _packed_pin_text(data: bytes) -> str:
    text = hex_of(data)
    digits = text[:-1] if text.endswith("F") else text
    if not digits.isdigit():
        return f"{len(data)} bytes, not packed BCD"
    return f"{len(digits)} digits"


def _auth_lines(data: bytes, first: str, second: str) -> list[str]:
    """INTERNAL / EXTERNAL AUTHENTICATE data: two 8-byte fields and an optional key version (P5 §6.4.3, §6.7.3)."""
    if len(data) not in (16, 17):
        return [f"{INDENT}data ({len(data)} bytes, expected 16 or 17): {dump(data)}"] if data else []
    lines = [f"{INDENT}{first}: {hex_of(data[:8])}", f"{INDENT}{second}: {hex_of(data[8:16])}"]
    return lines + ([f"{INDENT}key version: {data[16]:02X}"] if len(data) == 17 else [])


# PIN (P5 §6.3, §6.8, §6.14) ---------------------------------------------------------------------------------
def verify(decoder, cmd):
    data = cmd.data
    name = command_name(cmd)
    if cmd.p2 == 0x80:
        title = f"{name} offline plaintext PIN (financial)"
        detail = "no data: asks whether the PIN is verified" if not data else emv.pin_block_text(data)
    elif cmd.p2 == 0x00 and decoder.application in (None, SSSE):
        title = f"{name} SSSE PIN"
        detail = ("no data: asks whether a PIN is set (63Cx: tries left; 9000: no PIN)" if not data
                  else f"PIN: {_packed_pin_text(data)}")
    else:
        title = f"{name} PIN reference {cmd.p2:02X}"
        detail = f"data: {len(data)} bytes" if data else "no data"
    return Context("plain"), [title, INDENT + detail]


def change_pin(decoder, cmd):
    data = cmd.data
    name = command_name(cmd)
    if cmd.p1 == 0x01:
        old, sep, new = data.partition(b"\xFF")
        if sep:
            return Context("plain"), [name, f"{INDENT}old PIN: {_packed_pin_text(old)}, "
                                            f"new PIN: {_packed_pin_text(new)}"]
        return Context("plain"), [name, f"{INDENT}data without the FF separator ({len(data)} bytes)"]
    return Context("plain"), [f"{name} with P1 {cmd.p1:02X} (P5 §6.3 defines only 01)"]


def pin_change_unblock(decoder, cmd):
    if decoder.application == FINANCIAL or cmd.p2 == 0x02:
        return emv.pin_change_unblock(cmd)
    data = cmd.data
    name = command_name(cmd)
    if cmd.p2 == 0x00:
        return Context("plain"), [f"{name}: PIN unblock (try counter only)"] + mac_lines(data)
    if cmd.p2 == 0x01:
        lines = [f"{name}: PIN reset (new PIN enciphered)"]
        if len(data) > 4:
            lines.append(f"{INDENT}enciphered LD || PIN: {hex_of(data[:-4])} ({len(data) - 4} bytes)")
        elif len(data) == 4:
            lines.append(f"{INDENT}no enciphered PIN: the PIN becomes empty")
        return Context("plain"), lines + mac_lines(data, with_body=False)
    return Context("plain"), [f"{name} with P2 {cmd.p2:02X}"] + mac_lines(data)


# authentication (P5 §6.4, §6.5, §6.7) -----------------------------------------------------------------------
def get_challenge(decoder, cmd):
    n = cmd.ne if cmd.le_present else 0
    name = command_name(cmd)
    return Context("challenge"), [f"{name} ({n} bytes)" if n else name]


def _key_spec(decoder, key_id: int):
    """The chip.apps.keys entry a key identifier names in the current DF (P5 §6.4); while the DF is
    not known, the one key with that identifier, if only one DF has it."""
    if decoder.chip is PSAM:
        return None
    df = decoder.df
    if df is UNKNOWN or df is None:
        found = [spec for (_, ident), spec in BY_CARD_ID.items() if ident == key_id]
        return found[0] if len(found) == 1 else None
    tag = DF_TAGS.get(df)
    return BY_CARD_ID.get((tag, key_id)) if tag else None


def _key_text(decoder, key_id: int) -> str:
    spec = _key_spec(decoder, key_id)
    if spec is not None:
        return f"with {spec.label} (key {key_id:02X})"
    return f"{'PSAM ' if decoder.chip is PSAM else ''}key {key_id:02X}"


def external_authenticate(decoder, cmd):
    data = cmd.data
    name = command_name(cmd)
    if cmd.p2 == 0x00 and (decoder.application == FINANCIAL or len(data) == 10):
        return emv.issuer_authentication(name, data)
    lines = [f"{name} {_key_text(decoder, cmd.p2)}"]
    return Context("plain"), lines + _auth_lines(data, "authentication data", "original data")


def internal_authenticate(decoder, cmd):
    title = f"{command_name(cmd)} {_key_text(decoder, cmd.p2)}"
    return Context("internal_auth"), [title] + _auth_lines(cmd.data, "R1 (process-key factor)", "R2 (original data)")


# maintenance (P5 §6.1-6.2 and the project's loss lock) and the financial issuer scripts of the same codes -----
def _script_suffix(decoder) -> str:
    return " (issuer script)" if decoder.application == FINANCIAL else ""


_BLOCKS = {0: "(loss lock, extension)", 1: "(permanent)"}  # APPLICATION BLOCK P2 of the SSSE


def application_block(decoder, cmd):
    name = command_name(cmd)
    if decoder.application == FINANCIAL:
        title = f"{name} (issuer script)"
    else:
        title = f"{name} " + _BLOCKS.get(cmd.p2, f"(P2 {cmd.p2:02X})")
    return Context("plain"), [title] + mac_lines(cmd.data)


def application_unblock(decoder, cmd):
    title = command_name(cmd) + (_script_suffix(decoder) or " (lifts the loss lock, extension)")
    return Context("plain"), [title] + mac_lines(cmd.data)


def card_block(decoder, cmd):
    return Context("plain"), [command_name(cmd) + _script_suffix(decoder)] + mac_lines(cmd.data)
