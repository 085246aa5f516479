"""How `sscard` answers a mistake the user made: one line on stderr and a non-zero exit status.

A bad profile, a missing or damaged image, bad hex, options that do not go together: the
command ends with `sscard: error: ...` and exit status 2 (`main` catches `USER_ERRORS`), or,
for what the card or the contacts refused, a `refused:` or link-error line and exit status 1.
Anything else is a bug in sscard and shows its traceback.
"""

import sys

from chip import ImageError, ProfileError
from chip.iso.sw import meaning
from chip.kernel.store import StorageFailure
from reader.errors import InputError
from reader.pcsc.reader import PcscError
from reader.terminals.payment import KernelError
from reader.terminals.psam import PsamError
from reader.terminals.ssse import TerminalError
from reader.traces.format import TraceError


class UsageError(Exception):
    """A mistake in what the user asked for; printed as one line."""


# The errors a user causes, each said in one line with exit status 2: a usage error, an input a
# library refuses (hex, a flow parameter, a vpcd port, a PPS TA1: InputError, in the library's
# words), a bad profile or card image, a card image that cannot be written (StorageFailure), a PSAM,
# terminal or kernel that refuses the inputs, no PC/SC service or reader, a bad trace.
USER_ERRORS = (UsageError, InputError, ProfileError, ImageError, StorageFailure, PsamError, TerminalError,
               KernelError, PcscError, TraceError)


def link_failure(exc, command: bytes | None) -> int:
    """A LinkError on the simulated contacts: one line (what was being sent), exit status 1."""
    where = f" (sending {command[:5].hex(' ').upper()}{' ...' if len(command) > 5 else ''})" if command else ""
    print(f"sscard: error: link error on the simulated contacts{where}: {exc}", file=sys.stderr)
    return 1


def refused(sw: int) -> int:
    """The card refused the operation: its status word and meaning (ISO/IEC 7816-4 §5.1.3), exit status 1."""
    print(f"refused: {sw:04X} {meaning(sw)}", file=sys.stderr)
    return 1
