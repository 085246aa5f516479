"""The `sscard` command line."""

from reader.cli.commands import main

__all__ = ["main"]
