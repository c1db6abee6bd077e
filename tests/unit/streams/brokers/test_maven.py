"""Installing Kafka's jars with Maven, without Maven (``subprocess.run`` is mocked)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from unittest import mock

import pytest

from streams.brokers.maven import install_kafka_jars, kafka_pom
from streams.errors import BrokerError


def test_pom_uses_the_slf4j_1_binding_kafka_needs() -> None:
    pom = kafka_pom("4.1.1")

    assert "<artifactId>kafka_2.13</artifactId>\n      <version>4.1.1</version>" in pom
    assert "<artifactId>log4j-slf4j-impl</artifactId>" in pom
    assert "log4j-slf4j2-impl" not in pom


def test_install_skips_a_completed_install(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / ".complete").write_text("done\n")
    run = mock.create_autospec(subprocess.run, spec_set=True)

    with mock.patch("streams.brokers.maven.subprocess.run", run):
        install_kafka_jars(libs, version="4.1.1")

    run.assert_not_called()


def test_install_redoes_a_half_finished_install(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "truncated.jar").write_text("")
    done = subprocess.CompletedProcess(args=[], returncode=0, stdout="", stderr="")
    run = mock.create_autospec(subprocess.run, spec_set=True, return_value=done)

    with mock.patch("streams.brokers.maven.subprocess.run", run):
        install_kafka_jars(libs, version="4.1.1")

    argv = run.call_args.args[0]
    assert "dependency:copy-dependencies" in argv
    assert f"-DoutputDirectory={libs}" in argv
    assert not (libs / "truncated.jar").exists()
    assert (libs / ".complete").is_file()
    assert "kafka_2.13" in (tmp_path / "pom.xml").read_text()


def test_failed_mvn_raises_with_its_output(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    done = subprocess.CompletedProcess(args=[], returncode=1, stdout="", stderr="Could not resolve")
    run = mock.create_autospec(subprocess.run, spec_set=True, return_value=done)

    with (
        mock.patch("streams.brokers.maven.subprocess.run", run),
        pytest.raises(BrokerError, match="Could not resolve"),
    ):
        install_kafka_jars(libs, version="4.1.1")
    assert not (libs / ".complete").exists()
