"""Run pcscd for sscard: find it, start it as a child, wait for its readers, stop it by PID.

    python -m reader.pcsc.pcscd run -- COMMAND...   a private pcscd for the duration of COMMAND, both in
                                               private mount and network namespaces (what `make test`
                                               and `make bench` use)
    python -m reader.pcsc.pcscd run --ccid LINK[:VARIANT] [--ccid-level tpdu|apdu] [--debug] [--log FILE] -- COMMAND...
                                               the same, and the private pcscd also drives the serial
                                               CCID reader whose pty LINK names (`python -m reader.ccid
                                               LINK`, started first) with Debian's libccidtwin, at TPDU
                                               level or (apdu) switched to short APDU level
    python -m reader.pcsc.pcscd ensure              start a pcscd in the background if none answers (the
                                               machine's own; what `make serve` uses)
    python -m reader.pcsc.pcscd check               say what is missing for PC/SC, exit 1 if anything

The recipe and its traps are measured in docs/pcsc.md: start pcscd as a
plain foreground command so its PID is ours, wait for the readers with a
deadline (with port 35963 taken pcscd lives on with no readers), never use
`--auto-exit`.

Isolation (`run`). pcscd's socket path `/run/pcscd/pcscd.comm` is fixed and
vpcd listens on every address, so a second pcscd next to a user's would
collide with it, and tests would reach the user's served card. `run` re-executes
itself under `unshare -m -n` (as root) or `unshare -r -m -n` (otherwise, where
the kernel allows user namespaces), mounts a tmpfs over `/run/pcscd`, brings
the private loopback up, and starts pcscd and COMMAND in there: everything
COMMAND starts (`sscard serve`, pyscard, scriptor, opensc-tool) sees only that
pcscd and that vpcd. Where that is impossible COMMAND runs without PC/SC:
`skip_reason()` says why, and the PC/SC tests skip (fail when CI=true). The
pcscd's PID file and log are per run, in a temporary folder.

A serial CCID reader (`--ccid`, docs/ccid.md). libccid probes serial readers once, when pcscd
starts, so the firmware must already answer on LINK. That pcscd runs with `--config FILE`, a
reader.conf made for the run: the vpcd entry (from /etc/reader.conf.d/vpcd) and the CCID
reader's (`reader.ccid.pty.stanza`); it counts as started once it lists the vpcd readers and
every slot of the CCID reader (`sscard CCID 00 00`, and `sscard CCID 00 01` for the SEC1210's
SAM slot: libccid opens each further slot on the same line). `--debug` runs it
with `--debug --apdu` and the driver with `LIBCCID_ifdLogLevel=0x7` (every byte on the line),
`--log FILE` keeps its log there.

`--ccid-level apdu` sets the driver option that makes libccid switch a GemPC Twin to short APDU
level with Escape 1F 02 when it opens it (DRIVER_OPTION_GEMPC_TWIN_KEY_APDU, 0x0002;
reader/ccid/levels.py). libccidtwin has no Info.plist of its own: it reads its options from
`$PCSCLITE_HP_DROPDIR/ifd-ccid.bundle/Contents/Info.plist`, the USB driver's by default
(ifdhandler.c, init_driver). So the run writes a copy of that file with `ifdDriverOptions` 0x0002
into its temporary folder and gives pcscd that folder as PCSCLITE_HP_DROPDIR; pcscd itself does
not read the variable (1.9.9 scans its compiled-in drop folder), so the USB readers stay as they are.
"""

import ctypes
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

VPCD_READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
TOOLS = {"pcscd": "pcscd", "scriptor": "pcsc-tools", "opensc-tool": "opensc"}
VPCD_CONF = "/etc/reader.conf.d/vpcd"
PCSCD_DIR = "/run/pcscd"
PIDFILE_ENV = "SSCARD_PCSCD_PIDFILE"  # the private pcscd's PID (a test that restarts it writes the new one)
NETNS_ENV = "SSCARD_PCSC_NETNS"  # the private network namespace `run` made, as /proc/self/ns/net names it
UNAVAILABLE_ENV = "SSCARD_PCSC_UNAVAILABLE"  # why `run` could not give COMMAND a private pcscd
ISOLATION_TOOLS = {"unshare": "util-linux", "mount": "mount", "ip": "iproute2"}
CCID_DEBUG_LEVEL = "0x7"  # LIBCCID_ifdLogLevel: critical, info and every byte on the line
CCID_BUNDLE = "ifd-ccid.bundle"  # the bundle whose Contents/Info.plist libccid takes its options from
CCID_DROPDIR = "/usr/lib/pcsc/drivers"  # where it is without PCSCLITE_HP_DROPDIR
DRIVER_OPTION_GEMPC_TWIN_KEY_APDU = 0x0002  # libccid's ifdDriverOptions bit: a GemPC Twin at APDU level


