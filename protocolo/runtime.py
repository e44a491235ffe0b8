"""Wiring shared by the commands: settings -> endpoints -> publisher, projector, sealer.

Two ways in:

* :meth:`Runtime.start`, for commands that write (publish, project, erase, demo): it
  decides where Kafka and PostgreSQL are (configured URLs, else the embedded stack, which
  it starts), creates the ledger topic, brings the ledger's and the registry's tables up
  to date and checks the deployment's keys against the registry.
* :meth:`LedgerReader.open`, for commands that only read (``history``): it never starts a
  broker, never creates or migrates a database, and says which URL it tried when nothing
  answers (:class:`LedgerUnreachable`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from kafka.errors import KafkaError
from psycopg import conninfo, sql

from protocolo import devstack
from protocolo.consumers.projector import Projector, ProjectorOptions, ProjectorStats
from protocolo.core.config import ENV_DATABASE_URL, ENV_REGISTRY_URL, Settings
from protocolo.core.database import SchemaMissing, require_schema
from protocolo.core.deployment_keys import (
    DeploymentKeys,
    KeyConfigError,
    check_keys,
    load_keys,
    verify_keys,
)
from protocolo.core.personal_data import BlindIndex, KeyVault, PersonalDataSealer
from protocolo.core.policy import override_from_env
from protocolo.producers import registry
from protocolo.producers.ledger_topic import LedgerTopicError, ensure_ledger_topic
from protocolo.producers.publisher import LedgerPublisher
from protocolo.projections.schema import connect
from protocolo.registry_binding import (
    RegistryMismatch,
    RegistryRef,
    bind_ledger,
    bound_registry,
    check_ledger,
)

Log = Callable[[str], None]

#: The embedded server's registry database (protocol-number sequence, key vault): one per
#: server, so that no new ledger database ever restarts the sequence or keeps a key alive.
EMBEDDED_REGISTRY_DATABASE = "protocolo_registry"


def stack_log(message: str) -> None:
    """Progress of the embedded stack on stderr, without the "already running" chatter."""
    if "already running" not in message:
        print(f"  {message}", file=sys.stderr, flush=True)


class RuntimeUnavailable(RuntimeError):
    """Kafka or PostgreSQL could not be reached or prepared; the message says which."""


class LedgerUnreachable(RuntimeUnavailable):
    """A reader found no ledger to read (exit status 3)."""


def redact_url(url: str) -> str:
    """A database URL fit for a message: every password replaced by ``***``.

    libpq takes a password in the URL's user part, in its query (``?password=``) or, in
    the key=value form, as ``password=``; all three are masked."""
    if "://" not in url:
        try:
            params = conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            return "(a connection string libpq cannot parse)"
        if "password" in params:
            params["password"] = "***"
        return conninfo.make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        parts = parts._replace(netloc=f"{user}:***@{netloc[1]}")
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    if any(k == "password" for k, _ in query):
        parts = parts._replace(query=urlencode(query, safe="/*"))
    return urlunsplit(parts)


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` of the same server."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def ensure_database(server_url: str, name: str) -> str:
    """URL of database ``name`` on the server ``server_url`` points at, created if missing."""
    url = with_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # a concurrent starter won
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url


@dataclass
class Runtime:
    settings: Settings
    kafka_bootstrap: str
    database_url: str
    registry_url: str
    keys: DeploymentKeys
    _sealer: PersonalDataSealer | None = field(default=None, repr=False)

    @classmethod
    def start(cls, settings: Settings | None = None, log: Log = stack_log, need_kafka: bool = True) -> Runtime:
        """Resolve the endpoints (starting the embedded stack if nothing is configured),
        create the ledger topic and bring the ledger and registry tables up to date.

        Which ledger database the embedded stack uses depends on its broker: one stable
        ``ledger`` for Apache Kafka, one per incarnation for tansu (see devstack.ledger_url).
        """
        settings = settings or Settings.from_env()
        try:
            keys = load_keys(settings.home, may_invent=settings.may_invent_keys)
        except KeyConfigError as exc:
            raise RuntimeUnavailable(str(exc)) from exc
        postgres = "PostgreSQL"  # which one, for the message when it does not answer
        try:
            endpoints = devstack.resolve(settings, log)
            if need_kafka:
                ensure_ledger_topic(endpoints.kafka_bootstrap, settings.topic, settings.partitions)
            if settings.database_url:
                postgres = f"PostgreSQL at {redact_url(settings.database_url)} ({ENV_DATABASE_URL})"
            with connect(endpoints.database_url, autocommit=True) as ledger:
                ref = registry_ref(settings, endpoints.database_url)
                if settings.registry_url:
                    postgres = f"the registry at {ref.shown} ({ENV_REGISTRY_URL})"
                shown = redact_url(endpoints.database_url)
                check_ledger(ledger, shown, ref)  # before the registry is migrated: refuse first
                with registry.connect(ref.url, autocommit=True) as conn:
                    check_keys(conn, keys)
                    bind_ledger(ledger, shown, ref, conn)
        except (devstack.DevStackError, LedgerTopicError, KafkaError, KeyConfigError, RegistryMismatch) as exc:
            raise RuntimeUnavailable(str(exc)) from exc
        except psycopg.OperationalError as exc:
            raise RuntimeUnavailable(f"{postgres} is unreachable: {exc}".strip()) from exc
        return cls(settings, endpoints.kafka_bootstrap, endpoints.database_url, ref.url, keys)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.database_url, **kwargs)

    def earlier_ledger_urls(self) -> list[str]:
        """On the embedded stack (nothing configured, or the URLs ``dev up`` exported), the
        other ledger databases of the server that hold a projection and belong to this
        registry: earlier broker incarnations, what ``erase`` must also search. None for a
        ledger database of another server."""
        if self.settings.database_url and not self._on_embedded_server():
            return []
        with self.connect(autocommit=True) as conn:  # pg_database is shared by the server
            names = [r[0] for r in conn.execute(
                "SELECT datname FROM pg_database WHERE (datname = 'ledger' OR datname LIKE 'ledger\\_%')"
                " AND datname <> current_database() ORDER BY datname DESC")]
            ours = bound_registry(conn)
        urls = []
        for name in names:
            url = with_database(self.database_url, name)
            with psycopg.connect(url, autocommit=True) as conn:
                projected = conn.execute("SELECT to_regclass('customer_index') IS NOT NULL").fetchone() == (True,)
                if projected and bound_registry(conn) in (ours, None):
                    urls.append(url)
        return urls

    def _on_embedded_server(self) -> bool:
        """The configured ledger database is on the embedded PostgreSQL of this home."""
        admin = devstack.status(self.settings)["postgres"]["admin_url"]
        if admin is None:
            return False

        def where(url: str) -> tuple[str, str]:
            params = conninfo.conninfo_to_dict(url)
            return str(params.get("host") or ""), str(params.get("port") or "5432")

        return where(admin) == where(self.database_url)

    def sealer(self) -> PersonalDataSealer:
        if self._sealer is None:
            self._sealer = PersonalDataSealer(
                BlindIndex(self.keys.index_key), KeyVault(self.registry_url, self.keys.master_key)
            )
        return self._sealer

    def publisher(self, producer_name: str) -> LedgerPublisher:
        return LedgerPublisher(self.kafka_bootstrap, producer_name=producer_name,
                               topic=self.settings.topic, sealer=self.sealer(),
                               policy_profile=override_from_env())

    def projector(
        self, batch_size: int = 2000, progress: Callable[[ProjectorStats], None] | None = None,
        *, accept_unsafe_topic: bool = False,
    ) -> Projector:
        return Projector(
            self.kafka_bootstrap, self.database_url, topic=self.settings.topic,
            group_id=self.settings.group_id, progress=progress,
            options=ProjectorOptions(batch_size=batch_size, accept_unsafe_topic=accept_unsafe_topic),
        )


def registry_ref(settings: Settings, ledger_url: str) -> RegistryRef:
    """The deployment's registry: ``PROTOCOLO_REGISTRY_URL``; else, with a configured ledger
    database, that database; else (the embedded stack) the server's ``protocolo_registry``,
    created if missing. ``protocolo dev up`` exports the last one as
    ``PROTOCOLO_REGISTRY_URL``, so a shell with its exports and one without use the same
    registry; the ledger's binding (registry_binding) refuses any other."""
    if settings.registry_url:
        return RegistryRef(settings.registry_url, ENV_REGISTRY_URL, redact_url(settings.registry_url))
    if settings.database_url:
        return RegistryRef(settings.database_url, f"the ledger database, as {ENV_REGISTRY_URL} is not set",
                           redact_url(settings.database_url))
    url = ensure_database(ledger_url, EMBEDDED_REGISTRY_DATABASE)
    return RegistryRef(url, "the embedded server's registry", redact_url(url))


