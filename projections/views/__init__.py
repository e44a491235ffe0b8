"""The views, one module each. Every module exposes ``STATEMENTS``: set-based SQL run in
order over the staged batch (``batch_events`` rows that are not duplicates).

Each statement is written so that the result does not depend on how the log was cut into
batches (first-wins or last-wins by Kafka offset, minima and maxima of times, additive
counts): replaying the journal in other batch sizes rebuilds identical views.
"""

from __future__ import annotations

from typing import Any

import psycopg

from protocolo.core.policy import (
    DEFAULT_PROFILE,
    PROFILE_VERSIONS,
    SERVICE_TYPE_PROFILES,
    PolicyError,
)

from . import (
    access_log,
    approvals,
    customer_index,
    holds,
    interactions,
    recordings,
    retrieval_requests,
)

__all__ = ["VIEW_MODULES", "VIEW_TABLES", "PolicyMismatch", "apply_views", "install_profiles",
           "profile_differences"]

#: Order matters: later views read what earlier ones wrote in the same batch
#: (deletions check holds and recordings; requests take the contact's policy profile).
VIEW_MODULES = (interactions, customer_index, holds, recordings, retrieval_requests, access_log,
                approvals)

#: Tables the views own: what a rebuild truncates.
VIEW_TABLES = (
    "interactions", "customer_index", "legal_holds", "recordings", "recording_deletions",
    "retrieval_requests", "erasures", "access_log", "approvals",
)

_PROFILE_COLUMNS = (
    "profile", "name", "version", "valid_from", "recording_retention_days", "record_retention_days",
    "recording_delivery_days", "history_delivery_hours", "demand_answer_days",
    "protocol_confirmation_hours", "start_disclosure_seconds", "source",
)


class PolicyMismatch(PolicyError):
    """The ledger's installed policy data differs from this code's: deadlines derived by one
    would not be reproducible by the other, so nothing is projected."""


def apply_views(cur: psycopg.Cursor[Any]) -> None:
    for module in VIEW_MODULES:
        for statement in module.STATEMENTS:
            cur.execute(statement)


def _code_profiles() -> dict[str, tuple[Any, ...]]:
    return {p.key: (p.key, p.name, p.version, p.valid_from, p.recording_retention_days,
                    p.record_retention_days, p.recording_delivery_days, p.history_delivery_hours,
                    p.demand_answer_days, p.protocol_confirmation_hours, p.start_disclosure_seconds,
                    p.source)
            for p in PROFILE_VERSIONS}


def install_profiles(conn: psycopg.Connection[Any]) -> None:
    """Install the code's policy versions and service-type mapping where missing, then check
    that what the ledger holds is exactly the code's; raise :class:`PolicyMismatch` if not
    (an edited released version, a version this code does not know). Commits nothing: the
    caller owns the transaction."""
    code = _code_profiles()
    mapping = dict(SERVICE_TYPE_PROFILES) | {"*": DEFAULT_PROFILE}
    columns = ", ".join(_PROFILE_COLUMNS)
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO policy_profiles ({columns}) VALUES ({', '.join(['%s'] * len(_PROFILE_COLUMNS))})"
            " ON CONFLICT DO NOTHING", list(code.values()))
        cur.executemany("INSERT INTO service_type_profiles VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        list(mapping.items()))
    problems = profile_differences(conn)
    if problems:
        raise PolicyMismatch(
            "the policy profiles installed in this ledger differ from this code's, so deadlines "
            "would not be reproducible; a released profile version is never edited (add a new "
            "version with a later valid_from in protocolo/core/policy.py). " + "; ".join(problems))


def profile_differences(conn: psycopg.Connection[Any]) -> list[str]:
    """How the ledger's policy profiles and service-type mapping differ from this code's
    (read only; empty when they agree). The views' deadlines are computed from them."""
    code = _code_profiles()
    mapping = dict(SERVICE_TYPE_PROFILES) | {"*": DEFAULT_PROFILE}
    columns = ", ".join(_PROFILE_COLUMNS)
    with conn.cursor() as cur:
        stored = {row[0]: tuple(row) for row in cur.execute(f"SELECT {columns} FROM policy_profiles")}
        stored_mapping = dict(cur.execute("SELECT service_type, profile_name FROM service_type_profiles").fetchall())
    problems = [f"{key}: the ledger holds {_describe(stored.get(key))}, this code says {_describe(code.get(key))}"
                for key in sorted(set(code) | set(stored)) if stored.get(key) != code.get(key)]
    problems += [f"service type {s}: the ledger maps it to {stored_mapping.get(s)!r}, this code to {mapping.get(s)!r}"
                 for s in sorted(set(mapping) | set(stored_mapping)) if stored_mapping.get(s) != mapping.get(s)]
    return problems


def _describe(row: tuple[Any, ...] | None) -> str:
    if row is None:
        return "nothing"
    return "(" + ", ".join(f"{c}={v}" for c, v in zip(_PROFILE_COLUMNS[2:], row[2:], strict=True)) + ")"
