-- The verifiable index (docs/evidence-format.md §11): per partition, key -> every leaf
-- index whose record has that key, as a compressed sparse Merkle tree whose root the log
-- signs at every checkpoint (an index checkpoint). Maintained by the checkpointer, in the
-- checkpoint's transaction; rebuilt from the journal by `protocolo verify`.

-- One row per (key, leaf): the key's list at map state n is its leaf indexes below n.
CREATE TABLE vindex_entries (
    topic           text    NOT NULL,
    kafka_partition integer NOT NULL,
    key_hash        bytea   NOT NULL,  -- SHA-256("kind:value")
    leaf_index      bigint  NOT NULL,
    kind            text    NOT NULL,
    key_value       text    NOT NULL,
    PRIMARY KEY (topic, kafka_partition, key_hash, leaf_index)
);

-- The tree's nodes, versioned: a node written when the map reached size map_size; the node
-- at (depth, prefix) of map state n is its row with the largest map_size <= n.
-- prefix = the node's first `depth` key-hash bits as an integer, big-endian in
-- ceil(depth/8) bytes. Leaves carry their key hash and list hash.
CREATE TABLE vindex_nodes (
    topic           text     NOT NULL,
    kafka_partition integer  NOT NULL,
    depth           smallint NOT NULL,
    prefix          bytea    NOT NULL,
    map_size        bigint   NOT NULL,
    hash            bytea    NOT NULL,
    leaf_key        bytea,
    list_hash       bytea,
    PRIMARY KEY (topic, kafka_partition, depth, prefix, map_size)
);

-- The signed index checkpoints: the checkpoint of tree_size leaves with the extension line
-- `protocolo-vindex/v1 <map root>`, signed by the partition's log key.
CREATE TABLE vindex_checkpoints (
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    tree_size       bigint      NOT NULL,
    root_hash       bytea       NOT NULL,  -- the log's root at that size
    map_root        bytea       NOT NULL,
    origin          text        NOT NULL,
    note            text        NOT NULL,
    key_name        text        NOT NULL,
    key_id          text        NOT NULL,
    signed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, tree_size)
);
