"""The checkpointer's settings, read from ``PROTOCOLO_*`` environment variables.

Same rules as :mod:`protocolo.core.config`: an empty value counts as unset, and a value
that is set but malformed raises :class:`~protocolo.core.config.ConfigError` naming the
variable and the rule it broke.

=============================  =========================================================
``PROTOCOLO_DEPLOYMENT``       deployment name in origins, ``[A-Za-z0-9._-]+`` (``dev``)
``PROTOCOLO_CHECKPOINT_TOPIC``  Kafka topic the signed notes go to (``protocolo.checkpoints``)
``PROTOCOLO_CHECKPOINT_EVERY_LEAVES``   sign once a partition grew by N leaves (1000)
``PROTOCOLO_CHECKPOINT_EVERY_SECONDS``  ... or T seconds after the last one, if it grew (60)
``PROTOCOLO_ANCHOR_EVERY_SECONDS``      anchor an unchanged tree's newest checkpoint again (3600)
``PROTOCOLO_TSA_URL``          RFC 3161 TSA stamping every new checkpoint (unset: none)
``PROTOCOLO_TSA_CHAIN``        PEM file: TSA certificate, intermediates, root (pinned)
``PROTOCOLO_WITNESSES``        witnesses to ask for cosignatures: comma-separated
                               ``<witness vkey>=<url>``, or the path of a tlog-policy file
                               whose ``witness`` lines carry URLs
=============================  =========================================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from protocolo.core.config import ConfigError
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.keys import verifier_from_key
from protocolo.evidence.note import SIG_COSIGNATURE_V1, NoteVerifier, VerifierKey
from protocolo.evidence.policy import parse_policy

__all__ = ["AttestationSettings", "WitnessEndpoint"]

ENV_DEPLOYMENT = "PROTOCOLO_DEPLOYMENT"
ENV_CHECKPOINT_TOPIC = "PROTOCOLO_CHECKPOINT_TOPIC"
ENV_EVERY_LEAVES = "PROTOCOLO_CHECKPOINT_EVERY_LEAVES"
ENV_EVERY_SECONDS = "PROTOCOLO_CHECKPOINT_EVERY_SECONDS"
ENV_ANCHOR_EVERY_SECONDS = "PROTOCOLO_ANCHOR_EVERY_SECONDS"
ENV_TSA_URL = "PROTOCOLO_TSA_URL"
ENV_TSA_CHAIN = "PROTOCOLO_TSA_CHAIN"
ENV_WITNESSES = "PROTOCOLO_WITNESSES"

DEFAULT_DEPLOYMENT = "dev"
DEFAULT_CHECKPOINT_TOPIC = "protocolo.checkpoints"
DEFAULT_EVERY_LEAVES = 1000
DEFAULT_EVERY_SECONDS = 60.0
DEFAULT_ANCHOR_EVERY_SECONDS = 3600.0

_NAME = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}", re.ASCII)
_WITNESS_ENTRY = re.compile(r"(?P<vkey>\S+?)=(?P<url>https?://\S+)", re.ASCII)


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness the checkpointer asks: its cosigning key and its submission prefix."""

    name: str
    key: VerifierKey
    verifier: NoteVerifier
    url: str


