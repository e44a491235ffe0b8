"""Peak memory of the long-running commands on a big ledger: does it grow with the log?

    python bench/memory_scale.py --dir /data/scale [--json FILE] [--only verify,export,...]

``--dir`` is a ledger built by ``bench/scale.py`` (its PROTOCOLO_HOME). Each command runs
as the user runs it (the ``protocolo`` CLI in its own process) under GNU ``time``, whose
``%M`` is the command's own peak resident set (``time`` forks a small C process that
execs the command, so the figure is not inflated by this bench's interpreter, unlike
``ru_maxrss`` of a child forked from Python: see bench/rss_probe.py):

* ``verify``: ``protocolo verify --quiet --json`` over the whole ledger (every leaf, node,
  checkpoint, decoded copy and view), or what ``--verify-args`` narrows it to;
* ``export``: ``protocolo export`` of a window of about ``--export-events`` records (two
  checkpoint rounds apart, so the same amount of work at 1M and at 10M), written to a
  scratch directory that is deleted afterwards;
* ``restore``: ``protocolo restore-topic`` of the whole ledger into a new topic (deleted
  at the end, unless ``--keep-restored``): it verifies every leaf first, then sends every
  record again;
* ``verify-restore``: ``protocolo verify-restore`` of that topic and its signed mapping
  (``restore`` in the same run, before it, or an earlier restore's ``--restored-mapping``,
  which is left as it is), under the log keys of the ledger's home: it reads every
  restored record back and recomputes every leaf and root;
* ``serve``: ``protocolo serve --no-projector`` answering ``--requests`` contact and
  CPF-search requests (``bench/api_load.py``'s mix) from one client, then stopped;
* ``project``: ``protocolo project --until-caught-up`` of the whole topic into a fresh
  database (dropped afterwards).

The reference, measured in the same run: the peak of ``protocolo --help`` (the interpreter
with every command's modules imported, which every command starts from); a command's own
working memory is its peak above that.

Every ``--sample-every`` seconds the command's resident set (``VmRSS`` of
``/proc/PID/status``) is sampled too, so the JSON shows where in the run memory went
(``rss_samples``: ``[seconds since start, MiB, 1-minute load average]``), not only the peak.

The ledger is changed only where the commands themselves change it (the export signs
no checkpoint because the window ends at an existing one; the export chain and the access
events gain a row). Run it on a copy when that matters. No figure is asserted: the point is
the same figures at 1M and 10M, side by side in bench/README.md ("Memory at scale").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

COMMANDS = ("verify", "export", "restore", "verify-restore", "serve", "project")
TIME = "/usr/bin/time"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cli() -> list[str]:
    return [str(Path(sys.executable).parent / "protocolo")]


#: Seconds between two samples of a command's resident set (``--sample-every``).
SAMPLE_EVERY = [10.0]


class RssSampler(threading.Thread):
    """``VmRSS`` of the command GNU time runs (its only child) and the load average, every
    ``every`` seconds."""

    def __init__(self, time_pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.time_pid, self.every = time_pid, every
        self.samples: list[list[float]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stopped.is_set():
            rss = _child_rss_kib(self.time_pid)
            if rss is not None:
                self.samples.append([round(time.monotonic() - started, 1), round(rss / 1024, 1),
                                     round(os.getloadavg()[0], 2)])
            self.stopped.wait(self.every)


def _child_rss_kib(time_pid: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        child = Path(f"/proc/{time_pid}/task/{time_pid}/children").read_text().split()[0]
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


@contextlib.contextmanager
def timed(argv: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` under GNU time; the figures land in ``proc.figures`` after the block."""
    if not Path(TIME).exists():
        raise SystemExit(f"{TIME} (GNU time, Debian package 'time') is needed to measure peak memory")
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        proc = subprocess.Popen([TIME, "-f", "%M %e %U %S", "-o", out.name, *argv],
                                env={**os.environ, **(env or {})}, stdout=subprocess.PIPE)
        sampler = RssSampler(proc.pid, SAMPLE_EVERY[0])
        sampler.start()
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.wait()
            sampler.stopped.set()
            sampler.join()
        text = Path(out.name).read_text().strip().splitlines()
    last = text[-1].split() if text else []
    if len(last) != 4:
        raise SystemExit(f"{argv[1]}: GNU time printed {text!r} (exit status {proc.returncode})")
    proc.figures = {  # type: ignore[attr-defined]
        "exit_status": proc.returncode, "peak_rss_mib": round(int(last[0]) / 1024, 1),
        "wall_s": float(last[1]), "cpu_s": round(float(last[2]) + float(last[3]), 1),
        "rss_samples": sampler.samples,
    }


