"""``intentstream status``: a one-screen view of running processes, from their metrics.

It scrapes each process's Prometheus endpoint (workers and the learner) twice,
a moment apart, so it can show rates and recent latency percentiles the way
Grafana would (from the counters' and histograms' differences), for operators
without Grafana: throughput, latency, lag, the serving model, online quality,
drift, privacy spend (with the serving model's epsilon, a model that is not
DP-trained flagged) and what the learner did. A process that does not answer
is shown as down, never silently left out.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.table import Table

#: Seconds to wait for one scrape.
SCRAPE_TIMEOUT = 2.0

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Scrape:
    """One process's samples: ``(name, labels) -> value``; ``error`` when it did not answer."""

    url: str
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)
    error: str | None = None
    at: float = 0.0

    def value(self, name: str, **labels: str) -> float | None:
        """The sample of ``name`` with exactly ``labels``, if exported."""
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def labelled(self, name: str, label: str) -> dict[str, float]:
        """``label value -> sample`` over every series of ``name``."""
        out = {}
        for (sample, labels), value in self.samples.items():
            found = dict(labels)
            if sample == name and label in found:
                out[found[label]] = value
        return out

    def total(self, name: str) -> float | None:
        """Sum of every series of ``name`` (None when none is exported)."""
        values = [v for (sample, _), v in self.samples.items() if sample == name]
        return sum(values) if values else None


def parse(url: str, text: str, *, at: float = 0.0) -> Scrape:
    """Samples of a Prometheus text exposition."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return Scrape(url, samples, at=at)


def scrape(url: str) -> Scrape:
    """Fetch and parse one endpoint; a failure becomes ``Scrape.error``."""
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as response:
            return parse(url, response.read().decode(), at=time.time())
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return Scrape(url, error=str(exc), at=time.time())


def quantile(now: Scrape, before: Scrape | None, name: str, q: float) -> float | None:
    """``q``-quantile of histogram ``name`` between two scrapes (since start without ``before``).

    Linear interpolation inside the bucket, like PromQL's ``histogram_quantile``.

    Examples:
        >>> text = "\\n".join(f'h_bucket{{le="{le}"}} {n}' for le, n in
        ...     [("0.01", 50), ("0.1", 90), ("+Inf", 100)]) + "\\n"
        >>> round(quantile(parse("x", "# TYPE h histogram\\n" + text), None, "h", 0.5), 4)
        0.01
    """
    buckets = _buckets(now, name)
    if before is not None:
        earlier = _buckets(before, name)
        buckets = {le: count - earlier.get(le, 0.0) for le, count in buckets.items()}
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return None


def _buckets(s: Scrape, name: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for (sample, labels), value in s.samples.items():
        found = dict(labels)
        if sample == f"{name}_bucket" and "le" in found:
            le = float(found["le"])
            out[le] = out.get(le, 0.0) + value
    return out


def rate(now: Scrape, before: Scrape | None, name: str) -> float | None:
    """Per-second increase of the summed counter ``name`` between two scrapes."""
    if before is None or before.error is not None or now.at <= before.at:
        return None
    current, earlier = now.total(name), before.total(name)
    if current is None:
        return None
    return max(0.0, current - (earlier or 0.0)) / (now.at - before.at)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _number(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def epsilon_cell(epsilon: float) -> str:
    """A model's per-session ε for a table: ``not DP`` in red when it has none (``inf``).

    NaN (the stream baseline: no per-session figure) shows as ``-``.
    """
    if math.isinf(epsilon):
        return "[red]not DP[/red]"
    return "-" if math.isnan(epsilon) else f"{epsilon:.3g}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:,.1f}"


def _role(s: Scrape) -> str:
    return "learner" if s.value("intentstream_learn_examples_total") is not None else "worker"


def status_view(now: Sequence[Scrape], before: Sequence[Scrape] | None = None) -> Group:
    """Two tables, one row per process: traffic (rates, latency, lag) and quality/privacy.

    ``before`` holds the same processes' previous scrapes, for rates and recent
    percentiles; without it percentiles cover the whole run and rates are "-".
    """
    earlier = {s.url: s for s in before or ()}
    traffic = Table(title="intentstream status: traffic")
    for column in ("process", "role", "model (age)", "events/s", "recs/s", "DLQ/s"):
        traffic.add_column(column)
    for column in ("p50 ms", "p95 ms", "p99 ms", "lag", "learned/s"):
        traffic.add_column(column, justify="right")
    quality = Table(title="quality and privacy")
    for column in ("process", "online HR@10", "NDCG@10", "intent log-loss", "drifts"):
        quality.add_column(column)
    for column in (
        "model epsilon",
        "epsilon charged",
        "budget refusals",
        "erasures",
        "published",
        "DP epsilon",
    ):
        quality.add_column(column, justify="right")
    for s in now:
        if s.error is not None:
            traffic.add_row(s.url, "[red]down[/red]", s.error[:50], *["-"] * 8)
            quality.add_row(s.url, *["-"] * 10)
            continue
        _add_rows(traffic, quality, s, earlier.get(s.url))
    return Group(traffic, quality)


def _add_rows(traffic: Table, quality: Table, s: Scrape, before: Scrape | None) -> None:
    role = _role(s)
    models = [v for v, on in s.labelled("intentstream_model_info", "version").items() if on]
    created = s.value("intentstream_model_created_timestamp_seconds")
    age = f" ({(s.at - created) / 60:,.0f} min)" if created else ""
    latency = [
        quantile(s, before, "intentstream_event_latency_seconds", q) for q in (0.5, 0.95, 0.99)
    ]
    traffic.add_row(
        s.url,
        role,
        (", ".join(models) or "-") + age,
        _number(rate(s, before, "intentstream_events_total")),
        _number(rate(s, before, "intentstream_recommendations_total")),
        _number(rate(s, before, "intentstream_rejected_total"), ",.1f"),
        *map(_ms, latency),
        _number(s.total("intentstream_consumer_lag_events")),
        _number(rate(s, before, "intentstream_learn_examples_total")),
    )
    losses = s.labelled("intentstream_intent_log_loss", "model")
    epsilons = s.labelled("intentstream_model_epsilon", "version")
    quality.add_row(
        s.url,
        _ratio(s.value("intentstream_online_hr10_ratio", role=role)),
        _ratio(s.value("intentstream_online_ndcg10_ratio", role=role)),
        " ".join(f"{name} {value:.3f}" for name, value in sorted(losses.items())) or "-",
        _number(s.value("intentstream_drift_detections_total", role=role)),
        ", ".join(map(epsilon_cell, epsilons.values())) or "-",
        _number(s.value("intentstream_privacy_epsilon_charged_total"), ",.1f"),
        _number(s.value("intentstream_privacy_budget_refusals_total")),
        _number(s.value("intentstream_erasures_total")),
        _number(s.value("intentstream_learn_published_total")),
        _number(s.value("intentstream_learn_dp_epsilon"), ".2f"),
    )


def default_urls(ports: Sequence[int]) -> list[str]:
    """Local endpoints of the given metrics ports."""
    return [f"http://127.0.0.1:{port}/metrics" for port in ports]
