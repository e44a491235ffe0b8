"""``protocolo protocol reserve``: protocol numbers for a service that publishes on its own.

A service in another language (an IVR, a chat gateway) tells the customer the protocol
number at the start of the contact, before it publishes anything. It reserves numbers
here, from the one global sequence in the registry, and hands them out itself; a number
reserved and never used is a gap, never a duplicate.
"""

from __future__ import annotations

import argparse
import json

from protocolo.cli import bounded_int
from protocolo.core.protocol_number import format_protocol_number
from protocolo.producers.protocol_issuer import MAX_RESERVATION, ProtocolIssuer
from protocolo.runtime import Runtime


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("protocol", help="reserve protocol numbers for another service",
                       description=__doc__.splitlines()[0] if __doc__ else None)
    actions = p.add_subparsers(dest="protocol_command", metavar="ACTION", required=True)
    reserve = actions.add_parser(
        "reserve", help="reserve N protocol numbers from the global sequence",
        description="Reserve protocol numbers from the one global sequence and print them, one per "
        "line (or a JSON list). They are never issued again, used or not.")
    reserve.add_argument("--count", type=bounded_int(1, MAX_RESERVATION), default=1,
                         help=f"how many, 1 to {MAX_RESERVATION:,} (default 1)")
    reserve.add_argument("--json", action="store_true", help="a JSON object with the numbers")
    reserve.set_defaults(func=run_reserve)


def run_reserve(args: argparse.Namespace) -> int:
    rt = Runtime.start(need_kafka=False)
    with ProtocolIssuer(rt.registry_url) as issuer:
        numbers = issuer.reserve(args.count)
    if args.json:
        print(json.dumps({"protocol_numbers": numbers,
                          "spoken": [format_protocol_number(n) for n in numbers]}, indent=2))
    else:
        print("\n".join(numbers))
    return 0
