"""The terminal's side of its PSAM (LD/T 32 part 9), reached only by APDUs through a `Reader`.

A terminal asks its PSAM (`chip.apps.psam`, or a real one in a SAM slot) for every
keyed computation about a user card, following the sequences of
docs/card/commands.md §5 (P7, P9 §7.4). What it sends is built with the card's own
recipes (`chip.kernel.crypto`, `chip.kernel.cryptograms`), so both sides compute over
the same bytes:

- preamble: reset, SELECT the environment of the card's algorithm (FCI flag
  01 → `sx1.sh.社会保障`, 03 → `sx2.sh.社会保障`, docs/decisions.md S9), SELECT the ADF;
- (a) external authentication data, (b) the expected internal-authentication
  answer: DELIVERY SESSION KEY with the card's challenge (or R1) as process
  factor, then CIPHER DATA P1 00 over the original data (16-byte family:
  `original || 00*8`, the answer's halves XORed, P4 §9.3.2);
- (c) a command MAC: DELIVERY SESSION KEY under STK with the card's challenge,
  CIPHER DATA over a zero initial block and the message padded by method 2
  (P4 §8.2: P1 05, or 07 03.. 01 when it exceeds one command); PIN reset:
  one STK process key enciphers `LD || PIN` (P4 §8.3) and MACs the command
  (docs/decisions.md S2/S3);
- the medical purchase: INIT SAM FOR PURCHASE (MAC1), CREDIT SAM FOR PURCHASE (MAC2).

`factors` is always the card's (province, city, card) tuple of
`chip.kernel.crypto.factors`; the helper sends the key's share of them, card level first
(`chip.apps.psam.factor_data`, docs/decisions.md S1).

The ADF is selected by FID (`00 A4 00 00 02 DF01`, P9 table 11): both
environments' ADFs carry the AID D15600000590, and the FID is relative to the
environment just selected.
"""

from chip.apps.keys import BY_NAME
from chip.apps.psam import (
    ADF_FID,
    DES_ENVIRONMENT_NAME,
    ENCRYPT_LAST,
    ENCRYPT_MORE,
    MAC_FIRST,
    MAC_LAST,
    MAC_NEXT,
    MAC_ONLY,
    MAX_BLOCKS,
    SM4_ENVIRONMENT_NAME,
    factor_data,
)
from chip.iso.apdu import build
from chip.iso.ins import (
    CIPHER_DATA,
    CREDIT_SAM_FOR_PURCHASE,
    DELIVERY_SESSION_KEY,
    INIT_SAM_FOR_PURCHASE,
    READ_BINARY,
    SELECT,
    cla_ins,
)
from chip.iso.sw import SW_OK, meaning, sw_of
from chip.kernel.crypto import BY_FLAG, SM4_FLAG, TDES_FLAG
from chip.kernel.cryptograms import command_mac_input
from reader.base import Reader, transmit_all

ENVIRONMENTS = {TDES_FLAG: DES_ENVIRONMENT_NAME, SM4_FLAG: SM4_ENVIRONMENT_NAME}  # by the card's FCI flag
DPK = BY_NAME["df04_dpk"]


class PsamError(Exception):
    """The PSAM refused a command: `sw` is its status word, the message says what it means."""

    def __init__(self, sw: int, apdu: bytes):
        super().__init__(f"PSAM answered {sw:04X} ({meaning(sw)}) to {apdu.hex().upper()}")
        self.sw = sw


