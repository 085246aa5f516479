"""What a response belongs to: the command it answers and what the card's state will become.

A command's handler makes a `Context`; the decoder keeps it until the response comes, then
decodes the data with the layout the context names and applies the state change (the
current DF or EF, the transaction) once the status word says the card made it.
"""

from chip.iso.ins import NAMES, P1_NAMES, code


def command_name(cmd, by_p1: bool = False) -> str:
    """The command's name in chip.iso.ins, by the code of its CLA and INS (the code that dispatched
    it to its handler); `by_p1`: the name P5 §7 gives that code with this P1 (P1_NAMES)."""
    command = code(cmd.cla, cmd.ins)
    return P1_NAMES[(command, cmd.p1)] if by_p1 else NAMES[command]


class Context:
    """The command's kind, first line, and what the card state will become."""

    __slots__ = ("applied", "by_name", "cmd", "ef", "kind", "layout", "mode", "node", "sfi", "title")

    def __init__(self, kind: str, title: str = "", cmd=None):
        self.kind = kind
        self.title = title
        self.cmd = cmd
        self.node = None  # SELECT target (None: not a file this decoder knows)
        self.by_name = False
        self.ef = None  # record file of READ/UPDATE RECORD, READ/UPDATE BINARY
        self.sfi = 0
        self.mode = None  # READ RECORD addressing mode; CIPHER DATA's chip.apps.psam.CipherMode
        self.layout = None  # the answer's fixed layout ("fields")
        self.applied = False

