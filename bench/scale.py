"""A year of a large call centre: build a big ledger through the real pipeline, then time
the reads a dispute team makes on it.

    python bench/scale.py --dir /data/scale --events 1000000 [--json FILE] [--explain FILE]
    python bench/scale.py --dir /data/scale --events 1000000 --measure-only

Build (resumable). ``--dir`` is the run's own PROTOCOLO_HOME: the embedded Apache Kafka
and PostgreSQL keep their data there, with the deployment's keys and the log key. The
build simulates call-centre days (``CallCentreDay``, ``--day-contacts`` contacts each,
spread over the year before today), publishes them with ``LedgerPublisher.publish_many``
(validation, sealing, Avro), projects them with the ``Projector`` and signs a checkpoint of
every partition after each day (``checkpoint_partitions``, which also commits the
verifiable index map). Re-running it continues where it stopped: what counts is what is on
the topic (the sum of its end offsets), so an interrupted day is neither lost nor repeated;
the projector resumes from its offsets in PostgreSQL and the checkpointer from the last
signed size.

Measure. On ``--samples`` random contacts, customers and leaves, p50/p99/max (ms) of:

* ``history`` by protocol: ``projections.history.timelines`` (what the CLI and the API run);
* ``history`` by CPF: ``protocols_for_customer`` + ``requests_for_customer`` + ``timelines``;
* by customer code within a 30-day window, the same functions with the window;
* the API's search by CPF: ``history.search_contacts`` (the route's query; the route also
  publishes an AccessRecorded, measured in bench/api_load.py);
* the **verified** read of a contact (``attestation.verified_read.verify_contact``) with the
  plain read (``timelines``) of the same contact as the reference, interleaved;
* one inclusion proof (``evidence.merkle.inclusion_proof`` over ``merkle_store.node_reader``,
  verified against the signed checkpoint's root, untimed) and one index lookup proof
  (``StoredIndex.prove`` + ``verify_lookup`` against the signed map root), with the plain
  ``SELECT`` of the key's leaf indexes as its reference.

Then the storage: bytes per event of every table and index in PostgreSQL, biggest first,
and ``EXPLAIN (ANALYZE, BUFFERS)`` of every statement those reads send (captured from the
connection while one read of each kind runs) into ``--explain`` (markdown).

No figure is asserted; ratios are against references measured in the same run (see
bench/README.md, "Scale").
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import random
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

EVENTS_PER_CONTACT = 5.5  # what CallCentreDay produces on average
STATE_FILE = "scale-state.json"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- build


def _state(home: Path) -> dict[str, Any]:
    path = home / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {"days": 0, "phases": []}


def _save_state(home: Path, state: dict[str, Any]) -> None:
    tmp = home / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    tmp.replace(home / STATE_FILE)


def on_topic(bootstrap: str, topic: str) -> int:
    """Records on the topic: the sum of its partitions' end offsets (the ledger topic is
    never compacted or truncated)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return sum(ends.values())
    finally:
        consumer.close()


def projected(conn: psycopg.Connection[Any], topic: str) -> int:
    row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM projector_offsets WHERE topic = %s",
                       (topic,)).fetchone()
    return int(row[0]) if row else 0


