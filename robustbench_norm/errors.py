"""The one exception type users see.

Every mistake a user can make (a bad config value, an unknown name, missing data, a tensor of the
wrong shape) raises :class:`RobustBenchError` with a message that names the offending field and
the fix. The CLI prints such errors without a traceback; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class RobustBenchError(Exception):
    """A problem the user can fix; the message says what and how."""


class NormInputError(RobustBenchError, ValueError):
    """A normalization layer got an input it cannot normalize.

    Also a ``ValueError`` so that code written against ``torch.nn.BatchNorm2d`` (which raises
    ``ValueError`` for a single value per channel in training) keeps working.
    """


class StorageError(RobustBenchError):
    """The machine cannot keep what was computed: a full disk, a read-only folder, a damaged or
    locked store.

    Unlike other user errors it stops a whole run rather than failing one job: every later job
    would hit it too. Whatever was already stored stays; rerunning the same command resumes.
    """
