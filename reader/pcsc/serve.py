"""`sscard serve`: cards on vsmartcard's vpcd, so pcscd shows each as a reader.

A thin socket adapter around the sans-I/O `reader.pcsc.vpcd.VpcdProtocol`. vpcd
listens and the card connects (one TCP port per virtual reader). One thread
runs a selector over every card's socket and the control channels:

- the 48 ms trap (docs/pcsc.md): `TCP_NODELAY`, `TCP_QUICKACK` re-armed
  after every reply (`Slot._reply` says why that is enough), and each reply sent in one write;
- an exchange is at most one selector wake-up: the rest of a frame vpcd has begun is read at once,
  with a bound (`Slot.readable`), an APDU goes to the card without an event object, and a card
  served alone waits for its next command in its own read (`Server.run`);
- ATR requests are answered from the card's ATR without touching its state;
  power on/off and reset map to the card's power model, on the card's own
  protocol (the first its ATR offers: T=0 on the default card, whose 61xx
  and 6Cxx answers reach the PC/SC client as they do from a real T=0 card)
  unless `--t0`/`--t1` says otherwise;
- when pcscd goes away the card reconnects with backoff;
- images are opened off the event loop, with a bound (`OPEN_TIMEOUT`): a
  `switch` to a FIFO or to a file on a hung file system answers an error on
  the control channel while the other cards keep being served;
- control lines (on stdin when it can be polled - a terminal, a pipe, a
  socket - and on an optional Unix control socket; a stdin from /dev/null or
  a regular file, as under `nohup` or `&` in a script, is no control input):
  `remove [N]`, `insert [N]`, `switch [N] IMAGE`, `status`, `quit`, `keypad [N] ENTRY`, and
  `fault [N] TEXT` / `fault [N] clear` / `fault [N]` to inject, clear or list
  faults on a card (the text form of `chip.faults.parse_fault`, e.g.
  `fault sw 6581 ins B2 once`; a `mute` fault sends no reply; `switch` drops
  the faults with the old card; `switch` to the card's own image reopens it,
  the card closing first, as an image has one owner); `reset [N]`, a warm reset
  of a powered card (ISO/IEC 7816-3 §6.2.3: the power-up rules run, the
  activation deadline among them; the reader's client is not told), and
  `date [N] YYYY-MM-DD|today` / `date [N]` to set or show a card's simulated
  date (kept across `switch`); a control socket that
  cannot accept (EMFILE) is logged once and retried, the cards are still served;
- another thread (the bench view, reader.web) hands control lines to the loop with
  `Server.call(line, reply)`: they wake the selector through a socket pair and run like any other
  line; `on_command(line, reply)` sees every line the loop has run, `on_tick()` runs at each turn
  of the loop (at least every `READ_WAIT` while a card served alone is busy), and a slot's
  `on_power(slot, "on" | "reset" | "off")` sees vpcd's power changes;
- SIGINT/SIGTERM end the loop between two commands: a command in progress
  finishes and its state is committed (commits are atomic anyway).

With `--ccid LINK` the first card sits in the serial CCID reader of `reader.ccid` instead
(docs/ccid.md): the firmware on a pty that pcscd drives with libccidtwin (USB CCID rev 1.1,
GemPC Twin framing), watched by the same selector. Each card is a `CardSlot` - the image,
inserted or not, `switch` - whose reader is its adapter: `Slot`, a vpcd connection, or
`CcidSlot`, the firmware's slot; the control lines act on either alike. On the CCID reader
`remove`/`insert` change the slot's state (GetSlotStatus, and the NotifySlotChange the
firmware sends before its next answer). On the two-slot SEC1210 a PSAM image (`--psam`) sits in
the SAM slot, slot 1, as card 1 of the control lines: `[N]` counts the served cards, the user's card
in slot 0 first, then the PSAM, then the vpcd cards (`CcidReader`: one firmware and pty for both
slots). On a reader with a PIN pad (`--ccid-reader GemPCPinPad`)
`keypad ENTRY` queues one entry of its keypad - digits, `cancel` or `timeout` - for the next
PC_to_RDR_Secure (USB CCID rev 1.1 §6.1.11); the reply says what was queued, never the digits.
"""

import collections
import datetime
import errno
import os
import selectors
import signal
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable

from chip import Card, CardNotPowered, ImageError
from chip.faults import CardMute, FaultPlan, parse_fault
from reader.ccid.firmware import Firmware
from reader.ccid.pinpad import CANCEL, KEYPAD_READERS, TIMEOUT, Keypad
from reader.ccid.pty import PtyReader, stanza
from reader.ccid.serial import DEFAULT_VARIANT
from reader.errors import InputError
from reader.pcsc.vpcd import MAX_FRAME, Apdu, GetAtr, PowerOff, PowerOn, Reset, VpcdProtocol
from reader.traces.format import date_problem

DEFAULT_PORT = 35963
BACKOFF_MIN, BACKOFF_MAX = 0.05, 2.0
SWAP_DELAY = 0.6  # a switched card stays out long enough for pcscd (polling every 0.4 s) to see a new card
TCP_QUICKACK: int = getattr(socket, "TCP_QUICKACK", 0)  # 0: the platform has none (Linux has it)
OPEN_TIMEOUT = 3.0  # an image that takes longer to open is a FIFO, a device or a hung file system
ACCEPT_PAUSE = 0.5  # after a failed accept() (EMFILE): stop watching the control socket this long
RESCAN = 0.1  # the loop looks at the cards out of their reader at least this often, even when busy
NO_STDIN = "stdin is not a terminal or pipe: control with --control SOCKET"
READ_SIZE = 2 + MAX_FRAME  # one read holds a whole vpcd frame
# How long a card's read may wait (SO_RCVTIMEO; Slot.readable): for the rest of a vpcd frame whose
# start it has (vpcd writes it at once, so this bounds only a stalled peer), and, for a card served
# alone, for the next command after an answer (Server.run). The other sockets - the control channel,
# `Server.call`, stdin - wait at most this long behind it.
READ_WAIT = 0.001
READ_WAIT_TIMEVAL = struct.pack("ll", 0, int(READ_WAIT * 1e6))  # a struct timeval


def _close_card(card) -> None:
    close = getattr(card, "close", None)  # release what the image layer holds (a lock), where it can
    if close is not None:
        try:
            close()
        except Exception:
            pass


