"""The card's silences: the supply going away mid-write, a command to a card never powered, and
a card that does not answer a command.

Both end a command with no response at all, which is why they are exceptions and not status
words: a card without power answers nothing (ISO/IEC 7816-3 §6: contacts are activated before a
reset and deactivated at the end). The card OS (chip.card), the store that makes writes durable
(chip.kernel.store) and the card's protocol ends (chip.contacts) let them through to whoever
holds the card, as a reader sees a card go mute.
"""


class CardNotPowered(Exception):
    """A command was sent to a card that is not powered (call reset() first)."""


class PowerLoss(Exception):
    """Simulated loss of power during a persistent write.

    `landed` tells whether the new state had already become durable when the
    power went (a cut after the atomic rename); the store keeps its in-memory
    copy equal to what is durable either way.
    """

    def __init__(self, point: str, landed: bool):
        super().__init__(f"power lost at {point}")
        self.point = point
        self.landed = landed


class CardMute(Exception):
    """The card gives no answer to this command (an injected `mute` fault, chip.faults): its
    protocol ends send nothing, and the reader's waiting time runs out."""
