"""Projection against what PostgreSQL alone accepts and what a bare consumer reads.

    python bench/projection_bench.py [--events N] [--batch-size B] [--repeat R]
                                     [--consumer kafka-python[,confluent]] [--index]
                                     [--profile DIR] [--json FILE]

Three things, **in the same run, on the same topic, interleaved** and best of ``--repeat``
(the 2-core machine is shared):

1. the projector: ``Projector.run(until_caught_up=True)`` into a fresh database, end to
   end (decode, journal, Merkle append, views, offsets) and without the consumer-group join;
2. PostgreSQL alone: the **exact rows** the first projector run wrote (every table it
   writes: journal, quarantine, merkle_nodes, projector_offsets and every view table, read
   back with ``COPY ... TO STDOUT (FORMAT BINARY)`` into memory), written into a fresh
   database of the same schema (same migrations: same indexes, constraints and triggers)
   with ``COPY ... FROM STDIN (FORMAT BINARY)`` in one transaction; and the same rows in
   text COPY, one transaction per ``--batch-size`` journal rows (the other tables cut in
   the same proportion), as the projector commits;
3. the fastest bare consumer available here reading the same topic to its end (assign all
   partitions, from the beginning, ``max_records`` = the projector's batch, the projector's
   fetch limits): ``kafka-python`` always; ``confluent`` when ``confluent_kafka`` is
   importable. The reference consumers are the :data:`REFERENCE_CONSUMERS` table, so
   another client is one entry.

The figure that matters: projector / min(PostgreSQL alone, fastest consumer).

With ``--index``, the verifiable index map is built too, as the checkpointer builds it
after projection (``checkpoint_partitions``: signed checkpoints and ``commit_index``), timed
after each projector run; the COPY reference then also holds the rows that writes
(checkpoints, vindex_entries, vindex_nodes, vindex_checkpoints), and a second ratio is
printed for projection + index.

``--profile DIR`` adds the wall-time split and cProfile of the projector
(``ledger_bench.profile_projector``). Backend as ``ledger_bench.py``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kafka
import psycopg
from psycopg import sql

from protocolo.consumers.projector import ProjectorOptions
from protocolo.core.config import Settings
from protocolo.projections.schema import connect as migrate_connect
from protocolo.projections.views import VIEW_TABLES, install_profiles

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ledger_bench  # noqa: E402  (bench/ledger_bench.py: backend, data, projector timing)
import rss_probe  # noqa: E402

TARGET = 0.5

#: Every table the projector writes, parents before children.
PROJECTOR_TABLES = ("projector_offsets", "journal", "quarantine", "merkle_nodes", *VIEW_TABLES)
#: What ``checkpoint_partitions`` adds (the signed checkpoints and the verifiable index map).
INDEX_TABLES = ("checkpoints", "vindex_entries", "vindex_nodes", "vindex_checkpoints")

say = ledger_bench.say


# --------------------------------------------------------------------------- reference consumers


def consume_kafka_python(bootstrap: str, topic: str, batch: int, expected: int) -> float:
    started = time.perf_counter()
    rss_probe.run_raw(bootstrap, topic, batch, expected)
    return time.perf_counter() - started


def consume_confluent(bootstrap: str, topic: str, batch: int, expected: int) -> float:
    """librdkafka: assign every partition from the beginning, ``consume(batch)`` until
    ``expected`` records are read, each value touched (as the kafka-python reference)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition  # type: ignore[import-not-found]

    started = time.perf_counter()
    limits = rss_probe.fetch_limits(batch)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-reference-unused",
                         "enable.auto.commit": False, "fetch.max.bytes": limits["fetch_max_bytes"],
                         "max.partition.fetch.bytes": limits["max_partition_fetch_bytes"]})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records, deadline = 0, time.monotonic() + 300
        while records < expected:
            for message in consumer.consume(batch, timeout=0.5):
                if message.error() is None:
                    records += 1
                    _ = message.value()
            if time.monotonic() > deadline:
                raise RuntimeError(f"confluent consumer read {records} of {expected} records in 300 s")
    finally:
        consumer.close()
    return time.perf_counter() - started


def _confluent_available() -> bool:
    try:
        import confluent_kafka  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


#: name -> (available?, seconds to read ``expected`` records of the topic).
REFERENCE_CONSUMERS: dict[str, tuple[Callable[[], bool], Callable[[str, str, int, int], float]]] = {
    "kafka-python": (lambda: True, consume_kafka_python),
    "confluent": (_confluent_available, consume_confluent),
}


# --------------------------------------------------------------------------- PostgreSQL alone


