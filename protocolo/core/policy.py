"""Policy profiles: the legal values (DOMAIN.md) as named, versioned data.

Values are policy, not code paths. A profile is a *name* (``br-sac-2022``) with one or
more *versions*; each version has a validity start, and the version in force for a fact
is the newest one whose validity started on or before the fact's time. Changing a value
means adding a version with a later ``valid_from``: nothing derived earlier changes, and a
rebuild of the views under newer code reproduces every earlier deadline exactly, because
each deadline is a pure function of the events and of these versions (which one was in
force is decided by the event's own time, never by the clock or the environment at
projection time).

Which profile governs a contact is decided when it is published: the contact's
``policy_profile`` field (ContactOpened v3; a deployment sets it with
``PROTOCOLO_POLICY``, e.g. a small telecom provider chooses ``br-anatel-rgc-small``), or,
for contacts that do not name one, their service type (:data:`SERVICE_TYPE_PROFILES`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "DEFAULT_PROFILE", "PROFILES", "PROFILE_NAMES", "PROFILE_VERSIONS", "SERVICE_TYPE_PROFILES",
    "PolicyError", "PolicyProfile", "override_from_env", "profile_for_service", "profile_in_force",
    "profile_named", "profile_version",
]

#: The start of the first version of every profile: before any event the ledger accepts.
_ALWAYS = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PolicyProfile:
    name: str
    version: int
    valid_from: datetime
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


#: Every version of every profile, ever. Never edit a released version: add one.
PROFILE_VERSIONS: tuple[PolicyProfile, ...] = (
    PolicyProfile(
        "br-sac-2022", 1, _ALWAYS, recording_retention_days=90, record_retention_days=2 * 365,
        recording_delivery_days=10, history_delivery_hours=5 * 24, demand_answer_days=7,
        protocol_confirmation_hours=24, start_disclosure_seconds=60,
        source="Decreto 11.034/2022 art. 12; Portaria SDE/MJ 49/2009",
    ),
    PolicyProfile(
        "br-anatel-rgc", 1, _ALWAYS, recording_retention_days=180, record_retention_days=3 * 365,
        recording_delivery_days=10, history_delivery_hours=5 * 24, demand_answer_days=7,
        protocol_confirmation_hours=24, start_disclosure_seconds=60,
        source="Anatel RGC (Res. 632/2014) arts. 7, 26",
    ),
    PolicyProfile(
        "br-anatel-rgc-small", 1, _ALWAYS, recording_retention_days=90, record_retention_days=3 * 365,
        recording_delivery_days=10, history_delivery_hours=5 * 24, demand_answer_days=7,
        protocol_confirmation_hours=24, start_disclosure_seconds=60,
        source="Anatel RGC art. 26 §3 (small providers)",
    ),
    PolicyProfile(
        "br-sac-2008", 1, _ALWAYS, recording_retention_days=90, record_retention_days=2 * 365,
        recording_delivery_days=10, history_delivery_hours=72, demand_answer_days=5,
        protocol_confirmation_hours=24, start_disclosure_seconds=60,
        source="Decreto 6.523/2008 arts. 15, 17",
    ),
)

PROFILE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(p.name for p in PROFILE_VERSIONS))


def _newest(versions: tuple[PolicyProfile, ...]) -> dict[str, PolicyProfile]:
    newest: dict[str, PolicyProfile] = {}
    for p in versions:
        if p.name not in newest or p.valid_from > newest[p.name].valid_from:
            newest[p.name] = p
    return newest


#: name -> its newest version (what a new contact published now gets).
PROFILES: dict[str, PolicyProfile] = _newest(PROFILE_VERSIONS)

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


def _check_versions(versions: tuple[PolicyProfile, ...]) -> None:
    """Versions of a name are numbered 1, 2, ... with strictly later validity starts."""
    by_name: dict[str, list[PolicyProfile]] = {}
    for p in versions:
        by_name.setdefault(p.name, []).append(p)
    for name, ps in by_name.items():
        ps.sort(key=lambda p: p.version)
        if [p.version for p in ps] != list(range(1, len(ps) + 1)):
            raise PolicyError(f"policy profile {name}: versions must be numbered 1, 2, ... without gaps")
        for before, after in zip(ps, ps[1:], strict=False):
            if after.valid_from <= before.valid_from:
                raise PolicyError(f"policy profile {after.key} must start after {before.key}")


_check_versions(PROFILE_VERSIONS)


def profile_named(name: str) -> PolicyProfile:
    """The newest version of the profile ``name``."""
    try:
        return PROFILES[name]
    except KeyError:
        raise PolicyError(f"unknown policy profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def profile_version(name: str, version: int) -> PolicyProfile:
    for p in PROFILE_VERSIONS:
        if p.name == name and p.version == version:
            return p
    raise PolicyError(f"unknown policy profile {name}@{version}")


def profile_in_force(name: str, at: datetime, versions: tuple[PolicyProfile, ...] = PROFILE_VERSIONS) -> PolicyProfile:
    """The version of ``name`` in force at ``at``: the newest one whose validity started by then."""
    candidates = [p for p in versions if p.name == name and p.valid_from <= at]
    if not candidates:
        profile_named(name)  # raises for an unknown name
        raise PolicyError(f"no version of policy profile {name!r} was in force at {at.isoformat()}")
    return max(candidates, key=lambda p: p.valid_from)


def override_from_env(environ: Mapping[str, str] = os.environ) -> str | None:
    """The profile name a deployment imposes on every contact it publishes (``PROTOCOLO_POLICY``)."""
    name = environ.get("PROTOCOLO_POLICY", "").strip()
    if not name:
        return None
    try:
        return profile_named(name).name
    except PolicyError as exc:
        raise PolicyError(f"PROTOCOLO_POLICY: {exc}") from None


def profile_for_service(service_type: str, override: str | None = None) -> str:
    """The profile name that governs a contact of ``service_type``."""
    if override is not None:
        return profile_named(override).name
    return SERVICE_TYPE_PROFILES.get(service_type, DEFAULT_PROFILE)
