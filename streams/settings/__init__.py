"""The one configuration object of intentstream.

Every entry point builds one :class:`Settings` (environment variables with the
``INTENTSTREAM_`` prefix, then CLI flags on top) and passes it down; nothing
else reads the environment.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.settings.ads import AdsSettings
from streams.settings.core import (
    DEFAULT_HOME,
    DEFAULT_PORTS,
    PROJECT_ROOT,
    BrokerKind,
    CoreSettings,
)
from streams.settings.http import HttpSettings
from streams.settings.learner import LearnerSettings
from streams.settings.security import SecuritySettings

__all__ = [
    "DEFAULT_HOME",
    "DEFAULT_PORTS",
    "ENV_PREFIX",
    "PROJECT_ROOT",
    "BrokerKind",
    "Settings",
    "unknown_variables",
    "variable",
]

#: Prefix of every setting's environment variable.
ENV_PREFIX = "INTENTSTREAM_"


class Settings(
    AdsSettings, HttpSettings, LearnerSettings, SecuritySettings, CoreSettings, BaseSettings
):
    """Configuration with one documented default each (see docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    @model_validator(mode="after")
    def _erasure_outlives_raw_events(self) -> Settings:
        if self.state_ttl_seconds < 2 * self.raw_topic_retention_seconds:
            raise ValueError(
                "state_ttl_seconds must be >= 2 x raw_topic_retention_seconds (a record stays "
                "up to retention.ms + segment.ms): an erased user's marker must outlive every "
                "event of theirs still in the topic"
            )
        return self

    @model_validator(mode="after")
    def _budget_covers_the_shared_counts(self) -> Settings:
        if self.shared_counts_epsilon > self.privacy_epsilon_per_window:
            raise ValueError(
                "shared_counts_epsilon must not exceed privacy_epsilon_per_window, or no user "
                "could ever contribute"
            )
        return self

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers: the configured cluster, else the local broker's address."""
        return self.kafka or f"127.0.0.1:{DEFAULT_PORTS[self.broker_kind]}"

    def as_environment(self) -> dict[str, str]:
        """These settings as ``INTENTSTREAM_*`` variables, to configure a child process."""
        values = self.model_dump(mode="json")
        for name, value in self:
            if isinstance(value, SecretStr):
                values[name] = value.get_secret_value()
        return {
            f"INTENTSTREAM_{name.upper()}": str(value)
            for name, value in values.items()
            if value is not None
        }

    def redacted(self) -> dict[str, object]:
        """The effective configuration with secrets hidden, for the startup log."""
        return self.model_dump(mode="json")


def variable(field: str) -> str:
    """The environment variable of a setting.

    Examples:
        >>> variable("metrics_port")
        'INTENTSTREAM_METRICS_PORT'
    """
    return f"{ENV_PREFIX}{field.upper()}"


def unknown_variables(environ: Mapping[str, str]) -> dict[str, str | None]:
    """``INTENTSTREAM_*`` variables of ``environ`` that are no setting, each with the
    closest setting's variable (None when none is close): a typo is ignored otherwise.

    Examples:
        >>> unknown_variables({"INTENTSTREAM_METRIC_PORT": "1", "INTENTSTREAM_KAFKA": "k:1"})
        {'INTENTSTREAM_METRIC_PORT': 'INTENTSTREAM_METRICS_PORT'}
    """
    fields = list(Settings.model_fields)
    unknown: dict[str, str | None] = {}
    for name in sorted(environ):
        field = name.upper().removeprefix(ENV_PREFIX).lower()
        if name.upper().startswith(ENV_PREFIX) and field not in Settings.model_fields:
            # Compared without the prefix, which every name shares.
            close = difflib.get_close_matches(field, fields, n=1, cutoff=0.7)
            if "bootstrap" in field:  # Kafka's own word for it
                close = ["kafka"]
            unknown[name] = variable(close[0]) if close else None
    return unknown