class Daemon:
    """A ``protocolo`` daemon (``project``, ``checkpoint``) in its own process, as production
    runs them, so that its work overlaps simulating and publishing on a machine with more
    than one core."""

    def __init__(self, home: Path, argv: list[str]) -> None:
        import subprocess

        cli = Path(sys.executable).parent / "protocolo"
        self.name = argv[0]
        self.peak_kb: int | None = None
        self.log = (home / f"scale-{self.name}.log").open("ab")
        self.proc = subprocess.Popen([str(cli), *argv], stdout=self.log, stderr=self.log,
                                     env={**os.environ, "PROTOCOLO_HOME": str(home)})

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"protocolo {self.name} ended with status {self.proc.returncode}; see {self.log.name}")

    def peak_rss_kb(self) -> int | None:
        """The daemon's own peak resident set so far (VmHWM), read while it still runs."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.peak_kb = self.peak_rss_kb()
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=300)
        self.log.close()


def build(rt: Any, target: int, day_contacts: int, seed: int, checkpoint_days: int = 1,
          overlap: bool = False) -> dict[str, Any]:
    """Publish, project and checkpoint simulated days until ``target`` records are on the
    topic and projected; returns the rates of each stage (this run only).

    Serial (the default): publish a day, project it, sign checkpoints every
    ``checkpoint_days`` days. With ``overlap`` the projector and the checkpointer run as
    daemons (``protocolo project``, ``protocolo checkpoint --every-leaves``) the whole time,
    as in production, and this process only simulates and publishes, then signs the last
    checkpoints once everything is projected; the projector's rate is then what it reached
    while sharing the machine with the publisher and the checkpointer."""
    from protocolo.attestation.checkpointer import checkpoint_partitions
    from protocolo.attestation.config import AttestationSettings
    from protocolo.attestation.log_key import load_log_key
    from protocolo.attestation.publication import KafkaCheckpointPublisher
    from protocolo.producers.protocol_issuer import ProtocolIssuer
    from protocolo.producers.simulator import CallCentreDay, chunks

    home, topic = rt.settings.home, rt.settings.topic
    state = _state(home)
    attestation = AttestationSettings.from_env()
    key = load_log_key(rt.settings, attestation.deployment)
    spent = {"simulate": 0.0, "publish": 0.0, "project": 0.0, "checkpoint": 0.0}
    counts = {"published": 0, "projected": 0}
    started = time.monotonic()
    background = Daemon(home, ["project", "--quiet"]) if overlap else None
    signer = Daemon(home, ["checkpoint", "--every-leaves", str(day_contacts * checkpoint_days), "--quiet"]) \
        if overlap else None
    with contextlib.ExitStack() as stack:
        for daemon in (background, signer):
            if daemon is not None:
                stack.callback(daemon.stop)
        publisher = stack.enter_context(rt.publisher("protocolo-scale"))
        projector = None if overlap else stack.enter_context(rt.projector(batch_size=2000))
        cp_publisher = stack.enter_context(KafkaCheckpointPublisher(rt.kafka_bootstrap, attestation.checkpoint_topic))
        conn = stack.enter_context(rt.connect(autocommit=True))
        issuer = stack.enter_context(ProtocolIssuer(rt.registry_url, block_size=1000))
        first_projected = projected(conn, topic)
        days_here = 0
        while True:
            have = on_topic(rt.kafka_bootstrap, topic)
            if have < target:
                day_no = state["days"]
                state["days"] = day_no + 1
                _save_state(home, state)  # a re-run never repeats a seed
                wanted = min(day_contacts, math.ceil((target - have) / EVENTS_PER_CONTACT) + 50)
                t = time.monotonic()
                day = CallCentreDay(issuer.issue, contacts=wanted, seed=seed + day_no,
                                    days_ago=365 - (day_no * 7) % 360).build()
                events = day.events[: target - have]
                spent["simulate"] += time.monotonic() - t
                t = time.monotonic()
                for part in chunks(events, 2000):
                    publisher.publish_many(part)
                spent["publish"] += time.monotonic() - t
                counts["published"] += len(events)
                days_here += 1
                say(f"  day {day_no}: {len(events):,} events published "
                    f"({have + len(events):,}/{target:,} on the topic, {len(events) / (time.monotonic() - t):,.0f}/s)")
            before = projected(conn, topic)
            if projector is not None:
                t = time.monotonic()
                projector.run(until_caught_up=True, idle_timeout_s=120)
                spent["project"] += time.monotonic() - t
                if projector.stop_requested:  # Ctrl-C reached the projector's handler
                    raise KeyboardInterrupt
            elif have >= target:
                _wait_projected(conn, topic, have, background)
            else:
                for daemon in (background, signer):
                    assert daemon is not None
                    daemon.check()
            done = projected(conn, topic)
            counts["projected"] += done - before
            if overlap:  # the daemon also projected while this process published
                counts["projected"] = done - first_projected
                spent["project"] = time.monotonic() - started
                say(f"  projected {done:,} so far ({(done - first_projected) / max(spent['project'], 1e-9):,.0f}/s "
                    f"this run, beside the publisher); {spent['project']:,.0f} s so far")
            finished = have >= target and done >= have
            if finished or (not overlap and days_here % checkpoint_days == 0):
                if finished and signer is not None:
                    signer.stop()  # the last checkpoints are signed here, by one signer
                t = time.monotonic()
                made = checkpoint_partitions(conn, key, topic, attestation.deployment, publish=cp_publisher)
                spent["checkpoint"] += time.monotonic() - t
                say(f"  projected {done:,} ({(done - first_projected) / max(spent['project'], 1e-9):,.0f}/s this run), "
                    f"{len(made)} checkpoints signed ({spent['checkpoint']:.0f} s with the index so far); "
                    f"{time.monotonic() - started:,.0f} s so far")
            state.setdefault("log", []).append({"at": datetime.now(UTC).isoformat(timespec="seconds"),
                                                "on_topic": max(have, done), "projected": done,
                                                "seconds": dict(spent), "counts": dict(counts)})
            _save_state(home, state)  # what each pass cost survives an interruption
            if finished:
                break
    rates = {
        "mode": "overlapped" if overlap else "serial", "checkpoint_days": checkpoint_days,
        "publish_per_s": counts["published"] / spent["publish"] if spent["publish"] else None,
        "project_per_s": counts["projected"] / spent["project"] if spent["project"] else None,
        "checkpoint_index_s": spent["checkpoint"],
        "daemon_peak_rss_kb": {d.name: d.peak_kb for d in (background, signer) if d is not None},
        "seconds": spent, "counts": counts, "wall_s": time.monotonic() - started,
    }
    state["phases"].append({"at": datetime.now(UTC).isoformat(timespec="seconds"), **rates})
    _save_state(home, state)
    return rates


def _wait_projected(conn: psycopg.Connection[Any], topic: str, target: int, background: Daemon | None,
                    stall_s: float = 300.0) -> None:
    """Until ``target`` records are projected; a projector that makes no progress for
    ``stall_s`` seconds (or whose process ended) stops the build with its log's name."""
    last, since = projected(conn, topic), time.monotonic()
    while last < target:
        if background is not None:
            background.check()
        time.sleep(1.0)
        now = projected(conn, topic)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > stall_s:
            raise SystemExit(f"the projector made no progress for {stall_s:.0f} s at {last:,}/{target:,}")


