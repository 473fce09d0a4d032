"""The env error every env module raises (a UserError: one line naming the problem and the fix)."""

from rise_data.errors import UserError


class EnvError(UserError):
    """The env id or spec cannot be used; the message says why and what works."""
