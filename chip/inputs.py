"""Files a user names (a profile, a trace, a script): read only when they are regular files.

One guard for every such file, so a folder, a FIFO or a device given by mistake is one line
naming the path and never a hang or a traceback. Callers give the noun for their messages
and their own error class (ProfileError, the CLI's usage error). Card images have a stricter
reader of their own (chip.kernel.image: bounded, never following a swapped-in FIFO).
"""

import os
import stat


def read_regular(path, what: str, error: type[Exception], *, hint: str = "", missing: str | None = None) -> bytes:
    """The bytes of the regular file at `path`, or `error` with one line: `missing` (when given) for a
    file that does not exist, else "cannot read WHAT (reason)", "is a folder, not a WHAT" and "is not
    a regular file, so not a WHAT", each followed by `hint`."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {missing}" if missing else f"{path}: cannot read {what} (No such file or directory)") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path}: is a folder, not a {what}{hint}")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: is not a regular file, so not a {what}{hint}")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror})") from None
