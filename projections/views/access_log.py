"""``access_log``: every AccessRecorded (the access audit), one row per access id."""

STATEMENTS = (
    """
    INSERT INTO access_log (access_id, event_id, accessed_at, actor, role, action, protocol_number,
        subject_ref, target, purpose, source_address)
    SELECT DISTINCT ON (payload->>'access_id') (payload->>'access_id')::uuid, event_id, occurred_at,
           payload->>'actor', payload->>'role', payload->>'action', protocol_number,
           payload->>'subject_ref', payload->>'target', payload->>'purpose', payload->>'source_address'
      FROM batch_events
     WHERE event_type = 'AccessRecorded' AND NOT is_duplicate
     ORDER BY payload->>'access_id', kafka_partition, kafka_offset
    ON CONFLICT (access_id) DO NOTHING
    """,
)
