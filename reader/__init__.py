"""sscard's host side: readers, tools and the `sscard` command."""

from reader.base import Reader
from reader.sim import SimReader

__all__ = ["Reader", "SimReader"]
