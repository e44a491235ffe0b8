"""Benchmark of ``protocolo verify`` and of inclusion-proof generation.

    python bench/verify_bench.py [--leaves N] [--big M] [--proofs K] [--repeat R] [--json FILE]
    python bench/verify_bench.py --ledger URL [--topic T] [--partition P|all] [--log-key FILE]
                                 [--workers W] [--repeat R] [--json FILE]

1. verify rate as a RATIO against hashing the same leaf inputs with ``hashlib`` in the same
   run: the audit (``protocolo.attestation.ledger_audit.audit_ledger``: PostgreSQL reads
   through a server-side cursor, leaf recomputation with ``protocolo.evidence.leaf``, the
   tree rebuilt and every stored node compared) over ``N`` leaves (default
   200,000; 90% journal rows, 10% quarantine rows, values of 150..600 random bytes, about
   the size of the demo's Avro events), against ``sha256(0x00 || leaf input)`` over the
   same prebuilt leaf inputs. The leaves are dealt over ``--partitions`` partitions
   (default 6, the ledger's), and the audit runs twice: in one process, and with
   ``--workers`` processes (one partition per job, default one per core). Interleaved,
   best of ``--repeat``: the machine is shared. Target ratio >= 0.3.
2. inclusion-proof latency, p50/p99 over ``K`` random leaves, of
   ``evidence.merkle.inclusion_proof(i, size, projections.merkle_store.node_reader(...))``
   (one SQL query per proof) at the demo's size (one partition of ``protocolo demo``'s
   default day: 11,154 events over 6 partitions = 1,859 leaves) and at ``M`` leaves
   (default 1,000,000), each tree built directly into ``merkle_nodes`` for a synthetic
   partition (not through Kafka). Every proof is also verified against the root (untimed).

On the embedded PostgreSQL under a temporary PROTOCOLO_HOME (stopped at the end) unless
PROTOCOLO_DATABASE_URL is set; it creates its own database (``bench_verify_<run>``) and
drops it at the end. No Kafka. See bench/README.md.

``--ledger URL`` measures 1 on an existing ledger's database instead (e.g. the one
``bench/scale.py`` builds), READ ONLY (the audit runs in a read-only transaction, the
reference reads the rows with a plain SELECT): ``audit_ledger`` over the chosen partitions
(one process, and with ``--workers`` processes when W > 1) against hashlib over the same
leaf inputs, built from the same rows chunk by chunk (only the hashing is timed; memory
holds one chunk). Checkpoints are checked under the verifier keys derived from
``--log-key`` (default ``$PROTOCOLO_HOME/keys/log-signing.key`` when it exists); findings
are reported, not fatal.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from protocolo import devstack
from protocolo.attestation.audit_checkpoints import LogKeys
from protocolo.attestation.audit_findings import FindingLog
from protocolo.attestation.ledger_audit import audit_ledger
from protocolo.attestation.log_key import LogKey
from protocolo.core.config import Settings
from protocolo.evidence.leaf import record_leaf_input
from protocolo.evidence.merkle import CompactRange, inclusion_proof, leaf_hash
from protocolo.evidence.note import VerifierKey
from protocolo.evidence.proof import verify_inclusion
from protocolo.projections.merkle_store import node_reader
from protocolo.projections.schema import connect

TOPIC = "bench.verify"
DEMO_LEAVES = 11_154 // 6
DEMO_PARTITION, BIG_PARTITION = 100, 101  # the verified ledger uses partitions 0..P-1


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextlib.contextmanager
def database(label: str = "verify") -> Iterator[str]:
    """A fresh ledger database (migrated), on the configured or the embedded server;
    dropped (and the embedded server stopped) afterwards."""
    configured = Settings.from_env()
    home = Path(tempfile.mkdtemp(prefix=f"protocolo-{label}-bench-"))
    settings = dataclasses.replace(configured, home=home)
    embedded = not configured.database_url
    admin = configured.database_url or devstack.start_postgres(settings, log=lambda m: say(f"  {m}"))
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = with_database(admin, name)
        connect(url).close()  # migrations
        yield url
    finally:
        with contextlib.suppress(Exception), psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if embedded:
            with contextlib.suppress(Exception):
                devstack.down(settings, log=lambda m: say(f"  {m}"))
        shutil.rmtree(home, ignore_errors=True)


def write_tree(cur: psycopg.Cursor[Any], partition: int, leaves: Iterator[bytes]) -> CompactRange:
    """Append ``leaves`` (hashes) to a fresh tree, streaming every perfect node into merkle_nodes."""
    tree = CompactRange()
    with cur.copy("COPY merkle_nodes (topic, kafka_partition, level, node_index, hash) FROM STDIN") as copy:
        for value in leaves:
            for n in tree.append(value):
                copy.write_row((TOPIC, partition, n.node.level, n.node.index, n.hash))
    cur.execute(
        "INSERT INTO projector_offsets (topic, kafka_partition, next_offset, next_leaf_index, tree_size,"
        " compact_range) VALUES (%s, %s, %s, %s, %s, %s)",
        (TOPIC, partition, tree.size, tree.size, tree.size, list(tree.hashes)))
    return tree


def build_ledger(url: str, leaves: int, seed: int, partitions: int = 1) -> list[bytes]:
    """Journal and quarantine rows of ``partitions`` partitions (leaves dealt round-robin),
    their trees; returns the leaf inputs."""
    rng = random.Random(seed)
    inputs: list[bytes] = []
    per_partition: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    journal: list[tuple[Any, ...]] = []
    quarantine: list[tuple[Any, ...]] = []
    for n in range(leaves):
        partition, offset = n % partitions, n // partitions
        key = f"{rng.randrange(10**19):020d}".encode()
        value = rng.randbytes(rng.randrange(150, 601))
        inputs.append(record_leaf_input(TOPIC, partition, offset, key, value))
        per_partition[partition].append(inputs[-1])
        row = (TOPIC, partition, offset, key, value, offset, leaf_hash(inputs[-1]))
        (quarantine if rng.random() < 0.1 else journal).append(row)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY journal (topic, kafka_partition, kafka_offset, record_key, record_value, leaf_index,"
                      " leaf_hash, fingerprint, event_type, schema_version, event_id, entity_key, occurred_at,"
                      " payload, is_duplicate) FROM STDIN") as copy:
            for row in journal:
                copy.write_row((*row, b"\0" * 8, "NoteAdded", 1, uuid.uuid4(), row[3].decode(),
                                "2026-01-01T00:00:00Z", "{}", False))
        with cur.copy("COPY quarantine (topic, kafka_partition, kafka_offset, record_key, record_value,"
                      " leaf_index, leaf_hash, error) FROM STDIN") as copy:
            for row in quarantine:
                copy.write_row((*row, "bench"))
        for partition, mine in per_partition.items():
            write_tree(cur, partition, (leaf_hash(x) for x in mine))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return inputs


def time_hashing(inputs: list[bytes]) -> float:
    sha256 = hashlib.sha256
    started = time.perf_counter()
    for x in inputs:
        sha256(b"\x00" + x).digest()
    return time.perf_counter() - started


def time_verify(url: str, partitions: int, workers: int | None) -> float:
    findings = FindingLog()
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        audit_ledger(conn, TOPIC, LogKeys([]), findings, list(range(partitions)), workers=workers)
        elapsed = time.perf_counter() - started
    if findings.total:
        raise SystemExit(f"the bench ledger did not verify clean: {findings.sorted()[:3]}")
    return elapsed


def proof_latency(url: str, partition: int, size: int, proofs: int, seed: int) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM projector_offsets WHERE topic = %s AND kafka_partition = %s",
                        (TOPIC, partition)).fetchone() is None:
            say(f"  building a {size:,}-leaf tree in merkle_nodes (partition {partition}) ...")
            with conn.transaction(), conn.cursor() as cur:
                tree = write_tree(cur, partition, (hashlib.sha256(i.to_bytes(8, "big")).digest()
                                                   for i in range(size)))
            conn.execute("VACUUM ANALYZE merkle_nodes")
        else:
            raise SystemExit(f"partition {partition} already has a tree")
        root = tree.root()
        read = node_reader(conn, TOPIC, partition)
        rng = random.Random(seed)
        timings: list[float] = []
        for _ in range(proofs):
            index = rng.randrange(size)
            started = time.perf_counter()
            proof = inclusion_proof(index, size, read)
            timings.append(time.perf_counter() - started)
            verify_inclusion(hashlib.sha256(index.to_bytes(8, "big")).digest(), index, size, proof, root)
    timings.sort()
    return {"leaves": size, "proofs": proofs,
            "p50_ms": round(1000 * statistics.median(timings), 3),
            "p99_ms": round(1000 * timings[min(len(timings) - 1, int(0.99 * len(timings)))], 3)}


def ledger_hashing(url: str, topic: str, partitions: list[int], chunk: int = 50_000) -> tuple[float, int]:
    """hashlib over the leaf inputs of the ledger's rows (journal and quarantine), built a
    chunk at a time; only the hashing is timed."""
    elapsed, leaves = 0.0, 0
    with psycopg.connect(url) as conn:
        conn.read_only = True
        for partition in partitions:
            with conn.transaction(), conn.cursor(name=f"bench_p{partition}") as cur:
                cur.itersize = 10_000
                cur.execute("SELECT kafka_offset, record_key, record_value FROM journal WHERE topic = %(t)s"
                            " AND kafka_partition = %(p)s UNION ALL SELECT kafka_offset, record_key,"
                            " coalesce(record_value, ''::bytea) FROM quarantine WHERE topic = %(t)s"
                            " AND kafka_partition = %(p)s", {"t": topic, "p": partition})
                while rows := cur.fetchmany(chunk):
                    inputs = [record_leaf_input(topic, partition, o, None if k is None else bytes(k), bytes(v))
                              for o, k, v in rows]
                    elapsed += time_hashing(inputs)
                    leaves += len(inputs)
    return elapsed, leaves


def ledger_keys(url: str, topic: str, key_file: Path | None) -> LogKeys:
    if key_file is None or not key_file.exists():
        return LogKeys([])
    key = LogKey.parse(key_file.read_text(), str(key_file))
    with psycopg.connect(url) as conn:
        origins = [o for (o,) in conn.execute("SELECT DISTINCT origin FROM checkpoints WHERE topic = %s", (topic,))]
    return LogKeys([VerifierKey.parse(key.vkey(origin)) for origin in origins])


def time_ledger_verify(url: str, topic: str, partitions: list[int], keys: LogKeys, workers: int) -> tuple[float, int]:
    findings = FindingLog()
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        audit_ledger(conn, topic, keys, findings, partitions, workers=workers)
        return time.perf_counter() - started, findings.total


def ledger_main(args: argparse.Namespace) -> dict[str, Any]:
    with psycopg.connect(args.ledger) as conn:
        topics = [t for (t,) in conn.execute("SELECT DISTINCT topic FROM projector_offsets"
                                              " WHERE tree_size > 0 ORDER BY 1")]
        topic = args.topic or (topics[0] if len(topics) == 1 else None)
        if topic not in topics:
            raise SystemExit(f"--topic: give one of {topics}")
        every = [p for (p,) in conn.execute("SELECT kafka_partition FROM projector_offsets WHERE topic = %s"
                                             " AND tree_size > 0 ORDER BY 1", (topic,))]
    partitions = every if args.partition == "all" else [int(args.partition)]
    home = Path(os.environ.get("PROTOCOLO_HOME", "~/.protocolo")).expanduser()
    keys = ledger_keys(args.ledger, topic, Path(args.log_key) if args.log_key else home / "keys/log-signing.key")
    say(f"{topic}: partitions {partitions}; {len(keys.keys)} verifier keys; load average {os.getloadavg()}")
    hashing, serial, parallel, found = [], [], [], 0
    leaves = 0
    for round_ in range(args.repeat):
        elapsed, leaves = ledger_hashing(args.ledger, topic, partitions)
        hashing.append(elapsed)
        elapsed, found = time_ledger_verify(args.ledger, topic, partitions, keys, 1)
        serial.append(elapsed)
        if args.workers > 1 and len(partitions) > 1:
            parallel.append(time_ledger_verify(args.ledger, topic, partitions, keys, args.workers)[0])
        say(f"  round {round_ + 1}: hashlib {hashing[-1]:.2f}s, verify {serial[-1]:.2f}s"
            + (f", {args.workers} processes {parallel[-1]:.2f}s" if parallel else "") + f", {found} findings")
    hash_rate, verify_rate = leaves / min(hashing), leaves / min(serial)
    result: dict[str, Any] = {
        "ledger": True, "topic": topic, "partitions": partitions, "leaves": leaves, "findings": found,
        "leaves_per_s": round(verify_rate), "hashlib_leaves_per_s": round(hash_rate),
        "ratio": round(verify_rate / hash_rate, 3), "target": 0.3, "loadavg": os.getloadavg(),
        "rounds": {"hashlib_s": [round(t, 3) for t in hashing], "verify_s": [round(t, 3) for t in serial],
                   "parallel_s": [round(t, 3) for t in parallel]}}
    if parallel:
        result.update(workers=args.workers, parallel_leaves_per_s=round(leaves / min(parallel)),
                      parallel_ratio=round(leaves / min(parallel) / hash_rate, 3))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaves", type=int, default=200_000, help="leaves of the verified partition")
    parser.add_argument("--big", type=int, default=1_000_000, help="leaves of the large proof tree")
    parser.add_argument("--proofs", type=int, default=2000, help="inclusion proofs timed per tree")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the verified ledger (default 6)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes of the parallel verify (default: one per core)")
    parser.add_argument("--seed", type=int, default=6523)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--ledger", metavar="URL", help="an existing ledger's database, read only (see above)")
    parser.add_argument("--topic", help="with --ledger: the ledger topic (default: the only one)")
    parser.add_argument("--partition", default="all", help="with --ledger: a partition number or 'all'")
    parser.add_argument("--log-key", help="with --ledger: the log signing key file the checkpoints are checked with")
    args = parser.parse_args()
    if args.ledger:
        result = ledger_main(args)
        print(f"verify    {result['leaves_per_s']:>12,} leaves/s   hashlib {result['hashlib_leaves_per_s']:,} "
              f"leaves/s   ratio {result['ratio']} (target >= 0.3); {result['leaves']:,} leaves, partitions "
              f"{result['partitions']}, {result['findings']} findings; load average {result['loadavg'][0]:.1f}")
        if "parallel_ratio" in result:
            print(f"verify    {result['parallel_leaves_per_s']:>12,} leaves/s   {result['workers']} processes, "
                  f"ratio {result['parallel_ratio']}")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    with database() as url:
        say(f"building a ledger of {args.leaves:,} leaves over {args.partitions} partitions ...")
        inputs = build_ledger(url, args.leaves, args.seed, args.partitions)
        hashing: list[float] = []
        serial: list[float] = []
        parallel: list[float] = []
        steps = [("hashlib", hashing, lambda: time_hashing(inputs)),
                 ("verify, one process", serial, lambda: time_verify(url, args.partitions, 1)),
                 (f"verify, {args.workers} processes", parallel, lambda: time_verify(url, args.partitions, args.workers))]
        for round_ in range(args.repeat):
            for name, times, step in (steps if round_ % 2 == 0 else steps[::-1]):
                times.append(step())
                say(f"  round {round_ + 1}: {name} {times[-1]:.3f}s")
        hash_rate = args.leaves / min(hashing)
        verify_rate, parallel_rate = args.leaves / min(serial), args.leaves / min(parallel)
        demo = proof_latency(url, DEMO_PARTITION, DEMO_LEAVES, args.proofs, args.seed)
        big = proof_latency(url, BIG_PARTITION, args.big, args.proofs, args.seed)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "verify": {"leaves": args.leaves, "partitions": args.partitions, "leaves_per_s": round(verify_rate),
                   "hashlib_leaves_per_s": round(hash_rate), "ratio": round(verify_rate / hash_rate, 3),
                   "workers": args.workers, "parallel_leaves_per_s": round(parallel_rate),
                   "parallel_ratio": round(parallel_rate / hash_rate, 3), "target": 0.3,
                   "loadavg": os.getloadavg()},
        "inclusion_proof": {"demo": demo, "big": big},
    }
    print(f"verify    {verify_rate:>12,.0f} leaves/s   hashlib {hash_rate:,.0f} leaves/s   "
          f"ratio {verify_rate / hash_rate:.3f} (target >= 0.3), one process")
    print(f"verify    {parallel_rate:>12,.0f} leaves/s   {args.workers} processes, ratio {parallel_rate / hash_rate:.3f}")
    for label, figures in (("demo", demo), ("big", big)):
        print(f"proof     {label:<5} {figures['leaves']:>10,} leaves   p50 {figures['p50_ms']:.3f} ms"
              f"   p99 {figures['p99_ms']:.3f} ms   ({figures['proofs']:,} proofs)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
