"""Verifying an audit export offline (docs/export-format.md §7): the first failure, named.

Nothing is fetched and nothing of the ledger is read: the directory and what the person
verifying trusts (pinned log keys or a tlog-policy, TSA roots, the previous export they
hold). The cryptographic checks are :mod:`protocolo.evidence.export` (standard library and
``cryptography``); this module reads the files and the Avro container (fastavro) and
re-derives every rendering line from the record's value bytes and the shipped schema.

Verdicts: ``VALID`` (everything checked under pinned keys), ``INVALID`` with the first
failure's reason and where, ``UNPINNED`` (everything checks, but only against the
export's own copies of the keys: not evidence until compared with the published ones).
Any malformed input is a named failure, never an exception.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from fastavro import parse_schema, reader
from fastavro.schema import to_parsing_canonical_form

from protocolo.attestation.export_rendering import (
    RECORD_SCHEMA,
    UndecodableValue,
    canonical_json,
    csv_header,
    csv_line,
    decode_event,
    event_json,
    json_line,
    value_fingerprint,
)
from protocolo.evidence.bundle import avro_fingerprint
from protocolo.evidence.checkpoint import log_origin
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.export import (
    FORMAT,
    MANIFEST,
    MANIFEST_SIGNATURE,
    SUMS,
    ExportFailure,
    Head,
    PartitionLeaves,
    check_consistency,
    check_manifest_signature,
    export_sync_marker,
    open_head,
)
from protocolo.evidence.keys import verifier_from_key
from protocolo.evidence.note import SIG_ED25519, VerifierKey
from protocolo.evidence.policy import Policy, PolicyLog, PolicyWitness, parse_policy

RECORD_CANONICAL = to_parsing_canonical_form(RECORD_SCHEMA)

#: Files of the export not listed in the manifest's ``files`` (they are made after it).
UNLISTED = frozenset({MANIFEST, MANIFEST_SIGNATURE, "manifest.tsr", "manifest.chain.pem"})


@dataclass(frozen=True)
class ExportTrust:
    """What the person verifying brings: never taken from the export itself."""

    vkeys: tuple[str, ...] = ()
    policies: tuple[bytes, ...] = ()
    tsa_roots: tuple[bytes, ...] = ()
    previous: Path | None = None  # the previous export of the chain, as they received it


@dataclass
class ExportReport:
    verdict: str = "INVALID"
    failure: ExportFailure | None = None
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict == "VALID"

    @property
    def reason(self) -> str | None:
        return None if self.failure is None else self.failure.reason

    def as_json(self) -> dict[str, Any]:
        failure = None if self.failure is None else {
            "reason": self.failure.reason, "where": self.failure.subject, "detail": self.failure.detail}
        return {"verdict": self.verdict, "failure": failure, "warnings": self.warnings,
                "summary": self.summary}

    def render(self) -> str:
        said = {k: _printable(str(self.summary.get(k, "?"))) for k in ("export_id", "from", "to", "records")}
        lines = [f"export {said['export_id']}: period {said['from']} .. {said['to']}, {said['records']} records"]
        for p in self.summary.get("partitions", []):  # only partitions that verified are listed
            lines.append(f"  partition {p['partition']}: leaves [{p['leaves'][0]}, {p['leaves'][1]}), "
                         f"{p['records']} records")
        lines += [f"WARNING  {_printable(w)}" for w in self.warnings]
        if self.failure is not None:
            lines.append(f"FAILED   {_printable(self.failure.subject)}: {_printable(self.failure.detail)}")
            lines.append(f"VERDICT: INVALID [{self.failure.reason}]")
        elif self.verdict == "UNPINNED":
            lines.append("VERDICT: UNPINNED (every check passed against the export's OWN keys; "
                         "pin the published keys with --vkey or --policy)")
        else:
            lines.append("VERDICT: VALID")
        return "\n".join(lines) + "\n"


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in str(text))


class _Bad(ExportFailure):
    pass


def _need(cond: bool, reason: str, subject: str, detail: str) -> None:
    if not cond:
        raise ExportFailure(reason, subject, detail)


def verify_export(directory: Path, trust: ExportTrust) -> ExportReport:
    """Verify the export in ``directory``; never raises for a bad export, reports instead."""
    report = ExportReport()
    try:
        pinned = _verify(directory, trust, report)
    except EvidenceError as exc:  # a pinned key or policy that does not parse
        report.failure = ExportFailure(f"trust-{exc.reason}", "trust", exc.detail)
        return report
    except ExportFailure as failure:
        report.failure = failure
        return report
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        report.failure = ExportFailure("export-malformed", str(directory),
                                       f"{type(exc).__name__}: {exc}")
        return report
    report.verdict = "VALID" if pinned else "UNPINNED"
    return report


def _read(directory: Path, path: str) -> bytes:
    target = directory / path
    if not target.is_file():
        raise ExportFailure("file-missing", path, "the file is not in the export")
    return target.read_bytes()


def _manifest(directory: Path) -> tuple[bytes, dict[str, Any]]:
    data = _read(directory, MANIFEST)
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ExportFailure("manifest-malformed", MANIFEST, f"not JSON: {exc}") from None
    _need(isinstance(manifest, dict) and manifest.get("format") == FORMAT, "manifest-malformed",
          MANIFEST, f"not a {FORMAT} manifest")
    for name, kind in (("export_id", str), ("log", dict), ("period", dict), ("partitions", list),
                       ("files", list), ("schemas", list), ("previous", dict), ("request", dict)):
        _need(isinstance(manifest.get(name), kind), "manifest-malformed", MANIFEST,
              f"field {name!r} missing or not a {kind.__name__}")
    return data, manifest


def _policy(directory: Path, trust: ExportTrust, manifest: dict[str, Any]) -> tuple[Policy, bool]:
    if trust.policies:
        policies = [parse_policy(p) for p in trust.policies]
        merged = tuple(log for p in policies for log in p.logs)
        known = {k: w for p in policies for k, w in p.witnesses.items()}
        return Policy(merged, known, policies[0].groups, policies[0].quorum), True
    vkeys = list(trust.vkeys)
    pinned = bool(vkeys)
    if not pinned:
        vkeys = [_read(directory, f"keys/log-p{p['partition']}.vkey").decode().strip()
                 for p in manifest["partitions"]]
    return policy_of_keys(tuple(vkeys))[0], pinned


def policy_of_keys(vkeys: tuple[str, ...]) -> tuple[Policy, bool]:
    """A policy of the given verifier keys: Ed25519 ones are logs, others witnesses; no quorum."""
    logs: list[PolicyLog] = []
    witnesses: dict[str, PolicyWitness] = {}
    for vkey in vkeys:
        key = VerifierKey.parse(vkey)
        if key.type == SIG_ED25519:
            logs.append(PolicyLog(key, verifier_from_key(vkey)))
        else:
            witnesses[key.name] = PolicyWitness(key.name, key, verifier_from_key(vkey))
    return Policy(tuple(logs), witnesses), bool(vkeys)


def _check_files(directory: Path, manifest: dict[str, Any]) -> None:
    listed: dict[str, dict[str, Any]] = {}
    for entry in manifest["files"]:
        _need(isinstance(entry, dict) and isinstance(entry.get("path"), str), "manifest-malformed",
              MANIFEST, "a files entry has no path")
        listed[entry["path"]] = entry
    present = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    for path in present:
        _need(path in listed or path in UNLISTED, "file-unlisted", path,
              "the file is not listed in manifest.json (added after signing?)")
    for path, entry in sorted(listed.items()):
        target = directory / path
        _need(target.is_file(), "file-missing", path, "listed in manifest.json but not in the export")
        digest = hashlib.sha256()
        with open(target, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _need(target.stat().st_size == entry.get("size") and digest.hexdigest() == entry.get("sha256"),
              "file-changed", path, "size or SHA-256 differs from manifest.json")
    sums = "".join(f"{e['sha256']}  {p}\n" for p, e in sorted(listed.items()) if p != SUMS)
    _need(_read(directory, SUMS).decode("utf-8", "replace") == sums, "sums-mismatch", SUMS,
          "SHA256SUMS does not list exactly the manifest's files")


def _check_chain(manifest: dict[str, Any], trust: ExportTrust, report: ExportReport) -> None:
    link = manifest["previous"].get("manifest_sha256")
    if trust.previous is None:
        if link:
            report.warnings.append(f"this export follows the export whose manifest SHA-256 is {link}: "
                                   "give --previous DIR to check the chain")
        return
    previous = _read(trust.previous, MANIFEST)
    _need(link == hashlib.sha256(previous).hexdigest(), "chain-broken", "previous",
          f"manifest.json names previous manifest {link}, the one given hashes to "
          f"{hashlib.sha256(previous).hexdigest()}")
    try:
        before = json.loads(previous)
        regulator = before["request"]["regulator"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportFailure("chain-broken", "previous", f"unreadable previous manifest ({exc})") from None
    _need(regulator == manifest["request"].get("regulator"), "chain-broken", "previous",
          "the previous export was made for another regulator")


def _base64_lines(data: bytes, subject: str) -> list[bytes]:
    try:
        return [base64.b64decode(line, validate=True) for line in data.decode("ascii").splitlines() if line]
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ExportFailure("proof-malformed", subject, f"not base64 lines ({exc})") from None


def _schemas(directory: Path, manifest: dict[str, Any]) -> dict[bytes, tuple[str, Any]]:
    found: dict[bytes, tuple[str, Any]] = {}
    for entry in manifest["schemas"]:
        path = str(entry.get("path"))
        try:
            schema = json.loads(_read(directory, path))
            parsed = parse_schema(schema)
            fp = avro_fingerprint(to_parsing_canonical_form(schema).encode("utf-8"))
        except ExportFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - fastavro raises many types on a bad schema
            raise ExportFailure("schema-malformed", path, f"{type(exc).__name__}: {exc}") from None
        _need(fp.hex() == entry.get("fingerprint") and path == f"schemas/{fp.hex()}.avsc",
              "schema-fingerprint", path, "the schema's CRC-64-AVRO is not the one it is filed under")
        found[fp] = (str(schema.get("name", "")).rsplit(".", 1)[-1], parsed)
    return found


def _verify(directory: Path, trust: ExportTrust, report: ExportReport) -> bool:
    _need(directory.is_dir(), "not-an-export", str(directory), "not a directory")
    manifest_bytes, manifest = _manifest(directory)
    report.summary = {"export_id": manifest["export_id"], "from": manifest["period"].get("from"),
                      "to": manifest["period"].get("to"), "records": manifest.get("records"),
                      "regulator": manifest["request"].get("regulator"), "partitions": []}
    policy, pinned = _policy(directory, trust, manifest)
    deployment, topic = str(manifest["log"].get("deployment")), str(manifest["log"].get("topic"))
    origins = [log_origin(deployment, topic, int(p["partition"])) for p in manifest["partitions"]]
    check_manifest_signature(manifest_bytes, _read(directory, MANIFEST_SIGNATURE), policy, origins)
    _check_manifest_timestamp(directory, manifest_bytes, trust, report)
    _check_files(directory, manifest)
    _check_chain(manifest, trust, report)
    schemas = _schemas(directory, manifest)
    subset = bool(manifest["request"].get("subset"))
    totals: Counter[str] = Counter()
    for entry, origin in zip(manifest["partitions"], origins, strict=True):
        counts = _check_partition(directory, manifest, entry, origin, policy, schemas, subset, trust, report)
        totals.update(counts)
        report.summary["partitions"].append({"partition": entry["partition"], "leaves": entry["leaves"],
                                             "records": entry["records"]})
    _need(dict(sorted(totals.items())) == manifest.get("counts") and
          sum(totals.values()) == manifest.get("records"), "counts-mismatch", MANIFEST,
          "the record counts per event type differ from the records")
    if not pinned:
        report.warnings.append("keys NOT pinned: checked against the export's own keys/ copies")
    return pinned


def _check_manifest_timestamp(directory: Path, manifest: bytes, trust: ExportTrust,
                              report: ExportReport) -> None:
    token = directory / "manifest.tsr"
    if not token.is_file():
        return
    from protocolo.evidence.export import manifest_note_text

    _check_token(token.read_bytes(), manifest_note_text(manifest).encode(),
                 _read(directory, "manifest.chain.pem"), trust, report, "manifest.tsr")


def _check_token(token: bytes, text: bytes, chain: bytes, trust: ExportTrust,
                 report: ExportReport, subject: str) -> None:
    if not trust.tsa_roots:
        report.warnings.append(f"{subject}: RFC 3161 token not checked (give --tsa-root)")
        return
    from protocolo.evidence import timestamp

    try:
        certs = timestamp.load_certificates(chain, what="the export's TSA chain")
        roots = tuple(c for r in trust.tsa_roots for c in timestamp.load_certificates(r, what="--tsa-root"))
        timestamp.verify_timestamp(token, text, timestamp.TsaTrust(roots, certs[0], certs[1:]))
    except timestamp.TimestampError as exc:
        raise ExportFailure("timestamp", subject, str(exc)) from None


def _heads(directory: Path, entry: dict[str, Any], origin: str, policy: Policy) -> tuple[Head, Head]:
    where = f"partition {entry['partition']}"
    end_path = entry["end"].get("checkpoint")
    end = open_head(_read(directory, str(end_path)), policy, origin, str(end_path))
    start_path = entry["start"].get("checkpoint")
    start = Head.empty() if start_path is None else open_head(
        _read(directory, str(start_path)), policy, origin, str(start_path))
    _need([start.size, end.size] == entry["leaves"] == [entry["start"]["size"], entry["end"]["size"]],
          "period-mismatch", where, f"manifest says leaves {entry['leaves']}, the checkpoints "
          f"sign sizes {start.size} and {end.size}")
    proof_path = entry.get("consistency")
    proof = [] if proof_path is None else _base64_lines(_read(directory, str(proof_path)), str(proof_path))
    _need(start.size == 0 or proof_path is not None, "consistency", where, "no consistency proof")
    check_consistency(start, end, proof, where if proof_path is None else str(proof_path))
    return start, end


def _check_partition_timestamps(directory: Path, entry: dict[str, Any], trust: ExportTrust,
                                report: ExportReport) -> None:
    for side in ("start", "end"):
        note_path = entry[side].get("checkpoint")
        for stamp in entry[side].get("timestamps") or []:
            note = _read(directory, str(note_path))
            text = b"\n".join(note.split(b"\n")[:3]) + b"\n"
            _check_token(_read(directory, stamp["token"]), text, _read(directory, stamp["chain"]),
                         trust, report, stamp["token"])


def _lines(handle: TextIO) -> Iterator[str]:
    yield from handle


def _check_partition(directory: Path, manifest: dict[str, Any], entry: dict[str, Any], origin: str,
                     policy: Policy, schemas: dict[bytes, tuple[str, Any]], subset: bool,
                     trust: ExportTrust, report: ExportReport) -> Counter[str]:
    partition = int(entry["partition"])
    start, end = _heads(directory, entry, origin, policy)
    _check_partition_timestamps(directory, entry, trust, report)
    prefix_path = str(entry.get("completeness"))
    prefix = [] if subset else _base64_lines(_read(directory, prefix_path), prefix_path)
    topic = str(manifest["log"]["topic"])
    leaves = PartitionLeaves(topic, partition, start, end, prefix, subset=subset, subject=prefix_path)
    data_path = str(entry["data"])
    data_file = directory / data_path
    _need(data_file.is_file(), "file-missing", data_path, "no data.avro")
    with open(data_file, "rb") as f:
        f.seek(-16, 2)
        _need(f.read(16) == export_sync_marker(manifest["export_id"]), "sync-marker", data_path,
              "the Avro sync marker is not the one derived from the export id")
    counts: Counter[str] = Counter()
    with open(data_file, "rb") as avro, \
            open(directory / str(entry["jsonl"]), encoding="utf-8", newline="") as jsonl, \
            open(directory / str(entry["csv"]), encoding="utf-8", newline="") as csv_file:
        _need(csv_file.readline() == csv_header(), "rendering-mismatch", str(entry["csv"]),
              "line 1 (the header) differs")
        jl, cl = _lines(jsonl), _lines(csv_file)
        for number, record in enumerate(_records(avro, data_path), start=1):
            _need(record.get("topic") == topic and record.get("partition") == partition,
                  "record-misplaced", data_path, f"record {number} is from {record.get('topic')!r} "
                  f"partition {record.get('partition')}")
            leaves.add(record["offset"], record["leaf_index"], record["key"], record["value"],
                       record["inclusion_proof"])
            event = _rederive(record, schemas, data_path, number)
            counts[_count_key(record)] += 1
            _need(next(jl, None) == json_line(record, event, None if event is None else record["event"]), "rendering-mismatch", str(entry["jsonl"]),
                  f"line {number} differs from the line derived from data.avro record {number}")
            _need(next(cl, None) == csv_line(record, event), "rendering-mismatch", str(entry["csv"]),
                  f"line {number + 1} differs from the line derived from data.avro record {number}")
        leaves.finish()
        _need(next(jl, None) is None, "rendering-mismatch", str(entry["jsonl"]), "more lines than records")
        _need(next(cl, None) is None, "rendering-mismatch", str(entry["csv"]), "more lines than records")
    _need(leaves.count == entry.get("records") and dict(sorted(counts.items())) == entry.get("counts"),
          "counts-mismatch", f"partition {partition}", "the manifest's counts differ from data.avro")
    return counts


def _count_key(record: dict[str, Any]) -> str:
    if record["quarantined"] is not None:
        return "(quarantined)"
    return str(record["event_type"] or "(undecodable)")


def _records(avro: Any, path: str) -> Iterator[dict[str, Any]]:
    try:
        container = reader(avro)
        written = json.loads(container.metadata.get("avro.schema", "null"))
        _need(to_parsing_canonical_form(written) == RECORD_CANONICAL, "avro-schema", path,
              "data.avro's schema is not the export record schema")
        for record in container:
            _need(isinstance(record, dict), "avro-malformed", path, "a record is not a record")
            assert isinstance(record, dict)
            yield record
    except ExportFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - fastavro raises many types on a bad file
        raise ExportFailure("avro-malformed", path, f"not a readable Avro container ({type(exc).__name__})") from None


def _rederive(record: dict[str, Any], schemas: dict[bytes, tuple[str, Any]], path: str,
              number: int) -> Any:
    """The event decoded again from the value bytes; the record's own copy must equal it."""
    where = f"{path} record {number}"
    if record["quarantined"] is not None:
        _need(record["event"] is None and record["event_type"] is None, "event-mismatch", where,
              "a quarantined record carries a decoded event")
        return None
    fp = value_fingerprint(bytes(record["value"]))
    known = schemas.get(fp or b"")
    if known is None:
        _need(record["event"] is None and record["event_type"] is None, "schema-missing", where,
              "the value's schema is not shipped in schemas/")
        return None
    event_type, parsed = known
    try:
        event = event_json(decode_event(bytes(record["value"]), parsed))
    except UndecodableValue as exc:
        raise ExportFailure("value-undecodable", where, str(exc)) from None
    _need(record["event_type"] == event_type and record["event"] == canonical_json(event),
          "event-mismatch", where, "the decoded event differs from the one derived from the value bytes")
    return event


def pinned_from(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(v.strip() for v in values if v.strip())
