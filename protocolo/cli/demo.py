"""``protocolo demo``: the main job on the embedded default.

Brings the stack up if needed, simulates a call-centre day, publishes it, projects it,
runs the retention sweeper on the simulated clock, projects again, then prints summary
counts and the timeline of one sample contact; finally signs a checkpoint of every
partition, writes the sample contact's proof-of-service bundle and verifies it offline.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from datetime import UTC, datetime

from protocolo.attestation.anchoring import anchor_checkpoints, anchorers_from
from protocolo.attestation.audit_checkpoints import LogKeys
from protocolo.attestation.audit_findings import FindingLog
from protocolo.attestation.audit_index import audit_index
from protocolo.attestation.audit_payloads import audit_payloads
from protocolo.attestation.audit_views import audit_views
from protocolo.attestation.bundle_customer import write_customer_bundle
from protocolo.attestation.bundle_writer import BundleNotPossible, BundleRequest, write_bundle
from protocolo.attestation.checkpointer import checkpoint_partitions
from protocolo.attestation.config import AttestationSettings
from protocolo.attestation.ledger_audit import audit_ledger, ledger_partitions
from protocolo.attestation.log_key import load_log_key
from protocolo.attestation.pinned_log_keys import configured_log_keys
from protocolo.attestation.publication import KafkaCheckpointPublisher
from protocolo.attestation.verified_read import VERIFIED, verify_contact
from protocolo.cli import CommandError, bounded_int
from protocolo.cli import history as history_cli
from protocolo.cli.evidence import customer_ref, writer_context
from protocolo.cli.project import ProgressPrinter
from protocolo.consumers.projector import Projector
from protocolo.evidence.bundle import BundleTrust, Expected, verify_bundle
from protocolo.evidence.checkpoint import log_origin
from protocolo.evidence.note import VerifierKey
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.retention import sweep
from protocolo.producers.simulator import CallCentreDay, chunks
from protocolo.projections.history import timelines
from protocolo.runtime import Runtime, redact_url
from protocolo.schemas.catalogue import SchemaCatalogue

SUMMARY = (
    ("contacts in the ledger", "SELECT count(*) FROM interactions WHERE opened_at IS NOT NULL"),
    ("events journaled", "SELECT count(*) FROM journal"),
    ("records quarantined", "SELECT count(*) FROM quarantine"),
    ("protocol number not told at the start", "SELECT count(*) FROM interaction_compliance WHERE NOT protocol_disclosed_at_start"),
    ("protocol not confirmed by SMS/e-mail within 24 h", "SELECT count(*) FROM interaction_compliance WHERE NOT protocol_confirmed_in_time"),
    ("recordings kept", "SELECT count(*) FROM recordings WHERE status = 'retained'"),
    ("recordings deleted after retention", "SELECT count(*) FROM recording_deletion_status WHERE reason = 'RETENTION_EXPIRED' AND NOT before_retention_end"),
    ("recordings past retention kept by a legal hold",
     "SELECT count(*) FROM recordings r WHERE r.status = 'retained' AND r.retain_until < now()"
     " AND EXISTS (SELECT 1 FROM legal_holds h WHERE h.protocol_number = r.protocol_number AND h.released_at IS NULL)"),
    ("deletions breaking a rule (early without two-person approval, or under hold)", "SELECT count(*) FROM recording_deletion_status WHERE early_without_approval OR under_legal_hold"),
    ("retrieval requests", "SELECT count(*) FROM retrieval_requests"),
    ("  ... made without a protocol number (by CPF)", "SELECT count(*) FROM retrieval_requests WHERE protocol_number IS NULL"),
    ("  ... fulfilled within the deadline", "SELECT count(*) FROM retrieval_request_status WHERE fulfilled_in_time"),
    ("  ... fulfilled late", "SELECT count(*) FROM retrieval_request_status WHERE fulfilled_in_time = false"),
    ("  ... rejected", "SELECT count(*) FROM retrieval_requests WHERE status = 'rejected'"),
    ("  ... open and overdue", "SELECT count(*) FROM retrieval_request_status WHERE overdue"),
    ("legal holds placed (active)", "SELECT count(*) || ' (' || count(*) FILTER (WHERE released_at IS NULL) || ')' FROM legal_holds"),
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo",
        help="simulate a call-centre day end to end on the embedded stack (the main job)",
        description="Start the embedded stack if needed, publish a simulated day of contacts, "
        "project it, apply retention on the simulated clock and print what the ledger shows.",
    )
    p.add_argument("--contacts", type=bounded_int(1, 1_000_000), default=2000,
                   help="contacts in the simulated day, 1 to 1,000,000 (default 2000)")
    p.add_argument("--seed", type=bounded_int(0, 2**63 - 1), default=None, help="random seed (default: time-based)")
    p.add_argument("--days-ago", type=bounded_int(0, 3650), default=120,
                   help="how long ago the simulated day was (default 120: past the 90-day SAC retention)")
    p.set_defaults(func=run)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    demo_started = datetime.now(UTC)
    say("Starting the stack ...")
    rt = Runtime.start()
    say(f"  Kafka {rt.kafka_bootstrap}  topic {rt.settings.topic}\n  PostgreSQL {redact_url(rt.database_url)}")
    seed = args.seed if args.seed is not None else int(time.time())
    with ProtocolIssuer(rt.registry_url, block_size=500) as issuer:
        say(f"Simulating {args.contacts:,} contacts (seed {seed}) ...")
        day = CallCentreDay(issuer.issue, contacts=args.contacts, seed=seed, days_ago=args.days_ago).build()
    say(f"  {len(day.events):,} events on {day.day:%Y-%m-%d} and the weeks after")
    # One publisher and one projector for the whole job: a consumer-group join costs seconds.
    with rt.publisher("protocolo-demo") as publisher, \
            rt.projector(progress=ProgressPrinter(every=1.0)) as projector:
        sent = 0
        for chunk in chunks(day.events, 2000):
            sent += len(publisher.publish_many(chunk))
            say(f"  published {sent:,}/{len(day.events):,}")
        _project(projector, "Projecting")
        say(f"Retention sweep at {datetime.now(UTC):%Y-%m-%d} (simulated day + {args.days_ago} days) ...")
        with rt.connect() as conn:
            deleted = sweep(conn, publisher, datetime.now(UTC), progress=lambda n: say(f"  published {n:,} deletions"))
        say(f"  {len(deleted):,} recordings past retention and not on hold")
        _project(projector, "Projecting the deletions")
    with rt.connect() as conn:
        print(f"\nProtocolo demo: one call-centre day ({day.day:%Y-%m-%d}), ledger totals\n")
        for label, sql in SUMMARY:
            row = conn.execute(sql).fetchone()
            print(f"  {label:<52} {row[0] if row else '-'}")
    print("\nSample contact (its customer also asked for the recording by CPF, without the number):\n")
    sys.stdout.flush()
    sample = day.sample_protocol or day.protocols[0]  # a tiny day may hold no recorded contact
    code = history_cli.run(argparse.Namespace(protocol=sample, cpf=None, customer=None,
                                              start=None, end=None, json=False))
    verdict = _proof_of_service(rt, sample)
    verdict = (_customer_proof(rt, day.sample_cpf) if day.sample_cpf else 0) or verdict
    verdict = _verified_read(rt, sample) or verdict
    verdict = verdict or _audit_export(rt, demo_started)
    _print_console_users(rt, day.sample_cpf)
    hint = f"protocolo history --cpf {day.sample_cpf}" if day.sample_cpf else f"protocolo history --protocol {sample}"
    say(f"Done in {time.monotonic() - started:.1f} s. Try: {hint}")
    return code or verdict


def _proof_of_service(rt: Runtime, protocol: str) -> int:
    """Checkpoint every partition, write the sample contact's bundle, verify it offline with
    the log's verifier keys only; print the path and the verdict. 0 when it verifies."""
    attestation = AttestationSettings.from_env()
    key = load_log_key(rt.settings, attestation.deployment)
    topic = rt.settings.topic
    say("Signing a checkpoint of every partition ...")
    with rt.connect(autocommit=True) as conn:
        with KafkaCheckpointPublisher(rt.kafka_bootstrap, attestation.checkpoint_topic) as publisher:
            made = checkpoint_partitions(conn, key, topic, attestation.deployment, publish=publisher)
        failed = [o for o in anchor_checkpoints(conn, made, anchorers_from(attestation)) if o.error]
        say(f"  {len(made)} checkpoints signed" + (f", {len(failed)} anchors failed" if failed else ""))
    differences = _verify_ledger(rt, [key.vkey(log_origin(attestation.deployment, topic, p))
                                      for p in range(rt.settings.partitions)])
    with rt.connect(autocommit=True) as conn:
        try:
            data = write_bundle(conn, BundleRequest(protocol),
                                writer_context(attestation, topic, key, rt.sealer()),
                                datetime.now(UTC).replace(microsecond=0))
        except BundleNotPossible as exc:
            raise CommandError(f"proof-of-service bundle: {exc}") from exc
    path = rt.settings.home / "evidence" / f"{protocol}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    vkeys = tuple(key.vkey(log_origin(attestation.deployment, topic, p)) for p in range(rt.settings.partitions))
    report = verify_bundle(path.read_bytes(), BundleTrust(vkeys), Expected(protocol))
    print(f"\nProof-of-service bundle of {protocol}: {path}")
    print(f"  offline verification pinned to the deployment's log keys: {report.verdict} "
          f"({report.proven()})")
    print(f"  check it yourself: protocolo verify-evidence {path} --protocol {protocol} "
          f"--vkey '{vkeys[0]}' ...  (or the published verifier/protocolo_verify.py; README.txt "
          "says how by hand)")
    return 0 if report.ok and not differences else 1


