"""The chips' file trees as the decoder follows them, and the names people give their DFs.

Everything comes from `chip/`: each kind of chip (`chip.card.KINDS`: the social-security
card, a terminal's PSAM) with its MF and DF names, the SSSE's application DFs with their
LD/T 32 V2 table 2 labels and its record files (`chip.apps.ssse_files`). What is added
here is what a reader of a trace needs that a card does not: which file a lone FID or SFI
names when the decoder has not seen where the card is, and how to write a DF name
(text, RID + suffix, or hex).
"""

from chip.apps.financial import FinancialApplet
from chip.apps.ssse import SsseApplet
from chip.apps.ssse_files import APPLICATIONS, DDF, DIR, EF05, EF06, RID
from chip.card import KINDS
from chip.kernel.fs import LINEAR
from reader.decode.values import hex_of, sfi_text

UNKNOWN = object()  # the current DF when the decoder has not seen where the card is
# The applications whose selection changes what a shared command code means (reader.decode.ssse).
FINANCIAL, SSSE = FinancialApplet.NAME, SsseApplet.NAME


def _unique(pairs):
    seen = {}
    for key, node in pairs:
        seen.setdefault(key, []).append(node)
    return {key: nodes[0] for key, nodes in seen.items() if len(nodes) == 1}


class Chip:
    """One kind of chip as the decoder follows it: its MF, DF names and the files a lone FID or SFI names."""

    def __init__(self, kind):
        self.name = kind.name
        self.mf = kind.mf
        self.by_name = kind.by_name  # the DF a name selects
        nodes = [node for node in kind.mf.walk() if node is not kind.mf]
        self.named = {}  # every DF of a name (the PSAM's two ADFs share D15600000590)
        for node in kind.mf.walk():
            if node.is_df and node.name:
                self.named.setdefault(node.name, []).append(node)
        self.fid_guess = _unique((node.fid, node) for node in nodes if node.fid is not None)
        self.sfi_guess = _unique((node.sfi, node) for node in nodes if not node.is_df and node.sfi)


_CHIPS = {name: Chip(kind) for name, kind in KINDS.items()}
CARD, PSAM = _CHIPS["sscard"], _CHIPS["psam"]
MF = CARD.mf
ROOTS = {applet.ROOT: applet.NAME for kind in KINDS.values() for applet in kind.applets}
PSAM_BLOCKS = {applet.NAME: applet.ALGORITHM.block for applet in KINDS["psam"].applets}  # 8 DES, 16 SM4
_PSAM_NODES = frozenset(PSAM.mf.walk())
PSAM_ONLY_NAMES = frozenset(PSAM.by_name) - frozenset(CARD.by_name)  # sx2.sh.社会保障, D15600000590

# The SSSE: application DFs with their V2 table 2 labels; record files of simple-TLV items, the DIR
# (BER-TLV `61` entries), cyclic files of fixed-length untagged records.
V2_LABELS = dict(APPLICATIONS)
ITEM_FILES = frozenset(node for node in DDF.walk() if not node.is_df and node.structure == LINEAR and node is not DIR)
# EF05 and EF06 of the SSSE hold one record per item, in the declared order (chip.apps.ssse_files): record
# number n is the n-th item (docs/card/files.md).
NUMBERED = frozenset((EF05, EF06))

# Names for DF names / AIDs that are not (only) the card's own labels.
AIDS = {
    bytes.fromhex("A000000333010101"): "UnionPay debit",
    bytes.fromhex("A000000333010102"): "UnionPay credit",
    bytes.fromhex("A000000333010103"): "UnionPay quasi-credit",
}


def app_of(node):
    """The applet (chip.card KINDS' NAME) whose DF tree holds `node`, or None (the MF)."""
    while node is not None:
        if node in ROOTS:
            return ROOTS[node]
        node = node.parent
    return None


def name_text(name: bytes) -> str:
    """A DF name as people write it: ASCII/GBK text, RID + suffix, or hex."""
    if name.startswith(RID) and len(name) > len(RID):
        rest = name[len(RID):]
        readable = rest.decode("ascii") if rest.isascii() and rest.decode("ascii").isalnum() else hex_of(rest)
        return f"{hex_of(RID)} {readable}"
    try:
        text = name.decode("gbk")
    except UnicodeDecodeError:
        return hex_of(name)
    if text and text.isprintable() and all(ch.isascii() or "\u4e00" <= ch <= "\u9fff" for ch in text):
        return text
    return hex_of(name)


def label(node) -> str:
    """A DF's label: an SSSE application DF with its V2 table 2 label, a PSAM's DF marked as the PSAM's."""
    if node in V2_LABELS:
        return f"{node.label}: {V2_LABELS[node]}"
    if node in _PSAM_NODES:
        return f"PSAM {node.label}"
    return node.label


def name_label(name: bytes, chip: str | None = None) -> str | None:
    """What a DF name or AID is: a well-known AID, or the chip's own label for it.

    `chip` ("sscard" or "psam") says whose names come first: `sx1.sh.社会保障` is the
    card's SSSE and the PSAM's DES environment (P9 §5). Without it, the card's.
    """
    if name in AIDS:
        return AIDS[name]
    order = (PSAM, CARD) if chip == PSAM.name else (CARD, PSAM)
    for tree in order:
        nodes = tree.named.get(name)
        if nodes:
            return label(nodes[0]) if len(nodes) == 1 else _shared_label(nodes)
    return None


def _shared_label(nodes) -> str:
    """The label of a name several DFs have: the words their labels share at the start and the end."""
    words = [label(node).split() for node in nodes]
    head = 0
    while all(len(w) > head and w[head] == words[0][head] for w in words):
        head += 1
    tail = 0
    while all(len(w) > head + tail and w[-1 - tail] == words[0][-1 - tail] for w in words):
        tail += 1
    return " ".join(words[0][:head] + words[0][len(words[0]) - tail:])


def describe(node) -> str:
    """A file in a command line: a DF's label without its FID, an EF's label and SFI."""
    if node.is_df:
        text = label(node)
        prefix = f"{node.fid:04X} " if node.fid is not None else None
        return text[len(prefix):] if prefix and text.startswith(prefix) else text
    return f"{node.label}, {sfi_text(node.sfi)}" if node.sfi else node.label


def ref(node) -> str:
    """A file by FID and description (a DF without a FID by its label)."""
    return f"{node.fid:04X} ({describe(node)})" if node.fid is not None else node.label
