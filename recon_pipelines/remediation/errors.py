"""How a delivery failed decides what happens to the outbox row."""


class TransientDeliveryError(Exception):
    """The destination is unreachable or overloaded (connection error, 429, 5xx): try again later."""


class PermanentDeliveryError(Exception):
    """The destination refused the message (bad channel, bad token, 4xx): retrying cannot help."""