class PendingOpen:
    """`Card.open(image)` in a daemon thread, so that an image that blocks (a FIFO with no writer,
    a hung file system) never blocks the server: the loop looks at `done` and gives up after
    `timeout` seconds (the thread is abandoned; a card it opens later is closed at once)."""

    def __init__(self, image: str, date=None, timeout: float | None = None):
        self.image = image
        self.timeout = timeout = OPEN_TIMEOUT if timeout is None else timeout
        self.deadline = time.monotonic() + timeout
        self.card = None
        self.exc = None
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._abandoned = False
        threading.Thread(target=self._open, args=(date,), name=f"open {image}", daemon=True).start()

    def _open(self, date) -> None:
        try:
            card = Card.open(self.image, date=date)
        except BaseException as exc:
            self.exc = exc
            card = None
        with self._lock:
            if self._abandoned:
                _close_card(card)
                card = None
            self.card = card
            self.done.set()

    def expired(self) -> bool:
        return not self.done.is_set() and time.monotonic() >= self.deadline

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            card, self.card = self.card, None
        _close_card(card)

    def error(self) -> str:
        """The one line for a failed or timed-out open."""
        if not self.done.is_set():
            return (f"{self.image}: not opened within {self.timeout:g} s (a FIFO, a device or a hung file system?)")
        exc = self.exc
        if isinstance(exc, ImageError):
            return str(exc)
        if isinstance(exc, OSError):
            return f"{self.image}: cannot read card image ({exc.strerror or exc})"
        return f"{self.image}: cannot open card image ({type(exc).__name__}: {exc})"

    def result(self) -> Card:
        """Wait for the card (at most the bound); raise the open's own error, or ImageError on timeout."""
        if not self.done.wait(max(0.0, self.deadline - time.monotonic())):
            self.abandon()
            raise ImageError(self.error())
        if self.exc is not None:
            raise self.exc
        return self.card


def open_card(image: str, date=None, timeout: float | None = None) -> Card:
    """`Card.open` with a bound: an image that does not open within `timeout` s is an ImageError."""
    return PendingOpen(image, date, timeout).result()


class CardSlot:
    """One served card and the reader it sits in: its image, whether it is inserted, `switch`.
    The reader is the subclass's (`Slot`: a vpcd connection; `CcidSlot`: the serial CCID reader):
    `connect()` puts the card in it, `disconnect(why)` takes it out, and the control channel's
    commands act on the slot whatever its reader."""

    def __init__(self, index: int, image: str, date=None, log=None):
        self.index = index
        self.image = image
        self.date = date
        self.log = log or (lambda text: None)
        self.card = open_card(image, date)
        self.closed = False  # the card gave its image up to have it reopened (`switch` to its own image)
        self.sock = None  # the socket the server watches for this slot's reader, while it has one
        self.inserted = True
        self.next_attempt = 0.0
        self.apdus = 0
        self.on_close = None  # called with the socket before it is closed (the server unregisters it)

    @property
    def in_reader(self) -> bool:
        """Whether the card is in its reader now."""
        raise NotImplementedError

    def connect(self) -> bool:
        """Put the card in its reader; True when `sock` is a new socket to watch."""
        raise NotImplementedError

    def disconnect(self, why: str) -> None:
        """Take the card out of its reader (its power goes with it), saying `why` in the log."""
        raise NotImplementedError

    def status(self) -> str:
        """The slot's line in `status`."""
        raise NotImplementedError

    def switch(self, image: str) -> None:
        """Switch at once (blocking; the server uses `Switch`, which opens off its loop). Another image
        that fails to open changes nothing; the card's own image is reopened, the card giving it up
        first (an image has one owner): should that fail, the slot is left removed."""
        inserted = self.inserted
        if self.holds(image):
            self.give_up()
        self.swap(open_card(image, self.date), image)
        self.inserted = inserted

    def holds(self, image: str) -> bool:
        """Whether `image` names this slot's own image (compared as paths: no file system call, which
        could hang; another spelling of it through a symlink gets ImageInUse from the open)."""
        return os.path.abspath(image) == os.path.abspath(self.image)

    def give_up(self) -> None:
        """Remove the card and close it (its image's lock released) so that its image can be opened
        again; the slot stays removed until a card is swapped in."""
        self.inserted = False
        self.disconnect("removed to reopen its image")
        _close_card(self.card)
        self.closed = True

    def swap(self, card: Card, image: str) -> None:
        self.disconnect("removed to switch images")
        old, self.card, self.image = self.card, card, image
        self.closed = False
        _close_card(old)


