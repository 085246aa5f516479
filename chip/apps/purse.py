"""The medical offline purse of DF04 (LD/T 32 P5 §7, P7 §10-12, §14-15).

DF04 keeps the medical-insurance personal account (CIA), the annual self-pay
total (SPIP) and the annual pooled-fund total (SPFP) in a file only the COS
reaches (V2 after table 9: online counter 2, offline counter 2, balance 4,
annual self-pay 4, annual pooled 4, payment year 2, year start date mmdd 2),
and the last 30 loads and settlements in the cyclic EF08 (28-byte records).
The B0 commands of P5 §7 are the only way in:

  B0 28 00 01  INITIALIZE FOR LOAD       (P5 §7.5, P7 §11.1-11.2)
  B0 2A 00 00  CREDIT FOR LOAD           (P5 §7.1, P7 §11.6-11.9)
  B0 28 01 01  INITIALIZE FOR PURCHASE   (P5 §7.6, P7 §12.1-12.2)
  B0 2C 01 00  DEBIT FOR PURCHASE        (P5 §7.2, P7 §12.4-12.6)
  B0 26 00 xx  GET BALANCE               (P5 §7.3)
  B0 2E 00 tt  GET TRANSACTION PROOF     (P5 §7.4, P7 §14)
  B0 56 00 00  UPDATE STARTING DAY       (P5 §7.7)
  B0 56 01 00  GET STARTING DAY          (P5 §7.8)

State machine (P5 §7 table 49): after selection the purse is idle; INITIALIZE
FOR LOAD (PURCHASE) enters the load (purchase) state from any state; CREDIT FOR
LOAD is accepted only in the load state and DEBIT FOR PURCHASE only in the
purchase state, both ending in idle; GET BALANCE and GET TRANSACTION PROOF keep
the state. A command the state does not allow answers 6901 and is not executed;
every failed command leaves the purse idle (P5 §7). Table 49 wins over the
"valid only for the next command" of P5 §7.5.1 / §7.6.1 (docs/decisions.md
S22): a GET BALANCE between INITIALIZE and DEBIT keeps the purchase state.

Cryptography (docs/card/security.md; every MAC is the P4 §8.2 MAC over
the listed fields only, no header, P4 §8.2.4, P7 §15; each input's layout is
chip.kernel.cryptograms, which the PSAM uses too):

  SESLK = process_key(DLK, random 4 || load counter 2 || 80 00)     P7 §11.2
  SESPK = process_key(DPK, random 4 || purchase counter 2 || terminal tx no[2:4])
          derived when DEBIT FOR PURCHASE brings the terminal transaction number
          (P7 §12.2; docs/decisions.md S21)
  TAC   = MAC under tac_key(DTK): DTK_L xor DTK_R (DES family), DTK (SM4)  P7 §15

Decisions where the standard is silent (also in the handlers' docstrings):

- Transaction type byte (MAC1, MAC2, TAC, EF08, P2 of GET TRANSACTION PROOF):
  the EF08 type item of V2 table 51 / §8.5.3.2, "one Arabic digit" in format
  an: `31` ('1') account load, `32` ('2') medical settlement. P5/P7/P9 give no
  values (P5 §7, P7 §11-§12).
- Payment year: 2 bytes cn (BCD yyyy, e.g. `20 26`), like the mmdd start day
  next to it; `00 00` until the first purchase. Amounts are binary (V2 §8.5.3.5).
- Algorithm identifier of the INITIALIZE answers: the card's algorithm flag, as
  the SSSE FCI codes it (`01` DES family, `03` SM4; SR §10.1, P7 §5).
- Key index: `01` is the only one; it answers key version `01` (chip.apps.keys.KEY_VERSION).
- Counters start at 0; the value in the INITIALIZE answer is the one the
  transaction uses (session key, TAC, EF08 sequence number, GET TRANSACTION
  PROOF) and it goes up by one with the transaction. INITIALIZE refuses with
  9402 when the counter is at FFFF (P5 tables 68, 72), so no value is reused
  and none wraps.
- A balance, SPIP or SPFP that would pass FFFFFFFF: 6985 (conditions of use not
  satisfied; the standard names no limit). INITIALIZE FOR LOAD checks the
  balance before the host debits the account; DEBIT checks the totals.
- Load TAC: over the balance *after* the credit (the new balance the card now
  holds, as in the PBOC purse); P7 §11.8 does not say.
- GET TRANSACTION PROOF keeps, per transaction type, the sequence number, MAC
  and TAC of the last transaction, persistently and in the same transaction as
  the amounts (P7 §14: available as soon as the amounts are updated, also after
  the card was pulled). For a purchase MAC = the card's MAC2; for a load, which
  answers no MAC of its own, MAC = the host's MAC2 the card verified. A P2 that
  is not a transaction type is 6A86; no proof of that type with that sequence
  number is 9406.
- UPDATE STARTING DAY, "authenticated with DSK" (P5 §7.7.1): the command carries
  a P4 §8.2 MAC, `B0 56 00 00 06 mmdd MAC4`, MAC over `B0 56 00 00 06 || mmdd`
  under process_key(DSK, the card's last challenge) (P4 §8.2.3, §8.4, as the
  maintenance commands of P7 §13). Table 73's plain Lc 02 form carries no
  authentication and answers 6982; a missing challenge or a wrong MAC also
  6982, the only security status of table 75. The challenge is consumed.
- A time field (cn YYYYMMDDhhmmss) or start day that is no valid date: 6A80
  (checked after the MAC). The year rule of P7 §12.6 is applied literally:
  n = date - (payment year x 10000 + start day); n < 10000 (a date before the
  recorded settlement year included) adds to SPIP/SPFP, otherwise the payment
  year becomes the settlement year the date falls in and SPIP/SPFP restart.
- Le: the tables' value or `00` (ISO: all available); case 4 commands may come
  without Le (T=0 carries them as case 3); any other Le, or Lc, is 6700.
- GET STARTING DAY needs nothing (no text asks for the PIN) and keeps the
  state like the other reads; UPDATE STARTING DAY ends any load/purchase
  session (not in table 49).
- Only the 28-byte record mode: the 20-byte "personal account only" mode of
  P7 §12 is not offered.
"""

