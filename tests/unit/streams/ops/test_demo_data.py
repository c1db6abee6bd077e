"""The demo's data: bundled in the package, found from any directory, clear when missing."""

from __future__ import annotations

import gzip
import tomllib
from collections import Counter
from pathlib import Path

import pytest

import streams
from streams.errors import ConfigurationError
from streams.ops.demo import BUNDLED_FILE, DATA_SETS, resolve_data
from streams.ops.event_log import CSV_COLUMNS, read_events
from streams.settings import Settings

PACKAGE = Path(streams.__file__).resolve().parent
ROOT = PACKAGE.parent


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an unrelated directory, with no data folder configured."""
    monkeypatch.delenv("INTENTSTREAM_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_default_settings_replay_the_bundled_sample_from_any_directory() -> None:
    assert Settings().data_dir is None
    path = resolve_data(Settings(), "retailrocket")
    assert path == BUNDLED_FILE == PACKAGE / "ops" / "demo_data" / "retailrocket-sample.csv.gz"
    assert path.is_file()


def test_the_bundled_sample_is_a_gzipped_canonical_csv() -> None:
    with gzip.open(BUNDLED_FILE, "rt", encoding="utf-8") as text:
        assert text.readline().rstrip("\n") == ",".join(CSV_COLUMNS)
    types = Counter(event["type"] for event in read_events(BUNDLED_FILE))
    assert types == {"view": 36_003, "add_to_cart": 2_128, "purchase": 610}
    assert (BUNDLED_FILE.parent / "README.md").read_text().count("CC BY-NC-SA 4.0") >= 1


def test_the_bundled_files_are_package_data() -> None:
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = table["package-data"]["streams"]
    shipped = {path for pattern in patterns for path in PACKAGE.glob(pattern)}
    assert {BUNDLED_FILE, BUNDLED_FILE.parent / "README.md"} <= shipped


def test_a_relative_data_dir_is_resolved_against_the_project_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(data_dir=Path("data")).data_dir == ROOT / "data"
    monkeypatch.setenv("INTENTSTREAM_DATA_DIR", "../shared/data")
    assert Settings().data_dir == ROOT / "../shared/data"
    assert Settings(data_dir=Path("/srv/data")).data_dir == Path("/srv/data")


def test_a_configured_data_dir_wins_and_the_sample_fills_in(elsewhere: Path) -> None:
    converted = elsewhere / "data" / DATA_SETS["retailrocket"]
    settings = Settings(data_dir=elsewhere / "data")
    assert resolve_data(settings, "retailrocket") == BUNDLED_FILE  # the folder lacks it
    converted.parent.mkdir(parents=True)
    converted.write_bytes(BUNDLED_FILE.read_bytes())
    assert resolve_data(settings, "retailrocket") == converted


def test_a_path_to_a_file_is_used_as_is(elsewhere: Path) -> None:
    log = elsewhere / "mine.jsonl"
    log.write_text("{}\n")
    assert resolve_data(Settings(), str(log)) == log


@pytest.mark.parametrize("data_dir", [None, "data"])
def test_a_set_that_is_not_converted_names_the_convert_command(
    elsewhere: Path, data_dir: str | None
) -> None:
    settings = Settings(data_dir=None if data_dir is None else elsewhere / data_dir)
    with pytest.raises(ConfigurationError, match="intentstream data convert yoochoose SOURCE"):
        resolve_data(settings, "yoochoose")


def test_a_missing_file_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"no events file at nowhere\.csv"):
        resolve_data(Settings(), "nowhere.csv")
