"""What went wrong, in one line that names what to fix: the command line's error messages.

``intentstream`` ends every failure it understands with one line on stderr and
exit status 2: a broker it cannot reach, a missing or malformed file, a bad
setting (named by its ``INTENTSTREAM_*`` variable or flag), a refused model
version. :func:`explain` turns an exception into that line; an exception it
does not know stays a bug, with its traceback.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping

import aiokafka.errors
import kafka.errors
import pydantic

from model.errors import ModelError
from online_learning.errors import OnlineLearningError
from streams.errors import BrokerError, IntentstreamError
from streams.settings import Settings, variable

#: Exit status of a failure the user can fix (argparse's own for a bad argument).
EXIT_USAGE = 2

#: The flag that sets each setting, where one does.
FLAGS: dict[str, str] = {"kafka": "--bootstrap-server", "broker_kind": "--kind"}

_CONNECTION_ERRORS = (
    aiokafka.errors.KafkaConnectionError,
    kafka.errors.NoBrokersAvailable,
    kafka.errors.KafkaConnectionError,
)
_KAFKA_ERRORS = (aiokafka.errors.KafkaError, kafka.errors.KafkaError)
#: A file named on the command line (or by a setting) that is not there or not readable.
_FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_SECRETS = {
    name for name, field in Settings.model_fields.items() if "Secret" in str(field.annotation)
}


class CommandError(IntentstreamError):
    """A command cannot do what it was asked; the message says what to fix."""


def say(line: str) -> None:
    """One line on stderr, never wrapped: ``intentstream: LINE``."""
    sys.stderr.write(f"intentstream: {line}\n")
    sys.stderr.flush()


def explain(
    exc: BaseException, *, settings: Settings | None, flags: Mapping[str, str] = FLAGS
) -> str | None:
    """The one line that says what failed and what to fix, or None for a bug.

    Args:
        exc: what the command raised.
        settings: the command's settings (None when they did not validate).
        flags: setting name -> the flag that sets it.

    Examples:
        >>> explain(FileNotFoundError(2, "No such file or directory", "x.csv"), settings=None)
        'x.csv: No such file or directory'
        >>> explain(KeyError("k"), settings=None) is None
        True
    """
    if isinstance(exc, pydantic.ValidationError):
        return settings_problem(exc, flags=flags)
    if _unreachable(exc):
        return unreachable(settings, exc)
    if isinstance(exc, _KAFKA_ERRORS):
        where = f"Kafka at {settings.bootstrap}" if settings else "Kafka"
        return (
            f"{where}: {_first_line(exc)} (check INTENTSTREAM_SECURITY_PROTOCOL and the "
            "INTENTSTREAM_SSL_*/SASL_* settings)"
        )
    if isinstance(exc, IntentstreamError | OnlineLearningError | ModelError):
        return _first_line(exc)
    if isinstance(exc, OSError) and (exc.filename is not None or isinstance(exc, _FILE_ERRORS)):
        return f"{exc.filename}: {exc.strerror or exc}" if exc.filename is not None else str(exc)
    return None


def _unreachable(exc: BaseException) -> bool:
    """A client gave up connecting (itself, or the cause of our own BrokerError)."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    return isinstance(exc, BrokerError) and isinstance(exc.__cause__, _CONNECTION_ERRORS)


def unreachable(settings: Settings | None, exc: BaseException) -> str:
    """The line for a broker no client could connect to.

    Examples:
        >>> print(unreachable(Settings(kafka="localhost:1"), OSError()))
        ... # doctest: +NORMALIZE_WHITESPACE
        cannot reach Kafka at localhost:1: set --bootstrap-server or INTENTSTREAM_KAFKA to a
        running broker
    """
    if settings is None:
        return "cannot reach Kafka: set --bootstrap-server or INTENTSTREAM_KAFKA"
    if settings.kafka is None:
        return (
            f"cannot reach the local {settings.broker_kind} broker at {settings.bootstrap}: "
            "start it (`intentstream broker start`), or set --bootstrap-server or "
            "INTENTSTREAM_KAFKA to a running cluster"
        )
    tls = "" if settings.security_protocol == "PLAINTEXT" else " and INTENTSTREAM_SECURITY_PROTOCOL"
    return (
        f"cannot reach Kafka at {settings.bootstrap}: set --bootstrap-server or "
        f"INTENTSTREAM_KAFKA{tls} to a running broker"
    )


def settings_problem(exc: pydantic.ValidationError, *, flags: Mapping[str, str] = FLAGS) -> str:
    """A settings ValidationError as one line naming the variables (and flags) to fix.

    Examples:
        >>> try:
        ...     Settings(metrics_port="nine")
        ... except pydantic.ValidationError as exc:
        ...     print(settings_problem(exc))  # doctest: +NORMALIZE_WHITESPACE
        INTENTSTREAM_METRICS_PORT: Input should be a valid integer, unable to parse string as an
        integer (got 'nine')
    """
    problems = []
    for error in exc.errors(include_url=False):
        message = _named(str(error["msg"]).removeprefix("Value error, "))
        field = str(error["loc"][0]) if error["loc"] else None
        if field is None:
            problems.append(message)
            continue
        name = variable(field) + (f" ({flags[field]})" if field in flags else "")
        shown = "" if field in _SECRETS else f" (got {error['input']!r})"
        problems.append(f"{name}: {message}{shown}")
    return "; ".join(problems)


def _named(message: str) -> str:
    """A validator's message with each snake_case setting name as its variable."""
    fields = "|".join(name for name in Settings.model_fields if "_" in name)
    return re.sub(rf"\b({fields})\b", lambda m: variable(m.group(1)), message)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    first, _, rest = text.partition("\n")
    return f"{first} (--verbose shows more)" if rest.strip() else first
