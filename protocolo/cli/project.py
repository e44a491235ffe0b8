"""``protocolo project``: run the projector (Kafka -> PostgreSQL views)."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from protocolo.cli import bounded_int
from protocolo.consumers.projector import ProjectorStats
from protocolo.core.topic_settings import ACCEPT_FLAG
from protocolo.runtime import Runtime

#: Above this a batch no longer fits the client's fetch buffers and one transaction holds
#: too much; the benchmarks peak well below it.
MAX_BATCH_SIZE = 100_000


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "project",
        help="project the ledger topic into PostgreSQL (exactly-once effect)",
        description="Consume the ledger topic as a member of the projector group and apply each "
        "batch to PostgreSQL in one transaction. Stops cleanly on SIGINT/SIGTERM.",
    )
    p.add_argument("--until-caught-up", action="store_true",
                   help="exit once every assigned partition reaches its log end")
    p.add_argument("--batch-size", type=bounded_int(1, MAX_BATCH_SIZE), default=2000,
                   help=f"records per batch/transaction, 1 to {MAX_BATCH_SIZE:,} (default 2000)")
    p.add_argument("--rebuild", action="store_true",
                   help="first drop and rebuild every view from the journal (one transaction), then project")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument(ACCEPT_FLAG, dest="accept_unsafe_topic", action="store_true",
                   help="project even from a topic whose settings let the broker delete records "
                   "(finite retention.ms/retention.bytes, compaction, unclean leader election); "
                   "refused without it, logged with it")
    p.set_defaults(func=run)


class ProgressPrinter:
    """Progress on stderr at most every ``every`` seconds. The rate counts from the first
    committed batch, so the consumer-group join does not drag it down."""

    def __init__(self, every: float = 2.0, quiet: bool = False) -> None:
        self.every, self.quiet, self.last = every, quiet, 0.0
        self.first: tuple[float, int] | None = None

    def __call__(self, stats: ProjectorStats) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = (now, stats.records)
        if self.quiet or now - self.last < self.every:
            return
        self.last = now
        since, base = self.first
        rate = f" ({(stats.records - base) / (now - since):,.0f}/s)" if now - since > 0.5 else ""
        print(f"  projected {stats.journaled:,} events, quarantined {stats.quarantined:,}{rate}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rt = Runtime.start()
    if args.rebuild:
        from protocolo.projections.rebuild import rebuild_views

        with rt.connect() as conn:
            applied = rebuild_views(conn)
        print(f"rebuilt the views from {applied:,} journalled events", file=sys.stderr)
    with rt.projector(args.batch_size, ProgressPrinter(quiet=args.quiet),
                      accept_unsafe_topic=args.accept_unsafe_topic) as projector:
        stats = projector.run(until_caught_up=args.until_caught_up)
    print(f"projected {stats.journaled:,} events in {stats.batches:,} batches; "
          f"quarantined {stats.quarantined:,}", file=sys.stderr)
    return 0
