"""A read-only search for the HTTP API: ranked as a search event of the user would be.

Nothing is applied, contributed, charged or checked: no state, ledger, statistic
or sponsored item changes, and the answer carries no sponsored item.
"""

from __future__ import annotations

from collections.abc import Callable

from model.serving.ranker import ContextRanker, Ranked, RankRequest
from streams.pipeline.crypto import StateCipher
from streams.pipeline.intent import IntentPredictor
from streams.pipeline.ledger import LedgerSealer, UserLedger
from streams.pipeline.state import UserState
from streams.pipeline.working_set import TableReader, WorkingSet


class ReadOnlySearch:
    """Ranks the catalogue for a query with a user's sealed history (none once erased)."""

    def __init__(
        self,
        cipher: StateCipher,
        ledgers: LedgerSealer,
        *,
        seen_every: float,
        ranker: ContextRanker,
        intent: IntentPredictor,
        clock: Callable[[], float],
    ) -> None:
        self._cipher = cipher
        self._ledgers = ledgers
        self._seen_every = seen_every
        self._ranker = ranker
        self._intent = intent
        self._clock = clock

    def __call__(
        self, user: bytes, query: str, *, read_state: TableReader, read_key: TableReader
    ) -> tuple[Ranked, float]:
        """The ranked answer for ``query`` and the user's purchase intent; writes nothing."""
        states = WorkingSet(
            self._cipher,
            self._ledgers,
            read_state=read_state,
            read_key=read_key,
            restore=_keep_state,
            seen_every=self._seen_every,
        )
        state = states.get(user, self._clock())
        [answer] = self._ranker.rank_many([RankRequest(history=tuple(state.items), query=query)])
        return answer, round(self._intent.predict(state), 6)


def _keep_state(state: UserState, ledger: UserLedger | None, now: float) -> None:
    """A read-only opening: the ledger's spend is not applied (nothing is charged)."""