# --------------------------------------------------------------------------- statements


class StatementLog:
    """Every statement a connection sends while ``recording`` (query text and parameters),
    to EXPLAIN them afterwards with the same parameters."""

    def __init__(self) -> None:
        self.recording = False
        self.seen: list[tuple[str, Any]] = []

    def cursor_class(self) -> type[psycopg.Cursor[Any]]:
        log = self

        class Recording(psycopg.Cursor):  # type: ignore[type-arg]
            def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:  # type: ignore[override]
                if log.recording:
                    text = query.as_string(self) if hasattr(query, "as_string") else str(query)
                    log.seen.append((text, params))
                return super().execute(query, params, **kw)

        return Recording

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[tuple[str, Any]]]:
        self.seen = []
        self.recording = True
        try:
            yield self.seen
        finally:
            self.recording = False


def explain(conn: psycopg.Connection[Any], statements: list[tuple[str, Any]]) -> list[str]:
    plans = []
    for text, params in statements:
        if not text.lstrip().upper().startswith(("SELECT", "WITH")):
            continue
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + text, params).fetchall()  # type: ignore[arg-type]
        plans.append(text.strip() + "\n\n" + "\n".join(r[0] for r in rows))
    return plans


# --------------------------------------------------------------------------- measure


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"n": len(s), "p50_ms": round(1000 * statistics.median(s), 3),
            "p99_ms": round(1000 * s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)], 3),
            "max_ms": round(1000 * s[-1], 3)}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


