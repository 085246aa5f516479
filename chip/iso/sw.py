"""Status words: one table of code, name and meaning, as ISO/IEC 7816-4 and LD/T 32 P5 define them.

Each row `SW_NAME = _sw(code, meaning)` declares the constant the card and the terminals use
and the text that `sscard apdu`, the demo and the trace decoder print, so a status word is
explained the same way everywhere. `meaning()` adds the parametrised ones (61xx, 6Cxx, 63Cx).

Sources: ISO/IEC 7816-4 §5.1.3 (the interindustry status bytes); LD/T 32 P5 §5.4 table 5
lists those the standard's commands answer, and each command's error table (§6.x the SSSE,
§7.x the medical purse) says when; EMV 4.3 Book 3 §6.5 for the financial application.
docs/card/status-words.md says which command answers which on this card.
"""

MEANINGS: dict[int, str] = {}  # status word -> what it means, filled by the table below


def _sw(code: int, text: str) -> int:
    MEANINGS[code] = text
    return code


# -- interindustry (ISO/IEC 7816-4 §5.1.3) ----------------------------------------------------------------------
SW_OK = _sw(0x9000, "OK")
SW_END_OF_FILE = _sw(0x6282, "end of file reached before Le bytes")
SW_WARNING_SELECTED_FILE_INVALIDATED = _sw(0x6283, "selected application invalidated (locked)")  # the loss lock
SW_AUTHENTICATION_FAILED = _sw(0x6300, "authentication failed")  # issuer authentication, EMV Book 3 §6.5
SW_MEMORY_FAILURE = _sw(0x6581, "memory failure")
SW_WRONG_LENGTH = _sw(0x6700, "wrong length")
SW_INCOMPATIBLE_FILE_STRUCTURE = _sw(0x6981, "command incompatible with file structure")
SW_SECURITY_STATUS_NOT_SATISFIED = _sw(0x6982, "security status not satisfied")
SW_AUTHENTICATION_METHOD_BLOCKED = _sw(0x6983, "authentication method blocked")
SW_REFERENCED_DATA_INVALID = _sw(0x6984, "referenced data invalid (no fresh challenge)")
SW_CONDITIONS_NOT_SATISFIED = _sw(0x6985, "conditions of use not satisfied")
SW_COMMAND_NOT_ALLOWED_NO_EF = _sw(0x6986, "command not allowed (no current EF)")
SW_SM_MISSING = _sw(0x6987, "secure messaging data object missing")
SW_SM_INCORRECT = _sw(0x6988, "secure messaging data object incorrect (bad MAC)")
SW_WRONG_DATA = _sw(0x6A80, "wrong data")
SW_FUNCTION_NOT_SUPPORTED = _sw(0x6A81, "function not supported / card blocked")
SW_CARD_BLOCKED = SW_FUNCTION_NOT_SUPPORTED  # what a blocked card answers (P5 §6.2)
SW_FILE_NOT_FOUND = _sw(0x6A82, "file not found")
SW_RECORD_NOT_FOUND = _sw(0x6A83, "record not found")
SW_NOT_ENOUGH_MEMORY = _sw(0x6A84, "not enough memory space in the file")
SW_LC_INCONSISTENT_WITH_TLV = _sw(0x6A85, "Lc inconsistent with the TLV structure")
SW_WRONG_P1P2 = _sw(0x6A86, "wrong P1/P2")
SW_REFERENCED_DATA_NOT_FOUND = _sw(0x6A88, "referenced data not found")
SW_OFFSET_OUTSIDE_EF = _sw(0x6B00, "wrong parameters (offset outside the EF)")
SW_INS_NOT_SUPPORTED = _sw(0x6D00, "instruction not supported")
SW_CLA_NOT_SUPPORTED = _sw(0x6E00, "class not supported")
SW_UNKNOWN = _sw(0x6F00, "data invalid / nothing to fetch")  # GET RESPONSE with nothing waiting: P5 §6.6.4

# -- proprietary (LD/T 32 P5 §5.4 table 5) --------------------------------------------------------------------
SW_COMMAND_NOT_ACCEPTED = _sw(0x6901, "command not accepted (medical purse state)")  # P5 §7 table 49
SW_MAC_INVALID = _sw(0x9302, "MAC invalid")  # MAC1/MAC2: P5 §7.1, §7.2
SW_APPLICATION_PERMANENTLY_BLOCKED = _sw(0x9303, "application permanently blocked")  # P5 §6.1
SW_INSUFFICIENT_FUNDS = _sw(0x9401, "insufficient funds")  # P5 §7.6
SW_COUNTER_AT_MAXIMUM = _sw(0x9402, "transaction counter at its maximum")  # P5 §7.5, §7.6
SW_KEY_INDEX_NOT_SUPPORTED = _sw(0x9403, "key index not supported")  # P5 §7.5, §7.6
SW_MAC_NOT_AVAILABLE = _sw(0x9406, "required MAC not available")  # GET TRANSACTION PROOF: P5 §7.4

# -- SW1 alone: the families whose SW2 is a count or a detail (ISO/IEC 7816-4 §5.1.3) --------------------------
SW1_OK = SW_OK >> 8  # 90: normal processing
SW1_MORE_DATA = 0x61  # SW2 bytes still available: GET RESPONSE fetches them
SW1_WARNING = 0x62  # a warning: the non-volatile memory is unchanged
SW1_WARNING_CHANGED = 0x63  # a warning, the memory changed; 63Cx: verification failed, x tries left (P5 §5.4 table 5)
SW1_WRONG_LE = 0x6C  # wrong Le: SW2 is the exact number of bytes available
SW_WRONG_LE = SW1_WRONG_LE << 8  # 6Cxx as applets raise it, with xx the length


def sw_of(response: bytes) -> int:
    """The status word SW1 SW2 that ends a response APDU."""
    return response[-2] << 8 | response[-1]


def meaning(sw: int) -> str:
    """Return the human meaning of a status word, covering the parametrised ones."""
    text = MEANINGS.get(sw)
    if text is not None:
        return text
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == SW1_MORE_DATA:
        return f"{sw2 or 256} more bytes available (GET RESPONSE)"
    if sw1 == SW1_WRONG_LE:
        return f"wrong Le: {sw2 or 256} bytes available"
    if sw1 == SW1_WARNING_CHANGED and sw2 & 0xF0 == 0xC0:
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
