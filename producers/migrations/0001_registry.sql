-- The producers' registry: what publishing needs beyond Kafka, kept apart from the
-- projections because it must outlive any one ledger database (a protocol number is never
-- issued twice, a customer's data key is destroyed everywhere at once).
-- IF NOT EXISTS: ledgers made before this set existed created these tables in
-- projections/migrations/0001_ledger.sql.

-- One global protocol-number sequence; processes reserve blocks (see producers/protocol_issuer.py).
CREATE TABLE IF NOT EXISTS protocol_number_sequence (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    next_value bigint  NOT NULL
);
INSERT INTO protocol_number_sequence (next_value) VALUES (1) ON CONFLICT DO NOTHING;

-- Per-customer data keys, wrapped by the deployment's master key. Destroying a row's key
-- (wrapped_key set to NULL) erases that customer's personal data in every event sealed
-- under it. subject_ref is the customer's blind index; one live key per subject.
CREATE TABLE IF NOT EXISTS personal_data_keys (
    key_ref      text PRIMARY KEY,
    subject_ref  text NOT NULL,
    wrapped_key  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    destroyed_reason text
);
CREATE UNIQUE INDEX IF NOT EXISTS personal_data_keys_live
    ON personal_data_keys (subject_ref) WHERE wrapped_key IS NOT NULL;

-- Key-check values of the deployment's secrets (HMAC of a fixed label under each key),
-- stored at first use: a process started with another key refuses to run instead of
-- silently finding nothing by CPF (index key) or failing to open every data key (master key).
CREATE TABLE IF NOT EXISTS deployment_key_checks (
    key_name   text PRIMARY KEY,  -- index | master
    check_value text NOT NULL,    -- hex HMAC-SHA256(key, 'protocolo key check v1')
    recorded_at timestamptz NOT NULL DEFAULT now()
);
