"""The env error every env module raises (a ValueError: one line naming the problem and the fix)."""


class EnvError(ValueError):
    """The env id or spec cannot be used; the message says why and what works."""