class CapturedRows:
    """The rows a projection wrote, per table, as COPY data held in memory."""

    def __init__(self, url: str, tables: tuple[str, ...]) -> None:
        self.tables = tables
        self.binary: dict[str, bytes] = {}
        self.text: dict[str, list[bytes]] = {}
        self.counts: dict[str, int] = {}
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            for table in tables:
                self.binary[table] = self._copy_out(cur, table, "(FORMAT BINARY)")
                lines = self._copy_out(cur, table, "").splitlines(keepends=True)
                self.text[table] = lines
                self.counts[table] = len(lines)

    @staticmethod
    def _copy_out(cur: psycopg.Cursor[Any], table: str, options: str) -> bytes:
        out = io.BytesIO()
        with cur.copy(sql.SQL("COPY {} TO STDOUT {}").format(sql.Identifier(table), sql.SQL(options))) as copy:
            for block in copy:
                out.write(block)
        return out.getvalue()

    def nbytes(self) -> int:
        return sum(len(b) for b in self.binary.values())


def fresh_schema(url: str) -> None:
    """The ledger's migrations and policy data, as a projector's first start leaves them."""
    conn = migrate_connect(url)
    try:
        install_profiles(conn)
        conn.commit()
    finally:
        conn.close()


def copy_all_binary(url: str, rows: CapturedRows) -> float:
    """Seconds to COPY every captured row into the fresh database ``url``, one transaction."""
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur:
            for table in rows.tables:
                data = rows.binary[table]
                with cur.copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table))) as copy:
                    for i in range(0, len(data), 1 << 20):
                        copy.write(data[i:i + (1 << 20)])
        conn.commit()
        return time.perf_counter() - started


def copy_per_batch(url: str, rows: CapturedRows, batches: int) -> float:
    """Seconds to COPY the captured rows (text format) in ``batches`` transactions, each
    holding the same share of every table, as the projector commits batch by batch."""
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for b in range(batches):
            with conn.cursor() as cur:
                for table in rows.tables:
                    lines = rows.text[table]
                    part = lines[len(lines) * b // batches:len(lines) * (b + 1) // batches]
                    if not part:
                        continue
                    with cur.copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))) as copy:
                        copy.write(b"".join(part))
            conn.commit()
        return time.perf_counter() - started


# --------------------------------------------------------------------------- index (optional)


def build_index(url: str, topic: str) -> float:
    """Seconds for what the checkpointer does after projection: sign a checkpoint of every
    partition and commit the verifiable index map (``checkpoint_partitions``)."""
    from protocolo.attestation.checkpointer import checkpoint_partitions
    from protocolo.attestation.log_key import LogKey

    key = LogKey.generate("protocolo/bench")
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        checkpoint_partitions(conn, key, topic, "bench")
        return time.perf_counter() - started


