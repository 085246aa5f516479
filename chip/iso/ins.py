"""Command codes: the class family and INS of every command the chip answers, with its name.

A code is `CLA << 8 | INS`, the CLA as the command is specified (00 ISO, 04 ISO with a
MAC, 80 proprietary, 84 proprietary with a MAC, B0 the medical purse; the card opens no
logical channel, so a CLA with channel bits is another class). Card applets key their
command tables by these codes, terminals build their APDUs from them, and the decoder
names them from `NAMES`, so a command is called the same everywhere.

Sources: ISO/IEC 7816-4 §11 for the interindustry commands; LD/T 32 P5 §6 (SSSE) and §7
(medical purse), P9 §9 (PSAM); the PBOC 3.0 / EMV 4.3 Book 3 §6.5 commands of the
financial application and its issuer scripts.
"""

# interindustry (ISO/IEC 7816-4)
VERIFY = 0x0020
EXTERNAL_AUTHENTICATE = 0x0082
GET_CHALLENGE = 0x0084
INTERNAL_AUTHENTICATE = 0x0088
SELECT = 0x00A4
READ_BINARY = 0x00B0
READ_RECORD = 0x00B2
GET_RESPONSE = 0x00C0
ENVELOPE = 0x00C2
GET_DATA_ISO = 0x00CA
UPDATE_BINARY = 0x00D6
UPDATE_RECORD = 0x00DC
# the same with a MAC (CLA 04, LD/T 32 P5 §6.2)
SM_UPDATE_BINARY = 0x04D6
SM_UPDATE_RECORD = 0x04DC
PUT_DATA_SCRIPT = 0x04DA  # issuer script PUT DATA (PBOC/EMV)
# proprietary (LD/T 32 P5 §6, PBOC/EMV)
CHANGE_PIN = 0x805E
GET_PROCESSING_OPTIONS = 0x80A8
GENERATE_AC = 0x80AE
GET_DATA = 0x80CA
# proprietary with a MAC: SSSE management commands and PBOC issuer scripts share the codes
CARD_BLOCK = 0x8416
APPLICATION_UNBLOCK = 0x8418
APPLICATION_BLOCK = 0x841E
PIN_CHANGE_UNBLOCK = 0x8424
# the medical purse of DF04 (LD/T 32 P5 §7)
GET_BALANCE = 0xB026
INITIALIZE = 0xB028  # P1 00 for load, 01 for purchase
CREDIT_FOR_LOAD = 0xB02A
DEBIT_FOR_PURCHASE = 0xB02C
GET_TRANSACTION_PROOF = 0xB02E
GET_STARTING_DAY = 0xB056
# the PSAM (LD/T 32 P9 §9)
INIT_SAM_FOR_PURCHASE = 0x8070
CREDIT_SAM_FOR_PURCHASE = 0x8072
CIPHER_DATA = 0x80FA
DELIVERY_SESSION_KEY = 0xBFDE
INITIALIZE_ENVIRONMENT = 0xBFEC

NAMES = {
    VERIFY: "VERIFY",
    EXTERNAL_AUTHENTICATE: "EXTERNAL AUTHENTICATE",
    GET_CHALLENGE: "GET CHALLENGE",
    INTERNAL_AUTHENTICATE: "INTERNAL AUTHENTICATE",
    SELECT: "SELECT",
    READ_BINARY: "READ BINARY",
    READ_RECORD: "READ RECORD",
    GET_RESPONSE: "GET RESPONSE",
    ENVELOPE: "ENVELOPE",
    GET_DATA_ISO: "GET DATA",
    UPDATE_BINARY: "UPDATE BINARY",
    UPDATE_RECORD: "UPDATE RECORD",
    SM_UPDATE_BINARY: "UPDATE BINARY (MAC)",
    SM_UPDATE_RECORD: "UPDATE RECORD (MAC)",
    PUT_DATA_SCRIPT: "PUT DATA",
    CHANGE_PIN: "CHANGE PIN",
    GET_PROCESSING_OPTIONS: "GET PROCESSING OPTIONS",
    GENERATE_AC: "GENERATE AC",
    GET_DATA: "GET DATA",
    CARD_BLOCK: "CARD BLOCK",
    APPLICATION_UNBLOCK: "APPLICATION UNBLOCK",
    APPLICATION_BLOCK: "APPLICATION BLOCK",
    PIN_CHANGE_UNBLOCK: "PIN CHANGE/UNBLOCK",
    GET_BALANCE: "GET BALANCE",
    INITIALIZE: "INITIALIZE",
    CREDIT_FOR_LOAD: "CREDIT FOR LOAD",
    DEBIT_FOR_PURCHASE: "DEBIT FOR PURCHASE",
    GET_TRANSACTION_PROOF: "GET TRANSACTION PROOF",
    GET_STARTING_DAY: "GET STARTING DAY",
    INIT_SAM_FOR_PURCHASE: "INIT SAM FOR PURCHASE",
    CREDIT_SAM_FOR_PURCHASE: "CREDIT SAM FOR PURCHASE",
    CIPHER_DATA: "CIPHER DATA",
    DELIVERY_SESSION_KEY: "DELIVERY SESSION KEY",
    INITIALIZE_ENVIRONMENT: "INITIALIZE ENVIRONMENT",
}

# Commands LD/T 32 P5 §7 names by their P1 as well: (code, P1) -> name.
P1_NAMES = {
    (INITIALIZE, 0x00): "INITIALIZE FOR LOAD",  # P5 §7.5
    (INITIALIZE, 0x01): "INITIALIZE FOR PURCHASE",  # P5 §7.6
    (GET_STARTING_DAY, 0x00): "UPDATE STARTING DAY",  # P5 §7.7
    (GET_STARTING_DAY, 0x01): "GET STARTING DAY",  # P5 §7.8
}


def code(cla: int, ins: int) -> int:
    """The command code of an APDU's CLA and INS, as the card's dispatch looks it up."""
    return cla << 8 | ins


def cla_ins(command: int) -> tuple[int, int]:
    """The CLA and INS bytes of a command code, for building an APDU."""
    return command >> 8, command & 0xFF


def name(command: int) -> str:
    """The command's name, or `CLA xx INS yy` when the chip has no such command."""
    return NAMES.get(command) or f"CLA {command >> 8:02X} INS {command & 0xFF:02X}"
