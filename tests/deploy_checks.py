"""Checks of the deployment files against the code, each returning its problems.

Used by ``tests/unit/repo/test_deploy.py`` (on the real files and on broken copies)
and ``tests/integration/test_metrics_exported.py`` (the metric names).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from unittest import mock

import promql_parser
import pydantic
import yaml
from prometheus_client import CollectorRegistry

from streams.metrics.http import HttpMetrics
from streams.metrics.learner import LearnerMetrics
from streams.metrics.worker import WorkerMetrics
from streams.ops.cli import build_parser
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
GPU_COMPOSE = ROOT / "deploy" / "compose.gpu.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

#: Series Prometheus makes itself; no process exports them.
PROMETHEUS_SERIES = frozenset({"up"})
#: Grafana's built-in variables, replaced by a duration so the expression parses.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
STORE = "INTENTSTREAM_MODEL_STORE"
SEVERITIES = frozenset({"critical", "warning", "info"})
#: Where the runbooks are, relative to the repository root (each alert's runbook_url).
RUNBOOKS = "docs/operating.md"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
#: Tokens that end one simple shell command.
SHELL_OPERATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", "{", "}", "do", "done", "then"})

Problems = list[str]

#: Addresses only the same machine (or container) reaches.
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
#: A variable compose refuses to run without: ``${NAME:?message}``.
REQUIRED_VARIABLE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^}]*\}")
#: Prometheus endpoints that let anyone who reaches it stop it or delete its data.
UNSAFE_PROMETHEUS_FLAGS = frozenset({"--web.enable-lifecycle", "--web.enable-admin-api"})


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def interpolate(value: object) -> str:
    """Compose's variable substitution with every variable unset: defaults, ``$$`` -> ``$``."""
    text = str(value)
    text = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", text)
    return text.replace("$$", "$")


# ---------------------------------------------------------------- compose structure


def services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose.get("services") or {})


def is_intentstream(service: Mapping[str, Any]) -> bool:
    """Built from deploy/Dockerfile (or runs the image it builds)."""
    build, image = service.get("build") or {}, str(service.get("image", ""))
    return build.get("dockerfile") == "deploy/Dockerfile" or image.startswith("intentstream:")


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: interpolate(value) for name, value in env.items()}


def shell_invocations(script: str) -> list[list[str]]:
    """The argument lists of every ``intentstream`` command in a shell script."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found: list[list[str]] = []
    current: list[str] | None = None
    for token in lexer:
        if current is not None and token in SHELL_OPERATORS:
            found.append(current)
            current = None
        elif current is not None:
            current.append(token)
        elif token == "intentstream":
            current = []
    return [*found, current] if current is not None else found


def invocations(service: Mapping[str, Any]) -> list[list[str]]:
    """What ``intentstream`` runs with in a service: the image's ENTRYPOINT, or a shell."""
    command = service.get("command")
    entrypoint = service.get("entrypoint")
    if isinstance(command, str):
        command = shlex.split(command)
    if entrypoint is None:
        return [list(command or [])]  # the image's CMD when unset, checked with the Dockerfile
    if list(entrypoint) == ["sh", "-c"] and command:
        return shell_invocations(interpolate(command[0]))
    if list(entrypoint)[:1] == ["intentstream"]:
        return [[*entrypoint[1:], *(command or [])]]
    return []


def subcommand(service: Mapping[str, Any]) -> str | None:
    """The (first) subcommand a service runs, e.g. ``worker``."""
    found = [argv[0] for argv in invocations(service) if argv]
    return found[0] if found else None


