"""The checkpointer signs each partition's tree head, proves it consistent with the one
before, stores it and publishes it; it refuses to sign over a tampered history.

Oracles independent of the code under test: the tree roots are recomputed here from the
records a raw consumer reads off the ledger topic (RFC 6962 transcribed in
test_merkle_tree.spec_root), signatures are checked with the published verifier key only,
and the checkpoints topic is read back with a raw consumer.
"""

from __future__ import annotations

import base64
from typing import Any

import psycopg
import pytest
from helpers_flow import drain, project, start_runtime
from test_merkle_tree import publish_mixed, spec_leaf, spec_root

from protocolo.attestation.checkpointer import (
    CheckpointRefused,
    checkpoint_partitions,
    known_log_keys,
    stored_checkpoints,
)
from protocolo.attestation.log_key import LogKey
from protocolo.attestation.publication import KafkaCheckpointPublisher
from protocolo.evidence.checkpoint import open_checkpoint
from protocolo.evidence.errors import NoteError
from protocolo.evidence.keys import verifier_from_key
from protocolo.evidence.note import Ed25519NoteSigner, sign_note
from protocolo.evidence.proof import verify_consistency

DEPLOYMENT = "acme-test"


def roots_from_topic(rt: Any) -> dict[int, list[bytes]]:
    leaves: dict[int, list[bytes]] = {}
    for r in drain(rt.kafka_bootstrap, rt.settings.topic):
        leaves.setdefault(r.partition, []).append(
            spec_leaf(rt.settings.topic, r.partition, r.offset, r.key, r.value or b""))
    return leaves


def origin(rt: Any, partition: int) -> str:
    return f"protocolo/{DEPLOYMENT}/{rt.settings.topic}/{partition}"


def test_checkpoints_are_the_rfc_roots_consistent_signed_and_published(settings) -> None:
    rt = start_runtime(settings)
    key = LogKey.generate("protocolo/acme-test")
    ckpt_topic = f"{settings.topic}-checkpoints"
    publish_mixed(rt, 24)
    project(rt)
    with rt.connect(autocommit=True) as conn, \
            KafkaCheckpointPublisher(rt.kafka_bootstrap, ckpt_topic) as publisher:
        first = checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT, publish=publisher)
        assert checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT, publish=publisher) == []
        publish_mixed(rt, 40)
        project(rt)
        second = checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT, publish=publisher)
        history = {p: stored_checkpoints(conn, settings.topic, p) for p in range(4)}

    leaves = roots_from_topic(rt)
    assert {c.partition for c in first} <= set(leaves)
    for partition, partition_leaves in leaves.items():  # every partition's newest = its whole tree
        assert history[partition][-1].size == len(partition_leaves)
    assert second, "the second round signed the partitions that grew"
    for c in first + second:
        # verifiable with nothing but the published verifier key of its origin
        vkey = verifier_from_key(key.vkey(origin(rt, c.partition)))
        signed = open_checkpoint(c.note, [vkey], origin=origin(rt, c.partition), log_key=vkey)
        assert signed.checkpoint.size == c.size
        assert signed.checkpoint.root == spec_root(leaves[c.partition][: c.size])
        assert c.published_offset is not None
    for c in second:
        before = next(f for f in first if f.partition == c.partition)
        assert before.size < c.size
        assert c.size == len(leaves[c.partition]) > before.size
        assert c.consistency_from == before.size
        verify_consistency(before.size, c.size, before.root, c.root, list(c.consistency_proof))
        assert [h.size for h in history[c.partition]] == [before.size, c.size]  # newest last

    # the checkpoints topic holds exactly the stored notes, keyed by origin, in order
    on_topic = drain(rt.kafka_bootstrap, ckpt_topic, partitions=1)
    assert [(r.offset, r.key.decode(), r.value) for r in on_topic] == sorted(
        (c.published_offset, c.origin, c.note) for c in first + second)


