"""``protocolo demo``'s console users: one per role plus a second approver and the sample
customer; each password is handed out once and logs in; a second demo run changes nobody."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from protocolo.api import identities
from protocolo.api.demo_users import DEMO_USERS, create_demo_users
from protocolo.api.roles import Role
from protocolo.devstack import Endpoints

try:
    import backends
except ImportError:  # tests/ turned into a package
    from tests import backends


@pytest.fixture()
def registry(backend: Endpoints) -> Iterator[psycopg.Connection[Any]]:
    name = f"t_demo_users_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(backend.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(backends.with_database(backend.database_url, name), autocommit=True) as conn:
            yield conn
    finally:
        with psycopg.connect(backend.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_demo_users_get_a_password_once_and_it_logs_them_in(registry: psycopg.Connection[Any]) -> None:
    first = create_demo_users(registry, customer_subject="blind-index-of-the-sample-cpf")
    assert [(u.name, u.role) for u in first] == list(DEMO_USERS)
    assert {Role.ANALYST, Role.SUPERVISOR, Role.COMPLIANCE, Role.CUSTOMER} <= {u.role for u in first}
    assert sum(u.role is Role.COMPLIANCE for u in first) >= 2  # two-person approval needs two
    for u in first:
        assert u.password is not None and identities.check_password(registry, u.name, u.password)
        assert not identities.check_password(registry, u.name, u.password + "x")
    stored = registry.execute("SELECT subject_ref FROM api_users WHERE role = 'customer'").fetchall()
    assert stored == [("blind-index-of-the-sample-cpf",)]

    again = create_demo_users(registry, customer_subject="blind-index-of-the-sample-cpf")
    assert [u.password for u in again] == [None] * len(DEMO_USERS)
    assert all(identities.check_password(registry, u.name, str(u.password)) for u in first)


def test_without_a_sample_customer_no_customer_user_is_made(registry: psycopg.Connection[Any]) -> None:
    made = create_demo_users(registry, customer_subject=None)
    assert Role.CUSTOMER not in {u.role for u in made}
