"""The issuer host: the bank's side of an online transaction (docs/decisions.md §6).

It holds the issuer master keys, derives each card's ICC keys, verifies
ARQCs, answers with an ARC and an ARPC (method 1), and builds issuer script
commands with their MACs, enciphering a new PIN under the SMC session key.
Scripts waiting for a card (an activation the holder asked for in a
city-services app, a block ordered by the bank) are delivered on that card's
next online contact.

An issuer script is one or more commands the card must run in order (EMV
Book 3 §10.10: the terminal stops a script at its first command the card
refuses): the activation is one script, PIN CHANGE then PUT DATA DF7F 01, so
a card that refused the PIN never gets the activation flag. Everything a
script needs (the new PIN, tags, lengths) is checked when it is built, before
any APDU is sent: a bad input is an InputError, never a half-applied script.
"""

from dataclasses import dataclass, field
from hmac import compare_digest

from chip.apps.financial import ACTIVATION_TAG, AIP, ARQC, CDOL1_LENGTH, pin_block
from chip.iso.apdu import build
from chip.iso.ins import PIN_CHANGE_UNBLOCK, PUT_DATA_SCRIPT, cla_ins
from chip.kernel.cryptograms import MAC_LENGTH, cryptogram_input, script_mac_input
from chip.personalization.profile import Profile, load_profile
from reader.errors import InputError

APPROVED = b"00"
DECLINED = b"05"


