-- The two-person rule, on the log: a recording deleted before its retention end must name
-- an approval granted by someone other than the one who asked for it. Judged at read
-- time from the views (whoever published the RecordingDeleted: the API, a service or a
-- producer outside the API), so a deletion that bypassed the rule cannot pass silently.
-- Columns are appended; the existing ones keep their order (CREATE OR REPLACE VIEW).
CREATE OR REPLACE VIEW recording_deletion_status AS
SELECT d.*,
       r.sha256 = d.sha256 AS digest_matches_capture,       -- null when the capture is unknown
       d.deleted_at < r.retain_until AS before_retention_end,
       EXISTS (SELECT 1 FROM legal_holds h
                WHERE h.protocol_number = d.protocol_number AND h.placed_at <= d.deleted_at
                  AND (h.released_at IS NULL OR h.released_at > d.deleted_at)) AS under_legal_hold,
       EXISTS (SELECT 1 FROM approvals a
                WHERE a.action = 'EARLY_DELETION' AND a.recording_id = d.recording_id
                  AND a.decision = 'GRANTED' AND a.decided_at <= d.deleted_at
                  AND a.requested_by IS NOT NULL AND a.decided_by IS NOT NULL
                  AND a.requested_by <> a.decided_by) AS approved_by_two_people,
       coalesce(d.deleted_at < r.retain_until, false) AND NOT EXISTS (
           SELECT 1 FROM approvals a
            WHERE a.action = 'EARLY_DELETION' AND a.recording_id = d.recording_id
              AND a.decision = 'GRANTED' AND a.decided_at <= d.deleted_at
              AND a.requested_by IS NOT NULL AND a.decided_by IS NOT NULL
              AND a.requested_by <> a.decided_by) AS early_without_approval
  FROM recording_deletions d
  LEFT JOIN recordings r USING (recording_id);
