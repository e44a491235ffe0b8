"""Child process of ``ledger_bench.py``: read one topic to its end, report peak RSS.

    python bench/rss_probe.py projector BOOTSTRAP DATABASE_URL TOPIC GROUP BATCH EXPECTED
    python bench/rss_probe.py raw       BOOTSTRAP -            TOPIC -     BATCH EXPECTED

``projector`` runs ``Projector(...).run(until_caught_up=True)`` into DATABASE_URL (which
must be a fresh database) and checks that EXPECTED records were handled. ``raw`` reads
the same records with a bare kafka-python ``KafkaConsumer`` (assign + seek_to_beginning,
``max_records=BATCH``, the projector's fetch limits), counting until EXPECTED.

Prints one JSON line: ``peak_kb`` (``VmHWM`` of /proc/self/status: this process's peak
RSS), ``baseline_kb`` (VmRSS once everything is imported and constructed, before the
first record), ``records``, ``seconds``, and ``ru_maxrss_kb`` for reference only.

Why VmHWM and not ``getrusage(RUSAGE_SELF).ru_maxrss``: on Linux ``ru_maxrss`` survives
``execve`` (the kernel folds the pre-exec address space's high-water mark into the
process's), so a child forked from the benchmark reports at least the *parent's* RSS at
fork time (measured: every child printed the parent's 74.6 MiB). ``VmHWM`` belongs to
the address space the child builds after exec, so it is the child's own peak.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _vm_rss_kb() -> int:
    return _status_kb("VmRSS")


def fetch_limits(batch_size: int) -> dict[str, int]:
    """The fetch limits ``Projector`` gives its consumer for ``batch_size`` (kept in step
    with ``consumers/projector.py``; ``ledger_bench.py`` checks they still match)."""
    batch_bytes = max(batch_size * 2048, 1024 * 1024)
    return {
        "fetch_max_bytes": batch_bytes,
        "max_partition_fetch_bytes": max(batch_bytes // 4, 1024 * 1024),
    }


def run_projector(bootstrap: str, database_url: str, topic: str, group: str, batch: int, expected: int) -> dict:
    from protocolo.consumers.projector import Projector, ProjectorOptions

    started = time.perf_counter()
    projector = Projector(bootstrap, database_url, topic=topic, group_id=group,
                          options=ProjectorOptions(batch_size=batch))
    baseline = _vm_rss_kb()
    try:
        stats = projector.run(until_caught_up=True, idle_timeout_s=120)
    finally:
        projector.close()
    records = stats.records
    if records != expected:
        raise SystemExit(f"projector handled {records} records, expected {expected}")
    return {"records": records, "seconds": time.perf_counter() - started, "baseline_kb": baseline,
            "quarantined": stats.quarantined, "batches": stats.batches}


def run_raw(bootstrap: str, topic: str, batch: int, expected: int) -> dict:
    from kafka import KafkaConsumer, TopicPartition

    started = time.perf_counter()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             max_poll_records=batch, **fetch_limits(batch))
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise SystemExit(f"topic {topic} has no partitions")
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        baseline = _vm_rss_kb()
        records = 0
        deadline = time.monotonic() + 300
        while records < expected:
            for recs in consumer.poll(timeout_ms=500, max_records=batch).values():
                for record in recs:
                    records += 1
                    _ = record.value
            if time.monotonic() > deadline:
                raise SystemExit(f"raw consumer read {records} of {expected} records in 300 s")
    finally:
        consumer.close()
    return {"records": records, "seconds": time.perf_counter() - started, "baseline_kb": baseline}


def main(argv: list[str]) -> int:
    mode, bootstrap, database_url, topic, group, batch, expected = argv
    if mode == "projector":
        result = run_projector(bootstrap, database_url, topic, group, int(batch), int(expected))
    elif mode == "raw":
        result = run_raw(bootstrap, topic, int(batch), int(expected))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    result["mode"] = mode
    result["peak_kb"] = _status_kb("VmHWM")
    result["ru_maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; see above
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
