"""The sscard pytest plugin, registered through the `pytest11` entry point (installing sscard is enough).

- `.apdu` files under the test paths are collected as test items: each
  replays against a fresh card made from its `@profile`/`@date`/`@random`
  directives, and a mismatch fails with the line and the first differing byte.
- Fixtures: `sscard_card` (a fresh in-memory card; profile from the
  `sscard_profile` marker or `--sscard-profile`, date from the `sscard_date`
  marker), `sscard_reader` (a reset `SimReader` on it), `sscard_pcsc_reader`
  (the same card served on vpcd and reached through pcscd; skipped when PC/SC
  is not there, an error in CI).
"""

import datetime
import os

import pytest

from .replay import replay, sim_reader_for
from .trace import TraceError, parse


def pytest_addoption(parser):
    group = parser.getgroup("sscard", "sscard card simulator")
    group.addoption("--sscard-profile", default="default",
                    help="profile of the sscard_card fixture (shipped name or TOML path; default: default)")


def pytest_configure(config):
    config.addinivalue_line("markers", "sscard_profile(name): profile of the sscard_card fixture")
    config.addinivalue_line("markers", "sscard_date(iso_date): simulated date of the sscard_card fixture")


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".apdu":
        return TraceFile.from_parent(parent, path=file_path)
    return None


class TraceMismatch(Exception):
    """A replayed response differed from the trace."""


class TraceFile(pytest.File):
    def collect(self):
        yield TraceItem.from_parent(self, name=self.path.name)


class TraceItem(pytest.Item):
    def runtest(self):
        trace = parse(self.path.read_text(encoding="utf-8"), str(self.path))
        result = replay(trace, sim_reader_for(trace))
        if not result.ok:
            raise TraceMismatch(f"{self.path.name}:{result.failure.line}: {result.failure.message}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (TraceMismatch, TraceError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"apdu trace {self.name}"


@pytest.fixture
def sscard_card(request):
    from chip import Card

    marker = request.node.get_closest_marker("sscard_profile")
    profile = marker.args[0] if marker else request.config.getoption("--sscard-profile")
    date_marker = request.node.get_closest_marker("sscard_date")
    date = datetime.date.fromisoformat(date_marker.args[0]) if date_marker else None
    return Card.from_profile(profile, date=date)


@pytest.fixture
def sscard_reader(sscard_card):
    from .sim import SimReader

    reader = SimReader(sscard_card)
    reader.reset()
    yield reader
    reader.power_off()


@pytest.fixture
def sscard_pcsc_reader(request, tmp_path):
    """A fresh card image served on vpcd (`Virtual PCD 00 00`), as a connected `PcscReader`."""
    from chip import Card

    from .pcscd import missing, readers
    from .serve import ServedProcess

    lacks = missing() + ([] if missing() or readers() is not None else ["a running pcscd"])
    if lacks:
        message = "sscard_pcsc_reader needs: " + "; ".join(lacks)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    marker = request.node.get_closest_marker("sscard_profile")
    profile = marker.args[0] if marker else request.config.getoption("--sscard-profile")
    image = str(tmp_path / "sscard-card.img")
    Card.from_profile(profile, state=image)
    with ServedProcess([image], control=str(tmp_path / "sscard.sock")) as served:
        reader = served.reader(0)
        reader.reset()
        yield reader
        reader.close()
