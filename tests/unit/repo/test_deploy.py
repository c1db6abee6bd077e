"""The deployment (docker-compose.yml, deploy/) agrees with the code it deploys.

No Docker here: each check reads the files and compares them with the code
(the CLI parser, the settings, the metrics a process registers). Every check is
a function returning its problems, run on the real files (no problem) and, in
``test_the_checks_catch``, on a broken copy (a problem), so none passes vacuously.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any
from unittest import mock

import pytest

from streams.settings import Settings
from tests.deploy_checks import (
    ALERTS,
    COMPOSE,
    DASHBOARDS,
    DATASOURCES,
    DOCKERFILE,
    GPU_COMPOSE,
    GRAFANA,
    PROMETHEUS,
    PROVIDERS,
    REQUIRED_VARIABLE,
    ROOT,
    Problems,
    alert_rules,
    all_panels,
    argv_problems,
    dashboard_exprs,
    dashboard_problems,
    dependency_problems,
    dockerfile_instruction,
    environment,
    exported_names,
    exposure_problems,
    expression_problems,
    family_names,
    filter_problems,
    image_problems,
    invocations,
    is_intentstream,
    label_values,
    load_yaml,
    metric_names,
    mount_problems,
    mounts,
    provisioned_uid,
    rule_problems,
    scrape_problems,
    services,
    setting_problems,
    storage_problems,
    subcommand,
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(load_yaml(COMPOSE))


@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    return dict(load_yaml(PROMETHEUS))


@pytest.fixture(scope="module")
def alerts() -> dict[str, Any]:
    return dict(load_yaml(ALERTS))


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARDS}


def by_subcommand(compose: Mapping[str, Any], command: str) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services(compose).items() if subcommand(s) == command}


# ---------------------------------------------------------------- docker-compose.yml


def test_the_stack_has_every_service(compose: dict[str, Any]) -> None:
    known = services(compose)
    assert known["kafka"]["image"].startswith("apache/kafka:")
    assert by_subcommand(compose, "topics") and by_subcommand(compose, "keygen")
    workers = by_subcommand(compose, "worker")
    assert sum((s.get("deploy") or {}).get("replicas", 1) for s in workers.values()) >= 2
    assert len(by_subcommand(compose, "learn")) == 1
    assert known["prometheus"]["image"].startswith("prom/prometheus:")
    assert known["grafana"]["image"].startswith("grafana/grafana:")


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    images = [s["image"] for s in services(compose).values()]
    assert [p for image in images for p in image_problems(image)] == []
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    ours = {s["image"] for s in services(compose).values() if is_intentstream(s)}
    assert ours == {f"intentstream:{version}"}


def test_kafka_runs_in_kraft_mode_where_the_services_look_for_it(compose: dict[str, Any]) -> None:
    kafka = services(compose)["kafka"]
    env = environment(kafka)
    assert kafka["image"].split(":")[1].startswith("4.")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert env["CLUSTER_ID"] and "CONTROLLER" in env["KAFKA_LISTENERS"]
    assert not any("ZOOKEEPER" in name for name in env)
    assert "healthcheck" in kafka
    advertised = {a.split("://")[1] for a in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name, service in services(compose).items():
        if is_intentstream(service):
            ours = environment(service)
            assert ours["INTENTSTREAM_KAFKA"] in advertised, name
            assert ours["INTENTSTREAM_BROKER_KIND"] == "kafka", name


def test_every_command_is_a_real_subcommand(compose: dict[str, Any]) -> None:
    ours = {n: s for n, s in services(compose).items() if is_intentstream(s)}
    runs = {name: invocations(service) for name, service in ours.items()}
    assert all(runs.values()), runs
    assert [p for argvs in runs.values() for argv in argvs for p in argv_problems(argv)] == []


def test_every_variable_is_a_setting_that_parses(compose: dict[str, Any]) -> None:
    ours = [s for s in services(compose).values() if is_intentstream(s)]
    assert [p for service in ours for p in setting_problems(environment(service))] == []


def test_the_workers_http_api_is_reachable_on_the_compose_network_and_needs_a_token(
    compose: dict[str, Any],
) -> None:
    """Workers forward requests for users another worker owns: loopback would break that."""
    for name, worker in by_subcommand(compose, "worker").items():
        with mock.patch.dict(os.environ, environment(worker), clear=True):
            settings = Settings()
        assert settings.http_host == "0.0.0.0" and settings.http_port > 0, name
        assert str(settings.http_port) in {str(port) for port in worker.get("expose", [])}, name
        token = environment(worker)["INTENTSTREAM_HTTP_TOKEN"]
        assert REQUIRED_VARIABLE.fullmatch(token), f"{name}: the token is not required"


def test_keys_and_the_model_store_are_on_shared_volumes(compose: dict[str, Any]) -> None:
    assert storage_problems(compose) == []


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    assert mount_problems(compose, ROOT) == []


def test_dependencies_exist_and_can_be_met(compose: dict[str, Any]) -> None:
    assert dependency_problems(compose) == []


def test_only_this_machine_reaches_the_stack_and_grafana_wants_a_password(
    compose: dict[str, Any],
) -> None:
    assert exposure_problems(compose) == []


def test_the_gpu_override_builds_one_cuda_image_for_every_intentstream_service(
    compose: dict[str, Any],
) -> None:
    gpu = services(load_yaml(GPU_COMPOSE))
    ours = {n for n, s in services(compose).items() if is_intentstream(s)}
    assert set(gpu) == ours
    assert len({(s["image"], s["build"]["args"]["TORCH_INDEX"]) for s in gpu.values()}) == 1
    assert all("cu" in s["build"]["args"]["TORCH_INDEX"].rsplit("/", 1)[1] for s in gpu.values())
    [device] = gpu["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


# ---------------------------------------------------------------- Prometheus


def test_prometheus_scrapes_every_process_on_its_metrics_port(
    compose: dict[str, Any], prometheus: dict[str, Any]
) -> None:
    assert scrape_problems(compose, prometheus) == []


def test_prometheus_loads_the_mounted_rules(
    compose: dict[str, Any], prometheus: dict[str, Any]
) -> None:
    assert [(PROMETHEUS.parent / f).resolve() for f in prometheus["rule_files"]] == [ALERTS]
    service = services(compose)["prometheus"]
    [config] = [a.split("=", 1)[1] for a in service["command"] if a.startswith("--config.file=")]
    targets = {target: source for source, target in mounts(service)}
    config_dir = str(PurePosixPath(config).parent)
    assert (ROOT / targets[config_dir]).resolve() == PROMETHEUS.parent
    assert PurePosixPath(config).name == PROMETHEUS.name


def test_alert_rules_are_complete(alerts: dict[str, Any]) -> None:
    rules = alert_rules(alerts)
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)) >= 10
    assert [p for rule in rules for p in rule_problems(rule)] == []


def test_alerts_read_only_exported_metrics_and_known_jobs(
    alerts: dict[str, Any], prometheus: dict[str, Any]
) -> None:
    exprs = [rule["expr"] for rule in alert_rules(alerts)]
    assert expression_problems(exprs) == []
    jobs = {job["job_name"] for job in prometheus["scrape_configs"]}
    assert {value for expr in exprs for value in label_values(expr, "job")} <= jobs


def test_the_alerts_cover_the_issue_list(alerts: dict[str, Any]) -> None:
    exprs = " ".join(rule["expr"] for rule in alert_rules(alerts))
    for needed in (
        "intentstream_consumer_lag_events",
        "intentstream_event_latency_seconds_bucket",
        "intentstream_rejected_total",
        "intentstream_model_created_timestamp_seconds",
        "intentstream_learn_published_total",
        "intentstream_drift_detections_total",
        "intentstream_online_hr10_ratio",
        "intentstream_unreadable_states_total",
        "intentstream_privacy_budget_refusals_total",
        'up{job="intentstream-worker"}',
        'up{job="intentstream-learner"}',
    ):
        assert needed in exprs


# ---------------------------------------------------------------- Grafana


def test_dashboards_import_anywhere_and_filter_by_job_and_instance(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    assert "intentstream overview" in {d["title"] for d in dashboards.values()}
    assert [p for d in dashboards.values() for p in dashboard_problems(d)] == []
    assert len({d["uid"] for d in dashboards.values()}) == len(dashboards)
    # Not even in a variable's remembered choice: it is this Grafana's, not another's.
    assert all(provisioned_uid() not in json.dumps(d) for d in dashboards.values())


def test_the_dashboard_shows_cpu_memory_and_gc_per_process(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    per_process = {
        name
        for d in dashboards.values()
        for e in dashboard_exprs(d)
        if re.search(r"\bby \([^)]*\binstance\b", e)
        for name in metric_names(e)
    }
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_gc_collections_total",
    } <= per_process


def test_dashboards_read_only_exported_metrics(dashboards: dict[str, dict[str, Any]]) -> None:
    assert expression_problems(e for d in dashboards.values() for e in dashboard_exprs(d)) == []


def test_every_exported_metric_is_on_a_dashboard(dashboards: dict[str, dict[str, Any]]) -> None:
    used = {n for d in dashboards.values() for e in dashboard_exprs(d) for n in metric_names(e)}
    assert [family for family, names in family_names().items() if not names & used] == []


def test_the_dashboard_shows_the_served_models_epsilon_and_flags_one_not_dp_trained(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    panels = [p for d in dashboards.values() for p in all_panels(d)]

    def reading(metric: str) -> list[dict[str, Any]]:
        assert metric in exported_names()
        return [
            p for p in panels for t in p.get("targets") or [] if metric in metric_names(t["expr"])
        ]

    assert reading("intentstream_model_epsilon")
    texts = [
        option["text"]
        for panel in reading("intentstream_model_private")
        for mapping in panel["fieldConfig"]["defaults"].get("mappings", [])
        if mapping["type"] == "value"
        for value, option in mapping["options"].items()
        if value == "0"
    ]
    assert texts == ["NOT DP"]


def test_grafana_provisions_the_datasource_and_the_dashboards(compose: dict[str, Any]) -> None:
    grafana = services(compose)["grafana"]
    where = {target: (ROOT / source).resolve() for source, target in mounts(grafana)}
    assert where["/etc/grafana/provisioning"] == (GRAFANA / "provisioning")
    [provider] = load_yaml(PROVIDERS)["providers"]
    assert provider["type"] == "file"
    assert where[provider["options"]["path"]] == (GRAFANA / "dashboards")
    [source] = load_yaml(DATASOURCES)["datasources"]
    prometheus = services(compose)["prometheus"]
    published = {p.split(":")[-1] for p in prometheus["ports"]}
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    # The default: what the dashboards' $datasource picks on a first visit.
    assert source["isDefault"] is True
    assert "9090" in published
    home = PurePosixPath(environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (where[str(home.parent)] / home.name).is_file()


# ---------------------------------------------------------------- Dockerfile


def test_the_dockerfile_runs_the_console_script_as_a_user() -> None:
    text = DOCKERFILE.read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [entrypoint] = dockerfile_instruction(text, "ENTRYPOINT")
    [command] = dockerfile_instruction(text, "CMD")
    assert json.loads(entrypoint) == list(project["project"]["scripts"])
    assert argv_problems(json.loads(command)) == []
    ports = {int(p) for line in dockerfile_instruction(text, "EXPOSE") for p in line.split()}
    defaults = Settings.model_fields
    assert {defaults["metrics_port"].default, defaults["learn_metrics_port"].default} <= ports
    [user] = dockerfile_instruction(text, "USER")
    assert user not in ("root", "0")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text and "ARG TORCH_INDEX=" in text
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {line.split()[0] for line in dockerfile_instruction(text, "COPY")}
    assert {p.rstrip("*") for p in packages} <= copied


def test_the_build_context_holds_what_the_image_installs() -> None:
    text = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text()
    ignore = [line.strip() for line in text.splitlines() if line.strip()[:1] not in ("", "#")]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert ignore[0] == "*" and {f"!{p}" for p in packages} <= set(ignore)
    assert {"!pyproject.toml", f"!{project['project']['readme']}"} <= set(ignore)


# ---------------------------------------------------------------- the checks can fail


GRAFANA_ENV = "services/grafana/environment"


def _set(tree: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A deep copy of ``tree`` with the value at ``a/b/0/c`` replaced."""
    out = copy.deepcopy(tree)
    *parents, last = path.split("/")
    node: Any = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return out


