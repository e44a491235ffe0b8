"""Checks of a v2 bundle's readable parts against the records' proven bytes (§9.5).

Each ``record.json`` must be exactly :func:`~protocolo.evidence.readable.readable_record` of
the record's key and value decoded with the bundled writer schema, ``summary.html`` exactly
:func:`~protocolo.evidence.readable.summary_html` of those records and the signed manifest's
``subject``, ``created``, ``rules``, ``declared`` and ``pending``; and every record must
belong to the manifest's subject (its protocol number, or one of its retrieval requests).
A difference is named by file and by the first field (JSON path) or line that differs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from protocolo.evidence.readable import ProvenRecord, canonical_json, readable_record, summary_html

SUMMARY = "summary.html"


@dataclass(frozen=True)
class Subject:
    """Whom the bundle is about (manifest ``subject``)."""

    kind: str
    protocol_number: str | None
    request_ids: tuple[str, ...]
    #: a customer bundle: the blind-index field (``cpf_index`` / ``customer_code_index``) and
    #: its value, every contact's protocol number, and the partitions the proofs cover
    customer: tuple[str, str] | None = None
    protocol_numbers: tuple[str, ...] = ()
    partitions: int = 0
    #: partitions the maker states have no signed checkpoint at all (nothing to prove against)
    without_checkpoint: tuple[int, ...] = ()

    def as_json(self) -> dict[str, Any]:
        if self.customer is not None:
            return {"kind": self.kind, self.customer[0]: self.customer[1],
                    "protocol_numbers": list(self.protocol_numbers),
                    "request_ids": list(self.request_ids), "partitions": self.partitions,
                    "without_checkpoint": list(self.without_checkpoint)}
        return {"kind": self.kind, "protocol_number": self.protocol_number,
                "request_ids": list(self.request_ids)}

    def owns(self, protocol: Any, request: Any) -> bool:
        """Whether a record of ``protocol`` (its meta) / ``request`` (its request_id) is the
        subject's."""
        if protocol is not None:
            return protocol == self.protocol_number or protocol in self.protocol_numbers
        return isinstance(request, str) and request in self.request_ids


class DerivedError(ValueError):
    """A v2 manifest field the checks below need is malformed."""


CUSTOMER_FIELDS = ("cpf_index", "customer_code_index")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _customer_subject(subject: Mapping[str, Any]) -> Subject:
    named = [f for f in CUSTOMER_FIELDS if f in subject]
    value = subject.get(named[0]) if len(named) == 1 else None
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise DerivedError("subject: a customer is named by one of cpf_index / "
                           "customer_code_index (64 lowercase hex digits)")
    protocols, requests = subject.get("protocol_numbers"), subject.get("request_ids")
    partitions = subject.get("partitions")
    if not (isinstance(protocols, list) and _strings(protocols) and isinstance(requests, list)
            and _strings(requests) and isinstance(partitions, int)
            and not isinstance(partitions, bool) and 0 < partitions <= 100_000):
        raise DerivedError("subject: protocol_numbers and request_ids (strings), partitions (a "
                           "positive integer)")
    without = subject.get("without_checkpoint")
    if not isinstance(without, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p < partitions for p in without):
        raise DerivedError("subject: without_checkpoint (partition numbers below partitions)")
    return Subject("customer", None, tuple(requests), (named[0], value), tuple(protocols), partitions,
                   tuple(without))


def parse_subject(doc: Mapping[str, Any]) -> Subject:
    subject = doc.get("subject")
    if isinstance(subject, dict) and subject.get("kind") == "customer":
        return _customer_subject(subject)
    if not isinstance(subject, dict) or subject.get("kind") != "contact":
        raise DerivedError("subject: an object with kind \"contact\" or \"customer\"")
    protocol = subject.get("protocol_number")
    requests = subject.get("request_ids")
    if not isinstance(protocol, str) or not isinstance(requests, list) or not all(
            isinstance(r, str) for r in requests):
        raise DerivedError("subject: protocol_number (string) and request_ids (strings)")
    return Subject("contact", protocol, tuple(requests))