def _customer_proof(rt: Runtime, cpf: str) -> int:
    """The sample customer's bundle (every contact and request, every partition; what
    `protocolo evidence --cpf` writes), verified offline with the log keys pinned and the
    customer's blind index expected. 0 when it verifies."""
    attestation = AttestationSettings.from_env()
    key = load_log_key(rt.settings, attestation.deployment)
    topic, partitions = rt.settings.topic, max(rt.settings.partitions, 1)
    customer = customer_ref(rt.sealer().index, "cpf", cpf)
    with rt.connect(autocommit=True) as conn:
        try:
            data = write_customer_bundle(conn, customer, BundleRequest(None),
                                         writer_context(attestation, topic, key, rt.sealer()),
                                         partitions, datetime.now(UTC).replace(microsecond=0))
        except BundleNotPossible as exc:
            raise CommandError(f"the customer's bundle: {exc}") from exc
    path = rt.settings.home / "evidence" / "customer.zip"
    path.write_bytes(data)
    vkeys = tuple(key.vkey(log_origin(attestation.deployment, topic, p)) for p in range(partitions))
    report = verify_bundle(data, BundleTrust(vkeys), Expected(customer_index=customer.value))
    print(f"\nThe sample customer's bundle (all their contacts, LGPD access): {path}")
    print(f"  offline verification pinned to the deployment's log keys: {report.verdict} "
          f"({len(report.records)} records; {report.proven()})")
    print(f"  check it yourself: protocolo verify-evidence {path} --customer-index {customer.value} "
          f"--vkey '{vkeys[0]}' ...")
    return 0 if report.ok else 1


