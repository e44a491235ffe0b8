"""``protocolo report``: the compliance report of a period, from verified events."""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from protocolo.api.document_jobs import DocumentOrder, Maker, OrderRefused
from protocolo.attestation.compliance_report import compliance_report
from protocolo.attestation.config import AttestationSettings
from protocolo.attestation.export_verify import ExportTrust, verify_export
from protocolo.attestation.export_writer import ExportRequest, ExportResult
from protocolo.attestation.log_key import SigningKeyError, load_log_key
from protocolo.attestation.regulator_documents import record_report, reported_protocols
from protocolo.attestation.report_render import FORMATS, render
from protocolo.cli import CommandError
from protocolo.cli.export import check_period, check_regulator, make_export, moment
from protocolo.evidence.checkpoint import log_origin
from protocolo.runtime import Runtime


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "report", help="the compliance report of a period (from verified events, with evidence)",
        description="Make the period's audit export (next to the report, FILE.export/), verify it "
        "with the log's keys, and compute per service type, channel and policy profile each "
        "rule's count, rate and the protocol numbers that broke it, from the verified events "
        "only (never a view). HTML and PDF carry a chart drawn on the server.")
    p.add_argument("--from", dest="period_from", type=moment, required=True, metavar="T1")
    p.add_argument("--to", dest="period_to", type=moment, required=True, metavar="T2")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--format", choices=FORMATS, default="html")
    p.add_argument("--regulator", default="compliance-report", metavar="NAME",
                   help="for whom (the export it is computed from is made for them)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_period(args.period_from, args.period_to)
    check_regulator(args.regulator)
    out = Path(args.out)
    evidence = out.with_name(out.name + ".export")
    if out.exists() or evidence.exists():
        raise CommandError(f"--out {out} (or {evidence}) already exists: give a new name")
    rt = Runtime.start(need_kafka=False)
    import getpass

    result, _document = make_report(rt, args.period_from, args.period_to, out, args.format, args.regulator,
                                    getpass.getuser())
    print(f"{out}: compliance report ({args.format}) of {result.records:,} verified records; "
          f"evidence: {evidence} (export {result.export_id})")
    return 0


def make_report(rt: Runtime, period_from: datetime, period_to: datetime, out: Path, report_format: str,
                regulator: str, made_by: str, progress: Any = None) -> tuple[ExportResult, str]:
    """Make the period's export beside ``out``, verify it with the log's keys, write the
    report from its verified records only, and record both for the regulator (so its users
    find them, and may pull the proof bundles of the contacts the report names).
    Returns the export and the report's document id."""
    evidence = out.with_name(out.name + ".export")
    result = make_export(rt, ExportRequest(period_from, period_to, regulator, made_by), evidence, progress)
    attestation = AttestationSettings.from_env()
    try:
        key = load_log_key(rt.settings, attestation.deployment)
    except SigningKeyError as exc:
        raise CommandError(str(exc)) from None
    vkeys = tuple(key.vkey(log_origin(attestation.deployment, rt.settings.topic, p["partition"]))
                  for p in result.partitions)
    report = verify_export(evidence, ExportTrust(vkeys))
    if not report.ok:
        raise CommandError(f"the period's export does not verify ({report.reason}); run `protocolo verify`")
    figures = compliance_report(evidence)
    data = render(figures, report_format)
    tmp = out.with_name(out.name + ".partial")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except OSError as exc:
        raise CommandError(f"--out {out}: {exc.strerror or exc}") from None
    with rt.connect(autocommit=True) as conn:  # findable by the regulator's users
        document = record_report(conn, out, report_format, result.export_id, regulator, made_by,
                                 reported_protocols(figures))
    return result, document


def document_maker(rt: Runtime) -> Maker:
    """What the console's "make an export / a report" runs: the same code as the commands,
    written under ``$PROTOCOLO_HOME/exports/``; a refusal is worded, never a traceback."""

    def make(order: DocumentOrder, say: Callable[[str], None]) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = rt.settings.home / "exports"
        folder.mkdir(parents=True, exist_ok=True)

        def progress(partition: int, done: int, total: int) -> None:
            say(f"partition {partition}: {done:,} / {total:,}")

        request = ExportRequest(order.period_from, order.period_to, order.regulator, order.requested_by)
        try:
            if order.kind == "export":
                out = folder / f"{order.regulator}-{stamp}-{secrets.token_hex(3)}"
                result = make_export(rt, request, out, progress)
            else:
                out = folder / f"{order.regulator}-{stamp}-{secrets.token_hex(3)}-report.html"
                result, _document = make_report(rt, order.period_from, order.period_to, out, "html",
                                                order.regulator, order.requested_by, progress)
        except CommandError as exc:
            raise OrderRefused(str(exc)) from None
        say(f"verified: {result.records:,} records, manifest SHA-256 {result.manifest_sha256}")
        return f"{order.kind} for {order.regulator}: export {result.export_id}, {result.records:,} records"

    return make