def _mistakes() -> dict[str, Callable[[], Problems]]:
    compose, prometheus = dict(load_yaml(COMPOSE)), dict(load_yaml(PROMETHEUS))
    overview = json.loads((GRAFANA / "dashboards" / "intentstream-overview.json").read_text())
    first, second = overview["panels"][1], overview["panels"][2]
    return {
        "misspelt metric": lambda: expression_problems(["rate(intentstream_evnts_total[5m])"]),
        "unparsable expression": lambda: expression_problems(
            ["sum(rate(intentstream_events_total"]
        ),
        "unknown subcommand": lambda: argv_problems(["wroker"]),
        "unknown setting": lambda: setting_problems({"INTENTSTREAM_METRIC_PORT": "9400"}),
        "invalid setting": lambda: setting_problems({"INTENTSTREAM_PARTITIONS": "zero"}),
        "latest image": lambda: image_problems("prom/prometheus:latest"),
        "untagged image": lambda: image_problems("grafana/grafana"),
        "port mismatch": lambda: scrape_problems(
            _set(compose, "services/worker/environment/INTENTSTREAM_METRICS_PORT", "9500"),
            prometheus,
        ),
        "unscraped learner": lambda: scrape_problems(
            compose, _set(prometheus, "scrape_configs/1/static_configs/0/targets", [])
        ),
        "missing bind mount": lambda: mount_problems(
            _set(compose, "services/prometheus/volumes/0", "./deploy/prom:/etc/prometheus:ro"), ROOT
        ),
        "unknown dependency": lambda: dependency_problems(
            _set(compose, "services/grafana/depends_on", ["prometheos"])
        ),
        "unhealthy dependency": lambda: dependency_problems(
            _set(
                compose, "services/grafana/depends_on", {"topics": {"condition": "service_healthy"}}
            )
        ),
        "key off its volume": lambda: storage_problems(
            _set(compose, "services/learner/volumes", [])
        ),
        "port on every address": lambda: exposure_problems(
            _set(compose, "services/kafka/ports/0", "29092:29092")
        ),
        "port on a public address": lambda: exposure_problems(
            _set(compose, "services/grafana/ports/0", {"target": 3000, "published": "3000"})
        ),
        "default grafana password": lambda: exposure_problems(
            _set(compose, f"{GRAFANA_ENV}/GF_SECURITY_ADMIN_PASSWORD", "${GRAFANA_PW:-admin}")
        ),
        "anonymous grafana": lambda: exposure_problems(
            _set(compose, f"{GRAFANA_ENV}/GF_AUTH_ANONYMOUS_ENABLED", "true")
        ),
        "prometheus lifecycle api": lambda: exposure_problems(
            _set(compose, "services/prometheus/command/2", "--web.enable-lifecycle")
        ),
        "metrics on loopback": lambda: scrape_problems(
            _set(compose, "services/learner/environment/INTENTSTREAM_METRICS_HOST", "127.0.0.1"),
            prometheus,
        ),
        "repeated panel id": lambda: dashboard_problems(
            {**overview, "panels": [first, {**second, "id": first["id"]}]}
        ),
        "hard-coded datasource": lambda: dashboard_problems(
            _set(overview, "panels/1/targets/0/datasource/uid", provisioned_uid())
        ),
        "datasource by name": lambda: dashboard_problems(
            _set(overview, "panels/1/datasource", "Prometheus")
        ),
        "no datasource variable": lambda: dashboard_problems(
            _set(overview, "templating/list/0/type", "custom")
        ),
        "no instance variable": lambda: dashboard_problems(
            _set(overview, "templating/list/2/name", "host")
        ),
        "unfiltered query": lambda: dashboard_problems(
            _set(overview, "panels/1/targets/0/expr", "sum(rate(intentstream_events_total[5m]))")
        ),
        "query for one instance only": lambda: filter_problems(
            'rate(process_cpu_seconds_total{job=~"$job"}[5m])'
        ),
        "alert without severity": lambda: rule_problems(
            {"alert": "A", "expr": "up == 0", "for": "1m", "annotations": {"summary": "s"}}
        ),
    }


@pytest.mark.parametrize("mistake", sorted(_mistakes()))
def test_the_checks_catch(mistake: str) -> None:
    assert _mistakes()[mistake]() != []
