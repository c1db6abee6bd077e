"""Fixtures for the evaluation tests: a small slice of the real Diginetica sessions."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def diginetica_head(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A canonical events file of Diginetica's first 2,000 training sessions.

    Skips when ``../shared/data`` lacks them (the data are never committed).
    """
    train = shared_data / "diginetica" / "train.csv.gz"
    if not train.is_file():
        pytest.skip(f"real data not available: {train} is missing")
    path = tmp_path_factory.mktemp("diginetica") / "head.csv"
    sessions: set[str] = set()
    with gzip.open(train, "rt", encoding="utf-8") as source, open(path, "w") as out:
        out.write(next(source))
        # Sessions are contiguous in the file; stop at the first row of session 2,001.
        for line in itertools.islice(source, 50_000):
            session = line.split(",", 3)[2]
            if session not in sessions and len(sessions) == 2_000:
                break
            sessions.add(session)
            out.write(line)
    return path
