"""Scoring throughput (users/s) and latency of SequenceScorer.score_many by batch size.

Each call scores B users (histories of 1-20 events, Diginetica-sized catalogue of
43,098 items, d=128, 2 layers) under inference mode and takes the top 20 items,
with the unit item table computed once, as the worker's ``CheckpointScorer`` does.
Weights are random unless --checkpoint is given: the cost does not depend on them.

Run: ``.venv/bin/python bench/scoring.py`` (CPU) or ``--device cuda``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from model.batches import pad_histories
from model.config import ScorerConfig
from model.scorer import SequenceScorer

BATCH_SIZES = (1, 8, 64, 256, 1024, 4096)


def _model(checkpoint: Path | None, device: torch.device) -> SequenceScorer:
    if checkpoint is not None:
        from model.checkpoint import load_checkpoint

        return load_checkpoint(checkpoint).model.to(device).eval()
    return SequenceScorer(ScorerConfig(n_items=43_098, d_model=128)).to(device).eval()


def measure(
    model: SequenceScorer, batch_size: int, *, device: torch.device, bf16: bool, seconds: float
) -> tuple[float, float]:
    """(users per second, median ms per call) for one batch size."""
    generator = torch.Generator().manual_seed(batch_size)
    lengths = torch.randint(1, 21, (batch_size,), generator=generator).tolist()
    n = model.config.n_items
    histories = [torch.randint(1, n, (k,), generator=generator).tolist() for k in lengths]
    batch = pad_histories(histories, max_len=model.config.max_len).to(device)
    times = []
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        items = model.item_table().to(torch.bfloat16 if bf16 else torch.float32)
        for _ in range(3):
            model.score_many(batch, items=items).topk(20)
        started = time.perf_counter()
        while time.perf_counter() - started < seconds or len(times) < 5:
            t0 = time.perf_counter()
            top = model.score_many(batch, items=items).topk(20).indices
            if device.type == "cuda":
                torch.cuda.synchronize()
            del top
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return batch_size / median, 1000 * median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--seconds", type=float, default=2.0, help="per batch size")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = _model(args.checkpoint, device)
    name = (
        torch.cuda.get_device_name() if device.type == "cuda" else f"CPU x{torch.get_num_threads()}"
    )
    print(f"device: {name}, torch {torch.__version__}")
    print("| precision | batch | users/s | ms per call (median) |\n|---|---|---|---|")
    for bf16 in (False, True):
        for size in BATCH_SIZES:
            rate, ms = measure(model, size, device=device, bf16=bf16, seconds=args.seconds)
            print(f"| {'bf16' if bf16 else 'fp32'} | {size} | {rate:,.0f} | {ms:.2f} |", flush=True)


if __name__ == "__main__":
    main()
