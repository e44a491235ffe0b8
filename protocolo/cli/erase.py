"""``protocolo erase``: erase a customer's personal data by destroying their keys."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import psycopg

from protocolo.cli import CommandError, bounded_int
from protocolo.core.errors import EventRejected
from protocolo.producers import registry
from protocolo.producers.erasure import NothingToErase, erase_customer
from protocolo.runtime import Runtime


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "erase",
        help="erase a customer's personal data (LGPD) without touching any event",
        description="Publish CustomerDataErased and destroy the customer's data keys: their CPF, "
        "customer code and name become unreadable in every event, while the events, the journal "
        "and the contact records the law requires keeping stay intact. Waits first until the "
        "projection has caught up with the topic (or refuses, exit 2). Exit status 1 when the "
        "customer has no live key (nothing is published then).",
    )
    p.add_argument("--cpf", help="the customer's CPF; '-' reads it from standard input (keeps it out "
                   "of shell history)")
    p.add_argument("--cpf-file", metavar="PATH", help="read the CPF from this file (first line)")
    p.add_argument("--customer", metavar="CODE", help="the customer's code")
    p.add_argument("--legal-basis", required=True, help="why, e.g. 'LGPD art. 18 VI, request 123'")
    p.add_argument("--wait", type=bounded_int(0, 3600), default=30, metavar="SECONDS",
                   help="how long to wait for the projector to catch up, 0 to 3,600 (default 30)")
    p.set_defaults(func=run)


def _cpf(args: argparse.Namespace) -> str | None:
    if args.cpf is not None and args.cpf_file is not None:
        raise CommandError("give the CPF once: --cpf or --cpf-file")
    if args.cpf_file is not None:
        try:
            lines = Path(args.cpf_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"--cpf-file {args.cpf_file}: cannot read it ({type(exc).__name__})") from None
        return lines[0].strip() if lines else ""
    if args.cpf == "-":
        return sys.stdin.readline().strip()
    return str(args.cpf) if args.cpf is not None else None


def run(args: argparse.Namespace) -> int:
    cpf = _cpf(args)
    if not cpf and not args.customer:
        raise CommandError("name the customer with --cpf (or --cpf-file, or --cpf - for standard input) "
                           "and/or --customer")
    rt = Runtime.start()
    try:
        with rt.connect(autocommit=True) as ledger, registry.connect(rt.registry_url, autocommit=True) as keys, \
                rt.publisher("protocolo-erase") as publisher, contextlib.ExitStack() as earlier:
            # After a restart of the embedded broker, contacts projected before live in the
            # earlier ledger databases: the customer's keys are looked up there too.
            earlier_ledgers = [earlier.enter_context(psycopg.connect(url, autocommit=True))
                               for url in rt.earlier_ledger_urls()]
            result = erase_customer(ledger, keys, publisher, rt.sealer(), cpf=cpf or None,
                                    customer_code=args.customer, legal_basis=args.legal_basis,
                                    projection_timeout_s=args.wait, earlier_ledgers=earlier_ledgers)
    except EventRejected as exc:
        raise CommandError(str(exc)) from exc
    except NothingToErase as exc:
        print(f"protocolo: {exc}", file=sys.stderr)
        return 1
    print(f"erased: {result.destroyed} data key(s) destroyed of {len(result.key_refs)} found; "
          f"CustomerDataErased at {result.receipt.topic}[{result.receipt.partition}]@{result.receipt.offset}",
          file=sys.stderr)
    try:
        rt.sealer().vault.purge_destroyed_versions()
        print("the key table was rewritten (VACUUM FULL): no old row version holds the destroyed keys; "
              "rotate WAL archives and backups taken before now (README, \"Erasure\")", file=sys.stderr)
    except psycopg.Error as exc:
        print(f"protocolo: warning: could not rewrite the key table ({exc.diag.message_primary or exc}); "
              "old row versions may still hold the destroyed keys until VACUUM FULL personal_data_keys "
              "is run by its owner", file=sys.stderr)
    return 0
