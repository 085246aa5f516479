"""The payment system directories that list the financial application (docs/decisions.md §6).

PSE `1PAY.SYS.DDF01` (contact): FCI with the directory's SFI, and a directory
EF (SFI 1) whose record lists the application. PPSE `2PAY.SYS.DDF01`
(contactless): the list is in the FCI itself (`BF0C`). No credit application
is listed: this card is debit only.
"""

from chip.apps.financial import AID
from chip.iso.ber import ber_tlv
from chip.kernel.applet import Applet
from chip.kernel.fs import DF, LinearEF
from chip.kernel.records import Records

PSE_NAME = b"1PAY.SYS.DDF01"
PPSE_NAME = b"2PAY.SYS.DDF01"
DIRECTORY_EF = LinearEF(None, 1, "pse.records", "payment system directory")
PSE = DF(None, "PSE", name=PSE_NAME, children=[DIRECTORY_EF])
PPSE = DF(None, "PPSE", name=PPSE_NAME)


def directory_entry(label: bytes) -> bytes:
    """Application template `61`: ADF name, label, priority 1."""
    return ber_tlv(0x61, ber_tlv(0x4F, AID) + ber_tlv(0x50, label) + ber_tlv(0x87, b"\x01"))


class PseApplet(Applet):
    NAME = "pse"
    RECORD_MODES = frozenset((4,))  # EMV: records by number only (EMV Book 1 §11.2)
    ROOT = PSE

    @staticmethod
    def personalize(store, profile, today) -> None:
        store.add("pse.records", Records([ber_tlv(0x70, directory_entry(profile.financial.label.encode("ascii")))]))

    def fci_proprietary(self, node) -> bytes:
        return ber_tlv(0x88, b"\x01") + ber_tlv(0x5F2D, b"zh")


class PpseApplet(Applet):
    NAME = "ppse"
    RECORD_MODES = frozenset((4,))  # EMV: records by number only (EMV Book 1 §11.2)
    ROOT = PPSE

    @staticmethod
    def personalize(store, profile, today) -> None:
        pass

    def fci_proprietary(self, node) -> bytes:
        label = self.store["fin.state"].label.encode("ascii")
        return ber_tlv(0xBF0C, directory_entry(label))
