"""Hashing and checking secrets (passwords, API tokens, session ids) with scrypt.

hashlib.scrypt (OpenSSL) rather than a new dependency. Passwords are chosen by people and
get the expensive parameters (n=2**15, 32 MiB, tens of milliseconds). Tokens and
session secrets are 256 random bits that no dictionary holds, so a cheap cost (n=2**10)
already makes the stored hash useless to an attacker while keeping per-request checks
around a millisecond; the cost is stored with each hash, so it can be raised later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PASSWORD_COST = 2**15
TOKEN_COST = 2**10
_R, _P = 8, 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str, cost: int) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=cost, r=_R, p=_P, maxmem=64 * 1024 * 1024, dklen=32)
    return f"scrypt${cost}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def check_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(secret.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=64 * 1024 * 1024, dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(got, _unb64(digest))


def new_secret() -> str:
    return secrets.token_urlsafe(32)
