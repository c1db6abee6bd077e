"""The documentation stays true to the code."""

from __future__ import annotations

from pathlib import Path

from streams.ops.cli import build_parser
from streams.settings import Settings


def test_every_setting_is_documented(repo_root: Path) -> None:
    text = (repo_root / "docs" / "configuration.md").read_text()
    missing = [n for n in Settings.model_fields if f"`INTENTSTREAM_{n.upper()}`" not in text]
    assert missing == []


def test_readme_lists_every_cli_command(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert [c for c in commands if f"`intentstream {c}" not in readme] == []


def test_readme_opens_with_the_two_commands_ci_runs(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    blocks = readme.split("```")[1::2]
    assert [block.split("\n", 1)[1].strip() for block in blocks[:2]] == ["make demo", "make test"]
    assert "make test" in (repo_root / ".ci" / "run").read_text()
