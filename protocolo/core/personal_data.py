"""Personal data without clear text on Kafka: blind indexes and crypto-shredding.

Choice (see README, "Personal data"): events carry personal data **encrypted per
customer** (AES-256-GCM) plus keyed blind indexes for lookup; the per-customer data keys
live in PostgreSQL (``personal_data_keys``), wrapped by the deployment's master key.
Erasing a customer destroys their keys: every event stays byte-for-byte as published (the
journal, Merkle proofs and exports remain valid) while the personal data in them becomes
unreadable. A PostgreSQL vault that events merely reference would have erased just as
well, but would make every event unreadable without a database lookup and tie regulator
exports to a live database; sealed events stay self-contained.

The blind index (HMAC-SHA256 under the index key) stays after erasure: it is a
pseudonym that only someone who already knows the CPF *and* holds the index key can
match, and the contact record itself must be kept for the legal period (LGPD art. 16).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocolo.core.cpf import normalise_cpf
from protocolo.core.database import require_schema
from protocolo.core.errors import EventRejected, shown_field_name

NONCE_BYTES = 12


class BlindIndex:
    """Keyed HMAC-SHA256 of normalised identifiers, in lowercase hex.

    The message is ``cpf:<11 digits>`` or ``customer:<code, trimmed>`` in UTF-8: the
    ``kind:`` prefix keeps a CPF and a customer code that happen to be the same text apart
    (docs/wire-contract.md, "Blind index"; vectors in schemas/vectors/personal-data.json).
    """

    def __init__(self, index_key: bytes) -> None:
        self._key = index_key

    def _mac(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def cpf(self, cpf: str, field: str = "cpf") -> str:
        return self._mac("cpf", normalise_cpf(cpf, field))

    def customer_code(self, code: str, field: str = "customer_code") -> str:
        code = code.strip() if isinstance(code, str) else code
        if not isinstance(code, str) or not code:
            raise EventRejected(field, "required", "must be a non-empty string")
        return self._mac("customer", code)


def sealed_plaintext(cpf: str | None, customer_code: str | None, name: str | None) -> bytes:
    """The bytes that get encrypted: compact JSON, keys in this order, non-ASCII as ``\\uXXXX``.

    ``cpf`` is already the 11 normalised digits. Readers accept any JSON object; the exact
    bytes matter only to reproduce the committed sealing vectors (docs/wire-contract.md).
    """
    clear = {"cpf": cpf, "customer_code": customer_code, "name": name}
    return json.dumps(clear, separators=(",", ":")).encode()


def seal_plaintext(key: bytes, nonce: bytes, plaintext: bytes, event_id: str) -> bytes:
    """AES-256-GCM ciphertext with its 16-byte tag appended; associated data = the event id text."""
    return AESGCM(key).encrypt(nonce, plaintext, event_id.encode())


def open_ciphertext(key: bytes, nonce: bytes, ciphertext: bytes, event_id: str) -> bytes:
    """The plaintext; raises ``cryptography.exceptions.InvalidTag`` if anything was altered."""
    return AESGCM(key).decrypt(nonce, ciphertext, event_id.encode())


class KeyDestroyed(LookupError):
    """The data key was destroyed: the customer's personal data is erased."""


class PersonalDataUnavailable(RuntimeError):
    """Sealed data that was not erased cannot be read: wrong keys or database, or tampering."""


