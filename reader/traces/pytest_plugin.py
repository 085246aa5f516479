"""The sscard pytest plugin, registered through the `pytest11` entry point (installing sscard is enough).

- `.apdu` files under the test paths are collected as test items: each
  replays against a fresh card made from its `@profile`/`@date`/`@random`
  directives, and a mismatch fails with the line and the first differing byte.
- Fixtures: `sscard_card` (a fresh in-memory card; profile from the
  `sscard_profile` marker or `--sscard-profile`, date from the `sscard_date`
  marker), `sscard_reader` (a reset `SimReader` on it), `sscard_pcsc_reader`
  (the same card served on vpcd and reached through pcscd). The PC/SC fixture
  runs only under `python -m reader.pcsc.pcscd run -- pytest ...`, which gives the
  session a private pcscd in private mount and network namespaces, so it never
  reaches the machine's pcscd and a card someone serves there; elsewhere (or
  without PC/SC) it skips with the reason, and fails in CI (`CI=true`).
- `require_pcsc(what)`: that same guard, for a test of its own that needs PC/SC.
"""

import datetime
import os

import pytest

from chip import ImageError, ProfileError
from reader.traces.format import TraceError, parse
from reader.traces.replay import replay, sim_reader_for


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
        try:
            text = self.path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TraceError(f"{self.path.name}: not UTF-8 text (offset {exc.start}); a trace is UTF-8 text") from None
        trace = parse(text, str(self.path))
        result = replay(trace, sim_reader_for(trace))
        for note in result.notes:  # a trace without reset got an implicit cold reset, say
            self.add_report_section("call", "sscard", f"note: {self.path.name}: {note}")
            self.user_properties.append(("sscard note", note))
        if not result.ok:
            raise TraceMismatch(f"{self.path.name}:{result.failure.line}: {result.failure.message}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (TraceMismatch, TraceError, ImageError, ProfileError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"apdu trace {self.name}"


def require_pcsc(what: str) -> None:
    """Skip unless this run is inside the private PC/SC stack of `python -m reader.pcsc.pcscd run`
    (never the machine's pcscd); in CI (`CI=true`) a missing stack fails instead. `what` names the
    test in the reason."""
    from reader.pcsc.pcscd import skip_reason

    reason = skip_reason()
    if reason:
        message = f"{what}: {reason}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


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
    from reader.sim import SimReader

    reader = SimReader(sscard_card)
    reader.reset()
    yield reader
    reader.power_off()


@pytest.fixture
def sscard_pcsc_reader(request, tmp_path):
    """A fresh card image served on vpcd (`Virtual PCD 00 00`), as a connected `PcscReader`."""
    from chip import Card
    from reader.pcsc.serve import ServedProcess

    require_pcsc("sscard_pcsc_reader")
    marker = request.node.get_closest_marker("sscard_profile")
    profile = marker.args[0] if marker else request.config.getoption("--sscard-profile")
    image = str(tmp_path / "sscard-card.img")
    Card.from_profile(profile, state=image)
    with ServedProcess([image], control=str(tmp_path / "sscard.sock")) as served:
        reader = served.reader(0)
        reader.reset()
        yield reader
        reader.close()
