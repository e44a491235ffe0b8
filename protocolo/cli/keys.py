"""``protocolo keys``: the log's signing key, as the public sees it.

``keys show`` prints the C2SP verifier key of every partition's log: each partition has its
own Ed25519 key, derived from the one signing key for its origin (the key name is the
partition's origin), so each line is a different public key. These are the strings an
auditor pins (``verify-evidence --vkey``) and puts in a tlog-policy ``log`` line. ``--history`` adds every key that ever signed a checkpoint of
this ledger (key rotation: old checkpoints stay verifiable with the old keys).
``keys generate`` prints a new signing key for PROTOCOLO_SIGNING_KEY (keep it secret).
"""

from __future__ import annotations

import argparse
from typing import Any

import psycopg

from protocolo.attestation.checkpointer import known_log_keys
from protocolo.attestation.config import AttestationSettings
from protocolo.attestation.log_key import LogKey, SigningKeyError, deployment_key_name, load_log_key
from protocolo.cli import CommandError
from protocolo.evidence.checkpoint import log_origin
from protocolo.evidence.errors import EvidenceError
from protocolo.runtime import Runtime


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("keys", help="show the log's verifier keys, or generate a signing key",
                       description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    actions = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print each partition's log verifier key")
    show.add_argument("--history", action="store_true",
                      help="also every verifier key that signed a stored checkpoint")
    show.set_defaults(func=run_show)
    generate = actions.add_parser("generate", help="print a new log signing key (secret)")
    generate.add_argument("--name", help="key name (default protocolo/<PROTOCOLO_DEPLOYMENT>)")
    generate.set_defaults(func=run_generate)


def print_log_keys(conn: psycopg.Connection[Any], key: LogKey, deployment: str, topic: str,
                   partitions: int, *, history: bool = False) -> None:
    known = {int(p) for (p,) in conn.execute(
        "SELECT kafka_partition FROM projector_offsets WHERE topic = %s", (topic,))}
    for partition in sorted(known | set(range(partitions))):
        print(key.vkey(log_origin(deployment, topic, partition)))
    if history:
        for vkey in known_log_keys(conn):
            print(f"# signed checkpoints here: {vkey}")


def run_show(args: argparse.Namespace) -> int:
    settings = AttestationSettings.from_env()
    rt = Runtime.start(need_kafka=False)
    try:
        key = load_log_key(rt.settings, settings.deployment)
    except SigningKeyError as exc:
        raise CommandError(str(exc)) from None
    with rt.connect() as conn:
        print_log_keys(conn, key, settings.deployment, rt.settings.topic, rt.settings.partitions,
                       history=args.history)
    return 0


def run_generate(args: argparse.Namespace) -> int:
    settings = AttestationSettings.from_env()
    name = args.name or deployment_key_name(settings.deployment)
    try:
        key = LogKey.generate(name)
    except EvidenceError as exc:
        raise CommandError(f"--name {name!r}: {exc.detail}") from None
    print(key.private_key_string())
    return 0
