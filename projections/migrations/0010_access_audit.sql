-- The access audit (AccessRecorded) and two-person approvals (Approval*), issue 7.
-- Numbered 0010 so that migrations added meanwhile on other branches (0004...) keep
-- their numbers; files apply in name order, once each.

-- One row per AccessRecorded: "who looked at this customer's data" is one query.
CREATE TABLE access_log (
    access_id       uuid PRIMARY KEY,
    event_id        uuid NOT NULL,
    accessed_at     timestamptz NOT NULL,
    actor           text NOT NULL,
    role            text NOT NULL,
    action          text NOT NULL,
    protocol_number text,
    subject_ref     text,          -- blind index of the customer, never the clear CPF
    target          text,
    purpose         text NOT NULL,
    source_address  text
);
CREATE INDEX access_log_subject ON access_log (subject_ref, accessed_at) WHERE subject_ref IS NOT NULL;
CREATE INDEX access_log_protocol ON access_log (protocol_number, accessed_at) WHERE protocol_number IS NOT NULL;
CREATE INDEX access_log_actor ON access_log (actor, accessed_at);

-- An action that needs two people: the request, then the first decision (grant or deny).
CREATE TABLE approvals (
    approval_id     uuid PRIMARY KEY,
    action          text,
    protocol_number text,
    recording_id    text,
    subject_ref     text,
    reason          text,
    requested_by    text,
    requester_role  text,
    requested_at    timestamptz,
    decided_at      timestamptz,
    decision        text,          -- GRANTED | DENIED; null while pending
    decided_by      text,
    decider_role    text,
    decision_note   text
);
CREATE INDEX approvals_pending ON approvals (requested_at) WHERE decision IS NULL;
