"""``interactions``: one row per protocol number, folded from its events."""

INTERACTION_EVENTS = (
    "'ContactOpened', 'DisclosureMade', 'RecordingCaptured', 'ContactClosed', 'NoteAdded',"
    " 'RecordingDeleted', 'LegalHoldPlaced', 'LegalHoldReleased'"
)

STATEMENTS = (
    # The first ContactOpened of a protocol (lowest offset) defines the contact.
    """
    INSERT INTO interactions AS i (protocol_number, channel, direction, service_type, policy_profile,
        cpf_index, customer_code_index, personal_data_key, agent_id, subject, recorded, language, opened_at)
    SELECT DISTINCT ON (b.protocol_number) b.protocol_number,
           b.payload->>'channel', b.payload->>'direction', b.payload->>'service_type',
           profile_in_force(coalesce(b.payload->>'policy_profile',
                                     service_profile_name(b.payload->>'service_type')), b.occurred_at),
           b.payload->'customer'->>'cpf_index', b.payload->'customer'->>'customer_code_index',
           b.payload->'customer'->'sealed'->>'key_ref',
           b.payload->>'agent_id', b.payload->>'subject', (b.payload->>'recorded')::boolean,
           b.payload->>'language', b.occurred_at
      FROM batch_events b
     WHERE b.event_type = 'ContactOpened' AND NOT b.is_duplicate
     ORDER BY b.protocol_number, b.kafka_partition, b.kafka_offset
    ON CONFLICT (protocol_number) DO UPDATE SET
        channel = excluded.channel, direction = excluded.direction, service_type = excluded.service_type,
        policy_profile = excluded.policy_profile, cpf_index = excluded.cpf_index,
        customer_code_index = excluded.customer_code_index, personal_data_key = excluded.personal_data_key,
        agent_id = excluded.agent_id, subject = excluded.subject, recorded = excluded.recorded,
        language = excluded.language, opened_at = excluded.opened_at
     WHERE i.opened_at IS NULL
    """,
    # Every event about the contact widens its time span.
    f"""
    INSERT INTO interactions AS i (protocol_number, first_event_at, last_event_at)
    SELECT protocol_number, min(occurred_at), max(occurred_at)
      FROM batch_events
     WHERE NOT is_duplicate AND event_type IN ({INTERACTION_EVENTS})
     GROUP BY protocol_number
    ON CONFLICT (protocol_number) DO UPDATE SET
        first_event_at = least(i.first_event_at, excluded.first_event_at),
        last_event_at = greatest(i.last_event_at, excluded.last_event_at)
    """,
    # Disclosures: the earliest of each kind is what counts for compliance.
    """
    INSERT INTO interactions AS i (protocol_number, protocol_disclosed_at, recording_notice_at, protocol_confirmed_at)
    SELECT protocol_number,
           min(occurred_at) FILTER (WHERE payload->>'kind' = 'PROTOCOL_NUMBER'),
           min(occurred_at) FILTER (WHERE payload->>'kind' = 'RECORDING_NOTICE'),
           min(occurred_at) FILTER (WHERE payload->>'kind' = 'PROTOCOL_CONFIRMATION')
      FROM batch_events
     WHERE event_type = 'DisclosureMade' AND NOT is_duplicate
     GROUP BY protocol_number
    ON CONFLICT (protocol_number) DO UPDATE SET
        protocol_disclosed_at = least(i.protocol_disclosed_at, excluded.protocol_disclosed_at),
        recording_notice_at = least(i.recording_notice_at, excluded.recording_notice_at),
        protocol_confirmed_at = least(i.protocol_confirmed_at, excluded.protocol_confirmed_at)
    """,
    # The last ContactClosed (highest offset) holds the outcome.
    """
    INSERT INTO interactions AS i (protocol_number, closed_at, outcome, summary)
    SELECT DISTINCT ON (protocol_number) protocol_number, occurred_at, payload->>'outcome', payload->>'summary'
      FROM batch_events
     WHERE event_type = 'ContactClosed' AND NOT is_duplicate
     ORDER BY protocol_number, kafka_partition DESC, kafka_offset DESC
    ON CONFLICT (protocol_number) DO UPDATE SET
        closed_at = excluded.closed_at, outcome = excluded.outcome, summary = excluded.summary
    """,
    """
    INSERT INTO interactions AS i (protocol_number, note_count)
    SELECT protocol_number, count(*) FROM batch_events
     WHERE event_type = 'NoteAdded' AND NOT is_duplicate
     GROUP BY protocol_number
    ON CONFLICT (protocol_number) DO UPDATE SET note_count = i.note_count + excluded.note_count
    """,
)
