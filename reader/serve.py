"""`sscard serve`: cards on vsmartcard's vpcd, so pcscd shows each as a reader.

A thin socket adapter around the sans-I/O `reader.vpcd.VpcdProtocol`. vpcd
listens and the card connects (one TCP port per virtual reader). One thread
runs a selector over every card's socket and the control channels:

- the 48 ms trap (../shared/PCSC.md): `TCP_NODELAY`, `TCP_QUICKACK` re-armed
  before every `recv()`, and each reply sent in one write;
- ATR requests are answered from the card's ATR without touching its state;
  power on/off and reset map to the card's power model, on the card's own
  protocol (the first its ATR offers: T=0 on the default card, whose 61xx
  and 6Cxx answers reach the PC/SC client as they do from a real T=0 card)
  unless `--t0`/`--t1` says otherwise;
- when pcscd goes away the card reconnects with backoff;
- control lines (on stdin and on an optional Unix control socket):
  `remove [N]`, `insert [N]`, `switch [N] IMAGE`, `status`, `quit`, and
  `fault [N] TEXT` / `fault [N] clear` / `fault [N]` to inject, clear or list
  faults on a card (the text form of `chip.faults.parse_fault`, e.g.
  `fault sw 6581 ins B2 once`; a `mute` fault sends no reply; `switch` drops
  the faults with the old card);
- SIGINT/SIGTERM end the loop between two commands: a command in progress
  finishes and its state is committed (commits are atomic anyway).
"""

import os
import selectors
import signal
import socket
import sys
import time

from chip import Card, CardNotPowered, ImageError
from chip.faults import CardMute, FaultPlan, parse_fault

from .vpcd import Apdu, GetAtr, PowerOff, PowerOn, Reset, VpcdProtocol

DEFAULT_PORT = 35963
BACKOFF_MIN, BACKOFF_MAX = 0.05, 2.0
SWAP_DELAY = 0.6  # a switched card stays out long enough for pcscd (polling every 0.4 s) to see a new card
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class Slot:
    """One card on one vpcd port: its connection, and whether it is inserted."""

    def __init__(self, index: int, image: str, host: str, port: int, protocol: int | None = None,
                 quickack: bool = True, date=None, log=None, on_apdu=None):
        self.index = index
        self.image = image
        self.host = host
        self.port = port
        self.requested_protocol = protocol  # 0, 1, or None: the card's own (followed across `switch`)
        self.quickack = quickack and TCP_QUICKACK is not None
        self.date = date
        self.log = log or (lambda text: None)
        self.on_apdu = on_apdu
        self.card = Card.open(image, date=date)
        self.sock = None
        self.vpcd = VpcdProtocol()
        self.inserted = True
        self.backoff = BACKOFF_MIN
        self.next_attempt = 0.0
        self.apdus = 0
        self.on_close = None  # called with the socket before it is closed (the server unregisters it)

    @property
    def protocol(self) -> int:
        """What the card is told at power-on: the one asked for, else the card's own (no PPS on vpcd)."""
        if self.requested_protocol is not None:
            return self.requested_protocol
        config = self.card.atr_config
        return config.protocols[0] if config.specific is None else config.specific

    # -- connection ------------------------------------------------------------------------
    def connect(self) -> bool:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=1.0)
        except OSError:
            self.next_attempt = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
    def readable(self) -> None:
        """Read what vpcd sent, answer every complete message, one write per reply."""
        sock = self.sock
        if self.quickack:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
        try:
            data = sock.recv(65538)
        except OSError as exc:
            self.disconnect(f"lost its connection ({exc.strerror})")
            return
        if not data:
            self.disconnect("disconnected: vpcd closed the connection (pcscd stopped?); reconnecting")
            return
        self.vpcd.receive_data(data)
        for event in self.vpcd.events():
            reply = self.handle(event)
            if reply is not None:
                try:
                    sock.sendall(VpcdProtocol.send(reply))
                except OSError as exc:
                    self.disconnect(f"lost its connection ({exc.strerror})")
                    return

    def handle(self, event) -> bytes | None:
        card = self.card
        if isinstance(event, Apdu):
            if not card.powered:  # vpcd powers on first; be lenient if it did not
                card.power_on(self.protocol)
            start = time.perf_counter()
            try:
                response = card.transmit(event.data)
            except (CardNotPowered, CardMute):  # a mute fault: no answer at all
                return None
            self.apdus += 1
            if self.on_apdu is not None:
                self.on_apdu(self, event.data, response, time.perf_counter() - start)
            return response
        if isinstance(event, GetAtr):
            return card.atr
        if isinstance(event, PowerOn):
            card.power_on(self.protocol)
        elif isinstance(event, Reset):
            card.reset(self.protocol)
        elif isinstance(event, PowerOff):
            card.power_off()
        return None

    def switch(self, image: str) -> None:
        card = Card.open(image, date=self.date)  # fails before anything changes
        self.disconnect("removed to switch images")
        self.card, self.image = card, image

    def status(self) -> str:
        where = "inserted, connected" if self.sock else ("inserted, waiting for vpcd" if self.inserted else "removed")
        return f"card {self.index}: {self.image} on {self.host}:{self.port}, {where}, {self.apdus} APDUs"