@dataclasses.dataclass
class Sample:
    protocols: list[str]
    cpfs: list[str]
    codes: list[tuple[str, datetime]]
    leaves: list[tuple[int, int]]  # (partition, leaf index)


def sample(conn: psycopg.Connection[Any], topic: str, n: int, seed: int) -> Sample:
    rng = random.Random(seed)
    total = int(conn.execute("SELECT count(*) FROM interactions").fetchone()[0])  # type: ignore[index]
    pct = min(100.0, 100.0 * 3 * n / max(total, 1))
    rows = conn.execute(f"SELECT protocol_number, cpf_index, customer_code_index, opened_at FROM interactions"
                        f" TABLESAMPLE BERNOULLI ({pct}) WHERE opened_at IS NOT NULL").fetchall()
    rng.shuffle(rows)
    rows = rows[:n]
    sizes = conn.execute("SELECT kafka_partition, tree_size FROM projector_offsets WHERE topic = %s"
                         " AND tree_size > 0", (topic,)).fetchall()
    leaves = []
    for _ in range(n):
        partition, size = rng.choice(sizes)
        leaves.append((int(partition), rng.randrange(int(size))))
    return Sample([r[0] for r in rows], [r[1] for r in rows if r[1]],
                  [(r[2], r[3]) for r in rows if r[2]], leaves)


class Reads:
    """The reads timed, each a function of one sample item."""

    def __init__(self, conn: psycopg.Connection[Any], topic: str, keys: Any, catalogue: Any) -> None:
        from protocolo.attestation.index_store import StoredIndex
        from protocolo.projections import history

        self.conn, self.topic, self.keys, self.catalogue = conn, topic, keys, catalogue
        self.history = history
        self.signed: dict[int, tuple[int, bytes]] = {}
        self.maps: dict[int, tuple[int, bytes]] = {}
        for p, size, root in conn.execute(
                "SELECT DISTINCT ON (kafka_partition) kafka_partition, tree_size, root_hash FROM checkpoints"
                " WHERE topic = %s ORDER BY kafka_partition, tree_size DESC", (topic,)):
            self.signed[int(p)] = (int(size), bytes(root))
            self.maps[int(p)] = StoredIndex(conn, topic, int(p)).latest()

    def by_protocol(self, protocol: str) -> Any:
        return self.history.timelines(self.conn, [protocol])

    def verified(self, protocol: str) -> Any:
        from protocolo.attestation.verified_read import VERIFIED, overlay_verified, verify_contact

        [timeline] = self.history.timelines(self.conn, [protocol])
        result = verify_contact(self.conn, self.topic, timeline, self.keys, self.catalogue)
        overlay_verified(timeline, result)
        if result.status != VERIFIED:
            raise SystemExit(f"verified read of {protocol}: {result.summary()}")
        return result

    def _customer(self, kind: str, value: str, start: datetime | None, end: datetime | None) -> Any:
        h = self.history
        protocols = h.protocols_for_customer(self.conn, kind, value, start, end)
        h.requests_for_customer(self.conn, kind, value, start, end)
        return h.timelines(self.conn, protocols)

    def by_cpf(self, cpf_index: str) -> Any:
        return self._customer("cpf", cpf_index, None, None)

    def by_code(self, item: tuple[str, datetime]) -> Any:
        code, at = item
        return self._customer("customer_code", code, at - timedelta(days=15), at + timedelta(days=15))

    def api_search(self, cpf_index: str) -> Any:
        filters = self.history.ContactFilters(cpf_index=cpf_index)
        return self.history.search_contacts(self.conn, filters, offset=0, limit=20, sort="-opened_at")

    def inclusion(self, leaf: tuple[int, int]) -> Any:
        from protocolo.evidence.merkle import inclusion_proof
        from protocolo.projections.merkle_store import node_reader

        partition, index = leaf
        size, _ = self.signed[partition]
        return inclusion_proof(index % size, size, node_reader(self.conn, self.topic, partition))

    def plain_leaf(self, leaf: tuple[int, int]) -> Any:
        partition, index = leaf
        return self.conn.execute(
            "SELECT leaf_hash FROM journal WHERE topic = %s AND kafka_partition = %s AND leaf_index = %s",
            (self.topic, partition, index % self.signed[partition][0])).fetchone()

    def lookup(self, item: tuple[int, str]) -> Any:
        from protocolo.attestation.index_store import StoredIndex
        from protocolo.evidence.vindex import MapKey, verify_lookup

        partition, protocol = item
        size, root = self.maps[partition]
        key = MapKey("protocol", protocol)
        proof = StoredIndex(self.conn, self.topic, partition).prove(key, size)
        return verify_lookup(proof, root, size, key)

    def plain_lookup(self, item: tuple[int, str]) -> Any:
        from protocolo.evidence.vindex import MapKey

        partition, protocol = item
        return self.conn.execute(
            "SELECT leaf_index FROM vindex_entries WHERE topic = %s AND kafka_partition = %s AND key_hash = %s"
            " AND leaf_index < %s ORDER BY leaf_index",
            (self.topic, partition, MapKey("protocol", protocol).hash, self.maps[partition][0])).fetchall()


