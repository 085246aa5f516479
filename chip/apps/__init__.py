"""The applications on the chip: the SSSE (LD/T 32 P5) with its medical purse, the PBOC/EMV
financial application, PSE/PPSE, and the PSAM (LD/T 32 P9).

Built on `chip.kernel` and `chip.iso`; never on the contacts."""
