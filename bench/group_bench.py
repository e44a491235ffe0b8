"""N projector processes in one consumer group, one PostgreSQL: rate and sameness.

    python bench/group_bench.py [--events N] [--processes 1,2,3] [--json FILE]

One topic of ``N`` simulated events (6 partitions, published with ``publish_many``). For
each count of processes, a fresh database and a fresh group: that many ``protocolo``
projector processes (``Projector.run()``, the long-running service's loop, each its own
interpreter) are started together; the bench polls ``projector_offsets`` until every
record is projected, then stops them. The rate counts from the start of the processes (the
group join included, as a deployment pays it). Every database must then hold the same
ledger: journal rows and leaf hashes, tree heads (compact ranges), signed-nothing views
(interactions, customer_index, recordings, retrieval_requests) compared by digest with
the one-process database. Embedded stack or configured URLs, as ledger_bench.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ledger_bench import Scratch, backend, publish_simulated, say  # noqa: E402

from protocolo.projections.schema import connect as migrate_connect  # noqa: E402

MEMBER = """
import sys
from protocolo.consumers.projector import Projector, ProjectorOptions
bootstrap, url, topic, group = sys.argv[1:5]
Projector(bootstrap, url, topic=topic, group_id=group, options=ProjectorOptions(batch_size=2000)).run()
"""

DIGESTS = {
    "journal": "SELECT count(*), md5(string_agg(kafka_partition || ':' || kafka_offset || ':' || encode(leaf_hash, 'hex'),"
               " ',' ORDER BY kafka_partition, kafka_offset)) FROM journal",
    "tree heads": "SELECT count(*), md5(string_agg(kafka_partition || ':' || tree_size || ':' || array_to_string(compact_range::text[], '.'),"
                  " ',' ORDER BY kafka_partition)) FROM projector_offsets",
    "merkle_nodes": "SELECT count(*), md5(string_agg(encode(hash, 'hex'), ',' ORDER BY kafka_partition, level, node_index)) FROM merkle_nodes",
    "interactions": "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY protocol_number)) FROM interactions t",
    "customer_index": "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY index_kind, index_value, protocol_number)) FROM customer_index t",
    "recordings": "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY recording_id)) FROM recordings t",
    "retrieval_requests": "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY request_id)) FROM retrieval_requests t",
}


def projected(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM projector_offsets").fetchone()
        return int(row[0]) if row else 0


def digests(url: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {name: list(conn.execute(query).fetchone() or ()) for name, query in DIGESTS.items()}


def run_group(bootstrap: str, url: str, topic: str, group: str, processes: int, total: int) -> float:
    started = time.perf_counter()
    members = [subprocess.Popen([sys.executable, "-c", MEMBER, bootstrap, url, topic, group],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(processes)]
    try:
        while projected(url) < total:
            if any(m.poll() is not None for m in members):
                errors = [m.stderr.read().decode()[-2000:] for m in members if m.poll() is not None and m.stderr]
                raise SystemExit(f"a projector process ended early: {errors}")
            time.sleep(0.2)
        return time.perf_counter() - started
    finally:
        for m in members:
            if m.poll() is None:
                m.send_signal(signal.SIGTERM)
        for m in members:
            try:
                m.wait(timeout=30)
            except subprocess.TimeoutExpired:
                m.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--processes", default="1,2,3")
    ap.add_argument("--seed", type=int, default=6523)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    counts = [int(x) for x in args.processes.split(",")]
    result: dict[str, Any] = {"events": args.events, "loadavg_start": os.getloadavg(), "runs": []}
    with backend() as be:
        scratch = Scratch(be, 6)
        try:
            topic = publish_simulated(be, scratch, args.events, args.seed, "group")
            reference: dict[str, Any] | None = None
            for n in counts:
                url = scratch.database(f"g{n}")
                migrate_connect(url).close()
                seconds = run_group(be.kafka_bootstrap, url, topic, f"bench-{scratch.run_id}-g{n}", n, args.events)
                found = digests(url)
                reference = reference or found
                same = found == reference
                result["runs"].append({"processes": n, "seconds": seconds, "per_s": args.events / seconds,
                                       "identical_to_first": same,
                                       "differs": [k for k in found if found[k] != reference[k]]})
                say(f"  {n} process(es): {args.events / seconds:,.0f} events/s ({seconds:.1f} s), "
                    f"ledger identical to the first run's: {same}")
        finally:
            scratch.cleanup()
    result["loadavg_end"] = os.getloadavg()
    first = result["runs"][0]["per_s"]
    for r in result["runs"]:
        print(f"{r['processes']} projector process(es): {r['per_s']:>8,.0f} events/s  x{r['per_s'] / first:.2f}"
              f"  identical: {r['identical_to_first']}{'' if not r['differs'] else ' ' + str(r['differs'])}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