def check_proofs(reads: Reads, leaves: list[tuple[int, int]]) -> None:
    """Every timed inclusion proof verifies against the signed root (untimed)."""
    from protocolo.evidence.proof import verify_inclusion

    for partition, index in leaves[:50]:
        size, root = reads.signed[partition]
        row = reads.conn.execute(
            "SELECT leaf_hash FROM journal WHERE topic = %s AND kafka_partition = %s AND leaf_index = %s"
            " UNION ALL SELECT leaf_hash FROM quarantine WHERE topic = %s AND kafka_partition = %s"
            " AND leaf_index = %s", (reads.topic, partition, index % size) * 2).fetchone()
        if row is not None:
            verify_inclusion(bytes(row[0]), index % size, size, reads.inclusion((partition, index)), root)


def lookup_items(conn: psycopg.Connection[Any], topic: str, protocols: list[str]) -> list[tuple[int, str]]:
    """(partition, protocol) of each sampled contact: the partition its events went to."""
    rows = dict(conn.execute("SELECT DISTINCT ON (entity_key) entity_key, kafka_partition FROM journal"
                             " WHERE topic = %s AND entity_key = ANY(%s)", (topic, protocols)).fetchall())
    return [(int(rows[p]), p) for p in protocols if p in rows]


def measure(rt: Any, samples: int, seed: int) -> tuple[dict[str, Any], dict[str, list[str]]]:
    from protocolo.attestation.pinned_log_keys import configured_log_keys
    from protocolo.schemas.catalogue import SchemaCatalogue

    log = StatementLog()
    topic = rt.settings.topic
    with psycopg.connect(rt.database_url, autocommit=True, cursor_factory=log.cursor_class()) as conn:
        picked = sample(conn, topic, samples, seed)
        reads = Reads(conn, topic, configured_log_keys(rt.settings), SchemaCatalogue.load())
        lookups = lookup_items(conn, topic, picked.protocols)
        check_proofs(reads, picked.leaves)
        pairs: dict[str, tuple[Callable[[Any], Any], list[Any]]] = {
            "by_protocol": (reads.by_protocol, picked.protocols),
            "verified_by_protocol": (reads.verified, picked.protocols),
            "by_cpf": (reads.by_cpf, picked.cpfs),
            "by_customer_code_30_days": (reads.by_code, picked.codes),
            "api_search_by_cpf": (reads.api_search, picked.cpfs),
            "inclusion_proof": (reads.inclusion, picked.leaves),
            "plain_leaf_select": (reads.plain_leaf, picked.leaves),
            "index_lookup_proof": (reads.lookup, lookups),
            "plain_index_select": (reads.plain_lookup, lookups),
        }
        for fn, items in pairs.values():  # warm the caches and the catalogue once
            for item in items[:5]:
                fn(item)
        times: dict[str, list[float]] = {name: [] for name in pairs}
        rounds = max(len(items) for _, items in pairs.values())
        for i in range(rounds):  # interleaved: every kind sees the same load
            for name, (fn, items) in pairs.items():
                if i < len(items):
                    times[name].append(timed(lambda: fn(items[i]))[0])  # noqa: B023
        plans: dict[str, list[str]] = {}
        for name, (fn, items) in pairs.items():
            if items:
                with log.capture() as seen:
                    fn(items[0])
                plans[name] = explain(conn, list(seen))
        figures = {name: percentiles(t) for name, t in times.items() if t}
    for verified, plain in (("verified_by_protocol", "by_protocol"), ("inclusion_proof", "plain_leaf_select"),
                            ("index_lookup_proof", "plain_index_select")):
        if verified in figures and plain in figures:
            figures[verified]["p50_ratio_to_plain"] = round(figures[verified]["p50_ms"] / figures[plain]["p50_ms"], 2)
            figures[verified]["p99_ratio_to_plain"] = round(figures[verified]["p99_ms"] / figures[plain]["p99_ms"], 2)
    return figures, plans


