"""A terminal's PSAM: its commands and their answers (LD/T 32 P9 §9).

The PSAM's facts come from `chip/`: the key table (`chip.apps.keys`: DELIVERY SESSION KEY's
usage and key id), the CIPHER DATA modes and the usage's type bits (`chip.apps.psam`), the
command names (`chip.iso.ins`). What the decoder adds is the block size it learnt from the
PSAM's environment (8 DES, 16 SM4; P9 §5), kept on the decoder as `psam_block`, which splits
the factors, the IV and the data.
"""

from chip.apps import keys as key_table
from chip.apps import psam
from chip.apps.keys import BY_PSAM
from chip.iso.ins import (
    CIPHER_DATA,
    CREDIT_SAM_FOR_PURCHASE,
    DELIVERY_SESSION_KEY,
    INIT_SAM_FOR_PURCHASE,
    INITIALIZE_ENVIRONMENT,
    NAMES,
)
from reader.decode.context import Context
from reader.decode.fields import AMOUNTS, algorithm_id, cn_date, command, layout_length, purse_type, uint
from reader.decode.values import INDENT, digits, dump, hex_of, text, time_of

# INIT SAM FOR PURCHASE (P9 §9.9, table 27): the card's purchase fields before the factors, and the answer.
PURCHASE = ((("card random", 4, None), ("card purchase counter", 2, uint), *AMOUNTS,
             ("transaction type", 1, purse_type), ("date", 4, cn_date), ("time", 3, time_of),
             ("DPK version", 1, None), ("DPK algorithm", 1, algorithm_id)),
            (("terminal transaction number", 4, uint), ("MAC1", 4, None)))
FACTORS = ("card factor", "city factor", "province factor")  # DELIVERY SESSION KEY order, card level first (S1)
KEY_TYPES = {key_table.PURCHASE: "purchase", key_table.MAC: "MAC", key_table.ENCRYPT: "encryption",
             key_table.MAC_AND_ENCRYPT: "MAC and encryption", key_table.LOAD: "load", key_table.TAC: "TAC"}


def _factor_lines(factors: bytes, pad: str = INDENT) -> list[str]:
    """N 8-byte diversification factors, card level first (P9 §9.7, §9.9.3; docs/decisions.md S1).

    The province and city factors are ASCII (P9 §7.3.1-7.3.2): they are shown as text too.
    """
    lines = []
    for i, name in enumerate(FACTORS[:len(factors) // 8]):
        value = factors[8 * i:8 * i + 8]
        readable = text(value)
        lines.append(f"{pad}{name}: {hex_of(value)}" + (f" = {readable}" if readable else ""))
    return lines


def initialize_environment(decoder, cmd):
    data = cmd.data
    lines = [NAMES[INITIALIZE_ENVIRONMENT]]
    if len(data) == 1:
        region = digits(data)
        lines.append(f"{INDENT}first byte of the card identification code: {data[0]:02X}"
                     + (f" (region {region}….)" if region else ""))
    elif data:
        lines.append(f"{INDENT}data ({len(data)} bytes, expected 1): {dump(data)}")
    return Context("plain"), lines


def delivery_session_key(decoder, cmd):
    """BF DE usage id: the root of that usage (b8-b6 levels, b5-b1 type) and id, diversified by
    N factors, then the process key of the last M bytes (M = the block)."""
    usage, ident, data = cmd.p1, cmd.p2, cmd.data
    levels, kind = usage >> 5, usage & psam.TYPE_MASK
    spec = BY_PSAM.get((usage, ident))
    what = f"{spec.label} root" if spec is not None else "root"
    kind_text = KEY_TYPES.get(kind, f"type {kind}")
    lines = [f"{NAMES[DELIVERY_SESSION_KEY]} {what} (usage {usage:02X}: {levels} level{'s' if levels != 1 else ''}, "
             f"{kind_text}; PSAM key {ident:02X})"]
    block = decoder.psam_block
    if block is None and len(data) - 8 * levels in (8, 16):
        block = len(data) - 8 * levels
    n, odd = divmod(len(data) - block, 8) if block and len(data) >= block else (0, 1)
    if odd or n > 3:
        lines.append(f"{INDENT}data ({len(data)} bytes): {dump(data)}")
    else:
        lines += _factor_lines(data[:8 * n])
        lines.append(f"{INDENT}process-key factor: {hex_of(data[8 * n:])}")
        decoder.psam_block = block
    return Context("plain"), lines


def cipher_data(decoder, cmd):
    mode = psam.CIPHER_MODES.get(cmd.p1)
    ctx = Context("cipher")
    ctx.mode = mode
    name = NAMES[CIPHER_DATA]
    title = f"{name} {mode.label}" if mode else f"{name} with P1 {cmd.p1:02X} (not a mode)"
    if cmd.p2:
        title += f" (P2 {cmd.p2:02X})"
    data, block = cmd.data, decoder.psam_block
    lines = [title]
    if mode is not None and mode.iv and block and len(data) >= block:
        lines += [f"{INDENT}IV: {hex_of(data[:block])}", f"{INDENT}data: {dump(data[block:])}"]
    elif data:
        lines.append(f"{INDENT}data: {dump(data)}")
    return ctx, lines


def cipher_lines(mode, data: bytes) -> list[str]:
    """CIPHER DATA's answer: a MAC4 in a MAC mode, else the ciphertext."""
    if mode is not None and mode.kind == psam.MAC:
        return [f"MAC4: {dump(data)}"]
    return [f"result: {dump(data)}"]


def init_sam_for_purchase(decoder, cmd):
    request, answer = PURCHASE
    data, fixed = cmd.data, layout_length(request)
    ctx, lines = command(f"{NAMES[INIT_SAM_FOR_PURCHASE]} (MAC1)", data[:fixed], request, answer)
    factors = data[fixed:]
    if len(data) > fixed:
        lines += _factor_lines(factors) if len(factors) % 8 == 0 and len(factors) <= 24 else [
            f"{INDENT}factors ({len(factors)} bytes, not 8 each): {dump(factors)}"]
    return ctx, lines


def credit_sam_for_purchase(decoder, cmd):
    data = cmd.data
    lines = [f"{NAMES[CREDIT_SAM_FOR_PURCHASE]} (checks MAC2)"]
    if data:
        lines.append(f"{INDENT}MAC2: {dump(data)}" if len(data) == 4 else
                     f"{INDENT}data ({len(data)} bytes, expected MAC2 4): {dump(data)}")
    return Context("plain"), lines
