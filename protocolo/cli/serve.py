"""``protocolo serve``: the HTTP API (and, unless told otherwise, the projector beside it)."""

from __future__ import annotations

import argparse
import logging
import sys

from protocolo.cli import CommandError


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return host.strip("[]"), int(port)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve",
        help="serve the HTTP API (OpenAPI at /openapi.json)",
        description="Serve the HTTP API over the ledger: search, timelines, retrieval requests, holds, "
        "two-person approvals, the access audit, /healthz, /readyz, /metrics. Runs the projector "
        "in the same process unless --no-projector. Users: `protocolo user add`.",
    )
    p.add_argument("--listen", type=_listen, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                   help="address to listen on (default 127.0.0.1:8080)")
    p.add_argument("--no-projector", action="store_true",
                   help="do not project in this process (a `protocolo project` runs elsewhere)")
    p.add_argument("--insecure-cookies", action="store_true",
                   help="session cookies without the Secure flag (plain HTTP on a non-localhost address)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from protocolo.api.server import ProjectorThread, build_services, proxy_options
    from protocolo.app_assembly import create_app
    from protocolo.runtime import Runtime

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rt = Runtime.start()
    services = build_services(rt, secure_cookies=not args.insecure_cookies)
    from protocolo.cli.report import document_maker

    services.documents.maker = document_maker(rt)  # the console's exports and reports
    projector = None if args.no_projector else ProjectorThread.start(rt)
    if projector is not None:
        services.projector_health = projector.health
    host, port = args.listen
    print(f"protocolo: serving on http://{host}:{port} (console at /console, OpenAPI at /openapi.json)",
          file=sys.stderr, flush=True)
    try:
        uvicorn.run(create_app(services), host=host, port=port, log_level="warning", lifespan="off",
                    **proxy_options())
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    finally:
        if projector is not None:
            projector.stop()
        services.close()
    return 0