class Slot(CardSlot):
    """One card on one vpcd port: its connection, and whether it is inserted."""

    def __init__(self, index: int, image: str, host: str, port: int, protocol: int | None = None,
                 quickack: bool = True, date=None, log=None, on_apdu=None):
        self.host = host
        self.port = port
        self.requested_protocol = protocol  # 0, 1, or None: the card's own (followed across `switch`)
        self.quickack = quickack and TCP_QUICKACK != 0
        self.on_apdu = on_apdu
        self.on_power = None  # called with (slot, "on" | "reset" | "off") after a power change vpcd asked for
        super().__init__(index, image, date, log)
        self.vpcd = VpcdProtocol()
        self.backoff = BACKOFF_MIN

    @property
    def protocol(self) -> int:
        """What the card is told at power-on: the one asked for, else the card's own (no PPS on vpcd)."""
        if self.requested_protocol is not None:
            return self.requested_protocol
        config = self.card.atr_config
        return config.protocols[0] if config.specific is None else config.specific

    # -- connection ------------------------------------------------------------------------
    @property
    def in_reader(self) -> bool:
        return self.sock is not None

    def connect(self) -> bool:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=1.0)
        except OSError:
            self.next_attempt = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, READ_WAIT_TIMEVAL)
        if self.quickack:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
        sock.settimeout(None)
        self.sock = sock
        self.vpcd = VpcdProtocol()
        self.backoff = BACKOFF_MIN
        self.log(f"card {self.index} ({self.image}) inserted in vpcd {self.host}:{self.port}")
        return True

    def disconnect(self, why: str) -> None:
        if self.sock is not None:
            if self.on_close is not None:
                self.on_close(self.sock)
            try:
                self.sock.close()
            finally:
                self.sock = None
            self.card.power_off()
            self.log(f"card {self.index} {why}")
        self.next_attempt = time.monotonic() + self.backoff

    # -- traffic ----------------------------------------------------------------------------
    def readable(self) -> bool:
        """Read what vpcd sent and answer every complete message, one write per reply; False when
        nothing came within `READ_WAIT` (the read waited for a command that did not come).

        The exchange's fast path (bench/README.md, "serve against an echo card"): vpcd writes a
        frame's length and its payload separately, so a read often holds the length only. The
        payload follows at once (vpcd's second write, released by our ACK of the first), so it is
        read here, on the same socket, within `READ_WAIT` (SO_RCVTIMEO, set at `connect`), instead
        of in another turn of the server's loop; should it not come in that time, the loop's
        selector waits for it as for any read. An APDU then goes from the read to the card and back
        without an event object (`VpcdProtocol.take_apdu`)."""
        sock, vpcd = self.sock, self.vpcd
        read = False
        for _ in range(2):  # the read we were woken (or wait) for, and the rest of the frame it began
            try:
                data = sock.recv(READ_SIZE)
            except BlockingIOError:  # SO_RCVTIMEO: nothing (more) within READ_WAIT
                return read
            except OSError as exc:
                self.disconnect(f"lost its connection ({exc.strerror})")
                return True
            if not data:
                self.disconnect("disconnected: vpcd closed the connection (pcscd stopped?); reconnecting")
                return True
            read = True
            apdu = vpcd.take_apdu(data)
            if apdu is not None:
                self._reply(self.transmit(apdu))
                return True
            for event in vpcd.events():
                if not self._reply(self.handle(event)):
                    return True
            if not vpcd.pending:
                return True
        return read  # a frame still cut short (a long one, in many segments): the selector waits for the rest

    def _reply(self, reply: bytes | None) -> bool:
        """Send `reply` (None: no reply is due) in one write, and re-arm quick ACK; False when the
        connection is lost.

        Quick ACK (docs/pcsc.md, the 48 ms trap): vpcd holds a frame's payload until its length is
        acknowledged (Nagle), and the kernel delays that ACK by up to 40 ms once it sees the
        connection as interactive, which it does each time we send right after a read. Setting
        TCP_QUICKACK after the send takes it out of that mode, so that the read of the next length
        acknowledges it at once; nothing we do until then puts it back (only a send does)."""
        if reply is None:
            return True
        sock = self.sock
        try:
            sock.sendall(VpcdProtocol.send(reply))
            if self.quickack:
                sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
        except OSError as exc:
            self.disconnect(f"lost its connection ({exc.strerror})")
            return False
        return True

    def transmit(self, apdu: bytes) -> bytes | None:
        """The card's response to `apdu`; None for no answer at all (a mute fault, a card not powered).
        The clock is read only for an `on_apdu` hook (the bench view, --record): without one the
        exchange costs the card's own time and nothing more."""
        card = self.card
        if not card.powered:  # vpcd powers on first; be lenient if it did not
            card.power_on(self.protocol)
            self._powered("on")
        hook = self.on_apdu
        if hook is None:
            try:
                response = card.transmit(apdu)
            except (CardNotPowered, CardMute):  # a mute fault: no answer at all
                return None
            self.apdus += 1
            return response
        start = time.perf_counter()
        try:
            response = card.transmit(apdu)
        except (CardNotPowered, CardMute):
            return None
        self.apdus += 1
        hook(self, apdu, response, time.perf_counter() - start)
        return response

    def handle(self, event) -> bytes | None:
        """The reply to one vpcd event (None: none is due)."""
        card = self.card
        if isinstance(event, Apdu):
            return self.transmit(event.data)
        if isinstance(event, GetAtr):
            return card.atr
        if isinstance(event, PowerOn):
            card.power_on(self.protocol)
            self._powered("on")
        elif isinstance(event, Reset):
            card.reset(self.protocol)
            self._powered("reset")
        elif isinstance(event, PowerOff):
            card.power_off()
            self._powered("off")
        return None

    def _powered(self, what: str) -> None:
        if self.on_power is not None:
            self.on_power(self, what)

    def status(self) -> str:
        where = "inserted, connected" if self.sock else ("inserted, waiting for vpcd" if self.inserted else "removed")
        return f"card {self.index}: {self.image} on {self.host}:{self.port}, {where}, {self.apdus} APDUs"

class CcidReader:
    """The serial CCID reader of `reader.ccid` (docs/ccid.md) that serve's CCID cards sit in: the
    firmware of `variant` on a pty whose slave `link` names, which pcscd drives with libccidtwin;
    one for all its slots (the SEC1210's card slot and SAM slot), with the keypad of a reader that
    has one. The pty is there for the whole run (libccid probes serial readers only when pcscd
    starts)."""

    def __init__(self, link: str, variant: str = DEFAULT_VARIANT, realtime: bool = False):
        self.variant = variant
        self.keypad = Keypad() if variant in KEYPAD_READERS else None
        self.firmware = Firmware(None, self.keypad, variant)
        self.pty = PtyReader(link, self.firmware, variant, realtime=realtime)
        self.watchers: dict[int, Callable] = {}  # firmware slot -> the on_apdu of its card's CcidSlot
        self.cards: dict[int, CcidSlot] = {}  # firmware slot -> the CcidSlot of the card that goes there
        self.firmware.on_power = self._powered
        try:
            self.pty.open()
        except OSError as exc:
            self.pty.close()
            raise InputError(f"--ccid {link}: {exc.strerror or exc}") from None


    def watch(self, slot: "CcidSlot", hook) -> None:
        """Tell `hook(slot, apdu, response, seconds)` of every APDU the card in `slot` answers (None: stop);
        the firmware watches its cards only while someone does (the bench view), so a bench without one
        pays nothing."""
        if hook is None:
            self.watchers.pop(slot.number, None)
        else:
            self.watchers[slot.number] = hook
        self.firmware.on_apdu = self._seen if self.watchers else None

    def _powered(self, number: int, what: str) -> None:
        slot = self.cards.get(number)
        if slot is not None and slot.on_power is not None:
            slot.on_power(slot, what)

    def _seen(self, number: int, apdu: bytes, response: bytes, seconds: float) -> None:
        hook = self.watchers.get(number)
        if hook is not None:
            hook(self.cards[number], apdu, response, seconds)


