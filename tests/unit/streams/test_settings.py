"""The settings refuse half-configured broker security and keep its secrets out of logs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import pydantic
import pytest

from streams.settings import Settings, unknown_variables

SASL_SSL: dict[str, Any] = {
    "security_protocol": "SASL_SSL",
    "ssl_cafile": Path("/etc/intentstream/ca.pem"),
    "ssl_certfile": Path("/etc/intentstream/client.pem"),
    "ssl_keyfile": Path("/etc/intentstream/client.key"),
    "sasl_mechanism": "SCRAM-SHA-256",
    "sasl_username": "shop",
    "sasl_password": "s3cret-password",
}


@pytest.mark.parametrize(
    ("security", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs sasl_username and sasl_password"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "shop", "sasl_password": ""},
            "needs sasl_username and sasl_password",
        ),
        ({"sasl_username": "shop", "sasl_password": "pw"}, "security_protocol is PLAINTEXT"),
        (
            {"security_protocol": "SSL", "ssl_certfile": Path("client.pem")},
            "ssl_certfile needs ssl_keyfile",
        ),
        ({"ssl_cafile": Path("ca.pem")}, "PLAINTEXT does not use TLS"),
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
        ({"replication_factor": 0}, "replication_factor"),
    ],
)
def test_half_configured_security_is_refused(security: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        Settings(**security)


def test_secured_settings_reach_a_child_process_but_not_the_log() -> None:
    settings = Settings(**SASL_SSL, replication_factor=3, metrics_host="0.0.0.0")
    assert "s3cret-password" not in str(settings.redacted())
    assert settings.redacted()["sasl_username"] == "shop"
    environment = settings.as_environment()
    assert environment["INTENTSTREAM_SASL_PASSWORD"] == "s3cret-password"
    with mock.patch.dict(os.environ, environment, clear=True):
        assert Settings() == settings


def test_metrics_bind_to_loopback_unless_opened() -> None:
    with mock.patch.dict(os.environ, {}, clear=True):
        assert Settings().metrics_host == "127.0.0.1"


def test_home_moves_every_default_path(tmp_path: Path) -> None:
    environment = {"INTENTSTREAM_HOME": str(tmp_path)}
    with mock.patch.dict(os.environ, environment, clear=True):
        settings = Settings()
    assert settings.pseudonym_key_file == tmp_path / "pseudonym.key"
    assert settings.master_key_file == tmp_path / "master.key"
    assert settings.model_store == tmp_path / "models"
    # An explicit path still wins over the home folder.
    assert Settings(home=tmp_path, model_store=Path("/srv/models")).model_store == Path(
        "/srv/models"
    )


def test_an_unknown_variable_is_named_with_the_closest_setting() -> None:
    environment = {
        "INTENTSTREAM_METRIC_PORT": "9400",
        "INTENTSTREAM_KAFKA": "k:9092",
        "INTENTSTREAM_NOTHING_LIKE_IT": "1",
        "INTENTSTREAM_BOOTSTRAP_SERVERS": "k:9092",
        "HOME": "/root",
    }
    assert unknown_variables(environment) == {
        "INTENTSTREAM_METRIC_PORT": "INTENTSTREAM_METRICS_PORT",
        "INTENTSTREAM_NOTHING_LIKE_IT": None,
        "INTENTSTREAM_BOOTSTRAP_SERVERS": "INTENTSTREAM_KAFKA",
    }


def test_a_home_with_a_tilde_is_the_users() -> None:
    settings = Settings(home=Path("~/intentstream-state"))
    assert settings.home == Path.home() / "intentstream-state"
    assert settings.master_key_file == Path.home() / "intentstream-state" / "master.key"
