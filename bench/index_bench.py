"""Benchmark of the verifiable index (docs/evidence-format.md §11).

    python bench/index_bench.py [--events N] [--every L] [--leaves M] [--lookups K] [--json FILE]

1. **Maintenance share.** ``N`` simulated call-centre events (default 20,000; as
   bench/ledger_bench.py) are published and projected by the real ``Projector`` into the
   run's own topic and database (timed, consumer-group join excluded: the reference). Then
   the index is maintained over the same leaves exactly as the checkpointer does it
   (``index_store.commit_index``: read the new rows, map function, entries and node COPY,
   tree update, index checkpoint signed), one checkpoint every ``L`` leaves per partition
   (default 1,000, the checkpointer's default cadence). Printed: index time / projector
   time. Target <= 0.15.
2. **Lookup proofs at M leaves** (default 1,000,000) in one partition: a map shaped like the
   simulated day (contacts of ~5.3 events, a ContactOpened carrying the customer's CPF and
   code index, customers with ~1.5 contacts) is built in memory and written into
   ``vindex_entries``/``vindex_nodes`` as one index checkpoint; then ``K`` lookups (half
   present keys, half absent), each ``StoredIndex.prove`` (one query for the path, one for
   the list) plus ``verify_lookup``. Reference in the same run: the unverified answer, one
   indexed ``SELECT`` of the key's leaf indexes. Printed: p50/p99 and the ratio. Target
   p99 <= 5 ms.

Starts the embedded stack under a temporary home (stopped at the end) unless
PROTOCOLO_KAFKA_BOOTSTRAP / PROTOCOLO_DATABASE_URL are set; works only in its own topics
and databases, removed at the end. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from protocolo.attestation.index_store import StoredIndex, commit_index, published_catalogue
from protocolo.attestation.log_key import LogKey
from protocolo.core.deployment_keys import load_keys
from protocolo.core.personal_data import BlindIndex, KeyVault, PersonalDataSealer
from protocolo.evidence.vindex import IndexMap, MapKey, verify_lookup
from protocolo.projections.schema import connect as migrate_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ledger_bench import Scratch, backend, say, simulate, time_projector, time_publisher  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def maintenance(url: str, topic: str, every: int) -> tuple[float, int]:
    """Index every partition's leaves as the checkpointer would, a checkpoint every
    ``every`` leaves; (seconds, index checkpoints signed)."""
    key = LogKey.generate("protocolo/bench")
    catalogue = published_catalogue()
    signed = 0
    with psycopg.connect(url, autocommit=True) as conn:
        sizes = conn.execute("SELECT kafka_partition, next_leaf_index FROM projector_offsets"
                             " WHERE topic = %s ORDER BY 1", (topic,)).fetchall()
        started = time.perf_counter()
        for partition, size in sizes:
            origin = f"protocolo/bench/{topic}/{partition}"
            signer = key.signer(origin)
            marks = [*range(every, int(size), every), int(size)]
            for mark in marks:
                with conn.transaction():
                    commit_index(conn, catalogue, signer, topic, int(partition), origin, mark,
                                 bytes(32))
                signed += 1
        elapsed = time.perf_counter() - started
    return elapsed, signed


def synthetic_map(leaves: int, seed: int) -> tuple[IndexMap, list[MapKey]]:
    rng = random.Random(seed)
    index = IndexMap()
    present: list[MapKey] = []
    customers = max(1, leaves // 8)
    i = contact = 0
    while i < leaves:
        protocol = MapKey("protocol", f"2026{contact:011d}")
        contact += 1
        present.append(protocol)
        customer = rng.randrange(customers)
        opened = [protocol, MapKey("cpf-index", f"{customer:064x}"),
                  MapKey("customer-code-index", f"{customer + 10**9:064x}")]
        for n in range(rng.choice((3, 4, 5, 5, 6, 7, 7))):
            if i == leaves:
                break
            index.add_leaf(i, opened if n == 0 else [protocol])
            i += 1
    index.commit()
    return index, present


def write_map(url: str, index: IndexMap, topic: str, partition: int) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY vindex_entries (topic, kafka_partition, key_hash, leaf_index, kind,"
                      " key_value) FROM STDIN") as copy:
            for khash, indexes in index.lists.items():
                key = index.keys[khash]
                for leaf in indexes:
                    copy.write_row((topic, partition, khash, leaf, key.kind, key.value))
        with cur.copy("COPY vindex_nodes (topic, kafka_partition, depth, prefix, map_size, hash,"
                      " leaf_key, list_hash) FROM STDIN") as copy:
            for (depth, prefix), node in index.tree.nodes().items():
                copy.write_row((topic, partition, depth, prefix.to_bytes((depth + 7) // 8, "big"),
                                index.size, node.hash, node.leaf_key, node.list_hash))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE vindex_entries")
        conn.execute("VACUUM ANALYZE vindex_nodes")


def lookups(url: str, index: IndexMap, present: list[MapKey], topic: str, partition: int,
            count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    root, size = index.tree.root(), index.size
    proof_times: list[float] = []
    plain_times: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn:
        store = StoredIndex(conn, topic, partition)
        for n in range(count):
            key = rng.choice(present) if n % 2 == 0 else MapKey("protocol", f"2099{n:011d}")
            started = time.perf_counter()
            conn.execute("SELECT leaf_index FROM vindex_entries WHERE topic = %s AND"
                         " kafka_partition = %s AND key_hash = %s AND leaf_index < %s"
                         " ORDER BY leaf_index", (topic, partition, key.hash, size)).fetchall()
            plain_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            proof = store.prove(key, size)
            result = verify_lookup(proof, root, size, key)
            proof_times.append(time.perf_counter() - started)
            expected = index.lists.get(key.hash)
            if (None if expected is None else tuple(expected)) != result:
                raise SystemExit(f"lookup of {key} gave {result}, expected {expected}")
    return {
        "leaves": size, "keys": len(index.lists), "nodes": len(index.tree.nodes()),
        "lookups": count,
        "proof_p50_ms": round(1000 * statistics.median(proof_times), 3),
        "proof_p99_ms": round(1000 * percentile(proof_times, 0.99), 3),
        "plain_p50_ms": round(1000 * statistics.median(plain_times), 3),
        "plain_p99_ms": round(1000 * percentile(plain_times, 0.99), 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--every", type=int, default=1000, help="leaves per checkpoint (default 1000)")
    p.add_argument("--batch-size", type=int, default=2000)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--leaves", type=int, default=1_000_000, help="leaves of the lookup map")
    p.add_argument("--lookups", type=int, default=2000)
    p.add_argument("--seed", type=int, default=6523)
    p.add_argument("--skip-maintenance", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    result: dict[str, Any] = {"params": vars(args) | {"json": str(args.json)}}
    with backend() as be:
        scratch = Scratch(be, args.partitions)
        try:
            url = scratch.database("index")
            migrate_connect(url).close()
            if not args.skip_maintenance:
                say(f"Simulating and publishing {args.events:,} events ...")
                events = simulate(url, args.events, args.seed)
                keys = load_keys(be.home)
                sealer = PersonalDataSealer(BlindIndex(keys.index_key), KeyVault(url, keys.master_key))
                topic = scratch.topic("index")
                time_publisher(be.kafka_bootstrap, topic, sealer, events, 2000)
                say("Projecting (the reference) ...")
                run = time_projector(be.kafka_bootstrap, url, topic, f"bench-{uuid.uuid4().hex[:8]}",
                                     args.batch_size, len(events), [])
                say(f"Maintaining the index, a checkpoint every {args.every} leaves ...")
                seconds, signed = maintenance(url, topic, args.every)
                result["maintenance"] = {
                    "events": len(events), "projector_s": round(run.without_join, 3),
                    "index_s": round(seconds, 3), "index_checkpoints": signed,
                    "share": round(seconds / run.without_join, 4)}
                m = result["maintenance"]
                print(f"maintenance: index {m['index_s']} s for {m['events']:,} leaves "
                      f"({signed} index checkpoints) vs projector {m['projector_s']} s: "
                      f"share {100 * m['share']:.1f} % (target <= 15 %)")
            say(f"Building a {args.leaves:,}-leaf map ...")
            started = time.perf_counter()
            index, present = synthetic_map(args.leaves, args.seed)
            build = time.perf_counter() - started
            write_map(url, index, "bench.lookup", 0)
            say(f"  built in memory in {build:.1f} s; timing {args.lookups} lookups ...")
            result["lookup"] = lookups(url, index, present, "bench.lookup", 0, args.lookups,
                                       args.seed)
            result["lookup"]["build_in_memory_s"] = round(build, 1)
            lk = result["lookup"]
            print(f"lookup proof at {lk['leaves']:,} leaves ({lk['keys']:,} keys, {lk['nodes']:,} "
                  f"nodes): generation+verification p50 {lk['proof_p50_ms']} ms, p99 "
                  f"{lk['proof_p99_ms']} ms (target <= 5 ms); unverified SELECT p50 "
                  f"{lk['plain_p50_ms']} ms, p99 {lk['plain_p99_ms']} ms; ratio p99 "
                  f"{lk['proof_p99_ms'] / max(lk['plain_p99_ms'], 1e-6):.1f}x")
        finally:
            scratch.cleanup()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
