"""Session data for offline training and evaluation, read from the canonical CSV.

The canonical format (``../shared/data/README.md``) is one event per row:
``ts,user_id,session_id,type,item_id,category,price,query``. Training and the
SR-GNN evaluation protocol see a session as its item sequence in time order;
each prefix of a session predicts the item that follows it.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

T = TypeVar("T")

#: A prefix of a session and the item that followed it.
Case = tuple[list[str], str]


@dataclass(frozen=True)
class Session:
    """One session's events in time order (rows without an item are skipped)."""

    session_id: str
    items: list[str]
    types: list[str]
    timestamps: list[float]


def _open_text(path: Path) -> TextIO:
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def load_sessions(path: Path) -> list[Session]:
    """Sessions of a canonical events CSV, in order of each session's first event.

    Rows are sorted by timestamp within a session (stable, so equal stamps keep
    file order).
    """
    grouped: dict[str, list[tuple[float, int, str, str]]] = {}
    with _open_text(path) as text:
        for row_number, row in enumerate(csv.DictReader(text)):
            if not row["item_id"]:
                continue
            events = grouped.setdefault(row["session_id"], [])
            events.append((float(row["ts"]), row_number, row["item_id"], row["type"]))
    sessions = []
    for session_id, events in grouped.items():
        events.sort()
        sessions.append(
            Session(
                session_id=session_id,
                items=[item for _, _, item, _ in events],
                types=[kind for _, _, _, kind in events],
                timestamps=[ts for ts, _, _, _ in events],
            )
        )
    return sessions


def load_test_cases(path: Path) -> list[Case]:
    """SR-GNN test cases: ``prefix items (space-separated) TAB next item`` per line."""
    cases = []
    with _open_text(path) as text:
        for line in text:
            prefix, _, target = line.rstrip("\n").partition("\t")
            if target:
                cases.append((prefix.split(), target))
    return cases


def prefix_cases(sequences: Iterable[Sequence[T]]) -> Iterator[tuple[list[T], T]]:
    """Every (prefix, next item) of every sequence, longest prefix first per sequence
    (the order the SR-GNN split uses).

    Examples:
        >>> list(prefix_cases([["a", "b", "c"]]))
        [(['a', 'b'], 'c'), (['a'], 'b')]
    """
    for sequence in sequences:
        for end in range(len(sequence) - 1, 0, -1):
            yield list(sequence[:end]), sequence[end]


def leave_last_out(sessions: Sequence[Session]) -> tuple[list[list[str]], list[Case]]:
    """For data without a test file: each session's last item is its test target.

    Returns:
        The training sequences (sessions without their last item, at least one
        item long) and one test case per session with at least two items.
    """
    train, cases = [], []
    for session in sessions:
        if len(session.items) >= 2:
            cases.append((session.items[:-1], session.items[-1]))
            train.append(session.items[:-1])
        elif session.items:
            train.append(session.items)
    return train, cases


def sessions_from_cases(cases: Sequence[Case]) -> tuple[list[list[str]], list[tuple[int, int]]]:
    """Sessions to replay event by event, and where each case is answered in them.

    A case is answered by the recommendation after event ``position`` of session
    ``session`` (its prefix's last item). Consecutive cases whose prefix and target
    begin the current session join it (the SR-GNN split lists each test session's
    prefixes longest first); any other case starts a new session.

    Examples:
        >>> sessions_from_cases([(["a", "b"], "c"), (["a"], "b"), (["x"], "y")])
        ([['a', 'b', 'c'], ['x', 'y']], [(0, 1), (0, 0), (1, 0)])
    """
    sessions: list[list[str]] = []
    where: list[tuple[int, int]] = []
    for prefix, target in cases:
        if not prefix:
            raise ValueError("a test case needs a prefix of at least one item")
        full = [*prefix, target]
        if not sessions or sessions[-1][: len(full)] != full:
            sessions.append(full)
        where.append((len(sessions) - 1, len(prefix) - 1))
    return sessions, where
