"""deploy/'s alert rules, in a real Prometheus, fire on live workers on Apache Kafka.

A Prometheus (Debian's binary; ``make test`` installs it, and a missing one fails
the test) scrapes a live worker with the rules of deploy/prometheus/alerts.yml.
One test kills the worker and waits for ``IntentstreamWorkerDown``; the other
throttles it while events keep coming and waits for
``IntentstreamConsumerLagGrowing``, and for ``IntentstreamWorkerDown`` to stay
quiet, since a slow worker still answers its scrapes.

The rules run on a clock 20 times faster than deployed, so that each test takes
about a minute, not half an hour: every duration (``for``, range windows,
subquery steps, offsets) is divided by 20 (the lag alert's 10 minutes become
30 s), and Prometheus scrapes and evaluates every second instead of every 15 s.
Not faster: a worker's reported lag moves in steps of a fetched batch every few
seconds (its high watermark is the one of its last fetch), so at 60 times the lag
alert's trend window would be 10 s, too short to tell the trend from those steps.
Thresholds (events, ratios, seconds of latency) stay as deployed;
``tests/unit/repo/test_alert_rules.py`` runs the rules unchanged through promtool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streams.settings import Settings
from streams.worker.process import read_ready
from tests.deploy_checks import ALERTS, load_yaml
from tests.integration.kafka_io import produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

#: How much faster than deployed the rules run.
SPEEDUP = 20
#: Seconds to wait for an alert that should fire (its ``for`` is at most 30 s here).
FIRING_SECONDS = 90.0
#: A PromQL duration: ``10m``, ``1h30m``.
DURATION = re.compile(r"(?:\d+(?:ms|[smhdwy]))+")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
#: Where durations are in an expression: range windows and subqueries, and offsets.
WINDOW = re.compile(r"\[([^\]]+)\]|(?<=offset )(\S+)")
#: The worker's share of each throttling period: a CPU quota of a tenth of a core (less
#: and it misses scrapes: a failed scrape marks its series stale, which resets the alert).
THROTTLE_PERIOD, THROTTLE_SHARE = 0.2, 0.1
#: Events waiting before the throttled worker's backlog passes the alert's 10,000.
BURST = 15_000
#: Events per second that keep arriving while it is throttled.
ARRIVALS = 2_000


def seconds(duration: str) -> float:
    return sum(int(n) * UNITS[unit] for n, unit in re.findall(r"(\d+)(ms|[smhdwy])", duration))


def faster(duration: str) -> str:
    """``duration`` / SPEEDUP, in whole seconds (at least one)."""
    return f"{max(1, round(seconds(duration) / SPEEDUP))}s"


def faster_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """The alert rules with every duration divided by ``SPEEDUP``.

    Examples:
        >>> rule = {"alert": "A", "expr": "deriv(x[10m:1m]) > 0 and y offset 1h", "for": "2m"}
        >>> faster_rules({"groups": [{"name": "g", "rules": [rule]}]})["groups"][0]["rules"]
        [{'alert': 'A', 'expr': 'deriv(x[30s:3s]) > 0 and y offset 180s', 'for': '6s'}]
    """

    def window(match: re.Match[str]) -> str:
        return DURATION.sub(lambda m: faster(m.group(0)), match.group(0))

    groups = []
    for group in rules["groups"]:
        fast = []
        for rule in group["rules"]:
            rule = {**rule, "expr": WINDOW.sub(window, rule["expr"])}
            if "for" in rule:
                rule["for"] = faster(rule["for"])
            fast.append(rule)
        groups.append({**group, "rules": fast})
    return {**rules, "groups": groups}


@dataclass
class Prometheus:
    """A running Prometheus: its HTTP API at ``url``."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())["data"]

    def alerts(self, name: str, state: str = "firing") -> list[dict[str, Any]]:
        """The alerts named ``name`` in ``state`` (``pending`` or ``firing``)."""
        return [
            a
            for a in self.get("/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == name and a["state"] == state
        ]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query?query=" + urllib.parse.quote(expr))["result"])

    def wait_for(
        self, name: str, *, timeout: float = FIRING_SECONDS, show: str = "up"
    ) -> list[dict[str, Any]]:
        """Poll until ``name`` fires; returns its alerts.

        Raises:
            AssertionError: not firing within ``timeout`` seconds; the message holds the
                last minute of ``show`` (a PromQL expression), for the reason why.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
            firing = self.alerts(name)
            if firing:
                return firing
            time.sleep(0.5)
        history = self.query(f"({show})[60s:2s]")
        pending = self.alerts(name, "pending")
        raise AssertionError(
            f"{name} did not fire within {timeout:.0f} s (pending: {pending}); {show}: {history}"
        )

    def wait_until_scraped(self, job: str, *, timeout: float = 30.0) -> None:
        """Poll until every target of ``job`` was scraped and is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = self.query(f'up{{job="{job}"}}')
            if up and all(sample["value"][1] == "1" for sample in up):
                return
            time.sleep(0.5)
        raise AssertionError(f"{job} not scraped within {timeout:.0f} s")


@pytest.fixture
def run_prometheus(
    tmp_path: Path, free_port: Callable[..., int]
) -> Iterator[Callable[[dict[str, list[str]]], Prometheus]]:
    """Factory of a Prometheus scraping ``{job: [host:port, ...]}`` with the faster rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: install Debian's prometheus package (`make test` does)")
    with contextlib.ExitStack() as running:

        def start(jobs: dict[str, list[str]]) -> Prometheus:
            home = tmp_path / "prometheus"
            home.mkdir()
            (home / "rules.yml").write_text(yaml.safe_dump(faster_rules(load_yaml(ALERTS))))
            config = {
                "global": {
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "evaluation_interval": "1s",
                },
                "rule_files": ["rules.yml"],
                "scrape_configs": [
                    {"job_name": job, "static_configs": [{"targets": targets}]}
                    for job, targets in jobs.items()
                ],
            }
            (home / "prometheus.yml").write_text(yaml.safe_dump(config))
            port = free_port()
            log = home / "prometheus.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    [
                        binary,
                        f"--config.file={home / 'prometheus.yml'}",
                        f"--storage.tsdb.path={home / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--log.level=warn",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            running.callback(_stop, process)
            prometheus = Prometheus(f"http://127.0.0.1:{port}", process, log)
            _wait_ready(prometheus)
            return prometheus

        yield start


def _wait_ready(prometheus: Prometheus, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if prometheus.process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{prometheus.log.read_text()[-3000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(prometheus.url + "/-/ready", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"prometheus not ready after {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _metrics_target(tmp_path: Path) -> str:
    return f"127.0.0.1:{read_ready(tmp_path / 'worker.ready')['metrics_port']}"


@pytest.fixture
def worker_settings(kafka_bootstrap: str, make_settings: Callable[..., Settings]) -> Settings:
    """One worker's settings: 2 partitions, no text search."""
    return make_settings(kafka_bootstrap, "kafka", partitions=2, text_search=False)


def test_a_killed_worker_raises_worker_down(
    worker_settings: Settings,
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    run_prometheus: Callable[[dict[str, list[str]]], Prometheus],
    tmp_path: Path,
) -> None:
    worker = start_worker(worker_settings)
    target = _metrics_target(tmp_path)
    prometheus = run_prometheus({"intentstream-worker": [target]})
    prometheus.wait_until_scraped("intentstream-worker")
    assert prometheus.alerts("IntentstreamWorkerDown", "pending") == []

    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    [down] = prometheus.wait_for("IntentstreamWorkerDown")

    assert down["labels"]["instance"] == target
    assert down["labels"]["severity"] == "critical"
    assert down["annotations"]["runbook_url"] == "docs/operating.md#intentstreamworkerdown"
    # The only worker: none is up at all either.
    prometheus.wait_for("IntentstreamNoWorker")


@contextlib.contextmanager
def throttled(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """Let ``process`` run ``THROTTLE_SHARE`` of every ``THROTTLE_PERIOD``, as a CPU quota does.

    A cgroup CPU quota stops a process for the rest of each period once it has
    used its share; SIGSTOP and SIGCONT do the same from outside.
    """
    done = threading.Event()

    def cycle() -> None:
        while not done.is_set():
            process.send_signal(signal.SIGSTOP)
            done.wait(THROTTLE_PERIOD * (1 - THROTTLE_SHARE))
            process.send_signal(signal.SIGCONT)
            done.wait(THROTTLE_PERIOD * THROTTLE_SHARE)

    thread = threading.Thread(target=cycle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        process.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def arriving(settings: Settings, *, per_second: int, first: int) -> Iterator[None]:
    """Produce ``per_second`` more events each second, numbered from ``first``, until exit."""
    done = threading.Event()

    async def keep_producing() -> None:
        n = first
        while not done.is_set():
            started = time.monotonic()
            await produce(settings.bootstrap, settings.events_topic, _events(n, per_second))
            n += per_second
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    thread = threading.Thread(target=asyncio.run, args=(keep_producing(),), daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=30)


def _events(first: int, count: int) -> list[tuple[bytes, bytes]]:
    """View events ``e<first> ..``, keyed by user, of 500 shoppers over 97 items."""
    out = []
    for n in range(first, first + count):
        user = f"shopper-{n % 500}"
        event = {"event_id": f"e{n}", "user_id": user, "ts": 1.7e9 + n, "type": "view"}
        out.append((user.encode(), orjson.dumps({**event, "item_id": f"i{n % 97}"})))
    return out


def test_a_throttled_worker_raises_lag_growing_and_is_not_down(
    worker_settings: Settings,
    start_worker: Callable[[Settings], subprocess.Popen[bytes]],
    run_prometheus: Callable[[dict[str, list[str]]], Prometheus],
    tmp_path: Path,
) -> None:
    worker = start_worker(worker_settings)
    prometheus = run_prometheus({"intentstream-worker": [_metrics_target(tmp_path)]})
    # A first batch, so the worker reports the lag of both partitions.
    asyncio.run(produce(worker_settings.bootstrap, worker_settings.events_topic, _events(0, 200)))
    prometheus.wait_until_scraped("intentstream-worker")

    with throttled(worker), arriving(worker_settings, per_second=ARRIVALS, first=200 + BURST):
        asyncio.run(
            produce(worker_settings.bootstrap, worker_settings.events_topic, _events(200, BURST))
        )
        [lag] = prometheus.wait_for(
            "IntentstreamConsumerLagGrowing", show="sum(intentstream_consumer_lag_events)"
        )
        # Slow, not down: it answered most of its scrapes (a tenth of a core misses
        # some on a busy machine) and the down alert stayed quiet.
        [up] = prometheus.query('avg_over_time(up{job="intentstream-worker"}[10m])')
        assert float(up["value"][1]) > 0.5
        assert prometheus.alerts("IntentstreamWorkerDown") == []

    assert float(lag["value"]) > 10_000
    assert lag["annotations"]["runbook_url"] == "docs/operating.md#intentstreamconsumerlaggrowing"
