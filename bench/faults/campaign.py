"""The fault campaign: break the projector, the broker, PostgreSQL and a broker of a
three-node cluster while the ledger works, and count what was lost or duplicated.

    .venv/bin/python bench/faults/campaign.py [--kills 50] [--broker-kills 3] [--pg-stops 3]
        [--cluster-kills 2] [--seed N] [--only projector,broker,postgres,cluster] [--json FILE]

Not part of CI (minutes, and a three-broker cluster). Everything runs on 127.0.0.1 under a
scratch home, from the dev stack's code and jars (see stack.py); nothing of the user's
``PROTOCOLO_HOME`` is touched. Phases:

1. **projector**: ``protocolo project`` SIGKILLed ``--kills`` times, each time after new
   events were published (some sent twice): at instrumented points
   (tests/integration/kill_switch.py: before the first commit, inside the transaction of batch n,
   between batches) or during a rebalance (a second projector joins the group while events
   are published; the first is killed at a random moment and the second takes over).
   After each kill a projector resumes until caught up, and the database must equal a
   clean run's (views, journal, quarantine, offsets, Merkle trees).
2. **broker**: the single Apache Kafka node SIGKILLed during publishing and started again.
   Every receipt returned before the kill must be on the topic at its offset afterwards;
   what was not confirmed is sent again (same event ids), then projected: each event id
   applied once, the views equal to those of a clean topic without the log's duplicates.
3. **postgres**: embedded PostgreSQL stopped with ``pg_ctl stop -m immediate`` during
   projection, started again; the projector must exit cleanly (or wait), and a restarted
   one must catch up with nothing lost (database equal to a clean run's).
4. **cluster**: three KRaft nodes (broker+controller each), topic replication 3,
   ``min.insync.replicas=2``; one node SIGKILLed while events are published and projected.
   Nothing lost, nothing duplicated, database equal to a clean run's.

Prints what it did and found, and a table: fault, count, lost, duplicated. Exit status 1
if anything was lost or duplicated or a check failed.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path[:0] = [str(HERE), str(REPO / "tests"), str(REPO / "tests" / "integration")]

from ledger import Ledger, create_database, pick  # noqa: E402
from stack import Cluster, SingleNode  # noqa: E402

from protocolo.core.topic_settings import admin_client, judge, read_topic_settings  # noqa: E402
from protocolo.devstack import apache_kafka  # noqa: E402

PHASES = ("projector", "broker", "postgres", "cluster")
KILL_KINDS = ("before-first-commit", "in-transaction", "between-batches", "rebalance")
BATCH = "25"


def say(message: str) -> None:
    print(message, flush=True)


@dataclass
class Row:
    fault: str
    count: int = 0
    lost: int = 0
    duplicated: int = 0
    log_duplicates_by_topic: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, topic: str, found: dict[str, Any]) -> None:
        self.lost += found["lost_receipts"] + found["missing_events"]
        self.duplicated += found["applied_twice"]
        self.log_duplicates_by_topic[topic] = found["log_duplicates"]  # the latest count per ledger

    @property
    def log_duplicates(self) -> int:
        return sum(self.log_duplicates_by_topic.values())


class Campaign:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.work = Path(tempfile.mkdtemp(prefix="protocolo-faults-"))
        self.home = self.work / "home"
        self.rows: dict[str, Row] = {}
        self.node: SingleNode | None = None

    def row(self, key: str, fault: str) -> Row:
        return self.rows.setdefault(key, Row(fault))

    # ------------------------------------------------------------------ phase 1: projector

    def projector_kills(self) -> None:
        assert self.node is not None
        ledger = Ledger(self.home, self.work, self.node.kafka_bootstrap, self.node.admin_url, "projector")
        ref_url = create_database(self.node.admin_url, "projector_ref")  # caught up after each round
        kinds = [KILL_KINDS[i % len(KILL_KINDS)] for i in range(self.args.kills)]
        self.rng.shuffle(kinds)
        log_dups = 0
        say(f"[projector] {self.args.kills} SIGKILLs on topic {ledger.topic}, batch size {BATCH}")
        for n, kind in enumerate(kinds, 1):
            row = self.row(f"projector-{kind}", f"projector SIGKILL: {kind}")
            row.count += 1
            prepared = ledger.events(contacts=25, seed=self.rng.randrange(2**31))
            if kind == "rebalance":
                what = self._rebalance_kill(ledger, prepared)
            else:
                ledger.publish(prepared)
                ledger.resend(self.rng.sample(prepared, 3))  # a producer's retries: duplicate event ids
                what = self._instrumented_kill(ledger, kind, n)
            resume = ledger.projection("--batch-size", BATCH, "--until-caught-up")
            rc = resume.wait(300)
            if rc != 0:
                row.problems.append(f"kill {n}: the resumed projector exited {rc}: {resume.output()[-500:]}")
            ledger.catch_up(ref_url, f"{ledger.settings.group_id}-ref")
            difference = ledger.same_as(ref_url)
            found = ledger.lost_and_duplicated()
            # one ledger for the whole phase: each kill is charged with the duplicates it added
            row.add(f"{ledger.topic}#{n}", {**found, "log_duplicates": found["log_duplicates"] - log_dups})
            log_dups = found["log_duplicates"]
            if difference:
                row.problems.append(f"kill {n} ({what}): differs from the clean run: {difference}")
            say(f"  kill {n:2d}/{len(kinds)}: {what}; resumed: exit {rc}; "
                f"{'identical to the clean run' if not difference else 'DIFFERS'}; "
                f"lost {found['lost_receipts'] + found['missing_events']}, applied twice "
                f"{found['applied_twice']}, log duplicates marked {found['log_duplicates']}")
        ledger.close()

    def _instrumented_kill(self, ledger: Ledger, kind: str, n: int) -> str:
        report_path = ledger.work / f"kill-{n}.json"
        batch = 1 if kind == "before-first-commit" else pick(self.rng, 1 if kind == "between-batches" else 2, 5)
        point = kind if kind == "before-first-commit" else f"{kind}:{batch}"
        before = ledger.progress()
        proc = ledger.projection("--batch-size", BATCH, "--until-caught-up", kill_at=(point, report_path))
        rc = proc.wait(300)
        row = self.row(f"projector-{kind}", "")
        if rc != -signal.SIGKILL or not report_path.exists():
            row.problems.append(f"kill {n} at {point}: not killed there (exit {rc}): {proc.output()[-500:]}")
            return f"{point}: NOT REACHED (exit {rc})"
        report = json.loads(report_path.read_text())
        after = ledger.progress()
        if after != before + report["committed_records"]:
            row.problems.append(f"kill {n} at {point}: PostgreSQL holds {after - before} new records, the "
                                f"process had committed {report['committed_records']}")
        pending = report.get("pending_records", 0)
        return (f"SIGKILL at {point} (committed {report['committed_records']} records first, "
                f"{pending} in the open transaction)")

    def _rebalance_kill(self, ledger: Ledger, prepared: list[Any]) -> str:
        """P1 projects; P2 joins the group while events are being published; P1 is killed
        at a random moment of P2's join; P2 (or, failing that, the resume run) finishes."""
        first, rest = prepared[: len(prepared) // 3], prepared[len(prepared) // 3:]
        ledger.publish(first)
        before = ledger.progress()
        p1 = ledger.projection("--batch-size", "10")
        deadline = time.monotonic() + 120
        while ledger.progress() <= before and p1.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        p2 = ledger.projection("--batch-size", "10")
        publisher = threading.Thread(target=lambda: ledger.publish(rest, chunk=20), daemon=True)
        publisher.start()
        started = time.monotonic()
        # Half the time P1 dies the moment the coordinator is rebalancing for P2's join
        # (state seen with DescribeGroups), half at a random moment of P2's start and join.
        at_rebalance = self.rng.random() < 0.5
        group = GroupWatch(ledger.settings.kafka_bootstrap or "", ledger.settings.group_id)
        try:
            if at_rebalance:
                state = group.wait_for(REBALANCING, timeout=60, alive=p1.running)
            else:
                time.sleep(self.rng.uniform(0.5, 4.0))  # P2's process start + join take ~1-4 s here
                state = group.state()
            p1_alive = p1.running()
            if p1_alive:
                p1.proc.kill()
        finally:
            group.close()
        delay = time.monotonic() - started
        p1.wait(30)
        publisher.join(120)
        ledger.resend(self.rng.sample(prepared, 3))
        target = ledger.log_end()
        deadline = time.monotonic() + 120
        while ledger.progress() < target and p2.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        took_over = ledger.progress() >= target
        p2.proc.send_signal(signal.SIGTERM)
        rc2 = p2.wait(60)
        row = self.row("projector-rebalance", "")
        if not p1_alive:
            row.problems.append(f"P1 had exited before the kill: {p1.output()[-500:]}")
        if rc2 != 0:
            row.problems.append(f"P2 exited {rc2} after SIGTERM: {p2.output()[-500:]}")
        row.notes.append(f"rebalance kill: group {state} ({'waited for a rebalance' if at_rebalance else 'random moment'})")
        return (f"P1 SIGKILLed {delay:.1f} s after P2 started, group {state} (publishing under way); P2 "
                f"{'took over and caught up' if took_over else 'did NOT catch up alone'}, exit {rc2}")

    # ------------------------------------------------------------------ phase 2: broker

    def broker_kills(self) -> None:
        assert self.node is not None
        row = self.row("broker", "broker SIGKILL + restart during publishing (1 node)")
        for n in range(1, self.args.broker_kills + 1):
            ledger = Ledger(self.home, self.work, self.node.kafka_bootstrap, self.node.admin_url, f"broker{n}")
            prepared = ledger.events(contacts=250, seed=self.rng.randrange(2**31))
            unconfirmed: list[Any] = []
            done = threading.Event()

            def publish(ledger: Ledger = ledger, prepared: list[Any] = prepared,
                        unconfirmed: list[Any] = unconfirmed, done: threading.Event = done) -> None:
                try:
                    unconfirmed.extend(ledger.publish(prepared, chunk=10))
                finally:
                    done.set()

            thread = threading.Thread(target=publish, daemon=True)
            thread.start()
            fraction = self.rng.uniform(0.1, 0.7)
            wait_for_receipts(ledger, int(len(prepared) * fraction), done)
            before_kill = list(ledger.receipts)
            pid = self.node.kill_broker()
            killed_at = time.monotonic()
            self.node.start_broker()
            down_s = time.monotonic() - killed_at
            thread.join(300)
            retried = ledger.publish_until_confirmed(unconfirmed, chunk=100) if unconfirmed else 0
            row.count += 1
            proc = ledger.projection("--batch-size", "500", "--until-caught-up")
            rc = proc.wait(300)
            if rc != 0:
                row.problems.append(f"broker kill {n}: projector exited {rc}: {proc.output()[-500:]}")
            kept = ledger.lost_and_duplicated(before_kill)
            found = ledger.lost_and_duplicated()
            row.add(ledger.topic, found)
            row.lost += kept["lost_receipts"]
            views = ledger.clean_topic_views(self.home)
            if views:
                row.problems.append(f"broker kill {n}: views differ from a clean topic's: {views}")
            row.notes.append(f"kill {n}: {found['log_duplicates']} duplicate records on the log "
                             f"(marked is_duplicate), {ledger.failed_sends} sends unconfirmed, {retried} re-sent")
            say(f"[broker] kill {n}: SIGKILL broker pid {pid} while publishing "
                f"{len(prepared)} events, {len(before_kill)} receipts before the kill, back in "
                f"{down_s:.0f} s; {ledger.failed_sends} sends unconfirmed, {retried} re-sent; projector exit {rc}; "
                f"receipts before the kill missing: {kept['lost_receipts']}; events missing "
                f"{found['missing_events']}, applied twice {found['applied_twice']}, log duplicates "
                f"{found['log_duplicates']}; views {'= clean topic' if not views else 'DIFFER'}")
            ledger.close()

    # ------------------------------------------------------------------ phase 3: postgres

    def postgres_stops(self) -> None:
        assert self.node is not None
        row = self.row("postgres", "PostgreSQL stop -m immediate + start during projection")
        for n in range(1, self.args.pg_stops + 1):
            ledger = Ledger(self.home, self.work, self.node.kafka_bootstrap, self.node.admin_url, f"pg{n}")
            ledger.publish(ledger.events(contacts=300, seed=self.rng.randrange(2**31)))
            total = ledger.log_end()
            proc = ledger.projection("--batch-size", "20")
            at = int(total * self.rng.uniform(0.1, 0.6))
            deadline = time.monotonic() + 180
            while ledger.progress() < at and proc.running() and time.monotonic() < deadline:
                time.sleep(0.02)
            stopped_at = ledger.progress()
            self.node.stop_postgres_immediately()
            try:
                rc: int | None = proc.wait(60)
            except RuntimeError:
                rc = None
            out = proc.output()
            said = [line for line in out.splitlines() if line.startswith("protocolo:")]
            last = said[-1] if said else (out.strip().splitlines() or [""])[-1]
            # a clean exit: a non-zero status and a message saying why, no traceback
            clean_exit = rc is not None and rc != 0 and "Traceback" not in out and bool(said)
            self.node.start_postgres()
            row.count += 1
            if not clean_exit:
                row.problems.append(f"stop {n}: projector did not exit cleanly (exit {rc}): {out[-800:]}")
            resume = ledger.projection("--batch-size", "500", "--until-caught-up")
            rc2 = resume.wait(300)
            if rc2 != 0:
                row.problems.append(f"stop {n}: resumed projector exited {rc2}: {resume.output()[-500:]}")
            ref = ledger.reference(f"pg{n}_ref")
            difference = ledger.same_as(ref)
            found = ledger.lost_and_duplicated()
            row.add(ledger.topic, found)
            if difference:
                row.problems.append(f"stop {n}: differs from the clean run: {difference}")
            say(f"[postgres] stop {n}: pg_ctl stop -m immediate at {stopped_at}/{total} records projected; "
                f"projector exit {rc}: {last[:160]!r}; restarted projector exit {rc2}; "
                f"{'identical to the clean run' if not difference else 'DIFFERS'}; lost "
                f"{found['lost_receipts'] + found['missing_events']}, applied twice {found['applied_twice']}")
            ledger.close()

    # ------------------------------------------------------------------ phase 4: cluster

    def cluster_kills(self) -> None:
        assert self.node is not None
        # The single node's broker is not needed any more; its PostgreSQL is.
        running = self.node.broker_pid()
        say(f"[cluster] {apache_kafka.stop(running, self.node.paths)}")
        row = self.row("cluster", "1 of 3 brokers SIGKILLed during publishing + projection (RF 3, min ISR 2)")
        cluster = Cluster(self.work / "cluster", say)
        try:
            for n in range(1, self.args.cluster_kills + 1):
                self._cluster_round(cluster, row, n)
        finally:
            cluster.stop()

    def _cluster_round(self, cluster: Cluster, row: Row, n: int) -> None:
        assert self.node is not None
        ledger = Ledger(self.home, self.work, cluster.bootstrap, self.node.admin_url, f"cluster{n}")
        admin = admin_client(cluster.bootstrap)
        try:
            settings = read_topic_settings(admin, ledger.topic)
            (meta,) = admin.describe_topics([ledger.topic])
            from kafka.admin import ConfigResource, ConfigResourceType

            isr = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, ledger.topic)],
                                         config_filter="all")["topic"][ledger.topic]["min.insync.replicas"]["value"]
        finally:
            admin.close()
        replicas = sorted({len(p["replica_nodes"]) for p in meta["partitions"]})
        if replicas != [3] or isr != "2" or judge(settings):
            row.problems.append(f"cluster topic: replicas {replicas}, min.insync.replicas {isr}, {settings}")
        say(f"[cluster] round {n}: topic {ledger.topic}: replicas {replicas}, min.insync.replicas={isr}, "
            f"{settings}")
        prepared = ledger.events(contacts=300, seed=self.rng.randrange(2**31))
        unconfirmed: list[Any] = []
        proc = ledger.projection("--batch-size", "50", PROTOCOLO_DEBUG="1")  # a failure shows its traceback
        # The kill must land during projection as well: publish a first part, wait until the
        # projector has committed some of it, then publish the rest and kill a node meanwhile.
        head, prepared_rest = prepared[:100], prepared[100:]
        unconfirmed += ledger.publish(head, chunk=10)
        deadline = time.monotonic() + 120
        while ledger.progress() <= 0 and proc.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        done = threading.Event()

        def publish() -> None:
            try:
                unconfirmed.extend(ledger.publish(prepared_rest, chunk=10))
            finally:
                done.set()

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        wait_for_receipts(ledger, int(len(prepared) * self.rng.uniform(0.15, 0.7)), done)
        victim = self.rng.randrange(Cluster.SIZE)
        before_kill = list(ledger.receipts)
        pid = cluster.kill(victim)
        say(f"  SIGKILL node {victim + 1} (pid {pid}) while publishing {len(prepared)} events, "
            f"{len(before_kill)} receipts so far, {ledger.progress()} records projected")
        thread.join(300)
        retried = ledger.publish_until_confirmed(unconfirmed, chunk=100) if unconfirmed else 0
        target = ledger.log_end()
        deadline = time.monotonic() + 300
        while ledger.progress() < target and proc.running() and time.monotonic() < deadline:
            time.sleep(0.2)
        caught_up = ledger.progress() >= target
        proc.proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        row.count += 1
        if not caught_up or rc != 0:
            row.problems.append(f"round {n}: projector caught up {caught_up}, exit {rc}: {proc.output()[-3000:]}")
            # As a supervisor would: start it again, so that what was lost (if anything) is
            # told apart from what a dead projector had not read yet.
            again = ledger.projection("--batch-size", "500", "--until-caught-up")
            rc_again = again.wait(300)
            say(f"  the projector had stopped (exit {rc}); restarted, it exits {rc_again}")
            if rc_again != 0:
                row.problems.append(f"round {n}: restarted projector exited {rc_again}: {again.output()[-1500:]}")
        kept = ledger.lost_and_duplicated(before_kill)
        found = ledger.lost_and_duplicated()
        row.add(ledger.topic, found)
        row.lost += kept["lost_receipts"]
        ref = ledger.reference(f"cluster{n}_ref")
        difference = ledger.same_as(ref)
        views = ledger.clean_topic_views(self.home)
        if difference:
            row.problems.append(f"round {n}: differs from the clean run: {difference}")
        if views:
            row.problems.append(f"round {n}: views differ from a clean topic's: {views}")
        row.notes.append(f"round {n}: {found['log_duplicates']} duplicate records on the log, "
                         f"{ledger.failed_sends} sends unconfirmed, {retried} re-sent")
        say(f"  published {len(prepared)} events ({ledger.failed_sends} unconfirmed, {retried} re-sent) "
            f"with 2 of 3 brokers; projector caught up {caught_up}, exit {rc}; receipts before the kill "
            f"missing {kept['lost_receipts']}; events missing {found['missing_events']}, applied twice "
            f"{found['applied_twice']}, log duplicates {found['log_duplicates']}; "
            f"{'identical to the clean run' if not difference else 'DIFFERS from the clean run'}; views "
            f"{'= clean topic' if not views else 'DIFFER'}")
        cluster.restart(victim)
        say(f"  node {victim + 1} restarted")
        ledger.close()

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        phases = self.args.only.split(",") if self.args.only else list(PHASES)
        started = time.monotonic()
        say(f"fault campaign, seed {self.args.seed}, work dir {self.work}, phases {phases}")
        self.node = SingleNode(self.home, lambda m: say(f"  {m}"))
        steps: dict[str, Callable[[], None]] = {
            "projector": self.projector_kills, "broker": self.broker_kills,
            "postgres": self.postgres_stops, "cluster": self.cluster_kills,
        }
        try:
            for phase in phases:
                t0 = time.monotonic()
                try:
                    steps[phase]()
                except Exception as exc:  # noqa: BLE001 - a phase that breaks is a finding, not the end
                    self.row(f"{phase}-error", f"{phase}: campaign error").problems.append(
                        f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}")
                    say(f"[{phase}] ERROR {type(exc).__name__}: {exc}")
                say(f"[{phase}] {time.monotonic() - t0:.0f} s")
        finally:
            self.node.stop()
        return self.report(time.monotonic() - started)

    def report(self, elapsed: float) -> int:
        say("")
        say(f"| fault | count | lost | duplicated | log duplicates (marked) |   ({elapsed:.0f} s, seed {self.args.seed})")
        say("|---|---:|---:|---:|---:|")
        for row in self.rows.values():
            say(f"| {row.fault} | {row.count} | {row.lost} | {row.duplicated} | {row.log_duplicates} |")
        bad = [(r.fault, p) for r in self.rows.values() for p in r.problems]
        for fault, problem in bad:
            say(f"PROBLEM [{fault}]: {problem}")
        for row in self.rows.values():
            for note in row.notes:
                say(f"note [{row.fault}]: {note}")
        if self.args.json:
            Path(self.args.json).write_text(json.dumps(
                {"seed": self.args.seed, "elapsed_s": round(elapsed),
                 "rows": [r.__dict__ for r in self.rows.values()]}, indent=2))
        failed = bad or any(r.lost or r.duplicated for r in self.rows.values())
        return 1 if failed else 0


