"""The log verifier keys a reader pins, from the deployment's configuration.

Every verdict that reads a checkpoint needs the log's public keys from somewhere the
database does not control: ``PROTOCOLO_LOG_VKEYS`` (C2SP vkeys, one per partition's
origin, space or comma separated), else, only where dev keys are allowed (the embedded
stack, ``PROTOCOLO_DEV_KEYS=1``), the public half of the dev log key file under
``PROTOCOLO_HOME`` (read, never created). Keys stored in the database (``signing_keys``)
are never trusted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from protocolo.attestation.audit_checkpoints import LogKeys
from protocolo.attestation.log_key import DEV_KEY_FILE, LogKey, SigningKeyError
from protocolo.core.config import ConfigError, Settings
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.note import NoteVerifier, VerifierKey

ENV_LOG_VKEYS = "PROTOCOLO_LOG_VKEYS"


class PinnedLogKeys:
    """Verifiers per origin: the configured vkeys, else the dev key's public half."""

    def __init__(self, keys: LogKeys, dev_key: LogKey | None = None) -> None:
        self.keys = keys
        self.dev_key = dev_key

    @property
    def source(self) -> str:
        if self.keys.keys:
            return ENV_LOG_VKEYS
        return "the dev log key file" if self.dev_key is not None else "none"

    def for_origin(self, origin: str) -> list[NoteVerifier]:
        if self.keys.keys:
            return self.keys.for_origin(origin)
        if self.dev_key is None:
            return []
        return LogKeys([VerifierKey.parse(self.dev_key.vkey(origin))]).for_origin(origin)


def env_vkeys(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The vkey texts of ``PROTOCOLO_LOG_VKEYS`` (space or comma separated)."""
    return environ.get(ENV_LOG_VKEYS, "").replace(",", " ").split()


def parse_log_keys(texts: Sequence[str], source: str) -> LogKeys:
    """The :class:`LogKeys` of the vkey ``texts``, read from ``source`` (an option or
    variable name). A malformed key, or a set :class:`LogKeys` refuses, is a
    :class:`ValueError` naming ``source`` and the key, so each caller can raise it as its
    own kind of bad input (configuration, command line) with the same words."""
    keys = []
    for text in texts:
        try:
            keys.append(VerifierKey.parse(text))
        except EvidenceError as exc:
            raise ValueError(f"{source}: {text[:60]!r} is not a verifier key: {exc.detail}") from None
    try:
        return LogKeys(keys)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def configured_log_keys(settings: Settings, environ: Mapping[str, str] = os.environ) -> PinnedLogKeys:
    """The pinned keys of this deployment; a malformed one is a :class:`ConfigError`."""
    try:
        pinned = parse_log_keys(env_vkeys(environ), ENV_LOG_VKEYS)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if pinned.keys:
        return PinnedLogKeys(pinned)
    path = settings.home / DEV_KEY_FILE
    if not settings.may_invent_keys or not path.exists():
        return PinnedLogKeys(pinned)
    try:
        return PinnedLogKeys(pinned, LogKey.parse(path.read_text(), str(path)))
    except SigningKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
