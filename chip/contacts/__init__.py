"""The card's side of the contacts (ISO/IEC 7816-3, LD/T 32 P2): ATR, PPS, T=0 and T=1.

The T=1 block codec here is the one both ends share. Imports `chip.iso` and `chip.kernel`,
never an application."""
