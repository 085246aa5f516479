"""The benches share the tests' helpers (tests/helpers.py, tests/ssse_helpers.py, tests/oracle.py):
the tests' folder goes on the import path, as tests/conftest.py's own folder does for the tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
