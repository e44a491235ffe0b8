"""Writing an audit export to a directory (docs/export-format.md), streaming.

Per partition the leaves ``[a, b)`` between the period's bounding checkpoints are read
from the journal and the quarantine together, in leaf order, through a server-side cursor,
and written as they come: ``data.avro`` (fastavro's block writer, sync marker derived from
the export id), ``records.jsonl`` and ``records.csv`` (rendered from the value bytes with the
writer schema, never from ``journal.payload``). The leaf hashes are folded on the way into
the compact range of ``[0, a)`` taken from the start checkpoint: if the result is not the
end checkpoint's root the ledger differs from what it signed and nothing is handed out.
Memory holds one block of records, whatever the period's size.

Design taken from the proof-of-service bundle (same checkpoints, anchors, signed manifest)
and from cloud audit-log digest files (AWS CloudTrail, GCP): each manifest names the
previous one's hash, per regulator, so a holder of every export sees a gap or a rewrite.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TextIO

import orjson
import psycopg
from psycopg import conninfo

from protocolo.attestation.anchoring import stored_anchors
from protocolo.attestation.checkpointer import StoredCheckpoint
from protocolo.attestation.export_avro import RecordBlocks
from protocolo.attestation.export_decoding import PlainDecoder, plain_decoder
from protocolo.attestation.export_period import PartitionPeriod
from protocolo.attestation.export_readme import export_readme
from protocolo.attestation.export_rendering import (
    UndecodableValue,
    canonical_json,
    csv_header,
    csv_line,
    decode_event,
    event_json,
    has_floats,
    json_line,
    value_fingerprint,
)
from protocolo.attestation.log_key import LogKey
from protocolo.evidence.checkpoint import log_origin
from protocolo.evidence.export import (
    FORMAT,
    MANIFEST,
    MANIFEST_SIGNATURE,
    SUMS,
    export_sync_marker,
    sign_manifest,
)
from protocolo.evidence.merkle import NODE_PREFIX, consistency_proof, fold, inclusion_proof
from protocolo.evidence.note import encode_base64
from protocolo.projections.merkle_store import node_reader
from protocolo.schemas.catalogue import SchemaCatalogue, SchemaVersion
from protocolo.schemas.codec import UnknownFingerprint

Progress = Callable[[int, int, int], None]
"""Called as ``(partition, records written, records in the partition's range)``."""


class ExportNotPossible(Exception):
    """The export cannot be written; says why (nothing is left behind)."""


@dataclass(frozen=True)
class ExportFilters:
    service_type: str | None = None
    channel: str | None = None
    protocol: str | None = None

    @property
    def subset(self) -> bool:
        return any((self.service_type, self.channel, self.protocol))

    def as_json(self) -> dict[str, str | None]:
        return {"service_type": self.service_type, "channel": self.channel, "protocol": self.protocol}


@dataclass(frozen=True)
class ExportRequest:
    period_from: datetime
    period_to: datetime
    regulator: str
    requested_by: str
    legal_basis: str | None = None
    reveal: bool = False
    filters: ExportFilters = field(default_factory=ExportFilters)


@dataclass(frozen=True)
class ExportContext:
    deployment: str
    topic: str
    log_key: LogKey
    tool: str
    tsa_chain_pem: bytes | None = None
    stamp: Callable[[bytes], bytes] | None = None  # RFC 3161 token (DER) over the given text


class _LogNames(Protocol):
    """What a partition's files need of the export's context (no key: a worker process
    writing a partition never holds the log's signing key)."""

    @property
    def deployment(self) -> str: ...

    @property
    def topic(self) -> str: ...

    @property
    def tsa_chain_pem(self) -> bytes | None: ...


@dataclass(frozen=True)
class _PartitionLog:
    deployment: str
    topic: str
    tsa_chain_pem: bytes | None


@dataclass
class ExportResult:
    export_id: str
    directory: Path
    records: int
    manifest_sha256: str
    previous_sha256: str | None
    partitions: list[dict[str, Any]]


def export_id_of(context: ExportContext, request: ExportRequest, periods: Sequence[PartitionPeriod]) -> str:
    """Same request, same bounding checkpoints: same id (and so the same bytes)."""
    what = {"deployment": context.deployment, "topic": context.topic,
            "from": request.period_from.isoformat(), "to": request.period_to.isoformat(),
            "regulator": request.regulator, "requested_by": request.requested_by,
            "legal_basis": request.legal_basis, "reveal": request.reveal,
            "filters": request.filters.as_json(),
            "ranges": [[p.partition, p.begin, p.finish] for p in periods]}
    return "exp-" + hashlib.sha256(canonical_json(what).encode()).hexdigest()[:32]


_ROWS = """
SELECT kafka_offset, leaf_index, kafka_timestamp, record_key, record_value, headers::text, NULL AS error
  FROM journal j
 WHERE topic = %(topic)s AND kafka_partition = %(p)s AND leaf_index >= %(a)s AND leaf_index < %(b)s
   {journal_filter}
{union}
 ORDER BY leaf_index
"""
_QUARANTINE = """
UNION ALL
SELECT kafka_offset, leaf_index, kafka_timestamp, record_key, coalesce(record_value, ''::bytea),
       headers::text, error
  FROM quarantine
 WHERE topic = %(topic)s AND kafka_partition = %(p)s AND leaf_index >= %(a)s AND leaf_index < %(b)s
"""
_FILTER = """
   AND j.protocol_number IN (SELECT protocol_number FROM interactions
                              WHERE (%(service_type)s::text IS NULL OR service_type = %(service_type)s)
                                AND (%(channel)s::text IS NULL OR channel = %(channel)s)
                                AND (%(protocol)s::text IS NULL OR protocol_number = %(protocol)s))
"""


def _rows(conn: psycopg.Connection[Any], topic: str, period: PartitionPeriod,
          filters: ExportFilters) -> Iterator[tuple[Any, ...]]:
    query = _ROWS.format(journal_filter=_FILTER if filters.subset else "",
                         union="" if filters.subset else _QUARANTINE)
    params = {"topic": topic, "p": period.partition, "a": period.begin, "b": period.finish,
              **filters.as_json()}
    with conn.transaction(), conn.cursor(name=f"export_p{period.partition}") as cur:
        cur.itersize = 2000
        cur.execute(query, params)
        yield from cur


def _header_bytes(part: Any) -> bytes | None:
    if part is None:
        return None
    if isinstance(part, dict) and "hex" in part:
        return bytes.fromhex(str(part["hex"]))
    return str(part).encode("utf-8")


def _headers(stored: Any) -> list[dict[str, Any]]:
    if stored == "[]":
        return []
    entries = orjson.loads(stored) if isinstance(stored, str) else stored or []
    return [{"key": _header_bytes(k) or b"", "value": _header_bytes(v)} for k, v in entries]


def _base64_lines(hashes: Sequence[bytes]) -> bytes:
    return "".join(encode_base64(h) + "\n" for h in hashes).encode("ascii")


class _LeafFold:
    """The compact range of ``[0, size)`` grown leaf by leaf (RFC 9162 §2.1.2's stack), as
    :class:`protocolo.evidence.merkle.CompactRange` does but keeping only the hashes: the
    export needs the root, not the completed nodes, and it appends millions of leaves."""

    def __init__(self, size: int, hashes: Sequence[bytes]) -> None:
        self.size, self.hashes = size, list(hashes)

    def append(self, leaf: bytes) -> None:
        index, value, hashes, sha256 = self.size, leaf, self.hashes, hashlib.sha256
        while index & 1:
            value = sha256(NODE_PREFIX + hashes.pop() + value).digest()
            index >>= 1
        hashes.append(value)
        self.size += 1

    def root(self) -> bytes:
        return fold(self.hashes)


class _PartitionWriter:
    """One partition's files, written record by record."""

    def __init__(self, root: Path, context: _LogNames, period: PartitionPeriod,
                 sync_marker: bytes, catalogue: SchemaCatalogue, subset: bool) -> None:
        self.dir = root / "partitions" / f"p{period.partition}"
        self.dir.mkdir(parents=True)
        self.context, self.period, self.catalogue, self.subset = context, period, catalogue, subset
        self.avro_file: BinaryIO = open(self.dir / "data.avro", "wb")  # noqa: SIM115
        self.jsonl: TextIO = open(self.dir / "records.jsonl", "w", encoding="utf-8", newline="")  # noqa: SIM115
        self.csv: TextIO = open(self.dir / "records.csv", "w", encoding="utf-8", newline="")  # noqa: SIM115
        self.csv.write(csv_header())
        self.avro = RecordBlocks(self.avro_file, context.topic, period.partition, sync_marker,
                                 {"protocolo.format": FORMAT})
        self.counts: Counter[str] = Counter()
        self.schemas: dict[bytes, SchemaVersion] = {}
        self.versions: dict[bytes, tuple[SchemaVersion, PlainDecoder | None, bool] | None] = {}
        self.tree = _LeafFold(period.begin, period.start.compact_range if period.start else ())
        self.leaf = _leaf_hasher(context.topic, period.partition)
        self.count = 0

    def _version(self, fp: bytes) -> tuple[SchemaVersion, PlainDecoder | None, bool] | None:
        """The writer schema of a fingerprint, its plain decoder (when it has one) and whether
        it has floats: looked up once per schema."""
        if fp not in self.versions:
            try:
                version = self.catalogue.by_fingerprint(fp)
            except UnknownFingerprint:
                self.versions[fp] = None
            else:
                decoder = plain_decoder(json.loads(version.path.read_text(encoding="utf-8")))
                self.versions[fp] = (version, decoder, has_floats(version.schema))
        return self.versions[fp]

    def _event(self, value: bytes, quarantined: str | None) -> tuple[str | None, Any, str | None]:
        fp = value_fingerprint(value)
        if quarantined is not None or fp is None:
            return None, None, None
        known = self._version(fp)
        if known is None:
            return None, None, None
        version, decoder, floats = known
        try:
            event = decoder.decode(value) if decoder else event_json(decode_event(value, version.schema))
        except UndecodableValue:  # altered bytes: the root check after the partition refuses it
            return None, None, None
        self.schemas[fp] = version
        return version.event_type, event, canonical_json(event, floats=floats)

    def add(self, conn: psycopg.Connection[Any], row: tuple[Any, ...]) -> None:
        offset, leaf_index, timestamp, key, value, headers, error = row
        value = bytes(value)
        key = None if key is None else bytes(key)
        event_type, event, event_text = self._event(value, error)
        record = {
            "topic": self.context.topic, "partition": self.period.partition, "offset": offset,
            "leaf_index": leaf_index,
            "timestamp": None if timestamp is None else int(timestamp.timestamp() * 1000),
            "key": key, "headers": _headers(headers), "value": value,
            "quarantined": error, "event_type": event_type,
            "event": event_text, "inclusion_proof": [],
        }
        if self.subset:
            record["inclusion_proof"] = inclusion_proof(
                leaf_index, self.period.finish, node_reader(conn, self.context.topic, self.period.partition))
        else:
            self.tree.append(self.leaf(offset, key, value))
        self.avro.write(record)
        digest = hashlib.sha256(value).hexdigest()
        self.jsonl.write(json_line(record, event, event_text, digest))
        self.csv.write(csv_line(record, event, digest))
        if error is not None:
            self.counts["(quarantined)"] += 1
        else:
            self.counts[event_type or "(undecodable)"] += 1
        self.count += 1

    def close(self) -> None:
        self.avro.flush()
        for f in (self.avro_file, self.jsonl, self.csv):
            f.close()


def _write_partition(conn: psycopg.Connection[Any], root: Path, context: _LogNames,
                     filters: ExportFilters, period: PartitionPeriod, sync_marker: bytes,
                     catalogue: SchemaCatalogue, progress: Progress | None, made: datetime) -> tuple[dict[str, Any], dict[bytes, SchemaVersion]]:
    subset = filters.subset
    out = _PartitionWriter(root, context, period, sync_marker, catalogue, subset)
    total = period.finish - period.begin
    try:
        for row in _rows(conn, context.topic, period, filters):
            out.add(conn, row)
            if progress is not None and out.count % 10_000 == 0:
                progress(period.partition, out.count, total)
    finally:
        out.close()
    if progress is not None:
        progress(period.partition, out.count, total)
    if not subset and (out.tree.size != period.finish or out.tree.root() != period.end.root):
        raise ExportNotPossible(
            f"partition {period.partition}: the journal's leaves [{period.begin}, {period.finish}) "
            "do not give the root its checkpoint signed: the ledger differs from its signed "
            "checkpoints; run `protocolo verify`")
    return _partition_files(conn, root, context, period, out, made), out.schemas


def _leaf_hasher(topic: str, partition: int) -> Callable[[int, bytes | None, bytes], bytes]:
    from protocolo.evidence.leaf import partition_leaf_hasher

    return partition_leaf_hasher(topic, partition)


def _with_cosignatures(conn: psycopg.Connection[Any], c: StoredCheckpoint) -> bytes:
    lines = [a.token for a in stored_anchors(conn, c.topic, c.partition, c.size) if a.kind == "cosignature"]
    present = c.note.split(b"\n")
    extra = b"".join(line if line.endswith(b"\n") else line + b"\n"
                     for line in dict.fromkeys(lines) if line.rstrip(b"\n") not in present)
    return c.note + extra


def _timestamps(conn: psycopg.Connection[Any], base: Path, rel: str, c: StoredCheckpoint,
                chain: bytes | None, when: str, made: datetime) -> list[dict[str, str]]:
    if chain is None:
        return []
    newest: dict[str, bytes] = {}
    for a in stored_anchors(conn, c.topic, c.partition, c.size):
        if a.kind == "rfc3161" and a.anchored_at <= made:
            newest[a.authority] = a.token  # oldest first: the last one is the freshest
    found = []
    for authority, token in sorted(newest.items()):
        slug = hashlib.sha256(authority.encode()).hexdigest()[:12]
        stem = f"{rel}/timestamps/{when}-{slug}"
        (base / f"{stem}.tsr").parent.mkdir(parents=True, exist_ok=True)
        (base / f"{stem}.tsr").write_bytes(token)
        (base / f"{stem}.chain.pem").write_bytes(chain)
        found.append({"authority": authority, "token": f"{stem}.tsr", "chain": f"{stem}.chain.pem"})
    return found


def _partition_files(conn: psycopg.Connection[Any], root: Path, context: _LogNames,
                     period: PartitionPeriod, out: _PartitionWriter, made: datetime) -> dict[str, Any]:
    rel = f"partitions/p{period.partition}"
    chain = context.tsa_chain_pem
    entry: dict[str, Any] = {
        "partition": period.partition,
        "origin": log_origin(context.deployment, context.topic, period.partition),
        "leaves": [period.begin, period.finish], "records": out.count,
        "counts": dict(sorted(out.counts.items())),
        "data": f"{rel}/data.avro", "jsonl": f"{rel}/records.jsonl", "csv": f"{rel}/records.csv",
        "start": {"size": period.begin, "checkpoint": None, "signed_at": None, "timestamps": []},
        "end": {"size": period.finish, "checkpoint": f"{rel}/end.checkpoint",
                "signed_at": period.end.signed_at.isoformat(),
                "timestamps": _timestamps(conn, root, rel, period.end, chain, "end", made)},
        "completeness": f"{rel}/completeness.range", "consistency": None,
    }
    (root / rel / "end.checkpoint").write_bytes(_with_cosignatures(conn, period.end))
    (root / rel / "completeness.range").write_bytes(
        _base64_lines(period.start.compact_range if period.start else ()))
    if period.start is not None:
        (root / rel / "start.checkpoint").write_bytes(_with_cosignatures(conn, period.start))
        entry["start"] = {"size": period.begin, "checkpoint": f"{rel}/start.checkpoint",
                          "signed_at": period.start.signed_at.isoformat(),
                          "timestamps": _timestamps(conn, root, rel, period.start, chain, "start", made)}
        proof = (consistency_proof(period.begin, period.finish,
                                   node_reader(conn, context.topic, period.partition))
                 if period.begin < period.finish else [])
        (root / rel / "consistency.proof").write_bytes(_base64_lines(proof))
        entry["consistency"] = f"{rel}/consistency.proof"
    return entry


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _file_entries(root: Path, paths: Sequence[str]) -> list[dict[str, Any]]:
    entries = []
    for path in paths:
        digest = hashlib.sha256()
        with open(root / path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        entries.append({"path": path, "size": (root / path).stat().st_size, "sha256": digest.hexdigest()})
    return entries


@dataclass(frozen=True)
class ChainLink:
    """Where this export stands in its regulator's chain, and when it was made."""

    created_at: datetime
    previous_sha256: str | None
    previous_id: str | None


def write_export(conn: psycopg.Connection[Any], out: Path, context: ExportContext,
                 request: ExportRequest, periods: Sequence[PartitionPeriod], export_id: str,
                 link: ChainLink, progress: Progress | None = None,
                 extra_files: dict[str, bytes] | None = None, workers: int = 1) -> ExportResult:
    """Write the export into ``out`` (which must not exist), atomically: into
    ``out.partial`` first, renamed when complete. Raises :class:`ExportNotPossible`.

    ``workers`` > 1 writes that many partitions side by side, each in its own process
    with its own connection (the files of a partition do not depend on the others', so the
    export's bytes are the same)."""
    if out.exists():
        raise ExportNotPossible(f"--out {out} already exists: give a new directory")
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        result = _write_into(conn, tmp, context, request, periods, export_id, link, progress,
                             extra_files or {}, workers)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, out)
    result.directory = out
    return result


def _write_partitions(conn: psycopg.Connection[Any], root: Path, context: ExportContext,
                      filters: ExportFilters, periods: Sequence[PartitionPeriod], marker: bytes,
                      progress: Progress | None, made: datetime, workers: int) -> tuple[list[dict[str, Any]], dict[bytes, SchemaVersion]]:
    partitions: list[dict[str, Any]] = []
    schemas: dict[bytes, SchemaVersion] = {}
    if workers > 1 and len(periods) > 1:
        results = _write_in_processes(conn, root, context, filters, periods, marker, progress, made, workers)
    else:
        catalogue = SchemaCatalogue.load()
        results = (_write_partition(conn, root, context, filters, period, marker, catalogue, progress, made)
                   for period in periods)
    for entry, used in results:
        partitions.append(entry)
        schemas.update(used)
    return partitions, schemas


def _write_in_processes(conn: psycopg.Connection[Any], root: Path, context: ExportContext,
                        filters: ExportFilters, periods: Sequence[PartitionPeriod], marker: bytes,
                        progress: Progress | None, made: datetime, workers: int) -> Iterator[tuple[dict[str, Any], dict[bytes, SchemaVersion]]]:
    """One partition per job, results in partition order. The leaves ``[a, b)`` below a
    signed checkpoint never change, so the processes need no shared snapshot."""
    info = conn.info
    dsn = conninfo.make_conninfo(info.dsn, password=info.password) if info.password else info.dsn
    log = _PartitionLog(context.deployment, context.topic, context.tsa_chain_pem)
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding a connection
    with ProcessPoolExecutor(max_workers=min(workers, len(periods)), mp_context=spawn) as pool:
        jobs = [pool.submit(write_partition_in_process, dsn, root, log, filters, period, marker, made)
                for period in periods]
        try:
            for period, job in zip(periods, jobs, strict=True):
                entry, used = job.result()
                if progress is not None:
                    progress(period.partition, int(entry["records"]), period.finish - period.begin)
                yield entry, used
        finally:
            for job in jobs:
                job.cancel()


def write_partition_in_process(dsn: str, root: Path, log: _PartitionLog, filters: ExportFilters,
                               period: PartitionPeriod, marker: bytes,
                               made: datetime) -> tuple[dict[str, Any], dict[bytes, SchemaVersion]]:
    """A worker's job: one partition's files, on its own connection."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return _write_partition(conn, root, log, filters, period, marker, SchemaCatalogue.load(), None, made)


def _write_into(conn: psycopg.Connection[Any], root: Path, context: ExportContext,
                request: ExportRequest, periods: Sequence[PartitionPeriod], export_id: str,
                link: ChainLink, progress: Progress | None, extra_files: dict[str, bytes],
                workers: int = 1) -> ExportResult:
    marker = export_sync_marker(export_id)
    partitions, schemas = _write_partitions(conn, root, context, request.filters, periods, marker,
                                            progress, link.created_at, workers)
    schema_entries = []
    for fp, version in sorted(schemas.items()):
        path = f"schemas/{fp.hex()}.avsc"
        (root / "schemas").mkdir(exist_ok=True)
        (root / path).write_bytes(version.path.read_bytes())  # with its logical types and docs
        schema_entries.append({"fingerprint": fp.hex(), "path": path, "event_type": version.event_type,
                               "version": version.version})
    (root / "keys").mkdir()
    vkeys = []
    for entry in partitions:
        vkey = context.log_key.vkey(entry["origin"])
        (root / f"keys/log-p{entry['partition']}.vkey").write_text(vkey + "\n", encoding="utf-8")
        vkeys.append(vkey)
    for path, data in extra_files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    (root / "README.txt").write_text(export_readme(export_id, vkeys, bool(context.tsa_chain_pem)),
                                     encoding="utf-8")
    files = _file_entries(root, _all_files(root))
    (root / SUMS).write_text("".join(f"{f['sha256']}  {f['path']}\n" for f in files), encoding="ascii")
    files = _file_entries(root, _all_files(root))
    totals: Counter[str] = Counter()
    for entry in partitions:
        totals.update(entry["counts"])
    manifest = {
        "format": FORMAT, "export_id": export_id,
        "log": {"deployment": context.deployment, "topic": context.topic},
        "period": {"from": request.period_from.isoformat(), "to": request.period_to.isoformat()},
        "request": {"regulator": request.regulator, "requested_by": request.requested_by,
                    "legal_basis": request.legal_basis, "reveal": request.reveal,
                    "filters": request.filters.as_json(), "subset": request.filters.subset},
        "created": {"at": link.created_at.isoformat(), "tool": context.tool},
        "previous": {"export_id": link.previous_id, "manifest_sha256": link.previous_sha256},
        "partitions": partitions, "schemas": schema_entries,
        "counts": dict(sorted(totals.items())), "records": sum(e["records"] for e in partitions),
        "revealed": sorted(extra_files), "files": files,
    }
    manifest_bytes = (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    (root / MANIFEST).write_bytes(manifest_bytes)
    lowest = min((e["origin"] for e in partitions), default=None, key=lambda o: int(o.rsplit("/", 1)[1]))
    if lowest is None:
        raise ExportNotPossible("the ledger has no partition with a tree yet: nothing to export")
    signature = sign_manifest(manifest_bytes, context.log_key.signer(lowest))
    (root / MANIFEST_SIGNATURE).write_bytes(signature)
    return ExportResult(export_id, root, int(manifest["records"]),
                        hashlib.sha256(manifest_bytes).hexdigest(), link.previous_sha256, partitions)
