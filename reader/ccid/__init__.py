"""A serial CCID reader (GemPC Twin framing) that Debian's pcscd and libccid drive over a pty (docs/ccid.md).

messages (the CCID messages, USB CCID rev 1.1 §6), firmware (the slots, TPDU level), serial (the
GemPC Twin framing, the reader variants), pty (the pseudo-terminal adapter); `python -m reader.ccid`
serves one card (and a PSAM in the SEC1210's SAM slot).
"""