def _tool(name: str) -> str | None:
    for path in (shutil.which(name), f"/usr/sbin/{name}", f"/sbin/{name}", f"/usr/bin/{name}", f"/bin/{name}"):
        if path and os.access(path, os.X_OK):
            return path
    return None


def missing() -> list[str]:
    """What PC/SC needs that this machine lacks, as things to install."""
    lacks = [f"{tool} (package {package})" for tool, package in TOOLS.items() if _tool(tool) is None]
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
        from reader.pcsc.reader import PcscError, list_readers
    except ImportError:
        return None
    try:
        return list_readers()
    except PcscError:
        return None


def wait_for_readers(deadline_s: float = 10.0, process=None, also: tuple[str, ...] = ()) -> list[str]:
    """The readers once the vpcd ones are listed, and one whose name starts with each of `also`."""
    deadline = time.monotonic() + deadline_s
    while True:
        found = readers()
        if found and all(name in found for name in VPCD_READERS) \
                and all(any(name.startswith(prefix) for name in found) for prefix in also):
            return found
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"pcscd exited with status {process.returncode} (see its log)")
        if time.monotonic() >= deadline:
            raise RuntimeError(f"pcscd lists {found or 'no readers'} after {deadline_s:g} s; expected "
                               f"{VPCD_READERS + also} (is port 35963 taken by another program?"
                               + (" does the CCID firmware answer?" if also else "") + ")")
        time.sleep(0.02)


def pcscd_path() -> str:
    path = _tool("pcscd")
    if path is None:
        raise RuntimeError("pcscd is not installed: apt-get install pcscd vsmartcard-vpcd pcsc-tools opensc")
    return path


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the runner goes (even by SIGKILL), so no pcscd outlives it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start(log_path: str | None = None, detach: bool = False, die_with_parent: bool = False,
          config: str | None = None, debug: bool = False, also: tuple[str, ...] = (),
          dropdir: str | None = None) -> subprocess.Popen:
    """Start pcscd in the foreground as our child and wait for the vpcd readers (and those `also`
    names). `config`: the reader.conf it reads instead of /etc/reader.conf.d/; `debug`: pcscd's and
    libccid's logs in full; `dropdir`: where libccid finds the Info.plist of its options."""
    os.makedirs(PCSCD_DIR, exist_ok=True)
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    argv = [pcscd_path(), "--foreground"] + (["--debug", "--apdu"] if debug else ["--error"])
    if config is not None:
        argv += ["--config", os.path.abspath(config)]
    env = dict(os.environ, LIBCCID_ifdLogLevel=CCID_DEBUG_LEVEL) if debug else None
    if dropdir is not None:
        env = dict(env or os.environ, PCSCLITE_HP_DROPDIR=dropdir)
    process = subprocess.Popen(argv, stdout=log, stderr=log, env=env,
                               start_new_session=detach, preexec_fn=_die_with_parent if die_with_parent else None)
    try:
        wait_for_readers(process=process, also=also)
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


# -- isolation -------------------------------------------------------------------------------------------
def netns() -> str | None:
    """This process's network namespace, as /proc/self/ns/net names it (e.g. 'net:[4026532178]')."""
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return None


def private() -> bool:
    """True inside the private namespaces of `python -m reader.pcsc.pcscd run`."""
    expected = os.environ.get(NETNS_ENV)
    return bool(expected) and netns() == expected


