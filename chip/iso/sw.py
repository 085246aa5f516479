"""Status words, named as ISO/IEC 7816-4 names them, with one meaning table.

The table is the single source of the text that `sscard apdu`, the demo and the
trace decoder print, so a status word is explained the same way everywhere.
"""

SW_OK = 0x9000
SW_WARNING_SELECTED_FILE_INVALIDATED = 0x6283
SW_END_OF_FILE = 0x6282
SW_MEMORY_FAILURE = 0x6581
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_STATUS_NOT_SATISFIED = 0x6982
SW_INCOMPATIBLE_FILE_STRUCTURE = 0x6981
SW_AUTHENTICATION_METHOD_BLOCKED = 0x6983
SW_REFERENCED_DATA_INVALID = 0x6984
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_COMMAND_NOT_ALLOWED_NO_EF = 0x6986
SW_SM_MISSING = 0x6987
SW_SM_INCORRECT = 0x6988
SW_AUTHENTICATION_FAILED = 0x6300
SW_WRONG_DATA = 0x6A80
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_CARD_BLOCKED = SW_FUNCTION_NOT_SUPPORTED  # 6A81 is what a blocked card answers
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_NOT_ENOUGH_MEMORY = 0x6A84
SW_WRONG_P1P2 = 0x6A86
SW_OFFSET_OUTSIDE_EF = 0x6B00
SW_REFERENCED_DATA_NOT_FOUND = 0x6A88
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_UNKNOWN = 0x6F00
SW_APPLICATION_PERMANENTLY_BLOCKED = 0x9303
SW_LC_INCONSISTENT_WITH_TLV = 0x6A85
SW_COMMAND_NOT_ACCEPTED = 0x6901  # medical purse: not allowed in the current state (P5 table 49)
SW_MAC_INVALID = 0x9302
SW_INSUFFICIENT_FUNDS = 0x9401
SW_COUNTER_AT_MAXIMUM = 0x9402
SW_KEY_INDEX_NOT_SUPPORTED = 0x9403
SW_MAC_NOT_AVAILABLE = 0x9406

_EXACT = {
    0x9000: "OK",
    0x6282: "end of file reached before Le bytes",
    0x6283: "selected application invalidated (locked)",
    0x6300: "authentication failed",
    0x6581: "memory failure",
    0x6700: "wrong length",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "referenced data invalid (no fresh challenge)",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6987: "secure messaging data object missing",
    0x6988: "secure messaging data object incorrect (bad MAC)",
    0x6A80: "wrong data",
    0x6A81: "function not supported / card blocked",
    0x6A82: "file not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory space in the file",
    0x6A86: "wrong P1/P2",
    0x6A88: "referenced data not found",
    0x6B00: "wrong parameters (offset outside the EF)",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
    0x6A85: "Lc inconsistent with the TLV structure",
    0x6901: "command not accepted (medical purse state)",
    0x6F00: "data invalid / nothing to fetch",
    0x9302: "MAC invalid",
    0x9303: "application permanently blocked",
    0x9401: "insufficient funds",
    0x9402: "transaction counter at its maximum",
    0x9403: "key index not supported",
    0x9406: "required MAC not available",
}


def sw_of(response: bytes) -> int:
    """The status word SW1 SW2 that ends a response APDU."""
    return response[-2] << 8 | response[-1]


def meaning(sw: int) -> str:
    """Return the human meaning of a status word, covering the parametrised ones."""
    text = _EXACT.get(sw)
    if text is not None:
        return text
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} more bytes available (GET RESPONSE)"
    if sw1 == 0x6C:
        return f"wrong Le: {sw2 or 256} bytes available"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        left = sw2 & 0x0F
        return f"verification failed, {left} {'try' if left == 1 else 'tries'} left"
    return "unknown status word"


class CardError(Exception):
    """Raised inside the card to end a command with a status word and no data.

    The card OS turns it into the two-byte response and rolls back the
    command's uncommitted persistent writes, as a Java Card ISOException does.
    """

    __slots__ = ("sw",)

    def __init__(self, sw: int):
        self.sw = sw

    def __str__(self) -> str:
        return f"{self.sw:04X} {meaning(self.sw)}"
