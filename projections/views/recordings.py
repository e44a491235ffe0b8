"""``recordings`` (retention deadline, status) and ``recording_deletions`` (the first
deletion of each recording; its compliance facts are derived on read by the
``recording_deletion_status`` SQL view)."""

STATEMENTS = (
    # A contact learnt of after its recording (published out of order): count from its opening.
    """
    UPDATE recordings r
       SET retain_until = i.opened_at + make_interval(days => r.retention_days)
      FROM interactions i
     WHERE i.protocol_number = r.protocol_number
       AND r.retain_until IS DISTINCT FROM i.opened_at + make_interval(days => r.retention_days)
       AND r.protocol_number IN (SELECT protocol_number FROM batch_events
                                  WHERE event_type = 'ContactOpened' AND NOT is_duplicate)
    """,
    # Retention counts from the call date (the contact's opening), per the profile applied.
    # A deletion seen before its capture (out of order) leaves the recording deleted.
    """
    INSERT INTO recordings (recording_id, protocol_number, media_uri, sha256, duration_ms, captured_at,
        retention_profile, retention_days, retain_until, status, deleted_at)
    SELECT DISTINCT ON (b.payload->>'recording_id') b.payload->>'recording_id', b.protocol_number,
           b.payload->>'media_uri', b.payload->>'sha256', (b.payload->>'duration_ms')::bigint, b.occurred_at,
           p.profile, (b.payload->>'retention_days')::integer,
           coalesce(i.opened_at, b.occurred_at) + make_interval(days => (b.payload->>'retention_days')::integer),
           CASE WHEN d.recording_id IS NULL THEN 'retained' ELSE 'deleted' END, d.deleted_at
      FROM batch_events b
      LEFT JOIN interactions i ON i.protocol_number = b.protocol_number
      LEFT JOIN recording_deletions d ON d.recording_id = b.payload->>'recording_id'
      CROSS JOIN LATERAL (SELECT profile_in_force(b.payload->>'retention_profile', b.occurred_at) AS profile) p
     WHERE b.event_type = 'RecordingCaptured' AND NOT b.is_duplicate
     ORDER BY b.payload->>'recording_id', b.kafka_partition, b.kafka_offset
    ON CONFLICT (recording_id) DO NOTHING
    """,
    """
    INSERT INTO recording_deletions (recording_id, protocol_number, deleted_at, reason, sha256, authorised_by)
    SELECT DISTINCT ON (payload->>'recording_id') payload->>'recording_id', protocol_number, occurred_at,
           payload->>'reason', payload->>'sha256', payload->>'authorised_by'
      FROM batch_events
     WHERE event_type = 'RecordingDeleted' AND NOT is_duplicate
     ORDER BY payload->>'recording_id', kafka_partition, kafka_offset
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
