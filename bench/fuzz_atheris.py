"""Coverage-guided fuzzing of `Card.transmit` sequences with atheris (libFuzzer for Python).

    .venv/bin/pip install atheris
    .venv/bin/python bench/fuzz_atheris.py -atheris_runs=100000 [corpus_dir]

Each input is a sequence of commands: one control byte, then (for an APDU) a length byte and
that many bytes. The control byte picks: a reset in T=0 or T=1, one of the card's real SELECTs /
VERIFYs / reads (so the fuzzer reaches the applications quickly), or the raw APDU that follows.
The card starts from one of the personalised states of tests/test_fuzz.py (fresh, active,
loss-locked, permanently blocked, last tries), and every answer goes through the same oracle as
the hypothesis tests: no exception escapes `Card.transmit`, no `6F00` but the one LD/T 32 P5
§6.6.4 defines (GET RESPONSE with nothing waiting), an error SW changes no persistent state, no
lock set or lifted, no try counter grown, no protected record without authorisation. The canned
commands include the terminal flows of the hypothesis tests (GET CHALLENGE + EXTERNAL
AUTHENTICATE with the oracle's right cryptograms, then an UPDATE), since the card's random
source is deterministic. A violation raises, and libFuzzer saves the crashing input.

Not part of the test suite: it runs until stopped or `-atheris_runs`.
"""

import os
import sys

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "tests")]

with atheris.instrument_imports():
    import chip  # noqa: F401  (instrumented: the card OS and applets)
    from chip.kernel import image

import collections  # noqa: E402

import test_fuzz as fuzz  # noqa: E402  (its oracle: tests/oracle.py, tests/ssse_helpers.py)

BASE_NAMES = sorted(fuzz.BASES)
BLOBS = {name: fuzz.base_image(name) for name in BASE_NAMES}
CANNED = fuzz.SELECTS + fuzz.READS + fuzz.UPDATES + [
    bytes.fromhex("0020000003123456"), bytes.fromhex("0020000003999999"),
    b"\x00\x20\x00\x80\x08" + fuzz.pin_block("000000"), b"\x00\x20\x00\x80\x08" + fuzz.pin_block("999999"),
    bytes.fromhex("0084000008"), bytes.fromhex("00C0000000"), fuzz.GPO, fuzz.GPO_SM4,
    bytes((0x80, 0xAE, 0x80, 0x00, len(fuzz.CDOL1))) + fuzz.CDOL1 + b"\x00",
    fuzz.sh.Terminal.init_purchase(100, 50, 50), fuzz.sh.Terminal.init_load(500), bytes.fromhex("B056010002"),
] + [fuzz.right_auth(key)[1] for key in fuzz.AUTH_KEYS]  # each right after a GET CHALLENGE Le 08
STATS = collections.Counter()


def one_input(data: bytes) -> None:
    if not data:
        return
    card = fuzz.card_from(BLOBS[BASE_NAMES[data[0] % len(BASE_NAMES)]])
    protected = fuzz.protected_values(card)
    session = fuzz.Session()
    card.power_on(1)
    i = 1
    while i < len(data):
        control = data[i]
        i += 1
        if control < 8:
            card.power_on(control & 1)
            session.reset()
            continue
        if control < 128:
            apdu = CANNED[control % len(CANNED)]
        else:
            n = data[i] if i < len(data) else 0
            apdu = data[i + 1:i + 1 + n]
            i += 1 + n
        before, enc_before = fuzz.dump(card), image.encode(card.store.objects, 0)
        response = card.transmit(apdu)
        STATS["apdus"] += 1
        after = fuzz.dump(card)
        fuzz.check_step(apdu, response, before, after, enc_before, image.encode(card.store.objects, 0), session,
                        protected, STATS)
        if after != before:
            protected = fuzz.protected_values(card)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        print(f"fuzz: {STATS['apdus']} APDUs, 0 exceptions, 0 6F00 but the designed one "
              f"({STATS['designed 6F00']} GET RESPONSE with nothing waiting)", file=sys.stderr)


if __name__ == "__main__":
    main()
