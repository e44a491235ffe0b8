"""The personal data of an export made with ``--reveal``: ``revealed/customers.jsonl``.

Opened from the sealed ``customer`` of each ContactOpened *value* in the export's leaf
ranges (the leaf bytes, not the decoded copy), one line per event id. It is not evidence
a verifier can re-derive (the decryption keys never leave the deployment): the manifest
lists it under ``revealed``, and the access is recorded on the ledger by the caller. An
erased customer (key destroyed) shows ``"erased": true``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from protocolo.attestation.export_period import PartitionPeriod
from protocolo.attestation.export_rendering import canonical_json
from protocolo.attestation.export_writer import ExportRequest
from protocolo.core.personal_data import PersonalDataSealer, PersonalDataUnavailable
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import DecodeError

REVEALED = "revealed/customers.jsonl"


def revealed_customers(conn: psycopg.Connection[Any], sealer: PersonalDataSealer, topic: str,
                       periods: Sequence[PartitionPeriod], request: ExportRequest) -> dict[str, bytes]:
    catalogue = SchemaCatalogue.load()
    filters = request.filters.as_json()
    lines: list[str] = []
    for period in periods:
        for event_id, protocol, value in conn.execute(
                "SELECT event_id, protocol_number, record_value FROM journal j"
                " WHERE topic = %s AND kafka_partition = %s AND leaf_index >= %s AND leaf_index < %s"
                " AND event_type = 'ContactOpened' AND (%s::text IS NULL OR protocol_number IN ("
                "  SELECT protocol_number FROM interactions WHERE (%s::text IS NULL OR service_type = %s)"
                "  AND (%s::text IS NULL OR channel = %s) AND (%s::text IS NULL OR protocol_number = %s)))"
                " ORDER BY leaf_index",
                (topic, period.partition, period.begin, period.finish,
                 "subset" if request.filters.subset else None,
                 filters["service_type"], filters["service_type"], filters["channel"], filters["channel"],
                 filters["protocol"], filters["protocol"])):
            lines.append(canonical_json({"event_id": str(event_id), "protocol_number": protocol,
                                         **_opened(sealer, bytes(value), str(event_id), catalogue)}) + "\n")
    return {REVEALED: "".join(lines).encode("utf-8")}


def _opened(sealer: PersonalDataSealer, value: bytes, event_id: str,
            catalogue: SchemaCatalogue) -> dict[str, Any]:
    try:
        sealed = (catalogue.decode(value).record.get("customer") or {}).get("sealed")
        clear = sealer.open(sealed, event_id)
    except (DecodeError, PersonalDataUnavailable) as exc:
        return {"unavailable": str(exc)}
    if clear is None:
        return {"erased": True} if sealed else {"none": True}
    return {"name": clear.get("name"), "cpf": clear.get("cpf"), "customer_code": clear.get("customer_code")}
