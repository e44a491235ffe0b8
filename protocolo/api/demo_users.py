"""The demo's users: one per role the console shows, a second approver, and a customer
tied to the demo day's sample CPF. Passwords are generated and returned ONCE (the caller
prints them); an existing user is left alone (its password was printed when it was made)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from . import identities
from .roles import Role

DEMO_REGULATOR = "demo-regulator"  # whom the demo's export and report are made for

DEMO_USERS: tuple[tuple[str, Role], ...] = (
    ("ana", Role.ANALYST),
    ("sofia", Role.SUPERVISOR),
    ("carla", Role.COMPLIANCE),
    ("rui", Role.COMPLIANCE),  # the second person of two-person approval
    ("regina", Role.REGULATOR),
    ("cliente", Role.CUSTOMER),
)


@dataclass(frozen=True)
class DemoUser:
    name: str
    role: Role
    password: str | None  # None: the user existed already


def create_demo_users(conn: psycopg.Connection[Any], customer_subject: str | None) -> list[DemoUser]:
    identities.migrate_identities(conn)
    made: list[DemoUser] = []
    for name, role in DEMO_USERS:
        if role is Role.CUSTOMER and customer_subject is None:
            continue
        if conn.execute("SELECT 1 FROM api_users WHERE user_name = %s", (name,)).fetchone() is not None:
            made.append(DemoUser(name, role, None))
            continue
        password = secrets.token_urlsafe(12)
        identities.add_user(conn, name, role, password=password,
                            subject_ref=customer_subject if role is Role.CUSTOMER else None,
                            regulator=DEMO_REGULATOR if role is Role.REGULATOR else None)
        made.append(DemoUser(name, role, password))
    return made