class Psam:
    """A PSAM in `reader`, reset at once; `select` an environment before any keyed call."""

    def __init__(self, reader: Reader):
        self.reader = reader
        self.algorithm = None  # chip.kernel.crypto TDES or SM4, once an environment is selected
        self.terminal_number = None  # EF 0016 of that environment (P9 §5.3), 6 bytes cn
        reader.reset()

    def _send(self, apdu: bytes) -> bytes:
        response = transmit_all(self.reader, apdu)
        sw = sw_of(response)
        if sw != SW_OK:
            raise PsamError(sw, apdu)
        return response[:-2]

    def select(self, algorithm_flag: int) -> None:
        """SELECT the environment of a card with FCI algorithm flag `algorithm_flag`, read the
        terminal number there (READ BINARY by SFI 16), then SELECT the ADF."""
        name = ENVIRONMENTS.get(algorithm_flag)
        if name is None:
            raise ValueError(f"no PSAM environment for algorithm flag {algorithm_flag:02X} (01 DES, 03 SM4)")
        self.algorithm = None
        self._send(build(*cla_ins(SELECT), 0x04, 0x00, name))
        self.terminal_number = self._send(build(*cla_ins(READ_BINARY), 0x80 | 0x16, 0x00, le=6))
        self._send(build(*cla_ins(SELECT), 0x00, 0x00, ADF_FID.to_bytes(2, "big")))
        self.algorithm = BY_FLAG[algorithm_flag]

    # -- DELIVERY SESSION KEY and CIPHER DATA (P9 §7.4) -----------------------------------------------
    @property
    def selected(self):
        """The algorithm of the selected environment, whose recipes the PSAM's computations follow."""
        if self.algorithm is None:
            raise ValueError("select a PSAM environment first (Psam.select)")
        return self.algorithm

    @property
    def block(self) -> int:
        return self.selected.block

    def _deliver(self, spec_name: str, factors, process_factor: bytes) -> None:
        """BF DE usage id Lc, the key's factors card level first (chip.apps.psam.factor_data) || the
        process factor: the process key's input I, one block (P4 §8.4)."""
        spec = BY_NAME[spec_name]
        self._send(build(*cla_ins(DELIVERY_SESSION_KEY), spec.usage, spec.psam_id,
                         factor_data(spec, factors) + self.selected.process_input(process_factor)))

    def _chunks(self, data: bytes):
        most = MAX_BLOCKS * self.block
        return [data[i:i + most] for i in range(0, len(data), most)]

    def _encrypt(self, data: bytes) -> bytes:
        """CIPHER DATA 02 .. 00 over whole blocks: ECB under the temporary key."""
        chunks = self._chunks(data)
        return b"".join(self._send(build(*cla_ins(CIPHER_DATA), ENCRYPT_LAST if i == len(chunks) - 1 else ENCRYPT_MORE,
                                         0x00, chunk, le=len(chunk)))
                        for i, chunk in enumerate(chunks))

    def _mac(self, message: bytes) -> bytes:
        """MAC4 of P4 §8.2 under the temporary key: the MAC's initial value, then `message` padded
        (the card's recipe, chip.kernel.crypto); CIPHER DATA 05 when that fits one command, else
        07, 03.., 01."""
        algorithm = self.selected
        chunks = self._chunks(algorithm.mac_iv + algorithm.mac_blocks(message))
        if len(chunks) == 1:
            return self._send(build(*cla_ins(CIPHER_DATA), MAC_ONLY, 0x00, chunks[0], le=4))
        for i, chunk in enumerate(chunks[:-1]):
            self._send(build(*cla_ins(CIPHER_DATA), MAC_NEXT if i else MAC_FIRST, 0x00, chunk))
        return self._send(build(*cla_ins(CIPHER_DATA), MAC_LAST, 0x00, chunks[-1], le=4))

    def _encipher(self, plaintext: bytes) -> bytes:
        """P4 §8.3 encipherment under the temporary key: the card's `encipher_input`, enciphered."""
        return self._encrypt(self.selected.encipher_input(plaintext))

    def _auth(self, original: bytes) -> bytes:
        """Authentication data of P4 §9.3 from the temporary key: the PSAM enciphers the card's
        `auth_input`, `auth_output` makes the 8 bytes of it."""
        algorithm = self.selected
        return algorithm.auth_output(self._encrypt(algorithm.auth_input(original)))

    # -- the sequences of docs/card/commands.md §5 -------------------------------------------------------
    def external_auth(self, spec_name: str, factors, challenge: bytes, original: bytes) -> bytes:
        """(a) The 8 authentication bytes of EXTERNAL AUTHENTICATE `00 82 00 id 10 auth || original`
        for key `spec_name` (chip.apps.keys), from the card's current challenge (P7 §6.6)."""
        self._deliver(spec_name, factors, challenge)
        return self._auth(original)

    def internal_auth_expected(self, factors, r1: bytes, r2: bytes) -> bytes:
        """(b) What a genuine card answers to INTERNAL AUTHENTICATE `R1 || R2`: IRK's process key
        from R1, authentication data of R2 (P7 §5.4)."""
        self._deliver("ssse_irk", factors, r1)
        return self._auth(r2)

    def mac(self, spec_name: str, factors, challenge: bytes, message: bytes) -> bytes:
        """(c) MAC4 of `message` (CLA INS P1 P2 Lc || data) under the process key of `spec_name`
        (STK, STKDFxx, ...) from the card's challenge (P4 §8.2, P7 §13)."""
        self._deliver(spec_name, factors, challenge)
        return self._mac(message)

    def encipher(self, spec_name: str, factors, challenge: bytes, plaintext: bytes) -> bytes:
        """`LD || plaintext` padded as P4 §8.3 says, enciphered under the process key of `spec_name`."""
        self._deliver(spec_name, factors, challenge)
        return self._encipher(plaintext)

    def pin_reset_data(self, factors, challenge: bytes, new_pin_cn: bytes, header: bytes) -> bytes:
        """The data of PIN reset `84 24 00 01 Lc` (docs/decisions.md S2/S3): the new PIN (cn) enciphered as
        `LD || PIN`, then MAC4 over `header` (CLA INS P1 P2, 4 bytes) || Lc || ciphertext, both
        under one STK process key from `challenge`. Returns ciphertext || MAC. An empty PIN is
        sent as an enciphered PIN element of length zero, the MAC alone (P5 §6.8.3)."""
        self._deliver("ssse_stk", factors, challenge)
        ciphertext = self._encipher(new_pin_cn) if new_pin_cn else b""
        return ciphertext + self._mac(command_mac_input(*header, ciphertext))

    def init_purchase(self, *, random: bytes, counter: bytes, amounts: bytes, kind: int, when: bytes,
                      key_version: int, key_algorithm: int, factors) -> tuple[bytes, bytes]:
        """INIT SAM FOR PURCHASE (P9 §9.9) from the card's INITIALIZE FOR PURCHASE answer:
        `random` 4, purchase `counter` 2, `amounts` (account || self-pay || fund, 4 each), the
        transaction type `kind`, `when` = date 4 || time 3 (cn YYYYMMDDhhmmss), the DPK's
        `key_version` and `key_algorithm`. Returns (terminal transaction number 4, MAC1 4)."""
        data = (random + counter + amounts + bytes((kind,)) + when + bytes((key_version, key_algorithm))
                + factor_data(DPK, factors))
        answer = self._send(build(*cla_ins(INIT_SAM_FOR_PURCHASE), 0x01, 0x00, data, le=8))
        return answer[:4], answer[4:8]

    def credit_purchase(self, mac2: bytes) -> None:
        """CREDIT SAM FOR PURCHASE (P9 §9.10): the PSAM checks the card's MAC2 (PsamError 9302 if wrong)."""
        self._send(build(*cla_ins(CREDIT_SAM_FOR_PURCHASE), 0x00, 0x00, mac2))
