"""``protocolo erase``: erase a customer's personal data by destroying their keys."""

from __future__ import annotations

import argparse
import sys

from protocolo.cli import CommandError
from protocolo.producers.erasure import NothingToErase, erase_customer
from protocolo.runtime import Runtime
from protocolo.schemas.errors import EventRejected


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "erase",
        help="erase a customer's personal data (LGPD) without touching any event",
        description="Publish CustomerDataErased and destroy the customer's data keys: their CPF, "
        "customer code and name become unreadable in every event, while the events, the journal "
        "and the contact records the law requires keeping stay intact. Exit status 1 when the "
        "customer has no live key in the projected ledger (nothing is published then).",
    )
    p.add_argument("--cpf", help="the customer's CPF")
    p.add_argument("--customer", metavar="CODE", help="the customer's code")
    p.add_argument("--legal-basis", required=True, help="why, e.g. 'LGPD art. 18 VI, request 123'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.cpf and not args.customer:
        raise CommandError("name the customer with --cpf and/or --customer")
    rt = Runtime.start()
    try:
        with rt.connect() as conn, rt.publisher("protocolo-erase") as publisher:
            result = erase_customer(conn, publisher, rt.sealer(), cpf=args.cpf,
                                    customer_code=args.customer, legal_basis=args.legal_basis)
    except EventRejected as exc:
        raise CommandError(str(exc)) from exc
    except NothingToErase as exc:
        print(f"protocolo: {exc}", file=sys.stderr)
        return 1
    print(f"erased: {result.destroyed} data key(s) destroyed of {len(result.key_refs)} found; "
          f"CustomerDataErased at {result.receipt.topic}[{result.receipt.partition}]@{result.receipt.offset}\n"
          "Keys are found through the projected views: contacts the projector has not reached yet "
          "are not covered; run `protocolo project --until-caught-up` first, or erase again after it.",
          file=sys.stderr)
    return 0
