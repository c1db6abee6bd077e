"""What publishing reads from a training checkpoint: its files, meta, provenance and id.

:meth:`online_learning.registry.ModelStore.publish` stores these; a source is a
checkpoint or run folder written by ``intentstream train`` or a loaded (or
learner-updated) :class:`~model.checkpoint.Checkpoint`.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from model.calibration import CALIBRATION_FILE
from model.checkpoint import Checkpoint, best_checkpoint
from model.ranking.parts import RANKER_FILE
from online_learning.errors import RegistryError


def source_files(source: Path | Checkpoint) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The files of a checkpoint to publish (all but ``meta.json``) and its meta."""
    if isinstance(source, Checkpoint):
        buffer = io.BytesIO()
        torch.save(source.model.state_dict(), buffer)
        meta = {**source.meta, "config": source.model.config.to_dict()}
        files = {
            "weights.pt": buffer.getvalue(),
            "vocab.json": json.dumps(source.vocab.ids[1:]).encode(),
        }
        if source.ranking is not None:
            files[RANKER_FILE] = source.ranking.to_bytes()
        if source.calibrator is not None:
            files[CALIBRATION_FILE] = json.dumps(source.calibrator.to_dict(), indent=2).encode()
        return files, meta
    folder = best_checkpoint(source) or source
    meta = checkpoint_meta(folder)
    names = [
        "weights.pt",
        "vocab.json",
        *(name for name in (RANKER_FILE, CALIBRATION_FILE) if (folder / name).is_file()),
    ]
    try:
        return {name: (folder / name).read_bytes() for name in names}, meta
    except OSError as exc:
        raise RegistryError(f"{source} is not a readable checkpoint: {exc}") from exc


def checkpoint_meta(checkpoint: Path) -> dict[str, Any]:
    """``meta.json`` of a training checkpoint folder, or of a run folder's chosen epoch.

    Its ``metrics`` and ``privacy`` are what :meth:`ModelStore.publish` takes.

    Raises:
        RegistryError: it is missing, unreadable or not a JSON object.
    """
    path = (best_checkpoint(checkpoint) or checkpoint) / "meta.json"
    try:
        meta = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{checkpoint} is not a readable checkpoint: {exc}") from exc
    if not isinstance(meta, dict):
        raise RegistryError(f"{path} is not a JSON object")
    return meta


def provenance(source: Path | Checkpoint, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Where a version came from: the training checkpoint's path, version and time."""
    path = source.path if isinstance(source, Checkpoint) else source
    return {"path": str(path), "version": meta.get("version"), "created_at": meta.get("created_at")}


def version_id(now: float, weights: bytes, vocab: bytes) -> str:
    """``seq-<UTC time to the second>-<first 8 hex digits of the content's SHA-256>``."""
    digest = hashlib.sha256(weights)
    digest.update(vocab)
    return f"seq-{time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime(now))}-{digest.hexdigest()[:8]}"
