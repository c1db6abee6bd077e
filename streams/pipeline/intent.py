"""Purchase intent served with each recommendation: the river model once it has earned it.

Two predictors learn from the DP releases of the shared counts: the purchase rate per
event type (:class:`~model.serving.baseline.NextPurchaseRate`) and the river model per
intent cell (:class:`~online_learning.intent.CellIntent`). Both predictions are kept in
the user's state and scored against that user's next event (prequential log-loss); the
river model serves only once it has made ``INTENT_TRIAL`` scored predictions and its
log-loss over the last 1,000 events beats the rate's, as judged at a batch's start.
"""

from __future__ import annotations

from collections.abc import Sequence

from model.serving.baseline import NextPurchaseRate
from online_learning.intent import CellIntent, intent_cell
from online_learning.prequential import LogLossSnapshot, PrequentialLogLoss
from streams.pipeline.state import EVENT_TYPES, UserState

#: Scored predictions of the river intent model before it may replace the purchase rate.
INTENT_TRIAL = 500


class IntentPredictor:
    """P(the user's next event is a purchase), with both sources' online log-loss."""

    def __init__(
        self, *, rate: NextPurchaseRate | None = None, cell: CellIntent | None = None
    ) -> None:
        self.rate = rate if rate is not None else NextPurchaseRate(n_types=len(EVENT_TYPES))
        self.cell = cell if cell is not None else CellIntent()
        self.loss = {"river": PrequentialLogLoss(), "rate": PrequentialLogLoss()}
        self._river_serves = False

    def start_batch(self) -> None:
        """Decide once per batch which source serves (the check reads two windows)."""
        self._river_serves = self.river_serves()

    def river_serves(self) -> bool:
        """Whether the river intent model has earned its place over the purchase rate."""
        river, rate = (self.loss[name].snapshot() for name in ("river", "rate"))
        return river.n >= INTENT_TRIAL and river.window_log_loss < rate.window_log_loss

    def evaluate(self, last_intent: Sequence[float], *, purchased: bool) -> None:
        """Score the intent last predicted for a user against their event now."""
        if not last_intent:
            return
        river, rate = last_intent
        self.loss["rate"].update_one(rate, purchased)
        if river >= 0:
            self.loss["river"].update_one(river, purchased)

    def predict(self, state: UserState) -> float:
        """The served prediction; both sources' predictions are kept in ``state``."""
        rate = self.rate.predict_one(state.last_type)
        cell = intent_cell(state.last_type, state.session_events, state.session_carts)
        river = self.cell.predict(cell)
        state.last_intent = [-1.0 if river is None else river, rate]
        return river if river is not None and self._river_serves else rate

    def snapshots(self) -> dict[str, LogLossSnapshot]:
        """Online log-loss of each source."""
        return {name: loss.snapshot() for name, loss in self.loss.items()}
