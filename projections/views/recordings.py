"""``recordings`` (retention deadline, status) and ``recording_deletions`` (with the
compliance facts of each deletion, fixed at the moment it happened)."""

STATEMENTS = (
    # Retention counts from the call date (the contact's opening), per the profile applied.
    """
    INSERT INTO recordings (recording_id, protocol_number, media_uri, sha256, duration_ms, captured_at,
        retention_profile, retention_days, retain_until)
    SELECT DISTINCT ON (b.payload->>'recording_id') b.payload->>'recording_id', b.protocol_number,
           b.payload->>'media_uri', b.payload->>'sha256', (b.payload->>'duration_ms')::bigint, b.occurred_at,
           p.profile, (b.payload->>'retention_days')::integer,
           coalesce(i.opened_at, b.occurred_at) + make_interval(days => (b.payload->>'retention_days')::integer)
      FROM batch_events b
      LEFT JOIN interactions i ON i.protocol_number = b.protocol_number
      LEFT JOIN LATERAL (SELECT profile FROM policy_profiles WHERE name = b.payload->>'retention_profile'
                          ORDER BY version DESC LIMIT 1) p ON true
     WHERE b.event_type = 'RecordingCaptured' AND NOT b.is_duplicate
     ORDER BY b.payload->>'recording_id', b.kafka_partition, b.kafka_offset
    ON CONFLICT (recording_id) DO NOTHING
    """,
    """
    INSERT INTO recording_deletions (recording_id, protocol_number, deleted_at, reason, sha256, authorised_by,
        digest_matches_capture, before_retention_end, under_legal_hold)
    SELECT DISTINCT ON (b.payload->>'recording_id') b.payload->>'recording_id', b.protocol_number, b.occurred_at,
           b.payload->>'reason', b.payload->>'sha256', b.payload->>'authorised_by',
           r.sha256 = b.payload->>'sha256',
           b.occurred_at < r.retain_until,
           EXISTS (SELECT 1 FROM legal_holds h
                    WHERE h.protocol_number = b.protocol_number AND h.placed_at <= b.occurred_at
                      AND (h.released_at IS NULL OR h.released_at > b.occurred_at))
      FROM batch_events b
      LEFT JOIN recordings r ON r.recording_id = b.payload->>'recording_id'
     WHERE b.event_type = 'RecordingDeleted' AND NOT b.is_duplicate
     ORDER BY b.payload->>'recording_id', b.kafka_partition, b.kafka_offset
    ON CONFLICT (recording_id) DO NOTHING
    """,
    """
    UPDATE recordings r SET status = 'deleted', deleted_at = d.deleted_at
      FROM recording_deletions d
     WHERE d.recording_id = r.recording_id AND r.status <> 'deleted'
       AND d.recording_id IN (SELECT payload->>'recording_id' FROM batch_events
                               WHERE event_type = 'RecordingDeleted' AND NOT is_duplicate)
    """,
)