def argv_problems(argv: list[str]) -> Problems:
    """Whether ``intentstream ARGV`` parses with the real CLI."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            build_parser().parse_args(argv)
    except SystemExit:
        return [f"`intentstream {' '.join(argv)}`: {errors.getvalue().strip()}"]
    return []


def setting_problems(env: Mapping[str, str]) -> Problems:
    """Every ``INTENTSTREAM_*`` variable is a setting, and together they build ``Settings``."""
    ours = {name: value for name, value in env.items() if name.startswith("INTENTSTREAM_")}
    problems = [
        f"{name} is not a setting"
        for name in ours
        if name.removeprefix("INTENTSTREAM_").lower() not in Settings.model_fields
    ]
    with mock.patch.dict(os.environ, ours, clear=True):
        try:
            Settings()
        except pydantic.ValidationError as exc:
            problems.append(f"invalid settings: {exc}")
    return problems


def image_problems(image: str) -> Problems:
    name, _, digest = image.partition("@")
    tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else ""
    if digest:
        return []
    if not tag or tag == "latest":
        return [f"image {image!r} is not pinned to a version"]
    return []


def mounts(service: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(source, target)`` of each volume of a service (short or long syntax)."""
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        out.append((interpolate(source), target))
    return out


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def mount_problems(compose: Mapping[str, Any], root: Path) -> Problems:
    """Bind-mounted host paths exist in the repository; named volumes are declared."""
    declared = set(compose.get("volumes") or {})
    problems = []
    for name, service in services(compose).items():
        for source, _ in mounts(service):
            if is_bind(source) and not (root / source).exists():
                problems.append(f"{name}: bind mount {source} does not exist")
            elif not is_bind(source) and source not in declared:
                problems.append(f"{name}: volume {source} is not declared")
        build = service.get("build") or {}
        if build and not (root / build.get("context", ".") / build["dockerfile"]).is_file():
            problems.append(f"{name}: no {build['dockerfile']}")
    return problems


def dependency_problems(compose: Mapping[str, Any]) -> Problems:
    """depends_on names services, with conditions those services can meet."""
    known = services(compose)
    problems = []
    for name, service in known.items():
        needs = service.get("depends_on") or {}
        if isinstance(needs, list):
            needs = {need: {"condition": "service_started"} for need in needs}
        for need, spec in needs.items():
            condition = spec.get("condition", "service_started")
            if need not in known:
                problems.append(f"{name} depends on unknown service {need}")
            elif condition == "service_healthy" and "healthcheck" not in known[need]:
                problems.append(f"{name} waits for {need} to be healthy; it has no healthcheck")
            elif condition == "service_completed_successfully" and restarts(known[need]):
                problems.append(f"{name} waits for {need} to complete; it restarts")
    return problems


def restarts(service: Mapping[str, Any]) -> bool:
    return service.get("restart", "no") not in ("no", False)


def path_under(path: str, targets: Iterable[str]) -> bool:
    return any(PurePosixPath(path).is_relative_to(target) for target in targets)


def storage_problems(compose: Mapping[str, Any]) -> Problems:
    """Keys and the model store live on volumes shared by the services that use them."""
    keys = ["INTENTSTREAM_PSEUDONYM_KEY_FILE", "INTENTSTREAM_MASTER_KEY_FILE"]
    needs = {"keygen": keys, "worker": [*keys, STORE], "learn": [*keys, STORE]}
    problems = []
    sources: dict[str, set[str]] = {}
    for name, service in services(compose).items():
        env = environment(service)
        where = {target: source for source, target in mounts(service)}
        for variable in needs.get(subcommand(service) or "", []):
            path = env.get(variable)
            found = [t for t in where if path and path_under(path, [t])]
            if not found:
                problems.append(f"{name}: {variable}={path} is not on a mounted volume")
                continue
            sources.setdefault(variable, set()).add(where[found[0]])
    problems += [f"{v} comes from different volumes: {s}" for v, s in sources.items() if len(s) > 1]
    return problems


def published_ports(service: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(host address, host port)`` of each port published on the host ('' = every address)."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, Mapping):
            out.append((str(port.get("host_ip", "")), str(port.get("published", ""))))
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)  # [[ADDRESS:]HOST:]CONTAINER[/PROTOCOL]
        out.append((parts[0] if len(parts) == 3 else "", parts[-2] if len(parts) > 1 else ""))
    return out


