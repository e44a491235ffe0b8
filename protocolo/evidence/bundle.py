"""Offline verification of a proof-of-service bundle (docs/evidence-format.md §9).

Input: the bundle's bytes and what the verifier trusts (:class:`BundleTrust`: pinned log
verifier keys or a tlog-policy file, optional pinned TSA roots). Nothing is fetched: no
Kafka, no PostgreSQL, no network.

What is checked, in order, each failure with a stable reason name:

1. the container (``bundle_zip``): entries readable, canonical bytes;
2. ``manifest.json`` parses and follows the format; ``manifest.sig`` is a signed note whose
   text is ``protocolo/bundle/v1\\n<sha256 of manifest.json>\\n``, signed by a trusted log key;
3. every file listed in the manifest is there with its size and SHA-256, and no other file is;
4. every checkpoint verifies under the policy (log signature, origin, witness quorum), and
   its RFC 3161 tokens verify against the pinned TSA roots;
5. each consistency proof from a used checkpoint to the newest one of its partition;
6. per record: the leaf input recomputed from topic, partition, offset, key and value equals
   ``leaf.bin``; the value's schema fingerprint is the CRC-64-AVRO of the shipped ``.avsc``;
   the tlog-proof's index is the record's leaf index and its inclusion path leads to the
   root of a listed checkpoint of the record's own log.

The result is a :class:`BundleReport`: a verdict per record and overall. This module is part
of the offline verifier (stdlib + ``cryptography``; ``rfc3161_client`` only for tokens, and
its absence is reported, not fatal) and is inlined into the bundle's ``verify.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from protocolo.evidence.bundle_derived import DerivedError, check_derived, parse_subject
from protocolo.evidence.bundle_index import HeldRecord, check_index
from protocolo.evidence.bundle_zip import BundleFormatError, check_name, first_difference, read_zip
from protocolo.evidence.checkpoint import log_origin
from protocolo.evidence.errors import EvidenceError, PolicyError, ProofError
from protocolo.evidence.keys import verifier_from_key
from protocolo.evidence.leaf import record_leaf_hash, record_leaf_input
from protocolo.evidence.note import (
    SIG_ED25519,
    NoteVerifier,
    VerifierKey,
    decode_base64,
    open_note,
)
from protocolo.evidence.policy import (
    Policy,
    PolicyLog,
    PolicyWitness,
    VerifiedCheckpoint,
    parse_policy,
)
from protocolo.evidence.proof import verify_consistency
from protocolo.evidence.tlog_proof import parse_tlog_proof, verify_tlog_proof

FORMAT_V1 = "protocolo/bundle/v1"
FORMAT_V2 = "protocolo/bundle/v2"
FORMAT = FORMAT_V2
FORMATS = {FORMAT_V1: 1, FORMAT_V2: 2}
#: Exit status of an offline verification (docs/evidence-format.md §9.4).
EXIT_VALID, EXIT_INVALID, EXIT_ARGUMENTS, EXIT_UNPINNED = 0, 1, 2, 3
#: Deepest JSON nesting a manifest may have (the format needs 4; a hostile file must not
#: exhaust the parser's stack).
MAX_JSON_DEPTH = 32
MANIFEST = "manifest.json"
MANIFEST_SIGNATURE = "manifest.sig"
SUMS = "SHA256SUMS"
AVRO_MAGIC = b"\xc3\x01"


def manifest_note_text(manifest: bytes, fmt: str = FORMAT) -> str:
    """The text ``manifest.sig`` signs: the format line and the manifest's SHA-256 (hex)."""
    return f"{fmt}\n{hashlib.sha256(manifest).hexdigest()}\n"


def printable(text: object) -> str:
    """``text`` safe to print on one line: control characters, line breaks and lone
    surrogates are written as Python escapes, so a name taken from a hostile bundle can
    neither break the report's lines (a forged ``VERDICT`` line) nor fail to encode."""
    out = []
    for c in str(text):
        if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF:
            out.append(c)
        else:
            out.append(c.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return "".join(out)


def sha256sums(files: dict[str, bytes]) -> bytes:
    """``SHA256SUMS`` (``sha256sum -c`` format) of every file but itself and the manifest pair."""
    return "".join(f"{hashlib.sha256(files[p]).hexdigest()}  {p}\n" for p in sorted(files)
                   if p not in (SUMS, MANIFEST, MANIFEST_SIGNATURE)).encode("ascii")


def avro_fingerprint(canonical_schema: bytes) -> bytes:
    """CRC-64-AVRO (Rabin) of a schema's Parsing Canonical Form, little-endian, as in the
    single-object encoding header (Avro specification, "Schema Fingerprints")."""
    table = _rabin_table()
    fp = _RABIN_EMPTY
    for byte in canonical_schema:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


_RABIN_EMPTY = 0xC15D213AA4D7A795


@lru_cache(maxsize=1)
def _rabin_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_RABIN_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


@dataclass(frozen=True)
class BundleTrust:
    """What the person verifying trusts, given on the command line, never taken from the bundle.

    ``policies`` (tlog-policy files) say which log keys and witnesses are trusted and which
    witness quorum is required; a checkpoint is judged by the first policy with a log named
    after its origin (one policy may list every partition's log, or several may be given).
    Without policies, ``vkeys`` are the trusted log (and witness) keys, no witness required.
    With neither, the bundle's own policy files are used and the verdict says the keys were
    NOT pinned. ``tsa_roots`` (PEM) are the pinned TSA roots.
    """

    vkeys: tuple[str, ...] = ()
    policies: tuple[bytes, ...] = ()
    tsa_roots: tuple[bytes, ...] = ()

    @property
    def pinned(self) -> bool:
        return bool(self.vkeys or self.policies)


@dataclass(frozen=True)
class Expected:
    """What the person verifying expects the bundle to be about (``--protocol``,
    ``--request``): a genuine bundle of another contact is then INVALID (``subject-mismatch``)."""

    protocol_number: str | None = None
    request_id: str | None = None
    #: ``--cpf-index HEX`` / ``--customer-code-index HEX``: the customer's blind index, which
    #: the recipient gets from the maker (it cannot be computed offline: keyed HMAC)
    customer_index: str | None = None


@dataclass
class Finding:
    """One check: ``reason`` is empty when it passed, else the stable name of the failed rule."""

    subject: str
    ok: bool
    reason: str = ""
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "ok": self.ok, "reason": self.reason or None,
                "detail": self.detail}


