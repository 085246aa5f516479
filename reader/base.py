"""The `Reader` interface every reader implements: in-process, PC/SC, wire.

Tools, flows and tests are written against this interface only, so the same
script runs on the simulator and on a real card in a real reader.
"""

from abc import ABC, abstractmethod


class Reader(ABC):
    @abstractmethod
    def reset(self) -> bytes:
        """Power the card (or warm-reset it) and return its ATR."""

    @abstractmethod
    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU; return response data followed by SW1 SW2."""

    @abstractmethod
    def power_off(self) -> None:
        """Remove power from the card."""
