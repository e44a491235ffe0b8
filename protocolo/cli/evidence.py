"""``protocolo evidence``: write a contact's proof-of-service bundle (read-only on the ledger)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from protocolo.attestation.bundle_customer import CustomerRef, write_customer_bundle
from protocolo.attestation.bundle_writer import (
    BundleNotPossible,
    BundleRequest,
    LedgerDamaged,
    WriterContext,
    deployment_trust,
    self_check,
    write_bundle,
)
from protocolo.attestation.config import AttestationSettings
from protocolo.attestation.log_key import LogKey, SigningKeyError, load_log_key
from protocolo.cli import CommandError
from protocolo.cli.erase import _cpf as erase_cpf
from protocolo.core.config import ConfigError
from protocolo.core.cpf import normalise_cpf
from protocolo.core.errors import EventRejected
from protocolo.core.personal_data import BlindIndex, PersonalDataSealer
from protocolo.core.protocol_number import normalise_protocol_number
from protocolo.core.uuids import canonical_uuid
from protocolo.evidence.bundle_zip import read_zip
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
    p.add_argument("--cpf", help="a customer's bundle: every contact and request of the customer "
                   "with this CPF, in every partition; '-' reads it from standard input (keeps it "
                   "out of shell history and process lists)")
    p.add_argument("--cpf-file", metavar="PATH", help="a customer's bundle, the CPF read from this "
                   "file (first line)")
    p.add_argument("--customer", metavar="CODE", help="a customer's bundle, by customer code")
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


def _validated(args: argparse.Namespace) -> tuple[str | None, str | None, Path]:
    """Every option checked before any I/O; each message names its option."""
    if not args.protocol and not args.request:
        raise CommandError("give --protocol N (or --request ID), or --cpf / --customer for a "
                           "customer's bundle")
    try:
        protocol = normalise_protocol_number(args.protocol, "--protocol") if args.protocol else None
        request = canonical_uuid(args.request, "--request") if args.request is not None else None
    except EventRejected as exc:
        raise CommandError(str(exc)) from exc
    return protocol, request, _out(args)


def _out(args: argparse.Namespace) -> Path:
    if args.reveal and not (args.legal_basis or "").strip():
        raise CommandError("--reveal needs --legal-basis TEXT (the legal basis is recorded in the bundle)")
    if args.legal_basis and not args.reveal:
        raise CommandError("--legal-basis goes with --reveal (without it personal data stays sealed)")
    out = Path(args.out)
    if out.is_dir():
        raise CommandError(f"--out {out} is a directory: name the .zip file to write")
    if not out.parent.is_dir():
        raise CommandError(f"--out {out}: the folder {out.parent} does not exist")
    return out


def _customer(args: argparse.Namespace) -> tuple[str, str] | None:
    """``("cpf", 11 digits)`` or ``("customer_code", code)`` when a customer's bundle is asked
    for; the CPF's check digits are checked here, before any I/O."""
    cpf = erase_cpf(args)
    named = [n for n, v in (("--cpf", cpf), ("--customer", args.customer)) if v is not None]
    if not named:
        return None
    if len(named) > 1 or args.protocol or args.request:
        raise CommandError("name one subject: --protocol/--request for a contact, or one of "
                           "--cpf/--cpf-file/--customer for a customer")
    try:
        if cpf is not None:
            return "cpf", normalise_cpf(cpf, "--cpf")
        code = str(args.customer).strip()
        if not code:
            raise CommandError("--customer: the customer code is empty")
        return "customer_code", code
    except EventRejected as exc:
        raise CommandError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    customer = _customer(args)
    protocol, request_id, out = _validated(args) if customer is None else (None, None, _out(args))
    try:
        attestation = AttestationSettings.from_env()
        reader = LedgerReader.open()
        key = load_log_key(reader.settings, attestation.deployment)
    except (EventRejected, ConfigError, SigningKeyError) as exc:
        raise CommandError(str(exc)) from exc
    request = BundleRequest(protocol, request_id, args.reveal, args.legal_basis)
    context = writer_context(attestation, reader.settings.topic, key, reader.sealer())
    ref = None if customer is None else customer_ref(reader.sealer().index, *customer)
    data = _write(reader, request, context, ref)
    partitions = range(max(reader.settings.partitions, 1 + max(_partitions(data), default=0)))
    trust = deployment_trust(key, attestation.deployment, reader.settings.topic, partitions)
    try:  # never hand out a bundle that does not verify with the deployment's own keys
        report = self_check(data, trust, protocol)
    except LedgerDamaged as exc:
        raise CommandError(str(exc)) from None
    tmp = out.with_name(out.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    pending = report.summary.get("pending") or []
    print(f"{out}: {len(report.records)} records, {len(data):,} bytes; self-check: VALID with "
          f"the deployment's own keys ({report.proven()})")
    if pending:
        print(f"{len(pending)} newer records are not checkpointed yet: listed in the bundle, not "
              "proven (run `protocolo checkpoint` and ask again to prove them)")
    about = "" if ref is None else f" --customer-index {ref.value}"
    print(f"verify offline with the published verifier (README, \"Checking a proof-of-service "
          f"bundle\"): protocolo verify-evidence {out} --vkey <published log key>{about}",
          file=sys.stderr)
    return 0


def customer_ref(index: BlindIndex, kind: str, value: str) -> CustomerRef:
    """The customer's blind index (keyed HMAC; the clear CPF or code goes no further)."""
    if kind == "cpf":
        return CustomerRef("cpf_index", index.cpf(value))
    return CustomerRef("customer_code_index", index.customer_code(value))


def _write(reader: LedgerReader, request: BundleRequest, context: WriterContext,
           customer: CustomerRef | None) -> bytes:
    """The bundle from the first of the ledger databases that has the subject."""
    failure: BundleNotPossible | None = None
    now = datetime.now(UTC).replace(microsecond=0)
    for ledger in reader.ledgers:
        with reader.connect(ledger) as conn:
            try:
                if customer is not None:
                    return write_customer_bundle(conn, customer, request, context,
                                                 max(reader.settings.partitions, 1), now)
                return write_bundle(conn, request, context, now)
            except LedgerDamaged as exc:
                raise CommandError(str(exc)) from None
            except BundleNotPossible as exc:
                failure = failure or exc
    raise CommandError(str(failure or "nothing found"))


def _partitions(data: bytes) -> list[int]:
    """Partitions of the records a bundle holds, from its entry names (only to know which of
    the deployment's per-partition keys to derive; the keys themselves come from configuration)."""
    found = set()
    for name, _ in read_zip(data):
        if name.startswith("records/p"):
            found.add(int(name[9:].split("-")[0]))
    return sorted(found)
