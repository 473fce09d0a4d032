"""The one base class for what the user did wrong.

Every error meant for the user (a bad option, a store that is not one, a missing file) derives from
:class:`UserError`; its message is one line naming the problem and the fix, and both CLIs print it and
exit 2 (1 for :class:`~rise_data.store.format.CorruptStoreError`: invalid data). Anything else that
reaches a command line is a bug in rise and exits 3 with its traceback.
"""

__all__ = ["UserError"]


class UserError(ValueError):
    """The user's input cannot be used; the message says why and what works.

    A ``ValueError`` so that library callers who catch ``ValueError`` keep working.
    """
