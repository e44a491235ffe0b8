"""``retrieval_requests``: what customers asked for, the deadline and how it ended.

The deadline comes from the policy profile of the contact named (or, for a request by CPF
/ customer code, the default profile's version in force when it was made) and names that
profile.
"""

STATEMENTS = (
    # A contact learnt of after a request that named it: the request takes its profile.
    """
    UPDATE retrieval_requests r
       SET policy_profile = p.profile,
           due_at = r.requested_at + CASE WHEN r.kind = 'HISTORY'
                                          THEN make_interval(hours => p.history_delivery_hours)
                                          ELSE make_interval(days => p.recording_delivery_days) END
      FROM interactions i JOIN policy_profiles p ON p.profile = i.policy_profile
     WHERE i.protocol_number = r.protocol_number AND r.requested_at IS NOT NULL
       AND r.policy_profile IS DISTINCT FROM i.policy_profile
       AND r.protocol_number IN (SELECT protocol_number FROM batch_events
                                  WHERE event_type = 'ContactOpened' AND NOT is_duplicate)
    """,
    """
    INSERT INTO retrieval_requests AS r (request_id, protocol_number, kind, cpf_index, customer_code_index,
        window_from, window_to, requested_at, requested_via, delivery_channel, policy_profile, due_at)
    SELECT DISTINCT ON (b.payload->>'request_id') (b.payload->>'request_id')::uuid, b.protocol_number,
           b.payload->>'kind', b.payload->'customer'->>'cpf_index', b.payload->'customer'->>'customer_code_index',
           (b.payload->>'window_from')::timestamptz, (b.payload->>'window_to')::timestamptz, b.occurred_at,
           b.payload->>'requested_via', b.payload->>'delivery_channel', p.profile,
           b.occurred_at + CASE WHEN b.payload->>'kind' = 'HISTORY'
                                THEN make_interval(hours => p.history_delivery_hours)
                                ELSE make_interval(days => p.recording_delivery_days) END
      FROM batch_events b
      LEFT JOIN interactions i ON i.protocol_number = b.protocol_number
      JOIN policy_profiles p
        ON p.profile = coalesce(i.policy_profile, profile_in_force(service_profile_name('*'), b.occurred_at))
     WHERE b.event_type = 'RetrievalRequested' AND NOT b.is_duplicate
     ORDER BY b.payload->>'request_id', b.kafka_partition, b.kafka_offset
    ON CONFLICT (request_id) DO UPDATE SET protocol_number = excluded.protocol_number, kind = excluded.kind,
        cpf_index = excluded.cpf_index, customer_code_index = excluded.customer_code_index,
        window_from = excluded.window_from, window_to = excluded.window_to, requested_at = excluded.requested_at,
        requested_via = excluded.requested_via, delivery_channel = excluded.delivery_channel,
        policy_profile = excluded.policy_profile, due_at = excluded.due_at
     WHERE r.requested_at IS NULL
    """,
    """
    INSERT INTO retrieval_requests AS r (request_id, located_at, located_protocols)
    SELECT DISTINCT ON (payload->>'request_id') (payload->>'request_id')::uuid, occurred_at,
           ARRAY(SELECT jsonb_array_elements_text(payload->'protocol_numbers'))
      FROM batch_events
     WHERE event_type = 'RetrievalLocated' AND NOT is_duplicate
     ORDER BY payload->>'request_id', kafka_partition DESC, kafka_offset DESC
    ON CONFLICT (request_id) DO UPDATE SET located_at = excluded.located_at,
        located_protocols = excluded.located_protocols
    """,
    # The first fulfilment and the first rejection are each kept as facts ...
    """
    INSERT INTO retrieval_requests AS r (request_id, fulfilled_at, delivered_sha256, delivered_recording)
    SELECT DISTINCT ON (payload->>'request_id') (payload->>'request_id')::uuid, occurred_at,
           payload->>'delivered_sha256', payload->>'recording_id'
      FROM batch_events
     WHERE event_type = 'RetrievalFulfilled' AND NOT is_duplicate
     ORDER BY payload->>'request_id', kafka_partition, kafka_offset
    ON CONFLICT (request_id) DO UPDATE SET fulfilled_at = excluded.fulfilled_at,
        delivered_sha256 = excluded.delivered_sha256, delivered_recording = excluded.delivered_recording
     WHERE r.fulfilled_at IS NULL
    """,
    """
    INSERT INTO retrieval_requests AS r (request_id, rejected_at, rejection_reason)
    SELECT DISTINCT ON (payload->>'request_id') (payload->>'request_id')::uuid, occurred_at, payload->>'reason'
      FROM batch_events
     WHERE event_type = 'RetrievalRejected' AND NOT is_duplicate
     ORDER BY payload->>'request_id', kafka_partition, kafka_offset
    ON CONFLICT (request_id) DO UPDATE SET rejected_at = excluded.rejected_at,
        rejection_reason = excluded.rejection_reason
     WHERE r.rejected_at IS NULL
    """,
    # ... and the status follows from them, whatever order the batches brought them in:
    # the earlier of fulfilment and rejection ends the request.
    """
    UPDATE retrieval_requests r SET status = CASE
             WHEN r.fulfilled_at IS NOT NULL AND (r.rejected_at IS NULL OR r.fulfilled_at <= r.rejected_at)
                  THEN 'fulfilled'
             WHEN r.rejected_at IS NOT NULL THEN 'rejected'
             WHEN r.located_at IS NOT NULL THEN 'located'
             ELSE 'requested' END
     WHERE r.request_id IN (SELECT (payload->>'request_id')::uuid FROM batch_events
                             WHERE event_type LIKE 'Retrieval%' AND NOT is_duplicate)
    """,
)
