"""The text files a user names on the command line (traces, scriptor scripts, JUnit reports):
read or written whole, every problem one line naming the file."""

import os

from chip.inputs import read_regular
from reader.cli.errors import UsageError

TEXT_NUL_SCAN = 8192  # a NUL byte in the first 8 KiB: a binary file


def read_text(path: str, what: str) -> str:
    """A text file the user named (a trace, a scriptor script): its UTF-8 text, or one line naming the
    file and what is wrong with it."""
    data = read_regular(path, what, UsageError)
    if b"\0" in data[:TEXT_NUL_SCAN]:
        raise UsageError(f"{path}: a binary file (it has NUL bytes), not a {what} (UTF-8 text)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {data[exc.start]:02X} at offset {exc.start}); "
                         f"a {what} is UTF-8 text") from None


def check_output(path: str, what: str) -> None:
    """Refuse, before any work is done, an output file that cannot be created (missing folder, a folder)."""
    folder = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a folder; give a file name for the {what}")
    if not os.path.isdir(folder):
        why = f"{folder} is not a folder" if os.path.exists(folder) else f"no such folder {folder}"
        raise UsageError(f"{path}: cannot write the {what}: {why}")


def write_text(path: str, text: str, what: str) -> None:
    check_output(path, what)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the {what} ({exc.strerror})") from None
