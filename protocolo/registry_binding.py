"""One registry per ledger: the ledger database records which registry it belongs to.

A registry (protocol-number sequence, personal-data key vault) gets a random id once
(``registry_identity``, producers migration 0002). The first writing command that uses a
ledger database writes that id into the ledger's ``ledger_registry`` (projections
migration 0011), once. From then on every command compares: a registry with another id,
or with none yet while the ledger is bound, is refused before anything is issued,
erased, projected or read, with a message that names both registries and the setting to
fix. Without this, which registry a command used depended on which variables the shell
happened to set, and the same protocol number was issued twice (two sequences) and an
erasure could miss the registry holding a customer's live key.

The registry is compared *before* it is migrated, so a refused command creates nothing in
the wrong database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from protocolo.core.config import ENV_REGISTRY_URL

__all__ = ["RegistryMismatch", "RegistryRef", "bind_ledger", "bound_registry", "check_ledger", "registry_id"]


class RegistryMismatch(RuntimeError):
    """The registry a command would use is not the one the ledger belongs to."""


@dataclass(frozen=True)
class RegistryRef:
    """A registry as a command reaches it: ``url`` and, for messages, where the URL came
    from (``source``) and a version of it without password (``shown``)."""

    url: str
    source: str
    shown: str


def registry_id(conn: psycopg.Connection[Any]) -> str | None:
    """The id of the registry ``conn`` is connected to; None when it has none yet (a
    registry no writer has used, or no registry at all)."""
    if conn.execute("SELECT to_regclass('registry_identity') IS NOT NULL").fetchone() != (True,):
        return None
    row = conn.execute("SELECT registry_id::text FROM registry_identity").fetchone()
    return str(row[0]) if row is not None else None


def bound_registry(conn: psycopg.Connection[Any]) -> str | None:
    """The id of the registry the ledger ``conn`` is connected to belongs to (None: not
    bound yet, or a database without the table)."""
    if conn.execute("SELECT to_regclass('ledger_registry') IS NOT NULL").fetchone() != (True,):
        return None
    row = conn.execute("SELECT registry_id::text FROM ledger_registry").fetchone()
    return str(row[0]) if row is not None else None


def _mismatch(ledger: str, bound: str, registry: RegistryRef, found: str | None) -> RegistryMismatch:
    what = f"registry {found}" if found is not None else "a database that is not a Protocolo registry yet"
    return RegistryMismatch(
        f"the ledger database {ledger} belongs to registry {bound}, but this command would use "
        f"{what} ({registry.source}: {registry.shown}). Refusing to issue protocol numbers, "
        "erase or project against another registry (numbers would be issued twice and an "
        f"erasure could miss a customer's key). Set {ENV_REGISTRY_URL} to the registry this "
        "ledger was created with (on the embedded stack `eval \"$(protocolo dev up)\"` exports it), "
        "or use a fresh ledger database for this registry."
    )


def check_ledger(ledger_conn: psycopg.Connection[Any], ledger: str, registry: RegistryRef) -> str | None:
    """Read-only: raise :class:`RegistryMismatch` when the ledger is bound to another
    registry than ``registry``; return the bound id (None when not bound). ``ledger``
    names the ledger database in messages."""
    bound = bound_registry(ledger_conn)
    if bound is None:
        return None
    with psycopg.connect(registry.url, autocommit=True, connect_timeout=5) as conn:
        found = registry_id(conn)
    if found != bound:
        raise _mismatch(ledger, bound, registry, found)
    return bound


def bind_ledger(ledger_conn: psycopg.Connection[Any], ledger: str, registry: RegistryRef,
                registry_conn: psycopg.Connection[Any]) -> str:
    """Bind the ledger to the registry ``registry_conn`` is connected to (migrated) unless
    it is bound already, then check; return the id. ``ledger_conn`` is in autocommit."""
    found = registry_id(registry_conn)
    if found is None:
        raise RegistryMismatch(f"the registry ({registry.source}: {registry.shown}) has no registry_identity")
    ledger_conn.execute("INSERT INTO ledger_registry (registry_id) VALUES (%s) ON CONFLICT DO NOTHING", (found,))
    bound = bound_registry(ledger_conn)
    if bound != found:
        raise _mismatch(ledger, str(bound), registry, found)
    return found