import datetime
from hmac import compare_digest

from chip.apps.keys import KEY_VERSION
from chip.apps.ssse_files import DETAIL, DF04_EF08
from chip.iso.apdu import EXTENDED_MAX, SHORT_MAX
from chip.iso.ins import (
    CREDIT_FOR_LOAD,
    DEBIT_FOR_PURCHASE,
    GET_BALANCE,
    GET_STARTING_DAY,
    GET_TRANSACTION_PROOF,
    INITIALIZE,
)
from chip.iso.sw import (
    SW_COMMAND_NOT_ACCEPTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_COUNTER_AT_MAXIMUM,
    SW_INSUFFICIENT_FUNDS,
    SW_KEY_INDEX_NOT_SUPPORTED,
    SW_MAC_INVALID,
    SW_MAC_NOT_AVAILABLE,
    SW_OK,
    SW_SECURITY_STATUS_NOT_SATISFIED,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    CardError,
)
from chip.kernel.cryptograms import (
    command_mac_input,
    load_mac1_input,
    load_mac2_input,
    load_session_input,
    load_tac_input,
    purchase_mac1_input,
    purchase_mac2_input,
    purchase_session_input,
    purchase_tac_input,
)
from chip.kernel.records import CyclicRecords
from chip.kernel.store import Vars

TYPE_LOAD = 0x31  # V2 table 51 '1' account load
TYPE_PURCHASE = 0x32  # V2 table 51 '2' medical settlement
TYPES = {TYPE_LOAD: "load", TYPE_PURCHASE: "purchase"}
KEY_INDEX = 0x01

IDLE, LOAD, PURCHASE = "idle", "load", "purchase"
COUNTER_MAX = 0xFFFF
AMOUNT_MAX = 0xFFFFFFFF

PURSE = "df04.purse"


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def _bcd_year(year: int) -> bytes:
    return bytes.fromhex(f"{year:04d}")


