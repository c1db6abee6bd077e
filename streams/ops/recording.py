"""Recordings of a run's metrics: periodic scrapes of each process, one JSON line per scrape.

``intentstream report`` renders a recording to HTML. The demo records its
worker while it runs; ``intentstream status --record FILE`` records any
deployment. Only ``intentstream_*`` samples are kept (they hold no user ids).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import orjson

from streams.ops.status import Scrape, scrape

#: Prefix of the samples a recording keeps.
PREFIX = "intentstream_"


def to_line(s: Scrape) -> bytes:
    """One scrape as a JSON line."""
    samples = [
        [name, dict(labels), _json_number(value)]
        for (name, labels), value in sorted(s.samples.items())
        if name.startswith(PREFIX)
    ]
    return orjson.dumps({"url": s.url, "at": s.at, "error": s.error, "samples": samples}) + b"\n"


def _json_number(value: float) -> float | str:
    """``value``, or Prometheus' text for NaN and infinities (JSON has none; float() reads it).

    Examples:
        >>> _json_number(2.5), _json_number(float("inf")), _json_number(float("nan"))
        (2.5, '+Inf', 'NaN')
    """
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def read_recording(path: Path) -> list[Scrape]:
    """Every scrape of a recording, in file order.

    Raises:
        ValueError: a line is not a scrape (the file is not a recording).
    """
    out = []
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
                samples = {
                    (name, tuple(sorted(labels.items()))): float(value)
                    for name, labels, value in row["samples"]
                }
                out.append(Scrape(row["url"], samples, error=row["error"], at=float(row["at"])))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{number}: not a metrics recording line ({exc})") from exc
    return out


class Recorder:
    """Scrapes ``urls`` every ``interval`` seconds into ``path`` from a background thread,
    and hands each scrape to ``on_scrape`` (in that thread)."""

    def __init__(
        self,
        urls: Sequence[str],
        path: Path,
        *,
        interval: float = 2.0,
        on_scrape: Callable[[Scrape], None] | None = None,
    ) -> None:
        self._urls = list(urls)
        self._on_scrape = on_scrape
        self.path = path
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-recorder", daemon=True)

    def record_once(self) -> None:
        """Scrape every process once and append the lines."""
        with open(self.path, "ab") as out:
            for url in self._urls:
                result = scrape(url)
                out.write(to_line(result))
                if self._on_scrape is not None:
                    self._on_scrape(result)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.record_once()
            self._stop.wait(self._interval)

    def __enter__(self) -> Recorder:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.record_once()  # the final state, after the last scrape of the loop


def by_process(scrapes: Sequence[Scrape]) -> Iterator[tuple[str, list[Scrape]]]:
    """Scrapes grouped by process URL (first-seen order), each in time order."""
    groups: dict[str, list[Scrape]] = {}
    for s in scrapes:
        groups.setdefault(s.url, []).append(s)
    for url, rows in groups.items():
        yield url, sorted(rows, key=lambda s: s.at)
