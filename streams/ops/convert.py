"""``intentstream data convert``: the public data sets' originals to the canonical event CSV.

Run ``intentstream data convert retailrocket events.csv OUT.csv.gz`` (Kaggle's
``events.csv``), ``… yoochoose FOLDER OUT.csv.gz`` (the folder of
``yoochoose-clicks.dat`` and, optionally, ``yoochoose-buys.dat``) or
``… diginetica train-item-views.csv OUT.csv.gz``. The output is what
``streams.ops.event_log.read_events`` reads: gzip, header :data:`CSV_COLUMNS`,
sorted by time, ties in source order.

Rows are streamed; only sorting holds data, in sorted runs of :data:`CHUNK_ROWS` rows
spilled to a temporary folder beside the output and merged. A malformed row stops
the conversion with an error naming file and line, and no output is left: a data set
silently thinned would skew every result computed from it.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import heapq
import itertools
import logging
import math
import operator
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple, TextIO

from rich.console import Console
from rich.progress import Progress

from streams.ops.event_log import CSV_COLUMNS

log = logging.getLogger(__name__)

#: The originals this module converts.
FORMATS = ("retailrocket", "yoochoose", "diginetica")
#: Rows sorted in memory at once; more are sorted in runs on disk and merged.
CHUNK_ROWS = 500_000
#: RetailRocket has no sessions: a visitor's event after a longer pause starts a new one.
SESSION_GAP_US = 30 * 60 * 1_000_000
#: Rows written between two updates of the progress bar.
PROGRESS_EVERY = 65_536

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_US = 86_400 * 1_000_000
_RETAILROCKET_TYPES = {"view": "view", "addtocart": "add_to_cart", "transaction": "purchase"}


class Row(NamedTuple):
    """One canonical event, its time in integer microseconds (exact and sortable)."""

    us: int
    user_id: str
    session_id: str
    type: str
    item_id: str
    category: str = ""
    price: str = ""
    query: str = ""


@dataclass(frozen=True)
class _Layout:
    """How one original file is laid out, and how a row of it becomes a :class:`Row`."""

    delimiter: str
    header: tuple[str, ...] | None  # None: the file has no header line
    width: int
    parse: Callable[[list[str]], Row]


@dataclass(frozen=True)
class Converted:
    """What a conversion wrote: the number of events of each type."""

    types: dict[str, int]

    @property
    def events(self) -> int:
        """All events written."""
        return sum(self.types.values())


def convert(
    name: str, source: Path, out: Path, *, progress: bool = False, chunk_rows: int = CHUNK_ROWS
) -> Converted:
    """Convert the original ``source`` of data set ``name`` into the canonical CSV ``out``.

    Args:
        name: one of :data:`FORMATS`.
        source: the original file, or for ``yoochoose`` the folder of its ``.dat`` files.
        out: the gzipped canonical CSV to write (replaced only once complete).
        progress: show rich progress bars on stderr.
        chunk_rows: rows sorted in memory at once.

    Returns:
        The number of events of each type written.

    Raises:
        ValueError: an unknown ``name``, or a malformed row (naming file and line).
        FileNotFoundError: the original is missing.
    """
    if name not in FORMATS:
        raise ValueError(f"unknown data set {name!r}: expected one of {', '.join(FORMATS)}")
    sources = _sources(name, source)
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        Progress(console=Console(stderr=True), disable=not progress) as bar,
        tempfile.TemporaryDirectory(dir=out.parent, prefix=".convert-") as workdir,
    ):
        rows = itertools.chain.from_iterable(_read(path, layout, bar) for path, layout in sources)
        ordered = sort_by_time(rows, workdir=Path(workdir), chunk_rows=chunk_rows)
        if name == "retailrocket":
            ordered = _sessions(ordered)
        return _write(ordered, out, bar)


def _sources(name: str, source: Path) -> list[tuple[Path, _Layout]]:
    if name == "yoochoose":
        clicks, buys = source / "yoochoose-clicks.dat", source / "yoochoose-buys.dat"
        if not clicks.is_file():
            raise FileNotFoundError(f"no yoochoose-clicks.dat in {source}")
        if not buys.is_file():
            log.warning("no yoochoose-buys.dat in %s: converting clicks only", source)
            return [(clicks, _YOOCHOOSE_CLICKS)]
        return [(clicks, _YOOCHOOSE_CLICKS), (buys, _YOOCHOOSE_BUYS)]
    if not source.is_file():
        raise FileNotFoundError(f"no such file: {source}")
    return [(source, _RETAILROCKET if name == "retailrocket" else _DIGINETICA)]


# The originals' rows ----------------------------------------------------------------------


def _retailrocket(fields: list[str]) -> Row:
    timestamp, visitor, event, item, _transaction = fields
    if event not in _RETAILROCKET_TYPES:
        raise ValueError(f"unknown event {event!r} (expected view, addtocart or transaction)")
    type_ = _RETAILROCKET_TYPES[event]
    # The session is numbered once the visitor's events are in time order (_sessions()).
    ms = _natural(timestamp, "timestamp")
    return Row(ms * 1000, _present(visitor, "visitorid"), "", type_, _present(item, "itemid"))


def _yoochoose_click(fields: list[str]) -> Row:
    session, timestamp, item, category = fields
    session = _present(session, "SessionId")
    # "0" marks a missing category ("S" is a special offer, 1-12 categories, others brands).
    category = "" if category == "0" else category
    return Row(_iso(timestamp), session, session, "view", _present(item, "ItemId"), category)


def _yoochoose_buy(fields: list[str]) -> Row:
    session, timestamp, item, price, _quantity = fields
    session = _present(session, "SessionId")
    item = _present(item, "ItemId")
    return Row(_iso(timestamp), session, session, "purchase", item, price=_price(price))


def _diginetica(fields: list[str]) -> Row:
    session, user, item, timeframe, eventdate = fields
    session = _present(session, "sessionId")
    try:
        day = date.fromisoformat(eventdate)
    except ValueError:
        raise ValueError(f"eventdate is not a date (YYYY-MM-DD): {eventdate!r}") from None
    us = (day - _EPOCH.date()).days * _DAY_US + _natural(timeframe, "timeframe") * 1000
    # An anonymous session is a user of its own; prefixed, as session and user ids are
    # both small integers and would otherwise name the same user.
    user_id = f"s{session}" if user in ("", "NA") else user
    return Row(us, user_id, session, "view", _present(item, "itemId"))


_RETAILROCKET = _Layout(
    ",", ("timestamp", "visitorid", "event", "itemid", "transactionid"), 5, _retailrocket
)
_YOOCHOOSE_CLICKS = _Layout(",", None, 4, _yoochoose_click)
_YOOCHOOSE_BUYS = _Layout(",", None, 5, _yoochoose_buy)
_DIGINETICA = _Layout(
    ";", ("sessionId", "userId", "itemId", "timeframe", "eventdate"), 5, _diginetica
)


def _present(text: str, name: str) -> str:
    if not text:
        raise ValueError(f"{name} is empty")
    return text


def _natural(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{name} is not a whole number >= 0: {text!r}")
    return int(text)


def _iso(text: str) -> int:
    """An ISO 8601 time (UTC unless it says otherwise) in epoch microseconds.

    Examples:
        >>> _iso("2014-04-07T10:51:09.277Z")
        1396867869277000
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"Timestamp is not ISO 8601: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _price(text: str) -> str:
    """The price as given, or empty for YOOCHOOSE's 0 (an unknown price)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"Price is not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"Price is not a finite number >= 0: {text!r}")
    return "" if value == 0 else text


# Reading, sorting, writing ----------------------------------------------------------------


def _read(path: Path, layout: _Layout, bar: Progress) -> Iterator[Row]:
    """The rows of one original, streamed; a malformed one raises naming file and line."""
    with bar.open(
        path, "rt", encoding="utf-8-sig", newline="", description=f"reading {path.name}"
    ) as text:
        reader = csv.reader(text, delimiter=layout.delimiter)
        try:
            if layout.header is not None and tuple(next(reader, ())) != layout.header:
                expected = layout.delimiter.join(layout.header)
                raise ValueError(f"expected the header {expected!r}")
            for fields in reader:
                if fields:  # a blank line is no event
                    yield _parse(fields, layout)
        except (ValueError, csv.Error) as exc:  # UnicodeDecodeError is a ValueError
            raise ValueError(f"{path}:{reader.line_num}: {exc}") from None


def _parse(fields: list[str], layout: _Layout) -> Row:
    if len(fields) != layout.width:
        raise ValueError(f"expected {layout.width} fields, got {len(fields)}")
    row = layout.parse(fields)
    if row.us < 0:
        raise ValueError("time is before 1970")
    return row


_time = operator.itemgetter(0)


def sort_by_time(rows: Iterable[Row], *, workdir: Path, chunk_rows: int) -> Iterator[Row]:
    """``rows`` sorted by time, ties in input order, holding at most ``chunk_rows`` at once.

    Sorted runs of ``chunk_rows`` go to files in ``workdir`` and are merged; input
    that fits in one run never touches the disk.
    """
    source = iter(rows)
    runs: list[Path] = []
    while chunk := sorted(itertools.islice(source, chunk_rows), key=_time):
        if not runs and len(chunk) < chunk_rows:
            yield from chunk
            return
        runs.append(_write_run(chunk, workdir / f"run-{len(runs):05d}.csv.gz"))
        del chunk  # free it before the next one is read
    with contextlib.ExitStack() as files:
        texts = [files.enter_context(gzip.open(p, "rt", newline="")) for p in runs]
        # heapq.merge is stable: on equal times the earlier run, so the earlier row, comes first.
        yield from heapq.merge(*map(_read_run, texts), key=_time)


def _write_run(rows: list[Row], path: Path) -> Path:
    with gzip.open(path, "wt", encoding="utf-8", newline="", compresslevel=1) as text:
        csv.writer(text).writerows(rows)
    return path


def _read_run(text: TextIO) -> Iterator[Row]:
    for fields in csv.reader(text):
        yield Row(int(fields[0]), *fields[1:])


def _sessions(rows: Iterable[Row]) -> Iterator[Row]:
    """Number each user's sessions in time order, ``{user}-{n}`` from 1.

    A session ends after more than :data:`SESSION_GAP_US` without an event of its user.

    Examples:
        >>> rows = [Row(t * 60_000_000, "7", "", "view", "i") for t in (0, 30, 61)]
        >>> [row.session_id for row in _sessions(rows)]
        ['7-1', '7-1', '7-2']
    """
    last: dict[str, tuple[int, int]] = {}  # user -> (time of their last event, its session)
    for row in rows:
        seen, number = last.get(row.user_id, (0, 0))
        if number == 0 or row.us - seen > SESSION_GAP_US:
            number += 1
        last[row.user_id] = (row.us, number)
        yield row._replace(session_id=f"{row.user_id}-{number}")


def _seconds(us: int) -> str:
    """Epoch microseconds as exact decimal seconds, without trailing zeros.

    Examples:
        >>> _seconds(1433221332117000), _seconds(1433221330000000), _seconds(5)
        ('1433221332.117', '1433221330', '0.000005')
    """
    whole, fraction = divmod(us, 1_000_000)
    return f"{whole}.{fraction:06d}".rstrip("0").rstrip(".")


def _write(rows: Iterable[Row], out: Path, bar: Progress) -> Converted:
    """Write ``rows`` as the canonical CSV; ``out`` appears only once it is complete."""
    task = bar.add_task(f"writing {out.name}", total=None)
    types: Counter[str] = Counter()
    partial = out.with_name(f"{out.name}.partial")
    try:
        with gzip.open(partial, "wt", encoding="utf-8", newline="") as text:
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            for written, row in enumerate(rows, start=1):
                writer.writerow((_seconds(row.us), *row[1:]))
                types[row.type] += 1
                if written % PROGRESS_EVERY == 0:
                    bar.advance(task, PROGRESS_EVERY)
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    bar.update(task, total=types.total(), completed=types.total())
    return Converted(types=dict(types))