@dataclass
class RecordVerdict:
    path: str
    topic: str = ""
    partition: int = -1
    offset: int = -1
    leaf_index: int = -1
    event_type: str = ""
    ok: bool = False
    reason: str = ""
    detail: str = ""
    checkpoint_size: int = -1

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "topic": self.topic, "partition": self.partition,
                "offset": self.offset, "leaf_index": self.leaf_index, "event_type": self.event_type,
                "verdict": "VERIFIED" if self.ok else "FAILED", "reason": self.reason or None,
                "detail": self.detail}


@dataclass
class BundleReport:
    findings: list[Finding] = field(default_factory=list)
    records: list[RecordVerdict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    pinned: bool = False
    format_version: int = 0
    subject: dict[str, Any] = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)  # "<origin> size <n>" verified

    @property
    def checks_passed(self) -> bool:
        """Every check passed, whoever's keys they were made with."""
        return bool(self.records) and all(f.ok for f in self.findings) and all(r.ok for r in self.records)

    @property
    def ok(self) -> bool:
        """VALID: every check passed **and** the keys were pinned by the person verifying."""
        return self.checks_passed and self.pinned

    @property
    def verdict(self) -> str:
        if not self.checks_passed:
            return "INVALID"
        return "VALID" if self.pinned else "UNPINNED"

    @property
    def exit_status(self) -> int:
        return {"VALID": EXIT_VALID, "INVALID": EXIT_INVALID}.get(self.verdict, EXIT_UNPINNED)

    def proven(self) -> str:
        """What the bundle proves, in words: its subject and the checkpoints."""
        kind = self.subject.get("kind") or "contact"
        who = self.subject.get("protocol_number")
        name = f"{kind} {who}" if who else kind
        for blind in ("cpf_index", "customer_code_index"):
            if isinstance(self.subject.get(blind), str):
                name += f" {blind} {self.subject[blind]}, contacts " + (
                    ", ".join(str(p) for p in self.subject.get("protocol_numbers") or []) or "none")
        requests = self.subject.get("request_ids") or []
        if requests:
            name += f" (requests {', '.join(str(r) for r in requests)})"
        checkpoints = "; ".join(self.checkpoints) or "none"
        return f"{name}; checkpoints: {checkpoints}"

    @property
    def reasons(self) -> list[str]:
        """Every failure's reason, in the order found (empty when the bundle verifies)."""
        found = [f.reason for f in self.findings if not f.ok]
        found += [r.reason for r in self.records if not r.ok]
        if not self.records and not found:
            found.append("no-records")
        return found

    def passed(self, subject: str, detail: str = "") -> None:
        self.findings.append(Finding(subject, True, "", detail))

    def failed(self, subject: str, reason: str, detail: str) -> None:
        self.findings.append(Finding(subject, False, reason, detail))

    def as_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reasons": self.reasons, "pinned": self.pinned,
                "format_version": self.format_version, "subject": self.subject,
                "checkpoints": self.checkpoints, "proven": self.proven(),
                "records": [r.as_json() for r in self.records],
                "checks": [f.as_json() for f in self.findings], "warnings": self.warnings,
                "summary": self.summary}

    def render(self) -> str:
        """The text report; every name taken from the bundle is escaped (:func:`printable`)."""
        p = printable
        lines = []
        for r in self.records:
            where = f"partition {r.partition} offset {r.offset} leaf {r.leaf_index}"
            if r.ok:
                lines.append(f"VERIFIED  {p(r.path)}  {p(r.event_type)}  {where}  {p(r.detail)}")
            else:
                lines.append(f"FAILED    {p(r.path)}  {where}  [{p(r.reason)}] {p(r.detail)}")
        for f in self.findings:
            if not f.ok:
                lines.append(f"FAILED    {p(f.subject)}  [{p(f.reason)}] {p(f.detail)}")
        for w in self.warnings:
            lines.append(f"WARNING   {p(w)}")
        verified = sum(1 for r in self.records if r.ok)
        count = f"{verified} of {len(self.records)} records verified"
        if self.verdict == "VALID":
            lines.append(f"PROVEN    {p(self.proven())}")
            lines.append(f"VERDICT: VALID ({count})")
        elif self.verdict == "UNPINNED":
            lines.append(f"CHECKED   {p(self.proven())}")
            lines.append(f"VERDICT: UNPINNED ({count} against the bundle's OWN keys, which prove "
                         "nothing by themselves: pin the company's published log keys with --vkey "
                         "or a tlog-policy with --policy; `protocolo keys show` prints them)")
        else:
            lines.append(f"VERDICT: INVALID ({count}; reasons: "
                         f"{p(', '.join(dict.fromkeys(self.reasons)))})")
        return "\n".join(lines) + "\n"


