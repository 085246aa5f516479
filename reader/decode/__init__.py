"""The decoder: what each APDU of a session means, for people."""

from reader.decode.decoder import Decoder, explain

__all__ = ["Decoder", "explain"]