@dataclass(frozen=True)
class AttestationSettings:
    deployment: str = DEFAULT_DEPLOYMENT
    checkpoint_topic: str = DEFAULT_CHECKPOINT_TOPIC
    every_leaves: int = DEFAULT_EVERY_LEAVES
    every_seconds: float = DEFAULT_EVERY_SECONDS
    anchor_every_seconds: float = DEFAULT_ANCHOR_EVERY_SECONDS
    tsa_url: str | None = None
    tsa_chain: Path | None = None
    witnesses: tuple[WitnessEndpoint, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> AttestationSettings:
        def get(name: str) -> str | None:
            value = environ.get(name)
            return value.strip() if value is not None and value.strip() else None

        deployment = get(ENV_DEPLOYMENT) or DEFAULT_DEPLOYMENT
        if not _NAME.fullmatch(deployment):
            raise ConfigError(
                f"{ENV_DEPLOYMENT}={deployment!r}: must be letters, digits, '.', '_' or '-' "
                "(it is part of every checkpoint's origin)"
            )
        topic = get(ENV_CHECKPOINT_TOPIC) or DEFAULT_CHECKPOINT_TOPIC
        if not _TOPIC.fullmatch(topic) or topic in {".", ".."}:
            raise ConfigError(f"{ENV_CHECKPOINT_TOPIC}={topic!r}: must be a Kafka topic name")
        tsa_url = get(ENV_TSA_URL)
        if tsa_url is not None and not re.match(r"https?://", tsa_url):
            raise ConfigError(f"{ENV_TSA_URL}={tsa_url!r}: must be an http:// or https:// URL")
        chain_text = get(ENV_TSA_CHAIN)
        chain = Path(chain_text) if chain_text else None
        if tsa_url is not None and chain is None:
            raise ConfigError(
                f"{ENV_TSA_URL} is set but {ENV_TSA_CHAIN} is not: name the PEM file with the "
                "TSA certificate, its intermediates and the root to pin (tokens are verified "
                "before they are stored)"
            )
        if chain is not None and not chain.is_file():
            raise ConfigError(f"{ENV_TSA_CHAIN}={chain_text!r}: no such file")
        return cls(
            deployment=deployment,
            checkpoint_topic=topic,
            every_leaves=parse_every_leaves(ENV_EVERY_LEAVES, get(ENV_EVERY_LEAVES)),
            every_seconds=parse_every_seconds(ENV_EVERY_SECONDS, get(ENV_EVERY_SECONDS)),
            anchor_every_seconds=parse_every_seconds(
                ENV_ANCHOR_EVERY_SECONDS, get(ENV_ANCHOR_EVERY_SECONDS),
                DEFAULT_ANCHOR_EVERY_SECONDS),
            tsa_url=tsa_url,
            tsa_chain=chain,
            witnesses=parse_witnesses(ENV_WITNESSES, get(ENV_WITNESSES)),
        )


def parse_every_leaves(name: str, value: str | None) -> int:
    if value is None:
        return DEFAULT_EVERY_LEAVES
    if not re.fullmatch(r"[0-9]{1,12}", value) or int(value) < 1:
        raise ConfigError(f"{name}={value!r}: must be a whole number of leaves, at least 1")
    return int(value)


def parse_every_seconds(name: str, value: str | None,
                        default: float = DEFAULT_EVERY_SECONDS) -> float:
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0.1 <= seconds <= 366 * 86400:
        raise ConfigError(f"{name}={value!r}: must be a number of seconds from 0.1 to 31622400")
    return seconds


def parse_witnesses(name: str, value: str | None) -> tuple[WitnessEndpoint, ...]:
    if value is None:
        return ()
    if "=" not in value:
        return _witnesses_from_policy(name, Path(value))
    witnesses: list[WitnessEndpoint] = []
    for entry in (e.strip() for e in value.split(",")):
        match = _WITNESS_ENTRY.fullmatch(entry)
        if match is None:
            raise ConfigError(
                f"{name}: entry {entry[:80]!r} is not <witness verifier key>=<http(s) URL>"
            )
        witnesses.append(_witness(name, match["vkey"], match["url"]))
    _no_duplicates(name, witnesses)
    return tuple(witnesses)


def _witness(name: str, vkey: str, url: str) -> WitnessEndpoint:
    try:
        key = VerifierKey.parse(vkey)
        verifier = verifier_from_key(vkey)
    except EvidenceError as exc:
        raise ConfigError(f"{name}: witness key {vkey[:80]!r}: {exc.detail}") from None
    if key.type != SIG_COSIGNATURE_V1:
        raise ConfigError(
            f"{name}: witness key {key.name} has type 0x{key.type:02x}; the checkpointer asks "
            "Ed25519 cosignature/v1 witnesses (type 0x04)"
        )
    return WitnessEndpoint(key.name, key, verifier, url.rstrip("/"))


def _witnesses_from_policy(name: str, path: Path) -> tuple[WitnessEndpoint, ...]:
    try:
        policy = parse_policy(path.read_bytes())
    except OSError as exc:
        raise ConfigError(
            f"{name}={str(path)!r}: neither <vkey>=<url> entries nor a readable "
            f"tlog-policy file ({exc.strerror})"
        ) from None
    except EvidenceError as exc:
        raise ConfigError(f"{name}: {path}: {exc}") from None
    witnesses = [
        _witness(name, str(w.key), w.url) for w in policy.witnesses.values() if w.url is not None
    ]
    if not witnesses:
        raise ConfigError(f"{name}: {path} lists no witness with a URL")
    _no_duplicates(name, witnesses)
    return tuple(witnesses)


def _no_duplicates(name: str, witnesses: list[WitnessEndpoint]) -> None:
    names = [w.name for w in witnesses]
    for n in names:
        if names.count(n) > 1:
            raise ConfigError(f"{name}: witness {n!r} is listed twice")