class _Bad(Exception):
    """A manifest field that breaks the format (becomes ``manifest-malformed``)."""


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise _Bad(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Bad(f"{where}: {key!r} has the wrong type")
    return value


def _int(obj: Any, key: str, where: str) -> int:
    value = _get(obj, key, int, where)
    if isinstance(value, bool) or value < 0:
        raise _Bad(f"{where}: {key!r} must be a non-negative integer")
    return int(value)


@dataclass(frozen=True)
class _Checkpoint:
    partition: int
    topic: str
    size: int
    path: str
    newest: bool
    timestamps: tuple[tuple[str, str], ...]  # (token path, chain path)


@dataclass(frozen=True)
class _Record:
    directory: str
    topic: str
    partition: int
    offset: int
    leaf_index: int
    key_null: bool
    event_type: str


@dataclass(frozen=True)
class _Manifest:
    deployment: str
    files: dict[str, tuple[int, str]]
    records: tuple[_Record, ...]
    checkpoints: tuple[_Checkpoint, ...]
    consistency: tuple[tuple[int, str, int, int, str], ...]  # partition, topic, from, to, path
    policy_paths: tuple[str, ...]
    summary: dict[str, Any]
    format: str = FORMAT_V1
    doc: dict[str, Any] = field(default_factory=dict)  # the whole manifest, for v2's checks

    @property
    def version(self) -> int:
        return FORMATS[self.format]


_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}", re.ASCII)


def _depth(text: str) -> int:
    """How deeply a JSON text nests (brackets outside strings), without parsing it."""
    deepest = level = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
            continue
        if c == '"':
            in_string, escaped = True, False
        elif c in "[{":
            level += 1
            deepest = max(deepest, level)
        elif c in "]}":
            level -= 1
    return deepest


