"""The producers' registry database: protocol-number sequence, key vault, key checks.

Its tables are owned here (``producers/migrations/``). In a deployment it is the ledger
database unless ``PROTOCOLO_REGISTRY_URL`` names another; on the embedded stack it is one
database for the whole server, so that no broker restart or new ledger database ever
reissues a protocol number or keeps a destroyed key alive elsewhere.
"""

from __future__ import annotations

from typing import Any

import psycopg

from protocolo.core.database import MigrationSet
from protocolo.core.database import connect as _connect

__all__ = ["REGISTRY_MIGRATIONS", "connect"]

REGISTRY_MIGRATIONS = MigrationSet(owner="producers", package="protocolo.producers")


def connect(registry_url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection to the registry, its tables brought up to date."""
    return _connect(registry_url, REGISTRY_MIGRATIONS, **kwargs)
