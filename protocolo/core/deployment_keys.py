"""The deployment's secrets for personal data, and the check that they are the right ones.

* the **index key** keys the blind indexes (HMAC-SHA256 of CPF and customer code), so
  customers are looked up without the clear CPF ever being stored or sent;
* the **master key** wraps the per-customer data keys kept in the registry database.

Both come from the environment (``PROTOCOLO_INDEX_KEY``, ``PROTOCOLO_MASTER_KEY``, 32
bytes in base64). Only where :attr:`Settings.may_invent_keys` allows it (the embedded dev
stack, or ``PROTOCOLO_DEV_KEYS=1``) is a missing key made up as a file under
``$PROTOCOLO_HOME/keys/`` (mode 0600). A deployment that forgot a variable fails at start
instead of quietly using a fresh key: a different index key makes ``--cpf`` find nothing,
a different master key opens no data key.

The first process to use a registry records a *key check* of each key there
(HMAC-SHA256 of a fixed label under the key, which reveals nothing of the key); every
later process compares its keys with it and refuses to run on a mismatch.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

__all__ = ["KEY_BYTES", "DeploymentKeys", "KeyConfigError", "check_keys", "decode_key_variable", "dev_key_file",
           "key_check_value", "load_keys", "verify_keys"]

KEY_BYTES = 32
_CHECK_LABEL = b"protocolo key check v1"
_VARIABLES = (("index", "PROTOCOLO_INDEX_KEY"), ("master", "PROTOCOLO_MASTER_KEY"))


class KeyConfigError(ValueError):
    pass


@dataclass(frozen=True)
class DeploymentKeys:
    index_key: bytes
    master_key: bytes

    def named(self) -> dict[str, bytes]:
        return {"index": self.index_key, "master": self.master_key}


def decode_key_variable(name: str, text: str) -> bytes:
    """The key in ``text`` (base64 of 32 bytes); :class:`KeyConfigError` naming ``name`` if not."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigError(f"{name} is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyConfigError(f"{name} must decode to {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def dev_key_file(path: Path, make: Callable[[], str]) -> str:
    """The text of a dev key file, written first (mode 0600, ``make()`` plus a newline) if it
    does not exist; two processes creating it at once agree on the first one's."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(make() + "\n")
    return path.read_text()


def _from_file(path: Path) -> bytes:
    text = dev_key_file(path, lambda: base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode())
    return decode_key_variable(str(path), text)


def load_keys(home: Path, environ: Mapping[str, str] = os.environ, *, may_invent: bool = True,
              may_read_files: bool = True) -> DeploymentKeys:
    """The keys from the environment, else from dev key files: made if missing only when
    ``may_invent``, read only when ``may_read_files`` (both: where dev keys apply,
    :attr:`Settings.may_invent_keys`)."""
    keys: dict[str, bytes] = {}
    for name, var in _VARIABLES:
        if environ.get(var, "").strip():
            keys[name] = decode_key_variable(var, environ[var])
            continue
        path = home / "keys" / f"{name}.key"
        if not may_read_files or (not may_invent and not path.exists()):
            raise KeyConfigError(
                f"{var} is not set. With PROTOCOLO_KAFKA_BOOTSTRAP or PROTOCOLO_DATABASE_URL "
                "configured, the deployment's keys must be given (32 random bytes in base64, "
                "e.g. `python3 -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())'`); "
                "set PROTOCOLO_DEV_KEYS=1 only for a throw-away setup"
            )
        keys[name] = _from_file(path)
    return DeploymentKeys(index_key=keys["index"], master_key=keys["master"])


def key_check_value(key: bytes) -> str:
    return hmac.new(key, _CHECK_LABEL, hashlib.sha256).hexdigest()


def check_keys(conn: psycopg.Connection[Any], keys: DeploymentKeys) -> None:
    """Record the keys' check values at first use; raise :class:`KeyConfigError` when the
    registry was first used with other keys. ``conn`` is a registry connection."""
    with conn.transaction():
        for name, key in keys.named().items():
            value = key_check_value(key)
            conn.execute(
                "INSERT INTO deployment_key_checks (key_name, check_value) VALUES (%s, %s)"
                " ON CONFLICT (key_name) DO NOTHING", (name, value),
            )
            row = conn.execute(
                "SELECT check_value, recorded_at FROM deployment_key_checks WHERE key_name = %s", (name,)
            ).fetchone()
            assert row is not None
            if not hmac.compare_digest(row[0], value):
                raise _mismatch(name, row[1])


def verify_keys(conn: psycopg.Connection[Any], keys: DeploymentKeys) -> None:
    """:func:`check_keys` for readers: compare with the check values recorded so far and
    record nothing (a registry no writer has used yet has nothing to compare with).
    Raise :class:`KeyConfigError` on a mismatch: with another index key a lookup by CPF
    would say "no contact found" instead of failing."""
    table = conn.execute("SELECT to_regclass('deployment_key_checks')").fetchone()
    if table is None or table[0] is None:
        return
    recorded = {name: (value, at) for name, value, at in conn.execute(
        "SELECT key_name, check_value, recorded_at FROM deployment_key_checks").fetchall()}
    for name, key in keys.named().items():
        if name in recorded and not hmac.compare_digest(recorded[name][0], key_check_value(key)):
            raise _mismatch(name, recorded[name][1])


def _mismatch(name: str, recorded_at: Any) -> KeyConfigError:
    var = dict(_VARIABLES)[name]
    return KeyConfigError(
        f"{var} is not the {name} key this registry was first used with (on "
        f"{recorded_at:%Y-%m-%d}); refusing to run: with another {name} key "
        + ("lookups by CPF or customer code would silently find nothing"
           if name == "index" else "no customer's data key would open")
        + ". Set the original key (or, for the embedded stack, restore "
        "$PROTOCOLO_HOME/keys/)."
    )
