"""``protocolo evidence``: write a contact's proof-of-service bundle (read-only on the ledger)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from protocolo.attestation.bundle_writer import (
    BundleNotPossible,
    BundleRequest,
    WriterContext,
    write_bundle,
)
from protocolo.attestation.config import AttestationSettings
from protocolo.attestation.log_key import LogKey, SigningKeyError, load_log_key
from protocolo.cli import CommandError
from protocolo.core.config import ConfigError
from protocolo.core.errors import EventRejected
from protocolo.core.personal_data import PersonalDataSealer
from protocolo.core.protocol_number import normalise_protocol_number
from protocolo.evidence.bundle import BundleTrust, verify_bundle
from protocolo.runtime import LedgerReader


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "evidence",
        help="write a contact's proof-of-service bundle (zip a court can verify offline)",
        description="Write one self-contained bundle with every record of the contact and of the "
        "retrieval requests linked to it, their inclusion proofs, the signed checkpoints, "
        "timestamps, a signed manifest, a summary (pt-BR/en) and a standalone verify.py. "
        "Personal data stays sealed unless --reveal is given with --legal-basis. Check it with "
        "`protocolo verify-evidence FILE.zip`.",
    )
    p.add_argument("--protocol", metavar="N", help="protocol number of the contact")
    p.add_argument("--request", metavar="ID", help="a retrieval request id: the bundle covers that "
                   "request and the contact it names")
    p.add_argument("--out", metavar="FILE.zip", required=True, help="where to write the bundle")
    p.add_argument("--reveal", action="store_true", help="show the customer's name, CPF and code")
    p.add_argument("--legal-basis", metavar="TEXT", help="why personal data is revealed (required "
                   "with --reveal; recorded in the manifest)")
    p.set_defaults(func=run)


def tool_name() -> str:
    try:
        return f"protocolo {version('protocolo')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "protocolo"


def writer_context(attestation: AttestationSettings, topic: str, key: LogKey,
                   sealer: PersonalDataSealer) -> WriterContext:
    """What the bundle writer needs from the deployment's settings (also used by the demo)."""
    return WriterContext(
        deployment=attestation.deployment, topic=topic, log_key=key, sealer=sealer, tool=tool_name(),
        tsa_chain_pem=attestation.tsa_chain.read_bytes() if attestation.tsa_chain else None,
        witness_vkeys=tuple(str(w.key) for w in attestation.witnesses))


def run(args: argparse.Namespace) -> int:
    if not args.protocol and not args.request:
        raise CommandError("give --protocol N (or --request ID)")
    if args.reveal and not (args.legal_basis or "").strip():
        raise CommandError("--reveal needs --legal-basis TEXT (the legal basis is recorded in the bundle)")
    if args.legal_basis and not args.reveal:
        raise CommandError("--legal-basis goes with --reveal (without it personal data stays sealed)")
    try:
        protocol = normalise_protocol_number(args.protocol, "--protocol") if args.protocol else None
        attestation = AttestationSettings.from_env()
        reader = LedgerReader.open()
        key = load_log_key(reader.settings, attestation.deployment)
    except (EventRejected, ConfigError, SigningKeyError) as exc:
        raise CommandError(str(exc)) from exc
    out = Path(args.out)
    if out.is_dir():
        raise CommandError(f"--out {out} is a directory: name the .zip file to write")
    request = BundleRequest(protocol, args.request, args.reveal, args.legal_basis)
    context = writer_context(attestation, reader.settings.topic, key, reader.sealer())
    data: bytes | None = None
    failure: BundleNotPossible | None = None
    for ledger in reader.ledgers:
        with reader.connect(ledger) as conn:
            try:
                data = write_bundle(conn, request, context, datetime.now(UTC).replace(microsecond=0))
                break
            except BundleNotPossible as exc:
                failure = failure or exc
    if data is None:
        raise CommandError(str(failure or "nothing found"))
    report = verify_bundle(data, BundleTrust())
    if not report.ok:  # never hand out a bundle that does not verify
        raise CommandError("the bundle written does not verify (" + ", ".join(report.reasons)
                           + "): this is a bug, please report it")
    tmp = out.with_name(out.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    print(f"{out}: {len(report.records)} records, {len(data):,} bytes; self-check: VALID")
    print(f"verify offline: protocolo verify-evidence {out} --vkey <published log key>"
          " (or: python3 verify.py from inside the bundle)", file=sys.stderr)
    return 0
