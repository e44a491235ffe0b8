"""Migrations are append-only: a start that finds an applied migration whose file changed
since refuses, says which file and which database, and changes nothing.

The oracle for every checksum is ``hashlib.sha256`` over the file's bytes as this test
reads them from the source tree (what ``sha256sum`` prints), never the runner's own value.
"""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from view_snapshot import PROTOCOLO, cli_env

from protocolo.core.database import MigrationEdited, MigrationSet, migrate
from protocolo.producers.registry import REGISTRY_MIGRATIONS
from protocolo.projections.schema import LEDGER_MIGRATIONS
from protocolo.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]
LEDGER_FOLDER = REPO / "projections" / "migrations"
REGISTRY_FOLDER = REPO / "producers" / "migrations"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded(url: str) -> dict[str, str | None]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT name, sha256 FROM schema_migrations"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def has_table(url: str, table: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


@pytest.fixture
def trial_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[MigrationSet, Path]:
    """A migration set of its own (a package on sys.path), so that the test can edit a file
    that was applied without touching the product's migrations."""
    package = f"trial_migrations_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / package / "migrations"
    folder.mkdir(parents=True)
    (tmp_path / package / "__init__.py").write_text("")
    (folder / "0001_people.sql").write_text("CREATE TABLE people (id int PRIMARY KEY);\n")
    (folder / "0002_places.sql").write_text("CREATE TABLE places (id int PRIMARY KEY);\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return MigrationSet(owner="trial", package=package), folder


def test_an_edited_migration_is_refused_and_nothing_is_applied(database_url: str, trial_set) -> None:
    migrations, folder = trial_set
    first = folder / "0001_people.sql"
    applied_sha = sha256_of(first)
    with psycopg.connect(database_url) as conn:
        assert migrate(conn, migrations) == ["trial/0001_people.sql", "trial/0002_places.sql"]
    assert recorded(database_url) == {"trial/0001_people.sql": applied_sha,
                                      "trial/0002_places.sql": sha256_of(folder / "0002_places.sql")}

    first.write_text("CREATE TABLE people (id int PRIMARY KEY, name text);\n")  # edited after it ran
    (folder / "0003_things.sql").write_text("CREATE TABLE things (id int PRIMARY KEY);\n")  # pending
    before = recorded(database_url)
    with psycopg.connect(database_url) as conn, pytest.raises(MigrationEdited) as caught:
        migrate(conn, migrations)

    message = str(caught.value)
    assert f"'{database_name(database_url)}'" in message, message
    assert "trial/0001_people.sql" in message and str(first) in message, message
    assert applied_sha in message and sha256_of(first) in message, message
    assert "append-only" in message and "new migration" in message and "nothing was applied" in message.lower()
    assert "0002_places" not in message, "only the edited file is named"
    assert [e.name for e in caught.value.edited] == ["trial/0001_people.sql"]
    assert recorded(database_url) == before
    assert not has_table(database_url, "things"), "a pending migration ran although the start was refused"

    first.write_text("CREATE TABLE people (id int PRIMARY KEY);\n")  # put back as applied
    with psycopg.connect(database_url) as conn:
        assert migrate(conn, migrations) == ["trial/0003_things.sql"]
    assert has_table(database_url, "things")


def test_an_untouched_ledger_starts_again_with_every_checksum_recorded(settings) -> None:
    Runtime.start(settings, log=lambda m: None, need_kafka=False)
    first = recorded(settings.database_url)
    expected = {p.name: sha256_of(p) for p in LEDGER_FOLDER.glob("*.sql")}
    expected |= {f"producers/{p.name}": sha256_of(p) for p in REGISTRY_FOLDER.glob("*.sql")}
    assert first == expected
    Runtime.start(settings, log=lambda m: None, need_kafka=False)
    with psycopg.connect(settings.database_url) as conn:
        assert migrate(conn, LEDGER_MIGRATIONS, REGISTRY_MIGRATIONS) == []
    assert recorded(settings.database_url) == expected


def test_a_ledger_from_before_checksums_gets_them_recorded(database_url: str) -> None:
    """As the runner left ledgers before it kept checksums: its table without the column."""
    files = sorted(LEDGER_FOLDER.glob("*.sql"))
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")
        for path in files:
            conn.execute(path.read_text(encoding="utf-8").encode())
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
    with psycopg.connect(database_url) as conn:
        assert migrate(conn, LEDGER_MIGRATIONS) == []
    assert recorded(database_url) == {p.name: sha256_of(p) for p in files}


def _released_0022() -> str:
    """0022 as a ledger that ran it before its last index was added had it (the 10M ledger's
    case): the file without its last statement."""
    text = (LEDGER_FOLDER / "0022_customer_search_indexes.sql").read_text(encoding="utf-8")
    cut = text.rindex("-- `history --customer`")
    return text[:cut]


@pytest.mark.parametrize("argv", [["project", "--until-caught-up", "--quiet"], ["serve", "--no-projector"]])
def test_the_command_line_refuses_an_edited_migration_without_a_traceback(settings, argv) -> None:
    Runtime.start(settings, log=lambda m: None, need_kafka=False)
    url = settings.database_url
    applied = hashlib.sha256(_released_0022().encode()).hexdigest()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET sha256 = %s WHERE name = '0022_customer_search_indexes.sql'",
                     (applied,))
        # 0023 still to apply: a refused start must not apply it.
        conn.execute("DELETE FROM schema_migrations WHERE name = '0023_interactions_fillfactor.sql'")
        conn.execute("ALTER TABLE interactions RESET (fillfactor)")
    before = recorded(url)

    proc = subprocess.run([PROTOCOLO, *argv], env=cli_env(settings), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "traceback" not in proc.stderr.lower(), proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("protocolo: ")]
    assert len(lines) == 1, proc.stderr
    assert "0022_customer_search_indexes.sql" in lines[0] and "append-only" in lines[0], lines[0]
    assert f"'{database_name(url)}'" in lines[0], lines[0]
    assert applied in lines[0] and sha256_of(LEDGER_FOLDER / "0022_customer_search_indexes.sql") in lines[0]
    assert recorded(url) == before
    with psycopg.connect(url) as conn:
        options = conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'interactions'::regclass").fetchone()
    assert options == (None,), f"0023 ran although the start was refused: {options}"

