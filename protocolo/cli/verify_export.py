"""``protocolo verify-export``: check an audit export offline, with keys pinned from outside it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from protocolo.attestation.export_verify import ExportTrust, verify_export
from protocolo.cli import CommandError
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.note import VerifierKey

#: Exit statuses: 0 VALID, 1 INVALID, 3 UNPINNED (checks passed against the export's own keys).
EXIT_INVALID = 1
EXIT_UNPINNED = 3


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify-export", help="check an audit export offline (authentic, complete, readable)",
        description="Check an export directory without the ledger: the signed manifest, every "
        "file's SHA-256, the checkpoints at both ends under the pinned keys, their consistency, "
        "the completeness of each partition's leaves, the RFC 3161 tokens (with --tsa-root), the "
        "chain to the previous export (with --previous) and every JSON Lines / CSV line, "
        "re-derived from the Avro records. Exit 0 VALID, 1 INVALID (first failure named), "
        "3 UNPINNED (no --vkey/--policy: checked only against the export's own key copies).")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--vkey", action="append", default=[], metavar="KEY",
                   help="a published log verifier key (one per partition; repeat)")
    p.add_argument("--policy", action="append", default=[], metavar="FILE",
                   help="a C2SP tlog-policy file (logs, witnesses, quorum)")
    p.add_argument("--tsa-root", action="append", default=[], metavar="PEM", help="a pinned TSA root")
    p.add_argument("--previous", metavar="DIR", help="the previous export of the chain")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(func=run)


def _files(paths: list[str], option: str) -> tuple[bytes, ...]:
    found = []
    for path in paths:
        try:
            found.append(Path(path).read_bytes())
        except OSError as exc:
            raise CommandError(f"{option} {path}: {exc.strerror or exc}") from None
    return tuple(found)


def run(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    if not directory.is_dir():
        raise CommandError(f"{directory} is not a directory (give the export's directory)")
    if args.previous is not None and not Path(args.previous).is_dir():
        raise CommandError(f"--previous {args.previous} is not a directory")
    for vkey in args.vkey:
        try:
            VerifierKey.parse(vkey.strip())
        except EvidenceError as exc:
            raise CommandError(f"--vkey {vkey!r}: {exc.detail}") from None
    trust = ExportTrust(tuple(v.strip() for v in args.vkey), _files(args.policy, "--policy"),
                        _files(args.tsa_root, "--tsa-root"),
                        Path(args.previous) if args.previous else None)
    report = verify_export(directory, trust)
    print(json.dumps(report.as_json(), indent=2, ensure_ascii=True) if args.json else report.render(), end="" if not args.json else "\n")
    if report.verdict == "VALID":
        return 0
    return EXIT_UNPINNED if report.verdict == "UNPINNED" else EXIT_INVALID
