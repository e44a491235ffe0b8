"""The log's side of C2SP tlog-witness: ask a witness to cosign a checkpoint.

``POST <url>/add-checkpoint`` with ``old <size>\\n``, the consistency proof from that size
(one base64 hash per line), an empty line and the signed checkpoint. On ``409 Conflict``
the witness says which size it last cosigned (``text/x.tlog.size``): the request is made
again, once, from that size (a witness that restarted from an empty state answers 409 to
an ``old`` it does not know yet). A 200 answer's signature lines are added to the note and
opened with the witness's key: only a verified ``cosignature/v1`` line of that key is kept.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import psycopg

from protocolo.attestation.checkpointer import StoredCheckpoint
from protocolo.attestation.config import WitnessEndpoint
from protocolo.evidence.cosignature import cosignature_timestamp
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.merkle import consistency_proof
from protocolo.evidence.note import encode_base64, open_note
from protocolo.projections.merkle_store import node_reader

__all__ = ["Cosigned", "WitnessClientError", "add_checkpoint_body", "request_cosignature"]

MAX_ANSWER_BYTES = 64 * 1024
_SIZE_ANSWER = re.compile(rb"(0|[1-9][0-9]{0,19})\n")


class WitnessClientError(RuntimeError):
    """A witness did not cosign; the message names it, its URL and what it answered."""


@dataclass(frozen=True)
class Cosigned:
    line: str  # the witness's signature line, "— <name> <base64>\n"
    timestamp: int  # POSIX seconds, from the cosignature


def add_checkpoint_body(old: int, proof: list[bytes], note: bytes) -> bytes:
    lines = [f"old {old}\n"] + [encode_base64(h) + "\n" for h in proof] + ["\n"]
    return "".join(lines).encode() + note


def _post(url: str, body: bytes, timeout: float) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - http(s) only (config)
            return answer.status, answer.headers.get("Content-Type", ""), answer.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read(MAX_ANSWER_BYTES)


def request_cosignature(conn: psycopg.Connection[Any], witness: WitnessEndpoint,
                        checkpoint: StoredCheckpoint, old: int, *,
                        timeout: float = 10.0) -> Cosigned:
    """Get ``witness``'s cosignature of ``checkpoint``, sending a proof from ``old``."""
    url = witness.url + "/add-checkpoint"
    who = f"witness {witness.name} at {url}"
    read = node_reader(conn, checkpoint.topic, checkpoint.partition)
    tried: set[int] = set()
    while True:
        tried.add(old)
        proof = consistency_proof(old, checkpoint.size, read) if 0 < old < checkpoint.size else []
        try:
            status, content_type, answer = _post(
                url, add_checkpoint_body(old, proof, checkpoint.note), timeout)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WitnessClientError(f"{who} is unreachable: {reason}") from None
        if status == 409 and _SIZE_ANSWER.fullmatch(answer):
            known = int(answer)
            if known in tried or known > checkpoint.size:
                raise WitnessClientError(
                    f"{who} last cosigned size {known} of {checkpoint.origin}, and cannot take "
                    f"size {checkpoint.size} from there"
                    + (" (the witness is ahead of this log!)" if known > checkpoint.size else ""))
            old = known
            continue
        if status != 200:
            text = answer[:200].decode("utf-8", "replace").strip()
            raise WitnessClientError(f"{who} answered HTTP {status}: {text!r}")
        return _cosignature(who, witness, checkpoint, answer)


def _cosignature(who: str, witness: WitnessEndpoint, checkpoint: StoredCheckpoint,
                 answer: bytes) -> Cosigned:
    try:
        opened = open_note(checkpoint.note + answer, [witness.verifier])
    except EvidenceError as exc:
        raise WitnessClientError(f"{who}: its answer does not verify: {exc}") from None
    for signature in opened.verified:
        if signature.name == witness.name and signature.key_id == witness.key.key_id:
            return Cosigned(signature.line(), cosignature_timestamp(signature.signature))
    raise WitnessClientError(f"{who}: its answer holds no cosignature by its key")
