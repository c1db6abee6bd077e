"""The command line: ``intentstream keygen``."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streams.ops.cli import build_parser, cmd_keygen
from streams.pipeline.crypto import load_master_key
from streams.settings import Settings


def test_keygen_creates_both_key_files_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTENTSTREAM_PSEUDONYM_KEY_FILE", str(tmp_path / "pseudonym.key"))
    monkeypatch.setenv("INTENTSTREAM_MASTER_KEY_FILE", str(tmp_path / "master.key"))
    args, settings = build_parser().parse_args(["keygen"]), Settings()
    assert cmd_keygen(args, settings) == 0
    key = load_master_key(settings)
    for path in (settings.pseudonym_key_file, settings.master_key_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cmd_keygen(args, settings) == 0  # both exist: nothing is overwritten, not an error
    assert load_master_key(settings) == key
