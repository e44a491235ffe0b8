"""``protocolo restore-topic`` / ``verify-restore``: rebuild a lost ledger topic from the
journal (only after the ledger verifies), and prove the new topic gives the signed roots."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from kafka import KafkaConsumer, TopicPartition

from protocolo.attestation.audit_checkpoints import LogKeys
from protocolo.attestation.audit_findings import FindingLog
from protocolo.attestation.config import AttestationSettings
from protocolo.attestation.export_verify import policy_of_keys
from protocolo.attestation.ledger_audit import audit_ledger, ledger_partitions
from protocolo.attestation.log_key import SigningKeyError, load_log_key
from protocolo.attestation.topic_restore import (
    check_restored,
    mapping_document,
    republish,
    sign_mapping,
)
from protocolo.cli import CommandError
from protocolo.evidence.checkpoint import log_origin
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.export import ExportFailure
from protocolo.evidence.note import VerifierKey
from protocolo.producers.ledger_topic import ensure_ledger_topic
from protocolo.runtime import Runtime


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "restore-topic", help="republish the journal verbatim to a (lost) topic, after verify passes",
        description="Check the ledger as `protocolo verify` does (every leaf, node and signed "
        "checkpoint, under the deployment's own log keys), then send every journalled and "
        "quarantined record again (same key, headers, value, partition, leaf order) to TOPIC, "
        "which must be missing or empty, and write the signed mapping of new offsets to old "
        "offsets and leaf indexes. Prove it with `protocolo verify-restore`.")
    p.add_argument("--to", required=True, metavar="TOPIC", dest="target")
    p.add_argument("--mapping", metavar="FILE", help="where to write the mapping "
                   "(default $PROTOCOLO_HOME/restores/<topic>-<time>.json; FILE.sig beside it)")
    p.set_defaults(func=run)
    v = sub.add_parser(
        "verify-restore", help="prove a restored topic reproduces the signed Merkle roots",
        description="Read the restored topic with a raw consumer, recompute every leaf with the "
        "original topic name and offset from the signed mapping, and compare the roots with each "
        "partition's signed checkpoint, under pinned keys. Exit 0 when they all match, 1 otherwise.")
    v.add_argument("--mapping", required=True, metavar="FILE")
    v.add_argument("--vkey", action="append", default=[], metavar="KEY", required=True)
    v.set_defaults(func=run_verify)


def _empty_or_missing(bootstrap: str, topic: str) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        if tps and any(int(v) > 0 for v in consumer.end_offsets(tps).values()):
            raise CommandError(f"--to {topic}: the topic exists and holds records; restore into a "
                               "missing or empty topic")
    finally:
        consumer.close()


def run(args: argparse.Namespace) -> int:
    rt = Runtime.start()
    attestation = AttestationSettings.from_env()
    try:
        key = load_log_key(rt.settings, attestation.deployment)
    except SigningKeyError as exc:
        raise CommandError(str(exc)) from None
    source = rt.settings.topic
    with rt.connect() as conn:
        partitions = ledger_partitions(conn, source)
        conn.rollback()
        keys = LogKeys([VerifierKey.parse(key.vkey(log_origin(attestation.deployment, source, p)))
                        for p in partitions])
        findings = FindingLog()
        audit_ledger(conn, source, keys, findings, partitions)
        if findings.total:
            raise CommandError(f"the ledger does not verify ({findings.total} differences): nothing "
                               "restored; run `protocolo verify` to see them")
    _empty_or_missing(rt.kafka_bootstrap, args.target)
    ensure_ledger_topic(rt.kafka_bootstrap, args.target, max(partitions, default=0) + 1)
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(rt.database_url, autocommit=True) as conn:
        mappings = republish(conn, rt.kafka_bootstrap, source, args.target, partitions,
                             lambda p, n: print(f"partition {p}: {n:,} records republished", file=sys.stderr))
        document = mapping_document(conn, attestation.deployment, source, args.target, mappings, now.isoformat())
    path = Path(args.mapping) if args.mapping else \
        rt.settings.home / "restores" / f"{args.target}-{now:%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    lowest = log_origin(attestation.deployment, source, min(partitions, default=0))
    path.write_bytes(document)
    Path(f"{path}.sig").write_bytes(sign_mapping(document, key.signer(lowest)))
    total = sum(m.leaves for m in mappings)
    print(f"{args.target}: {total:,} records restored in {len(mappings)} partitions; mapping {path} "
          f"(signed: {path}.sig)")
    print(f"prove it: protocolo verify-restore --mapping {path} --vkey <published log key> ...", file=sys.stderr)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    path = Path(args.mapping)
    try:
        mapping, signature = path.read_bytes(), Path(f"{path}.sig").read_bytes()
    except OSError as exc:
        raise CommandError(f"--mapping {path}: {exc.strerror or exc} (FILE and FILE.sig are needed)") from None
    try:
        policy, _ = policy_of_keys(tuple(v.strip() for v in args.vkey))
    except EvidenceError as exc:
        raise CommandError(f"--vkey: {exc.detail}") from None
    rt = Runtime.start(need_kafka=True)
    import json

    try:
        doc = json.loads(mapping)
        deployment, source = str(doc["deployment"]), str(doc["source_topic"])
        result = check_restored(mapping, signature, policy, rt.kafka_bootstrap,
                                lambda p: log_origin(deployment, source, p))
    except ExportFailure as failure:
        print(f"FAILED {failure.subject}: {failure.detail}\nVERDICT: INVALID [{failure.reason}]")
        return 1
    except (ValueError, KeyError, TypeError) as exc:
        print(f"FAILED {path}: not a restore mapping ({type(exc).__name__})\nVERDICT: INVALID [mapping-malformed]")
        return 1
    for part in result.partitions:
        print(f"partition {part['partition']}: {part['leaves']:,} leaves; root at size "
              f"{part['checkpoint_size']:,} = the signed checkpoint's")
    print("VERDICT: VALID (the restored topic reproduces the signed Merkle roots)")
    return 0

