"""The issuer host: the bank's side of an online transaction (SPEC §5.2).

It holds the issuer master keys, derives each card's ICC keys, verifies
ARQCs, answers with an ARC and an ARPC (method 1), and builds issuer script
commands with their MACs, enciphering a new PIN under the SMC session key.
Scripts waiting for a card (an activation the holder asked for in a
city-services app, a block ordered by the bank) are delivered on that card's
next online contact.
"""

from dataclasses import dataclass, field
from hmac import compare_digest

from chip.apdu import build
from chip.financial import AIP, CDOL1_LENGTH, pin_block
from chip.profile import Profile, load_profile

APPROVED = b"00"
DECLINED = b"05"


@dataclass
class Authorisation:
    """What the host answers to an authorisation request."""

    arqc_valid: bool
    arc: bytes
    arpc: bytes | None
    scripts: list[bytes] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return self.arqc_valid and self.arc == APPROVED


class IssuerHost:
    def __init__(self, profile: str | Profile = "default"):
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        keys = self.profile.keys
        self.imk = {"ac": keys["fin_imk_ac"], "smi": keys["fin_imk_smi"], "smc": keys["fin_imk_smc"]}
        self.pending: dict[str, list] = {}  # PAN -> script builders for its next online contact
        self.balances: dict[str, int] = {}  # PAN -> account balance in fen (deposits need no card action)

    # -- keys ------------------------------------------------------------------------------------
    def session_key(self, kind: str, pan: str, psn: str, algorithm, atc: int) -> bytes:
        mk = algorithm.icc_master_key(self.imk[kind], pan, psn)
        return algorithm.session_key(mk, atc)

    # -- authorisation ---------------------------------------------------------------------------------
    def expected_cryptogram(self, pan, psn, algorithm, atc: int, terminal_data: bytes, cvr: bytes) -> bytes:
        sk = self.session_key("ac", pan, psn, algorithm, atc)
        return algorithm.cryptogram(sk, terminal_data + AIP + atc.to_bytes(2, "big") + cvr)

    def authorise(self, pan: str, psn: str, algorithm, atc: int, terminal_data: bytes, cvr: bytes,
                  cryptogram: bytes, amount: int = 0, cid: int = 0x80) -> Authorisation:
        """Check the card's cryptogram; approve an ARQC if the account covers the amount.

        An AAC (a card that declined, e.g. one not yet activated) is checked the
        same way and can carry pending scripts back, but is never approved.
        """
        assert len(terminal_data) == CDOL1_LENGTH
        valid = compare_digest(cryptogram, self.expected_cryptogram(pan, psn, algorithm, atc, terminal_data, cvr))
        funds = self.balances.get(pan, 10**12) >= amount
        arc = APPROVED if valid and cid == 0x80 and funds else DECLINED
        arpc = None
        if valid and cid == 0x80:
            arpc = algorithm.arpc(self.session_key("ac", pan, psn, algorithm, atc), cryptogram, arc)
        scripts = []
        if valid:
            scripts = [make(self, pan, psn, algorithm, atc, cryptogram) for make in self.pending.pop(pan, [])]
        if arc == APPROVED and pan in self.balances:
            self.balances[pan] -= amount
        return Authorisation(valid, arc, arpc, scripts)

    # -- scripts -------------------------------------------------------------------------------------------
    def script(self, pan, psn, algorithm, atc: int, ac: bytes, cla: int, ins: int, p1: int, p2: int,
               data: bytes = b"") -> bytes:
        """An issuer script command with its MAC4 over CLA INS P1 P2 Lc || ATC || AC || data."""
        sk = self.session_key("smi", pan, psn, algorithm, atc)
        lc = len(data) + 4
        mac = algorithm.mac4(sk, bytes((cla, ins, p1, p2, lc)) + atc.to_bytes(2, "big") + ac + data)
        return build(cla, ins, p1, p2, data + mac)

    def pin_change(self, pan, psn, algorithm, atc, ac, new_pin: str) -> bytes:
        sk = self.session_key("smc", pan, psn, algorithm, atc)
        enciphered = algorithm.encipher_pin_block(sk, pin_block(new_pin))
        return self.script(pan, psn, algorithm, atc, ac, 0x84, 0x24, 0x00, 0x02, enciphered)

    def put_data(self, pan, psn, algorithm, atc, ac, tag: int, value: bytes) -> bytes:
        return self.script(pan, psn, algorithm, atc, ac, 0x04, 0xDA, tag >> 8, tag & 0xFF, value)

    # Script builders: each takes (host, pan, psn, algorithm, atc, ac) and returns one command APDU.
    @staticmethod
    def activation(new_pin: str) -> list:
        """Set the holder's PIN and the activation flag DF7F = 01 (SPEC §3)."""
        return [
            lambda host, pan, psn, alg, atc, ac: host.pin_change(pan, psn, alg, atc, ac, new_pin),
            lambda host, pan, psn, alg, atc, ac: host.put_data(pan, psn, alg, atc, ac, 0xDF7F, b"\x01"),
        ]

    @staticmethod
    def command(cla: int, ins: int, p1: int = 0, p2: int = 0, data: bytes = b"") -> list:
        return [lambda host, pan, psn, alg, atc, ac: host.script(pan, psn, alg, atc, ac, cla, ins, p1, p2, data)]

    def queue(self, pan: str, builders: list) -> None:
        """Scripts the card receives on its next online contact (e.g. activation from the app)."""
        self.pending.setdefault(pan, []).extend(builders)