@dataclass(frozen=True)
class Ledger:
    """One ledger database a reader can search: ``name`` for messages, ``current`` when it
    is the one the running broker projects into."""

    name: str
    url: str
    current: bool


@dataclass
class LedgerReader:
    """What a read-only command reaches: the ledger database(s), the registry, the keys and,
    when it answers, Kafka (for the projection lag). Nothing is started or created."""

    settings: Settings
    ledgers: list[Ledger]
    registry_url: str | None
    kafka_bootstrap: str | None
    keys: DeploymentKeys | None
    _sealer: PersonalDataSealer | None = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: Settings | None = None, *, need_keys: bool = True) -> LedgerReader:
        """``need_keys=False``: a reader of evidence only (``verify``), which never opens
        personal data, so the deployment's personal-data keys are not required."""
        settings = settings or Settings.from_env()
        if settings.database_url:
            ledgers = [Ledger("configured ledger", settings.database_url, current=True)]
            kafka = settings.kafka_bootstrap
            _probe_ledger(ledgers[0], ENV_DATABASE_URL)
        else:
            ledgers, kafka = embedded_ledgers(settings)
            kafka = settings.kafka_bootstrap or kafka
            ledgers = _projected(ledgers, settings)
        registry_url = settings.registry_url or settings.database_url
        if registry_url is None and ledgers:
            registry_url = with_database(ledgers[0].url, EMBEDDED_REGISTRY_DATABASE)
        if registry_url is not None:
            _check_registry(ledgers, settings, registry_url)
        keys: DeploymentKeys | None = None
        try:
            # the same rule as every command: dev key files only where dev keys apply
            keys = load_keys(settings.home, may_invent=False, may_read_files=settings.may_invent_keys)
            if registry_url is not None:
                _verify_registry_keys(registry_url, keys, configured=settings.registry_url is not None)
        except KeyConfigError as exc:
            if need_keys:
                raise RuntimeUnavailable(str(exc)) from exc
        return cls(settings, ledgers, registry_url, kafka, keys)

    @contextlib.contextmanager
    def connect(self, ledger: Ledger) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(ledger.url, autocommit=True) as conn:
            yield conn

    def sealer(self) -> PersonalDataSealer:
        if self.keys is None:
            raise RuntimeUnavailable("this reader was opened without the personal-data keys")
        if self._sealer is None:
            self._sealer = PersonalDataSealer(
                BlindIndex(self.keys.index_key),
                KeyVault(self.registry_url or "", self.keys.master_key),
            )
        return self._sealer


