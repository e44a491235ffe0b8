"""The views, one module each. Every module exposes ``STATEMENTS``: set-based SQL run in
order over the staged batch (``batch_events`` rows that are not duplicates).

Each statement is written so that the result does not depend on how the log was cut into
batches (first-wins or last-wins by Kafka offset, minima and maxima of times, additive
counts): replaying the journal in other batch sizes rebuilds identical views.
"""

from __future__ import annotations

from dataclasses import asdict

import psycopg

from protocolo.policy import (
    DEFAULT_PROFILE,
    PROFILES,
    SERVICE_TYPE_PROFILES,
    PolicyProfile,
)

from . import customer_index, holds, interactions, recordings, retrieval_requests

#: Order matters: later views read what earlier ones wrote in the same batch
#: (deletions check holds and recordings; requests take the contact's policy profile).
VIEW_MODULES = (interactions, customer_index, holds, recordings, retrieval_requests)

#: Tables the views own: what a rebuild truncates.
VIEW_TABLES = (
    "interactions", "customer_index", "legal_holds", "recordings", "recording_deletions",
    "retrieval_requests", "erasures",
)


def prepare_session(conn: psycopg.Connection, override: PolicyProfile | None = None) -> None:
    """Per-connection temp table mapping service type -> policy profile (``*``: default)."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS service_profiles (service_type text PRIMARY KEY, profile text NOT NULL)")
    conn.execute("DELETE FROM service_profiles")
    mapping = {s: (override.key if override else PROFILES[p].key) for s, p in SERVICE_TYPE_PROFILES.items()}
    mapping["*"] = override.key if override else PROFILES[DEFAULT_PROFILE].key
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO service_profiles VALUES (%s, %s)", list(mapping.items()))


def apply_views(cur: psycopg.Cursor) -> None:
    for module in VIEW_MODULES:
        for statement in module.STATEMENTS:
            cur.execute(statement)


def install_profiles(conn: psycopg.Connection) -> None:
    """Store the profiles for the views' SQL (the service-type mapping in force is a
    per-connection table, see :func:`prepare_session`)."""
    rows = [asdict(p) | {"profile": p.key} for p in PROFILES.values()]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO policy_profiles (profile, name, version, recording_retention_days,"
            " record_retention_days, recording_delivery_days, history_delivery_hours,"
            " demand_answer_days, protocol_confirmation_hours, start_disclosure_seconds, source)"
            " VALUES (%(profile)s, %(name)s, %(version)s, %(recording_retention_days)s,"
            " %(record_retention_days)s, %(recording_delivery_days)s, %(history_delivery_hours)s,"
            " %(demand_answer_days)s, %(protocol_confirmation_hours)s,"
            " %(start_disclosure_seconds)s, %(source)s)"
            " ON CONFLICT (profile) DO NOTHING",
            rows,
        )
