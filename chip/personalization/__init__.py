"""Personalisation: the TOML profile a card is made from, the shipped profiles, the citizen
identity number rules and the Luhn check of card numbers."""