# --------------------------------------------------------------------------- main


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=50_000, help="events to simulate (default 50000)")
    ap.add_argument("--batch-size", type=int, default=ProjectorOptions().batch_size)
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of each measurement; best is kept")
    ap.add_argument("--partitions", type=int, default=None)
    ap.add_argument("--seed", type=int, default=6523)
    ap.add_argument("--consumer", default=",".join(REFERENCE_CONSUMERS),
                    help="reference consumers, comma-separated (default: all; unavailable ones are skipped)")
    ap.add_argument("--index", action="store_true", help="also build the verifiable index map after each projection")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="also profile the projector (wall-time split, cProfile .pstats in DIR)")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE")
    args = ap.parse_args(argv)
    if args.events < 1 or args.batch_size < 1 or args.repeat < 1:
        ap.error("--events, --batch-size and --repeat must be at least 1")
    unknown = [c for c in args.consumer.split(",") if c not in REFERENCE_CONSUMERS]
    if unknown:
        ap.error(f"--consumer: unknown {', '.join(unknown)} (known: {', '.join(REFERENCE_CONSUMERS)})")
    return args


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - a bench script's sequence of steps
    args = _arguments(argv)
    n, batch, repeat = args.events, args.batch_size, args.repeat
    consumers = [c for c in args.consumer.split(",") if REFERENCE_CONSUMERS[c][0]()]
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "kafka_python": kafka.__version__, "loadavg_start": os.getloadavg()},
        "params": {"events": n, "batch_size": batch, "repeat": repeat, "consumers": consumers, "index": args.index},
        "warnings": [],
    }
    wall = time.perf_counter()
    with ledger_bench.backend() as be:
        scratch = ledger_bench.Scratch(be, args.partitions or Settings.from_env().partitions)
        result["backend"] = be.description
        try:
            say(f"Publishing {n:,} simulated events ({be.description}) ...")
            topic, result["data"] = ledger_bench.publish_simulated(be, scratch, n, args.seed), {"events": n}
            times: dict[str, list[float]] = {c: [] for c in consumers}
            times |= {"projector": [], "projector_without_join": [], "index": [], "copy_binary": [],
                      "copy_per_batch": []}
            captured: CapturedRows | None = None
            tables = PROJECTOR_TABLES + (INDEX_TABLES if args.index else ())
            for r in range(repeat):
                steps = ["projector", *consumers, "copy"]
                if r % 2:
                    steps.reverse()
                for step in steps:
                    if step == "projector":
                        url = scratch.database(f"proj{r}")
                        run = ledger_bench.time_projector(be.kafka_bootstrap, url, topic,
                                                          f"bench-{scratch.run_id}-proj{r}", batch, n,
                                                          result["warnings"])
                        times["projector"].append(run.total)
                        times["projector_without_join"].append(run.without_join)
                        msg = (f"projector {n / run.total:,.0f}/s end to end, {n / run.without_join:,.0f}/s "
                               f"without the {run.join:.2f} s join (tail {run.tail:.2f} s)")
                        if args.index:
                            dt = build_index(url, topic)
                            times["index"].append(dt)
                            msg += f"; index {n / dt:,.0f}/s"
                        if captured is None:
                            captured = CapturedRows(url, tables)
                            result["rows"] = dict(captured.counts)
                            say(f"  captured {sum(captured.counts.values()):,} rows, "
                                f"{captured.nbytes() / 2**20:.1f} MiB binary: {captured.counts}")
                    elif step == "copy":
                        if captured is None:
                            continue  # the first round ran backwards: nothing captured yet
                        url = scratch.database(f"copy{r}b")
                        fresh_schema(url)
                        times["copy_binary"].append(copy_all_binary(url, captured))
                        url = scratch.database(f"copy{r}t")
                        fresh_schema(url)
                        times["copy_per_batch"].append(copy_per_batch(url, captured, max(1, -(-n // batch))))
                        msg = (f"COPY binary, one transaction {n / times['copy_binary'][-1]:,.0f}/s; text, "
                               f"per batch {n / times['copy_per_batch'][-1]:,.0f}/s")
                    else:
                        dt = REFERENCE_CONSUMERS[step][1](be.kafka_bootstrap, topic, batch, n)
                        times[step].append(dt)
                        msg = f"{step} consumer {n / dt:,.0f}/s"
                    say(f"  {r + 1}/{repeat} {msg}")
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                result["profile"] = ledger_bench.profile_projector(be, scratch, topic, batch, n, args.profile)
        finally:
            scratch.cleanup()
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["wall_seconds"] = time.perf_counter() - wall
    result["seconds"] = times
    result["rates"] = rates = {k: n / min(v) for k, v in times.items() if v}
    report(result, rates, consumers, args.index)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


def report(result: dict[str, Any], rates: dict[str, float], consumers: list[str], index: bool) -> None:
    fastest = max(consumers, key=lambda c: rates[c])
    database = rates["copy_binary"]
    bound = min(database, rates[fastest])
    print(f"\n== Projection vs PostgreSQL alone and the fastest consumer ({result['params']['events']:,} events, "
          f"load {result['machine']['loadavg_start'][0]:.1f} -> {result['machine']['loadavg_end'][0]:.1f}) ==")
    n = result["params"]["events"]
    for name, rate in sorted(rates.items(), key=lambda kv: -kv[1]):
        runs = ", ".join(f"{n / s:,.0f}" for s in result["seconds"][name])
        print(f"  {name:<26}{rate:>12,.0f} events/s   (runs: {runs})")
    print(f"  reference: min(COPY binary {database:,.0f}, {fastest} {rates[fastest]:,.0f}) = {bound:,.0f}/s")
    caveat = " (the COPY holds the index rows too: read the line below)" if index else ""
    for label, key in (("end to end", "projector"), ("without the join", "projector_without_join")):
        print(f"  projector {label}: {rates[key]:,.0f}/s = {rates[key] / bound:.3f} x the reference "
              f"(target {TARGET}){caveat}")
    if index and rates.get("index"):
        both = 1 / (1 / rates["projector_without_join"] + 1 / rates["index"])
        print(f"  projector + index map (without the join): {both:,.0f}/s = {both / bound:.3f} x the reference")
        result["ratio_with_index"] = both / bound
    result["reference_per_s"] = bound
    result["ratio"] = rates["projector"] / bound
    result["ratio_without_join"] = rates["projector_without_join"] / bound


if __name__ == "__main__":
    sys.exit(main())
