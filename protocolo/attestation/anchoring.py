"""External anchors of new checkpoints, stored in ``checkpoint_anchors``.

* **RFC 3161** (``kind = 'rfc3161'``, authority = the TSA URL): the checkpoint's note text is
  stamped by ``PROTOCOLO_TSA_URL``; the token is verified against the pinned
  ``PROTOCOLO_TSA_CHAIN`` *before* it is stored (with the request, for its nonce).
* **Witness cosignatures** (``kind = 'cosignature'``, authority = the witness key name): the
  checkpoint is sent to each witness with a consistency proof (C2SP tlog-witness, see
  :mod:`protocolo.attestation.witness_client`); the returned ``cosignature/v1`` line is
  verified with the witness's key and stored as UTF-8.

An anchor that fails is reported (:class:`AnchorOutcome` with ``error``), not raised: the
checkpoint stands signed and published, and a later round (or ``protocolo checkpoint --once
--force``) anchors it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg

from protocolo.attestation.checkpointer import StoredCheckpoint
from protocolo.attestation.config import AttestationSettings, WitnessEndpoint
from protocolo.attestation.witness_client import WitnessClientError, request_cosignature
from protocolo.core.config import ConfigError
from protocolo.evidence.timestamp import (
    TimestampError,
    TsaTrust,
    request_timestamp,
    verify_timestamp,
)

__all__ = [
    "AnchorOutcome",
    "Anchorer",
    "StoredAnchor",
    "TsaAnchorer",
    "WitnessAnchorer",
    "anchor_checkpoints",
    "anchorers_from",
    "stored_anchors",
]


@dataclass(frozen=True)
class AnchorOutcome:
    origin: str
    size: int
    kind: str
    authority: str
    anchored_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class StoredAnchor:
    topic: str
    partition: int
    size: int
    kind: str  # 'rfc3161' or 'cosignature'
    authority: str  # TSA URL or witness key name
    token: bytes  # DER TimeStampResp, or the cosignature line (UTF-8)
    anchored_at: datetime
    request: bytes | None  # DER TimeStampReq (rfc3161)


class Anchorer(Protocol):
    kind: str
    authority: str

    def anchor(self, conn: psycopg.Connection[Any], checkpoint: StoredCheckpoint) -> datetime:
        """Anchor ``checkpoint``, store the anchor, return its time; raise on failure."""
        ...


def _store(conn: psycopg.Connection[Any], checkpoint: StoredCheckpoint, kind: str,
           authority: str, token: bytes, anchored_at: datetime, request: bytes | None) -> None:
    conn.execute(
        "INSERT INTO checkpoint_anchors (topic, kafka_partition, tree_size, kind, authority,"
        " token, anchored_at, request) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (checkpoint.topic, checkpoint.partition, checkpoint.size, kind, authority, token,
         anchored_at, request))


class TsaAnchorer:
    kind = "rfc3161"

    def __init__(self, url: str, trust: TsaTrust, timeout: float = 10.0) -> None:
        self.authority = url
        self.trust = trust
        self.timeout = timeout

    def anchor(self, conn: psycopg.Connection[Any], checkpoint: StoredCheckpoint) -> datetime:
        token = request_timestamp(self.authority, checkpoint.text, timeout=self.timeout)
        verified = verify_timestamp(token.der, checkpoint.text, self.trust,
                                    request_der=token.request_der)
        _store(conn, checkpoint, self.kind, self.authority, token.der, verified.gen_time,
               token.request_der)
        return verified.gen_time


class WitnessAnchorer:
    kind = "cosignature"

    def __init__(self, witness: WitnessEndpoint, timeout: float = 10.0) -> None:
        self.witness = witness
        self.authority = witness.name
        self.timeout = timeout

    def anchor(self, conn: psycopg.Connection[Any], checkpoint: StoredCheckpoint) -> datetime:
        row = conn.execute(
            "SELECT max(tree_size) FROM checkpoint_anchors WHERE topic = %s AND kafka_partition = %s"
            " AND kind = 'cosignature' AND authority = %s",
            (checkpoint.topic, checkpoint.partition, self.authority)).fetchone()
        known = int(row[0]) if row is not None and row[0] is not None else 0
        cosigned = request_cosignature(conn, self.witness, checkpoint,
                                       min(known, checkpoint.size), timeout=self.timeout)
        when = datetime.fromtimestamp(cosigned.timestamp, UTC)
        _store(conn, checkpoint, self.kind, self.authority, cosigned.line.encode(), when, None)
        return when


def anchorers_from(settings: AttestationSettings) -> list[Anchorer]:
    """The anchorers the settings configure: the TSA (if any), then each witness."""
    anchorers: list[Anchorer] = []
    if settings.tsa_url is not None and settings.tsa_chain is not None:
        try:
            trust = TsaTrust.from_chain(settings.tsa_chain.read_bytes())
        except (TimestampError, OSError) as exc:
            raise ConfigError(f"PROTOCOLO_TSA_CHAIN={settings.tsa_chain}: {exc}") from None
        anchorers.append(TsaAnchorer(settings.tsa_url, trust))
    anchorers.extend(WitnessAnchorer(w) for w in settings.witnesses)
    return anchorers


def anchor_checkpoints(conn: psycopg.Connection[Any], checkpoints: Sequence[StoredCheckpoint],
                       anchorers: Sequence[Anchorer]) -> list[AnchorOutcome]:
    """Anchor each checkpoint with each anchorer (newest per partition only: a witness only
    goes forward); failures are returned, not raised."""
    newest: dict[tuple[str, int], StoredCheckpoint] = {}
    for c in checkpoints:
        if (c.topic, c.partition) not in newest or newest[(c.topic, c.partition)].size < c.size:
            newest[(c.topic, c.partition)] = c
    outcomes: list[AnchorOutcome] = []
    for checkpoint in newest.values():
        for anchorer in anchorers:
            try:
                when = anchorer.anchor(conn, checkpoint)
            except (TimestampError, WitnessClientError, OSError) as exc:
                outcomes.append(AnchorOutcome(checkpoint.origin, checkpoint.size, anchorer.kind,
                                              anchorer.authority, error=str(exc)))
            else:
                outcomes.append(AnchorOutcome(checkpoint.origin, checkpoint.size, anchorer.kind,
                                              anchorer.authority, anchored_at=when))
    return outcomes


def stored_anchors(conn: psycopg.Connection[Any], topic: str, partition: int,
                   size: int | None = None) -> list[StoredAnchor]:
    """The anchors of one partition's checkpoints (of one size if given), oldest first."""
    return [StoredAnchor(t, int(p), int(s), k, a, bytes(tok), at, None if req is None else bytes(req))
            for t, p, s, k, a, tok, at, req in conn.execute(
                "SELECT topic, kafka_partition, tree_size, kind, authority, token, anchored_at,"
                " request FROM checkpoint_anchors WHERE topic = %s AND kafka_partition = %s"
                " AND (%s::bigint IS NULL OR tree_size = %s) ORDER BY tree_size, anchored_at, kind,"
                " authority", (topic, partition, size, size))]
