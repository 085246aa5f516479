"""`sscard serve` as a daemon and at its edges.

- started with no terminal - stdin from /dev/null, a regular file, `nohup`, `&` in a script - it
  serves: a stdin the loop cannot poll is no control input, said once on stderr; a closed pipe
  is still read until it closes, as before;
- `--port` outside 1-65535 and a `--control` or `--record` file that cannot be made are one line and
  exit status 2 (no retrying forever, no traceback, no file deleted to make room for a socket);
- the control socket failing to accept (EMFILE) is logged once, and the cards are still served;
- `switch N FIFO` does not block the server: the image opens off the loop, with a bound, and the
  error comes back on the control channel.

The tests marked `pcsc` read the served card through pcscd (the private one of `make test`, see
test_isolation.py); the others need no PC/SC.
"""

import os
import pty
import resource
import signal
import socket
import subprocess
import sys
import time

import helpers
import pytest
from helpers import EF05, SELECT_SSSE, free_port

from chip import Card
from reader.pcsc.serve import NO_STDIN, OPEN_TIMEOUT
from reader.traces.pytest_plugin import require_pcsc

READER = "Virtual PCD 00 00"
SELECT = SELECT_SSSE
FCI = helpers.FCI["sm4"]
EF05_07 = EF05[0x07]
SERVE = [sys.executable, "-m", "reader.cli", "serve"]


@pytest.fixture
def image(tmp_path):
    path = str(tmp_path / "card.img")
    Card.from_profile(state=path)
    return path


@pytest.fixture(scope="module")
def pcsc():
    require_pcsc("PC/SC")


