"""The card's side of the contacts (ISO/IEC 7816-3, LD/T 32 P2): ATR, PPS, T=0 and T=1.

What both ends share lives here too: the transmission parameters and the times they give
(`timing`), the surface of a sans-I/O end (`end`), the PPS message and the T=1 block codec.
Imports `chip.iso` and `chip.kernel`, never the card OS nor an application: the card's ends
drive the card OS through `end.CardOS`."""
