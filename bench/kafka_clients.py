"""Part 4 of ``ledger_bench.py``: both Kafka clients, each against its own raw client.

For each client (kafka-python, and librdkafka through confluent-kafka), in the same run,
on the same pre-encoded records, interleaved and best of ``--repeat``:

- raw produce: the client's bare producer, configured with **the same settings the
  publisher's producer gets** (the product's own ``producer_config`` builds both), sending
  the values ``publisher.prepare()`` made, then flushing; every delivery checked.
- ``publish_many``: ``LedgerPublisher(options=PublisherOptions(client=...))`` over the
  simulated events, in chunks, delivery awaited per call.
- raw consume: the client's bare consumer with the projector's consumer settings,
  ``assign`` on all partitions from the beginning, batches of ``--batch-size``, until every
  record is read.
- the projector: ``Projector(options=ProjectorOptions(client=...))``, end to end into a
  fresh database, on the topic that client's ``publish_many`` wrote (the same events).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from protocolo.consumers.projector import ProjectorOptions
from protocolo.core import confluent_client, kafka_python_client
from protocolo.core.kafka_client import CONFLUENT, KAFKA_PYTHON, ConsumerSettings, ProducerSettings
from protocolo.producers.publisher import LedgerPublisher, PreparedEvent, PublisherOptions


def producer_settings(bootstrap: str) -> ProducerSettings:
    """What ``LedgerPublisher`` gives its producer with default options."""
    opts = PublisherOptions()
    return ProducerSettings(bootstrap, opts.linger_ms, opts.batch_size, opts.delivery_timeout_ms,
                            opts.request_timeout_ms, opts.max_block_ms, opts.bootstrap_timeout_ms)


def consumer_settings(bootstrap: str, topic: str, group: str, batch: int) -> ConsumerSettings:
    """What ``Projector`` gives its consumer for ``batch`` (Projector._new_consumer)."""
    opts = ProjectorOptions(batch_size=batch)
    batch_bytes = max(batch * 2048, 1024 * 1024)
    return ConsumerSettings(bootstrap, topic, group, batch, batch_bytes, max(batch_bytes // 4, 1024 * 1024),
                            opts.session_timeout_ms, opts.heartbeat_interval_ms, opts.max_poll_interval_ms)


def raw_produce(client: str, bootstrap: str, topic: str, prepared: list[PreparedEvent]) -> float:
    """Seconds to send ``prepared`` with the client's bare producer and have every record
    acknowledged."""
    settings = producer_settings(bootstrap)
    if client == KAFKA_PYTHON:
        from kafka import KafkaProducer

        producer = KafkaProducer(**kafka_python_client.producer_config(settings))
        try:
            started = time.perf_counter()
            futures = [producer.send(topic, key=p.key, value=p.value, headers=p.headers) for p in prepared]
            producer.flush()
            elapsed = time.perf_counter() - started
        finally:
            producer.close()
        failed = sum(1 for f in futures if not f.succeeded())
    else:
        from confluent_kafka import Producer

        errors: list[Any] = []
        delivered = [0]

        def report(error: Any, message: Any) -> None:
            if error is not None:
                errors.append(error)
            delivered[0] += 1

        cproducer = Producer(confluent_client.producer_config(settings))
        cproducer.list_topics(timeout=10)  # connected before timing, as kafka-python's is
        started = time.perf_counter()
        produce = cproducer.produce
        for p in prepared:
            try:
                produce(topic, value=p.value, key=p.key, headers=p.headers, on_delivery=report)
            except BufferError:
                cproducer.poll(0.05)
                produce(topic, value=p.value, key=p.key, headers=p.headers, on_delivery=report)
        cproducer.flush(60)
        elapsed = time.perf_counter() - started
        failed = len(errors) + len(prepared) - delivered[0]
        cproducer.close()
    if failed:
        raise RuntimeError(f"raw {client} producer: {failed} of {len(prepared)} records not acknowledged")
    return elapsed


def raw_consume(client: str, bootstrap: str, topic: str, partitions: int, batch: int, expected: int) -> float:
    """Seconds from the consumer's construction to the last of ``expected`` records."""
    settings = consumer_settings(bootstrap, topic, f"bench-raw-{time.monotonic_ns()}", batch)
    started = time.perf_counter()
    seen = 0
    if client == KAFKA_PYTHON:
        from kafka import KafkaConsumer, TopicPartition

        config = {**kafka_python_client.consumer_config(settings), "group_id": None, "auto_offset_reset": "earliest"}
        consumer = KafkaConsumer(**config)
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            while seen < expected:
                for records in consumer.poll(timeout_ms=500, max_records=batch).values():
                    seen += len(records)
        finally:
            consumer.close()
    else:
        from confluent_kafka import OFFSET_BEGINNING, Consumer
        from confluent_kafka import TopicPartition as CTopicPartition

        cconsumer = Consumer(confluent_client.consumer_config(settings))
        try:
            cconsumer.assign([CTopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
            while seen < expected:
                for message in cconsumer.consume(num_messages=batch, timeout=0.5):
                    if message.error() is None:
                        seen += 1
        finally:
            cconsumer.close()
    return time.perf_counter() - started


def publish(client: str, bootstrap: str, topic: str, sealer: Any, events: list[Any], chunk: int) -> float:
    with LedgerPublisher(bootstrap, producer_name="protocolo-bench", topic=topic, sealer=sealer,
                         options=PublisherOptions(client=client)) as publisher:
        if publisher.kafka_client != client:
            raise RuntimeError(f"publisher uses {publisher.kafka_client}, not {client}")
        started = time.perf_counter()
        receipts = sum(len(publisher.publish_many(events[i:i + chunk])) for i in range(0, len(events), chunk))
        elapsed = time.perf_counter() - started
    if receipts != len(events):
        raise RuntimeError(f"publisher ({client}): {receipts} receipts for {len(events)} events")
    return elapsed


@dataclasses.dataclass
class ClientFigures:
    raw_produce: list[float] = dataclasses.field(default_factory=list)
    publish_many: list[float] = dataclasses.field(default_factory=list)
    raw_consume: list[float] = dataclasses.field(default_factory=list)
    projector: list[float] = dataclasses.field(default_factory=list)
    projector_without_join: list[float] = dataclasses.field(default_factory=list)


def measure(clients: list[str], repeat: int, n: int, *, topic: Callable[[str], str],
            database: Callable[[str], str], bootstrap: str, partitions: int, batch: int, chunk: int,
            sealer: Any, events: list[Any], prepared: list[PreparedEvent],
            time_projector: Callable[..., Any], say: Callable[[str], None]) -> dict[str, Any]:
    figures = {c: ClientFigures() for c in clients}
    for r in range(repeat):
        order = clients if r % 2 == 0 else list(reversed(clients))
        for client in order:
            f = figures[client]
            f.raw_produce.append(raw_produce(client, bootstrap, topic(f"c{r}raw{client[:2]}"), prepared))
            pub_topic = topic(f"c{r}pub{client[:2]}")
            f.publish_many.append(publish(client, bootstrap, pub_topic, sealer, events, chunk))
            f.raw_consume.append(raw_consume(client, bootstrap, pub_topic, partitions, batch, n))
            run = time_projector(bootstrap, database(f"c{r}proj{client[:2]}"), pub_topic,
                                 f"bench-c{r}-{client}-{time.monotonic_ns()}", batch, n, [], client=client)
            f.projector.append(run.total)
            f.projector_without_join.append(run.without_join)
            say(f"  {r + 1}/{repeat} {client:>12}: raw produce {n / f.raw_produce[-1]:>8,.0f}/s, publish_many "
                f"{n / f.publish_many[-1]:>8,.0f}/s, raw consume {n / f.raw_consume[-1]:>8,.0f}/s, projector "
                f"{n / run.total:>7,.0f}/s ({n / run.without_join:,.0f}/s without the {run.join:.2f} s join)")
    out: dict[str, Any] = {}
    for client, f in figures.items():
        rate = {k: n / min(v) for k, v in dataclasses.asdict(f).items()}
        out[client] = {
            "seconds": dataclasses.asdict(f),
            "per_s": rate,
            "publish_many_vs_raw_produce": rate["publish_many"] / rate["raw_produce"],
            "publish_many_vs_raw_produce_per_repeat": [a / b for a, b in zip(f.raw_produce, f.publish_many, strict=True)],
            "projector_vs_raw_consume": rate["projector"] / rate["raw_consume"],
            "projector_without_join_vs_raw_consume": rate["projector_without_join"] / rate["raw_consume"],
        }
    if KAFKA_PYTHON in out and CONFLUENT in out:
        a, b = out[CONFLUENT]["per_s"], out[KAFKA_PYTHON]["per_s"]
        out["confluent_vs_kafka_python"] = {k: a[k] / b[k] for k in a}
    return out


def report(res: dict[str, Any], n: int) -> list[str]:
    lines = ["", f"4. Kafka clients, each against its own raw client (events/s, best of the repeats, {n:,} events)",
             f"{'client':<14}{'raw produce':>12}{'publish_many':>13}{'ratio':>7}{'raw consume':>13}{'projector':>11}"
             f"{'ratio':>7}{'no join':>9}{'ratio':>7}", "-" * 93]
    for client in (KAFKA_PYTHON, CONFLUENT):
        if client not in res:
            continue
        c = res[client]
        r = c["per_s"]
        lines.append(f"{client:<14}{r['raw_produce']:>12,.0f}{r['publish_many']:>13,.0f}"
                     f"{c['publish_many_vs_raw_produce']:>7.2f}{r['raw_consume']:>13,.0f}{r['projector']:>11,.0f}"
                     f"{c['projector_vs_raw_consume']:>7.2f}{r['projector_without_join']:>9,.0f}"
                     f"{c['projector_without_join_vs_raw_consume']:>7.2f}")
        lines.append(f"{'':<14}publish_many / raw produce per repeat: "
                     + ", ".join(f"{x:.2f}" for x in c["publish_many_vs_raw_produce_per_repeat"]))
    if "confluent_vs_kafka_python" in res:
        x = res["confluent_vs_kafka_python"]
        lines.append("confluent / kafka-python: " + ", ".join(f"{k} {v:.2f}" for k, v in x.items()))
    return lines