class Serve:
    """`sscard serve` started the way a daemon is, its stderr in a file."""

    def __init__(self, tmp_path, argv, stdin=subprocess.DEVNULL, control=True, shell=None):
        self.err_path = tmp_path / "serve.err"
        self.control = str(tmp_path / "ctl.sock") if control else None
        argv = list(argv) + (["--control", self.control] if control else [])
        with open(self.err_path, "wb") as err, open(tmp_path / "serve.out", "wb") as out:
            if shell is not None:  # `&` in a script: the shell prints the background PID and exits
                script = subprocess.run(["sh", "-c", shell + ' "$@" >/dev/null & echo $!', "sh"] + argv, stdin=stdin,
                                        stdout=subprocess.PIPE, stderr=err, timeout=10, check=True)
                self.process, self.pid = None, int(script.stdout.decode().split()[-1])
            else:
                self.process = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err)
                self.pid = self.process.pid
        if control:
            self.wait_for(lambda: os.path.exists(self.control), "its control socket")

    def wait_for(self, condition, what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.alive(), f"sscard serve died before {what}: {self.stderr()}"
            assert time.monotonic() < deadline, f"no {what} after {timeout} s: {self.stderr()}"
            time.sleep(0.02)

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().split(") ")[-1][:1] not in ("Z", "X")
        except OSError:
            return False

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def command(self, line: str, timeout: float = 5) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.control)
            s.sendall(line.encode() + b"\n")
            return read_line(s)

    def stop(self) -> None:
        """SIGTERM; for a served card, until pcscd has seen it leave (the next test starts clean)."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=5)


def read_line(s) -> str:
    return read_lines(s, 1)[0]


def read_lines(s, n: int) -> list[str]:
    reply = b""
    while reply.count(b"\n") < n:
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
    return reply.decode().splitlines()


@pytest.fixture
def started():
    servers = []
    yield servers.append
    for server in servers:
        server.stop()


def read_card() -> str:
    """SELECT the SSSE and read EF05 07 through pcscd, as any PC/SC application would."""
    from reader.pcsc.reader import PcscReader

    reader = PcscReader(READER, connect_timeout=10)
    try:
        reader.reset()
        assert reader.transmit(bytes.fromhex(SELECT)).hex().upper() == FCI + "9000"
        return reader.transmit(bytes.fromhex("00B2072C0B")).hex().upper()
    finally:
        reader.close()


def card_gone() -> None:
    from reader.pcsc.serve import wait_for_card

    wait_for_card(READER, present=False)


# -- without a terminal ----------------------------------------------------------------------------------

def stdin_of(kind: str, tmp_path):
    """What a daemon's stdin is: /dev/null, a regular file (`< file`, here one full of commands that
    must not be obeyed), the write-only /dev/null `nohup` gives when started from a terminal."""
    if kind == "regular-file":
        path = tmp_path / "commands.txt"
        path.write_text("quit\nremove\n")
        return open(path, "rb")
    return open(os.devnull, "rb")


@pytest.mark.parametrize("kind", ["dev-null", "regular-file"])
def test_no_terminal_stdin_is_no_control_input(tmp_path, image, started, kind):
    with stdin_of(kind, tmp_path) as stdin:
        server = Serve(tmp_path, SERVE + ["--state", image, "--port", str(free_port())], stdin=stdin)
    started(server)
    assert server.command("status").startswith(f"card 0: {image} on 127.0.0.1:")  # still there, and inserted
    assert "inserted" in server.command("status") and server.alive()
    time.sleep(0.3)
    assert server.alive()
    err = server.stderr()
    assert err.count(NO_STDIN) == 1, err
    assert "Traceback" not in err and "PermissionError" not in err
    server.stop()
    assert server.process.returncode == 0, server.stderr()


def test_a_closed_pipe_is_read_until_it_closes(tmp_path, image, started):
    server = Serve(tmp_path, SERVE + ["--state", image, "--port", str(free_port())], stdin=subprocess.PIPE)
    started(server)
    server.process.stdin.write(b"remove\n")
    server.process.stdin.flush()
    server.wait_for(lambda: "ok removed card 0" in (tmp_path / "serve.out").read_text(), "the stdin reply")
    server.process.stdin.close()  # stdin closed: no more control input there, the card is still served
    time.sleep(0.3)
    assert server.alive() and "removed" in server.command("status")
    assert NO_STDIN not in server.stderr()


@pytest.mark.parametrize("how", ["dev-null", "regular-file", "nohup", "script-ampersand"])
def test_a_daemon_serves_a_pcsc_client(pcsc, tmp_path, image, started, how):
    """`sscard serve --state card.img </dev/null &` (and the other ways a daemon starts) puts the card
    in the reader: pyscard reads it and pcsc_scan sees it."""
    argv = SERVE + ["--state", image]
    if how == "nohup":  # from a terminal: nohup swaps stdin for an unreadable /dev/null
        master, slave = pty.openpty()
        try:
            server = Serve(tmp_path, ["nohup"] + argv, stdin=slave, control=False)
        finally:
            os.close(slave)
    elif how == "script-ampersand":  # a script's `cmd &`: no job control, stdin is /dev/null
        server = Serve(tmp_path, argv, stdin=subprocess.PIPE, control=False, shell="")
    else:
        with stdin_of(how, tmp_path) as stdin:
            server = Serve(tmp_path, argv, stdin=stdin, control=False)
    started(server)
    server.wait_for(lambda: "inserted in vpcd" in server.stderr(), "the card in vpcd")
    assert read_card() == EF05_07 + "9000"
    scan = subprocess.run(["pcsc_scan", "-c", "-t", "1"], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=20)
    assert "ATR: 3B 6D 00 00 00 81 53 53 43 86 99 11 01 00 00 00 01" in scan.stdout, scan.stdout
    assert server.alive()
    assert server.stderr().count(NO_STDIN) == 1, server.stderr()
    server.stop()
    if how == "nohup":
        os.close(master)
    card_gone()


# -- bad arguments: one line, exit 2 ---------------------------------------------------------------------

def run_serve(argv, timeout=15) -> subprocess.CompletedProcess:
    return subprocess.run(SERVE + argv + ["--no-stdin"], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("ports, expected", [
    (["70000"], "--port 70000: not a TCP port (1-65535)"),
    (["0"], "--port 0: not a TCP port (1-65535)"),
    (["-5"], "--port -5: not a TCP port (1-65535)"),
    (["65535"], "--port: 2 cards need vpcd ports up to 65536, past 65535"),
])
def test_port_out_of_range_is_one_line(image, tmp_path, ports, expected):
    other = str(tmp_path / "b.img")
    Card.from_profile(state=other)
    argv = ["--state", image, "--state", other]
    for port in ports:
        argv += ["--port", port]
    result = run_serve(argv)  # today: retries forever (the timeout fires)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"sscard: error: {expected}\n"


def test_control_socket_in_a_missing_folder_is_one_line(image, tmp_path):
    control = tmp_path / "no" / "such" / "ctl.sock"
    result = run_serve(["--state", image, "--control", str(control), "--port", str(free_port())])
    assert result.returncode == 2
    assert result.stderr == f"sscard: error: --control {control}: no such folder {control.parent}\n"


def test_control_on_an_existing_file_refuses_and_keeps_it(image, tmp_path):
    """`--control card.img` (a slip of the fingers) used to delete the file to bind its socket."""
    before = open(image, "rb").read()
    result = run_serve(["--state", image, "--control", image, "--port", str(free_port())])
    assert result.returncode == 2
    assert result.stderr == f"sscard: error: --control {image}: exists and is not a socket (not replacing it)\n"
    assert open(image, "rb").read() == before


def test_control_socket_of_a_running_serve_is_refused(tmp_path, image, started):
    server = Serve(tmp_path, SERVE + ["--state", image, "--no-stdin", "--port", str(free_port())])
    started(server)
    other = str(tmp_path / "b.img")
    Card.from_profile(state=other)
    result = run_serve(["--state", other, "--control", server.control, "--port", str(free_port())])
    assert result.returncode == 2
    assert result.stderr == f"sscard: error: --control {server.control}: another process listens there\n"
    assert server.command("status").startswith("card 0:")  # the first one's socket is still there


def test_record_in_a_missing_folder_is_one_line(image, tmp_path):
    record = tmp_path / "missing" / "served.apdu"
    result = run_serve(["--state", image, "--record", str(record), "--port", str(free_port())])
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and str(record) in result.stderr
    assert result.stderr.startswith("sscard: error: ")


# -- EMFILE on the control socket ------------------------------------------------------------------------

def _emfile(tmp_path, image, started, port):
    """Serve with its file descriptors at their limit: the control socket's accept() fails (EMFILE)."""
    server = Serve(tmp_path, SERVE + ["--state", image, "--no-stdin", "--port", str(port)])
    started(server)
    assert server.command("status").startswith("card 0:")
    open_now = len(os.listdir(f"/proc/{server.pid}/fd"))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (open_now + 1, hard))
    clients = []
    for _ in range(4):  # the kernel queues them in the backlog; serve cannot accept most of them
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(5)
        client.connect(server.control)
        clients.append(client)
    server.wait_for(lambda: "cannot accept a connection" in server.stderr(), "the accept error in the log")
    time.sleep(1.2)  # a few retries: still one line in the log, and no busy loop killed anything
    assert server.alive()
    assert server.stderr().count("cannot accept a connection") == 1, server.stderr()
    assert "Too many open files" in server.stderr()
    return server, clients, hard


