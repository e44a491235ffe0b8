"""Assemble a proof-of-service bundle from evidence already gathered (no database here).

The layout is docs/evidence-format.md §9. Everything that goes in is given by the caller
(``bundle_writer`` reads it from PostgreSQL; tests build it from synthetic trees), and the
output is deterministic: the same :class:`BundleContents` and signing key give the same
bytes (canonical ZIP, fixed order, JSON with sorted keys, Ed25519 is deterministic).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from protocolo.attestation.standalone_verifier import standalone_verifier
from protocolo.evidence.bundle import (
    FORMAT,
    MANIFEST,
    MANIFEST_SIGNATURE,
    SUMS,
    manifest_note_text,
    sha256sums,
)
from protocolo.evidence.bundle_zip import write_zip
from protocolo.evidence.note import NoteSigner, encode_base64, sign_note
from protocolo.evidence.readable import ProvenRecord, canonical_json, readable_record, summary_html


@dataclass(frozen=True)
class BundleRecord:
    """One ledger record: its bytes as read from Kafka, its place in the tree, its proof."""

    topic: str
    partition: int
    offset: int
    leaf_index: int
    key: bytes | None
    value: bytes
    leaf_input: bytes
    tlog_proof: bytes
    event_type: str
    checkpoint_size: int  # the checkpoint the proof leads to
    schema_fingerprint: bytes | None = None
    schema_canonical: str | None = None

    @property
    def directory(self) -> str:
        return f"records/p{self.partition}-o{self.offset}"


@dataclass(frozen=True)
class BundleTimestamp:
    token: bytes  # DER TimeStampResp over the checkpoint note text
    chain_pem: bytes  # TSA certificate first, then intermediates, root last
    authority: str


@dataclass(frozen=True)
class BundleCheckpoint:
    topic: str
    partition: int
    size: int
    note: bytes
    newest: bool
    timestamps: tuple[BundleTimestamp, ...] = ()

    @property
    def path(self) -> str:
        return f"checkpoints/p{self.partition}/{self.size}.checkpoint"


@dataclass(frozen=True)
class BundleConsistency:
    topic: str
    partition: int
    size1: int
    size2: int
    proof: tuple[bytes, ...]

    @property
    def path(self) -> str:
        return f"consistency/p{self.partition}/{self.size1}-{self.size2}.proof"


@dataclass(frozen=True)
class PendingRecord:
    """A journalled record of the subject that no signed checkpoint covers yet: listed in
    the bundle, not proven by it."""

    topic: str
    partition: int
    offset: int
    leaf_index: int


@dataclass(frozen=True)
class BundleLookup:
    """A lookup proof of the verifiable index for one key of the subject, with the index
    checkpoint (the checkpoint plus its map-root line) it is verified against."""

    partition: int
    size: int
    kind: str
    value: str
    proof: bytes  # canonical JSON of the lookup proof (docs/evidence-format.md §11.4)
    index_checkpoint: bytes  # the signed note

    @property
    def path(self) -> str:
        digest = hashlib.sha256(f"{self.kind}:{self.value}".encode()).hexdigest()[:16]
        return f"index/p{self.partition}/{self.kind}-{digest}.proof"

    @property
    def checkpoint_path(self) -> str:
        return f"index/p{self.partition}/{self.size}.index-checkpoint"


@dataclass(frozen=True)
class BundleContents:
    deployment: str
    request: dict[str, Any]  # what was asked: protocol_number, request_id, reveal, legal_basis
    created: dict[str, Any]  # when and by which tool: at, tool
    records: Sequence[BundleRecord]
    checkpoints: Sequence[BundleCheckpoint]
    consistency: Sequence[BundleConsistency]
    log_vkeys: Sequence[str]
    policy: bytes  # tlog-policy: one log line per partition's log, the known witnesses
    subject: dict[str, Any]  # kind "contact", protocol_number, request_ids
    rules: dict[str, Any] = field(default_factory=dict)  # the policy parameters the summary uses
    declared: dict[str, Any] = field(default_factory=dict)  # stated by the maker, not proven
    pending: Sequence[PendingRecord] = field(default_factory=tuple)
    witness_vkeys: Sequence[str] = field(default_factory=tuple)
    index: Sequence[BundleLookup] = field(default_factory=tuple)


#: The ``rules`` fields (all present, null when unknown).
RULE_FIELDS = ("profile", "source", "start_disclosure_seconds", "protocol_confirmation_hours",
               "recording_delivery_days")


def _json(value: Any) -> bytes:
    return canonical_json(value)


def _schemas(contents: BundleContents) -> dict[str, bytes]:
    return {r.schema_fingerprint.hex(): r.schema_canonical.encode("utf-8") for r in contents.records
            if r.schema_fingerprint is not None and r.schema_canonical is not None}


def _pending(contents: BundleContents) -> list[dict[str, int]]:
    return [{"partition": p.partition, "offset": p.offset, "leaf_index": p.leaf_index}
            for p in contents.pending]


def _rules(contents: BundleContents) -> dict[str, Any]:
    return {k: contents.rules.get(k) for k in RULE_FIELDS}


def readable_files(contents: BundleContents) -> dict[str, bytes]:
    """``record.json`` of every record and ``summary.html``, derived from the records' bytes
    only (the functions the verifier re-runs)."""
    schemas = _schemas(contents)
    files: dict[str, bytes] = {}
    proven = []
    for r in contents.records:
        doc = readable_record(r.topic, r.partition, r.offset, r.leaf_index, r.key, r.value, schemas)
        files[f"{r.directory}/record.json"] = canonical_json(doc)
        proven.append(ProvenRecord(doc, r.checkpoint_size))
    files["summary.html"] = summary_html(contents.subject, str(contents.created.get("at")),
                                         _rules(contents), contents.declared, proven,
                                         _pending(contents))
    return files


def bundle_files(contents: BundleContents) -> dict[str, bytes]:
    """Every file of the bundle except manifest.json and manifest.sig."""
    files: dict[str, bytes] = readable_files(contents)
    for r in contents.records:
        d = r.directory
        files[f"{d}/leaf.bin"] = r.leaf_input
        if r.key is not None:
            files[f"{d}/key.bin"] = r.key
        files[f"{d}/value.bin"] = r.value
        files[f"{d}/proof.tlog-proof"] = r.tlog_proof
        if r.schema_fingerprint is not None and r.schema_canonical is not None:
            files[f"schemas/{r.schema_fingerprint.hex()}.avsc"] = r.schema_canonical.encode("utf-8")
    for c in contents.checkpoints:
        files[c.path] = c.note
        for t in c.timestamps:
            stem = f"timestamps/p{c.partition}/{c.size}-{_slug(t.authority)}"
            files[f"{stem}.tsr"] = t.token
            files[f"{stem}.chain.pem"] = t.chain_pem
    for lookup in contents.index:
        files[lookup.path] = lookup.proof
        files[lookup.checkpoint_path] = lookup.index_checkpoint
    for x in contents.consistency:
        files[x.path] = "".join(encode_base64(h) + "\n" for h in x.proof).encode("ascii")
    for i, vkey in enumerate(contents.log_vkeys):
        files[f"keys/log-{i}.vkey"] = (vkey + "\n").encode("utf-8")
    for i, vkey in enumerate(contents.witness_vkeys):
        files[f"keys/witness-{i}.vkey"] = (vkey + "\n").encode("utf-8")
    files[POLICY] = contents.policy
    files["README.txt"] = readme(contents).encode("utf-8")
    files["verify.py"] = standalone_verifier()
    files[SUMS] = sha256sums(files)
    return files


POLICY = "policy.txt"


def _slug(authority: str) -> str:
    return hashlib.sha256(authority.encode("utf-8")).hexdigest()[:12]


def manifest(contents: BundleContents, files: dict[str, bytes]) -> bytes:
    checkpoints = []
    for c in contents.checkpoints:
        stamps = [{"token": f"timestamps/p{c.partition}/{c.size}-{_slug(t.authority)}.tsr",
                   "chain": f"timestamps/p{c.partition}/{c.size}-{_slug(t.authority)}.chain.pem",
                   "authority": t.authority} for t in c.timestamps]
        checkpoints.append({"topic": c.topic, "partition": c.partition, "size": c.size,
                            "path": c.path, "newest": c.newest, "timestamps": stamps})
    doc = {
        "format": FORMAT,
        "format_version": 2,
        "created": contents.created,
        "request": contents.request,
        "subject": contents.subject,
        "rules": _rules(contents),
        "declared": contents.declared,
        "pending": [{"topic": p.topic, **row} for p, row in zip(contents.pending, _pending(contents),
                                                                   strict=True)],
        "index": [{"path": x.path, "checkpoint": x.checkpoint_path, "partition": x.partition,
                   "size": x.size, "kind": x.kind, "value": x.value} for x in contents.index],
        "log": {"deployment": contents.deployment},
        "records": [{"dir": r.directory, "topic": r.topic, "partition": r.partition,
                     "offset": r.offset, "leaf_index": r.leaf_index, "key_null": r.key is None,
                     "event_type": r.event_type} for r in contents.records],
        "checkpoints": checkpoints,
        "consistency": [{"topic": x.topic, "partition": x.partition, "from": x.size1,
                         "to": x.size2, "path": x.path} for x in contents.consistency],
        "keys": {"log": list(contents.log_vkeys), "witness": list(contents.witness_vkeys)},
        "policies": [POLICY],
        "files": [{"path": p, "size": len(files[p]), "sha256": hashlib.sha256(files[p]).hexdigest()}
                  for p in sorted(files)],
    }
    return _json(doc)


def pack_bundle(contents: BundleContents, signer: NoteSigner) -> bytes:
    """The bundle's bytes: the files, ``manifest.json`` and its signature, as a canonical ZIP."""
    files = bundle_files(contents)
    manifest_bytes = manifest(contents, files)
    files[MANIFEST] = manifest_bytes
    files[MANIFEST_SIGNATURE] = sign_note(manifest_note_text(manifest_bytes), [signer])
    return write_zip(sorted(files.items()))