class KeyVault:
    """Per-customer AES-256 data keys in PostgreSQL, wrapped by the master key.

    A customer (a *subject*, named by a blind index) has at most one live key at a time;
    each key has its own random ``key_ref``, which sealed data names. Erasure destroys the
    keys; a customer who comes back afterwards gets a new key, so new contacts are
    readable while the erased ones stay erased.

    Sealing caches the live key of a subject for ``seal_cache_s`` seconds, so publishing
    for a returning customer costs no round trip; data sealed in that window after an
    erasure elsewhere is sealed under a destroyed key and so unreadable, never exposed.
    Opening never trusts a cache: a key destroyed by any process is gone for every reader
    at once.
    """

    def __init__(self, database_url: str, master_key: bytes, seal_cache_s: float = 60.0) -> None:
        self._url = database_url
        self._wrap = AESGCM(master_key)
        self._seal_cache: dict[str, tuple[float, str, bytes]] = {}
        self._seal_cache_s = seal_cache_s
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            # The registry's tables are migrated by whoever wires the vault (the runtime);
            # readers never create them.
            conn = psycopg.connect(self._url, autocommit=True)
            try:
                require_schema(conn, "personal_data_keys", "the registry database")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _unwrap(self, key_ref: str, wrapped: bytes) -> bytes:
        try:
            return self._wrap.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], key_ref.encode())
        except InvalidTag:
            raise PersonalDataUnavailable(
                f"data key {key_ref} does not open with this master key: is PROTOCOLO_MASTER_KEY "
                "(or $PROTOCOLO_HOME/keys/master.key) the one this database's keys were made with?"
            ) from None

    def sealing_key(self, subject_ref: str) -> tuple[str, bytes]:
        """``(key_ref, key)`` of the subject's live key, created if it has none."""
        with self._lock:
            cached = self._seal_cache.get(subject_ref)
            if cached is not None and time.monotonic() - cached[0] < self._seal_cache_s:
                return cached[1], cached[2]
            conn = self._connection()
            key_ref = str(uuid.uuid4())
            nonce = os.urandom(NONCE_BYTES)
            wrapped = nonce + self._wrap.encrypt(nonce, AESGCM.generate_key(bit_length=256), key_ref.encode())
            # At most one live key per subject (partial unique index): a concurrent or
            # earlier creator wins and everyone uses its key. One round trip either way: the
            # CTE's SELECT sees the table as it was, so it answers only when the insert did not.
            row = conn.execute(
                "WITH created AS ("
                "  INSERT INTO personal_data_keys (key_ref, subject_ref, wrapped_key) VALUES (%s, %s, %s)"
                "  ON CONFLICT DO NOTHING RETURNING key_ref, wrapped_key)"
                " SELECT key_ref, wrapped_key FROM created"
                " UNION ALL SELECT key_ref, wrapped_key FROM personal_data_keys"
                "  WHERE subject_ref = %s AND wrapped_key IS NOT NULL"
                " LIMIT 1",
                (key_ref, subject_ref, wrapped, subject_ref),
            ).fetchone()
            if row is None:  # a concurrent creator committed after our snapshot: try again
                self._seal_cache.pop(subject_ref, None)
                raise KeyDestroyed(subject_ref)
            key = self._unwrap(row[0], bytes(row[1]))
            self._seal_cache[subject_ref] = (time.monotonic(), row[0], key)
            return row[0], key

    def opening_key(self, key_ref: str) -> bytes:
        """The key named ``key_ref``; :class:`KeyDestroyed` once erased, ``KeyError`` if unknown."""
        with self._lock:
            row = self._connection().execute(
                "SELECT wrapped_key FROM personal_data_keys WHERE key_ref = %s", (key_ref,)
            ).fetchone()
        if row is None:
            raise KeyError(key_ref)
        if row[0] is None:
            raise KeyDestroyed(key_ref)
        return self._unwrap(key_ref, bytes(row[0]))

    def live_key_refs(self, subject_refs: list[str]) -> list[str]:
        """The live keys of these subjects (blind indexes)."""
        with self._lock:
            rows = self._connection().execute(
                "SELECT key_ref FROM personal_data_keys WHERE subject_ref = ANY(%s)"
                " AND wrapped_key IS NOT NULL ORDER BY key_ref",
                (subject_refs,),
            ).fetchall()
        return [r[0] for r in rows]

    def destroy(self, key_refs: list[str], reason: str) -> int:
        """Destroy keys for good; return how many were live. Irreversible by design."""
        with self._lock:
            self._seal_cache = {s: v for s, v in self._seal_cache.items() if v[1] not in key_refs}
            cur = self._connection().execute(
                "UPDATE personal_data_keys SET wrapped_key = NULL, destroyed_at = now(),"
                " destroyed_reason = %s WHERE key_ref = ANY(%s) AND wrapped_key IS NOT NULL",
                (reason, key_refs),
            )
            return cur.rowcount


    def purge_destroyed_versions(self) -> None:
        """Rewrite the key table so that no old row version still holds a destroyed key.

        PostgreSQL's UPDATE leaves the previous row version (with the wrapped key) on disk
        until vacuum; ``VACUUM FULL`` writes the table anew without it. What this cannot
        reach: WAL segments not yet recycled, replicas' lag, and backups taken before the
        erasure; rotating those is an operational step (README, "Erasure"). Raises
        ``psycopg.Error`` (e.g. not the table's owner) for the caller to report.
        """
        with self._lock:
            self._connection().execute("VACUUM (FULL) personal_data_keys")


@dataclass(frozen=True)
class ClearCustomer:
    """What a producer knows about the customer, in clear (never published as such)."""

    cpf: str | None = None
    customer_code: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class IdentifiedCustomer:
    """A checked clear customer and its blind indexes, not sealed yet."""

    clear: dict[str, Any]
    cpf_index: str | None
    customer_code_index: str | None

    def reference(self) -> dict[str, Any]:
        """The ``CustomerRef`` without its sealed part (what validation needs to see)."""
        return {"cpf_index": self.cpf_index, "customer_code_index": self.customer_code_index, "sealed": None}


