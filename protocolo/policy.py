"""Policy profiles: the legal values (DOMAIN.md) as named, versioned data.

Values are policy, not code paths: a deadline is always computed from a profile and
records which one (``name@version``). Changing a value means a new version of the
profile; deadlines derived earlier keep naming the version that produced them.

The service type of a contact picks its profile; a deployment may override the mapping
with ``PROTOCOLO_POLICY`` (one profile for every service type, e.g. a small telecom
provider selects ``br-anatel-rgc-small``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyProfile:
    name: str
    version: int
    recording_retention_days: int
    record_retention_days: int
    recording_delivery_days: int
    history_delivery_hours: int
    demand_answer_days: int
    protocol_confirmation_hours: int
    start_disclosure_seconds: int
    source: str

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


PROFILES: dict[str, PolicyProfile] = {
    p.name: p
    for p in (
        PolicyProfile(
            "br-sac-2022", 1, recording_retention_days=90, record_retention_days=2 * 365,
            recording_delivery_days=10, history_delivery_hours=5 * 24, demand_answer_days=7,
            protocol_confirmation_hours=24, start_disclosure_seconds=60,
            source="Decreto 11.034/2022 art. 12; Portaria SDE/MJ 49/2009",
        ),
        PolicyProfile(
            "br-anatel-rgc", 1, recording_retention_days=180, record_retention_days=3 * 365,
            recording_delivery_days=10, history_delivery_hours=5 * 24, demand_answer_days=7,
            protocol_confirmation_hours=24, start_disclosure_seconds=60,
            source="Anatel RGC (Res. 632/2014) arts. 7, 26",
        ),
        PolicyProfile(
            "br-anatel-rgc-small", 1, recording_retention_days=90, record_retention_days=3 * 365,
            recording_delivery_days=10, history_delivery_hours=5 * 24, demand_answer_days=7,
            protocol_confirmation_hours=24, start_disclosure_seconds=60,
            source="Anatel RGC art. 26 §3 (small providers)",
        ),
        PolicyProfile(
            "br-sac-2008", 1, recording_retention_days=90, record_retention_days=2 * 365,
            recording_delivery_days=10, history_delivery_hours=72, demand_answer_days=5,
            protocol_confirmation_hours=24, start_disclosure_seconds=60,
            source="Decreto 6.523/2008 arts. 15, 17",
        ),
    )
}

SERVICE_TYPE_PROFILES: Mapping[str, str] = {
    "MOBILE": "br-anatel-rgc",
    "FIXED_LINE": "br-anatel-rgc",
    "BROADBAND": "br-anatel-rgc",
    "PAY_TV": "br-anatel-rgc",
    "BANKING": "br-sac-2022",
    "GENERAL": "br-sac-2022",
}
DEFAULT_PROFILE = "br-sac-2022"


class PolicyError(ValueError):
    pass


def profile_named(name: str) -> PolicyProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise PolicyError(f"unknown policy profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def override_from_env(environ: Mapping[str, str] = os.environ) -> PolicyProfile | None:
    name = environ.get("PROTOCOLO_POLICY")
    return profile_named(name) if name else None


def profile_for_service(service_type: str, override: PolicyProfile | None = None) -> PolicyProfile:
    """The profile that governs a contact of ``service_type``."""
    if override is not None:
        return override
    return PROFILES[SERVICE_TYPE_PROFILES.get(service_type, DEFAULT_PROFILE)]
