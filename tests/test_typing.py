"""Type checking of the host side against its baseline.

`make test` runs `mypy chip`, which must be clean. reader/ is held to
tests/mypy-reader-baseline.txt: every error mypy finds in reader/ must be listed
there (a new one fails), and every listed one must still be found (a fixed one
fails until its line is removed), so the baseline only ever shrinks. Lines are
compared without their line numbers, so an unrelated edit above an old error
does not count as a new error.
"""

import re
from collections import Counter

import pytest
from helpers import ROOT

api = pytest.importorskip("mypy.api")

BASELINE = ROOT / "tests" / "mypy-reader-baseline.txt"
ERROR = re.compile(r"^(?P<file>reader/\S+?):\d+: error: (?P<message>.*)$")


def normalised(report: str) -> Counter:
    """mypy's error lines as `file: message [code]`, counted (the same error may stand twice)."""
    found: Counter = Counter()
    for line in report.splitlines():
        match = ERROR.match(line)
        if match:
            found[f"{match['file']}: {match['message']}"] += 1
    return found


def baseline() -> Counter:
    lines = BASELINE.read_text(encoding="utf-8").splitlines()
    return Counter(line for line in lines if line and not line.startswith("#"))


def test_normalised_drops_line_numbers_and_keeps_duplicates():
    report = ("reader/a.py:3: error: Need type annotation for \"x\"  [var-annotated]\n"
              "reader/a.py:9: error: Need type annotation for \"x\"  [var-annotated]\n"
              "reader/a.py:4: note: By default the bodies of untyped functions are not checked\n"
              "Found 2 errors in 1 file (checked 1 source file)\n")
    assert normalised(report) == Counter({'reader/a.py: Need type annotation for "x"  [var-annotated]': 2})


def test_reader_has_no_type_error_beyond_the_baseline(monkeypatch):
    monkeypatch.chdir(ROOT)  # mypy names files relative to the current folder
    out, err, _status = api.run(["reader"])
    assert not err, err
    found, allowed = normalised(out), baseline()
    new, fixed = found - allowed, allowed - found
    assert not new, "new type errors in reader/ (fix them):\n" + "\n".join(sorted(new.elements()))
    assert not fixed, ("fixed type errors: remove these lines from tests/mypy-reader-baseline.txt:\n"
                       + "\n".join(sorted(fixed.elements())))
