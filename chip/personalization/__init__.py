"""Personalisation: the TOML profile a card is made from, the shipped profiles, and the
citizen identity number rules."""