def _verified_read(rt: Runtime, protocol: str) -> int:
    """The sample contact read as `history` reads it, now that checkpoints are signed: its
    events proved into them with the pinned log key, its views compared with the state
    folded from them. 0 when verified."""
    with rt.connect() as conn:
        [timeline] = timelines(conn, [protocol])
        result = verify_contact(conn, rt.settings.topic, timeline, configured_log_keys(rt.settings),
                                SchemaCatalogue.load())
    print(f"\nVerified read of {protocol} (what `protocolo history --protocol {protocol}` checks):")
    print(f"  {result.summary()}")
    return 0 if result.status == VERIFIED else 1


def _audit_export(rt: Runtime, since: datetime) -> int:
    """The regulator's export of what this run put on the ledger, verified offline with the
    log's verifier keys pinned (not the export's own copies); print where it is."""
    from protocolo.attestation.export_verify import ExportTrust, verify_export
    from protocolo.attestation.export_writer import ExportRequest
    from protocolo.cli.export import make_export

    now = datetime.now(UTC)
    out = rt.settings.home / "exports" / f"demo-{now:%Y%m%dT%H%M%SZ}"
    say("Writing the audit export of this run ...")
    result = make_export(rt, ExportRequest(since, now, "demo-regulator", "protocolo-demo"), out)
    attestation = AttestationSettings.from_env()
    key = load_log_key(rt.settings, attestation.deployment)
    vkeys = tuple(key.vkey(log_origin(attestation.deployment, rt.settings.topic, p))
                  for p in range(rt.settings.partitions))
    report = verify_export(out, ExportTrust(vkeys))
    print(f"\nAudit export ({result.records:,} records, for 'demo-regulator'): {out}")
    print(f"  offline verification with the log's verifier keys: {report.verdict}")
    print(f"  check it yourself: protocolo verify-export {out} --vkey '{vkeys[0]}' ...")
    if not report.ok:
        return 1
    from protocolo.attestation.compliance_report import compliance_report
    from protocolo.attestation.regulator_documents import record_report, reported_protocols
    from protocolo.attestation.report_render import render

    figures = compliance_report(out)
    for fmt in ("html", "pdf"):
        report_file = out.parent / f"{out.name}-report.{fmt}"
        report_file.write_bytes(render(figures, fmt))
        with rt.connect(autocommit=True) as conn:  # the demo's regulator user finds both in the console
            record_report(conn, report_file, fmt, result.export_id, "demo-regulator", "protocolo-demo",
                          reported_protocols(figures))
    print(f"  compliance report from its verified events: {out.parent / out.name}-report.html (and .pdf)")
    return 0


