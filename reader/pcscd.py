"""Run pcscd for sscard: find it, start it as a child, wait for its readers, stop it by PID.

    python -m reader.pcscd run -- COMMAND...   pcscd for the duration of COMMAND (what `make test` uses)
    python -m reader.pcscd ensure              start a pcscd in the background if none answers
    python -m reader.pcscd check               say what is missing for PC/SC, exit 1 if anything

The recipe and its traps are measured in ../shared/PCSC.md: start pcscd as a
plain foreground command so its PID is ours, wait for the readers with a
deadline (with port 35963 taken pcscd lives on with no readers), never use
`--auto-exit`.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

VPCD_READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
TOOLS = {"pcscd": "pcscd", "scriptor": "pcsc-tools", "opensc-tool": "opensc"}
VPCD_CONF = "/etc/reader.conf.d/vpcd"
PIDFILE_ENV = "SSCARD_PCSCD_PIDFILE"


def missing() -> list[str]:
    """What PC/SC needs that this machine lacks, as things to install."""
    lacks = [f"{tool} (package {package})" for tool, package in TOOLS.items() if shutil.which(tool) is None
             and not os.path.exists(f"/usr/sbin/{tool}")]
    if not os.path.exists(VPCD_CONF):
        lacks.append("the vpcd driver (package vsmartcard-vpcd)")
    try:
        import smartcard  # noqa: F401
    except ImportError:
        lacks.append("pyscard in this Python (pip install pyscard)")
    return lacks


def readers() -> list[str] | None:
    """The readers pcscd lists, or None when no pcscd answers."""
    try:
        from .pcsc import PcscError, list_readers
    except ImportError:
        return None
    try:
        return list_readers()
    except PcscError:
        return None


def wait_for_readers(deadline_s: float = 10.0, process=None) -> list[str]:
    deadline = time.monotonic() + deadline_s
    while True:
        found = readers()
        if found and all(name in found for name in VPCD_READERS):
            return found
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"pcscd exited with status {process.returncode} (see its log)")
        if time.monotonic() >= deadline:
            raise RuntimeError(f"pcscd lists {found or 'no readers'} after {deadline_s:g} s; expected {VPCD_READERS}"
                               " (is port 35963 taken by another program?)")
        time.sleep(0.02)


def pcscd_path() -> str:
    path = shutil.which("pcscd") or "/usr/sbin/pcscd"
    if not os.path.exists(path):
        raise RuntimeError("pcscd is not installed: apt-get install pcscd vsmartcard-vpcd pcsc-tools opensc")
    return path


def start(log_path: str | None = None, detach: bool = False) -> subprocess.Popen:
    """Start pcscd in the foreground as our child and wait for the vpcd readers."""
    os.makedirs("/run/pcscd", exist_ok=True)
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen([pcscd_path(), "--foreground", "--error"], stdout=log, stderr=log,
                               start_new_session=detach)
    try:
        wait_for_readers(process=process)
    except RuntimeError:
        stop(process)
        raise
    return process


def stop(process_or_pid) -> None:
    """Stop pcscd by PID (TERM, then KILL after 3 s)."""
    pid = process_or_pid if isinstance(process_or_pid, int) else process_or_pid.pid
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if isinstance(process_or_pid, subprocess.Popen):
            if process_or_pid.poll() is not None:
                return
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(command: list[str]) -> int:
    """Run `command` with a pcscd: ours if none answers (stopped by PID afterwards), else the one there."""
    process = None
    if readers() is None and not missing():
        log = os.path.abspath(".pcscd.log")
        process = start(log)
        print(f"pcscd started (PID {process.pid}, log {log})", file=sys.stderr, flush=True)
    elif readers() is None:
        print(f"PC/SC end-to-end tests cannot run: missing {', '.join(missing())}", file=sys.stderr, flush=True)
    pidfile = os.path.abspath(".pcscd.pid")
    if process is not None:
        with open(pidfile, "w") as f:
            f.write(str(process.pid))
    env = dict(os.environ, **({PIDFILE_ENV: pidfile} if process is not None else {}))
    if process is not None:
        # reap our pcscd at once if it dies (a test may kill it): a zombie still holds its PID,
        # and a new pcscd refuses to start while the PID in /run/pcscd/pcscd.pid looks alive
        signal.signal(signal.SIGCHLD, lambda *_: process.poll())
    try:
        return subprocess.call(command, env=env)
    finally:
        if process is not None:
            # a test that restarted pcscd wrote the new PID to the pidfile: stop that one
            try:
                with open(pidfile) as f:
                    current = int(f.read().strip() or 0)
            except (OSError, ValueError):
                current = process.pid
            stop(process)
            if current and current != process.pid:
                stop(current)
            os.unlink(pidfile)
            print("pcscd stopped", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        command = argv[2:] if argv[1:2] == ["--"] else argv[1:]
        if not command:
            print("usage: python -m reader.pcscd run -- COMMAND...", file=sys.stderr)
            return 2
        return run(command)
    if argv[:1] == ["ensure"]:
        if readers() is not None:
            print("pcscd is running")
            return 0
        process = start(detach=True)
        print(f"pcscd started in the background (PID {process.pid}); stop it with: kill {process.pid}")
        return 0
    if argv[:1] == ["check"]:
        lacks = missing()
        for item in lacks:
            print(f"missing: {item}")
        return 1 if lacks else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
