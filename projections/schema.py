"""The projections' tables: journal, quarantine, views, offsets (``projections/migrations/``)."""

from __future__ import annotations

from typing import Any

import psycopg

from protocolo.core.database import MigrationSet
from protocolo.core.database import connect as _connect

__all__ = ["LEDGER_MIGRATIONS", "connect"]

#: Bare file names: ledgers recorded ``0001_ledger.sql`` before migration sets had owners.
LEDGER_MIGRATIONS = MigrationSet(owner="projections", package="protocolo.projections", bare_names=True)


def connect(database_url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection to the ledger database, its tables brought up to date."""
    return _connect(database_url, LEDGER_MIGRATIONS, **kwargs)