def valid_start_day(mmdd: str) -> bool:
    """`mmdd` is a day of the year (29 February included)."""
    if len(mmdd) != 4 or not mmdd.isdigit() or not mmdd.isascii():
        return False
    try:
        datetime.date(2000, int(mmdd[:2]), int(mmdd[2:]))  # a leap year: 0229 is a day
    except ValueError:
        return False
    return True


def _timestamp(field: bytes) -> int:
    """The date yyyymmdd of a 7-byte cn time YYYYMMDDhhmmss; 6A80 when it is no valid time."""
    digits = field.hex()
    if not digits.isdigit():
        raise CardError(SW_WRONG_DATA)
    try:
        datetime.datetime(int(digits[0:4]), int(digits[4:6]), int(digits[6:8]),
                          int(digits[8:10]), int(digits[10:12]), int(digits[12:14]))
    except ValueError:
        raise CardError(SW_WRONG_DATA) from None
    return int(digits[:8])


def _lengths(cmd, lc: int, le: int) -> None:
    """6700 unless the command has `lc` data bytes and an acceptable Le for an `le`-byte answer.

    `le` 0: no Le allowed. Otherwise Le is the table's value or 00; a command
    with data may come without Le (case 4 carried as case 3 on T=0), one
    without data must have it (case 2).
    """
    if len(cmd.data) != lc:
        raise CardError(SW_WRONG_LENGTH)
    if not le:
        if cmd.le_present:
            raise CardError(SW_WRONG_LENGTH)
        return
    if cmd.le_present:
        if cmd.ne not in (le, SHORT_MAX, EXTENDED_MAX):
            raise CardError(SW_WRONG_LENGTH)
    elif not lc:
        raise CardError(SW_WRONG_LENGTH)


def _ends_idle_on_failure(method):
    """P5 §7: a command that does not succeed leaves the purse idle."""
    def handler(self, cmd):
        try:
            return method(self, cmd)
        except Exception:  # a CardError, or a bug the card OS answers 6F00: the session is over either way
            self.reset()
            raise
    handler.__name__ = method.__name__
    handler.__qualname__ = method.__qualname__
    handler.__doc__ = method.__doc__
    return handler


class _Session:
    """What one INITIALIZE leaves for its CREDIT / DEBIT (volatile, P4 §7.5)."""

    __slots__ = ("amounts", "counter", "key", "random", "terminal")

    def __init__(self, random: bytes, counter: int, amounts: bytes, terminal: bytes, key: bytes | None):
        self.random = random
        self.counter = counter
        self.amounts = amounts  # load: amount 4; purchase: account 4 || self-pay 4 || fund 4
        self.terminal = terminal
        self.key = key  # SESLK (made at INITIALIZE FOR LOAD); SESPK is made at DEBIT