class Server:
    def __init__(self, slots: list[Slot], control_path: str | None = None, stdin=None, out=None, log=None):
        self.slots = slots
        self.control_path = control_path
        self.stdin = stdin
        self.out = out or sys.stdout
        self.log = log or (lambda text: None)
        self.stopping = False
        self.selector = selectors.DefaultSelector()
        self.control = None
        self.clients = {}
        for slot in slots:
            slot.on_close = self._unregister

    def stop(self, *_):
        self.stopping = True

    # -- control channel -------------------------------------------------------------------
    def command(self, line: str) -> str:
        words = line.split()
        if not words:
            return ""
        verb, args = words[0].lower(), words[1:]
        try:
            if verb == "quit":
                self.stopping = True
                return "ok quit"
            if verb == "status":
                return "\n".join(slot.status() for slot in self.slots)
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
                slot.inserted = True
                slot.next_attempt = 0.0
                return f"ok inserting card {index}"
            if verb == "switch":
                if len(args) != 1:
                    return "error: switch [N] IMAGE"
                slot.switch(args[0])
                slot.inserted = True
                slot.next_attempt = time.monotonic() + SWAP_DELAY
                return f"ok card {index} is now {args[0]}"
            if verb == "fault":
                return self._fault(index, slot.card, args)
        except (ImageError, ValueError) as exc:
            return f"error: {exc}"
        return f"error: unknown command {verb!r} (remove, insert, switch, fault, status, quit)"

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

    def _open_control(self) -> None:
        if self.control_path:
            try:
                os.unlink(self.control_path)
            except FileNotFoundError:
                pass
            self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.control.bind(self.control_path)
            self.control.listen(4)
            self.control.setblocking(False)
            self.selector.register(self.control, selectors.EVENT_READ, "control")
        if self.stdin is not None:
            self.selector.register(self.stdin, selectors.EVENT_READ, "stdin")

    def _reply(self, text: str, to=None) -> None:
        if not text:
            return
        if to is None:
            print(text, file=self.out, flush=True)
        else:
            try:
                to.sendall(text.encode() + b"\n")
            except OSError:
                pass

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        self._open_control()
        try:
            while not self.stopping:
                now = time.monotonic()
                for slot in self.slots:
                    if slot.inserted and slot.sock is None and now >= slot.next_attempt:
                        if slot.connect():
                            self.selector.register(slot.sock, selectors.EVENT_READ, slot)
                for key, _ in self.selector.select(timeout=0.1):
                    self._dispatch(key)
        finally:
            self.close()

    def _dispatch(self, key) -> None:
        data = key.data
        if isinstance(data, Slot):
            if data.sock is key.fileobj:
                data.readable()
        elif data == "control":
            client, _ = self.control.accept()
            client.setblocking(False)
            self.clients[client] = b""
            self.selector.register(client, selectors.EVENT_READ, "client")
        elif data == "client":
            self._client_readable(key.fileobj)
        elif data == "stdin":
            line = self.stdin.readline()
            if not line:  # stdin closed: stop listening to it, keep serving
                self.selector.unregister(self.stdin)
                return
            self._reply(self.command(line))

    def _client_readable(self, client) -> None:
        try:
            chunk = client.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            self.selector.unregister(client)
            self.clients.pop(client, None)
            client.close()
            return
        buffered = self.clients[client] + chunk
        *lines, rest = buffered.split(b"\n")
        self.clients[client] = rest
        for line in lines:
            self._reply(self.command(line.decode(errors="replace")), to=client)

    def _unregister(self, sock) -> None:
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    def close(self) -> None:
        for slot in self.slots:
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
        self.selector.close()


def serve(images: list[str], ports: list[int], host: str = "127.0.0.1", control: str | None = None,
          protocol: int | None = None, quickack: bool = True, date=None, use_stdin: bool = True, log=None,
          on_apdu=None) -> int:
    """Serve every image on its port until SIGINT/SIGTERM or `quit`; `protocol` 0/1 forces T=0/T=1
    behaviour, None (default) gives each card its own."""
    if not ports:
        ports = [DEFAULT_PORT]
    while len(ports) < len(images):
        ports.append(ports[-1] + 1)
    log = log or (lambda text: print(f"sscard serve: {text}", file=sys.stderr, flush=True))
    slots = [Slot(i, image, host, port, protocol, quickack, date, log, on_apdu)
             for i, (image, port) in enumerate(zip(images, ports))]
    server = Server(slots, control, sys.stdin if use_stdin else None, log=log)
    previous = {sig: signal.signal(sig, server.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    for slot in slots:
        log(f"serving {slot.image} on vpcd {host}:{slot.port} (commands on stdin"
            + (f" and {control}" if control else "") + ": remove, insert, switch IMAGE, fault, status, quit)")
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


class ServedProcess:
    """`sscard serve` in a child process, for tests and fixtures: start, control, reach, stop.

    With the default vpcd configuration port 35963 is the reader `Virtual PCD 00 00`
    and 35964 `Virtual PCD 00 01`.
    """

    VPCD_READERS = {35963: "Virtual PCD 00 00", 35964: "Virtual PCD 00 01"}

    def __init__(self, images: list[str], ports=(DEFAULT_PORT,), control: str | None = None, extra=()):
        import subprocess
        import tempfile

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
        from .pcsc import PcscReader

        return PcscReader(self.reader_name(index), **{"connect_timeout": 10, **kw})

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.control)
            s.sendall(line.encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return reply.decode().strip()

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
