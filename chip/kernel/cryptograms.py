"""What each MAC, cryptogram and session key of the card is computed over: one layout each.

The card's applets check or compute these values and the host side (the SSSE
terminal, the PSAM helper, the issuer host) computes the same ones, so the
byte layout of each input is written once, here; how it is then enciphered or
MACed is `chip.kernel.crypto`. Nothing here knows a key.

- commands with a MAC: the LD/T 32 secure-messaging header (P4 §8.2.3) and
  the PBOC/EMV issuer script MAC (docs/decisions.md §6);
- the medical purse (P7 §11, §12, §15): the inputs of the session keys SESLK
  and SESPK, of MAC1, MAC2 and the TAC, for loads and purchases alike;
- the financial application's application cryptogram (docs/decisions.md §6).

Counters, amounts and times are passed as the bytes the commands carry.
"""

MAC_LENGTH = 4  # MAC4: the 4 bytes a MAC-protected command ends with (P4 §8.2.4)


def _header(cla: int, ins: int, p1: int, p2: int, body: bytes) -> bytes:
    """`CLA INS P1 P2 Lc` as the command is sent: Lc counts `body` and the MAC after it."""
    return bytes((cla, ins, p1, p2, len(body) + MAC_LENGTH))


def command_mac_input(cla: int, ins: int, p1: int, p2: int, body: bytes) -> bytes:
    """The message of a command MAC (P4 §8.2.3): `CLA INS P1 P2 Lc || data before the MAC`,
    with the CLA as sent (`84`, `04`, `B0`) and Lc counting the 4 MAC bytes."""
    return _header(cla, ins, p1, p2, body) + body


def script_mac_input(cla: int, ins: int, p1: int, p2: int, atc: int, ac: bytes, body: bytes) -> bytes:
    """The message of an issuer script command's MAC (PBOC/EMV, docs/decisions.md §6):
    `CLA INS P1 P2 Lc || ATC || AC || data before the MAC`, ATC and AC of the transaction's
    first GENERATE AC; Lc is the command's (data and MAC), not counting ATC and AC."""
    return _header(cla, ins, p1, p2, body) + atc.to_bytes(2, "big") + ac + body


# -- the medical purse (LD/T 32 P7 §11, §12, §15) ---------------------------------------------------

def load_session_input(random: bytes, counter: bytes) -> bytes:
    """SESLK's process-key input (P7 §11.2): the card's pseudo-random 4 || load counter 2 || `80 00`."""
    return random + counter + b"\x80\x00"


def purchase_session_input(random: bytes, counter: bytes, tx_number: bytes) -> bytes:
    """SESPK's process-key input (P7 §12.2): the card's pseudo-random 4 || purchase counter 2 ||
    the terminal transaction number's rightmost 2 bytes."""
    return random + counter + tx_number[2:]


def load_mac1_input(balance: bytes, amount: bytes, kind: int, terminal: bytes) -> bytes:
    """MAC1 of INITIALIZE FOR LOAD, under SESLK (P7 §11.2): balance 4 || amount 4 || type 1 ||
    terminal number 6."""
    return balance + amount + bytes((kind,)) + terminal


def load_mac2_input(amount: bytes, kind: int, terminal: bytes, host_time: bytes) -> bytes:
    """MAC2 of CREDIT FOR LOAD, the host's, under SESLK (P7 §11.7): amount 4 || type 1 ||
    terminal number 6 || host time 7."""
    return amount + bytes((kind,)) + terminal + host_time


def load_tac_input(balance: bytes, counter: bytes, amount: bytes, kind: int, terminal: bytes,
                   host_time: bytes) -> bytes:
    """The TAC of a load (P7 §11.8, §15): the balance after the credit 4 || load counter before
    it 2 || amount 4 || type 1 || terminal number 6 || host time 7."""
    return balance + counter + amount + bytes((kind,)) + terminal + host_time


def purchase_mac1_input(amounts: bytes, kind: int, terminal: bytes, time: bytes) -> bytes:
    """MAC1 of a purchase, the PSAM's, under SESPK (P7 §12.3): account 4 || self-pay 4 || fund 4
    || type 1 || terminal number 6 || time 7."""
    return amounts + bytes((kind,)) + terminal + time


def purchase_mac2_input(amounts: bytes) -> bytes:
    """MAC2 of a purchase, the card's, under SESPK (P7 §12.6): account 4 || self-pay 4 || fund 4."""
    return amounts


def purchase_tac_input(amounts: bytes, kind: int, terminal: bytes, tx_number: bytes, time: bytes) -> bytes:
    """The TAC of a purchase (P7 §12.6, §15): account 4 || self-pay 4 || fund 4 || type 1 ||
    terminal number 6 || terminal transaction number 4 || time 7."""
    return amounts + bytes((kind,)) + terminal + tx_number + time


# -- the financial application (PBOC/EMV, docs/decisions.md §6) ----------------------------------------

def cryptogram_input(terminal_data: bytes, aip: bytes, atc: int, cvr: bytes) -> bytes:
    """What an application cryptogram (ARQC, TC, AAC) covers: the CDOL1 terminal data (29 bytes,
    also the second GENERATE AC's data after the ARC) || AIP || ATC || CVR (docs/decisions.md §6)."""
    return terminal_data + aip + atc.to_bytes(2, "big") + cvr