def run_timed(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    with timed(argv, env) as proc:
        stdout = proc.communicate()[0]
    figures: dict[str, Any] = proc.figures  # type: ignore[attr-defined]
    figures["stdout"] = stdout.decode(errors="replace")
    return figures


# --------------------------------------------------------------------------- commands


def m_verify(ctx: Context) -> dict[str, Any]:
    extra = ctx.args.verify_args.split()
    figures = run_timed([*cli(), "verify", "--quiet", "--json", *extra])
    figures["args"] = extra
    with contextlib.suppress(ValueError, AttributeError):
        report = json.loads(figures["stdout"])
        figures["verdict"] = {k: v for k, v in report.items() if not isinstance(v, list | dict)}
    return figures


def export_window(conn: psycopg.Connection[Any], topic: str, events: int) -> tuple[datetime, datetime, int]:
    """Two checkpoint rounds about ``events`` records apart, in the middle of the ledger."""
    rounds = conn.execute(
        "WITH r AS (SELECT DISTINCT signed_at FROM checkpoints WHERE topic = %s)"
        " SELECT r.signed_at, (SELECT coalesce(sum(s), 0) FROM (SELECT max(tree_size) s FROM checkpoints c"
        "   WHERE c.topic = %s AND c.signed_at <= r.signed_at GROUP BY kafka_partition) x)"
        " FROM r ORDER BY r.signed_at", (topic, topic)).fetchall()
    if len(rounds) < 2:
        raise SystemExit("the ledger needs at least two checkpoint rounds to export a window")
    start = len(rounds) // 3
    for end in range(start + 1, len(rounds)):
        if rounds[end][1] - rounds[start][1] >= events:
            break
    return rounds[start][0], rounds[end][0], int(rounds[end][1] - rounds[start][1])


def m_export(ctx: Context) -> dict[str, Any]:
    with psycopg.connect(ctx.database_url) as conn:
        start, end, records = export_window(conn, ctx.topic, ctx.args.export_events)
    out = Path(tempfile.mkdtemp(prefix="scale-export-", dir=ctx.args.scratch)) / "export"
    try:
        figures = run_timed([*cli(), "export", "--from", start.isoformat(), "--to", end.isoformat(),
                             "--out", str(out), "--regulator", "bench-memory", "--quiet"])
        figures["window"] = [start.isoformat(), end.isoformat()]
        figures["records_in_window"] = records
        figures["export_bytes"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) if out.exists() else 0
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    return figures


def m_restore(ctx: Context) -> dict[str, Any]:
    target = f"scale-restore-{int(time.time())}"
    mapping = Path(tempfile.mkdtemp(prefix="scale-restore-", dir=ctx.args.scratch)) / "mapping.json"
    ctx.restored = (target, mapping)
    ctx.cleanups.append(lambda: _drop_restored(ctx, target, mapping))
    figures = run_timed([*cli(), "restore-topic", "--to", target, "--mapping", str(mapping)])
    figures["target_topic"] = target
    return figures


def _drop_restored(ctx: Context, target: str, mapping: Path) -> None:
    from kafka import KafkaAdminClient

    if ctx.args.keep_restored:
        say(f"  kept: topic {target} on {ctx.bootstrap}, mapping {mapping}")
        return
    shutil.rmtree(mapping.parent, ignore_errors=True)
    admin = KafkaAdminClient(bootstrap_servers=ctx.bootstrap)
    try:
        with contextlib.suppress(Exception):
            admin.delete_topics([target])
    finally:
        admin.close()


def restored_topic(mapping: Path) -> str:
    try:
        return str(json.loads(mapping.read_bytes())["target_topic"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"--restored-mapping {mapping}: not a readable restore mapping ({exc})") from None


def m_verify_restore(ctx: Context) -> dict[str, Any]:
    """The proof of the topic ``restore`` made, under the log keys of the ledger's home."""
    from protocolo.attestation.config import AttestationSettings
    from protocolo.attestation.log_key import load_log_key
    from protocolo.evidence.checkpoint import log_origin

    if ctx.restored is None:
        raise SystemExit("--only verify-restore needs restore before it, in the same run, or --restored-mapping")
    target, mapping = ctx.restored
    deployment = AttestationSettings.from_env().deployment
    key = load_log_key(ctx.settings, deployment)
    with psycopg.connect(ctx.database_url) as conn:
        partitions = [r[0] for r in conn.execute(
            "SELECT DISTINCT kafka_partition FROM projector_offsets WHERE topic = %s ORDER BY 1", (ctx.topic,))]
    vkeys = [f"--vkey={key.vkey(log_origin(deployment, ctx.topic, p))}" for p in partitions]
    figures = run_timed([*cli(), "verify-restore", "--mapping", str(mapping), *vkeys])
    figures["verdict"] = figures["stdout"].strip().splitlines()[-1:] or [""]
    figures["target_topic"] = target
    return figures


def m_serve(ctx: Context) -> dict[str, Any]:
    from protocolo.api import identities
    from protocolo.api.roles import Role

    with psycopg.connect(ctx.registry_url, autocommit=True) as conn:
        identities.migrate_identities(conn)
        with contextlib.suppress(Exception):
            identities.add_user(conn, "bench.memory", Role.ANALYST, password=None)
        token = identities.issue(conn, "bench.memory", "token", timedelta(hours=2)).credential
    with psycopg.connect(ctx.database_url) as conn:
        rows = conn.execute("SELECT protocol_number FROM interactions TABLESAMPLE SYSTEM (1) LIMIT 2000").fetchall()
    protocols = [r[0] for r in rows]
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=d)).isoformat() for d in range(1, 365)]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(7)
    errors = 0
    with timed([*cli(), "serve", "--listen", f"127.0.0.1:{port}", "--no-projector"]) as proc:
        try:
            _wait_ready(base, proc)
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
                for n in range(ctx.args.requests):
                    protocol = rng.choice(protocols)
                    if n % 2 == 0:
                        r = client.get(f"/v1/contacts/{protocol}")
                    else:  # a search (the CPFs are sealed in the views, so by protocol and by channel in a week)
                        first = rng.randrange(7, len(days))
                        params = ({"protocol_number": protocol} if n % 4 == 1 else
                                  {"channel": "PHONE", "opened_from": f"{days[first]}T00:00:00Z",
                                   "opened_to": f"{days[first - 7]}T23:59:59Z"})
                        r = client.get("/v1/contacts", params=params)
                    errors += r.status_code != 200
        finally:
            _stop_child_of(proc)
    figures: dict[str, Any] = proc.figures  # type: ignore[attr-defined]
    if figures["exit_status"] == 128 + signal.SIGTERM:  # uvicorn re-raises the SIGTERM it was stopped with
        figures["exit_status"] = 0
    figures.update(requests=ctx.args.requests, errors=errors)
    return figures


