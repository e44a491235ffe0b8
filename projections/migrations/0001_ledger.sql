-- Protocolo ledger schema, version 1.
-- Written by the projector only (views, journal, offsets). The producers' own tables
-- (protocol-number sequence, personal-data key vault) are in producers/migrations/.

-- Where each partition's projection stands: the next Kafka offset to apply and the next
-- Merkle leaf index. Written in the same transaction as the rows it covers, so the views
-- and this table can never disagree (exactly-once effect).
CREATE TABLE projector_offsets (
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    next_offset     bigint      NOT NULL,
    next_leaf_index bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition)
);

-- Every decodable record, verbatim: the evidence. Views are conveniences rebuilt from it.
CREATE TABLE journal (
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    kafka_timestamp timestamptz,
    record_key      bytea,
    record_value    bytea       NOT NULL,
    headers         jsonb       NOT NULL DEFAULT '[]',
    fingerprint     bytea       NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    event_id        uuid        NOT NULL,
    protocol_number text,
    entity_key      text        NOT NULL,  -- the Kafka key as text: protocol number or the event's own id
    occurred_at     timestamptz NOT NULL,
    payload         jsonb       NOT NULL,  -- decoded with the current reader schema
    is_duplicate    boolean     NOT NULL,  -- event_id was journalled before: kept as evidence, not applied to views
    leaf_index      bigint      NOT NULL,  -- position in this partition's Merkle tree
    leaf_hash       bytea       NOT NULL,  -- RFC 6962 leaf hash, see projections/integrity.py
    projected_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset),
    UNIQUE (topic, kafka_partition, leaf_index)
);
-- One applied occurrence per event id, even when two projectors meet the same event id
-- on different partitions at once: the loser's batch fails and is redone as a duplicate.
CREATE UNIQUE INDEX journal_event_id_applied ON journal (event_id) WHERE NOT is_duplicate;
CREATE INDEX journal_protocol ON journal (protocol_number, occurred_at) WHERE protocol_number IS NOT NULL;
CREATE INDEX journal_entity_key ON journal (entity_key);

-- Records that could not be decoded: kept with their raw bytes and the reason.
CREATE TABLE quarantine (
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    kafka_timestamp timestamptz,
    record_key      bytea,
    record_value    bytea,
    headers         jsonb       NOT NULL DEFAULT '[]',
    error           text        NOT NULL,
    quarantined_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);

-- Policy profiles in force (DOMAIN.md): every derived deadline names the one it used.
CREATE TABLE policy_profiles (
    profile                    text    PRIMARY KEY,  -- name@version, e.g. br-sac-2022@1
    name                       text    NOT NULL,
    version                    integer NOT NULL,
    recording_retention_days   integer NOT NULL,
    record_retention_days      integer NOT NULL,
    recording_delivery_days    integer NOT NULL,
    history_delivery_hours     integer NOT NULL,
    demand_answer_days         integer NOT NULL,
    protocol_confirmation_hours integer NOT NULL,
    start_disclosure_seconds   integer NOT NULL,
    source                     text    NOT NULL
);

CREATE TABLE interactions (
    protocol_number         text PRIMARY KEY,
    channel                 text,
    direction               text,
    service_type            text,
    policy_profile          text,
    cpf_index               text,
    customer_code_index     text,
    personal_data_key       text,
    agent_id                text,
    subject                 text,
    recorded                boolean,
    language                text,
    opened_at               timestamptz,
    closed_at               timestamptz,
    outcome                 text,
    summary                 text,
    protocol_disclosed_at   timestamptz,
    recording_notice_at     timestamptz,
    protocol_confirmed_at   timestamptz,
    note_count              integer NOT NULL DEFAULT 0,
    first_event_at          timestamptz,
    last_event_at           timestamptz
);
CREATE INDEX interactions_opened ON interactions (opened_at);
CREATE INDEX interactions_agent ON interactions (agent_id, opened_at);
CREATE INDEX interactions_channel ON interactions (channel, opened_at);

CREATE TABLE recordings (
    recording_id        text PRIMARY KEY,
    protocol_number     text,
    media_uri           text NOT NULL,
    sha256              text NOT NULL,
    duration_ms         bigint NOT NULL,
    captured_at         timestamptz NOT NULL,
    retention_profile   text NOT NULL,
    retention_days      integer NOT NULL,
    retain_until        timestamptz NOT NULL,
    status              text NOT NULL DEFAULT 'retained',  -- retained | deleted
    deleted_at          timestamptz
);
CREATE INDEX recordings_protocol ON recordings (protocol_number);
CREATE INDEX recordings_retain_until ON recordings (retain_until) WHERE status = 'retained';

