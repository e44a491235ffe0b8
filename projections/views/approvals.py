"""``approvals``: two-person approvals, the request and the first decision on it.

The request is first-wins; so is the decision (grant or deny, whichever has the lower
time, then offset), so a decision replayed in other batch sizes lands the same. Whether
the decider was allowed (never the requester) is checked before publishing by the API;
the view keeps what the log says, so a breach would be visible, not hidden.
"""

STATEMENTS = (
    """
    INSERT INTO approvals AS a (approval_id, action, protocol_number, recording_id, subject_ref, reason,
        requested_by, requester_role, requested_at)
    SELECT DISTINCT ON (payload->>'approval_id') (payload->>'approval_id')::uuid, payload->>'action',
           protocol_number, payload->>'recording_id', payload->>'subject_ref', payload->>'reason',
           payload->>'requested_by', payload->>'requester_role', occurred_at
      FROM batch_events
     WHERE event_type = 'ApprovalRequested' AND NOT is_duplicate
     ORDER BY payload->>'approval_id', kafka_partition, kafka_offset
    ON CONFLICT (approval_id) DO UPDATE SET action = excluded.action,
        protocol_number = excluded.protocol_number, recording_id = excluded.recording_id,
        subject_ref = excluded.subject_ref, reason = excluded.reason, requested_by = excluded.requested_by,
        requester_role = excluded.requester_role, requested_at = excluded.requested_at
     WHERE a.requested_at IS NULL
    """,
    """
    INSERT INTO approvals AS a (approval_id, decided_at, decision, decided_by, decider_role, decision_note)
    SELECT DISTINCT ON (payload->>'approval_id') (payload->>'approval_id')::uuid, occurred_at,
           CASE event_type WHEN 'ApprovalGranted' THEN 'GRANTED' ELSE 'DENIED' END,
           coalesce(payload->>'approved_by', payload->>'denied_by'), payload->>'approver_role',
           coalesce(payload->>'comment', payload->>'reason')
      FROM batch_events
     WHERE event_type IN ('ApprovalGranted', 'ApprovalDenied') AND NOT is_duplicate
     ORDER BY payload->>'approval_id', occurred_at, kafka_partition, kafka_offset
    ON CONFLICT (approval_id) DO UPDATE SET decided_at = excluded.decided_at, decision = excluded.decision,
        decided_by = excluded.decided_by, decider_role = excluded.decider_role,
        decision_note = excluded.decision_note
     WHERE a.decided_at IS NULL OR excluded.decided_at < a.decided_at
    """,
)