class PersonalDataSealer:
    """Turns a clear customer into the ``CustomerRef`` record of the contract, and back."""

    def __init__(self, index: BlindIndex, vault: KeyVault) -> None:
        self.index = index
        self.vault = vault

    def identify(self, customer: ClearCustomer | dict[str, Any], field: str = "customer") -> IdentifiedCustomer | None:
        """Check a clear customer and compute its blind indexes, without sealing anything.

        ``None`` for an unidentified customer. No key is created or looked up here, so a
        publisher can identify, validate the whole event, and only then :meth:`seal_identified`:
        a rejected event leaves no key behind.
        """
        if isinstance(customer, dict):
            unknown = set(customer) - {"cpf", "customer_code", "name"}
            if unknown:
                raise EventRejected(f"{field}.{sorted(shown_field_name(k) for k in unknown)[0]}", "unknown-field",
                                    "customer takes cpf, customer_code and name")
            customer = ClearCustomer(**customer)
        if customer.name is not None and not isinstance(customer.name, str):
            raise EventRejected(f"{field}.name", "type", f"expected a string, got {type(customer.name).__name__}")
        if customer.cpf is None and customer.customer_code is None:
            if customer.name is not None:
                raise EventRejected(f"{field}.name", "unidentified",
                                    "a name needs a cpf or customer_code to seal it under")
            # An unidentified customer: the contract allows it (asking for the CPF must not
            # be a precondition to reach an agent, Decreto 11.034/2022 art. 4 §4).
            return None
        cpf = normalise_cpf(customer.cpf, f"{field}.cpf") if customer.cpf is not None else None
        cpf_index = self.index.cpf(cpf) if cpf else None
        code_index = (self.index.customer_code(customer.customer_code, f"{field}.customer_code")
                      if customer.customer_code is not None else None)
        return IdentifiedCustomer(
            clear={"cpf": cpf, "customer_code": customer.customer_code, "name": customer.name},
            cpf_index=cpf_index, customer_code_index=code_index,
        )

    def seal_identified(self, customer: IdentifiedCustomer, event_id: str) -> dict[str, Any]:
        """The ``CustomerRef`` of an identified customer, sealed under their live key with
        ``event_id`` (canonical text) as associated data."""
        subject_ref = customer.cpf_index or customer.customer_code_index
        assert subject_ref is not None
        for attempt in range(3):
            try:
                key_ref, key = self.vault.sealing_key(subject_ref)
                break
            except KeyDestroyed:
                if attempt == 2:
                    raise
        nonce = os.urandom(NONCE_BYTES)
        plaintext = sealed_plaintext(customer.clear["cpf"], customer.clear["customer_code"], customer.clear["name"])
        ciphertext = seal_plaintext(key, nonce, plaintext, str(event_id))
        return {**customer.reference(), "sealed": {"key_ref": key_ref, "nonce": nonce, "ciphertext": ciphertext}}

    def seal(self, customer: ClearCustomer | dict[str, Any], event_id: str, field: str = "customer") -> dict[str, Any]:
        identified = self.identify(customer, field)
        if identified is None:
            return {"cpf_index": None, "customer_code_index": None, "sealed": None}
        return self.seal_identified(identified, event_id)

    def open(self, sealed: dict[str, Any] | None, event_id: str) -> dict[str, Any] | None:
        """The clear customer data, or None when it was erased (key destroyed); raises
        :class:`PersonalDataUnavailable` when it was not erased but cannot be read."""
        if not sealed:
            return None
        try:
            key = self.vault.opening_key(sealed["key_ref"])
        except KeyDestroyed:
            return None
        except KeyError:
            raise PersonalDataUnavailable(
                f"no data key {sealed['key_ref']} in this database: is PROTOCOLO_DATABASE_URL the "
                "ledger the event was published to?"
            ) from None
        try:
            clear = open_ciphertext(key, _as_bytes(sealed["nonce"]), _as_bytes(sealed["ciphertext"]), str(event_id))
        except InvalidTag:
            raise PersonalDataUnavailable(
                f"the personal data of event {event_id} does not decrypt with its key: it was altered"
            ) from None
        opened: dict[str, Any] = json.loads(clear)
        return opened


def _as_bytes(value: bytes | str) -> bytes:
    """Sealed fields come back as bytes from Avro and as hex text from the journal's JSON."""
    return bytes.fromhex(value) if isinstance(value, str) else bytes(value)