def _load_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if _depth(text) > MAX_JSON_DEPTH:
        raise _Bad(f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _Bad(f"not JSON ({printable(exc)})") from None


def _path(obj: Any, key: str, where: str) -> str:
    path = _get(obj, key, str, where)
    try:
        check_name(path)
    except BundleFormatError:
        raise _Bad(f"{where}: {key} {printable(path[:80])!r} is not a plain relative path of "
                   "[A-Za-z0-9._-] segments") from None
    return str(path)


def _topic(obj: Any, where: str) -> str:
    topic = _get(obj, "topic", str, where)
    if not _TOPIC.fullmatch(topic):
        raise _Bad(f"{where}: topic {printable(topic[:80])!r} is not a Kafka topic name")
    return str(topic)


def _record(r: Any, where: str) -> _Record:
    record = _Record(_path(r, "dir", where), _topic(r, where), _int(r, "partition", where),
                     _int(r, "offset", where), _int(r, "leaf_index", where),
                     _get(r, "key_null", bool, where), _get(r, "event_type", str, where))
    if record.directory != f"records/p{record.partition}-o{record.offset}":
        raise _Bad(f"{where}: dir {record.directory!r} is not records/p<partition>-o<offset>")
    return record


def _parse_manifest(data: bytes) -> _Manifest:
    doc = _load_json(data)
    fmt = _get(doc, "format", str, "manifest")
    if fmt not in FORMATS:
        raise _Bad(f"format {printable(fmt[:40])!r} is not one of {', '.join(FORMATS)}")
    if FORMATS[fmt] >= 2 and doc.get("format_version") != FORMATS[fmt]:
        raise _Bad(f"format_version is not {FORMATS[fmt]}")
    log = _get(doc, "log", dict, "manifest")
    deployment = _get(log, "deployment", str, "log")
    files: dict[str, tuple[int, str]] = {}
    for i, f in enumerate(_get(doc, "files", list, "manifest")):
        path = _path(f, "path", f"files[{i}]")
        digest = _get(f, "sha256", str, f"files[{i}]")
        if len(digest) != 64 or digest.strip("0123456789abcdef"):
            raise _Bad(f"files[{i}]: sha256 is not 64 lowercase hex digits")
        if path in files or path in (MANIFEST, MANIFEST_SIGNATURE):
            raise _Bad(f"files[{i}]: {path!r} listed twice or not listable")
        files[path] = (_int(f, "size", f"files[{i}]"), digest)
    records = tuple(_record(r, f"records[{i}]")
                    for i, r in enumerate(_get(doc, "records", list, "manifest")))
    checkpoints = []
    for i, c in enumerate(_get(doc, "checkpoints", list, "manifest")):
        stamps = tuple((_path(t, "token", f"checkpoints[{i}].timestamps"),
                        _path(t, "chain", f"checkpoints[{i}].timestamps"))
                       for t in _get(c, "timestamps", list, f"checkpoints[{i}]"))
        checkpoints.append(_Checkpoint(_int(c, "partition", f"checkpoints[{i}]"),
                                       _topic(c, f"checkpoints[{i}]"),
                                       _int(c, "size", f"checkpoints[{i}]"),
                                       _path(c, "path", f"checkpoints[{i}]"),
                                       _get(c, "newest", bool, f"checkpoints[{i}]"), stamps))
    consistency = tuple(
        (_int(c, "partition", f"consistency[{i}]"), _topic(c, f"consistency[{i}]"),
         _int(c, "from", f"consistency[{i}]"), _int(c, "to", f"consistency[{i}]"),
         _path(c, "path", f"consistency[{i}]"))
        for i, c in enumerate(_get(doc, "consistency", list, "manifest")))
    summary = {k: doc.get(k) for k in ("request", "created", "pending") if k in doc}
    return _Manifest(deployment, files, records, tuple(checkpoints), consistency,
                     tuple(_path({"p": p}, "p", "policies")
                           for p in _get(doc, "policies", list, "manifest")), summary, fmt, doc)


@dataclass(frozen=True)
class TrustedLogs:
    """The policies a bundle is judged by; each checkpoint by the one naming its log."""

    policies: tuple[Policy, ...]

    def for_origin(self, origin: str) -> Policy:
        for policy in self.policies:
            if any(log.key.name == origin for log in policy.logs):
                return policy
        raise PolicyError("no-log-signature", f"no trusted key or policy names the log {origin!r}")

    def log_verifiers(self) -> list[NoteVerifier]:
        return [log.verifier for policy in self.policies for log in policy.logs]


def _trusted_logs(trust: BundleTrust, bundled: Sequence[bytes | None], report: BundleReport) -> TrustedLogs:
    if trust.policies:
        return TrustedLogs(tuple(parse_policy(p) for p in trust.policies))
    if trust.vkeys:
        logs: list[PolicyLog] = []
        witnesses: dict[str, PolicyWitness] = {}
        for vkey in trust.vkeys:
            key = VerifierKey.parse(vkey)
            verifier = verifier_from_key(vkey)
            if key.type == SIG_ED25519:
                logs.append(PolicyLog(key, verifier))
            else:
                witnesses[key.name] = PolicyWitness(key.name, key, verifier)
        return TrustedLogs((Policy(tuple(logs), witnesses),))
    report.warnings.append(
        "keys NOT pinned: the bundle was checked against its own policy files and keys; it is "
        "only evidence if those keys are the company's published ones (give --vkey or --policy)")
    if not bundled or any(p is None for p in bundled):
        raise EvidenceError("file-missing", "a policy file is missing and no key was given")
    return TrustedLogs(tuple(parse_policy(p) for p in bundled if p is not None))


def _named(exc: BaseException, fallback: str) -> tuple[str, str]:
    reason = getattr(exc, "reason", None)
    detail = getattr(exc, "detail", None) or str(exc)
    return (str(reason) if reason else fallback), str(detail)


TimestampCheck = Callable[[bytes, bytes, bytes, Sequence[bytes]], str]


def _timestamp_checker(report: BundleReport) -> TimestampCheck | None:
    try:
        from protocolo.evidence import timestamp
    except ImportError:
        report.warnings.append("timestamps not checked: rfc3161-client missing "
                               "(pip install rfc3161-client)")
        return None

    def check(token: bytes, note_text: bytes, chain_pem: bytes, roots: Sequence[bytes]) -> str:
        chain = timestamp.load_certificates(chain_pem, what="bundled TSA chain")
        pinned = tuple(c for pem in roots for c in timestamp.load_certificates(pem, what="--tsa-root"))
        trust = timestamp.TsaTrust(roots=pinned or chain[-1:], tsa_certificate=chain[0],
                                   intermediates=chain[1:-1] if len(chain) > 2 else ())
        verified = timestamp.verify_timestamp(token, note_text, trust)
        return f"{verified.gen_time.isoformat()} by {verified.tsa_name}"

    return check


def verify_bundle(data: bytes, trust: BundleTrust, expected: Expected | None = None) -> BundleReport:
    """Verify a bundle offline; never raises for a bad bundle, reports instead.

    The verdict is VALID only with pinned keys (``trust.pinned``); the same checks passed
    against the bundle's own keys give UNPINNED. ``expected`` (the contact or request the
    person verifying is asking about) turns a genuine bundle of another subject INVALID.
    """
    report = BundleReport(pinned=trust.pinned)
    try:
        _verify(data, trust, expected or Expected(), report)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - a hostile bundle that reaches a case the checks
        # above did not foresee is still a named INVALID finding, never a traceback
        report.failed("bundle", "unverifiable", f"{type(exc).__name__}: {printable(exc)[:200]}")
    return report


def _verify(data: bytes, trust: BundleTrust, expected: Expected, report: BundleReport) -> None:
    try:
        entries = read_zip(data)
    except EvidenceError as exc:
        report.failed("bundle", *_named(exc, "not-a-bundle"))
        return
    files = dict(entries)
    names = [name for name, _ in entries]
    if names != sorted(names, key=lambda n: n.encode("ascii")):
        report.failed("container", "zip-not-sorted",
                      "entries are not in bytewise order of their names (§9.1)")
    difference = first_difference(entries, data)
    if difference is None:
        report.passed("container")
    else:
        report.failed("container", "zip-not-canonical",
                      f"byte {difference} differs from the canonical ZIP of the entries")
    manifest_bytes = files.get(MANIFEST)
    if manifest_bytes is None:
        report.failed(MANIFEST, "manifest-missing", "the bundle has no manifest.json")
        return
    try:
        manifest = _parse_manifest(manifest_bytes)
    except _Bad as exc:
        report.failed(MANIFEST, "manifest-malformed", str(exc))
        return
    report.summary = manifest.summary
    report.format_version = manifest.version
    report.subject = _subject_of(manifest)
    _check_expected(report, expected)
    try:
        policy = _trusted_logs(trust, [files.get(p) for p in manifest.policy_paths], report)
    except EvidenceError as exc:
        report.failed("trust", *_named(exc, "bad-trust"))
        return
    _check_manifest_signature(report, files, manifest_bytes, policy, manifest.format)
    _check_files(report, files, manifest)
    verified = _check_checkpoints(report, files, manifest, policy, trust)
    report.checkpoints = [f"{c.signed.checkpoint.origin} size {c.signed.checkpoint.size}"
                          for _, c in sorted(verified.items())]
    _check_consistency(report, files, manifest, verified)
    for record in manifest.records:
        report.records.append(_check_record(files, manifest, record, policy, verified))
    if manifest.version >= 2:
        _check_readable(report, files, manifest)
        _check_index(report, files, manifest, verified)
        _check_partitions(report, trust, verified)
    else:
        report.warnings.append("format v1: record.json and summary.html are the maker's text, "
                               "not checked against the records (v2 bundles are)")


def _subject_of(manifest: _Manifest) -> dict[str, Any]:
    if manifest.version >= 2:
        try:
            return parse_subject(manifest.doc).as_json()
        except DerivedError:
            return {}
    request = manifest.doc.get("request")
    request = request if isinstance(request, dict) else {}
    protocol, rid = request.get("protocol_number"), request.get("request_id")
    return {"kind": "contact", "protocol_number": protocol if isinstance(protocol, str) else None,
            "request_ids": [rid] if isinstance(rid, str) else []}


def _check_expected(report: BundleReport, expected: Expected) -> None:
    if expected.customer_index is not None:
        indexes = {report.subject.get(f) for f in ("cpf_index", "customer_code_index")}
        if expected.customer_index not in indexes:
            report.failed("subject", "subject-mismatch", "the bundle is not about the customer of "
                          f"blind index {expected.customer_index} (--customer-index)")
    have = report.subject.get("protocol_number")
    if expected.protocol_number is not None and expected.protocol_number != have:
        report.failed("subject", "subject-mismatch", f"the bundle is about protocol {have}, not "
                      f"{expected.protocol_number} (--protocol)")
    requests = report.subject.get("request_ids") or []
    if expected.request_id is not None and expected.request_id not in requests:
        report.failed("subject", "subject-mismatch", f"the bundle covers requests {requests}, not "
                      f"{expected.request_id} (--request)")


def _check_readable(report: BundleReport, files: dict[str, bytes], manifest: _Manifest) -> None:
    sizes = {v.path: v.checkpoint_size for v in report.records}
    rows = [(r.directory, r.topic, r.partition, r.offset, r.leaf_index, r.key_null, r.event_type,
             sizes.get(r.directory, -1)) for r in manifest.records]
    everything = bool(report.records) and all(v.ok for v in report.records)
    found = check_derived(files, manifest.doc, rows, everything)
    for f in found:
        report.failed(f.subject, f.reason, f.detail)
    if not everything:
        report.warnings.append("summary.html not compared: not every record verified")
    elif not found:
        report.passed("readable", "record.json and summary.html re-derived from the records' bytes")


def _check_index(report: BundleReport, files: dict[str, bytes], manifest: _Manifest,
                 verified: dict[tuple[int, int], VerifiedCheckpoint]) -> None:
    """Completeness against the verifiable index (bundle_index)."""
    index = manifest.doc.get("index")
    if not index:
        report.warnings.append("completeness not proven: the bundle carries no index lookup proof")
        return
    if not isinstance(index, list):
        report.failed("index", "index-malformed", "the manifest's index is not a list")
        return
    held = [HeldRecord(r.directory, r.partition, r.leaf_index,
                       None if r.key_null else files.get(f"{r.directory}/key.bin"))
            for r in manifest.records]
    for result in check_index(files, index, report.subject, held, verified):
        if result.ok:
            report.passed(result.subject, result.detail)
        else:
            report.failed(result.subject, result.reason, result.detail)


def _check_partitions(report: BundleReport, trust: BundleTrust,
                      verified: dict[tuple[int, int], VerifiedCheckpoint]) -> None:
    """A customer's bundle proves absence only in the partitions its subject states: every
    log the person verifying pinned (``--vkey``) for the same topic must be one of them, so a
    maker cannot leave a partition out by stating a smaller count (``partitions-mismatch``)."""
    stated = report.subject.get("partitions")
    if report.subject.get("kind") != "customer" or not isinstance(stated, int):
        return
    without = report.subject.get("without_checkpoint") or []
    if without:
        report.warnings.append(f"absence not proven in partitions {without}: the maker states they "
                               "have no signed checkpoint yet (no record of them is proven either)")
    topics = {c.signed.checkpoint.origin.rpartition("/")[0] for c in verified.values()}
    for vkey in trust.vkeys:
        try:
            name = VerifierKey.parse(vkey).name
        except EvidenceError:
            continue
        base, _, number = name.rpartition("/")
        if base in topics and number.isdigit() and int(number) >= stated:
            report.failed("subject", "partitions-mismatch", f"the bundle states {stated} "
                          f"partitions; a pinned key names partition {number} ({name})")


def _check_manifest_signature(report: BundleReport, files: dict[str, bytes], manifest: bytes,
                              policy: TrustedLogs, fmt: str) -> None:
    signature = files.get(MANIFEST_SIGNATURE)
    if signature is None:
        report.failed(MANIFEST_SIGNATURE, "manifest-unsigned", "the bundle has no manifest.sig")
        return
    try:
        opened = open_note(signature, policy.log_verifiers())
    except EvidenceError as exc:
        report.failed(MANIFEST_SIGNATURE, *_named(exc, "invalid-signature"))
        return
    if opened.text != manifest_note_text(manifest, fmt):
        report.failed(MANIFEST_SIGNATURE, "manifest-digest-mismatch",
                      "the signed text is not the format line and the SHA-256 of manifest.json")
        return
    names = ", ".join(sorted({s.name for s in opened.verified}))
    report.passed(MANIFEST_SIGNATURE, f"signed by {names}")


def _check_files(report: BundleReport, files: dict[str, bytes], manifest: _Manifest) -> None:
    bad = 0
    for path, (size, digest) in manifest.files.items():
        data = files.get(path)
        if data is None:
            report.failed(path, "file-missing", "listed in the manifest, absent from the bundle")
        elif len(data) != size:
            report.failed(path, "file-size-mismatch", f"{len(data)} bytes, the manifest says {size}")
        elif hashlib.sha256(data).hexdigest() != digest:
            report.failed(path, "file-hash-mismatch", "SHA-256 differs from the manifest's")
        else:
            continue
        bad += 1
    for path in files:
        if path not in manifest.files and path not in (MANIFEST, MANIFEST_SIGNATURE):
            report.failed(path, "file-not-in-manifest", "present in the bundle, not listed")
            bad += 1
    expected = "".join(f"{digest}  {path}\n" for path, (_, digest) in sorted(manifest.files.items())
                       if path != SUMS).encode("ascii")
    if SUMS not in manifest.files:
        report.failed(SUMS, "sums-missing", "the manifest does not list SHA256SUMS")
        bad += 1
    elif files.get(SUMS) is not None and files[SUMS] != expected:
        report.failed(SUMS, "sums-mismatch", "SHA256SUMS does not list the manifest's hashes")
        bad += 1
    if not bad:
        report.passed("files", f"{len(manifest.files)} files match the manifest")


def _check_checkpoints(report: BundleReport, files: dict[str, bytes], manifest: _Manifest,
                       policy: TrustedLogs, trust: BundleTrust) -> dict[tuple[int, int], VerifiedCheckpoint]:
    verified: dict[tuple[int, int], VerifiedCheckpoint] = {}
    stamp: TimestampCheck | None = None
    if any(c.timestamps for c in manifest.checkpoints):
        stamp = _timestamp_checker(report)
        if stamp is not None and not trust.tsa_roots:
            report.warnings.append("TSA root NOT pinned: tokens were checked against the chain "
                                   "in the bundle (give --tsa-root)")
    for c in manifest.checkpoints:
        note = files.get(c.path)
        if note is None:
            report.failed(c.path, "file-missing", "checkpoint listed in the manifest is absent")
            continue
        try:
            origin = log_origin(manifest.deployment, c.topic, c.partition)
            checked = policy.for_origin(origin).verify_checkpoint(note, origin)
            if checked.signed.checkpoint.size != c.size:
                raise ProofError("checkpoint-size-mismatch",
                                 f"note says size {checked.signed.checkpoint.size}, manifest {c.size}")
        except EvidenceError as exc:
            report.failed(c.path, *_named(exc, "checkpoint-invalid"))
            continue
        verified[(c.partition, c.size)] = checked
        witnesses = ", ".join(checked.witnesses) or "no witness"
        report.passed(c.path, f"size {c.size}, signed by {checked.log.key.name}; cosigned: {witnesses}")
        if stamp is None:
            continue
        text = checked.signed.note.text.encode("utf-8")
        for token_path, chain_path in c.timestamps:
            token, chain = files.get(token_path), files.get(chain_path)
            if token is None or chain is None:
                report.failed(token_path, "file-missing", "timestamp token or its TSA chain is absent")
                continue
            if not _intact(report, token_path, chain_path):
                report.failed(token_path, "timestamp-not-checked",
                              "token or chain does not match the manifest; not parsed")
                continue
            try:
                report.passed(token_path, "timestamped " + stamp(token, text, chain, trust.tsa_roots))
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - rfc3161-client can panic (pyo3
                # PanicException is a BaseException) on a malformed certificate: a bad token
                # is a finding, never a crash
                report.failed(token_path, *_named(exc, "timestamp-unreadable"))
    return verified


def _intact(report: BundleReport, *paths: str) -> bool:
    """Whether none of ``paths`` failed the manifest's hash check."""
    return not any(f.subject in paths and not f.ok for f in report.findings)


def _check_consistency(report: BundleReport, files: dict[str, bytes], manifest: _Manifest,
                       verified: dict[tuple[int, int], VerifiedCheckpoint]) -> None:
    newest = {(c.partition, c.size) for c in manifest.checkpoints if c.newest}
    for partition in sorted({c.partition for c in manifest.checkpoints}):
        sizes = [c.size for c in manifest.checkpoints if c.partition == partition]
        marked = [size for p, size in newest if p == partition]
        if marked != [max(sizes)]:
            report.failed(f"checkpoints/p{partition}", "checkpoint-newest",
                          f"exactly one checkpoint of partition {partition}, its largest "
                          f"({max(sizes)}), must be marked newest; marked: {sorted(marked)}")
    for c in manifest.checkpoints:
        if c.newest:
            continue
        target = [n for p, n in newest if p == c.partition]
        proofs = [x for x in manifest.consistency
                  if x[0] == c.partition and x[2] == c.size and x[3] in target]
        if not proofs:
            report.failed(c.path, "consistency-missing",
                          "no consistency proof to the newest checkpoint of its partition")
    for partition, _topic, size1, size2, path in manifest.consistency:
        first, second = verified.get((partition, size1)), verified.get((partition, size2))
        if first is None or second is None or (partition, size2) not in newest:
            report.failed(path, "consistency-unanchored",
                          f"proof {size1} -> {size2} does not join two verified checkpoints "
                          "(the second being the newest)")
            continue
        try:
            text = files.get(path)
            if text is None:
                raise EvidenceError("file-missing", "consistency proof is absent")
            lines = text.decode("ascii").split("\n")
            if lines[-1] != "":
                raise ProofError("malformed-consistency", "each hash line ends with a newline")
            proof = [decode_base64(line, "consistency hash", ProofError) for line in lines[:-1]]
            verify_consistency(size1, size2, first.signed.checkpoint.root,
                               second.signed.checkpoint.root, proof)
        except UnicodeDecodeError:
            report.failed(path, "malformed-consistency", "not ASCII")
        except EvidenceError as exc:
            report.failed(path, *_named(exc, "consistency-invalid"))
        else:
            report.passed(path, f"tree of size {size1} is a prefix of size {size2}")


def _check_record(files: dict[str, bytes], manifest: _Manifest, r: _Record, policy: TrustedLogs,
                  verified: dict[tuple[int, int], VerifiedCheckpoint]) -> RecordVerdict:
    verdict = RecordVerdict(r.directory, r.topic, r.partition, r.offset, r.leaf_index, r.event_type)
    try:
        leaf = files.get(f"{r.directory}/leaf.bin")
        value = files.get(f"{r.directory}/value.bin")
        key = None if r.key_null else files.get(f"{r.directory}/key.bin")
        proof_bytes = files.get(f"{r.directory}/proof.tlog-proof")
        if leaf is None or value is None or proof_bytes is None or (key is None and not r.key_null):
            raise EvidenceError("record-incomplete", "leaf.bin, key.bin, value.bin or proof.tlog-proof is absent")
        if record_leaf_input(r.topic, r.partition, r.offset, key, value) != leaf:
            raise EvidenceError("leaf-mismatch", "leaf.bin is not the leaf of this topic, partition, "
                                "offset, key and value")
        if value[:2] == AVRO_MAGIC and len(value) >= 10:
            fingerprint = value[2:10]
            schema = files.get(f"schemas/{fingerprint.hex()}.avsc")
            if schema is None:
                raise EvidenceError("schema-missing", f"no schemas/{fingerprint.hex()}.avsc")
            if avro_fingerprint(schema) != fingerprint:
                raise EvidenceError("schema-mismatch", "the .avsc is not the schema the value names")
        proof = parse_tlog_proof(proof_bytes)
        if proof.index != r.leaf_index:
            raise ProofError("leaf-index-mismatch", f"proof is for leaf {proof.index}, record is "
                             f"leaf {r.leaf_index}")
        origin = log_origin(manifest.deployment, r.topic, r.partition)
        checked = verify_tlog_proof(proof_bytes, record_leaf_hash(r.topic, r.partition, r.offset,
                                                                  key, value),
                                    policy.for_origin(origin), origin)
        size = checked.signed.checkpoint.size
        listed = verified.get((r.partition, size))
        if listed is None or listed.signed.note.text != checked.signed.note.text:
            raise ProofError("checkpoint-not-listed", f"proof's checkpoint (size {size}) is not "
                             "a verified checkpoint of the bundle")
    except EvidenceError as exc:
        verdict.reason, verdict.detail = _named(exc, "record-invalid")
        return verdict
    verdict.ok = True
    verdict.checkpoint_size = size
    witnesses = ", ".join(checked.witnesses) or "none"
    verdict.detail = f"in checkpoint size {size} (witnesses: {witnesses})"
    return verdict


class TrustInputError(EvidenceError):
    """An option of the verifier (a key, a policy file, a TSA root, an expectation) is bad;
    the message names the option."""

    def __init__(self, detail: str) -> None:
        super().__init__("bad-option", detail)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verifier's options, shared by ``verify.py`` and ``protocolo verify-evidence``."""
    parser.add_argument("bundle", metavar="FILE.zip")
    parser.add_argument("--vkey", action="append", default=[], metavar="VKEY",
                        help="pinned log (or witness) verifier key, C2SP form, as the company "
                        "publishes it (`protocolo keys show`); repeat, one per partition's log")
    parser.add_argument("--policy", action="append", default=[], metavar="FILE",
                        help="pinned C2SP tlog-policy (logs, witnesses, quorum); repeat, one per "
                        "partition's log")
    parser.add_argument("--tsa-root", action="append", default=[], metavar="PEM",
                        help="pinned root certificate of the Time-Stamp Authority; repeatable")
    parser.add_argument("--protocol", metavar="N", help="the contact the bundle must be about: "
                        "a genuine bundle of another contact is INVALID")
    parser.add_argument("--request", metavar="ID", help="a retrieval request the bundle must cover")
    parser.add_argument("--customer-index", metavar="HEX", help="the customer a customer's bundle "
                        "must be about: their blind index (cpf_index or customer_code_index, 64 "
                        "hex digits) as the company states it; a bundle of another customer is "
                        "INVALID")
    parser.add_argument("--json", action="store_true", help="machine-readable report")


def main(argv: list[str] | None = None, prog: str = "verify.py") -> int:
    """``verify.py FILE.zip --vkey K ... [--policy FILE] [--tsa-root PEM ...] [--protocol N]
    [--request ID] [--json]``.

    Exit status: 0 VALID, 1 INVALID, 2 bad arguments or unreadable files, 3 UNPINNED (every
    check passed, but only against the bundle's own keys: pin the published ones).
    """
    parser = argparse.ArgumentParser(prog=prog, description="Verify a Protocolo proof-of-service "
                                     "bundle offline. Exit status: 0 VALID, 1 INVALID, 2 bad "
                                     "arguments, 3 UNPINNED (no --vkey/--policy given).")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        trust, expected = options(args)
        with open(args.bundle, "rb") as f:
            data = f.read()
    except TrustInputError as exc:
        print(f"{prog}: {printable(exc.detail)}", file=sys.stderr)
        return EXIT_ARGUMENTS
    except OSError as exc:
        print(f"{prog}: cannot read the bundle {printable(args.bundle)}: {exc.strerror}", file=sys.stderr)
        return EXIT_ARGUMENTS
    report = verify_bundle(data, trust, expected)
    sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n" if args.json else report.render())
    return report.exit_status


def options(args: argparse.Namespace) -> tuple[BundleTrust, Expected]:
    """Trust and expectation from the parsed options, each checked before the bundle is read."""
    protocol = args.protocol
    if protocol is not None:
        protocol = "".join(protocol.split())
        if not (len(protocol) == 15 and protocol.isascii() and protocol.isdigit()):
            raise TrustInputError(f"--protocol {printable(args.protocol)!r}: a protocol number "
                                  "has 15 digits")
    request = args.request
    if request is not None and not _UUID.fullmatch(request.strip().lower()):
        raise TrustInputError(f"--request {printable(request)!r}: a request id is a UUID")
    if request is not None:
        request = request.strip().lower()
    customer = getattr(args, "customer_index", None)
    if customer is not None:
        customer = customer.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", customer):
            raise TrustInputError(f"--customer-index {printable(args.customer_index)!r}: a blind "
                                  "index is 64 hex digits")
    return load_trust(args.vkey, args.policy, args.tsa_root), Expected(protocol, request, customer)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)


def _read_option_file(option: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TrustInputError(f"{option} {printable(path)}: cannot read it ({exc.strerror})") from None


def load_trust(vkeys: Sequence[str], policy_paths: Sequence[str], tsa_roots: Sequence[str]) -> BundleTrust:
    """Trust from command-line arguments; a bad key or file raises :class:`TrustInputError`
    naming the option."""
    for vkey in vkeys:
        try:
            verifier_from_key(vkey.strip())
        except EvidenceError as exc:
            raise TrustInputError(f"--vkey {printable(vkey[:80])!r}: not a C2SP verifier key "
                                  f"({exc.detail}); `protocolo keys show` prints the log's") from None
    policies = []
    for path in policy_paths:
        policies.append(_read_option_file("--policy", path))
        try:
            parse_policy(policies[-1])
        except EvidenceError as exc:
            raise TrustInputError(f"--policy {printable(path)}: not a tlog-policy ({exc.detail})") from None
    roots = []
    for path in tsa_roots:
        roots.append(_read_option_file("--tsa-root", path))
        if b"-----BEGIN CERTIFICATE-----" not in roots[-1]:
            raise TrustInputError(f"--tsa-root {printable(path)}: not a PEM certificate")
    return BundleTrust(tuple(v.strip() for v in vkeys), tuple(policies), tuple(roots))


__all__ = ["EXIT_UNPINNED", "FORMAT", "FORMAT_V1", "FORMAT_V2", "BundleFormatError", "BundleReport",
           "BundleTrust", "Expected", "Finding", "RecordVerdict", "TrustInputError", "TrustedLogs",
           "add_arguments", "avro_fingerprint", "load_trust", "main", "manifest_note_text",
           "options", "printable", "verify_bundle"]
