"""The reader's side of the contacts: the activation (resets, ATR timing and acceptance), T=0 and T=1
engines, PPS, ATR explanation and the character-level wire between reader and card."""
