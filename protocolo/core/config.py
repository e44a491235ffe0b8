"""Settings read from the environment.

Every knob is a ``PROTOCOLO_*`` environment variable. An empty value counts as unset, so
``PROTOCOLO_KAFKA_BOOTSTRAP= protocolo ...`` falls back to the embedded stack. A value that
is set but malformed raises :class:`ConfigError` naming the variable and the rule it broke,
instead of surfacing later as a connection error far from the cause.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_HOME = "~/.protocolo"
DEFAULT_TOPIC = "protocolo.interactions"
DEFAULT_PARTITIONS = 6
MAX_PARTITIONS = 10_000
DEFAULT_GROUP_ID = "protocolo-projector"

ENV_HOME = "PROTOCOLO_HOME"
ENV_KAFKA_BOOTSTRAP = "PROTOCOLO_KAFKA_BOOTSTRAP"
ENV_DATABASE_URL = "PROTOCOLO_DATABASE_URL"
ENV_TOPIC = "PROTOCOLO_TOPIC"
ENV_PARTITIONS = "PROTOCOLO_PARTITIONS"
ENV_GROUP_ID = "PROTOCOLO_GROUP_ID"
ENV_REGISTRY_URL = "PROTOCOLO_REGISTRY_URL"
ENV_DEV_KEYS = "PROTOCOLO_DEV_KEYS"
ENV_POLICY = "PROTOCOLO_POLICY"
ENV_INDEX_KEY = "PROTOCOLO_INDEX_KEY"
ENV_MASTER_KEY = "PROTOCOLO_MASTER_KEY"

# Kafka's own rule for topic names (kafka.common.internals.Topic).
_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")
# host:port, host:port ... where host may be a name, an IPv4 address or a bracketed IPv6.
_HOST_PORT_RE = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})")


class ConfigError(ValueError):
    """A configuration value is malformed; the message names the variable and the rule."""


@dataclass(frozen=True)
class Settings:
    """Where Protocolo keeps local state and how it reaches Kafka and PostgreSQL.

    ``kafka_bootstrap`` and ``database_url`` are ``None`` when not configured: then the
    embedded dev stack under ``home`` provides them (see :func:`protocolo.devstack.resolve`).
    ``registry_url`` (the producers' registry: protocol-number sequence and key vault)
    defaults to the ledger database when that is configured, and to one registry database
    per embedded PostgreSQL server otherwise (``protocolo dev up`` exports that one, so
    every shell of the dev stack uses it; a ledger refuses any registry but its own, see
    ``protocolo.registry_binding``).

    ``dev_keys``: whether the dev key files under ``home`` apply (read, and made when
    missing) instead of ``PROTOCOLO_INDEX_KEY`` / ``PROTOCOLO_MASTER_KEY`` /
    ``PROTOCOLO_SIGNING_KEY``. True on the embedded stack; with a configured Kafka or
    PostgreSQL only when ``PROTOCOLO_DEV_KEYS=1`` says so (the exports of ``dev up``,
    tests, throw-away setups): a deployment never runs on dev keys. Every command asks
    :attr:`may_invent_keys`, nothing else.
    """

    home: Path
    kafka_bootstrap: str | None = None
    database_url: str | None = None
    topic: str = DEFAULT_TOPIC
    partitions: int = DEFAULT_PARTITIONS
    group_id: str = DEFAULT_GROUP_ID
    registry_url: str | None = None
    dev_keys: bool | None = None

    @property
    def embedded(self) -> bool:
        """Neither Kafka nor PostgreSQL is configured: the embedded dev stack serves both."""
        return not self.kafka_bootstrap and not self.database_url

    @property
    def may_invent_keys(self) -> bool:
        return self.embedded if self.dev_keys is None else self.dev_keys

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read the settings from ``environ``; raise :class:`ConfigError` on a bad value."""

        def get(name: str) -> str | None:
            value = environ.get(name)
            if value is None or not value.strip():
                return None
            return value.strip()

        _check_policy(environ)
        _check_keys(environ)
        _check_kafka_client(environ)
        return cls(
            home=_parse_home(get(ENV_HOME) or DEFAULT_HOME),
            kafka_bootstrap=_parse_bootstrap(ENV_KAFKA_BOOTSTRAP, get(ENV_KAFKA_BOOTSTRAP)),
            database_url=_parse_database_url(ENV_DATABASE_URL, get(ENV_DATABASE_URL)),
            topic=_parse_topic(ENV_TOPIC, get(ENV_TOPIC) or DEFAULT_TOPIC),
            partitions=_parse_partitions(ENV_PARTITIONS, get(ENV_PARTITIONS)),
            group_id=get(ENV_GROUP_ID) or DEFAULT_GROUP_ID,
            registry_url=_parse_database_url(ENV_REGISTRY_URL, get(ENV_REGISTRY_URL)),
            dev_keys=_parse_flag(ENV_DEV_KEYS, get(ENV_DEV_KEYS)),
        )


def _check_policy(environ: Mapping[str, str]) -> None:
    """``PROTOCOLO_POLICY`` names a known profile (checked here so that every command, not
    only those that publish, refuses a typo)."""
    from protocolo.core.policy import PolicyError, override_from_env

    try:
        override_from_env(environ)
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None


def _check_kafka_client(environ: Mapping[str, str]) -> None:
    """``PROTOCOLO_KAFKA_CLIENT`` names a client that is installed (checked here so that a
    typo stops every command before it connects, not only those that publish or project)."""
    from protocolo.core.kafka_client import chosen_client

    chosen_client(environ)


def _check_keys(environ: Mapping[str, str]) -> None:
    """A key that is set is 32 bytes in base64 (whether it is the right key is checked
    against the registry when a command uses it; the value is never echoed)."""
    from protocolo.core.deployment_keys import KeyConfigError, decode_key_variable

    for name in (ENV_INDEX_KEY, ENV_MASTER_KEY):
        value = environ.get(name, "")
        if value.strip():
            try:
                decode_key_variable(name, value)
            except KeyConfigError as exc:
                raise ConfigError(str(exc)) from None


def _parse_home(value: str) -> Path:
    # Absolute, because detached services started from here record it and may be asked
    # about it later from another working directory.
    return Path(os.path.abspath(os.path.expanduser(value)))


def _parse_bootstrap(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    servers = [part.strip() for part in value.split(",")]
    for server in servers:
        match = _HOST_PORT_RE.fullmatch(server)
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise ConfigError(
                f"{name}={value!r}: must be a comma-separated list of host:port "
                f"(port 1-65535), e.g. 'kafka-1:9092,kafka-2:9092'; bad entry {server!r}"
            )
    return ",".join(servers)


def _parse_database_url(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    # The value is never echoed in errors: it may hold a password.
    rule = (
        f"{name}: must be a PostgreSQL connection URL such as "
        "'postgresql://user:password@host:5432/dbname'"
    )
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme not in {"postgresql", "postgres"}:
            raise ConfigError(f"{rule} (scheme {parts.scheme!r} is not postgresql)")
        try:
            parts.port  # noqa: B018 - raises ValueError on a port that is not 0-65535
        except ValueError:
            raise ConfigError(f"{rule} (the port is not a number from 1 to 65535)") from None
    # libpq's own parser: accepts URLs and key=value strings, rejects the rest.
    from psycopg import conninfo

    try:
        conninfo.conninfo_to_dict(value)
    except Exception:  # psycopg.ProgrammingError; its message may quote the value
        raise ConfigError(f"{rule} (libpq cannot parse it)") from None
    return value


def _parse_flag(name: str, value: str | None) -> bool | None:
    if value is None:
        return None
    if value.lower() in {"1", "true", "yes"}:
        return True
    if value.lower() in {"0", "false", "no"}:
        return False
    raise ConfigError(f"{name}={value!r}: must be 1 or 0 (true/false, yes/no)")


def _parse_topic(name: str, value: str) -> str:
    if not _TOPIC_RE.fullmatch(value) or value in {".", ".."}:
        raise ConfigError(
            f"{name}={value!r}: must be a Kafka topic name: 1-249 characters from "
            "letters, digits, '.', '_' and '-', and not '.' or '..'"
        )
    return value


def _parse_partitions(name: str, value: str | None) -> int:
    if value is None:
        return DEFAULT_PARTITIONS
    try:
        partitions = int(value, 10)
    except ValueError:
        partitions = 0
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ConfigError(f"{name}={value!r}: must be a whole number from 1 to {MAX_PARTITIONS}")
    return partitions
