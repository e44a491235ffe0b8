"""What-if experiments behind bench/README.md: how far each candidate fix would move the ratios.

    python bench/whatif.py [publisher|projector|all] [--events N] [--repeat R]

Each variant is a bench-local subclass or runtime patch of the product (nothing on disk
changes) and is measured as a ratio against the raw client, in the same run, on the same
data, interleaved and best of R, like ``ledger_bench.py``. They are prototypes that
estimate a fix's ceiling, not implementations ready to merge: for instance the pipelined
projector has no quarantine and no conflict handling.

publisher variants
    publish_many                       as shipped
    validation skipped                 StructureValidator.check is a no-op: the ceiling of
                                       any faster structural validator
    prepare in a worker process        chunk k+1 prepared in a forked process while the main
                                       process sends chunk k (key cache warm in the fork)
    send_prepared only                 events prepared beforehand: the ceiling of any
                                       prepare() optimisation
projector variants
    projector                          as shipped (group join, until_caught_up)
    + tail fix                         caught_up() checked after every batch, not only after
                                       an empty poll (saves one poll_timeout_ms)
    + assign()                         no consumer group: all partitions assigned and sought
                                       to PostgreSQL's offsets (the fenced offset update
                                       still guards against a second writer)
    + pipelined writes                 batch k written to PostgreSQL by a writer thread
                                       while batch k+1 is polled and decoded
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ledger_bench as lb  # noqa: E402
from kafka import TopicPartition  # noqa: E402

from protocolo.consumers.projector import Projector, ProjectorOptions, ProjectorStats  # noqa: E402
from protocolo.consumers.tracking import PartitionProgress, Position  # noqa: E402
from protocolo.core.deployment_keys import load_keys  # noqa: E402
from protocolo.core.personal_data import BlindIndex, KeyVault, PersonalDataSealer  # noqa: E402
from protocolo.producers.publisher import Event, LedgerPublisher, PreparedEvent, PublisherOptions  # noqa: E402
from protocolo.producers.simulator import chunks  # noqa: E402
from protocolo.projections.journal import JournalRow, write_journal  # noqa: E402
from protocolo.projections.schema import connect  # noqa: E402
from protocolo.schemas.validation import StructureValidator  # noqa: E402

# --------------------------------------------------------------------------- projector variants


class TailFix(Projector):
    """run(until_caught_up=True) that checks caught_up() after every batch."""

    def run(self, until_caught_up: bool = False, idle_timeout_s: float | None = None) -> ProjectorStats:
        assert until_caught_up
        deadline = time.monotonic() + (idle_timeout_s or 120)
        while not self.caught_up():
            if self.step():
                deadline = time.monotonic() + (idle_timeout_s or 120)
            elif time.monotonic() > deadline:
                raise RuntimeError("no progress")
        return self.stats


class Assign(TailFix):
    """No consumer group: assign every partition, seek to the offsets in PostgreSQL."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        consumer = self._consumer.consumer  # the kafka-python KafkaConsumer under the interface
        consumer.unsubscribe()
        tps = {TopicPartition(self.topic, p) for p in consumer.partitions_for_topic(self.topic)}
        consumer.assign(list(tps))
        self._seek_to_stored({tp.partition for tp in tps})


