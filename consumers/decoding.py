"""Turning one Kafka record into a journal row, or a quarantine row saying why not.

Nothing is dropped and nothing stops here: a record that cannot be decoded (unknown
fingerprint, truncated or garbage body), whose key does not match the key the contract
requires, that breaks a domain rule, or that holds content PostgreSQL cannot store (a NUL
character in a string, headers that are not UTF-8 text; see :mod:`.storable`) becomes a
quarantine row with its raw bytes and the error. So does a record that makes decoding
fail in any other way: no single record, whatever its bytes, may stop projection.
"""

from __future__ import annotations

from datetime import UTC, datetime

from protocolo.core.kafka_client import ConsumedRecord
from protocolo.projections.integrity import leaf_hash
from protocolo.projections.journal import JournalRow, QuarantineRow
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import DecodeError
from protocolo.schemas.json_form import to_json
from protocolo.schemas.storable import unstorable_reason
from protocolo.schemas.validation import check_domain_rules, entity_key

from .storable import clean_error, stored_headers


class UnstorableContent(DecodeError):
    """The record decodes, but holds content PostgreSQL text/jsonb cannot store."""


def _timestamp(record: ConsumedRecord) -> datetime | None:
    """The broker timestamp; None when absent or beyond what a datetime holds (a producer
    sets it freely; it is metadata, the event's own time is ``meta.occurred_at``)."""
    ts = record.timestamp
    if ts is None or ts < 0:
        return None
    try:
        return datetime.fromtimestamp(ts / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None


class RecordDecoder:
    def __init__(self, topic: str, catalogue: SchemaCatalogue | None = None) -> None:
        self.topic = topic
        self.catalogue = catalogue or SchemaCatalogue.load()

    def decode(self, record: ConsumedRecord, leaf_index: int) -> JournalRow | QuarantineRow:
        """``record`` as a Kafka client or the raw parser read it (raw bytes key and value)."""
        headers = stored_headers(record.headers)
        try:
            return self._journal_row(record, leaf_index, headers.json, headers.problems)
        except Exception as exc:  # noqa: BLE001 - whatever the bytes did, the record is kept, not fatal
            return QuarantineRow(
                kafka_partition=record.partition, kafka_offset=record.offset,
                kafka_timestamp=_timestamp(record), record_key=record.key, record_value=record.value,
                headers=headers.json, error=clean_error(f"{type(exc).__name__}: {exc}"),
                leaf_index=leaf_index,
                # the leaf commits to the bytes as read: a missing value is the empty value
                leaf_hash=leaf_hash(self.topic, record.partition, record.offset, record.key, record.value or b""),
            )

    def _journal_row(self, record: ConsumedRecord, leaf_index: int, headers: str,
                     header_problems: tuple[str, ...]) -> JournalRow:
        key, value = record.key, record.value
        if value is None:
            raise DecodeError("the record has no value (tombstone); the ledger never deletes")
        decoded = self.catalogue.decode(value)
        payload = decoded.record
        meta = payload["meta"]
        expected_key = entity_key(decoded.event_type, payload)
        actual_key = key.decode("utf-8", "replace") if key is not None else None
        if actual_key != expected_key:
            raise DecodeError(
                f"wrong key: {decoded.event_type} must be keyed by {expected_key!r}, got {actual_key!r}"
            )
        # A producer that bypassed LedgerPublisher may break a domain rule the views
        # rely on (an unknown retention profile, a bad protocol check digit): such a
        # record is quarantined, not allowed to stop projection on every restart.
        check_domain_rules(decoded.event_type, payload, at_publish=False)
        # ... or hold what PostgreSQL cannot store, which would fail the whole batch.
        payload_problem = unstorable_reason(payload)
        if payload_problem or header_problems:
            reasons = [payload_problem] if payload_problem else []
            raise UnstorableContent(
                f"{decoded.event_type} holds what PostgreSQL text cannot store: "
                + "; ".join([*reasons, *header_problems])
            )
        return JournalRow(
            kafka_partition=record.partition,
            kafka_offset=record.offset,
            kafka_timestamp=_timestamp(record),
            record_key=key,
            record_value=value,
            headers=headers,
            fingerprint=decoded.fingerprint,
            event_type=decoded.event_type,
            schema_version=decoded.writer_version,
            event_id=str(meta["event_id"]),
            protocol_number=meta.get("protocol_number"),
            entity_key=expected_key,
            occurred_at=meta["occurred_at"],
            payload=to_json(payload, judged_storable=True),
            leaf_index=leaf_index,
            leaf_hash=leaf_hash(self.topic, record.partition, record.offset, key, value),
        )
