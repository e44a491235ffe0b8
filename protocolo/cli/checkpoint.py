"""``protocolo checkpoint``: sign, store and publish each partition's tree head.

Without ``--once`` it runs until SIGINT/SIGTERM, signing a partition every
``--every-leaves`` leaves or ``--every-seconds`` seconds (PROTOCOLO_CHECKPOINT_EVERY_*);
with ``--once`` it signs every partition whose tree grew and exits. Each new checkpoint is
then anchored: an RFC 3161 token when PROTOCOLO_TSA_URL is set, a cosignature from each of
PROTOCOLO_WITNESSES. See docs/checkpoints.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from protocolo.attestation.anchoring import AnchorOutcome, anchor_checkpoints, anchorers_from
from protocolo.attestation.cadence import Cadence, run_checkpointer
from protocolo.attestation.checkpointer import (
    CheckpointRefused,
    StoredCheckpoint,
    checkpoint_partitions,
)
from protocolo.attestation.config import AttestationSettings
from protocolo.attestation.log_key import SigningKeyError, load_log_key
from protocolo.attestation.publication import KafkaCheckpointPublisher
from protocolo.cli import CommandError, bounded_int
from protocolo.core.config import MAX_PARTITIONS
from protocolo.evidence.note import encode_base64
from protocolo.runtime import Runtime


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "checkpoint", help="sign, store and publish the partitions' tree heads (C2SP checkpoints)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    p.add_argument("--partition", type=bounded_int(0, MAX_PARTITIONS - 1), action="append",
                   metavar="P", help="only this partition (repeatable; default: all)")
    p.add_argument("--once", action="store_true",
                   help="sign every partition whose tree grew, then exit")
    p.add_argument("--force", action="store_true",
                   help="with --once: also re-anchor partitions whose tree did not grow")
    p.add_argument("--every-leaves", type=bounded_int(1, 10**12), metavar="N",
                   help="daemon: sign a partition once it grew by N leaves")
    p.add_argument("--every-seconds", type=float, metavar="T",
                   help="daemon: ... or T seconds after its last checkpoint")
    p.add_argument("--anchor-every-seconds", type=float, metavar="T",
                   help="daemon: anchor an unchanged tree's newest checkpoint again after T seconds")
    p.add_argument("--show-key", action="store_true",
                   help="print the log's verifier key of each partition and exit")
    p.add_argument("--quiet", action="store_true", help="no line per checkpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = AttestationSettings.from_env()
    for option in ("every_seconds", "anchor_every_seconds"):
        value = getattr(args, option)
        if value is not None and not 0.1 <= value <= 366 * 86400:
            raise CommandError(f"--{option.replace('_', '-')} {value}: must be from 0.1 to 31622400")
    if args.force and not args.once:
        raise CommandError("--force needs --once (the daemon signs on its cadence)")
    rt = Runtime.start()
    try:
        key = load_log_key(rt.settings, settings.deployment)
    except SigningKeyError as exc:
        raise CommandError(str(exc)) from None
    topic = rt.settings.topic
    if args.show_key:
        from protocolo.cli.keys import print_log_keys

        with rt.connect() as conn:
            print_log_keys(conn, key, settings.deployment, topic, rt.settings.partitions)
        return 0
    anchorers = anchorers_from(settings)
    report = _Reporter(args.quiet)
    with rt.connect(autocommit=True) as conn, \
            KafkaCheckpointPublisher(rt.kafka_bootstrap, settings.checkpoint_topic) as publisher:
        try:
            if args.once:
                made = checkpoint_partitions(conn, key, topic, settings.deployment,
                                             partitions=args.partition, publish=publisher,
                                             force=args.force)
                report.signed(made)
                failures = report.anchored(anchor_checkpoints(conn, made, anchorers))
                if not made and not args.quiet:
                    print("no partition's tree grew since its last checkpoint", file=sys.stderr)
                return 1 if failures else 0
            cadence = Cadence(args.every_leaves or settings.every_leaves,
                              args.every_seconds or settings.every_seconds,
                              args.anchor_every_seconds or settings.anchor_every_seconds)
            stop = threading.Event()
            _stop_on_signals(stop)

            def anchor(checkpoints: list[StoredCheckpoint]) -> None:
                report.anchored(anchor_checkpoints(conn, checkpoints, anchorers))

            total = run_checkpointer(conn, key, topic, settings.deployment, cadence, stop=stop,
                                     partitions=args.partition, publish=publisher,
                                     after=report.signed, anchor=anchor if anchorers else None,
                                     on_publish_error=report.publish_failed)
            print(f"checkpointer stopped after signing {total:,} checkpoints", file=sys.stderr)
            return 0
        except CheckpointRefused as exc:
            raise CommandError(str(exc)) from None


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


class _Reporter:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def signed(self, made: Sequence[StoredCheckpoint]) -> None:
        if self.quiet:
            return
        for c in made:
            since = "" if c.consistency_from is None else f", consistent with size {c.consistency_from:,}"
            where = ("not yet published" if c.published_offset is None
                     else f"published at offset {c.published_offset}")
            print(f"{c.origin}: size {c.size:,} root {encode_base64(c.root)}{since}; {where}",
                  file=sys.stderr)

    def publish_failed(self, error: Exception) -> None:
        print(f"protocolo: publishing checkpoints failed, will retry: {type(error).__name__}: "
              f"{error}", file=sys.stderr)

    def anchored(self, outcomes: Sequence[AnchorOutcome]) -> int:
        failures = 0
        for o in outcomes:
            if o.error is not None:
                failures += 1
                print(f"protocolo: {o.origin} size {o.size:,}: {o.kind} from {o.authority} "
                      f"failed: {o.error}", file=sys.stderr)
            elif not self.quiet:
                print(f"{o.origin}: size {o.size:,} {o.kind} from {o.authority} at "
                      f"{o.anchored_at:%Y-%m-%dT%H:%M:%SZ}", file=sys.stderr)
        return failures
