"""``intentstream report``: a run's key figures as one self-contained HTML file with plots.

Input is a metrics recording (:mod:`streams.ops.recording`): throughput, latency
percentiles, consumer lag, online HR@10 / NDCG@10 over time and the privacy
spend are computed from consecutive scrapes of each process, the way
Prometheus' ``rate`` and ``histogram_quantile`` would. Plots are PNGs embedded
as data URIs, so the file can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the file-only backend

from streams.ops.recording import by_process, read_recording
from streams.ops.status import Scrape, quantile, rate

LATENCY = "intentstream_event_latency_seconds"
#: A series: (process label, times in seconds from the start, values).
Series = tuple[str, list[float], list[float]]


@dataclass(frozen=True)
class Summary:
    """The headline figures of a run (all processes together)."""

    seconds: float
    events: float
    recommendations: float
    dead_letters: float
    latency_ms: tuple[float | None, float | None, float | None]
    online_hr: float | None
    epsilon_charged: float
    budget_refusals: float
    erasures: float
    versions: list[str]

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def summarise(processes: dict[str, list[Scrape]]) -> Summary:
    """Totals between each process's first and last good scrape."""
    seconds, latency_pairs = 0.0, []
    totals = dict.fromkeys(
        (
            "intentstream_events_total",
            "intentstream_recommendations_total",
            "intentstream_rejected_total",
            "intentstream_privacy_epsilon_charged_total",
            "intentstream_privacy_budget_refusals_total",
            "intentstream_erasures_total",
        ),
        0.0,
    )
    versions: set[str] = set()
    online: list[float] = []
    for rows in processes.values():
        good = [s for s in rows if s.error is None]
        if not good:
            continue
        first, last = good[0], good[-1]
        seconds = max(seconds, last.at - first.at)
        for name in totals:
            totals[name] += (last.total(name) or 0.0) - (first.total(name) or 0.0)
        latency_pairs.append((first, last))
        for s in good:
            versions.update(v for v, on in s.labelled("intentstream_model_info", "version").items())
        hr = last.value("intentstream_online_hr10_ratio", role="worker")
        if hr is not None:
            online.append(hr)
    latency = tuple(_merged_quantile(latency_pairs, q) for q in (0.5, 0.95, 0.99))
    return Summary(
        seconds=seconds,
        events=totals["intentstream_events_total"],
        recommendations=totals["intentstream_recommendations_total"],
        dead_letters=totals["intentstream_rejected_total"],
        latency_ms=tuple(None if v is None else 1000 * v for v in latency),  # type: ignore[arg-type]
        online_hr=sum(online) / len(online) if online else None,
        epsilon_charged=totals["intentstream_privacy_epsilon_charged_total"],
        budget_refusals=totals["intentstream_privacy_budget_refusals_total"],
        erasures=totals["intentstream_erasures_total"],
        versions=sorted(versions),
    )


def _merged_quantile(pairs: Sequence[tuple[Scrape, Scrape]], q: float) -> float | None:
    """A quantile of the latency histograms of all processes between their (first, last)."""
    merged_now: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    merged_before: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for first, last in pairs:
        for target, source in ((merged_before, first), (merged_now, last)):
            for key, value in source.samples.items():
                if key[0] == f"{LATENCY}_bucket":
                    target[key] = target.get(key, 0.0) + value
    return quantile(Scrape("all", merged_now), Scrape("all", merged_before), LATENCY, q)


def _series(
    processes: dict[str, list[Scrape]],
    value: Callable[[Scrape, Scrape], float | None],
    start: float,
) -> list[Series]:
    """One series per process from consecutive good scrapes."""
    out = []
    for url, rows in processes.items():
        good = [s for s in rows if s.error is None]
        times, values = [], []
        for before, now in itertools.pairwise(good):
            point = value(now, before)
            if point is not None:
                times.append(now.at - start)
                values.append(point)
        if values:
            out.append((_label(url), times, values))
    return out


def _label(url: str) -> str:
    return url.removeprefix("http://").removesuffix("/metrics")