class Pipelined(Assign):
    """Batch k is written by a writer thread while batch k+1 is polled and decoded.

    Positions ``_ahead`` include the batch in flight, so batch k+1's fenced offset update
    expects what batch k will have stored. One write in flight at a time."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._writer = ThreadPoolExecutor(1)
        self._inflight: Future | None = None
        self._ahead: dict[int, Position | None] = {}

    def _write(self, rows: list[JournalRow], progress: list[PartitionProgress]) -> None:
        with self._conn.transaction(), self._conn.cursor() as cur:
            write_journal(cur, self.topic, rows)
            self._tracking.advance(cur, progress)  # noqa: SLF001
        self._conn.commit()
        self._positions.advance(progress)  # noqa: SLF001
        self.stats.batches += 1
        self.stats.journaled += len(rows)

    def _wait(self) -> None:
        if self._inflight is not None:
            self._inflight.result()
            self._inflight = None

    def step(self) -> int:
        polled = self._consumer.consumer.poll(timeout_ms=self.options.poll_timeout_ms, max_records=self.options.batch_size)
        rows: list[JournalRow] = []
        progress: list[PartitionProgress] = []
        for tp, records in polled.items():
            at = self._ahead.get(tp.partition, self._positions.stored.get(tp.partition))
            next_offset, leaf = (at.next_offset, at.next_leaf_index) if at else (0, 0)
            for record in records:
                if record.offset < next_offset:
                    continue
                row = self._processor.decoder.decode(record, leaf)  # noqa: SLF001
                assert isinstance(row, JournalRow), "prototype: no quarantine"
                rows.append(row)
                leaf += 1
                next_offset = record.offset + 1
            progress.append(PartitionProgress(tp.partition, at.next_offset if at else None, next_offset, leaf))
            self._ahead[tp.partition] = Position(next_offset, leaf)
        self._wait()
        if rows:
            self._inflight = self._writer.submit(self._write, rows, progress)
        return len(rows)

    def caught_up(self) -> bool:
        assignment = self._consumer.consumer.assignment()
        for tp in assignment:
            high = self._consumer.consumer.highwater(tp)
            at = self._ahead.get(tp.partition, self._positions.stored.get(tp.partition))
            if high is None or (at.next_offset if at else 0) < high:
                return False
        self._wait()
        return bool(assignment)

    def close(self) -> None:
        self._wait()
        self._writer.shutdown()
        super().close()


# --------------------------------------------------------------------------- publisher variants

_FORKED: dict[str, Any] = {}


def _prepare_range(i: int, j: int) -> list[tuple]:
    publisher: LedgerPublisher = _FORKED["publisher"]
    return [(p.event_type, p.event_id, p.key, p.value, p.headers)
            for p in (publisher.prepare(e) for e in _FORKED["events"][i:j])]


def time_parallel_prepare(bootstrap: str, topic: str, sealer: PersonalDataSealer, pool: ProcessPoolExecutor,
                          n: int, chunk: int) -> float:
    with LedgerPublisher(bootstrap, producer_name="protocolo-bench", topic=topic, sealer=sealer) as publisher:
        started = time.perf_counter()
        bounds = [(i, min(i + chunk, n)) for i in range(0, n, chunk)]
        future = pool.submit(_prepare_range, *bounds[0])
        for k in range(len(bounds)):
            part = [PreparedEvent(*x) for x in future.result()]
            if k + 1 < len(bounds):
                future = pool.submit(_prepare_range, *bounds[k + 1])
            publisher.send_prepared(part)
        return time.perf_counter() - started


def time_send_prepared(bootstrap: str, topic: str, sealer: PersonalDataSealer, prepared: list[PreparedEvent],
                       chunk: int) -> float:
    with LedgerPublisher(bootstrap, producer_name="protocolo-bench", topic=topic, sealer=sealer) as publisher:
        started = time.perf_counter()
        for part in chunks(prepared, chunk):  # type: ignore[arg-type]
            publisher.send_prepared(part)
        return time.perf_counter() - started


def time_without_validation(bootstrap: str, topic: str, sealer: PersonalDataSealer, events: list[Event],
                            chunk: int) -> float:
    original = StructureValidator.check
    StructureValidator.check = lambda self, record: None  # type: ignore[method-assign]
    try:
        return lb.time_publisher(bootstrap, topic, sealer, events, chunk)
    finally:
        StructureValidator.check = original  # type: ignore[method-assign]


# --------------------------------------------------------------------------- main


def time_variant(cls: type[Projector], be: lb.Backend, scratch: lb.Scratch, topic: str, tag: str,
                 batch: int, n: int) -> float:
    started = time.perf_counter()
    projector = cls(be.kafka_bootstrap, scratch.database(tag), topic=topic, group_id=f"whatif-{scratch.run_id}-{tag}",
                    options=ProjectorOptions(batch_size=batch))
    try:
        stats = projector.run(until_caught_up=True, idle_timeout_s=120)
        elapsed = time.perf_counter() - started
    finally:
        projector.close()
    if stats.journaled != n:
        raise RuntimeError(f"{cls.__name__}: {stats.journaled} of {n} journaled")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("which", nargs="?", default="all", choices=("publisher", "projector", "all"))
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=2000)
    args = ap.parse_args()
    n, chunk, batch = args.events, args.chunk, args.batch_size
    seconds: dict[str, list[float]] = {}

    def record(name: str, dt: float) -> None:
        seconds.setdefault(name, []).append(dt)
        lb.say(f"  {name:<44} {n / dt:>9,.0f} events/s")

    with lb.backend() as be:
        scratch = lb.Scratch(be, 6)
        try:
            base = scratch.database("base")
            connect(base).close()
            events = lb.simulate(base, n, 6523)
            keys = load_keys(be.home)
            sealer = PersonalDataSealer(BlindIndex(keys.index_key), KeyVault(base, keys.master_key))
            warm = LedgerPublisher(be.kafka_bootstrap, producer_name="protocolo-bench", topic=scratch.topic("warm"),
                                   sealer=sealer)
            prepared = [warm.prepare(e) for e in events]  # also warms the key cache
            config = lb.raw_producer_config(PublisherOptions())
            topic = scratch.topic("log")
            lb.time_raw_produce(be.kafka_bootstrap, topic, prepared, config)
            if args.which in ("publisher", "all"):
                _FORKED.update(publisher=warm, events=events)
                pool = ProcessPoolExecutor(1, mp_context=mp.get_context("fork"))
                pool.submit(_prepare_range, 0, 1).result()
                try:
                    for r in range(args.repeat):
                        t = lambda label, r=r: scratch.topic(f"{label}{r}")  # noqa: E731
                        record("raw produce", lb.time_raw_produce(be.kafka_bootstrap, t("raw"), prepared, config))
                        record("publish_many", lb.time_publisher(be.kafka_bootstrap, t("pub"), sealer, events, chunk))
                        record("publish_many, validation skipped",
                               time_without_validation(be.kafka_bootstrap, t("nv"), sealer, events, chunk))
                        record("prepare in a worker process, overlapped",
                               time_parallel_prepare(be.kafka_bootstrap, t("par"), sealer, pool, n, chunk))
                        record("send_prepared only (prepare free)",
                               time_send_prepared(be.kafka_bootstrap, t("sp"), sealer, prepared, chunk))
                finally:
                    pool.shutdown()
            if args.which in ("projector", "all"):
                for r in range(args.repeat):
                    record("raw consume", lb.time_raw_consume(be.kafka_bootstrap, topic, batch, n))
                    record("projector", time_variant(Projector, be, scratch, topic, f"a{r}", batch, n))
                    record("projector + tail fix", time_variant(TailFix, be, scratch, topic, f"b{r}", batch, n))
                    record("projector + tail fix + assign()", time_variant(Assign, be, scratch, topic, f"c{r}", batch, n))
                    record("  ... + pipelined PostgreSQL writes", time_variant(Pipelined, be, scratch, topic, f"d{r}", batch, n))
            warm.close()
        finally:
            scratch.cleanup()

    print(f"\nwhat-if, {n:,} events, best of {args.repeat}, {lb.os.cpu_count()} cores, "
          f"CRC32C {'C extension' if lb._crc32c_native() else 'pure Python'}")  # noqa: SLF001 - probes kafka-python for its C CRC path
    print(f"{'variant':<46}{'events/s':>10}{'ratio':>8}   runs (s)")
    for name, xs in seconds.items():
        raw = "raw produce" if name.startswith(("raw produce", "publish", "prepare", "send")) else "raw consume"
        print(f"{name:<46}{n / min(xs):>10,.0f}{min(seconds[raw]) / min(xs):>8.2f}   "
              + " ".join(f"{x:.2f}" for x in xs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
