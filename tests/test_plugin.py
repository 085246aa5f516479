"""The pytest plugin (entry point pytest11 'sscard'): .apdu files as test items, and fixtures."""

from helpers import SELECT_SSSE, spaced

from reader.traces.pytest_plugin import require_pcsc

SELECT = spaced(SELECT_SSSE)  # as a trace writes it
GOOD = f"""# a trace a user keeps next to their tests
@date 2026-11-21
reset
> {SELECT}
< 6F 1C * 90 00
> 00 B2 07 2C 0B
< 07 09 54 30 30 30 30 30 30 30 31 90 00
"""


def test_apdu_files_are_collected_and_replayed(pytester):
    pytester.makefile(".apdu", good=GOOD)
    pytester.makefile(".apdu", bad=GOOD.replace("30 31 90 00", "30 32 90 00"))
    result = pytester.runpytest("-p", "no:cacheprovider")  # the plugin loads through its entry point
    result.assert_outcomes(passed=1, failed=1)
    assert ("bad.apdu:7: response byte 10 is 31, expected 32: got ... 30 30 30 30 30 30 [31] 90 00 "
            "to 00 B2 07 2C 0B") in result.stdout.str()


def test_a_trace_with_a_syntax_error_fails_with_its_line(pytester):
    pytester.makefile(".apdu", broken="> 00 A4 QQ\n")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*broken.apdu:1: 'Q' is not a hex byte or {capture}*"])


def test_fixtures(pytester):
    pytester.makepyfile("""
        import pytest

        def test_reader(sscard_reader):
            r = sscard_reader.transmit(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))
            assert r[-2:] == b"\\x90\\x00" and r[:2] == bytes.fromhex("6F1C")

        @pytest.mark.sscard_profile("default-3des")
        @pytest.mark.sscard_date("2026-01-02")
        def test_markers(sscard_card):
            assert sscard_card.applets["ssse"].describe()["algorithm"] == "DES family (3DES) (flag 01)"
            assert str(sscard_card.applets["ssse"].issue_date()) == "2026-01-02"
    """)
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


def test_the_plugin_is_registered_as_an_entry_point():
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("sscard") == "reader.traces.pytest_plugin"


# -- the PC/SC fixture: only on the private pcscd of `python -m reader.pcsc.pcscd run` -----------------------

PCSC_TEST = """
    def test_pcsc(sscard_pcsc_reader):
        r = sscard_pcsc_reader.transmit(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))
        assert r[-2:] == b"\\x90\\x00" and r[:2] == bytes.fromhex("6F1C")  # its PcscReader fetched the 61xx
        answer = sscard_pcsc_reader.transmit(bytes.fromhex("00B2072C0B"))
        assert answer.hex().upper() == "0709" + b"T00000001".hex().upper() + "9000"
"""


def test_pcsc_fixture_serves_a_fresh_card_on_the_private_pcscd(pytester):
    require_pcsc("PC/SC")
    pytester.makepyfile(PCSC_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_pcsc_fixture_outside_the_private_pcscd_skips_with_the_reason(pytester, monkeypatch):
    """Plain `pytest` next to a user's `make serve`: the fixture does not reach the machine's pcscd
    (whose reader 'Virtual PCD 00 00' may hold the user's card); it skips and says why."""
    from reader.pcsc.pcscd import NETNS_ENV, UNAVAILABLE_ENV

    monkeypatch.delenv(NETNS_ENV, raising=False)
    monkeypatch.delenv(UNAVAILABLE_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(PCSC_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*sscard_pcsc_reader: not inside `python -m reader.pcsc.pcscd run -- ...`*"])
