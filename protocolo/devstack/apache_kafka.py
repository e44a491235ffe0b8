"""The default broker: Apache Kafka 4.x, one KRaft node (broker + controller), log on disk.

Needs Java 17+ (Kafka 4 brokers do) and, the first time, Maven (see :mod:`.kafka_jars`
for the jars). Its files::

    home/kafka/lib/               the jars (kafka_jars), with pom.xml and maven.log beside it
    home/kafka/server.properties  written at each start (the ports may change)
    home/kafka/log4j2.properties  the broker's logging, copied from this package at each start
    home/kafka/data/              log.dirs and the KRaft metadata log, formatted on first start
    home/kafka/kafka.log          the broker's output (the previous run's in kafka.log.1)

``down`` stops the JVM with SIGTERM (a controlled shutdown); ``up`` starts it on the same
data directory, so every record survives. The cluster id is the one the data directory
was formatted with; the ports recorded in ``stack.json`` are reused while they are free.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

from protocolo.devstack.broker import PortTaken, bootstrap, wait_for_broker
from protocolo.devstack.kafka_jars import (
    MIN_JAVA,
    jars_resolved,
    java_executable,
    java_major,
    kafka_version,
    lib_dir,
    resolve_jars,
)
from protocolo.devstack.processes import (
    HOST,
    cmdline,
    free_port,
    reusable_port,
    spawn_detached,
    terminate,
)
from protocolo.devstack.state import (
    DevStackError,
    Log,
    StackPaths,
    log_tail,
    rotate_log,
    update_state,
)

NAME = "kafka"
#: The JVM's heap: a single dev node needs little, and the machine is shared.
HEAP = ("-Xms128m", "-Xmx512m")
#: First start on a loaded 2-core machine: JVM start, metadata log, broker registration.
START_TIMEOUT_S = 120.0
#: SIGTERM makes a controlled shutdown; SIGKILL after this long.
STOP_TIMEOUT_S = 30.0
_PORT_ATTEMPTS = 3


def description() -> str:
    return f"Apache Kafka {kafka_version()} (KRaft, one node), log on disk"


# --------------------------------------------------------------------------- paths


def log_path(paths: StackPaths) -> Path:
    return paths.kafka_dir / "kafka.log"


def data_dir(paths: StackPaths) -> Path:
    return paths.kafka_dir / "data"


def _config_file(paths: StackPaths) -> Path:
    return paths.kafka_dir / "server.properties"


def unavailable_reason(paths: StackPaths) -> str | None:
    """Why Apache Kafka cannot run here (None when it can)."""
    java = java_executable()
    if java is None:
        return "no Java found (JAVA_HOME unset and no java on the PATH)"
    major = java_major(java)
    if major is None or major < MIN_JAVA:
        return f"{java} is Java {major or '?'}; Apache Kafka 4 needs Java {MIN_JAVA}+"
    if not jars_resolved(paths) and shutil.which("mvn") is None:
        return "the broker's jars are not resolved yet and Maven (mvn) is not on the PATH"
    return None


# --------------------------------------------------------------------------- configuration


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64 without padding (as Kafka's
    ``Uuid.randomUuid().toString()``, which also never starts one with '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def server_properties(data: Path, port: int, controller_port: int) -> str:
    """One node that is both broker and controller, on loopback only."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data),
        # one node: every internal topic has one replica
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # a group's first member does not wait 3 s for others that will not come
        "group.initial.rebalance.delay.ms": "0",
        # topics are created on purpose (ensure_ledger_topic), never by a typo
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
    }
    lines = ["# Written by protocolo dev up at each start; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def java_argv(paths: StackPaths, main: str, *args: str, heap: tuple[str, ...] = ()) -> list[str]:
    java = java_executable()
    if java is None:
        raise DevStackError("kafka: no Java found (JAVA_HOME unset and no java on the PATH)")
    log4j = paths.kafka_dir / "log4j2.properties"
    log4j.write_text(resources.files("protocolo.devstack").joinpath("kafka/log4j2.properties").read_text())
    return [
        java, *heap, "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
        "-cp", f"{lib_dir(paths)}/*", main, *args,
    ]


def _format_storage(paths: StackPaths, log: Log) -> str:
    """``kafka.tools.StorageTool format`` on first start; returns the cluster id."""
    meta = data_dir(paths) / "meta.properties"
    if meta.exists():
        found = re.search(r"^cluster\.id=(\S+)", meta.read_text(), re.MULTILINE)
        if found is None:
            raise DevStackError(f"kafka: {meta} names no cluster.id; remove {data_dir(paths)} to start afresh")
        return found.group(1)
    cluster_id = new_cluster_id()
    argv = java_argv(paths, "kafka.tools.StorageTool", "format", "--cluster-id", cluster_id,
                      "--config", str(_config_file(paths)))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT_S,
                         cwd=paths.kafka_dir)
    if out.returncode != 0 or not meta.exists():
        detail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        raise DevStackError(f"kafka: formatting {data_dir(paths)} failed (exit {out.returncode})\n{detail}")
    log(f"kafka: formatted {data_dir(paths)} (cluster id {cluster_id})")
    return cluster_id


