"""Protocol numbers stay unique when threads and processes issue from one database at once.

Small blocks force many reservations, so the reservers really contend for the sequence
row. That they really ran at the same time is asserted, not hoped for: every worker
(thread or process) issues its first number, says so, and waits until every other worker
has done the same before issuing the rest; the sequence row, whose lock orders all
reservations, then serves as the clock: each worker's first number must come before every
other worker's last one (their issuing intervals intersect).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from helpers_flow import start_runtime
from issuer_worker import work

from protocolo.core.protocol_number import normalise_protocol_number
from protocolo.producers.protocol_issuer import ProtocolIssuer

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
PER_WORKER = 150
BLOCK = 4
RENDEZVOUS_TIMEOUT_S = 60

WORKER_SCRIPT = str(Path(__file__).with_name("issuer_worker.py"))


def _sequence(number: str) -> int:
    return int(number[4:14])


def test_threads_and_processes_never_issue_the_same_number(settings, tmp_path):
    rt = start_runtime(settings)
    url = rt.registry_url
    year_before = datetime.now(SAO_PAULO).year
    folder = tmp_path / "rendezvous"
    folder.mkdir()
    shared = ProtocolIssuer(url, block_size=BLOCK)  # one issuer shared by several threads
    own = [ProtocolIssuer(url, block_size=BLOCK) for _ in range(2)]  # one issuer per thread
    issuers = [shared, shared, shared, *own]
    children_names = ["process-0", "process-1"]
    workers = len(issuers) + len(children_names)
    children = [
        subprocess.Popen([sys.executable, WORKER_SCRIPT, url, name, str(folder), str(PER_WORKER), str(BLOCK),
                          str(workers), str(RENDEZVOUS_TIMEOUT_S)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in children_names
    ]
    issued: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            issued[f"thread-{i}"] = work(issuers[i].issue, f"thread-{i}", str(folder), PER_WORKER,
                                         workers, RENDEZVOUS_TIMEOUT_S)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(issuers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RENDEZVOUS_TIMEOUT_S + 60)
    for name, child in zip(children_names, children, strict=True):
        out, err = child.communicate(timeout=RENDEZVOUS_TIMEOUT_S + 60)
        assert child.returncode == 0, err
        issued[name] = out.split()
    for issuer in {*issuers}:
        issuer.close()
    year_after = datetime.now(SAO_PAULO).year
    assert not errors, errors
    assert sorted(p.name for p in Path(folder).iterdir()) == sorted(f"started-{n}" for n in issued)

    numbers = [n for batch in issued.values() for n in batch]
    assert {name: len(batch) for name, batch in issued.items()} == dict.fromkeys(issued, PER_WORKER)
    assert len(set(numbers)) == len(numbers), "a protocol number was issued twice"
    for n in numbers:
        assert normalise_protocol_number(n) == n
        assert int(n[:4]) in {year_before, year_after}
    # They overlapped: every worker's first number precedes every other worker's last one.
    for a, first in issued.items():
        for b, last in issued.items():
            if a != b:
                assert _sequence(first[0]) < _sequence(last[-1]), f"{a} started after {b} had finished"
    # Per issuer of its own the sequence only goes up; a new issuer starts past everything issued.
    for name in ("thread-3", "thread-4", *children_names):
        sequences = [_sequence(n) for n in issued[name]]
        assert sequences == sorted(sequences)
    with ProtocolIssuer(url, block_size=BLOCK) as later:
        assert _sequence(later.issue()) > max(_sequence(n) for n in numbers)
