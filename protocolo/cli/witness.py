"""``protocolo witness``: a C2SP tlog-witness an independent party runs with its own key.

``witness keygen --name NAME --out FILE`` makes the witness's Ed25519 key (a Go/C2SP signer
key string, file mode 0600) and prints its cosignature verifier key, which the log operator
puts in PROTOCOLO_WITNESSES and verifiers put in their tlog-policy. ``witness serve`` answers
``POST /add-checkpoint`` for the logs whose verifier keys it is given (one per partition
origin: ``protocolo keys show`` prints them), keeping its state in --state.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from protocolo.attestation.witness import Witness, WitnessServer, WitnessState, load_witness_key
from protocolo.cli import CommandError
from protocolo.evidence.cosignature import CosignatureV1Signer
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.keys import verifier_from_key
from protocolo.evidence.note import SIG_ED25519, Ed25519NoteSigner, NoteVerifier, VerifierKey


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("witness", help="run a C2SP tlog-witness that cosigns checkpoints",
                       description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    actions = p.add_subparsers(dest="witness_command", metavar="ACTION", required=True)
    serve = actions.add_parser("serve", help="answer POST /add-checkpoint until SIGINT/SIGTERM")
    serve.add_argument("--key", type=Path, required=True, help="the witness's key file")
    serve.add_argument("--state", type=Path, required=True,
                       help="directory of the last cosigned checkpoint per origin")
    serve.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                       help="address to listen on (default 127.0.0.1, a free port)")
    serve.add_argument("--log-vkey", action="append", default=[], metavar="VKEY",
                       help="verifier key of a log (key name = origin); repeatable")
    serve.add_argument("--log-vkeys-file", type=Path, metavar="FILE",
                       help="file of log verifier keys, one per line ('#' comments)")
    serve.set_defaults(func=run_serve)
    keygen = actions.add_parser("keygen", help="make a witness key file, print its verifier key")
    keygen.add_argument("--name", required=True, help="the witness's name, e.g. auditor.example/w1")
    keygen.add_argument("--out", type=Path, required=True, help="key file to create (0600)")
    keygen.set_defaults(func=run_keygen)


def _log_keys(args: argparse.Namespace) -> list[NoteVerifier]:
    texts = list(args.log_vkey)
    if args.log_vkeys_file is not None:
        try:
            lines = args.log_vkeys_file.read_text().splitlines()
        except OSError as exc:
            raise CommandError(f"--log-vkeys-file {args.log_vkeys_file}: {exc.strerror}") from None
        texts += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not texts:
        raise CommandError("give the logs to witness with --log-vkey or --log-vkeys-file")
    verifiers: list[NoteVerifier] = []
    for text in texts:
        try:
            key = VerifierKey.parse(text)
            if key.type != SIG_ED25519:
                raise CommandError(f"log key {key.name}: type 0x{key.type:02x}, expected an "
                                   "Ed25519 log key (0x01)")
            verifiers.append(verifier_from_key(text))
        except EvidenceError as exc:
            raise CommandError(f"log key {text[:80]!r}: {exc.detail}") from None
    return verifiers


def run_serve(args: argparse.Namespace) -> int:
    host, sep, port_text = args.listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535 or not host:
        raise CommandError(f"--listen {args.listen!r}: must be HOST:PORT (port 0-65535)")
    try:
        signer = load_witness_key(args.key)
    except EvidenceError as exc:
        raise CommandError(f"--key {args.key}: {exc.detail}") from None
    logs = _log_keys(args)
    try:
        state = WitnessState(args.state)
        server = WitnessServer(Witness(signer, logs, state), host, int(port_text))
    except OSError as exc:
        raise CommandError(f"cannot serve on {args.listen} with state {args.state}: "
                           f"{exc.strerror or exc}") from None
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    server.start()
    print(f"witness {signer.verifier} serving {server.url}/add-checkpoint for "
          f"{len({v.name for v in logs})} log(s)", file=sys.stderr, flush=True)
    stop.wait()
    server.stop()
    return 0


def run_keygen(args: argparse.Namespace) -> int:
    try:
        signer = Ed25519NoteSigner.generate(args.name)
    except EvidenceError as exc:
        raise CommandError(f"--name {args.name!r}: {exc.detail}") from None
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise CommandError(f"--out {args.out}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(signer.private_key_string() + "\n")
    print(CosignatureV1Signer(args.name, _seed(signer)).verifier)
    return 0


def _seed(signer: Ed25519NoteSigner) -> bytes:
    from protocolo.evidence.note import decode_base64

    return decode_base64(signer.private_key_string().split("+", 4)[4], "signer key")[1:]