def test_emfile_on_the_control_socket_does_not_stop_serve(tmp_path, image, started):
    server, clients, hard = _emfile(tmp_path, image, started, free_port())
    for client in clients:
        client.close()
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (1024, hard))
    assert server.command("status").startswith(f"card 0: {image}")  # accepting again
    server.wait_for(lambda: "accepting connections again" in server.stderr(), "the recovery in the log")
    assert "Traceback" not in server.stderr()


def test_emfile_on_the_control_socket_keeps_the_card_served(pcsc, tmp_path, image, started):
    server, clients, _ = _emfile(tmp_path, image, started, 35963)
    assert read_card() == EF05_07 + "9000"  # PC/SC goes on while the control socket is starved
    for client in clients:
        client.close()
    server.stop()
    card_gone()


# -- switch to an image that blocks --------------------------------------------------------------------

def test_switch_to_a_fifo_does_not_block_the_server(tmp_path, image, started):
    fifo = str(tmp_path / "pipe.img")
    os.mkfifo(fifo)
    server = Serve(tmp_path, SERVE + ["--state", image, "--no-stdin", "--port", str(free_port())])
    started(server)
    started_at = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as switching:
        switching.settimeout(OPEN_TIMEOUT + 5)
        switching.connect(server.control)
        switching.sendall(f"switch 0 {fifo}\n".encode())
        switching.shutdown(socket.SHUT_WR)  # as `socat` does: done sending, still owed the reply
        # meanwhile the server answers others at once (today the whole loop hangs in open())
        status = server.command("status", timeout=2)
        assert status.startswith(f"card 0: {image}"), status
        reply = read_line(switching)
    assert reply.startswith(f"error: {fifo}"), reply
    assert reply.endswith(f"card 0 stays {image}")
    assert time.monotonic() - started_at < OPEN_TIMEOUT + 2
    assert server.command("status").startswith(f"card 0: {image}") and server.alive()
    # a switch to a real image still works after that; the next line on that channel runs after it
    other = str(tmp_path / "b.img")
    Card.from_profile(state=other)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(server.control)
        s.sendall(f"switch 0 {other}\nstatus\n".encode())
        switched, status = read_lines(s, 2)
    assert switched == f"ok card 0 is now {other}"
    assert status.startswith(f"card 0: {other}") and "switching" not in status