REBALANCING = ("PreparingRebalance", "CompletingRebalance")


class GroupWatch:
    """The consumer group's state as the coordinator reports it (DescribeGroups)."""

    def __init__(self, bootstrap: str, group_id: str) -> None:
        self.group_id = group_id
        self.admin = admin_client(bootstrap)

    def state(self) -> str:
        try:
            found = self.admin.describe_groups([self.group_id])[self.group_id]
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            return f"unknown ({type(exc).__name__})"
        members = len(found.get("members") or [])
        return f"{found.get('group_state')} with {members} member{'s' if members != 1 else ''}"

    def wait_for(self, states: tuple[str, ...], timeout: float, alive: Callable[[], bool]) -> str:
        """Poll until the group is in one of ``states``; return the last state seen."""
        deadline = time.monotonic() + timeout
        seen = self.state()
        while time.monotonic() < deadline and alive() and seen.split(" ")[0] not in states:
            time.sleep(0.01)
            seen = self.state()
        return seen

    def close(self) -> None:
        self.admin.close()


def wait_for_receipts(ledger: Ledger, count: int, done: threading.Event, timeout: float = 300) -> None:
    """Until the publisher has ``count`` receipts (or has finished)."""
    deadline = time.monotonic() + timeout
    while len(ledger.receipts) < count and not done.is_set() and time.monotonic() < deadline:
        time.sleep(0.005)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50, help="projector SIGKILLs (default 50)")
    parser.add_argument("--broker-kills", type=int, default=3)
    parser.add_argument("--pg-stops", type=int, default=3)
    parser.add_argument("--cluster-kills", type=int, default=2)
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(2**31))
    parser.add_argument("--only", help=f"comma-separated phases of {', '.join(PHASES)}")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    return Campaign(args).run()


if __name__ == "__main__":
    sys.exit(main())
