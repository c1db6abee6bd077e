"""Recordings and reports: figures computed like Prometheus would, plots that render in Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest

from streams.metrics.worker import WorkerMetrics
from streams.ops.recording import read_recording, to_line
from streams.ops.report import write_report
from streams.ops.status import parse
from tests.browser import rendered_images


def _recording(path: Path) -> None:
    """Three scrapes of a worker, 10 s apart: 100 then 300 more events, fast then slower."""
    metrics = WorkerMetrics()
    lines = []
    steps = ((0, 0.0), (100, 0.004), (300, 0.04))
    for at, (events, latency) in zip((0.0, 10.0, 20.0), steps, strict=True):
        metrics.events.labels("view").inc(events)
        metrics.recommendations.inc(events)
        for _ in range(events):
            metrics.latency.observe(latency)
        metrics.quality.hr.labels("worker").set(0.25 + at / 100)
        metrics.epsilon_charged.update(at / 2)
        lines.append(
            to_line(
                parse("http://w:9400/metrics", generate_latest(metrics.registry).decode(), at=at)
            )
        )
    path.write_bytes(b"".join(lines))


def test_a_recording_reads_back_and_summarises_like_prometheus(tmp_path: Path) -> None:
    _recording(tmp_path / "metrics.jsonl")
    scrapes = read_recording(tmp_path / "metrics.jsonl")
    assert [s.at for s in scrapes] == [0.0, 10.0, 20.0]
    summary = write_report(tmp_path / "metrics.jsonl", tmp_path / "report.html")
    assert summary.seconds == 20.0 and summary.events == 400.0
    assert summary.events_per_second == 20.0
    p50, _, p99 = summary.latency_ms
    assert p50 is not None and p99 is not None
    assert 25.0 < p50 <= 50.0  # 300 of 400 events took 40 ms (in the (25, 50] ms bucket)
    assert summary.online_hr == pytest.approx(0.45)
    assert summary.epsilon_charged == 10.0


def test_a_recording_keeps_nan_and_infinite_samples(tmp_path: Path) -> None:
    """A worker serving a model that is not DP-trained exports an epsilon of +Inf."""
    text = (
        'intentstream_model_epsilon{version="v1"} +Inf\n'
        'intentstream_model_epsilon{version="baseline"} NaN\n'
    )
    (tmp_path / "m.jsonl").write_bytes(to_line(parse("http://w:9400/metrics", text, at=1.0)))
    [scrape] = read_recording(tmp_path / "m.jsonl")
    assert scrape.value("intentstream_model_epsilon", version="v1") == float("inf")
    baseline = scrape.value("intentstream_model_epsilon", version="baseline")
    assert baseline is not None and baseline != baseline  # NaN


def test_a_file_that_is_not_a_recording_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"not": "a scrape"}\n')
    with pytest.raises(ValueError, match="not a metrics recording"):
        read_recording(tmp_path / "x.jsonl")


def test_the_report_plots_render_in_chromium(tmp_path: Path) -> None:
    _recording(tmp_path / "metrics.jsonl")
    write_report(tmp_path / "metrics.jsonl", tmp_path / "report.html")
    sizes = rendered_images(tmp_path / "report.html")
    # Throughput, latency, online quality, privacy (no lag series was recorded).
    assert sizes == [(800, 320)] * 4


def test_the_report_from_a_real_run_in_docs_renders(repo_root: Path) -> None:
    sizes = rendered_images(repo_root / "docs" / "report.html")
    assert len(sizes) >= 4 and all(size == (800, 320) for size in sizes)