def _nullable(value: Any, kind: type) -> bool:
    return value is None or (isinstance(value, kind) and not isinstance(value, bool))


def check_rules(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``rules``: every field present; names and sources text, parameters non-negative
    integers, each or null."""
    rules = _object(doc, "rules")
    for name in ("profile", "source"):
        if name not in rules or not _nullable(rules[name], str) or rules[name] == "":
            raise DerivedError(f"rules.{name}: text or null")
    for name in ("start_disclosure_seconds", "protocol_confirmation_hours", "recording_delivery_days"):
        if name not in rules or not _nullable(rules[name], int) or not 0 <= (rules[name] or 0) < 10**6:
            raise DerivedError(f"rules.{name}: an integer from 0 to 999,999, or null")
    return rules


def check_request(doc: Mapping[str, Any], subject: Subject) -> None:
    """``request`` (what was asked) must agree with ``subject`` (what is proven)."""
    request = _object(doc, "request")
    if request.get("protocol_number") != subject.protocol_number:
        raise DerivedError("request.protocol_number is not the subject's protocol number")
    rid = request.get("request_id")
    if rid is not None and rid not in subject.request_ids:
        raise DerivedError("request.request_id is not one of the subject's request_ids")
    reveal, basis = request.get("reveal"), request.get("legal_basis")
    paired = bool(basis) if reveal else basis is None
    if not isinstance(reveal, bool) or not _nullable(basis, str) or not paired:
        raise DerivedError("request.reveal (boolean) goes with a legal_basis (text), and without "
                           "reveal legal_basis is null")


def parse_pending(doc: Mapping[str, Any]) -> list[dict[str, int]]:
    pending = doc.get("pending")
    if not isinstance(pending, list):
        raise DerivedError("pending: a list")
    out = []
    for i, p in enumerate(pending):
        if not isinstance(p, dict) or not all(
                isinstance(p.get(k), int) and not isinstance(p.get(k), bool) and p[k] >= 0
                for k in ("partition", "offset", "leaf_index")):
            raise DerivedError(f"pending[{i}]: partition, offset, leaf_index (integers)")
        out.append({k: int(p[k]) for k in ("partition", "offset", "leaf_index")})
    return out


def _object(doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name)
    if not isinstance(value, dict):
        raise DerivedError(f"{name}: an object")
    return value


def first_difference(expected: Any, actual: Any, path: str = "") -> str:
    """The JSON path of the first place ``actual`` differs from ``expected``."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if expected.get(key, ...) != actual.get(key, ...):
                return first_difference(expected.get(key), actual.get(key), f"{path}.{key}" if path else key)
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for i, (a, b) in enumerate(zip(expected, actual, strict=True)):
            if a != b:
                return first_difference(a, b, f"{path}[{i}]")
    return path or "(whole file)"


def _which_field(expected: dict[str, Any], actual: bytes) -> str:
    try:
        parsed = json.loads(actual.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "(not JSON)"
    if parsed == expected:
        return "(same content, not the canonical JSON form)"
    return first_difference(expected, parsed)


def _first_line(expected: bytes, actual: bytes) -> str:
    ours, theirs = expected.split(b"\n"), actual.split(b"\n")
    for number, (a, b) in enumerate(zip(ours, theirs, strict=False), start=1):
        if a != b:
            return f"line {number}: expected {a[:120].decode('utf-8', 'replace')!r}"
    return f"line {min(len(ours), len(theirs)) + 1}: length differs"


@dataclass
class DerivedFinding:
    subject: str
    reason: str
    detail: str


def check_derived(files: Mapping[str, bytes], doc: Mapping[str, Any],
                  records: Sequence[tuple[str, str, int, int, int, bool, str, int]],
                  all_verified: bool) -> list[DerivedFinding]:
    """Every readable part of a v2 bundle re-derived and compared (see the module docstring).

    ``records``: per manifest record ``(dir, topic, partition, offset, leaf_index, key_null,
    event_type, checkpoint_size)``; the summary is compared only when ``all_verified`` (each
    record's bytes proven), since it is built from the proven records.
    """
    found: list[DerivedFinding] = []
    try:
        subject = parse_subject(doc)
        check_request(doc, subject)
        rules, declared = check_rules(doc), _object(doc, "declared")
        pending = parse_pending(doc)
        created = _object(doc, "created").get("at")
    except DerivedError as exc:
        return [DerivedFinding("manifest.json", "manifest-malformed", str(exc))]
    schemas = {path[8:-5]: data for path, data in files.items()
               if path.startswith("schemas/") and path.endswith(".avsc")}
    proven: list[ProvenRecord] = []
    for i, (directory, topic, partition, offset, leaf, key_null, event_type, size) in enumerate(records):
        value = files.get(f"{directory}/value.bin")
        key = None if key_null else files.get(f"{directory}/key.bin")
        if value is None or (key is None and not key_null):
            continue  # record-incomplete, reported by the record check
        derived = readable_record(topic, partition, offset, leaf, key, value, schemas)
        proven.append(ProvenRecord(derived, size))
        actual = files.get(f"{directory}/record.json")
        if actual != canonical_json(derived):
            where = "(absent)" if actual is None else _which_field(derived, actual)
            found.append(DerivedFinding(f"{directory}/record.json", "readable-mismatch",
                                        f"field {where} is not what the record's bytes say"))
        if derived.get("event_type") != event_type:
            found.append(DerivedFinding("manifest.json", "readable-mismatch",
                                        f"records[{i}].event_type is {event_type!r}, the record "
                                        f"is a {derived.get('event_type')!r}"))
        found += _belongs(directory, derived, subject)
    found += _rules_match(proven, rules)
    if all_verified:
        expected = summary_html(subject.as_json(), str(created), rules, declared, proven, pending)
        actual = files.get(SUMMARY)
        if actual != expected:
            where = "(absent)" if actual is None else _first_line(expected, actual)
            found.append(DerivedFinding(SUMMARY, "summary-mismatch",
                                        f"not what the records say: {where}"))
    return found


def _belongs(directory: str, derived: Mapping[str, Any], subject: Subject) -> list[DerivedFinding]:
    fields = derived.get("fields")
    if not isinstance(fields, dict):
        return [DerivedFinding(directory, "record-outside-subject",
                               f"the value cannot be decoded ({derived.get('undecodable')}), so "
                               "nothing shows it is about the bundle's subject")]
    meta = fields.get("meta")
    protocol = meta.get("protocol_number") if isinstance(meta, dict) else None
    request = fields.get("request_id")
    if subject.owns(protocol, request):
        return []
    if subject.customer is not None and subject.customer[1] in _blind_indexes(fields):
        return []  # a record of the customer's own (it carries their blind index)
    about = (f"protocol {subject.protocol_number!r}" if subject.customer is None
             else f"customer {subject.customer[0]} {subject.customer[1][:16]}…")
    return [DerivedFinding(directory, "record-outside-subject",
                           f"record of protocol {protocol!r} / request {request!r}, the bundle is "
                           f"about {about}")]


def _blind_indexes(value: Any) -> set[str]:
    """Every ``cpf_index`` / ``customer_code_index`` text anywhere in a decoded record."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k in CUSTOMER_FIELDS and isinstance(v, str):
                found.add(v)
            else:
                found |= _blind_indexes(v)
    elif isinstance(value, list):
        for v in value:
            found |= _blind_indexes(v)
    return found


def _rules_match(proven: Sequence[ProvenRecord], rules: Mapping[str, Any]) -> list[DerivedFinding]:
    opened = [r for r in proven if r.event_type == "ContactOpened"]
    stated = opened[0].fields.get("policy_profile") if opened else None
    profile = rules.get("profile")
    if isinstance(stated, str) and (not isinstance(profile, str)
                                    or profile.partition("@")[0] != stated):
        return [DerivedFinding("manifest.json", "rules-mismatch",
                               f"rules.profile is {profile!r}, the contact's record names "
                               f"{stated!r}")]
    return []


__all__ = ["DerivedFinding", "Subject", "check_derived", "parse_subject"]