def skip_reason() -> str | None:
    """Why PC/SC tests must not run here (None: they may). They run only inside `run`'s private
    namespaces, so they never reach the machine's pcscd and a card someone else serves."""
    reason = os.environ.get(UNAVAILABLE_ENV)
    if reason:
        return reason
    if not private():
        return ("not inside `python -m reader.pcsc.pcscd run -- ...` (`make test`, `make bench`): PC/SC tests use only a"
                " private pcscd in private namespaces, never the machine's pcscd and the cards it serves")
    lacks = missing()
    if lacks:
        return "missing " + "; ".join(lacks)
    if readers() is None:
        return "the private pcscd does not answer"
    return None


def unshare_prefix() -> tuple[list[str] | None, str]:
    """The `unshare` command that gives this user private mount and network namespaces in which
    `/run/pcscd` can be a tmpfs and loopback can come up (checked by trying it), or None and why not."""
    lacks = [f"{tool} (package {package})" for tool, package in ISOLATION_TOOLS.items() if _tool(tool) is None]
    if lacks:
        return None, "no private namespaces for pcscd: missing " + ", ".join(lacks)
    unshare = _tool("unshare")
    candidates = ([[unshare, "-m", "-n"]] if os.geteuid() == 0 else []) + [[unshare, "-r", "-m", "-n"]]
    errors = []
    for prefix in candidates:
        try:
            probe = subprocess.run(prefix + ["--", sys.executable, "-m", "reader.pcsc.pcscd", "_probe"],
                                   capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{' '.join(prefix[1:])}: {exc}")
            continue
        if probe.returncode == 0:
            return prefix, ""
        text = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        errors.append(f"unshare {' '.join(prefix[1:])}: {text}")
    return None, "no private namespaces for pcscd (" + "; ".join(errors) + ")"


def _make_private_world() -> None:
    """In fresh mount and network namespaces: our own empty /run/pcscd and a loopback that is up."""
    mount, ip = _tool("mount"), _tool("ip")
    if not os.path.isdir(PCSCD_DIR):
        try:
            os.makedirs(PCSCD_DIR)  # what the pcscd package makes anyway
        except OSError:  # a user may not write /run: a private /run then
            subprocess.run([mount, "-t", "tmpfs", "-o", "mode=755", "sscard-run", "/run"], check=True,
                           capture_output=True, text=True)
            os.makedirs(PCSCD_DIR)
    for argv in ([mount, "-t", "tmpfs", "-o", "mode=755", "sscard-pcscd", PCSCD_DIR], [ip, "link", "set", "lo", "up"]):
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or f'exit status {result.returncode}'}")


