"""A C2SP tlog-witness: cosigns a log's checkpoints once it has checked they extend what it
saw before (``protocolo witness serve``).

Run by an independent party (an auditor, a notary) with its own Ed25519 key: its
``cosignature/v1`` on a checkpoint says "as of this time, this is the largest tree of this
origin I have seen, and it extends every earlier one I cosigned". The company cannot later
show a court a different history of a partition without the witness's signatures failing.

``POST /add-checkpoint`` (tlog-witness, C2SP commit 055270b5), body ``old <size>\\n``, up to
63 base64 proof lines, an empty line, the signed checkpoint. Answers, checked in this order:

* 400: the body is malformed (no ``old`` line, bad base64, more than 63 proof lines, not a
  checkpoint), or ``old`` is greater than the checkpoint's size;
* 404: the origin is not one of the configured logs;
* 403: no signature of a configured key of that origin verifies;
* 409 ``text/x.tlog.size`` ``<size>\\n``: ``old`` is not the size this witness last cosigned
  for the origin (0 if none); also the same size with another root (a fork);
* 422: the consistency proof does not verify (or is not empty when ``old`` is 0 or equal
  to the size);
* 200: the cosignature line(s), after the new state is persisted.

State: one file per origin in the state directory (the last cosigned checkpoint note,
verbatim), written to a temporary file, fsynced and renamed, under a lock held from the
check to the rename, so two concurrent requests can never roll the state back (the race the
spec describes). Restarting the witness keeps its memory.
"""

from __future__ import annotations

import os
import re
import threading
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from protocolo.evidence.checkpoint import Checkpoint, parse_checkpoint
from protocolo.evidence.cosignature import CosignatureV1Signer
from protocolo.evidence.errors import EvidenceError, NoteError
from protocolo.evidence.merkle import HASH_SIZE
from protocolo.evidence.note import (
    SIG_ED25519,
    Ed25519NoteSigner,
    NoteSignature,
    NoteVerifier,
    decode_base64,
    open_note,
    parse_note,
)
from protocolo.evidence.proof import verify_consistency

__all__ = ["Answer", "Witness", "WitnessServer", "WitnessState", "load_witness_key"]

MAX_BODY_BYTES = 64 * 1024
MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,19})", re.ASCII)


def load_witness_key(path: Path) -> CosignatureV1Signer:
    """A witness key file: one Go/C2SP signer key string ``PRIVATE+KEY+<name>+<id>+<b64>``
    (``protocolo witness keygen`` writes one); used as an Ed25519 cosignature/v1 key."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise NoteError("bad-signer-key", f"witness key {path}: {exc.strerror}") from None
    signer = Ed25519NoteSigner.parse(text)
    seed = decode_base64(signer.private_key_string().split("+", 4)[4], "signer key")
    assert seed[0] == SIG_ED25519
    return CosignatureV1Signer(signer.name, seed[1:])


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


def _text(status: int, message: str) -> Answer:
    return Answer(status, "text/plain; charset=utf-8", (message + "\n").encode())


class WitnessState:
    """The last cosigned checkpoint per origin, one file each in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, origin: str) -> Path:
        return self.directory / (urllib.parse.quote(origin, safe="") + ".checkpoint")

    def latest(self, origin: str) -> Checkpoint | None:
        path = self._path(origin)
        try:
            note = path.read_bytes()
        except FileNotFoundError:
            return None
        return parse_checkpoint(parse_note(note).text)

    def store(self, origin: str, note: bytes) -> None:
        path = self._path(origin)
        temporary = path.with_suffix(".tmp")
        with open(temporary, "wb") as fh:
            fh.write(note)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class Witness:
    """The protocol, without HTTP: :meth:`add_checkpoint` maps a request body to an answer."""

    def __init__(self, signer: CosignatureV1Signer, logs: Iterable[NoteVerifier],
                 state: WitnessState) -> None:
        self.signer = signer
        self.logs: dict[str, list[NoteVerifier]] = {}
        for verifier in logs:  # a log key's name is its origin (C2SP tlog-checkpoint)
            self.logs.setdefault(verifier.name, []).append(verifier)
        self.state = state
        self._lock = threading.Lock()

    def add_checkpoint(self, body: bytes) -> Answer:
        try:
            old, proof, rest = _read_request(body)
            note = rest.encode("utf-8")
            signed_text, checkpoint = self._open_checkpoint(note, rest)
            if old > checkpoint.size:
                raise _Refused(_text(400, f"old size {old} is greater than the checkpoint's size "
                                          f"{checkpoint.size}"))
            with self._lock:
                latest = self.state.latest(checkpoint.origin)
                _check_extends(latest, old, checkpoint, proof)
                self.state.store(checkpoint.origin, note)
                signature = self.signer.sign(signed_text.encode())
        except _Refused as refused:
            return refused.answer
        line = NoteSignature(self.signer.name, self.signer.key_id, signature).line()
        return Answer(200, "text/plain; charset=utf-8", line.encode())

    def _open_checkpoint(self, note: bytes, text: str) -> tuple[str, Checkpoint]:
        """The signed text and checkpoint, signed by a known key of its log."""
        try:
            signed_text = parse_note(note).text
            checkpoint = parse_checkpoint(signed_text)
        except EvidenceError as exc:
            if exc.reason == "bad-root" and text.split("\n", 2)[1:2] == ["0"]:
                raise _Refused(_text(422, "a checkpoint of size 0 must carry SHA-256(\"\")")) from None
            raise _Refused(_text(400, f"not a checkpoint: {exc}")) from None
        if checkpoint.origin not in self.logs:
            raise _Refused(_text(404, f"unknown log origin {checkpoint.origin!r}"))
        try:
            open_note(note, self.logs[checkpoint.origin])
        except NoteError as exc:
            raise _Refused(_text(403, "the checkpoint is not signed by a known key of its log: "
                                      f"{exc}")) from None
        return signed_text, checkpoint


