"""sscard's card side: everything on the card side of the contacts.

`Card` is the public entry point (see README): personalise with
`Card.from_profile(...)`, reopen with `Card.open(path)`.
"""

from .card import Card, CardNotPowered
from .image import ImageError
from .profile import ProfileError, load_profile
from .store import PowerLoss

__all__ = ["Card", "CardNotPowered", "ImageError", "PowerLoss", "ProfileError", "load_profile"]
