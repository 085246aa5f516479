"""The file system declared as data (after pySim's `filesystem.py`).

DFs and EFs are plain declarations: FID, SFI, DF name, structure, the
persistent object that holds an EF's content, and access rules. The tree is
static and shared by every card; per-card content lives in the card's `Store`
under each EF's `key`. SELECT and READ RECORD are generic code walking these
declarations, so a new application only declares its files.
"""

from chip.iso.ber import ber_tlv

# Access rules (V2 tables 3-8): a tuple of alternatives, any one of which suffices; each
# alternative a tuple of conditions that must all hold. A condition is `PIN` (the application's
# PIN verified) or the name of a key (chip.apps.keys) externally authenticated in the current DF.
PIN = "pin"
ALWAYS = ()  # free ("无")
NEVER = (("never",),)  # no condition can be satisfied ("不允许改写": only the COS writes)


def key(name: str) -> tuple:
    """External authentication with key `name` (e.g. RKSSSE for EF07, V2 table 3)."""
    return ((name,),)


def pin_or(name: str) -> tuple:
    """"PIN 或 RKx": the PIN verified, or external authentication with key `name`."""
    return ((PIN,), (name,))


def pin_and(name: str) -> tuple:
    """"PIN & RKx": both."""
    return ((PIN, name),)


LINEAR = "linear"  # variable-length simple-TLV records (变长记录)
CYCLIC = "cyclic"  # fixed-length untagged records, record 1 the newest (P3 §5.3.2)
TRANSPARENT = "transparent"


class Node:
    __slots__ = ("fid", "label", "parent")

    is_df = False

    def __init__(self, fid: int | None, label: str):
        self.fid = fid
        self.parent: DF | None = None
        self.label = label

    def path(self) -> str:
        parts: list[str] = []
        node: Node | None = self
        while node is not None:
            parts.append(f"{node.fid:04X}" if node.fid is not None else node.label)
            node = node.parent
        return "/".join(reversed(parts))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label} {self.path()}>"


class EF(Node):
    """An elementary file; `key` names its content in the card's store."""

    __slots__ = ("capacity", "items", "key", "read", "sfi", "size", "structure", "update")

    def __init__(self, fid, sfi, key, structure, label, read=ALWAYS, update=NEVER, items=(), capacity=0, size=0):
        super().__init__(fid, label)
        self.sfi = sfi
        self.key = key
        self.structure = structure
        self.read = read
        self.update = update
        self.items = {item.tag: item for item in items}  # linear: the items a record may hold
        self.capacity = capacity  # most records the file holds (linear: its items; cyclic: its depth)
        self.size = size  # transparent: bytes; cyclic: the record length

    def fcp(self) -> bytes:
        """FCP template `62`: file descriptor, FID, SFI."""
        # ISO 7816-4 file descriptor byte: 05 linear variable with simple-TLV records, 01 transparent
        descriptor = {LINEAR: b"\x05\x21", CYCLIC: b"\x06\x21"}.get(self.structure, b"\x01\x21")
        body = ber_tlv(0x82, descriptor)
        if self.fid is not None:
            body += ber_tlv(0x83, self.fid.to_bytes(2, "big"))
        if self.sfi:
            body += ber_tlv(0x88, bytes((self.sfi << 3,)))
        return ber_tlv(0x62, body)


def LinearEF(fid, sfi, key, label, items=(), **rules) -> EF:
    return EF(fid, sfi, key, LINEAR, label, items=items, capacity=rules.pop("capacity", len(items)), **rules)


def CyclicEF(fid, sfi, key, label, record_length: int, depth: int, **rules) -> EF:
    return EF(fid, sfi, key, CYCLIC, label, capacity=depth, size=record_length, **rules)


def TransparentEF(fid, sfi, key, label, **rules) -> EF:
    return EF(fid, sfi, key, TRANSPARENT, label, **rules)


