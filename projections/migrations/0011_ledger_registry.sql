-- The registry this ledger belongs to (producers' registry_identity.registry_id), written
-- by the first writing command that uses the ledger and never changed: protocol numbers
-- and data keys of this ledger's events come from that registry only, and every command
-- refuses another one (see protocolo/registry_binding.py).
CREATE TABLE ledger_registry (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    registry_id uuid        NOT NULL,
    bound_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION ledger_registry_is_written_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_registry is written once: a ledger belongs to one registry for ever';
END $$;
CREATE TRIGGER ledger_registry_written_once BEFORE UPDATE OR DELETE ON ledger_registry
    FOR EACH ROW EXECUTE FUNCTION ledger_registry_is_written_once();
