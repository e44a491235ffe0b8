"""Shared fixtures: one Kafka + PostgreSQL backend per session, fresh databases and topics.

Fixtures
--------
``backend`` (session)
    :class:`protocolo.devstack.Endpoints`; ``database_url`` points at the server's admin
    ``postgres`` database. See ``tests/backends.py`` for how the backend is chosen.
``database_url``
    URL of a fresh, empty database (``t_<test>_<random>``), dropped after the test.
``topic``
    Name of a fresh topic with 4 partitions, created with ``ensure_ledger_topic``.
``settings``
    :class:`protocolo.core.config.Settings` with ``home=tmp_path``, those URLs, that topic,
    4 partitions and a consumer group id of its own (so no two tests share a group).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from protocolo.core.config import Settings
from protocolo.devstack import Endpoints
from protocolo.producers.ledger_topic import ensure_ledger_topic

try:
    import backends  # pytest puts tests/ on sys.path ("prepend" import mode)
except ImportError:  # tests/ turned into a package
    from tests import backends

TEST_PARTITIONS = 4
_PLAN = pytest.StashKey[backends.Plan]()


def _plan(config: pytest.Config) -> backends.Plan:
    if _PLAN not in config.stash:
        config.stash[_PLAN] = backends.plan_backend()
    return config.stash[_PLAN]


def pytest_report_header(config: pytest.Config) -> str:
    return f"protocolo backend: {_plan(config).describe()}"


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> Iterator[Endpoints]:
    """The session's Kafka and PostgreSQL; fails (never skips) if they cannot start."""
    # Not under tmp_path_factory: see backends.scratch_dir. Also short, which the embedded
    # PostgreSQL's unix socket path needs.
    with (
        backends.scratch_dir("protocolo-test-stack-") as home,
        backends.running_backend(_plan(request.config), home) as endpoints,
    ):
        yield endpoints


@pytest.fixture
def database_url(backend: Endpoints, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"t_{backends.safe_name(request.node.name, 30)}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(backend.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield backends.with_database(backend.database_url, name)
    with psycopg.connect(backend.database_url, autocommit=True) as conn:
        # FORCE: a test may leave connections open (a projector thread, a failed assertion)
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def topic(backend: Endpoints, request: pytest.FixtureRequest) -> str:
    # '-' only: Kafka refuses a name that differs from an existing one by '.' vs '_'
    name = f"t-{backends.safe_name(request.node.name).replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    partitions = ensure_ledger_topic(backend.kafka_bootstrap, name, TEST_PARTITIONS)
    assert partitions == TEST_PARTITIONS, f"fresh topic {name} has {partitions} partitions"
    return name


@pytest.fixture
def settings(tmp_path, backend: Endpoints, database_url: str, topic: str) -> Settings:
    return Settings(
        home=tmp_path,
        kafka_bootstrap=backend.kafka_bootstrap,
        database_url=database_url,
        topic=topic,
        partitions=TEST_PARTITIONS,
        group_id=f"protocolo-projector-{uuid.uuid4().hex[:8]}",
        dev_keys=True,  # throw-away keys under tmp_path; a deployment never invents keys
    )