def readme(contents: BundleContents) -> str:
    vkeys = " ".join(f"--vkey '{v}'" for v in contents.log_vkeys)
    verifier_sha256 = hashlib.sha256(standalone_verifier()).hexdigest()
    protocol = contents.subject.get("protocol_number") or "N"
    about = f"--protocol {protocol}"
    for blind in ("cpf_index", "customer_code_index"):
        if isinstance(contents.subject.get(blind), str):
            about = f"--customer-index {contents.subject[blind]}"
    return f"""PACOTE DE PROVA DE ATENDIMENTO / PROOF-OF-SERVICE BUNDLE  ({FORMAT})

O que é / What this is
  Registros do livro-razão (ledger) do Protocolo sobre um atendimento, com provas
  criptográficas de que estão no log, sem alteração, desde as datas indicadas.
  Ledger records of one contact, with cryptographic proof that they are in the log, unchanged.
  summary.html  resumo legível / human-readable summary
  manifest.json lista de arquivos com tamanho e SHA-256 / every file with size and SHA-256
  manifest.sig  nota assinada (C2SP signed-note) sobre o SHA-256 do manifest.json
  records/      por registro: leaf.bin, key.bin, value.bin, record.json, proof.tlog-proof
  checkpoints/  checkpoints assinados (C2SP tlog-checkpoint); consistency/ provas de consistência
  timestamps/   carimbos de tempo RFC 3161 (.tsr) e cadeia da ACT (.chain.pem)
  keys/, policy.txt  chaves públicas e política (C2SP tlog-policy)
  Formato: docs/evidence-format.md, seção "Proof-of-service bundle".

Verificação automática / Automatic verification (offline)
  Use o verificador publicado no repositório do Protocolo (verifier/protocolo_verify.py),
  não um enviado por quem fez o pacote. A cópia verify.py deste pacote só serve se o seu
  SHA-256 for o publicado (README do Protocolo, "Checking a proof-of-service bundle"):
  Use the verifier published in Protocolo's repository (verifier/protocolo_verify.py), not one
  sent by the bundle's maker. This bundle's verify.py copy is only fit to run if its SHA-256
  is the published one (Protocolo's README, "Checking a proof-of-service bundle"):
    sha256sum verify.py          # deve ser / must be {verifier_sha256}
  pip install cryptography rfc3161-client
  python3 protocolo_verify.py BUNDLE.zip {vkeys} {about} [--tsa-root RAIZ_DA_ACT.pem]
  Compare a chave (--vkey) com a publicada pela empresa; não confie na cópia deste pacote.
  Compare the key with the one the company publishes; do not trust the copy in this bundle.
  Sem --vkey/--policy o veredito é UNPINNED (código 3), nunca VALID.
  Without --vkey/--policy the verdict is UNPINNED (exit 3), never VALID.

Verificação manual / Manual verification
  1. unzip BUNDLE.zip -d bundle && cd bundle
  2. Hashes: sha256sum -c SHA256SUMS     (todos OK / all OK); SHA256SUMS tem o mesmo
     conteúdo que a lista "files" do manifest.json / lists the same hashes as the manifest.
  3. Manifesto / manifest: a segunda linha do manifest.sig é o SHA-256 do manifest.json
     (compare com `sha256sum manifest.json`; the second line must equal it), e o
     manifest.json lista o SHA-256 do SHA256SUMS. Assinatura Ed25519 com openssl
     (a chave é a da linha de assinatura; the key named on the signature line):
       V='<chave publicada / published vkey>'
       echo "$V" | cut -d+ -f3- | base64 -d | tail -c 32 > pub.raw
       (printf '\\x30\\x2a\\x30\\x05\\x06\\x03\\x2b\\x65\\x70\\x03\\x21\\x00'; cat pub.raw) > pub.der
       head -n 2 manifest.sig > signed.txt
       tail -n 1 manifest.sig | awk '{{print $3}}' | base64 -d | tail -c 64 > sig.bin
       openssl pkeyutl -verify -pubin -keyform DER -inkey pub.der -rawin -in signed.txt -sigfile sig.bin
     O mesmo vale para cada checkpoint, com `head -n 3` e a linha da chave do log.
     The same works for each checkpoint with `head -n 3` and the log key's line.
  4. Registro / record: leaf.bin = u16 len(topic) | topic | u32 partition | u64 offset |
     i32 len(key) | key | u32 len(value) | value  (big-endian; docs §1); o hash da folha é
     SHA-256(0x00 || leaf.bin); proof.tlog-proof traz o índice, o caminho de inclusão
     e o checkpoint assinado (docs §3, §7).
  5. Carimbo de tempo / timestamp: o texto carimbado são as 3 primeiras linhas do checkpoint:
     head -n 3 checkpoints/pP/N.checkpoint > note.txt
     openssl ts -verify -data note.txt -in timestamps/pP/N-X.tsr -CAfile RAIZ_DA_ACT.pem \\
             -untrusted timestamps/pP/N-X.chain.pem
"""