def test_a_forged_previous_checkpoint_makes_the_checkpointer_refuse(settings) -> None:
    rt = start_runtime(settings)
    key = LogKey.generate("protocolo/acme-test")
    publish_mixed(rt, 20)
    project(rt)
    with rt.connect(autocommit=True) as conn:
        made = checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT)
        victim = made[0]
        publish_mixed(rt, 30)
        project(rt)
        # 1. the row's root edited: the note (signed) no longer says what the row says
        forged_root = bytes(32 - len(b"x")) + b"x"
        conn.execute("UPDATE checkpoints SET root_hash = %s WHERE topic = %s AND kafka_partition = %s",
                     (forged_root, settings.topic, victim.partition))
        with pytest.raises(CheckpointRefused) as refused:
            checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT, partitions=[victim.partition])
        assert refused.value.reason == "previous-forged"
        assert f"partition {victim.partition}" in str(refused.value)

        # 2. note and row forged together, re-signed by an intruder's key it registered in
        #    signing_keys: that table is not a source of trust, the configuration is
        intruder = Ed25519NoteSigner.generate(victim.origin)
        text = f"{victim.origin}\n{victim.size}\n{base64.b64encode(forged_root).decode()}\n"
        conn.execute("INSERT INTO signing_keys (key_name, key_id, vkey) VALUES (%s, %s, %s)",
                     (intruder.name, f"{intruder.key_id:08x}", str(intruder.verifier)))
        conn.execute("UPDATE checkpoints SET note = %s, key_id = %s WHERE topic = %s"
                     " AND kafka_partition = %s",
                     (sign_note(text, [intruder]).decode(), f"{intruder.key_id:08x}",
                      settings.topic, victim.partition))
        with pytest.raises(CheckpointRefused) as refused:
            checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT, partitions=[victim.partition])
        assert refused.value.reason == "previous-forged"
        rows = conn.execute("SELECT count(*) FROM checkpoints WHERE topic = %s AND kafka_partition = %s",
                            (settings.topic, victim.partition)).fetchone()
        assert rows == (1,), "nothing was signed over the forged history"
        # the other partitions are untouched and still advance
        others = [c.partition for c in made if c.partition != victim.partition]
        assert {c.partition for c in checkpoint_partitions(
            conn, key, settings.topic, DEPLOYMENT, partitions=others)} <= set(others)


def test_a_key_added_to_signing_keys_is_not_trusted_even_for_a_true_statement(settings) -> None:
    """Whoever can write the database registers a key of their own in signing_keys and
    re-signs the newest checkpoint's genuine statement with it: the checkpointer must not
    build on a checkpoint its configured keys did not sign."""
    rt = start_runtime(settings)
    key = LogKey.generate("protocolo/acme-test")
    publish_mixed(rt, 20)
    project(rt)
    with rt.connect(autocommit=True) as conn:
        victim = checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT)[0]
        publish_mixed(rt, 30)
        project(rt)
        intruder = Ed25519NoteSigner.generate(victim.origin)
        text = f"{victim.origin}\n{victim.size}\n{base64.b64encode(victim.root).decode()}\n"
        conn.execute("INSERT INTO signing_keys (key_name, key_id, vkey) VALUES (%s, %s, %s)",
                     (intruder.name, f"{intruder.key_id:08x}", str(intruder.verifier)))
        conn.execute("UPDATE checkpoints SET note = %s, key_id = %s WHERE topic = %s AND kafka_partition = %s",
                     (sign_note(text, [intruder]).decode(), f"{intruder.key_id:08x}",
                      settings.topic, victim.partition))
        with pytest.raises(CheckpointRefused) as refused:
            checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT, partitions=[victim.partition])
        assert refused.value.reason == "previous-forged"
        assert f"{intruder.key_id:08x}" in str(refused.value)
        count = conn.execute("SELECT count(*) FROM checkpoints WHERE topic = %s AND kafka_partition = %s",
                             (settings.topic, victim.partition)).fetchone()
        assert count == (1,), "nothing was signed over the intruder's checkpoint"
        # the intruder's key listed as a past key by the deployment's configuration: trusted
        trusting = key.with_past([str(intruder.verifier)])
        assert checkpoint_partitions(conn, trusting, settings.topic, DEPLOYMENT, partitions=[victim.partition])


