"""What a response belongs to: the command it answers and what the card's state will become.

A command's handler makes a `Context`; the decoder keeps it until the response comes, then
decodes the data with the layout the context names and applies the state change (the
current DF or EF, the transaction) once the status word says the card made it.
"""


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

