"""What both embedded brokers share: the address, the metadata probe, the wait for readiness."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from protocolo.devstack.processes import HOST, alive
from protocolo.devstack.state import DevStackError, log_tail

#: How long a broker may take to answer a metadata request after being started.
BROKER_START_TIMEOUT_S = 30.0


class PortTaken(DevStackError):
    """Another process bound the port between our check and the broker's bind."""


def bootstrap(port: int) -> str:
    return f"{HOST}:{port}"


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def probe_kafka(address: str, timeout: float = 2.0) -> list[str]:
    """Send a real metadata request; return the topic names. Raises if no answer in time."""
    from kafka import KafkaAdminClient

    timeout_ms = max(int(timeout * 1000), 100)
    admin = KafkaAdminClient(
        bootstrap_servers=address,
        client_id="protocolo-devstack",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
    )
    try:
        return list(admin.list_topics())
    finally:
        admin.close()


def wait_for_broker(
    name: str, address: str, pid: int, log: Path, timeout: float,
    port_taken_markers: tuple[str, ...] = (),
) -> None:
    """Until the broker at ``address`` answers a metadata request; raise quoting its log.

    ``name`` says which broker in messages; a log line holding one of
    ``port_taken_markers`` after the process died raises :class:`PortTaken`.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if not alive(pid):
            tail = log_tail(log)
            if any(marker in tail for marker in port_taken_markers):
                raise PortTaken(tail)
            raise DevStackError(f"kafka: {name} (pid {pid}) exited during start-up\n{tail}")
        remaining = deadline - time.monotonic()
        try:
            # A plain connect first: fails at once while nothing listens, where the Kafka
            # client would wait out its whole bootstrap timeout.
            socket.create_connection(host_port(address), timeout=0.5).close()
            probe_kafka(address, timeout=min(2.0, max(remaining, 0.1)))
            return
        except Exception as exc:  # any failure to answer: retry until the deadline
            last_error = exc
        if time.monotonic() >= deadline:
            raise DevStackError(
                f"kafka: {name} (pid {pid}) did not answer a metadata request at {address} "
                f"within {timeout:.0f}s ({last_error})\n{log_tail(log)}"
            )
        time.sleep(0.2)
