"""Users, API tokens and console sessions, in the registry database.

The registry (not a ledger database) because identities must outlive any one ledger,
like the protocol-number sequence. The API layer owns these tables and their migration
(``protocolo/api/migrations``). A credential is ``<id>.<secret>``: the id finds the row,
the secret is checked against its scrypt hash; revoked or expired rows never match.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from protocolo.core.database import MigrationSet, migrate
from protocolo.core.errors import EventRejected

from .roles import Role
from .secrets import PASSWORD_COST, TOKEN_COST, check_secret, hash_secret, new_secret

IDENTITY_MIGRATIONS = MigrationSet(owner="api", package="protocolo.api")

TOKEN_PREFIX = "pt_"
SESSION_PREFIX = "ps_"
DEFAULT_TOKEN_DAYS = 90
SESSION_HOURS = 8
_USER_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{1,63}")
_REGULATOR = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user, the role they act in and, for a customer, their blind index."""

    user_name: str
    role: Role
    subject_ref: str | None = None
    credential_id: str | None = None
    via_session: bool = False
    csrf_hash: str | None = None
    regulator: str | None = None  # regulator users: whose exports and reports they see


@dataclass(frozen=True)
class IssuedCredential:
    credential: str        # shown once
    credential_id: str
    expires_at: datetime
    csrf_token: str | None = None


def migrate_identities(conn: psycopg.Connection[Any]) -> None:
    migrate(conn, IDENTITY_MIGRATIONS)


def check_user_name(name: str) -> str:
    if not _USER_NAME.fullmatch(name):
        raise EventRejected("name", "user-name", "2 to 64 characters: lowercase letters, digits, '.', '_', '@', '-'")
    return name


def check_regulator_name(name: str) -> str:
    """The name exports and reports are made for (``protocolo export --regulator``)."""
    if not _REGULATOR.fullmatch(name):
        raise EventRejected("regulator", "regulator-name",
                            "1 to 64 characters: lowercase letters, digits, '.', '_', '-'")
    return name


def add_user(conn: psycopg.Connection[Any], name: str, role: Role, *, password: str | None,
             subject_ref: str | None = None, regulator: str | None = None) -> None:
    check_user_name(name)
    if (role is Role.CUSTOMER) != (subject_ref is not None):
        raise EventRejected("cpf", "required" if role is Role.CUSTOMER else "customer-only",
                            "a customer user is tied to their CPF, and only a customer user")
    if (role is Role.REGULATOR) != (regulator is not None):
        raise EventRejected("regulator", "required" if role is Role.REGULATOR else "regulator-only",
                            "a regulator user belongs to one regulator, and only a regulator user")
    if regulator is not None:
        check_regulator_name(regulator)
    try:
        conn.execute(
            "INSERT INTO api_users (user_name, role, password_hash, subject_ref, regulator)"
            " VALUES (%s, %s, %s, %s, %s)",
            (name, role.value, hash_secret(password, PASSWORD_COST) if password else None, subject_ref,
             regulator))
    except psycopg.errors.UniqueViolation:
        raise EventRejected("name", "unique", f"user {name!r} exists") from None


def issue(conn: psycopg.Connection[Any], user_name: str, kind: str, lifetime: timedelta) -> IssuedCredential:
    prefix = TOKEN_PREFIX if kind == "token" else SESSION_PREFIX
    credential_id = prefix + secrets.token_hex(8)
    secret = new_secret()
    csrf = new_secret() if kind == "session" else None
    expires_at = datetime.now(UTC) + lifetime
    conn.execute(
        "INSERT INTO api_credentials (credential_id, kind, user_name, secret_hash, csrf_hash, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (credential_id, kind, user_name, hash_secret(secret, TOKEN_COST),
         hash_secret(csrf, TOKEN_COST) if csrf else None, expires_at))
    return IssuedCredential(f"{credential_id}.{secret}", credential_id, expires_at, csrf)


def revoke(conn: psycopg.Connection[Any], credential_id: str) -> bool:
    row = conn.execute("UPDATE api_credentials SET revoked_at = now() WHERE credential_id = %s"
                       " AND revoked_at IS NULL RETURNING 1", (credential_id,)).fetchone()
    return row is not None


def authenticate(conn: psycopg.Connection[Any], credential: str, kind: str) -> Principal | None:
    """The principal a token or session credential stands for, or None (unknown, wrong
    secret, revoked, expired, disabled user: one answer for all, nothing to probe)."""
    credential_id, _, secret = credential.partition(".")
    if not secret or len(credential) > 200:
        return None
    row = conn.execute(
        "SELECT c.secret_hash, c.csrf_hash, u.user_name, u.role, u.subject_ref, u.regulator FROM api_credentials c"
        "  JOIN api_users u USING (user_name)"
        " WHERE c.credential_id = %s AND c.kind = %s AND c.revoked_at IS NULL AND c.expires_at > now()"
        "   AND u.disabled_at IS NULL", (credential_id, kind)).fetchone()
    if row is None or not check_secret(secret, row[0]):
        return None
    return Principal(row[2], Role(row[3]), row[4], credential_id, kind == "session", row[1], row[5])


@functools.cache
def _absent_user_hash() -> str:
    return hash_secret(new_secret(), PASSWORD_COST)


def check_password(conn: psycopg.Connection[Any], name: str, password: str) -> bool:
    row = conn.execute("SELECT password_hash FROM api_users WHERE user_name = %s AND disabled_at IS NULL",
                       (name,)).fetchone()
    if row is None or row[0] is None:
        check_secret(password, _absent_user_hash())  # the same work either way: no user probing
        return False
    return check_secret(password, row[0])