class CcidSlot(CardSlot):
    """One card in slot `number` of a serial CCID reader (`CcidReader`) instead of on vpcd. The
    card goes in and out of the firmware's slot, and the firmware tells the driver
    (NotifySlotChange) and answers GetSlotStatus accordingly. The driver runs the protocol: the
    card powers up on its own."""

    def __init__(self, index: int, image: str, ccid: CcidReader, number: int = 0, date=None, log=None):
        super().__init__(index, image, date, log)
        self.ccid = ccid
        self.number = number
        self.on_power = None  # called with (slot, "on" | "off") when the driver powers the card up or down
        ccid.cards[number] = self

    @property
    def on_apdu(self):
        """Called with (slot, apdu, response, seconds) for each APDU the card answers, as on vpcd."""
        return self.ccid.watchers.get(self.number)

    @on_apdu.setter
    def on_apdu(self, hook) -> None:
        self.ccid.watch(self, hook)

    @property
    def reader(self) -> PtyReader:
        return self.ccid.pty

    @property
    def firmware(self) -> Firmware:
        return self.ccid.firmware

    @property
    def keypad(self) -> Keypad | None:
        return self.ccid.keypad

    @property
    def variant(self) -> str:
        return self.ccid.variant

    @property
    def link(self) -> str:
        return self.reader.link

    @property
    def where(self) -> str:
        """The reader, and the slot where it has more than one."""
        slot = f" slot {self.number}" if len(self.firmware.slots) > 1 else ""
        return f"the CCID reader {self.link}{slot}"

    @property
    def in_reader(self) -> bool:
        return self.firmware.slots[self.number].card is not None

    def connect(self) -> bool:
        self.firmware.insert(self.card, self.number)
        self.log(f"card {self.index} ({self.image}) inserted in {self.where}")
        return False  # the pty is watched all along

    def disconnect(self, why: str) -> None:
        if self.in_reader:
            self.firmware.remove(self.number)
            self.log(f"card {self.index} {why}")

    def readable(self) -> None:
        """Answer what the driver wrote on the pty."""
        if not self.reader.readable() and self.on_close is not None:
            self.on_close(self.reader)  # the pty failed: no busy loop on it

    def close(self) -> None:
        """Take the card out and remove the pty and its link (a second slot's close finds them gone)."""
        self.disconnect("stopped")
        self.reader.close()

    def status(self) -> str:
        if not self.in_reader:
            where = "removed"
        else:
            where = "inserted, powered" if self.card.powered else "inserted"
        reader = self.variant
        if len(self.firmware.slots) > 1:
            reader += f", slot {self.number}"
        if self.keypad is not None:
            waiting = len(self.keypad)
            reader += f", keypad: {waiting} {'entry' if waiting == 1 else 'entries'} waiting"
        return (f"card {self.index}: {self.image} in the CCID reader {self.link} ({reader}), {where}, "
                f"{self.reader.commands} CCID commands")

    def press(self, entry: str) -> str:
        """Queue one keypad entry (digits, CANCEL or TIMEOUT) for the next PC_to_RDR_Secure; the reply
        line says what was queued, never the digits (a PIN typed on the control channel stays off logs)."""
        if self.keypad is None:
            return f"error: card {self.index}'s reader ({self.variant}) has no keypad"
        try:
            self.keypad.press(entry)
        except ValueError:
            return f"error: a keypad entry is digits, {CANCEL} or {TIMEOUT}"
        entry = entry.strip().lower()
        queued = entry if entry in (CANCEL, TIMEOUT) else f"{len(entry)} digits"
        return f"ok card {self.index} keypad: {queued} queued"


class Switch:
    """A `switch [N] IMAGE` in progress: the image opens in a thread, the loop finishes it."""

    def __init__(self, slot: CardSlot, image: str, timeout: float | None = None):
        self.slot = slot
        self.image = image
        self.reopening = slot.holds(image)
        if self.reopening:  # its own image: the card gives it up first (one owner), then it is reopened
            slot.give_up()
        self.opening = PendingOpen(image, slot.date, timeout)
        self.text = None  # the reply, once finished

    def _left(self) -> str:
        """What the slot has after a switch that did not happen."""
        slot = self.slot
        if self.reopening:
            return f"card {slot.index} is removed (closed to reopen {slot.image}: switch {slot.index} IMAGE)"
        return f"card {slot.index} stays {slot.image}"

    def poll(self) -> bool:
        """Finish the switch if the image has opened, failed or timed out; True once finished."""
        if self.text is not None:
            return True
        opening, slot = self.opening, self.slot
        if opening.done.is_set() and opening.exc is None and opening.card is not None:
            slot.swap(opening.card, self.image)
            slot.inserted = True
            slot.next_attempt = time.monotonic() + SWAP_DELAY
            self.text = f"ok card {slot.index} is now {self.image}"
        elif opening.done.is_set() or opening.expired():
            if not opening.done.is_set():
                opening.abandon()
            self.text = f"error: {opening.error()}; {self._left()}"
        return self.text is not None

    def cancel(self) -> None:
        if self.text is None:
            self.opening.abandon()
            self.text = f"error: serve stopped before {self.image} opened; {self._left()}"


class _Line:
    """A control line waiting its turn (see Server._submit)."""

    def __init__(self, text: str):
        self.text = text


class _Caller:
    """Where the reply to a line from `Server.call` goes: its `reply` callable (a destination of
    `_send`, like a client socket)."""

    def __init__(self, reply):
        self.reply = reply

    def sendall(self, data: bytes) -> None:
        self.reply(data.decode().rstrip("\n"))