def storage(conn: psycopg.Connection[Any], events: int) -> dict[str, Any]:
    """Bytes per event of every relation (heap with TOAST, each index), biggest first."""
    rows = conn.execute(
        "SELECT c.relname, c.relkind, coalesce(t.relname, c.relname) AS owner,"
        " CASE WHEN c.relkind = 'r' THEN pg_relation_size(c.oid) + coalesce(pg_total_relation_size(c.reltoastrelid), 0)"
        " ELSE pg_relation_size(c.oid) END AS bytes"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'm') ORDER BY bytes DESC").fetchall()
    total = sum(int(r[3]) for r in rows)
    tables: dict[str, int] = {}
    for _, _, owner, size in rows:
        tables[owner] = tables.get(owner, 0) + int(size)
    return {
        "events": events, "total_bytes": total, "bytes_per_event": round(total / max(events, 1), 1),
        "tables": [{"table": t, "bytes": b, "bytes_per_event": round(b / max(events, 1), 1),
                    "share": round(b / max(total, 1), 3)} for t, b in sorted(tables.items(), key=lambda x: -x[1])],
        "relations": [{"name": r[0], "kind": "index" if r[1] == "i" else "table", "of": r[2], "bytes": int(r[3]),
                       "bytes_per_event": round(int(r[3]) / max(events, 1), 1)} for r in rows if int(r[3]) > 0],
    }