# --------------------------------------------------------------------------- run, stop


def running_pid(entry: dict[str, Any], paths: StackPaths) -> int | None:
    """The recorded broker pid if that process is still our Kafka (not a reused pid)."""
    pid = entry.get("pid")
    if not isinstance(pid, int):
        return None
    argv = cmdline(pid)
    if argv is not None and "kafka.Kafka" in argv and str(_config_file(paths)) in argv:
        return pid
    return None


def start(paths: StackPaths, entry: dict[str, Any], log: Log, timeout: float) -> str:
    """Start the broker (not running yet) and wait until it answers; return its bootstrap."""
    resolve_jars(paths, log)
    data_dir(paths).mkdir(parents=True, exist_ok=True)
    port_hint, controller_hint = entry.get("port"), entry.get("controller_port")
    for attempt in range(_PORT_ATTEMPTS):
        port = reusable_port(port_hint)
        controller_port = reusable_port(controller_hint)
        while controller_port == port:
            controller_port = free_port()
        _config_file(paths).write_text(server_properties(data_dir(paths), port, controller_port))
        cluster_id = _format_storage(paths, log)
        rotate_log(log_path(paths))
        pid = spawn_detached(
            java_argv(paths, "kafka.Kafka", str(_config_file(paths)), heap=HEAP),
            log_path(paths), paths.kafka_dir,
        )
        address = bootstrap(port)
        update_state(paths, "kafka", broker=NAME, pid=pid, port=port,
                     controller_port=controller_port, bootstrap=address, cluster_id=cluster_id,
                     version=kafka_version(), data=str(data_dir(paths)),
                     log=str(log_path(paths)), started_at=time.time())
        try:
            wait_for_broker("Apache Kafka", address, pid, log_path(paths), timeout,
                            port_taken_markers=("Address already in use", "BindException"))
        except PortTaken:
            log(f"kafka: port {port} or {controller_port} was taken, trying others")
            port_hint = controller_hint = None
            if attempt + 1 == _PORT_ATTEMPTS:
                raise DevStackError(
                    f"kafka: Apache Kafka could not bind its ports after {_PORT_ATTEMPTS} "
                    f"attempts\n{log_tail(log_path(paths))}"
                ) from None
            continue
        except DevStackError:
            terminate(pid, STOP_TIMEOUT_S)
            raise
        log(f"kafka: started Apache Kafka {kafka_version()} at {address} (pid {pid}; "
            f"log on disk in {data_dir(paths)})")
        return address
    raise AssertionError("unreachable")  # pragma: no cover


def stop(pid: int, paths: StackPaths) -> str:
    """Controlled shutdown; says how. The log stays on disk."""
    how = terminate(pid, STOP_TIMEOUT_S)
    return f"stopped Apache Kafka (pid {pid}, {how}); its log is kept in {data_dir(paths)}"