class Server:
    def __init__(self, slots: list[CardSlot], control_path: str | None = None, stdin=None, out=None, log=None):
        self.slots = slots
        self.control_path = control_path
        self.stdin = stdin
        self.out = out or sys.stdout
        self.log = log or (lambda text: None)
        self.stopping = False
        self.selector = selectors.DefaultSelector()
        self.control = None
        self.clients = {}
        self.outbox = []  # [destination, reply text or Switch], in order (None: stdout)
        self.switches = {}  # slot index -> its Switch in progress
        self.hanging_up = set()  # clients that closed their side while a reply was still due
        self.accept_failing = False
        self.control_paused_until = None  # the control socket is not watched until then (accept failed)
        self.on_command = None  # called with (line, reply) for every line run (reply: str or Switch)
        self.on_tick = None  # called at each turn of the loop
        self.connect_due = 0.0  # when the loop next looks at the cards out of their reader (_connect_cards)
        self.vpcd_only = all(isinstance(slot, Slot) for slot in slots)  # no CCID reader: its pty is watched too
        self.lone: Slot | None = None  # the card served alone on vpcd, if it is (_connect_cards)
        self.waiting: Slot | None = None  # the lone card, while its next command is awaited in its own read (run)
        self.poll_due = 0.0  # while `waiting`: when the loop next asks the selector (run)
        self.calls: collections.deque = collections.deque()  # (line, reply) from other threads (call)
        self._wake_read, self._wake_write = socket.socketpair()  # call() wakes the selector through it
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self.selector.register(self._wake_read, selectors.EVENT_READ, "call")
        for slot in slots:
            slot.on_close = self._closed
            if isinstance(slot, CcidSlot) and slot.reader not in self._watched():  # one pty for all its slots
                self.selector.register(slot.reader, selectors.EVENT_READ, slot)

    def stop(self, *_):
        self.stopping = True

    def call(self, line: str, reply) -> None:
        """Run control line `line` in the loop, from any thread; `reply(text)` gets its reply, in
        the loop's thread. Never blocks: the line waits in a deque, and one byte on a socket pair wakes
        the selector (a full one already holds a wake-up; a closed one: serve has stopped)."""
        self.calls.append((line, reply))
        try:
            self._wake_write.send(b"\0")
        except OSError:
            pass

    # -- control channel -------------------------------------------------------------------
    def command(self, line: str) -> str:
        words = line.split()
        if not words:
            return ""
        self.connect_due = 0.0  # insert, remove, switch...: the loop looks at the cards out of their reader
        verb, args = words[0].lower(), words[1:]
        try:
            if verb == "quit":
                self.stopping = True
                return "ok quit"
            if verb == "status":
                return self.status()
            if verb == "keypad":
                return self._keypad(args)
            index = 0
            if args and args[0].isdigit():
                index = int(args.pop(0))
            if not 0 <= index < len(self.slots):
                return f"error: no card {index} (cards 0-{len(self.slots) - 1})"
            slot = self.slots[index]
            if verb == "remove":
                slot.inserted = False
                slot.disconnect("removed")
                return f"ok removed card {index}"
            if verb == "insert":
                if slot.closed:  # a switch to its own image closed the card and could not reopen it
                    return f"error: card {index} was closed to reopen {slot.image}: switch {index} IMAGE"
                slot.inserted = True
                slot.next_attempt = 0.0
                return f"ok inserting card {index}"
            if verb == "switch":
                if len(args) != 1:
                    return "error: switch [N] IMAGE"
                if index in self.switches:
                    return f"error: card {index} is already switching to {self.switches[index].image}"
                switch = self.switches[index] = Switch(slot, args[0])  # opens off the loop: answered later
                return switch
            if verb == "fault":
                return self._fault(index, slot.card, args)
            if verb == "reset":
                return self._reset(index, slot)
            if verb == "date":
                return self._date(index, slot, args)
        except (ImageError, ValueError) as exc:
            return f"error: {exc}"
        return f"error: unknown command {verb!r} (remove, insert, reset, switch, fault, date, keypad, status, quit)"

    @staticmethod
    def _reset(index: int, slot: CardSlot) -> str:
        """`reset [N]`: a warm reset of the powered card (ISO/IEC 7816-3 §6.2.3): its volatile state
        goes and its applications' power-up rules run, as at any power-up (the SSSE's activation
        deadline, docs/card/lifecycle.md §2). The reader's client is not told: its next command
        meets the card at the MF."""
        if not slot.in_reader:
            return f"error: card {index} is not in its reader (insert {index})"
        card = slot.card
        if not card.powered:
            return f"error: card {index} is not powered (its reader powers it up when a client connects)"
        card.reset()
        warning = card.power_up_warning
        return f"ok card {index} reset, ATR {card.atr.hex(' ').upper()}" + (f"; {warning}" if warning else "")

    @staticmethod
    def _date(index: int, slot: CardSlot, args: list[str]) -> str:
        """`date [N] YYYY-MM-DD|today`: card N's simulated date (`today`: the host's), kept for an
        image switched in; rules tied to a power-up apply it at the next one. `date [N]`: the date."""
        if not args:
            return f"card {index}: date {slot.card.today} " + ("(simulated)" if slot.date else "(the host's today)")
        if len(args) != 1:
            return "error: date [N] YYYY-MM-DD|today"
        if args[0].lower() == "today":
            day = None
        else:
            try:
                day = datetime.date.fromisoformat(args[0])
            except ValueError:
                return f"error: not a date YYYY-MM-DD: {args[0]!r} (date [N] YYYY-MM-DD|today)"
            problem = date_problem(day)
            if problem:
                return f"error: {problem}"
        slot.date = day
        slot.card.set_date(day)
        return f"ok card {index} date {slot.card.today}" + (" (the host's today)" if day is None else "")

    def _keypad(self, args: list[str]) -> str:
        """`keypad [N] ENTRY`: one entry for card N's PIN pad (the index only before an entry, which
        is digits itself)."""
        if len(args) == 2 and args[0].isdigit():
            index, entry = int(args[0]), args[1]
        elif len(args) == 1:
            index, entry = 0, args[0]
        else:
            return f"error: keypad [N] DIGITS|{CANCEL}|{TIMEOUT}"
        if not 0 <= index < len(self.slots):
            return f"error: no card {index} (cards 0-{len(self.slots) - 1})"
        slot = self.slots[index]
        if not isinstance(slot, CcidSlot):
            return f"error: card {index} is on vpcd, which has no keypad"
        return slot.press(entry)

    def status(self) -> str:
        lines = []
        for slot in self.slots:
            line = slot.status()
            if slot.index in self.switches:
                line += f", switching to {self.switches[slot.index].image}"
            lines.append(line)
        if self.accept_failing:
            lines.append("control socket: not accepting connections (see the log)")
        return "\n".join(lines)

    @staticmethod
    def _fault(index: int, card: Card, args: list[str]) -> str:
        plan = card.faults
        if not args:
            faults = plan.faults if plan is not None else []
            return f"card {index}: " + ("; ".join(map(str, faults)) if faults else "no faults")
        if len(args) == 1 and args[0].lower() == "clear":
            card.faults = None
            return f"ok card {index}: faults cleared"
        fault = parse_fault(" ".join(args))
        if plan is None:
            card.faults = plan = FaultPlan()
        plan.add(fault)
        return f"ok card {index} fault {fault}"

    def open_control(self) -> None:
        """Listen on the control socket (a one-line InputError when that cannot be) and watch stdin."""
        if self.control_path and self.control is None:
            self.control = listen_control(self.control_path)
            self.selector.register(self.control, selectors.EVENT_READ, "control")
        if self.stdin is not None and self.stdin not in self._watched():
            self.selector.register(self.stdin, selectors.EVENT_READ, "stdin")

    def _watched(self):
        return [key.fileobj for key in self.selector.get_map().values()]

    def _submit(self, line: str, to=None) -> None:
        """Run a control line from `to` (None: stdin) and send its reply. Lines from one destination
        run and are answered in order: behind a `switch` still opening its image, the next lines
        wait (the other destinations and the cards do not)."""
        self.outbox.append([to, _Line(line)])
        self._flush()

    def _flush(self, final: bool = False) -> None:
        """Send what is ready, in order per destination; `final` (stopping): run no more lines."""
        blocked, kept = set(), []
        for entry in self.outbox:
            to, item = entry
            if id(to) in blocked:
                kept.append(entry)
                continue
            if isinstance(item, _Line):
                if final:
                    continue
                line = item.text
                item = entry[1] = self.command(line)
                if self.on_command is not None and item:
                    self.on_command(line, item)
                if not item:
                    continue
            if isinstance(item, Switch) and item.text is None:
                blocked.add(id(to))
                kept.append(entry)
                continue
            self._send(item.text if isinstance(item, Switch) else item, to)
        self.outbox = kept
        waiting = {id(entry[0]) for entry in kept}
        for client in [c for c in self.hanging_up if id(c) not in waiting]:  # their last reply is sent
            self._hang_up(client)

    def _send(self, text: str, to) -> None:
        if to is None:
            try:
                print(text, file=self.out, flush=True)
            except (OSError, ValueError):  # stdout gone (a daemon's closed terminal): keep serving
                pass
        else:
            try:
                to.sendall(text.encode() + b"\n")
            except OSError:
                pass

    def _poll_switches(self) -> None:
        finished = [index for index, switch in self.switches.items() if switch.poll()]
        for index in finished:
            del self.switches[index]
        if finished:
            self.connect_due = 0.0  # a switched card goes back in after SWAP_DELAY
            self._flush()

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until `stop` or `quit`. A turn of the loop is one selector wake-up; what it does
        besides the wake-up's own work is bounded and does not grow with the cards: the cards out of
        their reader are looked at only when due (`_connect_cards`), the paced readers are known from
        the start, and the hooks cost nothing when no bench view is attached.

        A card served alone on vpcd (`lone`) that has just answered waits for its next command in its
        own read, for at most `READ_WAIT`, once the selector (asked without waiting) has nothing else:
        woken by the command itself, the read acknowledges its length at once, which is what releases
        its payload from vpcd (see `Slot._reply`), where a wake-up of the selector would first return
        to the loop and then read. While it stays busy, its commands follow one another in its read
        and the rest of a turn - the selector asked without waiting, the switches, `on_tick` - comes
        once every `READ_WAIT` (`poll_due`), not after every exchange: the other sockets wait at most
        that long behind it. A card that has not been sent anything within `READ_WAIT` goes back to
        the selector's wait."""
        try:
            self.open_control()
            paced = self.paced_readers()
            select, dispatch = self.selector.select, self._dispatch
            while not self.stopping:
                now = time.monotonic()
                if now >= self.connect_due:
                    self._connect_cards(now)
                if self.control_paused_until is not None and now >= self.control_paused_until:
                    self.control_paused_until = None
                    self.selector.register(self.control, selectors.EVENT_READ, "control")
                waiting = self.waiting
                if waiting is not None and now < self.poll_due:  # a lone card busy: straight to its read
                    if waiting.sock is not None and waiting.readable():
                        continue
                    self.waiting = waiting = None
                self.poll_due = now + READ_WAIT
                timeout = 0.02 if self.switches else 0.1
                for reader in paced:  # --realtime: an answer due sooner than the next round
                    due = reader.next_due()
                    if due is not None:
                        timeout = min(timeout, due)
                events = select(timeout=0.0 if waiting is not None else timeout)
                for key, _ in events:
                    dispatch(key)
                if not events:
                    if waiting is None or waiting.sock is None or not waiting.readable():
                        self.waiting = None
                        self.connect_due = 0.0  # an idle turn: look at the cards out of their reader
                for reader in paced:
                    reader.tick()
                if self.switches:
                    self._poll_switches()
                if self.on_tick is not None:
                    self.on_tick()
        finally:
            self.close()

    def _connect_cards(self, now: float) -> None:
        """Put every inserted card that is out of its reader back in, when its backoff allows; then
        say when to look again: at the earliest backoff still running, and within `RESCAN` anyway.
        Whatever may take a card out or put one back (a control line, a finished switch, a lost
        connection) asks for a look at once (`connect_due = 0`). Also finds the card served alone."""
        due = now + RESCAN
        for slot in self.slots:
            if slot.inserted and not slot.in_reader:
                if now >= slot.next_attempt:
                    if slot.connect():
                        self.selector.register(slot.sock, selectors.EVENT_READ, slot)
                        continue
                due = min(due, slot.next_attempt)
        self.connect_due = due
        connected = [slot for slot in self.slots if slot.in_reader]
        lone = connected[0] if len(connected) == 1 and self.vpcd_only else None
        self.lone = lone if isinstance(lone, Slot) else None
        if self.waiting is not self.lone:  # another card came in: no card waits in its own read any more
            self.waiting = None

    def paced_readers(self) -> list[PtyReader]:
        """The CCID readers whose answers keep a real card's pace (`--realtime`), each once."""
        readers = {id(slot.reader): slot.reader for slot in self.slots
                   if isinstance(slot, CcidSlot) and slot.reader.realtime}
        return list(readers.values())

    def _dispatch(self, key) -> None:
        data = key.data
        if isinstance(data, Slot):
            if data.sock is key.fileobj and data.readable() and data is self.lone:
                self.waiting = data  # it answered: its next command is awaited in its own read (run)
        elif isinstance(data, CcidSlot):
            data.readable()
        elif data == "control":
            self._accept()
        elif data == "client":
            self._client_readable(key.fileobj)
        elif data == "call":
            self._calls()
        elif data == "stdin":
            line = self.stdin.readline()
            if not line:  # stdin closed: stop listening to it, keep serving
                self.selector.unregister(self.stdin)
                return
            self._submit(line)

    def _calls(self) -> None:
        """Run the lines other threads handed over (`call`), each answered to its own reply."""
        try:
            while self._wake_read.recv(4096):
                pass
        except BlockingIOError:
            pass
        while self.calls:
            line, reply = self.calls.popleft()
            self._submit(line, to=_Caller(reply))

    def _accept(self) -> None:
        try:
            client, _ = self.control.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EMFILE, ENFILE, ENOBUFS...: the cards go on; the connection waits in the backlog
            if not self.accept_failing:
                self.accept_failing = True
                self.log(f"control socket {self.control_path}: cannot accept a connection "
                         f"({exc.strerror or exc}); still serving, retrying every {ACCEPT_PAUSE:g} s")
            self._unregister(self.control)  # no busy loop on a socket that stays readable
            self.control_paused_until = time.monotonic() + ACCEPT_PAUSE
            return
        if self.accept_failing:
            self.accept_failing = False
            self.log(f"control socket {self.control_path}: accepting connections again")
        client.setblocking(False)
        self.clients[client] = b""
        self.selector.register(client, selectors.EVENT_READ, "client")

    def _client_readable(self, client) -> None:
        try:
            chunk = client.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:  # the client is done sending; it still gets the replies it is owed
            self._unregister(client)
            if any(entry[0] is client for entry in self.outbox):
                self.hanging_up.add(client)
            else:
                self._hang_up(client)
            return
        buffered = self.clients[client] + chunk
        *lines, rest = buffered.split(b"\n")
        self.clients[client] = rest
        for line in lines:
            self._submit(line.decode(errors="replace"), to=client)

    def _hang_up(self, client) -> None:
        self.hanging_up.discard(client)
        self.clients.pop(client, None)
        self.outbox = [entry for entry in self.outbox if entry[0] is not client]
        client.close()

    def _closed(self, sock) -> None:
        """A card's reader connection is going (`CardSlot.on_close`): stop watching it, and look at the
        cards out of their reader at the next turn (it reconnects after its backoff)."""
        self._unregister(sock)
        self.connect_due = 0.0

    def _unregister(self, sock) -> None:
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    def close(self) -> None:
        for switch in self.switches.values():
            switch.cancel()
        self.switches.clear()
        self._flush(final=True)
        for slot in self.slots:
            if isinstance(slot, CcidSlot):
                self._unregister(slot.reader)
                slot.close()
            else:
                slot.disconnect("stopped")
            slot.on_close = None
        for client in list(self.clients):
            client.close()
        if self.control is not None:
            self.control.close()
            try:
                os.unlink(self.control_path)
            except FileNotFoundError:
                pass
            self.control = None
        self.selector.close()
        self._wake_read.close()
        self._wake_write.close()


