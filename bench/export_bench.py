"""Benchmark of ``protocolo export``: rate against a bare ``COPY ... TO``, and peak memory.

    python bench/export_bench.py [--leaves N] [--factor F] [--repeat R] [--json FILE]
    python bench/export_bench.py --ledger URL [--topic T] [--partition P|all] [--limit N] [--repeat R] [--json FILE]

1. Export rate as a RATIO against reading the same journal rows with a bare
   ``COPY (SELECT ... ORDER BY leaf_index) TO STDOUT`` in the same run (psycopg's copy,
   every block read and dropped): the export writer
   (``protocolo.attestation.export_writer.write_export``) over one partition of ``N``
   journalled DisclosureMade events (real Avro values) between the empty tree and a signed
   checkpoint: server-side cursor, Avro decoding with the writer schema, ``data.avro``, both
   renderings, the leaf hashes folded into the compact range and checked against the signed
   root, the manifest hashed and signed. Interleaved (copy, export, export, copy, ...), best
   of ``--repeat``. Target ratio >= 0.3.
2. Peak memory (``tracemalloc``, Python allocations) of the export of ``N`` and of ``F x N``
   leaves: bounded means the ratio stays near 1.

On the embedded PostgreSQL under a temporary PROTOCOLO_HOME (stopped at the end) unless
PROTOCOLO_DATABASE_URL is set; it creates its own database and drops it at the end. No Kafka.

``--ledger URL`` measures 1 on an existing ledger's database instead (e.g. the 10M-event one
of ``bench/scale.py``: ``postgres.url`` in its ``stack.json``, with ``dbname`` = the
deployment's database), READ ONLY: the export ends at leaf ``--limit`` (default: the whole
tree) of each chosen partition with a tree head built in memory from the stored Merkle
nodes (nothing is signed or stored; the manifest is signed by a throw-away key), written
into a temporary directory that is removed. The reference is the same bare ``COPY`` of the
same rows. ``--partition all`` exports the partitions one after the other (as
``protocolo export`` does) against one ``COPY`` per partition, and with ``--workers W``
also with W processes (``protocolo export --workers W``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from protocolo.attestation.checkpointer import StoredCheckpoint, checkpoint_partition
from protocolo.attestation.export_period import PartitionPeriod
from protocolo.attestation.export_writer import (
    ChainLink,
    ExportContext,
    ExportRequest,
    write_export,
)
from protocolo.attestation.log_key import LogKey
from protocolo.evidence.leaf import record_leaf_hash
from protocolo.evidence.merkle import CompactRange, fold, range_nodes
from protocolo.projections.merkle_store import node_reader
from protocolo.schemas.catalogue import SchemaCatalogue

sys.path.insert(0, str(Path(__file__).resolve().parent))
import verify_bench  # noqa: E402  (bench/verify_bench.py: the fresh ledger database)

TOPIC = "bench.export"
DEPLOYMENT = "bench"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def database() -> contextlib.AbstractContextManager[str]:
    return verify_bench.database("export")


def build_partition(url: str, partition: int, leaves: int) -> None:
    """``leaves`` journalled DisclosureMade events in one partition, their tree and offsets."""
    catalogue = SchemaCatalogue.load()
    start = datetime(2026, 3, 1, tzinfo=UTC)
    tree = CompactRange()
    leaves_hashes: list[bytes] = []
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY journal (topic, kafka_partition, kafka_offset, record_key, record_value,"
                      " leaf_index, leaf_hash, fingerprint, event_type, schema_version, event_id,"
                      " protocol_number, entity_key, occurred_at, payload, is_duplicate) FROM STDIN") as copy:
            for offset in range(leaves):
                protocol = f"2026{offset:010d}0"
                event_id = uuid.uuid4()
                when = start + timedelta(seconds=offset)
                value = catalogue.encode("DisclosureMade", {
                    "meta": {"event_id": str(event_id), "protocol_number": protocol, "occurred_at": when,
                             "producer": "bench", "correlation_id": None},
                    "kind": "PROTOCOL_NUMBER", "medium": "IVR_PROMPT"})
                key = protocol.encode()
                leaf = record_leaf_hash(TOPIC, partition, offset, key, value)
                leaves_hashes.append(leaf)
                copy.write_row((TOPIC, partition, offset, key, value, offset, leaf, value[2:10],
                                "DisclosureMade", 1, event_id, protocol, protocol, when, "{}", False))
        with cur.copy("COPY merkle_nodes (topic, kafka_partition, level, node_index, hash) FROM STDIN") as nodes:
            for leaf in leaves_hashes:
                for n in tree.append(leaf):
                    nodes.write_row((TOPIC, partition, n.node.level, n.node.index, n.hash))
        cur.execute("INSERT INTO projector_offsets (topic, kafka_partition, next_offset, next_leaf_index,"
                    " tree_size, compact_range) VALUES (%s, %s, %s, %s, %s, %s)",
                    (TOPIC, partition, leaves, leaves, leaves, list(tree.hashes)))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def time_copy(url: str, partition: int, size: int, topic: str = TOPIC) -> float:
    """The same rows as the export's (journal and quarantine of leaves ``[0, size)``), bare."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        with cur.copy(sql.SQL(
                "COPY (SELECT kafka_offset, leaf_index, kafka_timestamp, record_key, record_value, headers"
                " FROM journal WHERE topic = {t} AND kafka_partition = {p} AND leaf_index < {n}"
                " UNION ALL SELECT kafka_offset, leaf_index, kafka_timestamp, record_key, record_value, headers"
                " FROM quarantine WHERE topic = {t} AND kafka_partition = {p} AND leaf_index < {n}"
                " ORDER BY leaf_index) TO STDOUT").format(
                    t=sql.Literal(topic), p=sql.Literal(partition), n=sql.Literal(size))) as copy:
            for _ in copy:
                pass
        return time.perf_counter() - started