def test_past_log_keys_come_from_the_environment_and_a_bad_one_is_named(settings, monkeypatch) -> None:
    from protocolo.attestation.log_key import ENV_PAST_LOG_VKEYS, SigningKeyError, load_log_key

    old = LogKey.generate("protocolo/acme-test")
    origins = [f"protocolo/{DEPLOYMENT}/{settings.topic}/{p}" for p in range(2)]
    monkeypatch.setenv(ENV_PAST_LOG_VKEYS, "\n".join(old.vkey(o) for o in origins))
    key = load_log_key(settings, DEPLOYMENT)
    assert [str(v) for v in key.trusted(origins[1])][1:] == [old.vkey(origins[1])]
    monkeypatch.setenv(ENV_PAST_LOG_VKEYS, "not-a-key")
    with pytest.raises(SigningKeyError, match=f"^{ENV_PAST_LOG_VKEYS}: 'not-a-key' is not a verifier key"):
        load_log_key(settings, DEPLOYMENT)


def test_a_tampered_tree_is_not_signed(settings) -> None:
    rt = start_runtime(settings)
    key = LogKey.generate("protocolo/acme-test")
    publish_mixed(rt, 20)
    project(rt)
    with rt.connect(autocommit=True) as conn:
        partition, size = conn.execute(
            "SELECT kafka_partition, tree_size FROM projector_offsets WHERE topic = %s"
            " ORDER BY tree_size DESC LIMIT 1", (settings.topic,)).fetchone()
        # the right-most perfect subtree of the tree (the last hash of its compact range)
        level = (size & -size).bit_length() - 1
        conn.execute("UPDATE merkle_nodes SET hash = sha256(hash) WHERE topic = %s AND"
                     " kafka_partition = %s AND level = %s AND node_index = %s",
                     (settings.topic, partition, level, (size >> level) - 1))
        with pytest.raises(CheckpointRefused) as refused:
            checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT, partitions=[partition])
        assert refused.value.reason == "compact-range-mismatch"


def test_key_rotation_keeps_old_checkpoints_verifiable(settings) -> None:
    rt = start_runtime(settings)
    old_key = LogKey.generate("protocolo/acme-test")
    new_key = LogKey.generate("protocolo/acme-test")
    publish_mixed(rt, 20)
    project(rt)
    with rt.connect(autocommit=True) as conn:
        before = checkpoint_partitions(conn, old_key, settings.topic, DEPLOYMENT)
        publish_mixed(rt, 20)
        project(rt)
        # the old key's verifier keys, as `protocolo keys show` printed them, configured
        # as past keys: without them the new key does not build on the old checkpoints
        with pytest.raises(CheckpointRefused, match="PROTOCOLO_PAST_LOG_VKEYS") as refused:
            checkpoint_partitions(conn, new_key, settings.topic, DEPLOYMENT)
        assert refused.value.reason == "previous-forged"
        new_key = new_key.with_past([old_key.vkey(c.origin) for c in before])
        after = checkpoint_partitions(conn, new_key, settings.topic, DEPLOYMENT)
        history = known_log_keys(conn)
    assert after and {c.partition for c in after} <= {c.partition for c in before}
    for new in after:
        old = next(c for c in before if c.partition == new.partition)
        old_vkey = verifier_from_key(old_key.vkey(old.origin))
        new_vkey = verifier_from_key(new_key.vkey(new.origin))
        assert str(old_vkey) in history and str(new_vkey) in history
        open_checkpoint(old.note, [old_vkey], log_key=old_vkey)
        open_checkpoint(new.note, [new_vkey], log_key=new_vkey)
        with pytest.raises(NoteError):
            open_checkpoint(old.note, [new_vkey], log_key=new_vkey)
        assert new.consistency_from == old.size  # the new key vouches for the old key's tree
        verify_consistency(old.size, new.size, old.root, new.root, list(new.consistency_proof))


def test_an_unchanged_tree_gets_a_new_checkpoint_only_when_forced(settings) -> None:
    rt = start_runtime(settings)
    key = LogKey.generate("protocolo/acme-test")
    publish_mixed(rt, 12)
    project(rt)
    with rt.connect(autocommit=True) as conn:
        made = checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT)
        assert checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT) == []
        forced = checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT, force=True)
        # the same statement: the stored checkpoint (Ed25519 is deterministic), plus a
        # size-0 checkpoint for a partition that has a tree but no leaf yet, if any
        assert [c for c in forced if c.size > 0] == made
        assert all(c.size == 0 for c in forced if c not in made)


