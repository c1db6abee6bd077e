"""The demo's own model: a small transformer ranker trained on the first part of its log.

Why: a demo answered by the stream baseline alone shows the plumbing, not the
product. The first part of the replayed log stands for the shop's history: while
it is replayed (and answered by the baseline), a small sequence transformer
trains on it in a process of its own, and is then published as a shop would
publish one (stored, announced on the models topic, made current). The replay
holds until then, and the rest of the log, which the model never saw, is
answered by the served ranker, so the quality the live view shows is honest.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import logging
import multiprocessing
import os
import time
from pathlib import Path

from streams.ops.event_log import CSV_COLUMNS, read_events
from streams.settings import Settings

log = logging.getLogger(__name__)

#: Share of the replayed events that is the shop's history, and the most of them.
HISTORY_SHARE = 0.5
MAX_HISTORY_EVENTS = 20_000
#: Small and quick: about 25 s on two CPU cores for the bundled log's first half.
DEMO_SCORER: dict[str, int] = {"d_model": 64}
DEMO_EPOCHS = 3
DEMO_MAX_MINUTES = 1.0
#: Scheduling priority of the training process, below the broker's and the worker's.
NICENESS = 10
#: After this long the demo goes on with the baseline and says why.
TRAIN_TIMEOUT_SECONDS = 180.0


def history_size(events: int) -> int:
    """How many of the ``events`` replayed are the history: half of them, at most 20,000.

    Examples:
        >>> history_size(38_741), history_size(1_000_000)
        (19370, 20000)
    """
    return min(int(events * HISTORY_SHARE), MAX_HISTORY_EVENTS)


def write_history(path: Path, out: Path, *, events: int) -> None:
    """Write the first ``events`` events of ``path`` (CSV or JSONL) to ``out`` as a gzipped CSV."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt", newline="") as text:
        writer = csv.writer(text)
        writer.writerow(CSV_COLUMNS)
        for event in read_events(path, limit=events):
            writer.writerow(["" if event.get(c) is None else event[c] for c in CSV_COLUMNS])


class DemoTraining:
    """Trains and publishes the demo's model in a child process (``spawn``: no shared state).

    Args:
        settings: the deployment the model is published to.
        data: the replayed log; its first ``events`` events are the history.
        run_dir: the demo run's folder: history, checkpoints and ``train.log`` go there.
    """

    def __init__(self, settings: Settings, data: Path, run_dir: Path, *, events: int) -> None:
        self.run_dir = run_dir
        self.log_file = run_dir / "train.log"
        self.started_at = time.monotonic()
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(
            target=_train_and_publish,
            args=(settings, data, events, run_dir),
            name="intentstream-demo-training",
            daemon=True,
        )
        self._process.start()
        self._settings = settings

    def epochs_done(self) -> int:
        """Epochs checkpointed so far, for the live view."""
        return sum(1 for _ in (self.run_dir / "model").glob("epoch-*"))

    async def served_version(self) -> str | None:
        """Wait for the child; the version it published, or None (logged why) if it did not."""
        deadline = self.started_at + TRAIN_TIMEOUT_SECONDS
        while self._process.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        if self._process.is_alive():
            self.stop()
            log.error(
                "the demo model took over %.0f s to train: the baseline answers on (log: %s)",
                TRAIN_TIMEOUT_SECONDS,
                self.log_file,
            )
            return None
        if self._process.exitcode != 0:
            log.error("the demo model failed to train or publish: see %s", self.log_file)
            return None
        # Imported here, not above: the child imports this module before it lowers
        # its priority, so the module keeps its imports light (torch comes with this).
        from streams.kafka.announce import store_of

        return store_of(self._settings).current()

    def stop(self) -> None:
        """End the child if it still runs (Ctrl-C, timeout)."""
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)


def _train_and_publish(settings: Settings, data: Path, events: int, run_dir: Path) -> None:
    """The child's work: write the history, train, choose the mix, publish the chosen epoch.

    At a lower priority, set before the heavy imports: the broker and the worker
    answering the history come first (the first recommendation must not wait for
    training), and once the replay holds it has the machine to itself. Everything
    it says goes to ``train.log``: the demo's terminal is the live view.
    """
    os.nice(NICENESS)
    run_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=run_dir / "train.log",
        level=logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        force=True,
    )
    try:
        _train(settings, data, events, run_dir)
    except Exception:
        log.exception("the demo model was not trained and published")
        raise SystemExit(1) from None


def _train(settings: Settings, data: Path, events: int, run_dir: Path) -> None:
    from model.checkpoint import best_checkpoint
    from model.training.fit import fit
    from model.training.train import TrainConfig
    from streams.kafka.announce import publish

    history = run_dir / "history.csv.gz"
    write_history(data, history, events=events)
    model_dir = run_dir / "model"
    config = TrainConfig(epochs=DEMO_EPOCHS, max_minutes=DEMO_MAX_MINUTES)
    fit(history, model_dir, train_config=config, scorer_options=DEMO_SCORER, progress=False)
    chosen = best_checkpoint(model_dir)
    if chosen is None:
        raise RuntimeError(f"training wrote no checkpoint in {model_dir}")
    announcement = publish(settings, chosen, parent=None)
    log.info("published %s from %s", announcement.version, chosen)