class DF(Node):
    """A dedicated file: MF, DDF, DF or ADF. `name` is its DF name (AID), if any."""

    __slots__ = ("by_fid", "by_sfi", "children", "name")

    is_df = True

    def __init__(self, fid, label, name: bytes | None = None, children=()):
        super().__init__(fid, label)
        self.name = name
        self.children = list(children)
        self.by_fid = {}
        self.by_sfi = {}
        for child in self.children:
            child.parent = self
            if child.fid is not None:
                self.by_fid[child.fid] = child
            if not child.is_df and child.sfi:
                self.by_sfi[child.sfi] = child

    def fcp(self) -> bytes:
        """FCP template `62` of a DF: descriptor `38`, FID, DF name."""
        body = ber_tlv(0x82, b"\x38")
        if self.fid is not None:
            body += ber_tlv(0x83, self.fid.to_bytes(2, "big"))
        if self.name:
            body += ber_tlv(0x84, self.name)
        return ber_tlv(0x62, body)

    def walk(self):
        yield self
        for child in self.children:
            if child.is_df:
                yield from child.walk()
            else:
                yield child


MF_FID = 0x3F00


# -- SELECT: which file a selection names from the current DF (ISO/IEC 7816-4 §7.1.1, LD/T 32 P5 §6.11) --
# Pure functions over the declared tree, shared by the card OS (chip.card) and the trace decoder: None
# when no file answers (the card says 6A82). `current` is the current DF; None when it is not known
# (a decoder that has not seen it), which only a DF name or the MF's FID can then resolve.
def _nearest(node, current):
    """Of the DFs sharing `node`'s name (the PSAM's two ADFs, P9 §5), the one next to the DF
    `current`: a child of it or of its parent; else `node`."""
    if current is None or node.parent is current or node is current:
        return node
    for df in (current, current.parent):
        for child in df.children if df is not None else ():
            if child.is_df and child.name == node.name:
                return child
    return node


def select_by_name(mf, names: dict, name: bytes, next_occurrence, current):
    """P1 04: the DF of DF name `name` among `names` (name -> DF); empty, the MF. Without an exact
    match, or asked for the next occurrence (P2 02), a right-truncated name: the first DF whose
    name starts with it, or the one after `current` among them."""
    if not name:
        return mf
    node = names.get(bytes(name))  # the APDU's data may be a bytearray
    if node is not None and not next_occurrence:
        return _nearest(node, current)
    matches = [n for n in names.values() if n.name.startswith(name)]
    if next_occurrence and current in matches:
        matches = matches[matches.index(current) + 1:]
    return matches[0] if matches else None


def select_by_fid(mf, current, fid: int):
    """P1 00: the MF (3F00), else a file of `current`, else one of its parent's (a sibling DF
    or EF), else the parent itself."""
    if fid == MF_FID:
        return mf
    if current is None:
        return None
    node = current.by_fid.get(fid)
    up = current.parent
    if node is None and up is not None:
        node = up.by_fid.get(fid)
        if node is None and up.fid == fid:
            node = up
    return node


def select_child(current, fid: int, is_df: bool):
    """P1 01 (a DF) / 02 (an EF): the file `fid` of `current`, if it is of that kind."""
    node = current.by_fid.get(fid)
    return node if node is not None and node.is_df == is_df else None


def select_parent(mf, current):
    """P1 03: the parent of `current` (the MF's is the MF)."""
    return current.parent or mf


def select_by_path(mf, start, path: bytes):
    """P1 08 (`start` the MF) / 09 (`start` the current DF): the file at the end of the path of
    2-byte FIDs, each a child of the one before; a path from the MF may open with 3F00."""
    node = start
    for i in range(0, len(path), 2):
        fid = path[i] << 8 | path[i + 1]
        if i == 0 and fid == MF_FID and start is mf:
            continue
        node = node.by_fid.get(fid) if node.is_df else None
        if node is None:
            return None
    return node


def master_file(applications) -> DF:
    """The MF `3F00` with the applications' top DFs as children."""
    return DF(MF_FID, "MF", children=applications)