def _verify_ledger(rt: Runtime, vkeys: list[str]) -> int:
    """What `protocolo verify` checks, with the deployment's log keys pinned: every leaf, tree
    node and signed checkpoint, the verifiable index rebuilt from the journal, every decoded
    copy and every view recomputed from the journal. The number of differences."""
    import psycopg

    findings = FindingLog()
    keys = LogKeys([VerifierKey.parse(v) for v in vkeys])
    topic = rt.settings.topic
    with psycopg.connect(rt.database_url) as conn:
        partitions = ledger_partitions(conn, topic)
        conn.rollback()
        audit_ledger(conn, topic, keys, findings, partitions)
        audit_index(conn, topic, keys, findings, partitions)
        payloads = audit_payloads(conn, topic, partitions, findings)
        views = audit_views(conn, findings)
    say(f"  protocolo verify, keys pinned: leaves, tree nodes, signed checkpoints, the verifiable index, "
        f"{payloads.rows:,} decoded copies, {len(views.tables)} views: " + (
            "no difference" if not findings.total else f"{findings.total} differences (run protocolo verify)"))
    return findings.total


def _print_console_users(rt: Runtime, sample_cpf: str | None) -> None:
    """The console's demo users, with their passwords: printed once, stored hashed."""
    import psycopg

    from protocolo.api.demo_users import create_demo_users

    subject = rt.sealer().index.cpf(sample_cpf) if sample_cpf else None
    with psycopg.connect(rt.registry_url, autocommit=True) as conn:
        users = create_demo_users(conn, subject)
    print("\nConsole users (`protocolo serve`, then http://127.0.0.1:8080/console; passwords shown once):\n")
    for u in users:
        secret = u.password if u.password is not None else "(exists: password printed by an earlier demo)"
        print(f"  {u.name:<8} {u.role.value:<11} {secret}")
    if sample_cpf:
        print(f"\n  'cliente' is the customer with CPF {sample_cpf}")


def _project(projector: Projector, title: str) -> None:
    say(f"{title} ...")
    before = dataclasses.replace(projector.stats)
    stats = projector.run(until_caught_up=True, idle_timeout_s=120)
    say(f"  {stats.journaled - before.journaled:,} events projected in {stats.batches - before.batches} batches, "
        f"{stats.quarantined - before.quarantined} quarantined")