class Purse:
    """The DF04 purse of one card: volatile session state over the persistent `df04.purse`."""

    COMMANDS = {INITIALIZE: "initialize", CREDIT_FOR_LOAD: "credit_for_load", DEBIT_FOR_PURCHASE: "debit_for_purchase",
                GET_BALANCE: "get_balance", GET_TRANSACTION_PROOF: "get_transaction_proof",
                GET_STARTING_DAY: "starting_day"}  # B0 56: UPDATE (P1 00) and GET (P1 01) STARTING DAY

    def __init__(self, applet):
        self.applet = applet
        self.state = IDLE
        self._session: _Session | None = None

    @staticmethod
    def personalize(store, profile) -> None:
        """The amounts file and EF08 at issue: balance and start day from the profile, all else 0."""
        balance = profile.medical_balance
        start = profile.medical_start_day
        if not 0 <= balance <= AMOUNT_MAX:
            raise ValueError(f"medical balance must be 0..{AMOUNT_MAX} fen, got {balance}")
        if not valid_start_day(start):
            raise ValueError(f"medical start day must be mmdd, got {start!r}")
        store.add(PURSE, Vars(
            online=0,  # load (online) transaction counter
            offline=0,  # purchase (offline) transaction counter
            balance=balance,  # CIA, fen
            spip=0,  # annual self-pay total, fen
            spfp=0,  # annual pooled-fund total, fen
            year=0,  # payment year yyyy (0: no purchase yet)
            start_day=start,  # year start date mmdd
            load_proof=b"",  # seq 2 || MAC 4 || TAC 4 of the last load (P7 §14)
            purchase_proof=b"",  # the same for the last purchase
        ))
        store.add(DF04_EF08.key, CyclicRecords(capacity=DF04_EF08.capacity))

    def reset(self) -> None:
        """Power-up, deselection, leaving DF04, any failure: back to idle, the session forgotten."""
        self.state = IDLE
        self._session = None

    # -- helpers -------------------------------------------------------------------------------
    @property
    def vars(self) -> Vars:
        return self.applet.store[PURSE]

    def _expect(self, state: str) -> _Session:
        """P5 table 49: a command the state does not allow answers 6901, and the purse goes idle."""
        session = self._session  # set with the state by INITIALIZE: LOAD and PURCHASE always have one
        if self.state != state or session is None:
            self.reset()
            raise CardError(SW_COMMAND_NOT_ACCEPTED)
        return session

    def _require_pin(self) -> None:
        if not self.applet.pin_satisfied():
            raise CardError(SW_SECURITY_STATUS_NOT_SATISFIED)

    def _initialize_checks(self, cmd, lc: int, le: int, counter: int) -> None:
        """What both INITIALIZE commands check first, in this order (P5 §7.5, §7.6): the lengths,
        the PIN (6982, P7 §11, §12), the key index (9403), room in their `counter` (9402)."""
        _lengths(cmd, lc, le)
        self._require_pin()
        if cmd.data[0] != KEY_INDEX:
            raise CardError(SW_KEY_INDEX_NOT_SUPPORTED)
        if counter >= COUNTER_MAX:
            raise CardError(SW_COUNTER_AT_MAXIMUM)

    def _tac(self, message: bytes) -> bytes:
        algorithm = self.applet.algorithm
        return algorithm.command_mac(algorithm.tac_key(self.applet.card_key("df04_dtk")), message)

    def _record(self, seq: int, kind: int, terminal: bytes, time: bytes, account: int, self_pay: int = 0,
                fund: int = 0) -> None:
        """Write one EF08 record (chip.apps.ssse_files.DETAIL) as the newest."""
        record = DETAIL.build({"seq": seq, "type": kind, "terminal": bytes(terminal), "time": bytes(time),
                               "account": account, "self_pay": self_pay, "fund": fund})
        ef08 = self.applet.store[DF04_EF08.key]
        self.applet.store.write(ef08, "records", ef08.pushed(record))

    # -- INITIALIZE ------------------------------------------------------------------------------
    @_ends_idle_on_failure
    def initialize(self, cmd):
        """INITIALIZE FOR LOAD `B0 28 00 01 0B` / FOR PURCHASE `B0 28 01 01 13` (P5 §7.5, §7.6).

        Allowed in every state (table 49); any earlier session is dropped first.
        """
        self.reset()
        if cmd.p2 != 0x01:
            raise CardError(SW_WRONG_P1P2)
        if cmd.p1 == 0x00:
            return self._initialize_load(cmd)
        if cmd.p1 == 0x01:
            return self._initialize_purchase(cmd)
        raise CardError(SW_WRONG_P1P2)

    def _initialize_load(self, cmd):
        """INITIALIZE FOR LOAD (P5 §7.5, P7 §11.2): key index 1, amount 4, terminal no 6.

        Checks PIN (6982, P7 §11), key index (9403), counter (9402), room for the
        amount (6985, project). Makes the pseudo-random and SESLK; answers CIA
        balance 4 || load counter 2 || key version 1 || algorithm id 1 ||
        pseudo-random 4 || MAC1 4, MAC1 = MAC_SESLK(balance || amount || type || terminal no).
        """
        v = self.vars
        self._initialize_checks(cmd, 0x0B, 0x10, v.online)
        data = cmd.data
        amount, terminal = data[1:5], data[5:11]
        if v.balance + int.from_bytes(amount, "big") > AMOUNT_MAX:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)
        applet = self.applet
        algorithm = applet.algorithm
        random = bytes(applet.card.random(4))
        counter = _u16(v.online)
        seslk = algorithm.process_key(applet.card_key("df04_dlk"), load_session_input(random, counter))
        balance = _u32(v.balance)
        mac1 = algorithm.command_mac(seslk, load_mac1_input(balance, amount, TYPE_LOAD, terminal))
        self._session = _Session(random, v.online, amount, terminal, seslk)
        self.state = LOAD
        return balance + counter + bytes((KEY_VERSION, algorithm.flag)) + random + mac1, SW_OK

    def _initialize_purchase(self, cmd):
        """INITIALIZE FOR PURCHASE (P5 §7.6, P7 §12.2): key index 1, account amount 4,
        self-pay 4, fund 4, terminal no 6.

        Checks PIN (6982, P7 §12), key index (9403), counter (9402), account
        amount against the balance (9401). Answers CIA 4 || SPIP 4 || SPFP 4 ||
        payment year 2 || purchase counter 2 || key version 1 || algorithm id 1 ||
        pseudo-random 4. SESPK waits for DEBIT (docs/decisions.md S21).
        """
        v = self.vars
        self._initialize_checks(cmd, 0x13, 0x16, v.offline)
        data = cmd.data
        amounts, terminal = data[1:13], data[13:19]
        if int.from_bytes(amounts[:4], "big") > v.balance:
            raise CardError(SW_INSUFFICIENT_FUNDS)
        algorithm = self.applet.algorithm
        random = bytes(self.applet.card.random(4))
        self._session = _Session(random, v.offline, amounts, terminal, None)
        self.state = PURCHASE
        answer = (_u32(v.balance) + _u32(v.spip) + _u32(v.spfp) + _bcd_year(v.year) + _u16(v.offline)
                  + bytes((KEY_VERSION, algorithm.flag)) + random)
        return answer, SW_OK

    # -- CREDIT FOR LOAD -------------------------------------------------------------------------
    @_ends_idle_on_failure
    def credit_for_load(self, cmd):
        """CREDIT FOR LOAD `B0 2A 00 00 0B <host time 7> <MAC2 4>` (P5 §7.1, P7 §11.7-11.9).

        Only in the load state (6901). MAC2 = MAC_SESLK(amount || type || terminal no
        || host time), else 9302. Then, all or nothing: balance + amount, load
        counter + 1, an EF08 record (counter used, type, terminal, host time,
        amount), the proof for GET TRANSACTION PROOF. Answers TAC over new balance
        || counter before the increment || amount || type || terminal no || host time.
        """
        session = self._expect(LOAD)
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        _lengths(cmd, 0x0B, 0x04)
        host_time, mac2 = cmd.data[:7], cmd.data[7:]
        algorithm = self.applet.algorithm
        expected = algorithm.command_mac(session.key, load_mac2_input(session.amounts, TYPE_LOAD, session.terminal,
                                                                      host_time))
        if not compare_digest(expected, mac2):
            raise CardError(SW_MAC_INVALID)
        _timestamp(host_time)
        v = self.vars
        counter = session.counter
        balance = v.balance + int.from_bytes(session.amounts, "big")
        if counter >= COUNTER_MAX:  # cannot happen after INITIALIZE (9402 there); never wrap
            raise CardError(SW_COUNTER_AT_MAXIMUM)
        if counter != v.online or balance > AMOUNT_MAX:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)
        tac = self._tac(load_tac_input(_u32(balance), _u16(counter), session.amounts, TYPE_LOAD, session.terminal,
                                       host_time))
        store = self.applet.store
        store.write(v, "balance", balance)
        store.write(v, "online", counter + 1)
        store.write(v, "load_proof", _u16(counter) + bytes(mac2) + tac)
        self._record(counter, TYPE_LOAD, session.terminal, host_time, int.from_bytes(session.amounts, "big"))
        self.reset()
        return tac, SW_OK

    # -- DEBIT FOR PURCHASE ----------------------------------------------------------------------
    @_ends_idle_on_failure
    def debit_for_purchase(self, cmd):
        """DEBIT FOR PURCHASE `B0 2C 01 00 0F <terminal tx no 4> <time 7> <MAC1 4>` (P5 §7.2, P7 §12.5-12.6).

        Only in the purchase state (6901). SESPK from DPK, the pseudo-random, the
        counter and the terminal transaction number's right two bytes; MAC1 =
        MAC_SESPK(account || self-pay || fund || type || terminal no || time), else
        9302. Then, all or nothing: balance - account, the year rule for
        SPIP/SPFP, purchase counter + 1, the EF08 record, the proof, and the
        SSSE activation (docs/card/lifecycle.md §1). Answers TAC 4 || MAC2 4: MAC2 =
        MAC_SESPK(account || self-pay || fund), TAC over the amounts || type ||
        terminal no || terminal tx no || time.
        """
        session = self._expect(PURCHASE)
        if cmd.p1 != 0x01 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        _lengths(cmd, 0x0F, 0x08)
        data = cmd.data
        tx_no, time, mac1 = data[:4], data[4:11], data[11:15]
        applet = self.applet
        algorithm = applet.algorithm
        counter = session.counter
        sespk = algorithm.process_key(applet.card_key("df04_dpk"),
                                      purchase_session_input(session.random, _u16(counter), tx_no))
        amounts, terminal = session.amounts, session.terminal
        if not compare_digest(algorithm.command_mac(sespk, purchase_mac1_input(amounts, TYPE_PURCHASE, terminal, time)),
                              mac1):
            raise CardError(SW_MAC_INVALID)
        today = _timestamp(time)
        v = self.vars
        account = int.from_bytes(amounts[0:4], "big")
        self_pay = int.from_bytes(amounts[4:8], "big")
        fund = int.from_bytes(amounts[8:12], "big")
        if counter >= COUNTER_MAX:  # cannot happen after INITIALIZE (9402 there); never wrap
            raise CardError(SW_COUNTER_AT_MAXIMUM)
        if counter != v.offline or account > v.balance:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)  # cannot happen after INITIALIZE
        year, spip, spfp = self.year_rule(v.year, v.start_day, today, v.spip, v.spfp, self_pay, fund)
        if spip > AMOUNT_MAX or spfp > AMOUNT_MAX:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)
        mac2 = algorithm.command_mac(sespk, purchase_mac2_input(amounts))
        tac = self._tac(purchase_tac_input(amounts, TYPE_PURCHASE, terminal, tx_no, time))
        applet.medical_activation()
        store = applet.store
        store.write(v, "balance", v.balance - account)
        if year != v.year:
            store.write(v, "year", year)
        store.write(v, "spip", spip)
        store.write(v, "spfp", spfp)
        store.write(v, "offline", counter + 1)
        store.write(v, "purchase_proof", _u16(counter) + mac2 + tac)
        self._record(counter, TYPE_PURCHASE, terminal, time, account, self_pay, fund)
        self.reset()
        return tac + mac2, SW_OK

    @staticmethod
    def year_rule(year: int, start_day: str, today: int, spip: int, spfp: int,
                  self_pay: int, fund: int) -> tuple[int, int, int]:
        """P7 §12.6: (payment year, SPIP, SPFP) after a purchase on `today` (yyyymmdd).

        n = today - (year x 10000 + start day). n < 10000: the date is in the
        recorded settlement year, the amounts add up. Otherwise the payment year
        becomes the settlement year `today` falls in (the calendar year if its
        mmdd is on or after the start day, else the one before) and the totals
        restart at this purchase's amounts.
        """
        start = int(start_day)
        if today - (year * 10000 + start) < 10000:
            return year, spip + self_pay, spfp + fund
        settlement = today // 10000 if today % 10000 >= start else today // 10000 - 1
        return settlement, self_pay, fund

    # -- reads -----------------------------------------------------------------------------------
    @_ends_idle_on_failure
    def get_balance(self, cmd):
        """GET BALANCE `B0 26 00 P2 Le` (P5 §7.3): P2 01 CIA (Le 04); 02 SPIP, 03 SPFP
        (Le 06: amount 4 || payment year 2). Needs the PIN (6982, P5 §7.3.1). Keeps the state."""
        p2 = cmd.p2
        if cmd.p1 or p2 not in (1, 2, 3):
            raise CardError(SW_WRONG_P1P2)
        _lengths(cmd, 0, 4 if p2 == 1 else 6)
        self._require_pin()
        v = self.vars
        if p2 == 1:
            return _u32(v.balance), SW_OK
        return _u32(v.spip if p2 == 2 else v.spfp) + _bcd_year(v.year), SW_OK

    @_ends_idle_on_failure
    def get_transaction_proof(self, cmd):
        """GET TRANSACTION PROOF `B0 2E 00 <type> 02 <seq 2> 08` (P5 §7.4, P7 §14).

        MAC 4 || TAC 4 of the last transaction of that type if its sequence number
        is `seq`, else 9406. Purchase: the card's MAC2; load: the host's MAC2.
        Keeps the state; needs no PIN (recovery after the card was pulled).
        """
        if cmd.p1 or cmd.p2 not in TYPES:
            raise CardError(SW_WRONG_P1P2)
        _lengths(cmd, 0x02, 0x08)
        v = self.vars
        proof = v.load_proof if cmd.p2 == TYPE_LOAD else v.purchase_proof
        if len(proof) != 10 or proof[:2] != cmd.data:
            raise CardError(SW_MAC_NOT_AVAILABLE)
        return proof[2:], SW_OK

    # -- starting day ----------------------------------------------------------------------------
    @_ends_idle_on_failure
    def starting_day(self, cmd):
        """UPDATE STARTING DAY `B0 56 00 00` (P5 §7.7) and GET STARTING DAY `B0 56 01 00 02` (P5 §7.8)."""
        if cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        if cmd.p1 == 0x00:
            return self._update_starting_day(cmd)
        if cmd.p1 == 0x01:
            _lengths(cmd, 0, 2)
            return bytes.fromhex(self.vars.start_day), SW_OK
        raise CardError(SW_WRONG_P1P2)

    def _update_starting_day(self, cmd):
        """UPDATE STARTING DAY `B0 56 00 00 06 <mmdd 2> <MAC 4>`, authenticated with DSK (P5 §7.7.1).

        MAC (P4 §8.2) over `B0 56 00 00 06 || mmdd` under process_key(DSK, the
        card's last challenge), which this consumes. The plain `Lc 02` form of
        table 73, no challenge or a wrong MAC: 6982. Ends any purse session.
        """
        self.reset()
        data = cmd.data
        if len(data) == 2 and not cmd.le_present:
            raise CardError(SW_SECURITY_STATUS_NOT_SATISFIED)  # no DSK authentication
        _lengths(cmd, 0x06, 0)
        applet = self.applet
        try:
            challenge = applet.challenge.take()
        except CardError:
            raise CardError(SW_SECURITY_STATUS_NOT_SATISFIED) from None
        algorithm = applet.algorithm
        ks = algorithm.process_key(applet.card_key("df04_dsk"), challenge)
        message = command_mac_input(cmd.cla, cmd.ins, cmd.p1, cmd.p2, data[:2])
        if not compare_digest(algorithm.command_mac(ks, message), data[2:]):
            raise CardError(SW_SECURITY_STATUS_NOT_SATISFIED)
        mmdd = data[:2].hex()
        if not valid_start_day(mmdd):
            raise CardError(SW_WRONG_DATA)
        applet.store.write(self.vars, "start_day", mmdd)
        return b"", SW_OK

    # -- inspection (host tools, not an APDU path) -----------------------------------------------
    def describe(self) -> dict:
        """The amounts file and the EF08 records (newest first), decoded, for `sscard info`."""
        store = self.applet.store
        v = store[PURSE]
        records = []
        for record in store[DF04_EF08.key].records:
            fields = DETAIL.parse(record)
            records.append({
                "seq": fields.seq,
                "type": TYPES.get(fields.type, f"{fields.type:02X}"),
                "terminal": fields.terminal.hex().upper(),
                "time": fields.time.hex(),
                "account": fields.account,
                "self_pay": fields.self_pay,
                "fund": fields.fund,
            })
        return {
            "balance": v.balance, "spip": v.spip, "spfp": v.spfp,
            "payment year": f"{v.year:04d}", "start day": v.start_day,
            "load counter": v.online, "purchase counter": v.offline, "records": records,
        }
