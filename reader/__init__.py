"""sscard's host side: readers, tools and the `sscard` command."""

from .base import Reader
from .sim import SimReader

__all__ = ["Reader", "SimReader"]