CREATE TABLE recording_deletions (
    recording_id            text PRIMARY KEY,
    protocol_number         text,
    deleted_at              timestamptz NOT NULL,
    reason                  text NOT NULL,
    sha256                  text NOT NULL,
    authorised_by           text
);

CREATE TABLE legal_holds (
    hold_id         text PRIMARY KEY,
    protocol_number text,
    case_reference  text,
    placed_by       text,
    placed_at       timestamptz,
    released_at     timestamptz,
    released_by     text,
    release_reason  text
);
CREATE INDEX legal_holds_protocol ON legal_holds (protocol_number);

CREATE TABLE retrieval_requests (
    request_id          uuid PRIMARY KEY,
    protocol_number     text,
    kind                text,
    cpf_index           text,
    customer_code_index text,
    window_from         timestamptz,
    window_to           timestamptz,
    requested_at        timestamptz,
    requested_via       text,
    delivery_channel    text,
    policy_profile      text,
    due_at              timestamptz,
    status              text NOT NULL DEFAULT 'requested', -- requested | located | fulfilled | rejected
    located_at          timestamptz,
    located_protocols   text[],
    fulfilled_at        timestamptz,
    delivered_sha256    text,
    delivered_recording text,
    rejected_at         timestamptz,
    rejection_reason    text
);
CREATE INDEX retrieval_requests_protocol ON retrieval_requests (protocol_number);
CREATE INDEX retrieval_requests_cpf ON retrieval_requests (cpf_index);

-- Blind index (HMAC) of CPF and customer code -> protocols. Never the clear value.
CREATE TABLE customer_index (
    index_kind      text NOT NULL,  -- cpf | customer_code
    index_value     text NOT NULL,
    protocol_number text NOT NULL,
    opened_at       timestamptz,
    PRIMARY KEY (index_kind, index_value, protocol_number)
);

-- Every erasure (a customer who came back may be erased again).
CREATE TABLE erasures (
    event_id    uuid PRIMARY KEY,
    subject_ref text NOT NULL,
    key_refs    text[] NOT NULL,
    legal_basis text NOT NULL,
    erased_at   timestamptz NOT NULL
);
CREATE INDEX erasures_subject ON erasures (subject_ref);

-- Derived, read-time views: flags that depend on the clock are computed, not stored.
CREATE VIEW interaction_compliance AS
SELECT i.protocol_number,
       i.opened_at,
       i.policy_profile,
       i.protocol_disclosed_at IS NOT NULL
         AND i.protocol_disclosed_at <= i.opened_at + make_interval(secs => p.start_disclosure_seconds)
         AS protocol_disclosed_at_start,
       CASE WHEN i.recorded THEN i.recording_notice_at IS NOT NULL
         AND i.recording_notice_at <= i.opened_at + make_interval(secs => p.start_disclosure_seconds)
       END AS recording_notice_at_start,  -- null: the contact is not recorded
       i.protocol_confirmed_at IS NOT NULL
         AND i.protocol_confirmed_at <= i.opened_at + make_interval(hours => p.protocol_confirmation_hours)
         AS protocol_confirmed_in_time
  FROM interactions i
  LEFT JOIN policy_profiles p ON p.profile = i.policy_profile;

-- The compliance facts of each deletion, judged by the times the events state (so a hold
-- learnt of later but placed before the deletion still counts).
CREATE VIEW recording_deletion_status AS
SELECT d.*,
       r.sha256 = d.sha256 AS digest_matches_capture,       -- null when the capture is unknown
       d.deleted_at < r.retain_until AS before_retention_end,
       EXISTS (SELECT 1 FROM legal_holds h
                WHERE h.protocol_number = d.protocol_number AND h.placed_at <= d.deleted_at
                  AND (h.released_at IS NULL OR h.released_at > d.deleted_at)) AS under_legal_hold
  FROM recording_deletions d
  LEFT JOIN recordings r USING (recording_id);

CREATE VIEW retrieval_request_status AS
SELECT r.*,
       r.status IN ('requested', 'located') AND r.due_at < now() AS overdue,
       CASE WHEN r.fulfilled_at IS NOT NULL THEN r.fulfilled_at <= r.due_at END AS fulfilled_in_time
  FROM retrieval_requests r;