# --------------------------------------------------------------------------- main


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, required=True, help="the run's PROTOCOLO_HOME (data, keys); reused on re-runs")
    ap.add_argument("--events", type=int, default=1_000_000, help="records on the ledger topic to reach (default 1,000,000)")
    ap.add_argument("--day-contacts", type=int, default=20_000, help="contacts per simulated day (default 20,000)")
    ap.add_argument("--samples", type=int, default=500, help="contacts, customers and leaves timed (default 500)")
    ap.add_argument("--seed", type=int, default=6523)
    ap.add_argument("--overlap", action="store_true",
                    help="project in a separate `protocolo project` process while publishing (uses a second core)")
    ap.add_argument("--checkpoint-days", type=int, default=1,
                    help="sign checkpoints (and commit the index map) every N simulated days (default 1)")
    ap.add_argument("--measure-only", action="store_true", help="skip the build; measure what is there")
    ap.add_argument("--json", type=Path, default=None, help="write every figure as JSON")
    ap.add_argument("--explain", type=Path, default=None, help="write the EXPLAIN (ANALYZE, BUFFERS) plans (markdown)")
    ap.add_argument("--keep-running", action="store_true", help="leave the embedded stack up at the end")
    args = ap.parse_args(argv)
    if min(args.events, args.day_contacts, args.samples, args.checkpoint_days) < 1:
        ap.error("--events, --day-contacts, --samples and --checkpoint-days must be at least 1")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # SIGTERM, and SIGINT even where the shell started the bench in the background with it
    # ignored (POSIX does that for `cmd &` without job control), stop the build cleanly:
    # the daemons are stopped, the stack is brought down, and a re-run continues.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(_arguments(argv))
    except KeyboardInterrupt:
        say("interrupted: nothing is lost; run the same command again to continue")
        return 130


def run(args: argparse.Namespace) -> int:
    args.dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROTOCOLO_HOME"] = str(args.dir.resolve())
    from protocolo import devstack
    from protocolo.core.config import Settings
    from protocolo.runtime import Runtime

    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_start": os.getloadavg()},
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    rt = Runtime.start()
    try:
        if not args.measure_only:
            say(f"Building {args.events:,} events under {args.dir} ...")
            result["build"] = build(rt, args.events, args.day_contacts, args.seed,
                                    checkpoint_days=args.checkpoint_days, overlap=args.overlap)
        with rt.connect(autocommit=True) as conn:
            events = projected(conn, rt.settings.topic)
            conn.execute("ANALYZE")
            result["storage"] = storage(conn, events)
        say(f"Measuring on {events:,} events ({args.samples} samples each) ...")
        result["reads"], plans = measure(rt, args.samples, args.seed)
        result["machine"]["loadavg_end"] = os.getloadavg()
    finally:
        if not args.keep_running:
            devstack.down(Settings.from_env(), log=lambda m: say(f"  {m}"))
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.explain:
        text = [f"# EXPLAIN (ANALYZE, BUFFERS) at {events:,} events ({result['date']})\n"]
        for name, found in plans.items():
            text.append(f"## {name}\n")
            text += [f"```\n{p}\n```\n" for p in found]
        args.explain.write_text("\n".join(text))
    return 0


def report(res: dict[str, Any]) -> None:
    st = res["storage"]
    lines = ["", f"Protocolo scale bench {res['date']}: {st['events']:,} events, {res['machine']['cpus']} cores, "
             f"load {res['machine']['loadavg_start'][0]:.1f}->{res['machine'].get('loadavg_end', [0])[0]:.1f}"]
    if "build" in res and res["build"]["counts"]["published"] + res["build"]["counts"]["projected"]:
        b = res["build"]
        lines.append(f"build this run: publish {b['publish_per_s'] or 0:,.0f} ev/s, project {b['project_per_s'] or 0:,.0f} ev/s, "
                     f"checkpoints+index {b['checkpoint_index_s']:.1f} s, wall {b['wall_s']:,.0f} s")
    lines.append(f"{'read':<28}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'n':>6}  vs plain p50/p99")
    for name, f in res["reads"].items():
        ratio = f" x{f['p50_ratio_to_plain']}/x{f['p99_ratio_to_plain']}" if "p50_ratio_to_plain" in f else ""
        lines.append(f"{name:<28}{f['p50_ms']:>10.2f}{f['p99_ms']:>10.2f}{f['max_ms']:>10.2f}{f['n']:>6}  {ratio}")
    lines.append(f"storage: {st['total_bytes'] / 2**20:,.0f} MiB, {st['bytes_per_event']:,.0f} bytes/event; biggest:")
    for t in st["tables"][:8]:
        lines.append(f"  {t['table']:<32}{t['bytes_per_event']:>9,.0f} B/event  {100 * t['share']:>5.1f} %")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