class _Refused(Exception):
    """A request the witness answers with something other than a cosignature."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def _read_request(body: bytes) -> tuple[int, list[bytes], str]:
    """``old <size>``, the consistency proof lines, and the checkpoint note after the blank line."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(_text(400, "the body is not UTF-8")) from None
    first, _, rest = text.partition("\n")
    old_line = _OLD_LINE.fullmatch(first)
    if old_line is None:
        raise _Refused(_text(400, "the body must start with a line 'old <size>'"))
    proof: list[bytes] = []
    while True:
        line, newline, rest = rest.partition("\n")
        if not newline:
            raise _Refused(_text(400, "no empty line between the proof and the checkpoint"))
        if line == "":
            return int(old_line[1]), proof, rest
        if len(proof) == MAX_PROOF_LINES:
            raise _Refused(_text(400, f"more than {MAX_PROOF_LINES} consistency proof lines"))
        proof.append(_proof_hash(line, len(proof) + 1))


def _proof_hash(line: str, number: int) -> bytes:
    try:
        digest = decode_base64(line, f"proof line {number}")
    except NoteError as exc:
        raise _Refused(_text(400, exc.detail)) from None
    if len(digest) != HASH_SIZE:
        raise _Refused(_text(400, f"proof line {number} is not a {HASH_SIZE}-byte hash"))
    return digest


def _check_extends(latest: Checkpoint | None, old: int, checkpoint: Checkpoint,
                   proof: list[bytes]) -> None:
    """C2SP tlog-witness: ``old`` is the size this witness knows and the proof extends it."""
    known = 0 if latest is None else latest.size
    if old != known:
        raise _Refused(Answer(409, SIZE_CONTENT_TYPE, f"{known}\n".encode()))
    if old == 0 and proof:
        raise _Refused(_text(422, "the proof must be empty when old is 0"))
    if latest is not None and old == checkpoint.size:
        if proof:
            raise _Refused(_text(422, "the proof between equal sizes must be empty"))
        if latest.root != checkpoint.root:  # a fork: C2SP answers 409 here
            raise _Refused(Answer(409, SIZE_CONTENT_TYPE, f"{known}\n".encode()))
    elif latest is not None and old > 0:
        try:
            verify_consistency(old, checkpoint.size, latest.root, checkpoint.root, proof)
        except EvidenceError as exc:
            raise _Refused(_text(422, f"the consistency proof from size {old} does not "
                                      f"verify: {exc}")) from None


class WitnessServer:
    """:class:`Witness` over HTTP (stdlib ``ThreadingHTTPServer``), ``POST /add-checkpoint``."""

    def __init__(self, witness: Witness, host: str = "127.0.0.1", port: int = 0) -> None:
        self.witness = witness
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.rstrip("/") != "/add-checkpoint":
                    self._answer(_text(404, f"no such endpoint {self.path!r}"))
                    return
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    self._answer(_text(411, "Content-Length is required"))
                    return
                if not 0 <= length <= MAX_BODY_BYTES:
                    self._answer(_text(413, f"the body is larger than {MAX_BODY_BYTES} bytes"))
                    return
                self._answer(outer.witness.add_checkpoint(self.rfile.read(length)))

            def _answer(self, answer: Answer) -> None:
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def start(self) -> WitnessServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> WitnessServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
