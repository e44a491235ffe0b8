"""``legal_holds``: holds placed on a contact's recordings and their release."""

STATEMENTS = (
    """
    INSERT INTO legal_holds AS h (hold_id, protocol_number, case_reference, placed_by, placed_at)
    SELECT DISTINCT ON (payload->>'hold_id') payload->>'hold_id', protocol_number,
           payload->>'case_reference', payload->>'placed_by', occurred_at
      FROM batch_events
     WHERE event_type = 'LegalHoldPlaced' AND NOT is_duplicate
     ORDER BY payload->>'hold_id', kafka_partition, kafka_offset
    ON CONFLICT (hold_id) DO UPDATE SET protocol_number = excluded.protocol_number,
        case_reference = excluded.case_reference, placed_by = excluded.placed_by, placed_at = excluded.placed_at
     WHERE h.placed_at IS NULL
    """,
    """
    INSERT INTO legal_holds AS h (hold_id, protocol_number, released_at, released_by, release_reason)
    SELECT DISTINCT ON (payload->>'hold_id') payload->>'hold_id', protocol_number, occurred_at,
           payload->>'released_by', payload->>'reason'
      FROM batch_events
     WHERE event_type = 'LegalHoldReleased' AND NOT is_duplicate
     ORDER BY payload->>'hold_id', kafka_partition, kafka_offset
    ON CONFLICT (hold_id) DO UPDATE SET released_at = excluded.released_at,
        released_by = excluded.released_by, release_reason = excluded.release_reason
     WHERE h.released_at IS NULL
    """,
)
