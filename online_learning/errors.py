"""Exceptions raised by the online_learning package.

A bad *version* or *announcement* is an expected event while serving: the caller
keeps the model it has, records the rejection and goes on. These exceptions say
which check failed, so that a worker never crashes on someone else's bad upload.
"""

from __future__ import annotations


class OnlineLearningError(Exception):
    """Base class of every error the online_learning package raises on purpose."""


class RegistryError(OnlineLearningError):
    """The model store cannot do what was asked (``online_learning.registry``).

    For example, publishing a version id that is already in the store, or
    rolling back to a version that was rejected.
    """


class UnknownVersion(RegistryError):
    """No version of that id is in the store (or the id is not a valid version id)."""


class ModelRejected(RegistryError):
    """A stored version must not be served: the previous model is kept.

    Raised when its manifest is missing or unreadable, a file is missing, has the
    wrong size or SHA-256, its ``meta.json`` does not parse, its weights do not
    load into the configured model, or it was marked rejected before.

    Attributes:
        version: the rejected version id.
        reason: what failed, for the operator (``intentstream model list``).
    """

    def __init__(self, version: str, reason: str) -> None:
        super().__init__(f"model version {version} rejected: {reason}")
        self.version = version
        self.reason = reason


class BadAnnouncement(OnlineLearningError, ValueError):
    """Bytes on the models topic are not a valid model version announcement.

    Also a :class:`ValueError`, as building an :class:`Announcement` from bad
    values in code raises it too.
    """


class BadSignature(OnlineLearningError):
    """An announcement is unsigned, or its signature does not verify under this deployment's key.

    Workers refuse such an announcement (``online_learning.signing``): whoever can write
    to the models topic must not be able to choose what every worker serves.
    """
