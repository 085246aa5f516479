"""The real PC/SC stack: `PcscReader` (pyscard), the vpcd protocol, `sscard serve`, and the
private pcscd of the tests (`python -m reader.pcsc.pcscd run -- ...`)."""

from reader.pcsc.reader import PcscError, PcscReader, list_readers

__all__ = ["PcscError", "PcscReader", "list_readers"]