def test_the_checkpointer_needs_an_autocommit_connection(settings) -> None:
    rt = start_runtime(settings)
    with psycopg.connect(rt.database_url) as conn, pytest.raises(ValueError, match="autocommit"):
        checkpoint_partitions(conn, LogKey.generate("x"), settings.topic, DEPLOYMENT)


def test_unpublished_checkpoints_are_published_later_oldest_first(settings) -> None:
    """Kafka unavailable at signing time (no publisher): the next run publishes them."""
    rt = start_runtime(settings)
    key = LogKey.generate("protocolo/acme-test")
    ckpt_topic = f"{settings.topic}-checkpoints"
    publish_mixed(rt, 12)
    project(rt)
    with rt.connect(autocommit=True) as conn:
        first = checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT)
        publish_mixed(rt, 12)
        project(rt)
        second = checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT)
        assert all(c.published_offset is None for c in first + second)
        with KafkaCheckpointPublisher(rt.kafka_bootstrap, ckpt_topic) as publisher:
            assert checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT, publish=publisher) == []
        stored = [c for p in range(4) for c in stored_checkpoints(conn, settings.topic, p)]
    on_topic = drain(rt.kafka_bootstrap, ckpt_topic, partitions=1)
    assert sorted((c.published_offset, c.note) for c in stored) == [(r.offset, r.value) for r in on_topic]
    for c in (s for s in stored if s.consistency_from):  # the older went first
        older = next(f for f in stored if f.partition == c.partition and f.size == c.consistency_from)
        assert older.published_offset is not None and c.published_offset is not None
        assert older.published_offset < c.published_offset


def test_two_checkpointers_at_once_sign_each_tree_head_once(settings) -> None:
    import threading

    rt = start_runtime(settings)
    key = LogKey.generate("protocolo/acme-test")
    publish_mixed(rt, 30)
    project(rt)
    results: list[Any] = []

    def run() -> None:
        try:
            with rt.connect(autocommit=True) as conn:
                results.append(checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT))
        except Exception as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not [r for r in results if isinstance(r, Exception)], results
    signed = [c.partition for r in results for c in r]
    assert sorted(signed) == sorted(set(signed)), "a tree head was signed twice"
    with rt.connect() as conn:
        assert conn.execute("SELECT count(*) FROM checkpoints").fetchone() == (len(signed),)


def rfc5869_hkdf_sha256(ikm: bytes, info: bytes) -> bytes:
    """RFC 5869 with an empty salt (HashLen zeros) and L = 32: one T(1) block."""
    import hashlib
    import hmac

    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_each_partition_has_its_own_derived_key_and_one_policy_names_them_all(settings) -> None:
    from protocolo.evidence.policy import parse_policy

    rt = start_runtime(settings)
    key = LogKey.generate("protocolo/acme-test")
    publish_mixed(rt, 20)
    project(rt)
    with rt.connect(autocommit=True) as conn:
        made = checkpoint_partitions(conn, key, settings.topic, DEPLOYMENT)
    origins = [origin(rt, p) for p in range(4)]
    seed = base64.b64decode(key.private_key_string().split("+", 4)[4])[1:]
    for o in origins:  # the documented derivation, recomputed from RFC 5869
        expected = Ed25519NoteSigner(o, rfc5869_hkdf_sha256(seed, b"protocolo/log-key/v1\n" + o.encode()))
        assert key.vkey(o) == str(expected.verifier)
    assert len({key.vkey(o).split("+")[2] for o in origins}) == 4, "public keys must differ"
    policy = parse_policy(("".join(f"log {key.vkey(o)}\n" for o in origins) + "quorum none\n").encode())
    for c in made:
        assert policy.verify_checkpoint(c.note, origin=c.origin).signed.checkpoint.size == c.size
        other = verifier_from_key(key.vkey(origins[(c.partition + 1) % 4]))
        with pytest.raises(NoteError):
            open_checkpoint(c.note, [other])
