"""Keyed pseudonyms: stable per key, different across keys, key only from configuration."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streams.errors import ConfigurationError
from streams.pipeline.pseudonyms import Pseudonymizer, load_pseudonym_key
from streams.settings import Settings

KEY = b"k" * 32


def test_pseudonyms_depend_on_the_key_and_hide_the_id() -> None:
    a, b = Pseudonymizer(KEY), Pseudonymizer(b"j" * 32)
    assert a.one("u123") == a.one("u123")
    assert a.one("u123") != b.one("u123")
    assert "u123" not in a.one("u123")
    assert a.many(["u1", "u2", "u1"]) == [a.one("u1"), a.one("u2"), a.one("u1")]


def test_short_keys_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        Pseudonymizer(b"short")


def test_key_from_settings_wins_over_the_file(tmp_path: Path) -> None:
    settings = Settings(pseudonym_key="x" * 32, pseudonym_key_file=tmp_path / "none")
    assert load_pseudonym_key(settings) == b"x" * 32


def test_missing_key_is_an_error_unless_asked_to_create(tmp_path: Path) -> None:
    settings = Settings(pseudonym_key_file=tmp_path / "keys" / "pseudonym.key")
    with pytest.raises(ConfigurationError, match="INTENTSTREAM_PSEUDONYM_KEY"):
        load_pseudonym_key(settings)
    key = load_pseudonym_key(settings, create=True)
    assert len(key) == 64
    assert stat.S_IMODE(settings.pseudonym_key_file.stat().st_mode) == 0o600
    assert load_pseudonym_key(settings) == key


def test_a_key_file_open_to_other_users_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_text("k" * 64)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_pseudonym_key(Settings(pseudonym_key_file=path))
    path.chmod(0o600)
    assert load_pseudonym_key(Settings(pseudonym_key_file=path)) == b"k" * 64


def test_user_and_session_pseudonyms_live_in_separate_domains() -> None:
    pseudonyms = Pseudonymizer(b"0123456789abcdef")
    assert pseudonyms.sessions(["same-id"]) != pseudonyms.many(["same-id"])
    assert pseudonyms.sessions(["a", "b"]) == pseudonyms.sessions(["a", "b"])
