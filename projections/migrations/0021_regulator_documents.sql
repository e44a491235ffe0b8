-- Where each export and report made for a regulator lives on the server, so that the
-- regulator's users can list and download them (API /v1/regulator/documents, console
-- /console/regulator). Not a view: like `exports`, nothing rebuilds it from the journal.
-- An export's document id is its export id (the same export written again to another
-- directory points at the newest copy); a report's is `report-` + the SHA-256 of its file.
CREATE TABLE regulator_documents (
    document_id text        PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('export', 'report')),
    regulator   text        NOT NULL,
    export_id   text        NOT NULL REFERENCES exports (export_id),  -- a report: its evidence
    location    text        NOT NULL,   -- absolute path: the export's directory, the report's file
    media_type  text        NOT NULL,   -- of the download (an export is sent as a tar archive)
    made_by     text        NOT NULL,
    made_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX regulator_documents_regulator ON regulator_documents (regulator, made_at);

-- The contacts a report lists (protocol numbers it names as evidence): a regulator given
-- the report may pull those contacts' proof bundles, and no other.
CREATE TABLE regulator_report_contacts (
    document_id     text NOT NULL REFERENCES regulator_documents (document_id) ON DELETE CASCADE,
    protocol_number text NOT NULL,
    PRIMARY KEY (document_id, protocol_number)
);
CREATE INDEX regulator_report_contacts_protocol ON regulator_report_contacts (protocol_number);
