"""The error with which the host side refuses what its user asked for.

A terminal flow's parameter, a command APDU in hex, a PPS TA1 to ask for, a vpcd port or a
control socket path: each library that takes one from its caller checks it before it acts and
raises `InputError` with one line naming the input. `sscard` prints that line and exits with
status 2 (reader.cli.errors); any other exception is a bug and shows its traceback.
"""


class InputError(ValueError):
    """An input the caller gave that cannot be used; the message is one line naming it."""
