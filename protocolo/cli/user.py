"""``protocolo user``: API users and their tokens (the secret is printed once)."""

from __future__ import annotations

import argparse
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from protocolo.cli import CommandError, bounded_int

if TYPE_CHECKING:
    import psycopg

    from protocolo.runtime import Runtime


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from protocolo.api.roles import Role

    p = sub.add_parser("user", help="API users and tokens",
                       description="Add API users, issue and revoke their tokens. Secrets are shown once "
                       "and stored only as scrypt hashes (in the registry database).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a user; prints a generated password and an API token once")
    add.add_argument("--name", required=True, help="user name (lowercase letters, digits, . _ @ -)")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--cpf", help="customer users: their CPF (only its blind index is stored)")
    add.add_argument("--regulator", help="regulator users: the regulator they belong to (e.g. anatel); "
                     "they see only the exports and reports made for it")
    add.add_argument("--token-days", type=bounded_int(1, 3650), default=90, help="token lifetime (default 90)")
    add.set_defaults(func=run_add)
    token = actions.add_parser("token", help="issue another API token for a user")
    token.add_argument("--name", required=True)
    token.add_argument("--days", type=bounded_int(1, 3650), default=90)
    token.set_defaults(func=run_token)
    revoke = actions.add_parser("revoke", help="revoke a token or session by its id (pt_... / ps_...)")
    revoke.add_argument("credential_id")
    revoke.set_defaults(func=run_revoke)


def _registry() -> tuple[Runtime, psycopg.Connection[Any]]:
    import psycopg

    from protocolo.api.identities import migrate_identities
    from protocolo.runtime import Runtime

    rt = Runtime.start(need_kafka=False)
    conn = psycopg.connect(rt.registry_url, autocommit=True)
    migrate_identities(conn)
    return rt, conn


def run_add(args: argparse.Namespace) -> int:
    from protocolo.api import identities
    from protocolo.api.roles import Role
    from protocolo.core.cpf import normalise_cpf
    from protocolo.core.errors import EventRejected

    role = Role(args.role)
    rt, conn = _registry()
    with conn:
        try:
            subject = rt.sealer().index.cpf(normalise_cpf(args.cpf, "--cpf")) if args.cpf else None
            password = secrets.token_urlsafe(12)
            identities.add_user(conn, args.name, role, password=password, subject_ref=subject,
                                regulator=args.regulator)
        except EventRejected as exc:
            raise CommandError(f"--{exc.field.lstrip('-')}: {exc.detail}") from None
        issued = identities.issue(conn, args.name, "token", timedelta(days=args.token_days))
    print(f"user:     {args.name} ({role.value}{', ' + args.regulator if args.regulator else ''})")
    print(f"password: {password}")
    print(f"token:    {issued.credential}")
    print(f"          (expires {issued.expires_at:%Y-%m-%d}; shown once, stored hashed)")
    return 0


def run_token(args: argparse.Namespace) -> int:
    from protocolo.api import identities

    _rt, conn = _registry()
    with conn:
        if conn.execute("SELECT 1 FROM api_users WHERE user_name = %s", (args.name,)).fetchone() is None:
            raise CommandError(f"--name: no user {args.name!r}")
        issued = identities.issue(conn, args.name, "token", timedelta(days=args.days))
    print(issued.credential)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from protocolo.api import identities

    _rt, conn = _registry()
    with conn:
        if not identities.revoke(conn, args.credential_id):
            raise CommandError(f"no live credential {args.credential_id!r}")
    print(f"revoked {args.credential_id}")
    return 0