def exposure_problems(compose: Mapping[str, Any]) -> Problems:
    """Nothing is reachable from other machines, and nothing opens without a password."""
    problems = [
        f"{name}: port {port or '(random)'} is published on {address or 'every address'}"
        for name, service in services(compose).items()
        for address, port in published_ports(service)
        if address != "127.0.0.1"
    ]
    grafana = environment(services(compose).get("grafana") or {})
    # Only ${NAME:?message} survives interpolate(): a default or a literal does not.
    if not REQUIRED_VARIABLE.fullmatch(grafana.get("GF_SECURITY_ADMIN_PASSWORD", "")):
        problems.append("grafana: the admin password is not required from the environment")
    if grafana.get("GF_AUTH_ANONYMOUS_ENABLED", "false").lower() != "false":
        problems.append("grafana: anonymous access is on")
    command = (services(compose).get("prometheus") or {}).get("command") or []
    problems += [f"prometheus: {flag}" for flag in command if flag in UNSAFE_PROMETHEUS_FLAGS]
    return problems


# ---------------------------------------------------------------- Prometheus


def scrape_targets(prometheus: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """``(job, host, port)`` of every static and DNS-discovered target."""
    out = []
    for job in prometheus.get("scrape_configs") or []:
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                host, _, port = target.rpartition(":")
                out.append((job["job_name"], host, int(port)))
        for dns in job.get("dns_sd_configs") or []:
            out += [(job["job_name"], host, int(dns["port"])) for host in dns["names"]]
    return out


def service_settings(service: Mapping[str, Any]) -> Settings:
    """The settings an intentstream service runs with: its variables, nothing else."""
    env = {k: v for k, v in environment(service).items() if k.startswith("INTENTSTREAM_")}
    with mock.patch.dict(os.environ, env, clear=True):
        return Settings()


def metrics_port(service: Mapping[str, Any]) -> int | None:
    """The port a worker or learner service serves its metrics on, from its settings."""
    settings = service_settings(service)
    role = subcommand(service)
    return {"worker": settings.metrics_port, "learn": settings.learn_metrics_port}.get(role or "")


def scrape_problems(compose: Mapping[str, Any], prometheus: Mapping[str, Any]) -> Problems:
    """Prometheus scrapes every worker and learner service on the port it serves and exposes."""
    known = services(compose)
    problems, scraped = [], set()
    for job, host, port in scrape_targets(prometheus):
        if host == "localhost":
            continue
        if host not in known:
            problems.append(f"job {job} scrapes {host}, which is no compose service")
            continue
        scraped.add(host)
        served = metrics_port(known[host])
        exposed = {int(p) for p in known[host].get("expose") or []}
        if served != port or port not in exposed:
            problems.append(
                f"job {job} scrapes {host}:{port}; it serves {served}, exposes {exposed}"
            )
        bound = service_settings(known[host]).metrics_host
        if bound in LOOPBACK:
            problems.append(f"{host} serves its metrics on {bound}, out of Prometheus' reach")
    roles = {name for name, s in known.items() if subcommand(s) in ("worker", "learn")}
    problems += [f"{name} is not scraped" for name in sorted(roles - scraped)]
    return problems


def family_names() -> dict[str, frozenset[str]]:
    """Series names of each metric family a worker or the learner registers.

    A labelled family has no sample before its first observation, so its names
    are also derived from its type (``_total``; ``_bucket``, ``_sum``, ``_count``).
    """
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {
        family.name: frozenset(
            {sample.name for sample in family.samples}
            | {family.name + suffix for suffix in suffixes[family.type]}
        )
        for registry in (WorkerMetrics().registry, http_registry(), LearnerMetrics().registry)
        for family in registry.collect()
    }


def http_registry() -> CollectorRegistry:
    """The metrics a worker's HTTP API adds to the worker's registry."""
    registry = CollectorRegistry()
    HttpMetrics(registry)
    return registry


def exported_names() -> frozenset[str]:
    """Every series name a worker or the learner can export (labelled ones once observed)."""
    return frozenset().union(*family_names().values())


def parse(expr: str) -> promql_parser.Expr:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return promql_parser.parse(expr)


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(parse(expr), visit)
    return found


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (by name or by a ``__name__`` matcher)."""
    names = set()
    for selector in selectors(expr):
        if selector.name:
            names.add(selector.name)
        names |= {m.value for m in selector.matchers.matchers if m.name == "__name__"}
    return names


def label_values(expr: str, label: str) -> set[str]:
    return {m.value for s in selectors(expr) for m in s.matchers.matchers if m.name == label}


def expression_problems(exprs: Iterable[str]) -> Problems:
    """Each expression parses and reads only metrics the processes export."""
    exported = exported_names() | PROMETHEUS_SERIES
    problems = []
    for expr in exprs:
        try:
            names = metric_names(expr)
        except ValueError as exc:
            problems.append(f"{expr!r} does not parse: {exc}")
            continue
        problems += [f"{expr!r} reads {name}, which nothing exports" for name in names - exported]
    return problems


def alert_rules(alerts: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in alerts["groups"] for rule in group["rules"]]


def rule_problems(rule: Mapping[str, Any]) -> Problems:
    """An alert has a duration, a severity, a summary, a description quoting its value and
    a runbook: the anchor of a heading named after it in docs/operating.md."""
    name = rule.get("alert", "?")
    problems = []
    try:
        promql_parser.parse_duration(str(rule.get("for", "")))
    except ValueError:
        problems.append(f"{name}: `for` {rule.get('for')!r} is not a duration")
    if (rule.get("labels") or {}).get("severity") not in SEVERITIES:
        problems.append(f"{name}: severity must be one of {sorted(SEVERITIES)}")
    notes = rule.get("annotations") or {}
    if not notes.get("summary"):
        problems.append(f"{name}: no summary")
    if notes.get("runbook_url") != f"{RUNBOOKS}#{name.lower()}":
        problems.append(f"{name}: runbook_url is not {RUNBOOKS}#{name.lower()}")
    if "$value" not in notes.get("description", ""):
        problems.append(f"{name}: the description does not quote {{{{ $value }}}}")
    return problems


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page.

    Lower case; inline code and link markup reduced to their text; every character
    but letters, digits, ``_``, ``-`` and spaces dropped; spaces as ``-``; a repeated
    anchor gets ``-1``, ``-2``, ...

    Examples:
        >>> sorted(github_anchors("# A `b` [c](d)!\\n## Topics on a shop's cluster\\n## A b c"))
        ['a-b-c', 'a-b-c-1', 'topics-on-a-shops-cluster']
    """
    anchors: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = re.match(r"#{1,6} (.+)", line)
        if fenced or not heading:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1).strip())
        slug = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


