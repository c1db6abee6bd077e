"""``intentstream status``: a one-screen view of running processes, from their metrics.

It scrapes each process's Prometheus endpoint (workers and the learner) and
shows what an operator without Grafana needs first: the serving model, online
quality, intent log-loss, drift and what the learner has done. A process that
does not answer is shown as down, never silently left out.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table

#: Seconds to wait for one scrape.
SCRAPE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Scrape:
    """One process's samples: ``(name, labels) -> value``; ``error`` when it did not answer."""

    url: str
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    error: str | None = None

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


def parse(url: str, text: str) -> Scrape:
    """Samples of a Prometheus text exposition."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return Scrape(url, samples)


def scrape(url: str) -> Scrape:
    """Fetch and parse one endpoint; a failure becomes ``Scrape.error``."""
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as response:
            return parse(url, response.read().decode())
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return Scrape(url, error=str(exc))


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _number(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def status_table(scrapes: Iterable[Scrape]) -> Table:
    """One row per process: role, model, online HR@10 / NDCG@10, intent, drift, counters."""
    table = Table(title="intentstream status")
    for column in (
        "process",
        "role",
        "model",
        "events",
        "online HR@10",
        "NDCG@10",
        "intent log-loss",
        "drifts",
        "learned / published",
    ):
        table.add_column(column)
    for s in scrapes:
        if s.error is not None:
            table.add_row(s.url, "[red]down[/red]", s.error[:60], *["-"] * 6)
            continue
        role = "learner" if s.value("intentstream_learn_examples_total") is not None else "worker"
        models = [v for v, on in s.labelled("intentstream_model_info", "version").items() if on]
        losses = s.labelled("intentstream_intent_log_loss", "model")
        events = sum(s.labelled("intentstream_events_total", "type").values())
        learned = (
            f"{_number(s.value('intentstream_learn_examples_total'))} / "
            f"{_number(s.value('intentstream_learn_published_total'))}"
            if role == "learner"
            else "-"
        )
        table.add_row(
            s.url,
            role,
            ", ".join(models) or "-",
            _number(events) if role == "worker" else "-",
            _ratio(s.value("intentstream_online_hr10_ratio", role=role)),
            _ratio(s.value("intentstream_online_ndcg10_ratio", role=role)),
            " ".join(f"{name} {value:.3f}" for name, value in sorted(losses.items())) or "-",
            _number(s.value("intentstream_drift_detections_total", role=role)),
            learned,
        )
    return table


def default_urls(ports: Sequence[int]) -> list[str]:
    """Local endpoints of the given metrics ports."""
    return [f"http://127.0.0.1:{port}/metrics" for port in ports]