def embedded_ledgers(settings: Settings) -> tuple[list[Ledger], str | None]:
    """Every ledger database on the embedded server, the running broker's first."""
    report = devstack.status(settings)
    postgres = report["postgres"]
    if not postgres["running"] or not postgres["admin_url"]:
        raise LedgerUnreachable(
            f"no ledger is reachable: PROTOCOLO_DATABASE_URL is not set and the embedded "
            f"PostgreSQL under {settings.home} is not running (start it with `protocolo dev up`, "
            "or set PROTOCOLO_DATABASE_URL)"
        )
    admin = postgres["admin_url"]
    current = postgres["url"] if postgres["url"] != admin else None
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            names = [r[0] for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname = 'ledger' OR datname LIKE 'ledger\\_%'"
                " ORDER BY datname DESC")]
    except psycopg.OperationalError as exc:
        raise LedgerUnreachable(f"no ledger is reachable at {redact_url(admin)}: {exc}".strip()) from exc
    current_name = urlsplit(current).path.lstrip("/") if current else None
    ledgers = [Ledger(n, with_database(admin, n), n == current_name) for n in names]
    ledgers.sort(key=lambda ledger: not ledger.current)  # stable: the current one first
    if not ledgers:
        raise LedgerUnreachable(
            f"no ledger database on the embedded PostgreSQL under {settings.home}: nothing was "
            "projected yet (run `protocolo demo`, or `protocolo project`)"
        )
    kafka = report["kafka"]["url"] if report["kafka"]["running"] else None
    return ledgers, kafka


