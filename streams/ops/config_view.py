"""``intentstream config``: the effective settings, secrets masked, and where each came from.

One line per setting, as its environment variable, so the output can be grepped or
kept as an environment file once the masked secrets are filled in::

    INTENTSTREAM_KAFKA=k1:9092             # --bootstrap-server
    INTENTSTREAM_METRICS_PORT=9400         # default
    INTENTSTREAM_MASTER_KEY=********       # environment
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from streams.ops.failures import FLAGS
from streams.settings import Settings, variable

MASK = "********"
#: Settings whose default lies in the ``home`` folder.
UNDER_HOME = ("pseudonym_key_file", "master_key_file", "model_store")


@dataclass(frozen=True, slots=True)
class Setting:
    """One effective setting: its variable, its value as text, and its source."""

    variable: str
    value: str
    source: str


def effective_settings(
    settings: Settings, *, environ: Mapping[str, str], flags: Mapping[str, object]
) -> list[Setting]:
    """Every setting, in declaration order, with the value in force and where it came from.

    Args:
        settings: the command's settings.
        environ: the environment they were read from.
        flags: setting name -> value, for those the command line set.

    Examples:
        >>> shown = effective_settings(Settings(kafka="k:1", master_key="00" * 32),
        ...     environ={"INTENTSTREAM_MASTER_KEY": "00" * 32}, flags={"kafka": "k:1"})
        >>> [(s.value, s.source) for s in shown if s.variable.endswith(("KAFKA", "MASTER_KEY"))]
        [('k:1', '--bootstrap-server'), ('********', 'environment')]
    """
    names = {name.upper() for name in environ}
    home_set = variable("home") in names
    rows = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name in flags:
            source = FLAGS.get(name, "command line")
        elif variable(name) in names:
            source = "environment"
        elif name in UNDER_HOME and home_set:
            source = "default, under INTENTSTREAM_HOME"
        else:
            source = "default"
        rows.append(Setting(variable(name), _text(value), source))
    return rows


def render(rows: list[Setting]) -> str:
    """The lines ``intentstream config`` prints, sources aligned."""
    width = max(len(f"{row.variable}={row.value}") for row in rows)
    return "\n".join(
        f"{row.variable}={row.value}".ljust(width) + f"  # {row.source}" for row in rows
    )


def _text(value: object) -> str:
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    return "" if value is None else str(value)
