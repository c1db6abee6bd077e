"""The command line: global options, one-line failures naming what to fix, and the
commands that need no broker (``keygen``, ``config``, ``model show|prune``)."""

from __future__ import annotations

import logging
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from online_learning.registry import ModelStore
from streams.ops.cli import CLIENT_LOGGERS, build_parser, main
from streams.ops.commands.processes import cmd_keygen
from streams.pipeline.crypto import load_master_key
from streams.settings import Settings

HEADER = "ts,user_id,session_id,type,item_id,category,price,query"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No INTENTSTREAM_* variable of the machine; a home of its own; client loggers restored."""
    import os

    for name in [n for n in os.environ if n.startswith("INTENTSTREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("INTENTSTREAM_HOME", str(tmp_path / "home"))
    levels = {name: logging.getLogger(name).level for name in CLIENT_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port that refuses connections: bound (never listening) until the test ends."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


def one_error_line(err: str) -> str:
    """The single line a failure printed on stderr (and that there was only one)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("intentstream: error: ")
    return lines[0]


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


def test_keygen_writes_under_intentstream_home(tmp_path: Path) -> None:
    assert main(["keygen"]) == 0
    assert {p.name for p in (tmp_path / "home").iterdir()} == {"pseudonym.key", "master.key"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--bootstrap-server", "k1:9092", "topics"],
        ["--bootstrap", "k1:9092", "topics"],
        ["topics", "--bootstrap", "k1:9092"],
        ["topics", "--bootstrap-server", "k1:9092"],
        ["--bootstrap-server", "k0:9092", "topics", "--bootstrap", "k1:9092"],
    ],
)
def test_the_bootstrap_server_goes_before_the_command_or_after_it(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.bootstrap == "k1:9092"


def test_a_command_shows_the_broker_options_only_where_they_act(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown = {}
    for command in (["keygen"], ["train"], ["config"], ["model", "list"], ["tail"], ["dlq"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*command, "--help"])
        shown[command[0]] = "--bootstrap-server" in capsys.readouterr().out
    assert shown == {
        "keygen": False,
        "train": False,
        "config": False,
        "model": False,
        "tail": True,
        "dlq": True,
    }
    with pytest.raises(SystemExit):
        build_parser().parse_args(["keygen", "--bootstrap", "k:1"])
    assert "unrecognized arguments: --bootstrap" in one_error_line(capsys.readouterr().err)


def test_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("intentstream 0.")


def test_a_bad_argument_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--kind", "zookeeper", "topics"])
    assert exit_.value.code == 2
    assert "--kind: invalid choice" in one_error_line(capsys.readouterr().err)


def test_a_bad_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INTENTSTREAM_METRICS_PORT", "ninety")
    assert main(["config"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "INTENTSTREAM_METRICS_PORT: Input should be a valid integer" in line


def test_inconsistent_settings_name_the_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INTENTSTREAM_STATE_TTL_SECONDS", "60")
    assert main(["config"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "INTENTSTREAM_STATE_TTL_SECONDS must be >= 2 x INTENTSTREAM_RAW_TOPIC" in line


def test_a_secret_that_fails_validation_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INTENTSTREAM_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("INTENTSTREAM_SASL_PASSWORD", "hunter2-secret")
    assert main(["config"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "INTENTSTREAM_SASL_USERNAME" in line and "hunter2" not in line


def test_an_unknown_variable_warns_with_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INTENTSTREAM_METRIC_PORT", "9500")
    assert main(["config"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "intentstream: warning: INTENTSTREAM_METRIC_PORT is not a setting, ignored; "
        "did you mean INTENTSTREAM_METRICS_PORT?"
    ]


def test_config_masks_secrets_and_says_where_each_value_came_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("INTENTSTREAM_MASTER_KEY", "ab" * 32)
    monkeypatch.setenv("INTENTSTREAM_TOP_K", "7")
    assert main(["--bootstrap-server", "k1:9092", "config"]) == 0
    out = capsys.readouterr().out
    assert "ab" * 32 not in out
    lines = {line.split("=")[0]: line for line in out.splitlines()}
    assert lines["INTENTSTREAM_MASTER_KEY"].split() == [
        "INTENTSTREAM_MASTER_KEY=********",
        "#",
        "environment",
    ]
    assert lines["INTENTSTREAM_TOP_K"].split()[0] == "INTENTSTREAM_TOP_K=7"
    assert lines["INTENTSTREAM_KAFKA"].endswith("# --bootstrap-server")
    assert lines["INTENTSTREAM_BROKER_KIND"].split()[0] == "INTENTSTREAM_BROKER_KIND=kafka"
    assert lines["INTENTSTREAM_BATCH_MAX"].endswith("# default")
    home = tmp_path / "home"
    assert lines["INTENTSTREAM_MODEL_STORE"].startswith(f"INTENTSTREAM_MODEL_STORE={home}/models")
    assert lines["INTENTSTREAM_MODEL_STORE"].endswith("# default, under INTENTSTREAM_HOME")


def test_a_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["replay"], ["items", "load"]):
        assert main([*command, str(tmp_path / "nope.csv")]) == 2
        assert "nope.csv" in one_error_line(capsys.readouterr().err)


def test_a_bad_header_is_one_line_before_any_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], closed_port: int
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\nu1,i1\n")
    unreachable = ["--bootstrap-server", f"127.0.0.1:{closed_port}"]
    assert main([*unreachable, "replay", str(bad)]) == 2
    assert f"{bad}:1: expected the CSV header {HEADER}" in one_error_line(capsys.readouterr().err)
    assert main([*unreachable, "items", "load", str(bad)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{bad}:1: expected a CSV header with id,title" in line


def test_an_unreachable_broker_is_one_line_naming_the_variable(
    capsys: pytest.CaptureFixture[str], closed_port: int
) -> None:
    assert main(["--bootstrap-server", f"127.0.0.1:{closed_port}", "dlq"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == (
        f"intentstream: error: cannot reach Kafka at 127.0.0.1:{closed_port}: set "
        "--bootstrap-server or INTENTSTREAM_KAFKA to a running broker"
    )


# model show | prune ------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "home" / "models")


@pytest.fixture
def publish(
    store: ModelStore, tmp_path: Path, tiny_checkpoint: Callable[..., Path]
) -> Callable[..., str]:
    """``publish(parent=None)``: a tiny version in the store (under INTENTSTREAM_HOME)."""
    seeds = iter(range(100))

    def make(parent: str | None = None) -> str:
        seed = next(seeds)
        run = tiny_checkpoint(tmp_path / f"run{seed}", seed=seed)
        privacy = {"epsilon": 1.5, "delta": 1e-6, "learner": {"epsilon": 0.5, "delta": 1e-6}}
        metrics = {"P@20": 50.0 + seed}
        return store.publish(run, parent=parent, metrics=metrics, privacy=privacy).version

    return make


def test_model_show_prints_lineage_metrics_privacy_and_files(
    store: ModelStore, publish: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    base = publish()
    child = publish(parent=base)
    store.set_current(child)
    assert main(["model", "show", child]) == 0
    rows = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert rows["version"] == f"{child}  (current)"
    assert rows["lineage"] == f"{child} <- {base}"
    assert rows["metrics"] == "P@20 51.00"
    assert rows["privacy"] == "epsilon 1.5, delta 1e-06 per session (of which learner epsilon 0.5)"
    assert "weights.pt" in rows["files"] and "MANIFEST.json" in rows["files"]


def test_model_show_of_an_unknown_version_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["model", "show", "seq-nope"]) == 2
    assert "no model version 'seq-nope'" in one_error_line(capsys.readouterr().err)


def test_model_prune_keeps_the_current_lineage_and_says_what_it_removes(
    store: ModelStore, publish: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    base = publish()
    other = publish()
    child = publish(parent=base)
    newest = publish()
    store.set_current(child)

    assert main(["model", "prune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would remove {other}" in out and f"would remove {newest}" in out
    assert "would remove 2 version(s)" in out
    assert {info.version for info in store.versions()} == {base, other, child, newest}

    assert main(["model", "prune", "--keep", "1"]) == 0
    out = capsys.readouterr().out
    assert f"removing {other}" in out and "removed 1 version(s)" in out
    assert {info.version for info in store.versions()} == {base, child, newest}
    assert not list(store.root.glob(".deleted-*"))


def test_model_prune_without_a_current_version_removes_nothing(
    store: ModelStore, publish: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    version = publish()
    assert main(["model", "prune"]) == 2
    assert "INTENTSTREAM_MODEL_STORE" in one_error_line(capsys.readouterr().err)
    assert [info.version for info in store.versions()] == [version]