def test_switch_errors_come_back_on_the_control_channel(tmp_path, image, started):
    server = Serve(tmp_path, SERVE + ["--state", image, "--no-stdin", "--port", str(free_port())])
    started(server)
    missing = str(tmp_path / "none.img")
    assert server.command(f"switch {missing}").startswith(f"error: {missing}: no such card image")
    folder = str(tmp_path)
    assert server.command(f"switch {folder}").startswith(f"error: {folder}")
    assert server.alive() and server.command("status").startswith(f"card 0: {image}")


def test_an_image_that_never_opens_is_given_up_after_the_bound(image, monkeypatch):
    """Whatever the image layer does with a FIFO or a hung file system, serve's loop waits for an
    open at most OPEN_TIMEOUT: the switch answers an error, the card stays, and the lines after it
    on that channel run after it, in order."""
    import io
    import threading

    from reader.pcsc import serve

    slot = serve.Slot(0, image, "127.0.0.1", free_port())
    gate = threading.Event()
    monkeypatch.setattr(serve.Card, "open", classmethod(lambda cls, path, **kw: gate.wait(30)))
    monkeypatch.setattr(serve, "OPEN_TIMEOUT", 0.2)
    out = io.StringIO()
    server = serve.Server([slot], out=out)
    try:
        server._submit("switch 0 hung.img")
        server._submit("status")
        assert out.getvalue() == ""  # both wait: the switch is opening, the status is behind it
        deadline = time.monotonic() + 5
        while server.switches and time.monotonic() < deadline:
            time.sleep(0.02)
            server._poll_switches()
        lines = out.getvalue().splitlines()
        assert lines[0] == (f"error: hung.img: not opened within 0.2 s (a FIFO, a device or a hung file system?); "
                            f"card 0 stays {image}")
        assert lines[1].startswith(f"card 0: {image}") and "switching" not in lines[1]
        assert slot.card.path == image
    finally:
        gate.set()
        server.close()
        slot.card.close()