def check_pin(pin, what: str = "a bank PIN") -> str:
    """A PIN the card takes in a format-2 block: 4 to 12 ASCII digits (else InputError)."""
    if not (isinstance(pin, str) and pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
        raise InputError(f"{what} is 4 to 12 digits, not {pin!r}")
    return pin


def _byte(name: str, value) -> int:
    if not (isinstance(value, int) and 0 <= value <= 0xFF):
        raise InputError(f"issuer script {name} must be one byte, not {value!r}")
    return value


MAX_SCRIPT_DATA = 255 - MAC_LENGTH  # Lc is one byte and the MAC4 takes 4 of it


@dataclass
class Authorisation:
    """What the host answers to an authorisation request. `scripts`: the issuer scripts for the
    card, each the list of its commands in the order the card must run them."""

    arqc_valid: bool
    arc: bytes
    arpc: bytes | None
    scripts: list[list[bytes]] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return self.arqc_valid and self.arc == APPROVED


class IssuerHost:
    def __init__(self, profile: str | Profile = "default"):
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        keys = self.profile.keys
        self.imk = {"ac": keys["fin_imk_ac"], "smi": keys["fin_imk_smi"], "smc": keys["fin_imk_smc"]}
        self.pending: dict[str, list[list]] = {}  # PAN -> scripts (each a list of builders) for its next contact
        self.balances: dict[str, int] = {}  # PAN -> account balance in fen (deposits need no card action)

    # -- keys ------------------------------------------------------------------------------------
    def session_key(self, kind: str, pan: str, psn: str, algorithm, atc: int) -> bytes:
        mk = algorithm.icc_master_key(self.imk[kind], pan, psn)
        return algorithm.session_key(mk, atc)

    # -- authorisation ---------------------------------------------------------------------------------
    def expected_cryptogram(self, pan, psn, algorithm, atc: int, terminal_data: bytes, cvr: bytes) -> bytes:
        sk = self.session_key("ac", pan, psn, algorithm, atc)
        return algorithm.cryptogram(sk, cryptogram_input(terminal_data, AIP, atc, cvr))

    def authorise(self, pan: str, psn: str, algorithm, atc: int, terminal_data: bytes, cvr: bytes,
                  cryptogram: bytes, amount: int = 0, cid: int = ARQC) -> Authorisation:
        """Check the card's cryptogram; approve an ARQC if the account covers the amount.

        An AAC (a card that declined, e.g. one not yet activated) is checked the
        same way and can carry pending scripts back, but is never approved.
        """
        assert len(terminal_data) == CDOL1_LENGTH
        if not (isinstance(amount, int) and amount >= 0):
            raise InputError(f"an amount is a whole number of fen, not {amount!r}")
        valid = compare_digest(cryptogram, self.expected_cryptogram(pan, psn, algorithm, atc, terminal_data, cvr))
        funds = self.balances.get(pan, 10**12) >= amount
        arc = APPROVED if valid and cid == ARQC and funds else DECLINED
        arpc = None
        if valid and cid == ARQC:
            arpc = algorithm.arpc(self.session_key("ac", pan, psn, algorithm, atc), cryptogram, arc)
        scripts = []
        if valid:
            scripts = [[make(self, pan, psn, algorithm, atc, cryptogram) for make in script]
                       for script in self.pending.pop(pan, [])]
        if arc == APPROVED and pan in self.balances:
            self.balances[pan] -= amount
        return Authorisation(valid, arc, arpc, scripts)

    # -- scripts -------------------------------------------------------------------------------------------
    def script(self, pan, psn, algorithm, atc: int, ac: bytes, cla: int, ins: int, p1: int, p2: int,
               data: bytes = b"") -> bytes:
        """An issuer script command with its MAC4 over CLA INS P1 P2 Lc || ATC || AC || data."""
        if len(data) > MAX_SCRIPT_DATA:
            raise InputError(f"issuer script data is at most {MAX_SCRIPT_DATA} bytes, not {len(data)}")
        sk = self.session_key("smi", pan, psn, algorithm, atc)
        mac = algorithm.mac4(sk, script_mac_input(cla, ins, p1, p2, atc, ac, data))
        return build(cla, ins, p1, p2, data + mac)

    def pin_change(self, pan, psn, algorithm, atc, ac, new_pin: str) -> bytes:
        check_pin(new_pin, "the new bank PIN")
        sk = self.session_key("smc", pan, psn, algorithm, atc)
        enciphered = algorithm.encipher_pin_block(sk, pin_block(new_pin))
        return self.script(pan, psn, algorithm, atc, ac, *cla_ins(PIN_CHANGE_UNBLOCK), 0x00, 0x02, enciphered)

    def put_data(self, pan, psn, algorithm, atc, ac, tag: int, value: bytes) -> bytes:
        return self.script(pan, psn, algorithm, atc, ac, *cla_ins(PUT_DATA_SCRIPT), tag >> 8, tag & 0xFF, value)

    # Script builders: each takes (host, pan, psn, algorithm, atc, ac) and returns one command APDU.
    # A list of builders is one issuer script; its inputs are checked here, before anything is sent.
    @staticmethod
    def activation(new_pin: str) -> list:
        """Set the holder's PIN and the activation flag DF7F = 01 (docs/decisions.md §6): one script, so the flag
        is never sent to a card that refused the PIN. InputError for a PIN that is not 4-12 digits."""
        check_pin(new_pin, "the new bank PIN")
        return [
            lambda host, pan, psn, alg, atc, ac: host.pin_change(pan, psn, alg, atc, ac, new_pin),
            lambda host, pan, psn, alg, atc, ac: host.put_data(pan, psn, alg, atc, ac, ACTIVATION_TAG, b"\x01"),
        ]

    @staticmethod
    def command(cla: int, ins: int, p1: int = 0, p2: int = 0, data: bytes = b"") -> list:
        for name, value in (("CLA", cla), ("INS", ins), ("P1", p1), ("P2", p2)):
            _byte(name, value)
        data = bytes(data)
        if len(data) > MAX_SCRIPT_DATA:
            raise InputError(f"issuer script data is at most {MAX_SCRIPT_DATA} bytes, not {len(data)}")
        return [lambda host, pan, psn, alg, atc, ac: host.script(pan, psn, alg, atc, ac, cla, ins, p1, p2, data)]

    def queue(self, pan: str, builders: list) -> None:
        """One issuer script (`builders`, its commands in order) the card receives on its next online
        contact (e.g. activation from the app). Each call queues a script of its own."""
        builders = list(builders)
        if not builders or not all(callable(make) for make in builders):
            raise InputError("an issuer script is a non-empty list of command builders")
        self.pending.setdefault(pan, []).append(builders)

