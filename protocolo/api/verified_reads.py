"""The API's contact answers, checked against the signed log when they are read.

Every contact the API shows (a timeline, a search result) carries a ``verified`` object:
the verdict of :func:`protocolo.attestation.verified_read.verify_contact` (its leaves
proved into the newest checkpoint signed by a key pinned in the deployment's
configuration, the views compared with the state folded from the decoded events). The
values shown are the verified ones: a view value that differs is replaced, and named as
altered in ``verified.differences``.
"""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict

from protocolo.attestation.pinned_log_keys import configured_log_keys
from protocolo.attestation.verified_read import (
    ContactVerification,
    overlay_verified,
    verify_contact,
)
from protocolo.projections.history import INTERACTION_COLUMNS, Timeline, timelines
from protocolo.schemas.catalogue import SchemaCatalogue

from .services import ApiServices

_CATALOGUE: list[SchemaCatalogue] = []

#: The purpose an access recorded for a mismatching read states (the reader gave none).
MISMATCH_PURPOSE = "contact read; the views differ from the signed log, the verified values were shown"


class CheckpointRef(BaseModel):
    origin: str
    size: int


class EventRef(BaseModel):
    partition: int
    offset: int


class AlteredValue(BaseModel):
    """A value a view shows that the signed log does not give: ``view`` is the altered one."""

    table: str
    key: str
    column: str
    view: Any
    verified: Any


class Verification(BaseModel):
    """How the answer was checked against the signed log when it was read."""

    status: Literal["verified", "pending", "MISMATCH", "unverified"]
    summary: str
    checkpoints: list[CheckpointRef]
    events_verified: list[EventRef]
    events_pending: list[EventRef]
    differences: list[AlteredValue]
    problems: list[str]


class VerifiedContact(BaseModel):
    """A contact's fields (the interaction's columns and compliance flags, verified values)
    and how they were checked."""

    model_config = ConfigDict(extra="allow")
    protocol_number: str
    verified: Verification


def _catalogue() -> SchemaCatalogue:
    if not _CATALOGUE:
        _CATALOGUE.append(SchemaCatalogue.load())
    return _CATALOGUE[0]


def check_timeline(svc: ApiServices, conn: psycopg.Connection[Any], timeline: Timeline) -> ContactVerification:
    """Verify one timeline and put the verified values in place."""
    result = verify_contact(conn, svc.topic, timeline, configured_log_keys(svc.settings), _catalogue())
    overlay_verified(timeline, result)
    return result


def check_search_rows(svc: ApiServices, conn: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> None:
    """Verify each search result (its contact's timeline) and correct its fields in place."""
    found = {t.protocol_number: t for t in timelines(conn, [r["protocol_number"] for r in rows])}
    for row in rows:
        t = found[row["protocol_number"]]
        result = check_timeline(svc, conn, t)
        for column in INTERACTION_COLUMNS:
            if t.interaction is not None and column in t.interaction and column in row:
                row[column] = t.interaction[column]
        for column, value in (t.compliance or {}).items():
            if column in row:
                row[column] = value
        row["verified"] = result.as_dict()


def finding_target(result: ContactVerification | None) -> str | None:
    """What an audited read records of a verification that found the views altered (the
    access's ``target``): which values differed, so the audit trail says the reader was
    shown verified values in place of altered ones. None when nothing differed."""
    if result is None or result.status != "MISMATCH":
        return None
    return finding_summary([d.as_dict() for d in result.differences])


def finding_summary(differences: list[dict[str, Any]]) -> str:
    altered = sorted({f"{d['table']}.{d['column']}" for d in differences})
    text = "verification MISMATCH: " + ", ".join(altered or ["proof"])
    return text if len(text) <= 200 else text[:197] + "..."
