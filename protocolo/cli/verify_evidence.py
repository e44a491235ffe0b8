"""``protocolo verify-evidence``: check a proof-of-service bundle offline.

Reads only the bundle file and what is given on the command line (pinned verifier keys, a
tlog-policy, TSA roots, the contact expected): no Kafka, no PostgreSQL. The same code as
the published standalone verifier (``protocolo.evidence.bundle``). Every option is checked
before the bundle is read. Exit status: 0 VALID, 1 INVALID, 2 bad arguments, 3 UNPINNED.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from protocolo.cli import CommandError
from protocolo.evidence.bundle import (
    EXIT_INVALID,
    TrustInputError,
    add_arguments,
    options,
    printable,
    verify_bundle,
)

__all__ = ["EXIT_INVALID", "register", "run"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify-evidence",
        help="verify a proof-of-service bundle offline (verdict per record)",
        description="Verify a bundle written by `protocolo evidence`, offline: file hashes, the "
        "signed manifest, every record's leaf and inclusion proof, checkpoint signatures, "
        "consistency proofs, witness quorum, RFC 3161 timestamps, and that record.json and "
        "summary.html say what the records' bytes say. Trust is pinned by you: without --vkey or "
        "--policy the verdict is UNPINNED, never VALID. Exit status: 0 valid, 1 invalid, "
        "2 bad arguments, 3 unpinned.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        trust, expected = options(args)
    except TrustInputError as exc:
        raise CommandError(exc.detail) from None
    try:
        data = Path(args.bundle).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read the bundle {printable(args.bundle)}: {exc.strerror}") from None
    report = verify_bundle(data, trust, expected)
    if args.json:
        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
    else:
        sys.stdout.write(report.render())
    return report.exit_status