def _verify_registry_keys(registry_url: str, keys: DeploymentKeys, *, configured: bool) -> None:
    """Refuse keys other than those the registry recorded (read-only). A registry of the
    embedded server that does not exist yet has recorded none; one configured with
    ``PROTOCOLO_REGISTRY_URL`` must answer (it holds the keys that open personal data)."""
    try:
        with psycopg.connect(registry_url, autocommit=True, connect_timeout=5) as conn:
            verify_keys(conn, keys)
    except psycopg.OperationalError as exc:
        if configured:
            raise LedgerUnreachable(f"the registry at {redact_url(registry_url)} ({ENV_REGISTRY_URL}) "
                                    f"is unreachable: {exc}".strip()) from exc


def _projected(ledgers: list[Ledger], settings: Settings) -> list[Ledger]:
    """The embedded server's ledger databases that hold a projection. One with no tables
    yet (a broker incarnation nothing was projected from, e.g. right after a tansu
    restart) is skipped; only when none holds one is that an error."""
    found: list[Ledger] = []
    empty: list[str] = []
    for ledger in ledgers:
        try:
            _probe_ledger(ledger, None)
        except LedgerUnreachable as exc:
            if not isinstance(exc.__cause__, SchemaMissing):
                raise
            empty.append(ledger.name)
            continue
        found.append(ledger)
    if not found:
        raise LedgerUnreachable(
            f"no ledger on the embedded PostgreSQL under {settings.home} holds a projection yet "
            f"({', '.join(empty)}: nothing projected); run `protocolo demo` or `protocolo project`")
    return found


def _check_registry(ledgers: list[Ledger], settings: Settings, registry_url: str) -> None:
    """Every ledger read must belong to the registry whose keys open its personal data."""
    source = ENV_REGISTRY_URL if settings.registry_url else (
        f"the ledger database, as {ENV_REGISTRY_URL} is not set" if settings.database_url
        else "the embedded server's registry")
    ref = RegistryRef(registry_url, source, redact_url(registry_url))
    for ledger in ledgers:
        try:
            with psycopg.connect(ledger.url, autocommit=True, connect_timeout=5) as conn:
                check_ledger(conn, redact_url(ledger.url), ref)
        except RegistryMismatch as exc:
            raise RuntimeUnavailable(str(exc)) from exc
        except psycopg.OperationalError as exc:
            raise LedgerUnreachable(f"the registry at {ref.shown} ({source}) is unreachable: {exc}".strip()) from exc


def _probe_ledger(ledger: Ledger, variable: str | None) -> None:
    """``variable``: the setting the URL came from, named in the message."""
    where = redact_url(ledger.url) + (f" ({variable})" if variable else "")
    try:
        with psycopg.connect(ledger.url, autocommit=True, connect_timeout=5) as conn:
            require_schema(conn, "journal", f"the database at {where}")
    except psycopg.OperationalError as exc:
        raise LedgerUnreachable(f"no ledger is reachable at {where}: {exc}".strip()) from exc
    except SchemaMissing as exc:
        raise LedgerUnreachable(str(exc)) from exc
