-- The evidence layer's storage (docs/evidence-format.md): one RFC 6962 tree per partition.
--
-- Every offset gets a leaf, quarantined records included, so nothing can leave the
-- evidence without a gap showing. Leaf indexes are their own counter per partition (Kafka
-- offsets can have gaps), assigned in offset order over journal and quarantine together.

ALTER TABLE quarantine ADD COLUMN leaf_index bigint;
ALTER TABLE quarantine ADD COLUMN leaf_hash bytea;

-- Ledgers made before this migration numbered journal rows only: renumber over both tables
-- (the leaf hashes of journal rows do not depend on the index and stay as they are).
ALTER TABLE journal DROP CONSTRAINT journal_topic_kafka_partition_leaf_index_key;
CREATE TEMP TABLE leaf_numbers ON COMMIT DROP AS
SELECT topic, kafka_partition, kafka_offset,
       row_number() OVER (PARTITION BY topic, kafka_partition ORDER BY kafka_offset) - 1 AS leaf_index
  FROM (SELECT topic, kafka_partition, kafka_offset FROM journal
        UNION ALL
        SELECT topic, kafka_partition, kafka_offset FROM quarantine) everything;
UPDATE journal j SET leaf_index = n.leaf_index
  FROM leaf_numbers n
 WHERE j.topic = n.topic AND j.kafka_partition = n.kafka_partition AND j.kafka_offset = n.kafka_offset
   AND j.leaf_index <> n.leaf_index;
UPDATE quarantine q SET leaf_index = n.leaf_index,
       -- leaf layout v1 (protocolo/evidence/leaf.py), computed here once for old rows
       leaf_hash = sha256('\x00'::bytea
           || substring(int4send(octet_length(convert_to(q.topic, 'UTF8'))) from 3 for 2)
           || convert_to(q.topic, 'UTF8') || int4send(q.kafka_partition) || int8send(q.kafka_offset)
           || CASE WHEN q.record_key IS NULL THEN int4send(-1)
                   ELSE int4send(octet_length(q.record_key)) || q.record_key END
           || int4send(octet_length(coalesce(q.record_value, ''::bytea))) || coalesce(q.record_value, ''::bytea))
  FROM leaf_numbers n
 WHERE q.topic = n.topic AND q.kafka_partition = n.kafka_partition AND q.kafka_offset = n.kafka_offset;
ALTER TABLE quarantine ALTER COLUMN leaf_index SET NOT NULL;
ALTER TABLE quarantine ALTER COLUMN leaf_hash SET NOT NULL;
ALTER TABLE journal ADD CONSTRAINT journal_leaf UNIQUE (topic, kafka_partition, leaf_index);
ALTER TABLE quarantine ADD CONSTRAINT quarantine_leaf UNIQUE (topic, kafka_partition, leaf_index);
UPDATE projector_offsets o SET next_leaf_index =
       (SELECT count(*) FROM journal j WHERE j.topic = o.topic AND j.kafka_partition = o.kafka_partition)
     + (SELECT count(*) FROM quarantine q WHERE q.topic = o.topic AND q.kafka_partition = o.kafka_partition);

-- Perfect subtrees of each partition's tree: node (level, node_index) is the root over
-- leaves [node_index * 2^level, (node_index + 1) * 2^level); level 0 holds the leaf hashes.
-- Complete nodes never change; proofs are assembled from O(log n) of them.
CREATE TABLE merkle_nodes (
    topic           text     NOT NULL,
    kafka_partition integer  NOT NULL,
    level           smallint NOT NULL CHECK (level BETWEEN 0 AND 63),
    node_index      bigint   NOT NULL CHECK (node_index >= 0),
    hash            bytea    NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (topic, kafka_partition, level, node_index)
);

-- The compact range of [0, tree_size) per partition (one hash per set bit of the size,
-- largest subtree first): what appending needs, written in the same fenced update as the
-- offsets. tree_size < next_leaf_index means the tree has leaves still to append (a
-- ledger made before this migration): the projector appends them before projecting.
ALTER TABLE projector_offsets ADD COLUMN tree_size bigint NOT NULL DEFAULT 0;
ALTER TABLE projector_offsets ADD COLUMN compact_range bytea[] NOT NULL DEFAULT '{}';

-- Signed tree heads (C2SP tlog-checkpoint notes), one row per checkpoint per partition.
CREATE TABLE checkpoints (
    topic            text        NOT NULL,
    kafka_partition  integer     NOT NULL,
    tree_size        bigint      NOT NULL CHECK (tree_size >= 0),
    root_hash        bytea       NOT NULL CHECK (octet_length(root_hash) = 32),
    origin           text        NOT NULL,
    note             text        NOT NULL,  -- the signed note, verbatim (body + signature lines)
    key_name         text        NOT NULL,  -- the log key that signed it
    key_id           text        NOT NULL,  -- 8 hex digits
    compact_range    bytea[]     NOT NULL,  -- of [0, tree_size): lets an export prove completeness
    consistency_from bigint,                -- tree_size of the checkpoint before, if any
    consistency_proof bytea[],              -- from that one to this one (verified before signing)
    signed_at        timestamptz NOT NULL DEFAULT now(),
    published_offset bigint,                -- where it went on the checkpoints topic
    PRIMARY KEY (topic, kafka_partition, tree_size)
);

-- External anchors of checkpoints: RFC 3161 tokens and witness cosignatures.
CREATE TABLE checkpoint_anchors (
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    tree_size       bigint      NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('rfc3161', 'cosignature')),
    authority       text        NOT NULL,  -- TSA URL or witness key name
    token           bytea       NOT NULL,  -- DER TimeStampResp, or the cosignature line (UTF-8)
    anchored_at     timestamptz NOT NULL,  -- genTime, or the cosignature's timestamp
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, tree_size, kind, authority),
    FOREIGN KEY (topic, kafka_partition, tree_size) REFERENCES checkpoints
);