def _call(command: list[str], env: dict) -> int:
    """Run COMMAND; SIGTERM/SIGHUP to us are passed on, Ctrl-C reaches it from the terminal by itself."""
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as exc:
        print(f"reader.pcsc.pcscd: cannot run {command[0]}: {exc.strerror}", file=sys.stderr, flush=True)
        return 127
    previous = {sig: signal.signal(sig, lambda signum, _: child.send_signal(signum))
                for sig in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while True:
            try:
                return child.wait()
            except InterruptedError:
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _left_in_namespace(namespace: str) -> list[int]:
    """The processes other than this one in the network namespace `namespace`."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == namespace:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def _reap_namespace(namespace: str) -> list[int]:
    """End what COMMAND left running in our private namespaces (a `serve &` a test did not stop): TERM,
    then KILL after 3 s. Only processes of this run live there. Returns their PIDs."""
    left = _left_in_namespace(namespace)
    for pid in left:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(pid in _left_in_namespace(namespace) for pid in left):
        time.sleep(0.05)
    for pid in _left_in_namespace(namespace):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left


@dataclass(frozen=True)
class RunOptions:
    """What `run` takes before `--`: a serial CCID reader to drive too and its exchange level, full
    logs, where the log goes."""

    ccid: str | None = None  # LINK[:VARIANT]
    debug: bool = False
    log: str | None = None
    ccid_level: str | None = None  # one of reader/ccid/levels.py's LEVELS; None: as the reader starts, TPDU

    def argv(self) -> list[str]:
        return ((["--ccid", self.ccid] if self.ccid else []) + (["--debug"] if self.debug else [])
                + (["--log", os.path.abspath(self.log)] if self.log else [])
                + (["--ccid-level", self.ccid_level] if self.ccid_level else []))


def ccid_link(value: str) -> tuple[str, str]:
    """LINK[:VARIANT] as (LINK, VARIANT); the variant is GemPCTwin when not given."""
    from reader.ccid.serial import DEFAULT_VARIANT, VARIANTS

    link, _, variant = value.rpartition(":")
    if link and variant.lower() in (name.lower() for name in VARIANTS):
        return link, variant
    return value, DEFAULT_VARIANT


def _ccid_config(folder: str, ccid: str) -> str:
    """A reader.conf for pcscd's `--config`: the vpcd entry and the serial CCID reader's."""
    from reader.ccid.pty import stanza

    path = os.path.join(folder, "reader.conf")
    with open(VPCD_CONF, encoding="utf-8") as f:
        vpcd = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(vpcd.rstrip("\n") + "\n\n" + stanza(*ccid_link(ccid)))
    return path


def driver_options_dropdir(folder: str, options: int) -> str:
    """A drop folder under `folder` holding a copy of libccid's Info.plist with `ifdDriverOptions`
    set to `options`, for PCSCLITE_HP_DROPDIR; OSError or ValueError when there is none to copy."""
    with open(os.path.join(CCID_DROPDIR, CCID_BUNDLE, "Contents", "Info.plist"), encoding="utf-8") as f:
        plist = f.read()
    changed, count = re.subn(r"(<key>ifdDriverOptions</key>\s*<string>)[^<]*(</string>)",
                             lambda match: f"{match[1]}0x{options:04X}{match[2]}", plist)
    if count != 1:
        raise ValueError(f"{CCID_BUNDLE}'s Info.plist has no ifdDriverOptions")
    dropdir = os.path.join(folder, "drivers")
    os.makedirs(os.path.join(dropdir, CCID_BUNDLE, "Contents"))
    with open(os.path.join(dropdir, CCID_BUNDLE, "Contents", "Info.plist"), "w", encoding="utf-8") as f:
        f.write(changed)
    return dropdir


def _run_private(command: list[str], options: RunOptions = RunOptions()) -> int:
    """Inside the private namespaces: the world, our pcscd, COMMAND, then pcscd stopped by PID."""
    env = dict(os.environ)
    env.pop(UNAVAILABLE_ENV, None)
    try:
        _make_private_world()
    except (RuntimeError, OSError) as exc:
        return _run_without_pcsc(command, f"no private /run/pcscd and loopback for pcscd: {exc}")
    env[NETNS_ENV] = netns() or ""
    lacks = missing()
    if lacks:
        reason = "PC/SC end-to-end tests cannot run: missing " + "; ".join(lacks)
        print(reason, file=sys.stderr, flush=True)
        env[UNAVAILABLE_ENV] = reason
        return _call(command, env)
    folder = tempfile.mkdtemp(prefix="sscard-pcscd-")
    log, pidfile = options.log or os.path.join(folder, "pcscd.log"), os.path.join(folder, "pcscd.pid")
    config: str | None = None
    dropdir: str | None = None
    also: tuple[str, ...] = ()
    if options.ccid:
        from reader.ccid.levels import SHORT_APDU
        from reader.ccid.pty import slot_names
        from reader.ccid.serial import variant_of

        config, also = _ccid_config(folder, options.ccid), slot_names(variant_of(ccid_link(options.ccid)[1]))
        if options.ccid_level == SHORT_APDU:
            try:
                dropdir = driver_options_dropdir(folder, DRIVER_OPTION_GEMPC_TWIN_KEY_APDU)
            except (OSError, ValueError) as exc:
                print(f"reader.pcsc.pcscd: no driver options for the APDU level: {exc}", file=sys.stderr, flush=True)
                return 1
    try:
        process = start(log, die_with_parent=True, config=config, debug=options.debug, also=also, dropdir=dropdir)
    except RuntimeError as exc:
        reason = f"the private pcscd did not start: {exc} (log {log})"
        print(reason, file=sys.stderr, flush=True)
        if options.ccid:  # PC/SC is there: the reader on LINK did not come up, which is a failure
            return 1
        env[UNAVAILABLE_ENV] = reason
        return _call(command, env)
    print(f"pcscd started (PID {process.pid}, private namespaces {env[NETNS_ENV]}, log {log})",
          file=sys.stderr, flush=True)
    with open(pidfile, "w") as f:
        f.write(str(process.pid))
    env[PIDFILE_ENV] = pidfile
    # reap our pcscd at once if it dies (a test may kill it): a zombie still holds its PID,
    # and a new pcscd refuses to start while the PID in /run/pcscd/pcscd.pid looks alive
    signal.signal(signal.SIGCHLD, lambda *_: process.poll())
    code = 1
    try:
        code = _call(command, env)
        return code
    finally:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # a test that restarted pcscd wrote the new PID to the pidfile: stop that one
        try:
            with open(pidfile) as f:
                current = int(f.read().strip() or 0)
        except (OSError, ValueError):
            current = process.pid
        stop(process)
        if current and current != process.pid:
            stop(current)
        left = _reap_namespace(env[NETNS_ENV]) if env[NETNS_ENV] else []
        if left:
            print(f"stopped {len(left)} process(es) left in the private namespaces: PIDs {left}",
                  file=sys.stderr, flush=True)
        if code == 0:
            shutil.rmtree(folder, ignore_errors=True)
            print("pcscd stopped", file=sys.stderr, flush=True)
        else:
            os.unlink(pidfile)
            print(f"pcscd stopped (its log: {log})", file=sys.stderr, flush=True)


def _run_without_pcsc(command: list[str], reason: str) -> int:
    """COMMAND with no pcscd at all, and pyscard pointed away from the machine's: PC/SC tests skip."""
    ci = os.environ.get("CI") == "true"
    print(f"{reason}: the PC/SC tests {'fail (CI=true)' if ci else 'skip'}", file=sys.stderr, flush=True)
    env = dict(os.environ, **{UNAVAILABLE_ENV: reason,
                              # libpcsclite's client side takes its socket from here: nothing answers there
                              "PCSCLITE_CSOCK_NAME": os.path.join(tempfile.gettempdir(), "sscard-no-pcscd.comm")})
    env.pop(NETNS_ENV, None)
    return _call(command, env)


def run(command: list[str], options: RunOptions = RunOptions()) -> int:
    """Run `command` with a private pcscd, both in private mount and network namespaces."""
    if options.ccid:
        link = ccid_link(options.ccid)[0]
        if not (os.path.exists(link) and stat.S_ISCHR(os.stat(link).st_mode)):
            print(f"reader.pcsc.pcscd: {link} is not a serial port: start the reader first "
                  f"(python -m reader.ccid {link} --state IMAGE)", file=sys.stderr, flush=True)
            return 2
    prefix, why = unshare_prefix()
    if prefix is None:
        return _run_without_pcsc(command, why)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child: no process in between to be killed and leave pcscd orphaned in the namespaces
    os.execv(prefix[0], prefix + ["--", sys.executable, "-m", "reader.pcsc.pcscd", "_private", *options.argv(), "--"]
             + command)


def _run_arguments(args: list[str]) -> tuple[RunOptions, list[str]] | None:
    """`run`'s options and COMMAND (after `--`, or from the first word that is no option); None: unusable."""
    values: dict = {}
    while args:
        word = args[0]
        if word == "--":
            return RunOptions(**values), args[1:]
        if word == "--debug":
            values["debug"], args = True, args[1:]
        elif word in ("--ccid", "--log") and len(args) >= 2:
            values[word[2:]], args = args[1], args[2:]
        elif word == "--ccid-level" and len(args) >= 2:
            from reader.ccid.levels import LEVELS

            if args[1] not in LEVELS:
                return None
            values["ccid_level"], args = args[1], args[2:]
        elif word.startswith("--"):
            return None
        else:
            break
    return RunOptions(**values), args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["run"], ["_private"]):
        parsed = _run_arguments(argv[1:])
        if parsed is None or not parsed[1] or (parsed[0].ccid_level and not parsed[0].ccid):
            print("usage: python -m reader.pcsc.pcscd run [--ccid LINK[:VARIANT]] [--ccid-level tpdu|apdu] [--debug]"
                  " [--log FILE] -- COMMAND...", file=sys.stderr)
            return 2
        options, command = parsed
        return run(command, options) if argv[0] == "run" else _run_private(command, options)
    if argv[:1] == ["_probe"]:  # unshare_prefix: can this user make the private world?
        try:
            _make_private_world()
        except (RuntimeError, OSError) as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
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
