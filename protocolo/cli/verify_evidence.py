"""``protocolo verify-evidence``: check a proof-of-service bundle offline.

Reads only the bundle file and what is given on the command line (pinned verifier keys, a
tlog-policy, TSA roots): no Kafka, no PostgreSQL. The same code as the bundle's ``verify.py``
(``protocolo.evidence.bundle``). Exit status: 0 VALID, 1 INVALID, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from protocolo.cli import CommandError
from protocolo.evidence.bundle import load_trust, verify_bundle
from protocolo.evidence.errors import EvidenceError

EXIT_INVALID = 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify-evidence",
        help="verify a proof-of-service bundle offline (verdict per record)",
        description="Verify a bundle written by `protocolo evidence`, offline: file hashes, the "
        "signed manifest, every record's leaf and inclusion proof, checkpoint signatures, "
        "consistency proofs, witness quorum and RFC 3161 timestamps. Exit status: 0 valid, "
        "1 invalid, 2 bad arguments.",
    )
    p.add_argument("bundle", metavar="FILE.zip")
    p.add_argument("--vkey", action="append", default=[], metavar="VKEY",
                   help="pinned log (or witness) verifier key, C2SP form; repeat for several")
    p.add_argument("--policy", action="append", default=[], metavar="FILE",
                   help="pinned C2SP tlog-policy (logs, witnesses, quorum); repeat, one per "
                   "partition's log")
    p.add_argument("--tsa-root", action="append", default=[], metavar="PEM",
                   help="pinned root certificate of the Time-Stamp Authority; repeatable")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        trust = load_trust(args.vkey, args.policy, args.tsa_root)
    except EvidenceError as exc:
        raise CommandError(f"bad trust input: {exc}") from exc
    except OSError as exc:
        raise CommandError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    try:
        data = Path(args.bundle).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read the bundle {args.bundle}: {exc.strerror}") from exc
    report = verify_bundle(data, trust)
    if args.json:
        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
    else:
        sys.stdout.write(report.render())
    return 0 if report.ok else EXIT_INVALID
