"""The alert rules pass promtool's checks and unit tests, and each has a runbook.

deploy/prometheus/tests/*.yml feed made-up series to the rules of
deploy/prometheus/alerts.yml and say which alerts fire when. promtool comes with
Debian's ``prometheus`` package (``make test`` installs it); without it these
tests fail rather than skip, since the rules would otherwise go untested.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from tests.deploy_checks import (
    ALERTS,
    ROOT,
    RULE_TESTS,
    RUNBOOKS,
    alert_rules,
    github_anchors,
    load_yaml,
)


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (`make test` does)")
    return found


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def _cases() -> dict[str, dict[str, int]]:
    """Per alert: how many of the unit tests' evaluations expect it firing, and quiet."""
    cases: dict[str, dict[str, int]] = {}
    for path in RULE_TESTS:
        spec: dict[str, Any] = load_yaml(path)
        assert spec["rule_files"] == ["../alerts.yml"], path
        for test in spec["tests"]:
            for check in test.get("alert_rule_test") or []:
                counts = cases.setdefault(check["alertname"], {"firing": 0, "quiet": 0})
                counts["firing" if check.get("exp_alerts") else "quiet"] += 1
    return cases


def test_promtool_accepts_the_rules(promtool: str) -> None:
    checked = _promtool(promtool, "check", "rules", str(ALERTS.relative_to(ROOT)))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_pass_their_promtool_unit_tests(promtool: str) -> None:
    assert RULE_TESTS
    files = [str(path.relative_to(ROOT)) for path in RULE_TESTS]
    tested = _promtool(promtool, "test", "rules", *files)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    names = {rule["alert"] for rule in alert_rules(load_yaml(ALERTS))}
    cases = _cases()
    assert set(cases) == names
    assert [name for name, n in sorted(cases.items()) if not (n["firing"] and n["quiet"])] == []


def test_every_alert_links_to_its_runbook() -> None:
    anchors = github_anchors((ROOT / RUNBOOKS).read_text())
    for rule in alert_rules(load_yaml(ALERTS)):
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == RUNBOOKS, rule["alert"]
        assert anchor == rule["alert"].lower() and anchor in anchors, rule["alert"]


def test_a_missing_runbook_is_caught() -> None:
    anchors = github_anchors(
        "# Runbooks\n#### IntentstreamWorkerDown\n```\n# IntentstreamNoWorker\n```"
    )
    assert anchors == {"runbooks", "intentstreamworkerdown"}
