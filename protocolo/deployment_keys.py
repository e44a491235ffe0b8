"""The deployment's two secrets for personal data.

* the **index key** keys the blind indexes (HMAC-SHA256 of CPF and customer code), so
  customers are looked up without the clear CPF ever being stored or sent;
* the **master key** wraps the per-customer data keys kept in PostgreSQL.

Both come from the environment (``PROTOCOLO_INDEX_KEY``, ``PROTOCOLO_MASTER_KEY``, 32
bytes in base64) in real deployments. Without them, a key file under
``$PROTOCOLO_HOME/keys/`` is created on first use (mode 0600) for the embedded dev stack.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

KEY_BYTES = 32


class KeyConfigError(ValueError):
    pass


@dataclass(frozen=True)
class DeploymentKeys:
    index_key: bytes
    master_key: bytes


def _decode(name: str, text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigError(f"{name} is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyConfigError(f"{name} must decode to {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def _from_file(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n")
    return _decode(str(path), path.read_text())


def load_keys(home: Path, environ: Mapping[str, str] = os.environ) -> DeploymentKeys:
    keys = {}
    for name, var in (("index", "PROTOCOLO_INDEX_KEY"), ("master", "PROTOCOLO_MASTER_KEY")):
        keys[name] = _decode(var, environ[var]) if environ.get(var) else _from_file(home / "keys" / f"{name}.key")
    return DeploymentKeys(index_key=keys["index"], master_key=keys["master"])
