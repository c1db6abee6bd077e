"""Versioned checkpoints: weights, configs, item vocabulary, metrics, data fingerprint.

Layout: ``<run>/epoch-0003/{weights.pt,optimizer.pt,meta.json,vocab.json}`` plus
``<run>/LATEST`` naming the newest one and ``<run>/BEST`` the one chosen on
validation. A run resumes from ``LATEST``; loading a run folder for scoring takes
``BEST``. The chosen epoch also holds ``ranker.npz`` once training has chosen the
served ranker's mix (:mod:`model.ranking.parts`) and ``calibration.json`` once it has
fitted click and purchase probabilities by rank (:mod:`model.calibration`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.calibration import CALIBRATION_FILE, ClickCalibrator
from model.config import ScorerConfig
from model.ranking.parts import RANKER_FILE, RankerParts
from model.scorer import SequenceScorer
from model.vocab import ItemVocab

LATEST = "LATEST"
BEST = "BEST"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model in eval mode, what describes it, its ranker parts.

    ``calibrator`` is None for a checkpoint trained before calibrators existed (or one
    whose run fitted none): sponsored items need one.
    """

    model: SequenceScorer
    vocab: ItemVocab
    meta: dict[str, Any]
    path: Path
    ranking: RankerParts | None = None
    calibrator: ClickCalibrator | None = None


def fingerprint(path: Path) -> str:
    """SHA-256 of a data file (or of a folder's files, in name order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as data:
            for block in iter(lambda: data.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    run_dir: Path,
    *,
    epoch: int,
    model: SequenceScorer,
    optimizer: torch.optim.Optimizer,
    vocab: ItemVocab,
    meta: dict[str, Any],
    best: bool = True,
) -> Path:
    """Write epoch ``epoch`` of a run atomically and point ``LATEST`` (``BEST`` if best) at it."""
    name = f"epoch-{epoch:04d}"
    final = run_dir / name
    staging = run_dir / f".{name}.tmp"
    staging.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), staging / "weights.pt")
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    (staging / "vocab.json").write_text(json.dumps(vocab.ids[1:]))
    full_meta = {
        **meta,
        "epoch": epoch,
        "config": model.config.to_dict(),
        "version": f"seq-{time.strftime('%Y-%m-%dT%H%MZ', time.gmtime())}-e{epoch}",
        "created_at": time.time(),
    }
    (staging / "meta.json").write_text(json.dumps(full_meta, indent=2, sort_keys=True))
    os.replace(staging, final)
    (run_dir / LATEST).write_text(name)
    if best:
        (run_dir / BEST).write_text(name)
    return final


def save_ranker(checkpoint: Path, parts: RankerParts) -> Path:
    """Write a checkpoint folder's ``ranker.npz`` atomically."""
    path = checkpoint / RANKER_FILE
    staging = checkpoint / f".{RANKER_FILE}.tmp"
    staging.write_bytes(parts.to_bytes())
    os.replace(staging, path)
    return path


def save_calibrator(checkpoint: Path, calibrator: ClickCalibrator) -> Path:
    """Write a checkpoint folder's ``calibration.json`` atomically."""
    path = checkpoint / CALIBRATION_FILE
    staging = checkpoint / f".{CALIBRATION_FILE}.tmp"
    staging.write_text(json.dumps(calibrator.to_dict(), indent=2))
    os.replace(staging, path)
    return path


def read_calibrator(data: bytes) -> ClickCalibrator:
    """Parse a ``calibration.json``.

    Raises:
        ValueError: it is not JSON or not a valid calibrator.
    """
    body = json.loads(data)
    if not isinstance(body, dict):
        raise ValueError("not a calibrator: not a JSON object")
    return ClickCalibrator.from_dict(body)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run, or None when it has none."""
    pointer = run_dir / LATEST
    return run_dir / pointer.read_text().strip() if pointer.is_file() else None


def best_checkpoint(run_dir: Path) -> Path | None:
    """The run's epoch chosen on validation (its newest, for runs without ``BEST``), or None."""
    pointer = run_dir / BEST
    return (
        run_dir / pointer.read_text().strip() if pointer.is_file() else latest_checkpoint(run_dir)
    )


def load_checkpoint(path: Path) -> Checkpoint:
    """Load a checkpoint folder, or a run folder's epoch chosen on validation, for scoring."""
    chosen = best_checkpoint(path)
    if chosen is not None:
        path = chosen
    meta = json.loads((path / "meta.json").read_text())
    vocab = ItemVocab.build([json.loads((path / "vocab.json").read_text())])
    model = SequenceScorer(ScorerConfig.from_dict(meta["config"]))
    model.load_state_dict(torch.load(path / "weights.pt", weights_only=True))
    ranker = path / RANKER_FILE
    parts = (
        RankerParts.from_bytes(ranker.read_bytes(), n_items=model.config.n_items)
        if ranker.is_file()
        else None
    )
    calibration = path / CALIBRATION_FILE
    calibrator = read_calibrator(calibration.read_bytes()) if calibration.is_file() else None
    return Checkpoint(
        model=model.eval(),
        vocab=vocab,
        meta=meta,
        path=path,
        ranking=parts,
        calibrator=calibrator,
    )
