"""`PcscReader`: any PC/SC reader through pyscard, virtual (our card on vpcd) or real.

It implements the same `Reader` interface as `SimReader`, so scripts, flows
and traces run unchanged against a real card in a real reader (hardware in
the loop). As a real terminal does, it fetches `61xx` data with GET RESPONSE
and re-issues a command with the Le a `6Cxx` names (`get_response=False` to
see the raw exchanges). Connecting retries "card unpowered" / "no card" /
"service not available" until a deadline (a card just reinserted, a pcscd
just restarted); a transmit that hangs is abandoned after a bound.

A reader with a PIN pad offers the PC/SC part 10 features FEATURE_VERIFY_PIN_DIRECT and
FEATURE_MODIFY_PIN_DIRECT (listed by CM_IOCTL_GET_FEATURE_REQUEST); `pin_entry` hands its
structure to SCardControl with the feature's control code, as libccid's GemPC PinPad takes it.
The holder types on the reader's own keys; for the GemPC PinPad of `sscard serve --ccid-reader
GemPCPinPad` those keys are serve's control lines, which `ServeKeypad` sends.
"""

import concurrent.futures
import time

from reader.base import PinPadError, Reader, transmit_all
from reader.ccid.pinpad import FEATURE_NAMES
from reader.pcsc.serve import control

try:
    from smartcard import scard
except ImportError:  # pyscard is an optional dependency: `pip install sscard[pcsc]`
    scard = None


FEATURE_REQUEST = 3400  # CM_IOCTL_GET_FEATURE_REQUEST is SCARD_CTL_CODE(3400) (PC/SC part 10)
PIN_ENTRY_TIMEOUT = 100.0  # s: a PIN entry waits for the holder; libccid waits max(90, bTimeOut + 10) s itself


class PcscError(Exception):
    """A PC/SC failure; the message says which call and what pcscd answered."""


def _require():
    if scard is None:
        raise PcscError("pyscard is not installed: pip install pyscard (needs libpcsclite-dev to build)")


def _text(hresult: int) -> str:
    try:
        return f"{scard.SCardGetErrorMessage(hresult).strip()} (0x{hresult & 0xFFFFFFFF:08X})"
    except Exception:  # pragma: no cover - only on a broken pyscard
        return f"0x{hresult & 0xFFFFFFFF:08X}"


def _context():
    _require()
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise PcscError(f"cannot reach pcscd: {_text(hresult)}; is pcscd running?")
    return context


