"""ISO/IEC 7816-4 vocabulary the whole card speaks: APDUs, status words, BER-TLV, CLA/INS names.

Imports nothing else of `chip`."""
