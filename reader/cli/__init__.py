"""The `sscard` command line."""

from reader.cli.parser import main

__all__ = ["main"]