def list_readers() -> list[str]:
    """The readers pcscd knows now ([] when it has none)."""
    context = _context()
    try:
        hresult, readers = scard.SCardListReaders(context, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise PcscError(f"SCardListReaders failed: {_text(hresult)}")
        return list(readers)
    finally:
        scard.SCardReleaseContext(context)


class PcscReader(Reader):
    def __init__(self, name: str, connect_timeout: float = 5.0, transmit_timeout: float = 10.0,
                 get_response: bool = True):
        _require()
        self.name = name
        self.connect_timeout = connect_timeout
        self.transmit_timeout = transmit_timeout
        self.get_response = get_response
        self.context = None
        self.card = None
        self.protocol = None
        self._worker = None

    # -- connection ---------------------------------------------------------------------------
    def _connect(self) -> None:
        deadline = time.monotonic() + self.connect_timeout
        last = None
        while True:
            if self.context is None:
                try:
                    self.context = _context()
                except PcscError as exc:
                    last = str(exc)
                    self.context = None
            if self.context is not None:
                hresult, card, protocol = scard.SCardConnect(
                    self.context, self.name, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
                if hresult == scard.SCARD_S_SUCCESS:
                    self.card, self.protocol = card, protocol
                    return
                last = _text(hresult)
                if hresult in (scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED, scard.SCARD_E_INVALID_HANDLE):
                    scard.SCardReleaseContext(self.context)
                    self.context = None
                elif hresult not in _RETRY_CONNECT:
                    raise PcscError(f"cannot connect to reader {self.name!r}: {last}")
            if time.monotonic() >= deadline:
                raise PcscError(f"no card in reader {self.name!r} after {self.connect_timeout:g} s: {last}")
            time.sleep(0.05)

    def reset(self) -> bytes:
        """Connect (retrying until the deadline) or warm-reset the card; return its ATR."""
        if self.card is None:
            self._connect()
        else:
            hresult, self.protocol = scard.SCardReconnect(
                self.card, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
                scard.SCARD_RESET_CARD)
            if hresult != scard.SCARD_S_SUCCESS:
                self._drop()
                self._connect()
        hresult, _, _, _, atr = scard.SCardStatus(self.card)
        if hresult != scard.SCARD_S_SUCCESS:
            raise PcscError(f"SCardStatus failed: {_text(hresult)}")
        return bytes(atr)

    def _drop(self) -> None:
        if self.card is not None:
            scard.SCardDisconnect(self.card, scard.SCARD_LEAVE_CARD)
            self.card = None

    def power_off(self) -> None:
        if self.card is not None:
            scard.SCardDisconnect(self.card, scard.SCARD_UNPOWER_CARD)
            self.card = None

    def close(self) -> None:
        self.power_off()
        if self.context is not None:
            scard.SCardReleaseContext(self.context)
            self.context = None
        if self._worker is not None:
            self._worker.shutdown(wait=False)
            self._worker = None

    # -- exchanges ------------------------------------------------------------------------------
    def _call(self, timeout: float, call, *args):
        """`call(*args)` (a pyscard call on the card) in the worker thread, abandoned after `timeout` s."""
        if self._worker is None:
            self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="pcsc")
        future = self._worker.submit(call, *args)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            self._worker.shutdown(wait=False)  # the stuck call keeps its thread; start afresh next time
            self._worker = None
            self.card = None
            raise PcscError(f"reader {self.name!r}: no answer within {timeout:g} s") from None

    def _raw(self, apdu: bytes) -> bytes:
        if self.card is None:
            self.reset()
        hresult, response = self._call(self.transmit_timeout, scard.SCardTransmit, self.card, self.protocol, list(apdu))
        if hresult != scard.SCARD_S_SUCCESS:
            self.card = None
            raise PcscError(f"reader {self.name!r}: transmit failed: {_text(hresult)}")
        if len(response) < 2:  # the card went away mid-command: no status word came back
            self.card = None
            raise PcscError(f"reader {self.name!r}: the card answered no status word (removed?)")
        return bytes(response)

    # -- the PIN pad (PC/SC part 10) --------------------------------------------------------------
    def features(self) -> dict[int, int]:
        """The PC/SC part 10 features the reader offers, tag -> control code (CM_IOCTL_GET_FEATURE_REQUEST:
        tag, length 4, the code big-endian); {} when the reader's driver answers none."""
        if self.card is None:
            self.reset()
        hresult, tlv = self._call(self.transmit_timeout, scard.SCardControl, self.card,
                                  scard.SCARD_CTL_CODE(FEATURE_REQUEST), [])
        if hresult != scard.SCARD_S_SUCCESS:
            return {}
        tlv, found, i = bytes(tlv), {}, 0
        while i + 2 <= len(tlv):
            found[tlv[i]] = int.from_bytes(tlv[i + 2:i + 2 + tlv[i + 1]], "big")
            i += 2 + tlv[i + 1]
        return found

    def pin_entry(self, feature: int, structure: bytes) -> bytes:
        """The reader's own PIN pad: SCardControl with the feature's control code and `structure`;
        PinPadError when the reader does not offer the feature or the call fails (libccid answers a
        structure its reader refuses SCARD_E_NOT_TRANSACTED)."""
        codes = self.features()
        if feature not in codes:
            raise PinPadError(f"reader {self.name!r} has no PIN pad: it does not offer {FEATURE_NAMES[feature]} "
                              "(PC/SC part 10)")
        hresult, response = self._call(PIN_ENTRY_TIMEOUT, scard.SCardControl, self.card, codes[feature],
                                       list(structure))
        if hresult != scard.SCARD_S_SUCCESS:
            raise PinPadError(f"reader {self.name!r}: {FEATURE_NAMES[feature]} failed: {_text(hresult)} (the PIN "
                              "pad refused the structure, or the card did not answer)")
        return bytes(response)

    def transmit(self, apdu: bytes) -> bytes:
        if not self.get_response:
            return self._raw(bytes(apdu))
        return transmit_all(_Raw(self), bytes(apdu))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ServeKeypad:
    """The keys of the GemPC PinPad that `sscard serve --ccid LINK --ccid-reader GemPCPinPad` serves
    its first card in, reached through serve's control socket `path`: each entry is one
    `keypad ENTRY` line (docs/ccid.md), queued for the reader's next PIN entry."""

    def __init__(self, path: str):
        self.path = path

    def press(self, entry: str) -> None:
        """Send one entry; PinPadError when serve cannot be reached or refuses it (a reader without keys)."""
        try:
            reply = control(self.path, f"keypad {entry}")
        except OSError as exc:
            raise PinPadError(f"cannot reach serve's control socket {self.path}: {exc.strerror or exc}") from None
        if not reply.startswith("ok"):
            raise PinPadError(f"serve's control socket {self.path} answers: {reply or '(nothing)'}")


class _Raw:
    """The raw exchange of a PcscReader, for `transmit_all`."""

    def __init__(self, reader: PcscReader):
        self.transmit = reader._raw


_RETRY_CONNECT = () if scard is None else (
    scard.SCARD_W_UNPOWERED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_REMOVED_CARD,
    scard.SCARD_E_READER_UNAVAILABLE, scard.SCARD_E_UNKNOWN_READER, scard.SCARD_W_RESET_CARD,
    scard.SCARD_E_TIMEOUT, scard.SCARD_E_SHARING_VIOLATION,
)
