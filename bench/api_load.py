"""Load run of the HTTP API: p50/p99 of contact-by-protocol and search-by-CPF under
concurrent clients, on a demo-sized ledger (bench/README.md "API load").

The ledger is a simulated call-centre day (``CallCentreDay``, as ``protocolo demo``)
published and projected into the run's own topic and database. ``protocolo serve`` runs as
a child process (its own interpreter, so the clients do not share its GIL); the clients are
threads with one keep-alive HTTP connection each, every one alternating the two requests
over random contacts and customers. A search by CPF is an audited access, so each one also
publishes an AccessRecorded: that cost is part of the figure.

    python bench/api_load.py [--contacts 2000] [--clients 8] [--requests 400] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from protocolo.api import identities
from protocolo.api.roles import Role
from protocolo.core.config import Settings
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.simulator import CallCentreDay, chunks
from protocolo.runtime import Runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ledger_bench import Scratch, backend, say  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--contacts", type=int, default=2000, help="contacts in the simulated day (default 2000, the demo's)")
    p.add_argument("--clients", default="1,8",
                   help="concurrent clients, a comma list run one after the other on the same server (default 1,8)")
    p.add_argument("--requests", type=int, default=400, help="requests per client (default 400)")
    p.add_argument("--seed", type=int, default=6523)
    p.add_argument("--json", type=Path, help="write the figures here too")
    args = p.parse_args()

    with backend() as be:
        scratch = Scratch(be, partitions=6)
        try:
            database_url, topic = scratch.database("api"), scratch.topic("api")
            settings = Settings(home=be.home, kafka_bootstrap=be.kafka_bootstrap, database_url=database_url,
                                topic=topic, partitions=6, group_id=f"bench-{scratch.run_id}", dev_keys=True)
            rt = Runtime.start(settings)
            with ProtocolIssuer(rt.registry_url, block_size=1000) as issuer:
                simulation = CallCentreDay(issuer.issue, contacts=args.contacts, seed=args.seed)
                day = simulation.build()
            publisher = rt.publisher("bench")
            for chunk in chunks(day.events, 2000):
                publisher.publish_many(chunk)
            publisher.close()
            say(f"published {len(day.events):,} events ({args.contacts:,} contacts); projecting")
            with rt.projector() as projector:
                projector.run(until_caught_up=True)
            with psycopg.connect(rt.registry_url, autocommit=True) as conn:
                identities.migrate_identities(conn)
                identities.add_user(conn, "bench.analyst", Role.ANALYST, password=None)
                token = identities.issue(conn, "bench.analyst", "token", timedelta(hours=2)).credential
            with psycopg.connect(database_url) as conn:
                protocols = [r[0] for r in conn.execute(
                    "SELECT protocol_number FROM interactions WHERE opened_at IS NOT NULL")]
            cpfs = sorted({c.cpf for c in simulation.customers if c.cpf})
            figures = run_load(settings, token, protocols, cpfs, args)
            figures["load_average_1m"] = round(os.getloadavg()[0], 1)
        finally:
            scratch.cleanup()
    figures.update(contacts=args.contacts, events=len(day.events), requests_per_client=args.requests,
                   backend=be.description, cpu_count=os.cpu_count())
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def run_load(settings: Settings, token: str, protocols: list[str], cpfs: list[str],
             args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "PROTOCOLO_HOME": str(settings.home), "PROTOCOLO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
           "PROTOCOLO_DATABASE_URL": settings.database_url or "", "PROTOCOLO_TOPIC": settings.topic,
           "PROTOCOLO_DEV_KEYS": "1", "PROTOCOLO_GROUP_ID": settings.group_id}
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; from protocolo.cli import main; sys.exit(main())",
         "serve", "--listen", f"127.0.0.1:{port}"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("protocolo serve did not become ready")
            time.sleep(0.5)
        return {f"clients={n}": one_load(base, token, protocols, cpfs, args, int(n))
                for n in str(args.clients).split(",")}
    finally:
        server.terminate()
        server.wait(timeout=60)


def one_load(base: str, token: str, protocols: list[str], cpfs: list[str], args: argparse.Namespace,
             clients: int) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {"contact_by_protocol": [], "search_by_cpf": []}
    errors: list[str] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        rng = random.Random(args.seed + i)
        mine: dict[str, list[float]] = {k: [] for k in latencies}
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            for n in range(args.requests):
                if n % 2 == 0:
                    kind, url, params = ("contact_by_protocol", f"/v1/contacts/{rng.choice(protocols)}", {})
                else:
                    kind, url, params = ("search_by_cpf", "/v1/contacts",
                                         {"cpf": rng.choice(cpfs), "purpose": "load run"})
                started = time.perf_counter()
                r = c.get(url, params=params)
                mine[kind].append(time.perf_counter() - started)
                if r.status_code != 200:
                    with lock:
                        errors.append(f"{r.status_code} {url}")
        with lock:
            for k, v in mine.items():
                latencies[k].extend(v)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    total = sum(len(v) for v in latencies.values())
    out: dict[str, Any] = {"wall_s": round(wall, 2), "requests": total, "throughput_rps": round(total / wall, 1),
                           "errors": len(errors), "first_errors": errors[:5]}
    for kind, values in latencies.items():
        out[kind] = {"p50_ms": round(percentile(values, 0.50) * 1000, 1),
                     "p99_ms": round(percentile(values, 0.99) * 1000, 1),
                     "mean_ms": round(statistics.fmean(values) * 1000, 1), "n": len(values)}
    return out


if __name__ == "__main__":
    sys.exit(main())
