"""``protocolo verify``: the auditor's command. Recompute the ledger's evidence and compare.

Read-only: it opens the ledger with :class:`~protocolo.runtime.LedgerReader` (never starts
a broker, never creates or migrates anything) and reads in one READ ONLY transaction.
What it checks and how it reports: docs/verify.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import psycopg

from protocolo.attestation.audit_checkpoints import LogKeys
from protocolo.attestation.audit_findings import KINDS, FindingLog
from protocolo.attestation.audit_index import audit_index
from protocolo.attestation.audit_kafka import KafkaUnreachable, compare_with_kafka
from protocolo.attestation.audit_payloads import audit_payloads
from protocolo.attestation.audit_views import ViewStats, audit_views
from protocolo.attestation.ledger_audit import audit_ledger, ledger_partitions
from protocolo.attestation.log_key import DEV_KEY_FILE, LogKey, SigningKeyError
from protocolo.attestation.pinned_log_keys import ENV_LOG_VKEYS, env_vkeys, parse_log_keys
from protocolo.cli import CommandError, bounded_int
from protocolo.core.config import Settings
from protocolo.core.database import require_schema
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.note import VerifierKey
from protocolo.runtime import Ledger, LedgerReader, LedgerUnreachable, redact_url

EXIT_DIFFERENCES = 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify",
        help="recompute every leaf, tree and checkpoint of the ledger and report differences",
        description="Recompute every Merkle leaf from the journal and the quarantine, rebuild each "
        "partition's tree, compare it with the stored nodes and check every stored checkpoint "
        "(signature with the pinned log key, root, consistency); decode every record again and "
        "compare it with its stored decoded copy (journal.payload); recompute every view from the "
        "journal and compare it row by row. Changes nothing. Exit status: 0 clean, "
        "1 differences found, 2 bad input, 3 ledger (or Kafka, with --against-kafka) unreachable. "
        "See docs/verify.md.",
    )
    p.add_argument("--vkey", action="append", default=[], metavar="VKEY",
                   help="pinned log verifier key of a partition's origin (C2SP vkey, <origin>+<id>+"
                   "<base64>); repeatable: one per partition, old and new after a rotation; default: "
                   f"${ENV_LOG_VKEYS} (space or comma separated), else the dev log key under PROTOCOLO_HOME")
    p.add_argument("--against-kafka", action="store_true",
                   help="also re-read the topic and compare it with the rows record by record")
    p.add_argument("--partition", type=bounded_int(0, 2**31 - 1), action="append", metavar="N",
                   help="verify only this partition (repeatable)")
    p.add_argument("--limit", type=bounded_int(1, 1_000_000), default=100, metavar="N",
                   help="findings listed per kind (all are counted); default 100")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--no-views", action="store_true",
                       help="skip recomputing the views from the journal (the leaves, trees, checkpoints "
                       "and decoded copies are still checked)")
    scope.add_argument("--views-only", action="store_true",
                       help="only recompute the views from the journal and compare them")
    p.add_argument("--no-payloads", action="store_true",
                   help="skip decoding every record again to check journal.payload and the decoded columns")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def pinned_keys(given: list[str]) -> LogKeys:
    """The log keys from --vkey, else $PROTOCOLO_LOG_VKEYS; a bad one is bad input."""
    try:
        return parse_log_keys(given, "--vkey") if given else parse_log_keys(env_vkeys(), ENV_LOG_VKEYS)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def dev_log_keys(settings: Settings, origins: list[str]) -> LogKeys:
    """Where dev keys are allowed (the embedded stack, PROTOCOLO_DEV_KEYS=1), the verifier
    keys of ``origins`` derived from the dev log key file, if the checkpointer made one
    (read only, never created)."""
    path = settings.home / DEV_KEY_FILE
    if not settings.may_invent_keys or not path.exists():
        return LogKeys([])
    try:
        key = LogKey.parse(path.read_text(), str(path))
        return LogKeys([VerifierKey.parse(key.vkey(origin)) for origin in origins])
    except (SigningKeyError, EvidenceError) as exc:
        raise CommandError(f"{path}: {exc}") from None


def _progress(partition: int, leaves: int, seconds: float) -> None:
    rate = leaves / seconds if seconds > 0 else 0.0
    print(f"protocolo verify: partition {partition}: {leaves:,} leaves ({rate:,.0f} leaves/s)",
          file=sys.stderr, flush=True)


def _index_progress(partition: int, leaves: int, seconds: float) -> None:
    rate = leaves / seconds if seconds > 0 else 0.0
    print(f"protocolo verify: index of partition {partition}: {leaves:,} leaves replayed "
          f"({rate:,.0f} leaves/s)", file=sys.stderr, flush=True)


def _ledger(reader: LedgerReader) -> Ledger:
    return next((ledger for ledger in reader.ledgers if ledger.current), reader.ledgers[0])


def run(args: argparse.Namespace) -> int:
    keys = pinned_keys(args.vkey)
    reader = LedgerReader.open(need_keys=False)
    topic = reader.settings.topic
    ledger = _ledger(reader)
    findings = FindingLog(limit=args.limit)
    checks: dict[str, Any] = {}
    started = time.monotonic()
    try:
        with psycopg.connect(ledger.url, connect_timeout=10) as conn:
            if not args.views_only:
                _ledger_checks(conn, reader, args, keys, findings, checks)
            if not args.no_views:
                checks["views"] = _views_check(conn, findings).as_dict()
    except psycopg.OperationalError as exc:
        raise LedgerUnreachable(f"the ledger at {redact_url(ledger.url)} did not answer: {exc}".strip()) from exc
    elapsed = time.monotonic() - started
    report = _report(ledger, topic, findings, args.against_kafka, elapsed)
    report["checks"] = checks
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_text(report, findings)
    return EXIT_DIFFERENCES if findings.total else 0


def _ledger_checks(conn: psycopg.Connection[Any], reader: LedgerReader, args: argparse.Namespace,
                   keys: LogKeys, findings: FindingLog, checks: dict[str, Any]) -> None:
    """Leaves, trees, checkpoints (and Kafka), then the decoded copies."""
    topic = reader.settings.topic
    ledger = _ledger(reader)
    for table in ("merkle_nodes", "checkpoints"):
        require_schema(conn, table, f"the ledger at {redact_url(ledger.url)}")
    origins = [o for (o,) in conn.execute(
        "SELECT DISTINCT origin FROM checkpoints WHERE topic = %s ORDER BY 1", (topic,))]
    conn.rollback()
    if origins and not keys.keys:
        keys = dev_log_keys(reader.settings, origins)
    if origins and not keys.keys:
        raise CommandError(f"checkpoints of {len(origins)} origin(s) are stored but no log verifier key "
                           f"is pinned: give --vkey (or set {ENV_LOG_VKEYS}) with each partition's "
                           "log verifier key (`protocolo keys show` prints them)")
    partitions = args.partition
    if partitions is None:
        partitions = ledger_partitions(conn, topic)
        conn.rollback()
    audit_ledger(conn, topic, keys, findings, partitions, progress=None if args.quiet else _progress)
    index = audit_index(conn, topic, keys, findings, partitions,
                        progress=None if args.quiet else _index_progress)
    if index["index_checkpoints"]:  # ledgers checkpointed before the index have none
        checks["index"] = index
    if args.against_kafka:
        if not reader.kafka_bootstrap:
            raise LedgerUnreachable("--against-kafka: no Kafka broker is configured "
                                    "(PROTOCOLO_KAFKA_BOOTSTRAP) or running")
        try:
            compare_with_kafka(conn, reader.kafka_bootstrap, topic, partitions, findings)
        except KafkaUnreachable as exc:
            raise LedgerUnreachable(f"--against-kafka: {exc}") from exc
    if not args.no_payloads:
        checks["payloads"] = audit_payloads(conn, topic, partitions, findings).as_dict()


def _views_check(conn: psycopg.Connection[Any], findings: FindingLog) -> ViewStats:
    try:
        return audit_views(conn, findings)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise CommandError(f"recomputing the views needs PostgreSQL's TEMP privilege on the ledger "
                           f"database ({exc.diag.message_primary}); give it, or pass --no-views") from None
    except LookupError as exc:
        raise CommandError(f"{exc}: not a Protocolo ledger, or not migrated") from None


def _report(ledger: Ledger, topic: str, findings: FindingLog, against_kafka: bool,
            elapsed: float) -> dict[str, Any]:
    leaves = sum(s.leaves for s in findings.partitions.values())
    return {
        "ledger": ledger.name,
        "topic": topic,
        "clean": findings.total == 0,
        "against_kafka": against_kafka,
        "leaves": leaves,
        "elapsed_s": round(elapsed, 3),
        "leaves_per_s": round(leaves / elapsed) if elapsed > 0 else None,
        "counts": {kind: findings.counts[kind] for kind in KINDS if findings.counts[kind]},
        "omitted": {kind: findings.counts[kind] - findings.limit for kind in KINDS
                    if findings.counts[kind] > findings.limit},
        "partitions": [findings.partitions[p].as_dict() for p in sorted(findings.partitions)],
        "findings": [f.as_dict() for f in findings.sorted()],
    }


def _print_text(report: dict[str, Any], findings: FindingLog) -> None:
    out = sys.stdout
    out.write(f"Ledger {report['ledger']}, topic {report['topic']}"
              f"{', compared with Kafka' if report['against_kafka'] else ''}\n")
    for p in sorted(findings.partitions.values(), key=lambda s: s.partition):
        root = f"root {p.root[:16]}..." if p.root else "no tree"
        kafka = f", {p.kafka_records:,} Kafka records compared" if p.kafka_records is not None else ""
        out.write(f"  partition {p.partition}: {p.leaves:,} leaves ({p.rows:,} rows, {p.quarantined:,} "
                  f"quarantined), {root}, checkpoints {p.checkpoints_verified}/{p.checkpoints} verified{kafka}\n")
    _print_checks(report["checks"])
    if findings.total == 0:
        out.write(f"OK: {_what_was_checked(report)} ({report['elapsed_s']:.1f}s)\n")
        return
    counts = ", ".join(f"{kind} {n:,}" for kind, n in report["counts"].items())
    out.write(f"DIFFERENCES FOUND: {counts}\n")
    for p in sorted(findings.partitions.values(), key=lambda s: s.partition):
        if p.first is not None:
            out.write(f"  first difference in partition {p.partition}: {p.first.describe()}\n")
    for finding in findings.sorted():
        out.write(f"  {finding.describe()}\n")
    for kind, n in report["omitted"].items():
        out.write(f"  ... and {n:,} more {kind} (raise --limit to list them)\n")


def _print_checks(checks: dict[str, Any]) -> None:
    out = sys.stdout
    payloads = checks.get("payloads")
    if payloads is not None:
        out.write(f"  decoded copies: {payloads['rows']:,} journal rows decoded again and compared "
                  f"({payloads['rows_per_s'] or 0:,} rows/s)\n")
    index = checks.get("index")
    if index and index["index_checkpoints"]:
        out.write(f"  verifiable index: {index['keys']:,} keys and {index['nodes']:,} node versions "
                  f"replayed from the rows, {index['index_checkpoints']} signed map roots compared "
                  f"({index['seconds']:.1f}s)\n")
    views = checks.get("views")
    if views is not None:
        out.write(f"  views: {views['rows']:,} rows in {len(views['tables'])} tables recomputed from "
                  f"{views['journal_rows']:,} journal rows and compared ({views['seconds']:.1f}s)\n")


def _what_was_checked(report: dict[str, Any]) -> str:
    parts = []
    if report["partitions"]:
        parts.append(f"every leaf, tree node and checkpoint verified ({report['leaves']:,} leaves)")
    if (report["checks"].get("index") or {}).get("index_checkpoints"):
        parts.append("the verifiable index rebuilt and its signed roots verified")
    if "payloads" in report["checks"]:
        parts.append("every decoded copy verified")
    if "views" in report["checks"]:
        parts.append("every view row verified")
    return "; ".join(parts) or "nothing to check"
