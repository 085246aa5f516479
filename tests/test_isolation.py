"""Tests never touch a card they did not create.

`python -m reader.pcsc.pcscd run -- CMD` (what `make test` and `make bench` use) runs its pcscd and CMD
in private mount and network namespaces: a tmpfs over /run/pcscd (pcscd's socket path is fixed)
and a private loopback (vpcd listens on every address). The main test plays a user: a pcscd and
`sscard serve --state user.img` in their own namespaces - the user's machine - and, from there,
the PC/SC test file, the pytest plugin's PC/SC fixture and the PC/SC benchmark run under
`reader.pcsc.pcscd run`. The user's card gets no APDU and its image stays byte-identical.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT

from reader.pcsc import pcscd


def _need(reason: str | None):
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def _clean_env() -> dict:
    """The environment of a process outside any `reader.pcsc.pcscd run`."""
    env = dict(os.environ)
    for name in (pcscd.NETNS_ENV, pcscd.PIDFILE_ENV, pcscd.UNAVAILABLE_ENV, "PCSCLITE_CSOCK_NAME"):
        env.pop(name, None)
    return env


# -- what the runner gives ------------------------------------------------------------------------------

def test_the_suite_runs_in_private_namespaces():
    """Under `make test` this very process is in the runner's namespaces, with its own /run/pcscd."""
    _need(pcscd.skip_reason())
    assert pcscd.private()
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    run_pcscd = [m for m in mounts if m[4] == pcscd.PCSCD_DIR]
    assert run_pcscd and run_pcscd[-1][m_fstype(run_pcscd[-1])] == "tmpfs", run_pcscd
    assert sorted(pcscd.readers()) == sorted(pcscd.VPCD_READERS)


def m_fstype(fields: list[str]) -> int:
    return fields.index("-") + 1  # mountinfo: ... - FSTYPE SOURCE OPTIONS


def test_two_runs_side_by_side_each_have_their_own_pcscd(tmp_path):
    """Two `reader.pcsc.pcscd run` at once (two engineers' `make test`): each its own pcscd, namespace and
    per-run PID file and log; nothing is written in the working folder."""
    _need(pcscd.unshare_prefix()[1] or (("missing " + "; ".join(pcscd.missing())) if pcscd.missing() else None))
    probe = ("import os, time, json; from reader.pcsc import pcscd; time.sleep(1.0); "
             "print(json.dumps([pcscd.netns(), pcscd.readers(), os.environ.get(pcscd.PIDFILE_ENV)]))")
    runs = [subprocess.Popen([sys.executable, "-m", "reader.pcsc.pcscd", "run", "--", sys.executable, "-c", probe],
                             cwd=tmp_path, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    (ns_a, readers_a, pid_a), (ns_b, readers_b, pid_b) = results
    assert ns_a != ns_b and pcscd.netns() not in (ns_a, ns_b)
    assert sorted(readers_a) == sorted(readers_b) == sorted(pcscd.VPCD_READERS)
    assert pid_a != pid_b and not os.path.exists(pid_a) and not os.path.exists(pid_b)  # cleaned up
    assert os.listdir(tmp_path) == []  # no .pcscd.pid / .pcscd.log next to the tests


def test_without_namespaces_the_pcsc_tests_skip_and_reach_no_pcscd(monkeypatch, capsys):
    """Where no private namespaces can be made, COMMAND runs with no pcscd at all: pyscard is pointed
    away from the machine's, and `skip_reason` says why (the PC/SC tests skip; in CI they fail)."""
    monkeypatch.setattr(pcscd, "_tool", lambda name: None if name == "ip" else "/bin/" + name)
    prefix, why = pcscd.unshare_prefix()
    assert prefix is None and why == "no private namespaces for pcscd: missing ip (package iproute2)"
    show = ("import os; from reader.pcsc import pcscd; "
            "print(pcscd.skip_reason()); print(os.environ['PCSCLITE_CSOCK_NAME']); print(pcscd.readers())")
    code = subprocess.run([sys.executable, "-c", show], env=dict(_clean_env(), **{
        pcscd.UNAVAILABLE_ENV: why, "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"}),
        capture_output=True, text=True, timeout=30)
    assert code.stdout.splitlines() == [why, "/nonexistent/pcscd.comm", "None"]
    monkeypatch.delenv(pcscd.NETNS_ENV, raising=False)
    assert pcscd.skip_reason().startswith("not inside `python -m reader.pcsc.pcscd run")


# -- a card served outside the test run --------------------------------------------------------------

USER_MACHINE = textwrap.dedent("""
    # The user's machine: its own pcscd (namespaces made by unshare, as the real machine's would
    # be), a card served from user.img with stdin from /dev/null, then the PC/SC tests run as
    # `make test` runs them. Prints what happened as JSON.
    import hashlib, json, os, subprocess, sys, time
    from reader.pcsc import pcscd
    from reader.pcsc.serve import wait_for_card

    image, control, log, command = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    pcscd._make_private_world()
    daemon = pcscd.start(log)
    digest = lambda: hashlib.sha256(open(image, "rb").read()).hexdigest()
    def status():
        import socket
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5); s.connect(control); s.sendall(b"status\\n")
            return s.recv(4096).decode().strip()
    serve = subprocess.Popen([sys.executable, "-m", "reader.cli", "serve", "--state", image, "--control", control],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        present = wait_for_card("Virtual PCD 00 00", present=True, timeout=10)
        before = digest()
        run = subprocess.run([sys.executable, "-m", "reader.pcsc.pcscd", "run", "--"] + command,
                             capture_output=True, text=True, timeout=600)
        still = wait_for_card("Virtual PCD 00 00", present=True, timeout=2)
        after_status = status()
    finally:
        serve.terminate()
        serve.wait(timeout=10)
        pcscd.stop(daemon)
    print(json.dumps(dict(present=present, still=still, before=before, after=digest(), status=after_status,
                          code=run.returncode, out=run.stdout[-3000:], err=run.stderr[-3000:],
                          serve_err=serve.stderr.read()[-2000:])))
""")


def test_a_card_served_outside_the_test_run_is_untouched(tmp_path):
    prefix, why = pcscd.unshare_prefix()
    _need(why or (("missing " + "; ".join(pcscd.missing())) if pcscd.missing() else None))
    from chip import Card

    image = str(tmp_path / "user.img")
    Card.from_profile(state=image)
    with open(image, "rb") as f:
        original = hashlib.sha256(f.read()).hexdigest()
    script = tmp_path / "user_machine.py"
    script.write_text(USER_MACHINE)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/test_pcsc.py", "tests/test_plugin.py::test_pcsc_fixture_serves_a_fresh_card_on_the_private_pcscd",
               "bench/bench_pcsc.py"]
    env = dict(_clean_env(), CI="true")  # in there a PC/SC test that cannot run fails: none may skip
    result = subprocess.run(prefix + ["--", sys.executable, str(script), image, str(tmp_path / "user.sock"),
                                      str(tmp_path / "user-pcscd.log")] + command,
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["present"] and seen["before"] == original
    assert seen["code"] == 0, seen["out"] + seen["err"]
    assert " passed" in seen["out"] and "skipped" not in seen["out"] and "failed" not in seen["out"], seen["out"]
    # the user's card: still in the user's reader, not one APDU, the image byte-identical
    assert seen["still"], seen["serve_err"]
    assert seen["status"].endswith(", inserted, connected, 0 APDUs"), seen["status"]
    assert seen["after"] == original
    with open(image, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == original
