-- Audit exports made for regulators (docs/export-format.md): one row per export, the
-- manifest as signed. Not a view: nothing rebuilds it from the journal; it is the export
-- chain (each manifest names the previous one's SHA-256, per regulator) and lets the same
-- export be made again byte for byte (same creation time, same previous link).
CREATE TABLE exports (
    export_id        text        PRIMARY KEY,
    regulator        text        NOT NULL,
    requested_by     text        NOT NULL,
    period_from      timestamptz NOT NULL,
    period_to        timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    previous_sha256  text,                  -- manifest SHA-256 of the regulator's export before
    manifest_sha256  text        NOT NULL,
    manifest         bytea       NOT NULL,
    manifest_note    bytea       NOT NULL,  -- manifest.sig
    manifest_tsr     bytea,                 -- RFC 3161 token over the note text, when a TSA is set
    records          bigint      NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX exports_regulator ON exports (regulator, created_at);
