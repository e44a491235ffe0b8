"""``protocolo export``: a regulator's audit export of a period (docs/export-format.md)."""

from __future__ import annotations

import argparse
import hashlib
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from protocolo.attestation.anchoring import anchorers_from
from protocolo.attestation.checkpointer import CheckpointRefused
from protocolo.attestation.config import AttestationSettings
from protocolo.attestation.export_period import period_checkpoints
from protocolo.attestation.export_personal import revealed_customers
from protocolo.attestation.export_verify import ExportTrust, verify_export
from protocolo.attestation.export_writer import (
    ChainLink,
    ExportContext,
    ExportFilters,
    ExportNotPossible,
    ExportRequest,
    ExportResult,
    export_id_of,
    write_export,
)
from protocolo.attestation.log_key import SigningKeyError, load_log_key
from protocolo.attestation.regulator_documents import record_export
from protocolo.cli import CommandError
from protocolo.cli.evidence import tool_name
from protocolo.core.errors import EventRejected
from protocolo.core.protocol_number import normalise_protocol_number
from protocolo.evidence.export import manifest_note_text
from protocolo.runtime import Runtime


def moment(text: str) -> datetime:
    """An argparse ``type``: ISO 8601 date or date-time; a naive one is UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date or time (e.g. 2026-03-01 or 2026-03-01T12:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "export", help="write a regulator's audit export of a period (verifiable offline)",
        description="Write every ledger record of the period, per partition, between two signed "
        "checkpoints (the newest at or before --from, the first at or after --to, signed now "
        "when none exists yet), with the completeness proof, a signed manifest chained to the "
        "previous export for the same regulator, JSON Lines and CSV renderings and a README. "
        "Filters make a documented subset (each record with its inclusion proof). Check it "
        "with `protocolo verify-export DIR --vkey ...`.")
    p.add_argument("--from", dest="period_from", type=moment, required=True, metavar="T1")
    p.add_argument("--to", dest="period_to", type=moment, required=True, metavar="T2")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to create (must not exist)")
    p.add_argument("--regulator", default="unspecified", metavar="NAME",
                   help="for whom (e.g. anatel, senacon, procon-sp); each regulator has its own chain")
    p.add_argument("--requested-by", metavar="WHO", help="who asked (default: the OS user)")
    p.add_argument("--service-type", metavar="TYPE", help="subset: contacts of this service type")
    p.add_argument("--channel", metavar="CHANNEL", help="subset: contacts on this channel")
    p.add_argument("--protocol", metavar="N", help="subset: one contact")
    p.add_argument("--reveal", action="store_true", help="include the customers' personal data in clear")
    p.add_argument("--legal-basis", metavar="TEXT", help="why (required with --reveal; recorded in "
                   "the manifest and on the ledger as an access)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--workers", type=_workers, default=1, metavar="N",
                   help="write N partitions side by side, one process each (default 1; the "
                   "export's bytes are the same)")
    p.set_defaults(func=run)


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers must be a whole number of processes, got {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"--workers must be between 1 and 64, got {value}")
    return value


def _request(args: argparse.Namespace) -> ExportRequest:
    check_period(args.period_from, args.period_to)
    if args.reveal and not (args.legal_basis or "").strip():
        raise CommandError("--reveal needs --legal-basis TEXT (recorded in the manifest and on the ledger)")
    if args.legal_basis and not args.reveal:
        raise CommandError("--legal-basis goes with --reveal (without it personal data stays sealed)")
    check_regulator(args.regulator)
    try:
        protocol = normalise_protocol_number(args.protocol, "--protocol") if args.protocol else None
    except EventRejected as exc:
        raise CommandError(str(exc)) from None
    import getpass

    return ExportRequest(args.period_from, args.period_to, args.regulator.strip(),
                         (args.requested_by or getpass.getuser()).strip(),
                         args.legal_basis.strip() if args.reveal else None, bool(args.reveal),
                         ExportFilters(args.service_type, args.channel, protocol))


def check_period(start: datetime, end: datetime) -> None:
    """``--from``/``--to`` name a period that has ended (export and report alike)."""
    if end < start:
        raise CommandError(f"--to {end.isoformat()} is before --from {start.isoformat()}")
    if end > datetime.now(UTC):
        raise CommandError(f"--to {end.isoformat()} is in the future: a period must have ended")


def check_regulator(name: str) -> None:
    """The name regulator users are tied to (``protocolo user add --regulator``)."""
    from protocolo.api.identities import check_regulator_name

    try:
        check_regulator_name(name)
    except EventRejected as exc:
        raise CommandError(f"--regulator {name!r}: {exc.detail}") from None


def _link(conn: psycopg.Connection[Any], export_id: str, regulator: str) -> tuple[ChainLink, bytes | None]:
    row = conn.execute("SELECT created_at, previous_sha256, manifest_tsr FROM exports"
                       " WHERE export_id = %s", (export_id,)).fetchone()
    if row is not None:  # the same export again: same time, same link, same bytes
        before = conn.execute("SELECT export_id FROM exports WHERE manifest_sha256 = %s",
                              (row[1],)).fetchone() if row[1] else None
        return ChainLink(row[0], row[1], None if before is None else before[0]), \
            None if row[2] is None else bytes(row[2])
    last = conn.execute("SELECT export_id, manifest_sha256 FROM exports WHERE regulator = %s"
                        " ORDER BY created_at DESC, recorded_at DESC LIMIT 1", (regulator,)).fetchone()
    now = datetime.now(UTC).replace(microsecond=0)
    return ChainLink(now, None if last is None else last[1], None if last is None else last[0]), None


def _progress(quiet: bool) -> Any:
    if quiet:
        return None

    def show(partition: int, done: int, total: int) -> None:
        print(f"partition {partition}: {done:,} of {total:,} leaves", file=sys.stderr)

    return show


def run(args: argparse.Namespace) -> int:
    request = _request(args)
    out = Path(args.out)
    if out.exists():
        raise CommandError(f"--out {out} already exists: give a new directory")
    rt = Runtime.start(need_kafka=request.reveal)
    result = make_export(rt, request, out, _progress(args.quiet), workers=args.workers)
    print(f"{out}: export {result.export_id}, {result.records:,} records in "
          f"{len(result.partitions)} partitions; self-check with the log keys: VALID")
    print(f"manifest SHA-256 {result.manifest_sha256}; previous "
          f"{result.previous_sha256 or '(none: first export for ' + request.regulator + ')'}")
    print(f"verify offline: protocolo verify-export {out} --vkey <published log key> ...", file=sys.stderr)
    return 0


def make_export(rt: Runtime, request: ExportRequest, out: Path, progress: Any = None,
                workers: int = 1) -> ExportResult:
    """Write the export (checkpoints signed on the spot as needed), record it in the chain,
    and check it with the log's own verifier keys before it is handed out (also the demo's)."""
    attestation = AttestationSettings.from_env()
    try:
        key = load_log_key(rt.settings, attestation.deployment)
    except SigningKeyError as exc:
        raise CommandError(str(exc)) from None
    chain = attestation.tsa_chain.read_bytes() if attestation.tsa_chain else None
    context = ExportContext(attestation.deployment, rt.settings.topic, key, tool_name(), chain)
    with rt.connect(autocommit=True) as conn:
        try:
            periods = period_checkpoints(conn, key, rt.settings.topic, attestation.deployment,
                                         request.period_from, request.period_to,
                                         anchorers_from(attestation))
        except CheckpointRefused as exc:
            raise CommandError(f"{exc}; run `protocolo verify`") from None
        export_id = export_id_of(context, request, periods)
        link, token = _link(conn, export_id, request.regulator)
        extra: dict[str, bytes] = {}
        if request.reveal:  # recorded before any personal data is written out
            _record_access(rt, export_id, request)
            extra = revealed_customers(conn, rt.sealer(), context.topic, periods, request)
        try:
            result = write_export(conn, out, context, request, periods, export_id, link, progress, extra,
                                  workers)
        except ExportNotPossible as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:  # nothing is left behind: write_export removes its partial directory
            raise CommandError(f"--out {out}: {exc.strerror or exc}") from None
        token = _stamp(result, attestation, token)
        report = verify_export(out, ExportTrust(vkeys=tuple(key.vkey(p["origin"]) for p in result.partitions)))
        if not report.ok:  # never handed out, never in the chain
            import shutil

            shutil.rmtree(out, ignore_errors=True)
            raise CommandError(f"the export written does not verify ({report.reason}): {report.render()}")
        _record(conn, result, request, token)
        record_export(conn, result.export_id, request.regulator, out, request.requested_by)
    return result


def _stamp(result: ExportResult, attestation: AttestationSettings, token: bytes | None) -> bytes | None:
    if attestation.tsa_url is None or attestation.tsa_chain is None:
        return None
    text = manifest_note_text((result.directory / "manifest.json").read_bytes()).encode()
    if token is None:
        from protocolo.evidence.timestamp import TimestampError, request_timestamp

        try:
            token = request_timestamp(attestation.tsa_url, text).der
        except TimestampError as exc:
            print(f"protocolo: the manifest was not timestamped: {exc}", file=sys.stderr)
            return None
    (result.directory / "manifest.tsr").write_bytes(token)
    (result.directory / "manifest.chain.pem").write_bytes(attestation.tsa_chain.read_bytes())
    return token


def _record(conn: psycopg.Connection[Any], result: ExportResult, request: ExportRequest,
            token: bytes | None) -> None:
    manifest = (result.directory / "manifest.json").read_bytes()
    conn.execute(
        "INSERT INTO exports (export_id, regulator, requested_by, period_from, period_to, created_at,"
        " previous_sha256, manifest_sha256, manifest, manifest_note, manifest_tsr, records)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (export_id) DO NOTHING",
        (result.export_id, request.regulator, request.requested_by, request.period_from,
         request.period_to, _created_at(manifest), result.previous_sha256,
         hashlib.sha256(manifest).hexdigest(), manifest,
         (result.directory / "manifest.sig").read_bytes(), token, result.records))


def _created_at(manifest: bytes) -> datetime:
    import json

    return datetime.fromisoformat(json.loads(manifest)["created"]["at"])


def _record_access(rt: Runtime, export_id: str, request: ExportRequest) -> None:
    """Personal data left the ledger: that is an access, recorded on the ledger itself."""
    import uuid

    with rt.publisher("protocolo-export") as publisher:
        publisher.publish("AccessRecorded", {
            "access_id": str(uuid.uuid4()), "actor": request.requested_by, "role": "COMPLIANCE",
            "action": "EXPORT_DOWNLOAD", "subject_ref": None,
            "target": f"export {export_id} for {request.regulator} (personal data revealed)",
            "purpose": request.legal_basis or "", "source_address": None})
