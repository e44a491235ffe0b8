"""The log's signing key: one secret per deployment, one derived Ed25519 key per origin.

Where it comes from (never from the database, and the same for the keys it trusted
before: ``PROTOCOLO_PAST_LOG_VKEYS`` lists the verifier keys of earlier signing keys, see
:attr:`LogKey.past`):

* ``PROTOCOLO_SIGNING_KEY``: a C2SP / golang.org/x/mod/sumdb/note signer key string,
  ``PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>`` (``protocolo keys
  generate`` prints one);
* only where dev keys are allowed (:attr:`Settings.may_invent_keys`: the embedded stack or
  ``PROTOCOLO_DEV_KEYS=1``), a key file ``$PROTOCOLO_HOME/keys/log-signing.key`` made at
  first use (mode 0600) holding such a string.

**Naming and derivation.** C2SP tlog-checkpoint says the log's key name SHOULD equal the
checkpoint's origin (a tlog-policy ``log`` line requires it), and Protocolo has one origin
per partition (``protocolo/<deployment>/<topic>/<p>``). C2SP tlog-policy also forbids two
``log`` lines wrapping the same public key, so partitions cannot share one key if a single
policy is to name them all. Hence :meth:`LogKey.signer` signs partition P's checkpoints
with a key *derived* from the deployment's one secret seed for P's origin::

    seed(origin) = HKDF-SHA256(ikm = deployment seed, salt = none,
                               info = "protocolo/log-key/v1\n" || origin, length = 32)

under key name = origin. Every partition has its own Ed25519 key pair and verifier key
string, yet there is one secret to provision, guard and rotate, and partitions added later
need no new secret. The name inside the ``PRIVATE+KEY`` string is the deployment-wide name
(``protocolo/<deployment>`` for dev keys); no checkpoint is signed with the underived key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocolo.core.config import ENV_DEV_KEYS, Settings
from protocolo.core.deployment_keys import dev_key_file
from protocolo.evidence.errors import NoteError
from protocolo.evidence.keys import verifier_from_key
from protocolo.evidence.note import Ed25519NoteSigner, NoteVerifier, decode_base64

__all__ = [
    "DEV_KEY_FILE",
    "ENV_PAST_LOG_VKEYS",
    "ENV_SIGNING_KEY",
    "LogKey",
    "SigningKeyError",
    "deployment_key_name",
    "load_log_key",
]

ENV_SIGNING_KEY = "PROTOCOLO_SIGNING_KEY"
#: Verifier keys of the log's earlier signing keys (after a rotation), whitespace- or
#: comma-separated: what ``protocolo keys show`` printed with the old key.
ENV_PAST_LOG_VKEYS = "PROTOCOLO_PAST_LOG_VKEYS"
#: HKDF ``info`` prefix of the per-origin keys; the origin follows it.
DERIVATION_LABEL = b"protocolo/log-key/v1\n"
#: Under ``$PROTOCOLO_HOME``; only used where dev keys are allowed.
DEV_KEY_FILE = Path("keys") / "log-signing.key"


class SigningKeyError(ValueError):
    """The log's signing key is missing or malformed; the message says which and why."""


@dataclass(frozen=True)
class LogKey:
    """The deployment's log key. ``name`` is the name of its ``PRIVATE+KEY`` string;
    checkpoints are signed under their origin (see the module docstring)."""

    name: str
    source: str  # "PROTOCOLO_SIGNING_KEY" or the key file's path, for messages
    _seed: bytes = field(repr=False)
    #: Verifier keys of earlier signing keys, from the deployment's configuration: with
    #: the current key, the only keys whose checkpoints the checkpointer builds on (a key
    #: found in the database's ``signing_keys`` table is not trusted: anyone who can write
    #: the database could have put it there).
    past: tuple[NoteVerifier, ...] = ()

    @classmethod
    def parse(cls, skey: str, source: str) -> LogKey:
        try:
            signer = Ed25519NoteSigner.parse(skey.strip())
        except NoteError as exc:
            raise SigningKeyError(f"{source}: {exc.detail}") from None
        seed = decode_base64(signer.private_key_string().split("+", 4)[4], "signer key")[1:]
        return cls(signer.name, source, seed)

    @classmethod
    def generate(cls, name: str) -> LogKey:
        signer = Ed25519NoteSigner.generate(name)
        return cls.parse(signer.private_key_string(), "generated")

    def signer(self, origin: str) -> Ed25519NoteSigner:
        """The Ed25519 note signer for checkpoints of ``origin``: key name = origin, key
        derived for that origin (see the module docstring)."""
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=DERIVATION_LABEL + origin.encode("utf-8")).derive(self._seed)
        return Ed25519NoteSigner(origin, derived)

    def with_past(self, vkeys: Sequence[str], source: str = ENV_PAST_LOG_VKEYS) -> LogKey:
        """This key, trusting also the checkpoints signed by ``vkeys`` (C2SP verifier keys)."""
        past = []
        for vkey in vkeys:
            try:
                past.append(verifier_from_key(vkey))
            except NoteError as exc:
                raise SigningKeyError(f"{source}: {vkey[:80]!r} is not a verifier key: {exc.detail}") from None
        return replace(self, past=tuple(past))

    def trusted(self, origin: str) -> list[NoteVerifier]:
        """The verifiers a stored checkpoint of ``origin`` may be signed by: the current
        key's and the configured past keys named ``origin``."""
        current = self.signer(origin).verifier
        return [current, *(v for v in self.past if v.name == origin and str(v) != str(current))]

    def vkey(self, origin: str) -> str:
        """The C2SP verifier key string of ``origin``'s log."""
        return str(self.signer(origin).verifier)

    def private_key_string(self) -> str:
        return Ed25519NoteSigner(self.name, self._seed).private_key_string()


def deployment_key_name(deployment: str) -> str:
    return f"protocolo/{deployment}"


def load_log_key(
    settings: Settings, deployment: str, environ: Mapping[str, str] = os.environ
) -> LogKey:
    """The key from ``PROTOCOLO_SIGNING_KEY``, else (dev only) from the key file."""
    past = environ.get(ENV_PAST_LOG_VKEYS, "").replace(",", " ").split()
    return _current_log_key(settings, deployment, environ).with_past(past)


def _current_log_key(settings: Settings, deployment: str, environ: Mapping[str, str]) -> LogKey:
    text = environ.get(ENV_SIGNING_KEY, "").strip()
    if text:
        return LogKey.parse(text, ENV_SIGNING_KEY)
    path = settings.home / DEV_KEY_FILE
    if not settings.may_invent_keys:
        raise SigningKeyError(
            f"{ENV_SIGNING_KEY} is not set. With PROTOCOLO_KAFKA_BOOTSTRAP or "
            "PROTOCOLO_DATABASE_URL configured, the log's signing key must be given "
            "(`protocolo keys generate` prints one: keep it secret, publish its verifier keys); "
            f"set {ENV_DEV_KEYS}=1 only for a throw-away setup"
        )
    text = dev_key_file(path, lambda: LogKey.generate(deployment_key_name(deployment)).private_key_string())
    return LogKey.parse(text, str(path))
