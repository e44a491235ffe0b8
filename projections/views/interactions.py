"""``interactions``: one row per protocol number, folded from its events.

One statement per batch: each contact the batch touches gets one new row version, with
every column's rule applied to what the row held before the batch and to the batch's own
events. The rules are each independent of how the log is cut into batches:

- the first ``ContactOpened`` (lowest offset) defines the contact; a later one changes nothing;
- every event about the contact widens its time span (min and max of event times);
- the earliest disclosure of each kind is what counts for compliance (a minimum);
- the last ``ContactClosed`` (highest offset) holds the outcome;
- notes are counted (a sum).

(One upsert per rule would rewrite a contact's row, and its index entries, up to five
times per batch.)
"""

from .policy_periods import PROFILE_PERIODS, SERVICE_PROFILE_NAME, in_force, service_profile_joins

INTERACTION_EVENTS = (
    "'ContactOpened', 'DisclosureMade', 'RecordingCaptured', 'ContactClosed', 'NoteAdded',"
    " 'RecordingDeleted', 'LegalHoldPlaced', 'LegalHoldReleased'"
)

#: Columns the first ContactOpened sets, once.
_OPENING_COLUMNS = (
    "channel", "direction", "service_type", "policy_profile", "cpf_index", "customer_code_index",
    "personal_data_key", "agent_id", "subject", "recorded", "language", "opened_at",
)

#: An opening in this batch is applied only to a contact not opened before.
_OPENING_UPDATES = ",\n        ".join(
    f"{c} = CASE WHEN i.opened_at IS NULL AND excluded.opened_at IS NOT NULL THEN excluded.{c} ELSE i.{c} END"
    for c in _OPENING_COLUMNS
)

#: A close in this batch replaces the one before (closed_at is an event time, never null).
_CLOSING_UPDATES = ",\n        ".join(
    f"{c} = CASE WHEN excluded.closed_at IS NOT NULL THEN excluded.{c} ELSE i.{c} END"
    for c in ("closed_at", "outcome", "summary")
)

STATEMENTS = (
    f"""
    WITH opened AS (
        SELECT DISTINCT ON (b.protocol_number) b.protocol_number,
               b.payload->>'channel' AS channel, b.payload->>'direction' AS direction,
               b.payload->>'service_type' AS service_type,
               pv.profile AS policy_profile,
               b.payload->'customer'->>'cpf_index' AS cpf_index,
               b.payload->'customer'->>'customer_code_index' AS customer_code_index,
               b.payload->'customer'->'sealed'->>'key_ref' AS personal_data_key,
               b.payload->>'agent_id' AS agent_id, b.payload->>'subject' AS subject,
               (b.payload->>'recorded')::boolean AS recorded, b.payload->>'language' AS language,
               b.occurred_at AS opened_at
          FROM batch_events b
          {service_profile_joins("b.payload->>'service_type'")}
          LEFT JOIN {PROFILE_PERIODS} pv
            ON {in_force("pv", "coalesce(b.payload->>'policy_profile', " + SERVICE_PROFILE_NAME + ")", "b.occurred_at")}
         WHERE b.event_type = 'ContactOpened' AND NOT b.is_duplicate
         ORDER BY b.protocol_number, b.kafka_partition, b.kafka_offset
    ), closed AS (
        SELECT DISTINCT ON (protocol_number) protocol_number, occurred_at AS closed_at,
               payload->>'outcome' AS outcome, payload->>'summary' AS summary
          FROM batch_events
         WHERE event_type = 'ContactClosed' AND NOT is_duplicate
         ORDER BY protocol_number, kafka_partition DESC, kafka_offset DESC
    ), spans AS (
        SELECT protocol_number, min(occurred_at) AS first_event_at, max(occurred_at) AS last_event_at,
               min(occurred_at) FILTER (WHERE event_type = 'DisclosureMade'
                                          AND payload->>'kind' = 'PROTOCOL_NUMBER') AS protocol_disclosed_at,
               min(occurred_at) FILTER (WHERE event_type = 'DisclosureMade'
                                          AND payload->>'kind' = 'RECORDING_NOTICE') AS recording_notice_at,
               min(occurred_at) FILTER (WHERE event_type = 'DisclosureMade'
                                          AND payload->>'kind' = 'PROTOCOL_CONFIRMATION') AS protocol_confirmed_at,
               count(*) FILTER (WHERE event_type = 'NoteAdded') AS note_count
          FROM batch_events
         WHERE NOT is_duplicate AND event_type IN ({INTERACTION_EVENTS})
         GROUP BY protocol_number
    )
    INSERT INTO interactions AS i (protocol_number, {', '.join(_OPENING_COLUMNS)},
        closed_at, outcome, summary, protocol_disclosed_at, recording_notice_at, protocol_confirmed_at,
        note_count, first_event_at, last_event_at)
    SELECT s.protocol_number, {', '.join('o.' + c for c in _OPENING_COLUMNS)},
           c.closed_at, c.outcome, c.summary, s.protocol_disclosed_at, s.recording_notice_at,
           s.protocol_confirmed_at, s.note_count, s.first_event_at, s.last_event_at
      FROM spans s
      LEFT JOIN opened o ON o.protocol_number = s.protocol_number
      LEFT JOIN closed c ON c.protocol_number = s.protocol_number
    ON CONFLICT (protocol_number) DO UPDATE SET
        {_OPENING_UPDATES},
        {_CLOSING_UPDATES},
        protocol_disclosed_at = least(i.protocol_disclosed_at, excluded.protocol_disclosed_at),
        recording_notice_at = least(i.recording_notice_at, excluded.recording_notice_at),
        protocol_confirmed_at = least(i.protocol_confirmed_at, excluded.protocol_confirmed_at),
        note_count = i.note_count + excluded.note_count,
        first_event_at = least(i.first_event_at, excluded.first_event_at),
        last_event_at = greatest(i.last_event_at, excluded.last_event_at)
    """,
)
