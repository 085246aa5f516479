"""sscard's card side: everything on the card side of the contacts.

`Card` is the public entry point (see README): personalise with
`Card.from_profile(...)`, reopen with `Card.open(path)`.
"""

from chip.card import Card
from chip.kernel.image import ImageError
from chip.kernel.power import CardNotPowered, PowerLoss
from chip.personalization.profile import ProfileError, load_profile

__all__ = ["Card", "CardNotPowered", "ImageError", "PowerLoss", "ProfileError", "load_profile"]
