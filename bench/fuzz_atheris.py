"""Coverage-guided fuzzing of `Card.transmit` sequences with atheris (libFuzzer for Python).

    .venv/bin/pip install atheris
    .venv/bin/python bench/fuzz_atheris.py -atheris_runs=100000 [corpus_dir]

Each input is a sequence of commands: one control byte, then (for an APDU) a length byte and
that many bytes. The control byte picks: a reset in T=0 or T=1, one of the card's real SELECTs /
VERIFYs / reads (so the fuzzer reaches the applications quickly), or the raw APDU that follows.
The card starts from one of the personalised states of tests/test_fuzz.py (fresh, active,
locked, last tries), and every answer goes through the same oracle as the hypothesis tests:
no exception escapes `Card.transmit`, never `6F00`, an error SW changes no persistent state,
no lock lifted, no try counter grown, no protected record without authorisation. A violation
raises, and libFuzzer saves the crashing input.

Not part of the test suite: it runs until stopped or `-atheris_runs`.
"""

import os
import sys

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "tests")]

with atheris.instrument_imports():
    import chip  # noqa: F401  (instrumented: the card OS and applets)
    from chip import image

import collections  # noqa: E402

import test_fuzz as oracle  # noqa: E402

BASE_NAMES = sorted(oracle.BASES)
BLOBS = {name: oracle.base_image(name) for name in BASE_NAMES}
CANNED = oracle.SELECTS + oracle.READS + [
    bytes.fromhex("0020000003123456"), bytes.fromhex("0020000003999999"),
    b"\x00\x20\x00\x80\x08" + oracle.pin_block("000000"), b"\x00\x20\x00\x80\x08" + oracle.pin_block("999999"),
    bytes.fromhex("0084000008"), oracle.GPO, oracle.GPO_SM4,
    bytes((0x80, 0xAE, 0x80, 0x00, len(oracle.CDOL1))) + oracle.CDOL1 + b"\x00",
]
STATS = collections.Counter()


def one_input(data: bytes) -> None:
    if not data:
        return
    card = oracle.card_from(BLOBS[BASE_NAMES[data[0] % len(BASE_NAMES)]])
    protected = oracle.protected_values(card)
    session = oracle.Session()
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
        before, enc_before = oracle.dump(card), image.encode(card.store.objects, 0)
        response = card.transmit(apdu)
        STATS["apdus"] += 1
        oracle.check_step(apdu, response, before, oracle.dump(card), enc_before,
                          image.encode(card.store.objects, 0), session, protected, STATS)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        print(f"fuzz: {STATS['apdus']} APDUs, 0 exceptions, 0 6F00", file=sys.stderr)


if __name__ == "__main__":
    main()
