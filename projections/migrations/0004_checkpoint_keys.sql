-- The checkpointer's bookkeeping (protocolo/attestation, docs/checkpoints.md).

-- Every log verifier key that ever signed a checkpoint here, so checkpoints signed before a
-- key rotation stay verifiable. Public keys only: the signing key is never in the database.
-- (An auditor pins the keys out of band; this is the log's own record of its history.)
CREATE TABLE signing_keys (
    key_name      text        NOT NULL,  -- the checkpoint origin (key name = origin)
    key_id        text        NOT NULL,  -- 8 hex digits
    vkey          text        NOT NULL UNIQUE,  -- C2SP verifier key string
    first_used_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_name, key_id)
);

-- A checkpoint can be anchored more than once by the same authority (an unchanged tree
-- re-stamped at the end of an empty period, a witness cosigning it again later), and an
-- RFC 3161 token is stored with the request that was sent (its nonce).
ALTER TABLE checkpoint_anchors DROP CONSTRAINT checkpoint_anchors_pkey;
ALTER TABLE checkpoint_anchors
    ADD PRIMARY KEY (topic, kafka_partition, tree_size, kind, authority, anchored_at);
ALTER TABLE checkpoint_anchors ADD COLUMN request bytea;  -- DER TimeStampReq (rfc3161 only)