# ---------------------------------------------------------------- Grafana


def all_panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Top-level panels and those inside collapsed rows."""
    out = []
    for panel in dashboard.get("panels") or []:
        out.append(panel)
        out += panel.get("panels") or []
    return out


def dashboard_exprs(dashboard: Mapping[str, Any]) -> list[str]:
    return [t["expr"] for p in all_panels(dashboard) for t in p.get("targets") or []]


#: What every Prometheus panel and query names as its datasource: the dashboard's variable.
DATASOURCE_VARIABLE = "${datasource}"
#: The matchers every selector of an exported metric carries: the dashboard's variables.
FILTERS = {"job": "$job", "instance": "$instance"}


def dashboard_problems(dashboard: Mapping[str, Any]) -> Problems:
    """Grafana can load it anywhere: no datasource uid of one Grafana, filters on every query."""
    title = dashboard.get("title", "?")
    problems = [
        f"{title}: no {key}"
        for key in ("uid", "title", "schemaVersion", "panels")
        if key not in dashboard
    ]
    ids = [p.get("id") for p in all_panels(dashboard)]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"{title}: panel ids are missing or repeated: {ids}")
    problems += variable_problems(dashboard)
    problems += [
        f"{title}: datasource {ds} is not {DATASOURCE_VARIABLE}" for ds in hard_coded(dashboard)
    ]
    for panel in all_panels(dashboard):
        problems += panel_problems(panel)
    return problems


def variable_problems(dashboard: Mapping[str, Any]) -> Problems:
    """A ``$datasource`` of type prometheus, and ``$job`` and ``$instance`` queried from it."""
    variables = {v.get("name"): v for v in (dashboard.get("templating") or {}).get("list") or []}
    source = variables.get("datasource") or {}
    problems = []
    if (source.get("type"), source.get("query")) != ("datasource", "prometheus"):
        problems.append("no $datasource variable of type prometheus")
    for name in FILTERS:
        variable = variables.get(name) or {}
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, Mapping) else str(query or "")
        if variable.get("type") != "query" or not text.startswith("label_values("):
            problems.append(f"no ${name} variable listing the label's values")
        elif (variable.get("datasource") or {}).get("uid") != DATASOURCE_VARIABLE:
            problems.append(f"${name} is not queried from {DATASOURCE_VARIABLE}")
    return problems


def hard_coded(tree: object) -> list[object]:
    """Every ``datasource`` in the JSON that names one (a uid or a name) instead of the variable.

    Grafana's own annotation source (``{"type": "grafana"}``) is no datasource of ours.
    """
    found: list[object] = []
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            if key == "datasource" and value is not None:
                uid = value.get("uid") if isinstance(value, Mapping) else value
                kind = value.get("type") if isinstance(value, Mapping) else None
                if kind != "grafana" and uid != DATASOURCE_VARIABLE:
                    found.append(value)
            found += hard_coded(value)
    elif isinstance(tree, list):
        for item in tree:
            found += hard_coded(item)
    return found


def panel_problems(panel: Mapping[str, Any]) -> Problems:
    name = panel.get("title", "?")
    grid = panel.get("gridPos") or {}
    problems = []
    if set(grid) != {"h", "w", "x", "y"} or grid["x"] + grid["w"] > 24:
        problems.append(f"panel {name}: bad gridPos {grid}")
    if panel.get("type") == "row":
        return problems
    targets = panel.get("targets") or []
    if not targets or not all(t.get("expr") for t in targets):
        problems.append(f"panel {name}: no query")
    if len({t.get("refId") for t in targets}) != len(targets):
        problems.append(f"panel {name}: repeated refId")
    sources = [panel.get("datasource")] + [t.get("datasource") for t in targets]
    if any(not isinstance(s, Mapping) or s.get("uid") != DATASOURCE_VARIABLE for s in sources):
        problems.append(f"panel {name}: datasource is not {DATASOURCE_VARIABLE}")
    problems += [f"panel {name}: {p}" for t in targets for p in filter_problems(t.get("expr", ""))]
    return problems


def filter_problems(expr: str) -> Problems:
    """Each selector of a metric the processes export is narrowed to ``$job`` and ``$instance``."""
    exported = exported_names()
    problems = []
    for selector in selectors(expr):
        if selector.name not in exported:
            continue
        matchers = {
            (m.name, m.value)
            for m in selector.matchers.matchers
            if m.op == promql_parser.MatchOp.Re
        }
        missing = [f'{k}=~"{v}"' for k, v in FILTERS.items() if (k, v) not in matchers]
        if missing:
            problems.append(f"{selector.name} is not filtered by {', '.join(missing)}")
    return problems


def provisioned_uid() -> str:
    [source] = load_yaml(DATASOURCES)["datasources"]
    return str(source["uid"])


# ---------------------------------------------------------------- Dockerfile


def dockerfile_instruction(text: str, keyword: str) -> list[str]:
    """Arguments of every ``KEYWORD`` line, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    return [
        line.split(None, 1)[1].strip()
        for line in joined.splitlines()
        if line.split(None, 1)[:1] == [keyword]
    ]


# ---------------------------------------------------------------- fixtures
