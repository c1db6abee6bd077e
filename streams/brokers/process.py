"""Run a broker as a detached background process found again through its pid file.

The broker outlives the command that started it: ``intentstream broker start``
returns, and Ctrl-C in that terminal does not reach it (it runs in its own
session). Everything a later command needs lives in the broker's state folder,
``<home>/brokers/<kind>-<port>/``: ``broker.pid`` and ``broker.log``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from streams.brokers.base import BrokerStatus
from streams.brokers.probe import port_in_use, wait_ready
from streams.errors import BrokerError

log = logging.getLogger(__name__)

_TAIL_LINES = 40
_TAIL_BYTES = 64 * 1024
_ROTATE_BYTES = 20 * 1024 * 1024
_KILL_WAIT_S = 5.0
# `sh` starts the broker in the background, prints its pid and exits, so the
# broker is re-parented to init: it is never our child, never a zombie we must
# reap, and Python never warns about a still-running subprocess it collects.
_DETACH = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'


class BrokerProcess(ABC):
    """Start, find and stop one broker process; subclasses say what to install and run.

    Args:
        home: intentstream's state folder; this broker's lives under ``home/brokers``.
        port: The client listener port on 127.0.0.1.
    """

    kind: str
    #: Default seconds :meth:`start` waits for readiness.
    start_timeout: float

    def __init__(self, *, home: Path, port: int) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"port must be in 1..65535, got {port}")
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        # Absolute, because the broker runs with the state folder as its cwd.
        self.state_dir = home.expanduser().absolute() / "brokers" / f"{self.kind}-{port}"
        self.pid_file = self.state_dir / "broker.pid"
        self.log_file = self.state_dir / "broker.log"

    @abstractmethod
    def install(self) -> None:
        """Fetch and prepare what the broker needs; cheap when already done."""

    @abstractmethod
    def _command(self) -> list[str]:
        """The argv that runs the broker in the foreground (cwd = the state folder)."""

    def _ports(self) -> tuple[int, ...]:
        """Every port the broker binds, checked before starting."""
        return (self.port,)

    def client_security(self) -> dict[str, Any]:
        """kafka-python's security arguments for the client listener (none: plain text)."""
        return {}

    def start(self, *, timeout: float | None = None) -> str:
        """Start the broker unless it runs, and wait until it serves metadata.

        Args:
            timeout: Seconds to wait for readiness; ``None`` = :attr:`start_timeout`.

        Returns:
            The bootstrap address, ``127.0.0.1:PORT``.

        Raises:
            BrokerError: A port is taken by something else, installing failed, or the
                broker died or was not ready in time (the message ends with its log).
        """
        wait = self.start_timeout if timeout is None else timeout
        pid = self._pid()
        if pid is not None:
            log.info("%s broker already running on %s (pid %d)", self.kind, self.bootstrap, pid)
            self._wait_ready(pid, wait)
            return self.bootstrap
        self._refuse_taken_ports()
        self.install()
        started = time.monotonic()
        pid = self._spawn()
        try:
            self._wait_ready(pid, wait)
        except BrokerError:
            # Leave nothing half-started behind, or the next start would adopt it.
            self._terminate(pid, timeout=_KILL_WAIT_S)
            self.pid_file.unlink(missing_ok=True)
            raise
        log.info(
            "%s broker ready on %s in %.1f s (pid %d, log %s)",
            self.kind,
            self.bootstrap,
            time.monotonic() - started,
            pid,
            self.log_file,
        )
        return self.bootstrap

    def stop(self, *, timeout: float = 30.0) -> bool:
        """Stop the broker: SIGTERM to its process group, SIGKILL after ``timeout`` s.

        Returns:
            ``True`` if a running broker was stopped, ``False`` if none ran.

        Raises:
            BrokerError: It survived SIGKILL.
        """
        pid = self._pid()
        if pid is None:
            log.info("%s broker on %s is not running", self.kind, self.bootstrap)
            return False
        log.info("stopping %s broker on %s (pid %d)", self.kind, self.bootstrap, pid)
        self._terminate(pid, timeout=timeout)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> BrokerStatus:
        """Whether the broker process runs (it may still be starting), and where it logs."""
        pid = self._pid()
        return BrokerStatus(
            kind=self.kind,
            running=pid is not None,
            pid=pid,
            bootstrap=self.bootstrap,
            log_file=self.log_file,
        )

    def _pid(self) -> int | None:
        """The pid of our running broker; removes a pid file whose process is gone."""
        try:
            text = self.pid_file.read_text().strip()
        except FileNotFoundError:
            return None
        pid = int(text) if text.isdigit() else None
        if pid is not None and self._is_ours(pid):
            return pid
        log.info("removing stale pid file %s (pid %s is not our broker)", self.pid_file, text)
        self.pid_file.unlink(missing_ok=True)
        return None

    def _is_ours(self, pid: int) -> bool:
        """Whether ``pid`` is alive and still this broker, not a recycled pid."""
        if not _alive(pid):
            return False
        proc = Path(f"/proc/{pid}")
        if not proc.is_dir():
            return True  # no procfs (macOS): trust the pid file
        try:
            # Brokers run with their state folder as cwd, which identifies them.
            return Path(os.readlink(proc / "cwd")) == self.state_dir.resolve()
        except OSError:
            return False  # vanished meanwhile, or another user's process

    def _refuse_taken_ports(self) -> None:
        for port in self._ports():
            if port_in_use(port):
                raise BrokerError(
                    f"cannot start the {self.kind} broker: port {port} on 127.0.0.1 is "
                    "already in use by another process; stop that process or choose "
                    "another port (--port)"
                )

    def _spawn(self) -> int:
        """Launch :meth:`_command` detached in a new session; returns its pid."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.log_file.exists() and self.log_file.stat().st_size > _ROTATE_BYTES:
            self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
        argv = self._command()
        log.info("starting %s broker: %s", self.kind, shlex.join(argv))
        done = subprocess.run(
            ["/bin/sh", "-c", _DETACH, "sh", str(self.log_file), *argv],
            cwd=self.state_dir,
            capture_output=True,
            text=True,
            check=False,
            start_new_session=True,
            timeout=30,
        )
        pid_text = done.stdout.strip()
        if done.returncode != 0 or not pid_text.isdigit():
            raise BrokerError(f"could not launch the {self.kind} broker: {done.stderr.strip()}")
        self.pid_file.write_text(f"{pid_text}\n")
        return int(pid_text)

    def _wait_ready(self, pid: int, timeout: float) -> None:
        try:
            wait_ready(
                self.port,
                timeout=timeout,
                alive=lambda: _alive(pid),
                security=self.client_security(),
            )
        except BrokerError as exc:
            raise BrokerError(
                f"{self.kind} broker on {self.bootstrap}: {exc}\n"
                f"--- last lines of {self.log_file} ---\n{tail(self.log_file)}"
            ) from exc

    def _terminate(self, pid: int, *, timeout: float) -> None:
        _signal_group(pid, signal.SIGTERM)
        if _wait_exit(pid, timeout):
            return
        log.warning(
            "%s broker (pid %d) ignored SIGTERM for %.0f s; killing it", self.kind, pid, timeout
        )
        _signal_group(pid, signal.SIGKILL)
        if not _wait_exit(pid, _KILL_WAIT_S):
            raise BrokerError(f"{self.kind} broker (pid {pid}) survived SIGKILL")


def tail(path: Path, *, lines: int = _TAIL_LINES) -> str:
    """The last ``lines`` lines of a (possibly huge) text file; empty if it is missing."""
    try:
        with path.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - _TAIL_BYTES))
            data = file.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, but belongs to another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rpartition(")")[2].split()[0] not in {"Z", "X"}


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        group = os.getpgid(pid)
        if group == os.getpgrp():
            os.kill(pid, sig)  # never signal our own process group
        else:
            os.killpg(group, sig)


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
