"""The interactions view names the policy profile version the migration's SQL functions name.

The view derives a contact's profile with joins (``projections/views/policy_periods.py``)
instead of calling ``profile_in_force(coalesce(policy_profile, service_profile_name(type)),
opened_at)`` once per row. The oracle here is those functions, as migration 0002 defines
them: for openings at every boundary of several versions of a profile (before the first,
exactly at each ``valid_from``, a microsecond before the next, long after), with and
without a profile named in the event, and service types mapped, unmapped and absent, the
view's ``policy_profile`` must be what the functions say. The released profiles have one
version each, so the extra versions are added here, as a ledger would hold them after a
policy change.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg

from protocolo.projections.journal import ensure_staging
from protocolo.projections.schema import connect
from protocolo.projections.views import install_profiles
from protocolo.projections.views.interactions import STATEMENTS

V2 = datetime(2025, 1, 1, tzinfo=UTC)
V3 = datetime(2026, 7, 1, 12, tzinfo=UTC)
MICRO = timedelta(microseconds=1)
TIMES = (datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC),
         V2 - MICRO, V2, V2 + MICRO, V3 - MICRO, V3, V3 + timedelta(days=400))
NAMED = (None, "br-sac-2022", "br-anatel-rgc", "no-such-profile")
SERVICE_TYPES = (None, "MOBILE", "BANKING", "SOMETHING_UNMAPPED")


def _add_versions(conn: psycopg.Connection) -> None:
    """Versions 2 and 3 of br-sac-2022 and version 2 of br-anatel-rgc, copied from version 1."""
    for name, version, valid_from in (("br-sac-2022", 2, V2), ("br-sac-2022", 3, V3), ("br-anatel-rgc", 2, V3)):
        conn.execute(
            "INSERT INTO policy_profiles SELECT %(key)s, name, %(version)s, recording_retention_days,"
            " record_retention_days, recording_delivery_days, history_delivery_hours, demand_answer_days,"
            " protocol_confirmation_hours, start_disclosure_seconds, source, %(valid_from)s"
            " FROM policy_profiles WHERE profile = %(name)s || '@1'",
            {"key": f"{name}@{version}", "version": version, "valid_from": valid_from, "name": name})


def test_interactions_take_the_profile_version_the_sql_functions_name(database_url: str) -> None:
    with connect(database_url) as conn:
        install_profiles(conn)
        _add_versions(conn)
        conn.commit()
        ensure_staging(conn)
        cases = [(t, named, service) for t in TIMES for named in NAMED for service in SERVICE_TYPES]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO batch_events (kafka_partition, kafka_offset, event_type, event_id,"
                " protocol_number, occurred_at, payload) VALUES (0, %s, 'ContactOpened', gen_random_uuid(), %s, %s, %s)",
                [(i, f"P{i:04d}", t, json.dumps({k: v for k, v in (("policy_profile", named), ("service_type", service))
                                                 if v is not None}))
                 for i, (t, named, service) in enumerate(cases)])
            for statement in STATEMENTS:
                cur.execute(statement)
            got = cur.execute(
                "SELECT b.protocol_number, i.policy_profile,"
                " profile_in_force(coalesce(b.payload->>'policy_profile',"
                "                           service_profile_name(b.payload->>'service_type')), b.occurred_at)"
                " FROM batch_events b JOIN interactions i USING (protocol_number) ORDER BY 1").fetchall()
        conn.rollback()
    assert len(got) == len(cases)
    assert [(p, view) for p, view, _ in got] == [(p, oracle) for p, _, oracle in got]
    profiles = {oracle for _, _, oracle in got}
    # the grid reaches every version and the no-version case, so the comparison means something
    assert {None, "br-sac-2022@1", "br-sac-2022@2", "br-sac-2022@3", "br-anatel-rgc@1", "br-anatel-rgc@2"} <= profiles
