-- Decisions the API takes once: an approval granted or denied, a retrieval request located
-- or closed, a legal hold placed or released. The registry, not a ledger view, is what a
-- decision is taken against: the view lags the log, this table is serialised (a
-- transaction-scoped advisory lock per subject, then this primary key).
--
-- The events a decision publishes are stored with it, already encoded (their event ids
-- fixed), in the same transaction: a decision is taken with all its events or not at all,
-- and a publication that a broker failure interrupted is completed with the same event
-- ids (the projector applies an event id once), never decided again.
CREATE TABLE api_decisions (
    subject     text NOT NULL,          -- 'approval:<uuid>', 'request:<uuid>', 'hold:<id>'
    step        text NOT NULL,          -- 'decided', 'located', 'closed', 'placed', 'released'
    outcome     text NOT NULL,          -- GRANTED, DENIED, LOCATED, FULFILLED, REJECTED, PLACED, RELEASED
    decided_by  text NOT NULL,          -- the authenticated user, never a body field
    topic       text NOT NULL,
    decided_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, step)
);

CREATE TABLE api_decision_events (
    subject       text NOT NULL,
    step          text NOT NULL,
    seq           integer NOT NULL,
    event_id      text NOT NULL UNIQUE,
    event_type    text NOT NULL,
    record_key    bytea NOT NULL,
    record_value  bytea NOT NULL,
    headers       jsonb NOT NULL,       -- [[name, hex of the value], ...]
    published_at  timestamptz,          -- null: not confirmed by the broker yet
    kafka_partition integer,            -- where the broker confirmed it
    kafka_offset  bigint,
    PRIMARY KEY (subject, step, seq),
    FOREIGN KEY (subject, step) REFERENCES api_decisions (subject, step)
);
CREATE INDEX api_decision_events_unpublished ON api_decision_events (subject) WHERE published_at IS NULL;
