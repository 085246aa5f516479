"""The shipped profiles (`NAME.toml`), installed as package data."""