def listen_control(path: str) -> socket.socket:
    """The control socket, listening; an InputError (one line) when it cannot be: a missing or
    unwritable folder, a path too long, a file there that is not a socket, another serve on it."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise InputError(f"--control {path}: {exc.strerror}") from None
    if mode is not None:
        if not stat.S_ISSOCK(mode):
            raise InputError(f"--control {path}: exists and is not a socket (not replacing it)")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                pass  # a socket nobody listens on: left by a serve that was killed
            else:
                raise InputError(f"--control {path}: another process listens there")
        try:
            os.unlink(path)
        except OSError as exc:
            raise InputError(f"--control {path}: cannot replace the old socket ({exc.strerror})") from None
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        control.bind(path)
        control.listen(16)
    except OSError as exc:
        control.close()
        folder = os.path.dirname(os.path.abspath(path))
        if exc.errno == errno.ENOENT and not os.path.isdir(folder):
            raise InputError(f"--control {path}: no such folder {folder}") from None
        raise InputError(f"--control {path}: cannot listen there ({exc.strerror or exc})") from None
    control.setblocking(False)
    return control


def stdin_pollable(stdin) -> bool:
    """Whether the loop can watch `stdin`: a terminal, a pipe or a socket can; /dev/null and a regular
    file (what `nohup`, `&` in a script or `< file` give) cannot (epoll refuses them)."""
    if stdin is None:
        return False
    try:
        with selectors.DefaultSelector() as probe:
            probe.register(stdin, selectors.EVENT_READ)
    except (OSError, ValueError):
        return False
    return True


def check_ports(ports: list[int], count: int) -> list[int]:
    """One vpcd port per card (missing ones count up from the last given); an InputError outside 1-65535."""
    ports = list(ports) or [DEFAULT_PORT]
    for port in ports:
        if not 1 <= port <= 65535:
            raise InputError(f"--port {port}: not a TCP port (1-65535)")
    while len(ports) < count:
        ports.append(ports[-1] + 1)
    if ports[-1] > 65535:
        raise InputError(f"--port: {count} cards need vpcd ports up to {ports[-1]}, past 65535")
    return ports


def serve(images: list[str], ports: list[int], host: str = "127.0.0.1", control: str | None = None,
          protocol: int | None = None, quickack: bool = True, date=None, use_stdin: bool = True, log=None,
          on_apdu=None, ccid: str | None = None, ccid_variant: str = DEFAULT_VARIANT, out=None,
          psam: str | None = None, web=None, realtime: bool = False) -> int:
    """Serve every image on its port until SIGINT/SIGTERM or `quit`; `protocol` 0/1 forces T=0/T=1
    behaviour, None (default) gives each card its own. With `ccid` (a LINK) the first image is in
    the serial CCID reader on a pty instead (`CcidSlot`; the driver picks its protocol), whose
    reader.conf entry and pcscd command are printed on `out`; the others stay on vpcd. `psam` (an
    image) goes into that reader's slot 1, the SEC1210's SAM slot, as card 1; the vpcd cards then
    count from 2; `realtime`: that reader answers at a real card's pace (reader/ccid/pace.py). `web`
    (the bench view, a reader.web.bench.Bench) is attached to the server before its loop runs - its
    address taken then, so that one it cannot have stops serve before any card is served - its URL
    printed on `out`, and closed when the loop ends."""
    on_ccid = 1 if ccid else 0
    ports = check_ports(list(ports), len(images) - on_ccid)
    log = log or (lambda text: print(f"sscard serve: {text}", file=sys.stderr, flush=True))
    stdin = sys.stdin if use_stdin else None
    if use_stdin and not stdin_pollable(stdin):
        log(NO_STDIN + (f" (here: {control})" if control else ""))
        stdin = None
    slots: list[CardSlot] = []
    reader = None
    try:
        if ccid:
            reader = CcidReader(ccid, ccid_variant, realtime=realtime)
            slots.append(CcidSlot(0, images[0], reader, 0, date, log))
            if psam:
                slots.append(CcidSlot(1, psam, reader, 1, date, log))
        for i, (image, port) in enumerate(zip(images[on_ccid:], ports), start=len(slots)):
            slots.append(Slot(i, image, host, port, protocol, quickack, date, log, on_apdu))
        server = Server(slots, control, stdin, out=out, log=log)
        if web is not None:
            web.attach(server)
        server.open_control()
    except BaseException:
        if web is not None:
            web.close()
        if reader is not None:
            reader.pty.close()
        for slot in slots:
            _close_card(slot.card)
        raise
    previous = {sig: signal.signal(sig, server.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    channels = " and ".join((["stdin"] if stdin is not None else []) + ([control] if control else []))
    for slot in slots:
        keypad = ""
        if isinstance(slot, CcidSlot):
            if slot.number == 0:  # the reader's entry, once
                print(ccid_instructions(slot.link, slot.variant), end="", file=server.out, flush=True)
            where = f"in {slot.where}"
            keypad = "keypad, " if slot.keypad is not None else ""
        elif isinstance(slot, Slot):
            where = f"on vpcd {host}:{slot.port}"
        log(f"serving {slot.image} {where} "
            + (f"(commands on {channels}: remove, insert, reset, switch IMAGE, fault, date, {keypad}status, quit)"
               if channels else "(no control channel; SIGTERM or SIGINT stops it)"))
    if web is not None:
        log(f"the bench view on {web.url.split('?')[0]} (its controls need the token of the URL below)")
        print(f"bench view: {web.url}", file=server.out, flush=True)
    try:
        server.run()
    finally:
        if web is not None:
            web.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def ccid_instructions(link: str, variant: str) -> str:
    """The reader.conf entry for the CCID reader at `link` (pcsc-lite's reader.conf(5)), and how to
    start pcscd with it, as comment lines (so that the whole text is a valid reader.conf)."""
    return (stanza(link, variant)
            + f"# pcscd reads this entry with --config FILE (libccid probes the reader only when pcscd starts);\n"
            f"# or a private pcscd for one command: python -m reader.pcsc.pcscd run --ccid {link}:{variant} -- COMMAND\n")


class ServedProcess:
    """`sscard serve` in a child process, for tests and fixtures: start, control, reach, stop.

    With the default vpcd configuration port 35963 is the reader `Virtual PCD 00 00`
    and 35964 `Virtual PCD 00 01`. It runs only inside the private namespaces of
    `python -m reader.pcsc.pcscd run` (`make test`, `make bench`): on the machine's own pcscd the
    reader names and ports are those of the user's cards (`make serve`), and a test would
    send its APDUs to them. `machine_pcscd=True` lifts that guard.
    """

    VPCD_READERS = {35963: "Virtual PCD 00 00", 35964: "Virtual PCD 00 01"}

    def __init__(self, images: list[str], ports=(DEFAULT_PORT,), control: str | None = None, extra=(),
                 machine_pcscd: bool = False):
        import subprocess
        import tempfile

        from reader.pcsc.pcscd import private

        if not machine_pcscd and not private():
            raise RuntimeError("ServedProcess serves on vpcd only inside `python -m reader.pcsc.pcscd run -- ...` (a private "
                               "pcscd in private namespaces): here it would reach the machine's pcscd and its cards")

        self.images = list(images)
        self.ports = list(ports) + [ports[-1] + i for i in range(1, len(images) - len(ports) + 1)]
        self.control = control or os.path.join(tempfile.mkdtemp(prefix="sscard-"), "control.sock")
        argv = [sys.executable, "-m", "reader.cli", "serve", "--no-stdin", "--control", self.control]
        for image in self.images:
            argv += ["--state", image]
        for port in self.ports[:len(self.images)]:
            argv += ["--port", str(port)]
        self.process = subprocess.Popen(argv + list(extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.control):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"sscard serve did not start: {self.process.stderr.read().strip()}")
            time.sleep(0.02)
        for index in range(len(self.images)):  # pcscd has seen every card go in
            wait_for_card(self.reader_name(index), present=True, timeout=5)

    def reader_name(self, index: int = 0) -> str:
        return self.VPCD_READERS[self.ports[index]]

    def reader(self, index: int = 0, **kw):
        from reader.pcsc.reader import PcscReader

        return PcscReader(self.reader_name(index), **{"connect_timeout": 10, **kw})

    def command(self, line: str) -> str:
        return control(self.control, line)

    def stop(self, sig=signal.SIGTERM) -> int:
        """Stop it and wait until pcscd has seen each card leave (so the next card starts clean)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=10)
        for index in range(len(self.images)):
            wait_for_card(self.reader_name(index), present=False)
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def wait_for_card(name: str, present: bool, timeout: float = 3.0) -> bool:
    """Wait until pcscd reports a card in reader `name` (or none); False on timeout."""
    from smartcard import scard

    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return False
    try:
        states = [(name, scard.SCARD_STATE_UNAWARE)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hresult, states = scard.SCardGetStatusChange(context, 100, states)
            if hresult == scard.SCARD_S_SUCCESS:
                if bool(states[0][1] & scard.SCARD_STATE_PRESENT) == present:
                    return True
            elif hresult != scard.SCARD_E_TIMEOUT:
                return False
            states = [(n, e & ~scard.SCARD_STATE_CHANGED) for n, e, *_ in states]
        return False
    finally:
        scard.SCardReleaseContext(context)


def control(path: str, line: str) -> str:
    """Send one command line to a serve's control socket `path`; its one-line reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode().strip()
