"""The compliance flags of a contact, each with the rule's text and its legal source.

The values in the text (seconds, hours) and the source come from the policy profile in
force when the contact opened (:func:`protocolo.core.policy.profile_in_force`), so the
page states the rule the contact was measured against, not today's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from protocolo.core.policy import DEFAULT_PROFILE, PolicyProfile, profile_in_force, profile_version

#: The flags of ``interaction_compliance``, in the order a contact meets them.
FLAGS = ("protocol_disclosed_at_start", "recording_notice_at_start", "protocol_confirmed_in_time")


@dataclass(frozen=True)
class RuleCheck:
    flag: str
    met: bool | None   # None: the view has no answer yet
    text: str
    source: str


def _profile(interaction: dict[str, Any] | None) -> PolicyProfile:
    """The view stores the version applied (``name@version``); a bare name means the
    version in force when the contact opened."""
    named = str((interaction or {}).get("policy_profile") or DEFAULT_PROFILE)
    opened = (interaction or {}).get("opened_at")
    name, _, version = named.partition("@")
    if version.isdigit():
        return profile_version(name, int(version))
    moment = opened if isinstance(opened, datetime) else datetime.fromisoformat(str(opened)) if opened else None
    return profile_in_force(name, moment or datetime.now(UTC))


def checks(interaction: dict[str, Any] | None, compliance: dict[str, Any] | None,
           t: Callable[..., str]) -> list[RuleCheck]:
    profile = _profile(interaction)
    values = {"seconds": profile.start_disclosure_seconds, "hours": profile.protocol_confirmation_hours}
    return [RuleCheck(flag, (compliance or {}).get(flag), t(f"rule.{flag}", **values),
                      f"{profile.source} ({profile.key})") for flag in FLAGS]
