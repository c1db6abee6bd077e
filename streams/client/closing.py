"""A client that leaving its ``with`` block closes: the producer's and the consumer's."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class ClosedOnExit(abc.ABC):
    """``with client:`` hands out the client itself and, however the block ends, closes it."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._leave(clean=exc_type is None)

    @abc.abstractmethod
    def _leave(self, *, clean: bool) -> None:
        """Close the client at the end of its ``with`` block.

        Args:
            clean: The block ended without an exception (one it raised stays the one raised).
        """
