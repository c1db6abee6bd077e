"""Offline evaluation of next-item scorers under the SR-GNN protocol.

Every test case is a session prefix and the item that followed it; a scorer ranks
ALL items for each prefix and :class:`~model.evaluation.metrics.RankingMetrics` reports
P@20, MRR@20, HR@10 and NDCG@10 in percent. :func:`run_evaluation` is the whole
pipeline for one data set and returns a markdown table beside the published
numbers (``../shared/data/README.md``); the ``intentstream evaluate`` command
calls it, e.g. ``run_evaluation(Path("../shared/data/diginetica"), progress=True)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from rich.console import Console
from rich.progress import track

from model.checkpoint import Checkpoint, load_checkpoint
from model.evaluation.metrics import METRIC_NAMES, RankingMetrics, Ties
from model.ranking.knn import Popularity, SessionKNN
from model.ranking.ranker import served_ranker
from model.sessions import Case, leave_last_out, load_sessions, load_test_cases, prefix_cases
from model.vocab import ItemVocab

logger = logging.getLogger(__name__)

#: Published P@20 / MRR@20 (percent) per data set, keyed by the data folder's name.
#: Diginetica: the SR-GNN split, numbers as reported by each paper.
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "diginetica": {
        "GRU4Rec": {"P@20": 29.45, "MRR@20": 8.33},
        "STAMP": {"P@20": 45.64, "MRR@20": 14.32},
        "NARM": {"P@20": 49.70, "MRR@20": 16.17},
        "SR-GNN": {"P@20": 50.73, "MRR@20": 17.59},
        "GCE-GNN": {"P@20": 54.22, "MRR@20": 19.04},
    },
}

#: Extra columns :func:`evaluation_table` shows when a row has them (seconds).
TIME_COLUMNS: dict[str, str] = {"fit_seconds": "fit s", "eval_seconds": "eval s"}


class Scorer(Protocol):
    """Anything that scores a batch of encoded prefixes over every item index."""

    def score_many(self, prefixes: list[list[int]], /) -> torch.Tensor:
        """``(B, N)`` float scores, ``N = len(vocab)``; higher is better."""
        ...


@dataclass(frozen=True)
class EvalData:
    """Training sequences and test cases of one data set, with their vocabulary.

    Attributes:
        name: The data set's name (its folder, or the file's stem).
        train: Training sequences as item indices of ``vocab``, oldest first.
        cases: Test cases as item ids (prefix, next item).
        vocab: Built from ``train``; test items missing from it encode as 0.
        train_types: The event type of each item of ``train`` (``view``,
            ``purchase``...), for purchase labels; empty when not known.
    """

    name: str
    train: list[list[int]]
    cases: list[Case]
    vocab: ItemVocab
    train_types: list[list[str]] = field(default_factory=list)


#: Builds a scorer from the training side of an :class:`EvalData`.
ScorerFactory = Callable[[EvalData], Scorer]


def load_protocol(data: Path) -> EvalData:
    """Training sequences and test cases of a data folder or canonical events file.

    * A folder with ``test_cases.tsv.gz`` (the SR-GNN split, e.g. ``diginetica/``):
      the sessions of ``train.csv.gz`` and those test cases.
    * A folder with ``test.csv.gz`` (a split in time, e.g. ``yoochoose-100k/``): every
      prefix of every test session, its items unknown to training dropped first.
    * Any other folder holding ``train.csv.gz``, or a canonical events file:
      leave-last-out, each session's last item is its test target
      (:func:`model.sessions.leave_last_out`).

    Args:
        data: The folder or file.

    Returns:
        The encoded training sequences, the cases and the vocabulary.

    Raises:
        FileNotFoundError: If ``data`` holds neither layout.
    """
    if data.is_dir() and (data / "test_cases.tsv.gz").is_file():
        sessions = load_sessions(data / "train.csv.gz")
        train = [session.items for session in sessions]
        cases = load_test_cases(data / "test_cases.tsv.gz")
        name = data.name
    elif data.is_dir() and (data / "test.csv.gz").is_file():
        sessions = load_sessions(data / "train.csv.gz")
        train = [session.items for session in sessions]
        known = {item for session in train for item in session}
        test = [[i for i in s.items if i in known] for s in load_sessions(data / "test.csv.gz")]
        cases = list(prefix_cases(test))
        name = data.name
    elif data.is_file() or (data / "train.csv.gz").is_file():
        path = data if data.is_file() else data / "train.csv.gz"
        sessions = load_sessions(path)
        train, cases = leave_last_out(sessions)
        name = data.name if data.is_dir() else path.name.split(".")[0]
    else:
        raise FileNotFoundError(f"{data}: no test_cases.tsv.gz, train.csv.gz or events file")
    vocab = ItemVocab.build(train)
    logger.info(
        "loaded %s: %d training sequences, %d items, %d test cases",
        name,
        len(train),
        len(vocab) - 1,
        len(cases),
    )
    # One training sequence per session, its first items (leave-last-out drops the last).
    types = [s.types[: len(items)] for s, items in zip(sessions, train, strict=True)]
    return EvalData(
        name=name,
        train=[vocab.encode(seq) for seq in train],
        cases=cases,
        vocab=vocab,
        train_types=types,
    )


def encode_cases(cases: Sequence[Case], vocab: ItemVocab) -> tuple[list[list[int]], torch.Tensor]:
    """Prefixes as index lists (unknown items dropped) and ``(B,)`` int64 target indices.

    An unknown target encodes as 0 (padding), which the metrics count as a miss.

    Examples:
        >>> vocab = ItemVocab.build([["a", "b"]])
        >>> prefixes, targets = encode_cases([(["a", "zzz"], "b"), (["b"], "zzz")], vocab)
        >>> prefixes, targets.tolist()
        ([[1], [2]], [2, 0])
    """
    prefixes = [[index for index in vocab.encode(prefix) if index] for prefix, _ in cases]
    targets = torch.tensor(vocab.encode(target for _, target in cases), dtype=torch.int64)
    return prefixes, targets


def evaluate(
    scorer: Scorer,
    cases: Sequence[Case],
    vocab: ItemVocab,
    *,
    batch_size: int = 512,
    progress: bool = False,
    ties: Ties = "pessimistic",
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Rank all items for every case and report the metrics in percent.

    Args:
        scorer: Scores ``list[list[int]]`` prefixes as ``(B, len(vocab))`` floats.
        cases: Test cases as item ids.
        vocab: The scorer's item indices.
        batch_size: Cases per ``score_many`` call.
        progress: Show a progress bar on stderr.
        ties: Tie convention of :func:`model.evaluation.metrics.target_ranks`.
        device: Where the scorer's scores live; the targets move there once.

    Returns:
        ``{"P@20", "MRR@20", "HR@10", "NDCG@10"}`` in percent.

    Raises:
        ValueError: If ``batch_size`` is below 1 or there are no cases.

    Examples:
        >>> vocab = ItemVocab.build([["a", "b", "b"]])
        >>> pop = Popularity([vocab.encode(["a", "b", "b"])], n_items=len(vocab))
        >>> evaluate(pop, [(["a"], "b"), (["b"], "a")], vocab, batch_size=1)["MRR@20"]
        75.0
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    prefixes, targets = encode_cases(cases, vocab)
    targets = targets.to(device)
    unknown = int((targets == 0).sum())
    if unknown:
        logger.warning(
            "%d of %d targets are not in the vocabulary (counted as misses)", unknown, len(cases)
        )
    metrics = RankingMetrics(ties=ties)
    starts = range(0, len(prefixes), batch_size)
    console = Console(stderr=True)
    with torch.inference_mode():
        for start in track(
            starts, description="scoring", console=console, disable=not progress, transient=True
        ):
            scores = scorer.score_many(prefixes[start : start + batch_size])
            metrics.update(scores, targets[start : start + batch_size])
    return metrics.result()


def evaluation_table(
    rows: Sequence[tuple[str, Mapping[str, float]]],
    published: Mapping[str, Mapping[str, float]],
) -> str:
    """One markdown table: our models, then the published ones.

    Args:
        rows: ``(model name, metrics)``; metrics keyed by :data:`METRIC_NAMES`,
            optionally with ``fit_seconds`` / ``eval_seconds``.
        published: Model name -> published metrics (missing ones show as ``-``).

    Returns:
        The table, one line per model, without a trailing newline.

    Examples:
        >>> print(evaluation_table([("pop", {"P@20": 0.93, "MRR@20": 0.21})],
        ...                        {"SR-GNN": {"P@20": 50.73, "MRR@20": 17.59}}))
        | model | P@20 | MRR@20 | HR@10 | NDCG@10 | source |
        |---|---|---|---|---|---|
        | pop | 0.93 | 0.21 | - | - | ours |
        | SR-GNN | 50.73 | 17.59 | - | - | published |
    """
    times = [key for key in TIME_COLUMNS if any(key in values for _, values in rows)]
    header = ["model", *METRIC_NAMES, "source", *(TIME_COLUMNS[key] for key in times)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    labelled = [(name, values, "ours") for name, values in rows]
    labelled += [(name, values, "published") for name, values in published.items()]
    for name, values, source in labelled:
        cells = [name, *(_cell(values, key) for key in METRIC_NAMES), source]
        cells += [_cell(values, key, digits=1) for key in times]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(values: Mapping[str, float], key: str, *, digits: int = 2) -> str:
    return f"{values[key]:.{digits}f}" if key in values else "-"


def baseline_factories(*, k: int = 100) -> dict[str, ScorerFactory]:
    """Popularity, SKNN and V-SKNN (``k`` neighbours), built from the training sequences."""

    def popularity(data: EvalData) -> Scorer:
        return Popularity(data.train, n_items=len(data.vocab))

    def sknn(data: EvalData) -> Scorer:
        return SessionKNN(data.train, n_items=len(data.vocab), k=k)

    def vsknn(data: EvalData) -> Scorer:
        return SessionKNN(data.train, n_items=len(data.vocab), k=k, weighting="linear")

    return {"popularity": popularity, f"SKNN (k={k})": sknn, f"V-SKNN (k={k})": vsknn}


def run_evaluation(
    data: Path,
    *,
    models: Mapping[str, ScorerFactory] | None = None,
    progress: bool = False,
    batch_size: int = 512,
    published: Mapping[str, Mapping[str, float]] | None = None,
    device: torch.device | str = "cpu",
    measured: Sequence[tuple[str, Mapping[str, float]]] = (),
) -> str:
    """Build each model on ``data``'s training side, evaluate it, and tabulate.

    Args:
        data: A folder or file accepted by :func:`load_protocol`.
        models: Name -> factory called with the :class:`EvalData`; the scorer it
            returns must use ``EvalData.vocab``'s indices. Default:
            :func:`baseline_factories`.
        progress: Show progress bars on stderr.
        batch_size: Cases per ``score_many`` call.
        published: Published numbers to show; default :data:`PUBLISHED` for the
            data set's name (none for unknown data sets).
        device: Where every model's scores live (see :func:`evaluate`).
        measured: Rows measured elsewhere on the same cases (e.g. from served lists),
            shown after the models.

    Returns:
        The markdown table of :func:`evaluation_table`, with fit and eval seconds.
    """
    protocol = load_protocol(data)
    factories = baseline_factories() if models is None else models
    rows: list[tuple[str, Mapping[str, float]]] = []
    for name, factory in factories.items():
        started = time.perf_counter()
        scorer = factory(protocol)
        fitted = time.perf_counter()
        result = evaluate(
            scorer,
            protocol.cases,
            protocol.vocab,
            batch_size=batch_size,
            progress=progress,
            device=device,
        )
        result["fit_seconds"] = fitted - started
        result["eval_seconds"] = time.perf_counter() - fitted
        logger.info("%s on %s: %s", name, protocol.name, result)
        rows.append((name, result))
    shown = PUBLISHED.get(protocol.name, {}) if published is None else published
    return evaluation_table([*rows, *measured], shown)


class CheckpointRanker:
    """A checkpoint's served ranker scoring in another vocabulary's indices (the protocol's).

    ``transformer_only`` scores its transformer without the other parts;
    ``full_ranking`` ranks every item instead of the candidates, as a worker
    with that setting does.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        vocab: ItemVocab,
        *,
        transformer_only: bool = False,
        full_ranking: bool = False,
    ) -> None:
        self._ranker = served_ranker(
            checkpoint, transformer_only=transformer_only, full_ranking=full_ranking
        )
        self._to_model = [checkpoint.vocab.index.get(item, 0) for item in vocab.ids]
        self._columns = torch.tensor(self._to_model)

    def score_many(self, prefixes: list[list[int]], /) -> torch.Tensor:
        """``(B, N)`` scores in ``vocab``'s indices; items the model never saw get -inf."""
        mapped = [
            [self._to_model[i] for i in prefix if self._to_model[i]] or [0] for prefix in prefixes
        ]
        scores = self._ranker.score_many(mapped)[:, self._columns]
        scores[:, self._columns == 0] = float("-inf")
        return scores


def checkpoint_factory(
    path: Path, *, transformer_only: bool = False, full_ranking: bool = False
) -> ScorerFactory:
    """Factory of :class:`CheckpointRanker` for :func:`run_evaluation`'s ``models``."""
    checkpoint = load_checkpoint(path)

    def build(data: EvalData) -> Scorer:
        return CheckpointRanker(
            checkpoint, data.vocab, transformer_only=transformer_only, full_ranking=full_ranking
        )

    return build