def head_in_memory(conn: psycopg.Connection[Any], topic: str, partition: int, size: int) -> StoredCheckpoint:
    """A tree head of ``size`` leaves from the stored nodes, never signed nor stored: what the
    export checks its folded leaves against."""
    nodes = range_nodes(0, size)
    hashes = tuple(node_reader(conn, topic, partition)(nodes)) if nodes else ()
    return StoredCheckpoint(topic, partition, size, fold(hashes), f"bench/{topic}/{partition}", b"", "bench",
                            0, (), None, (), datetime.now(UTC), None)


def ledger_partitions(url: str, topic: str | None, which: str, limit: int | None) -> tuple[str, dict[int, int]]:
    """The topic and ``{partition: leaves to export}`` of an existing ledger."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT topic, kafka_partition, tree_size FROM projector_offsets"
                            " WHERE (%s::text IS NULL OR topic = %s) AND tree_size > 0"
                            " ORDER BY topic, kafka_partition", (topic, topic)).fetchall()
    topics = sorted({r[0] for r in rows})
    if len(topics) != 1:
        raise SystemExit(f"--topic: give one of {topics}" if topics else "the ledger has no tree")
    sizes = {int(p): int(n) if limit is None else min(int(n), limit) for _, p, n in rows}
    if which != "all":
        if int(which) not in sizes:
            raise SystemExit(f"--partition {which}: the ledger's partitions are {sorted(sizes)}")
        sizes = {int(which): sizes[int(which)]}
    return topics[0], sizes


def time_ledger_export(url: str, key: LogKey, topic: str, sizes: dict[int, int], out: Path,
                       workers: int = 1) -> tuple[float, int]:
    shutil.rmtree(out, ignore_errors=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = on")  # a write would fail, not happen
        periods = [PartitionPeriod(p, None, head_in_memory(conn, topic, p, n)) for p, n in sizes.items()]
        request = ExportRequest(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), "bench", "bench")
        context = ExportContext(DEPLOYMENT, topic, key, "protocolo bench")
        started = time.perf_counter()
        result = write_export(conn, out, context, request, periods, "exp-bench-ledger",
                              ChainLink(datetime.now(UTC), None, None), workers=workers)
        elapsed = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return elapsed, result.records


def ledger_main(args: argparse.Namespace) -> dict[str, Any]:
    """Rate of the export of an existing ledger against a bare COPY of the same rows."""
    topic, sizes = ledger_partitions(args.ledger, args.topic, args.partition, args.limit)
    total = sum(sizes.values())
    key = LogKey.generate("protocolo/bench")
    work = Path(tempfile.mkdtemp(prefix="protocolo-xbench-out-", dir=args.out_dir))
    say(f"{topic}: partitions {sorted(sizes)}, {total:,} leaves; load average {os.getloadavg()}")
    times: dict[str, list[float]] = {"copy": [], "export": [], "parallel": []}
    steps = ["copy", "export"] + (["parallel"] if args.workers > 1 and len(sizes) > 1 else [])
    try:
        for i in range(args.repeat):
            for what in (steps if i % 2 == 0 else steps[::-1]):
                if what == "copy":
                    times["copy"].append(sum(time_copy(args.ledger, p, n, topic) for p, n in sizes.items()))
                else:
                    elapsed, records = time_ledger_export(args.ledger, key, topic, sizes, work / "e",
                                                          args.workers if what == "parallel" else 1)
                    assert records == total, (records, total)
                    times[what].append(elapsed)
                say(f"  round {i + 1}: {what} {times[what][-1]:.2f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    copy_rate, export_rate = total / min(times["copy"]), total / min(times["export"])
    result = {"ledger": True, "topic": topic, "partitions": sorted(sizes), "leaves": total,
              "copy_rows_per_s": round(copy_rate), "export_records_per_s": round(export_rate),
              "ratio": round(export_rate / copy_rate, 3), "target": 0.3, "loadavg": os.getloadavg(),
              "rounds_s": {k: [round(t, 3) for t in v] for k, v in times.items()}}
    if times["parallel"]:
        parallel_rate = total / min(times["parallel"])
        result.update(workers=args.workers, parallel_records_per_s=round(parallel_rate),
                      parallel_ratio=round(parallel_rate / copy_rate, 3))
    return result


def time_export(url: str, key: LogKey, partition: int, out: Path,
                traced: bool = False) -> tuple[float, int, int]:
    """Seconds and records of the export, and (``traced``) the peak of Python allocations
    made while writing it: the checkpoint signed first (which builds the verifiable index on
    the first run) is outside both."""
    shutil.rmtree(out, ignore_errors=True)
    with psycopg.connect(url, autocommit=True) as conn:
        end = checkpoint_partition(conn, key, TOPIC, DEPLOYMENT, partition, force=True)
        assert end is not None
        request = ExportRequest(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC),
                                "bench", "bench")
        context = ExportContext(DEPLOYMENT, TOPIC, key, "protocolo bench")
        if traced:
            tracemalloc.start()
        try:
            started = time.perf_counter()
            result = write_export(conn, out, context, request, [PartitionPeriod(partition, None, end)],
                                  f"exp-bench-{partition}", ChainLink(datetime.now(UTC), None, None))
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1] if traced else 0
        finally:
            if traced:
                tracemalloc.stop()
        return elapsed, result.records, peak


def peak_memory(url: str, key: LogKey, partition: int, out: Path) -> int:
    time_export(url, key, partition, out)  # the first checkpoint builds the partition's index
    return time_export(url, key, partition, out, traced=True)[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaves", type=int, default=50_000)
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--ledger", metavar="URL", help="an existing ledger's database, read only (see above)")
    parser.add_argument("--topic", help="with --ledger: the ledger topic (default: the only one)")
    parser.add_argument("--partition", default="0", help="with --ledger: a partition number or 'all'")
    parser.add_argument("--limit", type=int, help="with --ledger: export leaves [0, LIMIT) of each partition")
    parser.add_argument("--out-dir", help="with --ledger: where the temporary export goes (default: $TMPDIR)")
    parser.add_argument("--workers", type=int, default=1,
                        help="with --ledger and several partitions: also time the export with W processes")
    args = parser.parse_args()
    if args.ledger:
        result = ledger_main(args)
        print(f"export: {result['export_records_per_s']:,} records/s; bare COPY TO: {result['copy_rows_per_s']:,} "
              f"rows/s; ratio {result['ratio']} (target >= 0.3); {result['leaves']:,} leaves of {result['topic']} "
              f"partitions {result['partitions']}; load average {result['loadavg'][0]:.1f}")
        if "parallel_ratio" in result:
            print(f"export with {result['workers']} processes: {result['parallel_records_per_s']:,} records/s; "
                  f"ratio {result['parallel_ratio']}")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    key = LogKey.generate("protocolo/bench")
    work = Path(tempfile.mkdtemp(prefix="protocolo-xbench-out-"))
    try:
        with database() as url:
            say(f"building {args.leaves:,} + {args.leaves * args.factor:,} leaves ...")
            build_partition(url, 0, args.leaves)
            build_partition(url, 1, args.leaves * args.factor)
            copies, exports = [], []
            for i in range(args.repeat):
                order = ("copy", "export") if i % 2 == 0 else ("export", "copy")
                for what in order:
                    if what == "copy":
                        copies.append(time_copy(url, 0, args.leaves))
                    else:
                        elapsed, records, _ = time_export(url, key, 0, work / "e")
                        assert records == args.leaves
                        exports.append(elapsed)
            copy_rate, export_rate = args.leaves / min(copies), args.leaves / min(exports)
            small = peak_memory(url, key, 0, work / "m0")
            large = peak_memory(url, key, 1, work / "m1")
            size = sum(p.stat().st_size for p in (work / "e").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {
        "leaves": args.leaves, "copy_rows_per_s": round(copy_rate), "export_records_per_s": round(export_rate),
        "ratio": round(export_rate / copy_rate, 3), "target": 0.3,
        "peak_python_bytes": {"n": small, f"{args.factor}n": large},
        "memory_ratio": round(large / small, 2), "export_bytes": size, "loadavg": os.getloadavg(),
    }
    print(f"export: {export_rate:,.0f} records/s; bare COPY TO: {copy_rate:,.0f} rows/s; "
          f"ratio {result['ratio']} (target >= 0.3)")
    print(f"peak Python memory: {small / 1e6:.1f} MB at {args.leaves:,} leaves, {large / 1e6:.1f} MB at "
          f"{args.leaves * args.factor:,} (x{result['memory_ratio']}); export size {size / 1e6:.1f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
