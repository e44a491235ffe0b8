"""A running API for the module: uvicorn in a thread on 127.0.0.1, the projector in
another, real Kafka and PostgreSQL (the session's backend), a fresh ledger database and
topic, a few contacts, and one user per role with an API token (see api_world.py).

``api`` (module): :class:`RunningApi`. Tokens: ``api.tokens[<role or name>]``; also
``expired``, ``revoked`` and ``other-customer`` (a customer who owns nothing asked for).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from protocolo.api.server import ProjectorThread, build_services, server
from protocolo.app_assembly import create_app
from protocolo.core.config import Settings
from protocolo.devstack import Endpoints
from protocolo.producers.ledger_topic import ensure_ledger_topic
from protocolo.runtime import Runtime

try:
    import backends
except ImportError:  # tests/ turned into a package
    from tests import backends
try:
    from api_world import RunningApi, free_port, seed, users
except ImportError:  # imported as api.conftest (tests/browser shares the fixture)
    from api.api_world import RunningApi, free_port, seed, users  # type: ignore[no-redef]


@pytest.fixture(scope="module")
def api(backend: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    name = f"t_api_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(backend.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database_url = backends.with_database(backend.database_url, name)
    topic = f"t-api-{uuid.uuid4().hex[:10]}"
    ensure_ledger_topic(backend.kafka_bootstrap, topic, 4)
    settings = Settings(home=Path(tmp_path_factory.mktemp("api-home")), kafka_bootstrap=backend.kafka_bootstrap,
                        database_url=database_url, topic=topic, partitions=4,
                        group_id=f"protocolo-projector-{uuid.uuid4().hex[:8]}", dev_keys=True)
    rt = Runtime.start(settings)
    services = build_services(rt, pool_size=8)
    services.projection_timeout_s = 60
    projector = ProjectorThread.start(rt)
    port = free_port()
    running = server(create_app(services), "127.0.0.1", port)
    try:
        with running.running():
            api = RunningApi(f"http://127.0.0.1:{port}", rt, services, database_url, topic)
            users(api)
            seed(api)
            api.settle()
            yield api
    finally:
        projector.stop()
        services.close()
        with psycopg.connect(backend.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
