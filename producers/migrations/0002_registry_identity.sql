-- The registry's identity: a random id made once, when the registry is created. Every
-- ledger database records the id of the registry it belongs to (projections migration
-- 0011_ledger_registry.sql), and commands refuse a registry whose id is not that one, so
-- that two registries can never issue protocol numbers or hold data keys for one ledger.
CREATE TABLE IF NOT EXISTS registry_identity (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    registry_id uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO registry_identity (registry_id) VALUES (gen_random_uuid()) ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION registry_identity_is_written_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'registry_identity is written once: a registry keeps its id for ever';
END $$;
DROP TRIGGER IF EXISTS registry_identity_written_once ON registry_identity;
CREATE TRIGGER registry_identity_written_once BEFORE UPDATE OR DELETE ON registry_identity
    FOR EACH ROW EXECUTE FUNCTION registry_identity_is_written_once();