def _figure(title: str, ylabel: str, lines: list[tuple[str, list[Series]]]) -> str | None:
    """A line plot as a PNG data URI; None when there is nothing to draw."""
    if not any(series for _, series in lines):
        return None
    figure, axes = plt.subplots(figsize=(8, 3.2))
    for name, series in lines:
        for process, times, values in series:
            axes.plot(times, values, label=f"{name} ({process})" if name else process)
    axes.set_title(title)
    axes.set_xlabel("seconds since the first scrape")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def figures(processes: dict[str, list[Scrape]]) -> list[tuple[str, str]]:
    """``(caption, PNG data URI)`` of each plot the recording has data for."""
    starts = [s.at for rows in processes.values() for s in rows]
    start = min(starts) if starts else 0.0

    def per_second(name: str) -> Callable[[Scrape, Scrape], float | None]:
        return lambda now, before: rate(now, before, name)

    def latency(q: float) -> Callable[[Scrape, Scrape], float | None]:
        def value(now: Scrape, before: Scrape) -> float | None:
            seconds = quantile(now, before, LATENCY, q)
            return None if seconds is None else 1000 * seconds

        return value

    def gauge(name: str, **labels: str) -> Callable[[Scrape, Scrape], float | None]:
        def value(now: Scrape, before: Scrape) -> float | None:
            found = now.value(name, **labels)
            return None if found is None else 100 * found

        return value

    def total(name: str) -> Callable[[Scrape, Scrape], float | None]:
        return lambda now, before: now.total(name)

    plots = [
        (
            "Throughput: events in and recommendations out per second",
            "per second",
            [
                ("events", _series(processes, per_second("intentstream_events_total"), start)),
                (
                    "recommendations",
                    _series(processes, per_second("intentstream_recommendations_total"), start),
                ),
                (
                    "dead letters",
                    _series(processes, per_second("intentstream_rejected_total"), start),
                ),
            ],
        ),
        (
            "Latency, event to recommendation (percentiles over each scrape interval)",
            "milliseconds",
            [
                (f"p{round(100 * q)}", _series(processes, latency(q), start))
                for q in (0.5, 0.95, 0.99)
            ],
        ),
        (
            "Consumer lag (events not yet processed, all partitions)",
            "events",
            [("lag", _series(processes, total("intentstream_consumer_lag_events"), start))],
        ),
        (
            "Online quality: each event checked against the user's last top 10",
            "percent",
            [
                (
                    "HR@10",
                    _series(
                        processes, gauge("intentstream_online_hr10_ratio", role="worker"), start
                    ),
                ),
                (
                    "NDCG@10",
                    _series(
                        processes, gauge("intentstream_online_ndcg10_ratio", role="worker"), start
                    ),
                ),
                (
                    "learner HR@10",
                    _series(
                        processes, gauge("intentstream_online_hr10_ratio", role="learner"), start
                    ),
                ),
            ],
        ),
        (
            "Privacy spend: epsilon charged to users (sum), budget refusals, erasures",
            "cumulative",
            [
                (
                    "epsilon charged",
                    _series(processes, total("intentstream_privacy_epsilon_charged_total"), start),
                ),
                (
                    "budget refusals",
                    _series(processes, total("intentstream_privacy_budget_refusals_total"), start),
                ),
                ("erasures", _series(processes, total("intentstream_erasures_total"), start)),
            ],
        ),
    ]
    out = []
    for caption, ylabel, lines in plots:
        uri = _figure(caption, ylabel, lines)
        if uri is not None:
            out.append((caption, uri))
    return out


def render(scrapes: Sequence[Scrape], *, title: str) -> str:
    """The report's HTML."""
    processes = dict(by_process(scrapes))
    summary = summarise(processes)
    when = datetime.fromtimestamp(min((s.at for s in scrapes), default=0.0), UTC)
    p50, p95, p99 = (f"{v:,.1f} ms" if v is not None else "-" for v in summary.latency_ms)
    rows = [
        ("recorded", f"{when:%Y-%m-%d %H:%M:%S} UTC, {summary.seconds:,.0f} s"),
        ("processes", ", ".join(_label(url) for url in processes)),
        ("events in", f"{summary.events:,.0f} ({summary.events_per_second:,.0f} per second)"),
        ("recommendations out", f"{summary.recommendations:,.0f}"),
        ("dead letters", f"{summary.dead_letters:,.0f}"),
        ("latency p50 / p95 / p99", f"{p50} / {p95} / {p99}"),
        (
            "online HR@10 (last 1,000 checked events)",
            "-" if summary.online_hr is None else f"{100 * summary.online_hr:.1f} %",
        ),
        ("epsilon charged (sum over users)", f"{summary.epsilon_charged:,.1f}"),
        ("privacy budget refusals", f"{summary.budget_refusals:,.0f}"),
        ("erasures", f"{summary.erasures:,.0f}"),
        ("model versions served", ", ".join(summary.versions) or "-"),
    ]
    table = "\n".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in rows
    )
    plots = "\n".join(
        f'<figure><img src="{uri}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, uri in figures(processes)
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ text-align: left; padding: 0.2rem 1rem 0.2rem 0; border-bottom: 1px solid #ddd; }}
figure {{ margin: 1.5rem 0; }} img {{ max-width: 100%; }}
figcaption {{ color: #555; font-size: 0.9rem; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
<table>
{table}
</table>
{plots}
</body></html>
"""


def write_report(recording: Path, out: Path, *, title: str | None = None) -> Summary:
    """Render ``recording`` to ``out``; returns the headline figures.

    Raises:
        ValueError: the file is not a recording, or holds no scrape.
    """
    scrapes = read_recording(recording)
    if not scrapes:
        raise ValueError(f"{recording} holds no scrapes")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(scrapes, title=title or f"intentstream run: {recording.parent.name}"))
    return summarise(dict(by_process(scrapes)))