def m_project(ctx: Context) -> dict[str, Any]:
    name = f"scale_memory_project_{int(time.time())}"
    with psycopg.connect(ctx.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    fresh = psycopg.conninfo.make_conninfo(ctx.database_url, dbname=name)
    try:
        return run_timed([*cli(), "project", "--until-caught-up", "--quiet"],
                         env={"PROTOCOLO_DATABASE_URL": fresh, "PROTOCOLO_GROUP_ID": name})
    finally:
        with psycopg.connect(ctx.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        if proc.poll() is not None:
            raise SystemExit("protocolo serve ended before it was ready")
        time.sleep(0.5)
    raise SystemExit("protocolo serve was not ready within 180 s")


def _stop_child_of(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command GNU time runs (its only child), so time reports its peak."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    with contextlib.suppress(OSError):
        for pid in children.read_text().split():
            os.kill(int(pid), signal.SIGTERM)
    proc.wait(timeout=120)


# --------------------------------------------------------------------------- main


class Context:
    def __init__(self, args: argparse.Namespace, rt: Any) -> None:
        self.args, self.database_url, self.registry_url = args, rt.database_url, rt.registry_url
        self.topic, self.bootstrap, self.settings = rt.settings.topic, rt.kafka_bootstrap, rt.settings
        self.restored: tuple[str, Path] | None = None  # the topic and mapping ``restore`` made
        if args.restored_mapping is not None:
            self.restored = (restored_topic(args.restored_mapping), args.restored_mapping)
        self.cleanups: list[Any] = []
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM projector_offsets WHERE topic = %s",
                               (self.topic,)).fetchone()
        self.events = int(row[0]) if row else 0


MEASURES = {"verify": m_verify, "export": m_export, "restore": m_restore, "verify-restore": m_verify_restore,
            "serve": m_serve, "project": m_project}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, required=True, help="the ledger's PROTOCOLO_HOME (built by bench/scale.py)")
    ap.add_argument("--only", default=",".join(COMMANDS), help=f"comma list of {', '.join(COMMANDS)} (default all)")
    ap.add_argument("--export-events", type=int, default=500_000, help="records in the exported window (default 500,000)")
    ap.add_argument("--verify-args", default="",
                    help="extra options for `protocolo verify`, e.g. '--no-views' (default: none, the whole check)")
    ap.add_argument("--requests", type=int, default=2000, help="requests served (default 2000)")
    ap.add_argument("--scratch", type=Path, default=None, help="where exports and mappings go (default: the temp dir)")
    ap.add_argument("--keep-restored", action="store_true",
                    help="keep the topic and mapping `restore` made (default: deleted at the end)")
    ap.add_argument("--restored-mapping", type=Path, default=None, metavar="FILE",
                    help="verify-restore this earlier restore's mapping (FILE.sig beside it; kept)")
    ap.add_argument("--sample-every", type=float, default=10.0, metavar="S",
                    help="seconds between samples of each command's resident set (default 10)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    args = ap.parse_args(argv)
    if args.sample_every <= 0:
        ap.error("--sample-every: must be a positive number of seconds")
    SAMPLE_EVERY[0] = args.sample_every
    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(COMMANDS))
    if unknown:
        ap.error(f"--only: unknown command(s) {', '.join(unknown)}; choose from {', '.join(COMMANDS)}")
    if args.restored_mapping is not None and "restore" in chosen:
        ap.error("--restored-mapping: names an earlier restore; leave restore out of --only")
    if "verify-restore" in chosen and args.restored_mapping is None and (
            "restore" not in chosen or chosen.index("restore") > chosen.index("verify-restore")):
        ap.error("--only: verify-restore proves the topic restore makes: list restore before it "
                 "(or give --restored-mapping)")
    os.environ["PROTOCOLO_HOME"] = str(args.dir.resolve())
    from protocolo.runtime import Runtime

    rt = Runtime.start()
    ctx = Context(args, rt)
    result: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "events": ctx.events,
                              "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "commands": {}}
    say(f"Peak memory on {ctx.events:,} events: {', '.join(chosen)}")
    start = run_timed([*cli(), "--help"])
    result["cli_start_peak_rss_mib"] = start["peak_rss_mib"]
    say(f"  reference: `protocolo --help` peaks at {start['peak_rss_mib']:,.1f} MiB")
    failed: list[str] = []
    try:
        for name in chosen:
            say(f"  {name} ...")
            figures = MEASURES[name](ctx)
            figures.pop("stdout", None)
            result["commands"][name] = figures
            if figures["exit_status"] != 0:  # a refused or failed command measured nothing
                say(f"  {name}: FAILED with exit status {figures['exit_status']} (its message is above)")
                failed.append(name)
                continue
            figures["above_cli_start_mib"] = round(figures["peak_rss_mib"] - start["peak_rss_mib"], 1)
            say(f"  {name}: peak {figures['peak_rss_mib']:,.1f} MiB ({figures['above_cli_start_mib']:+,.1f} "
                f"above the reference), {figures['wall_s']:,.0f} s wall")
    finally:
        for cleanup in ctx.cleanups:
            cleanup()
    result["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
