"""Protocol numbers stay unique when threads and processes issue from one database at once.

Small blocks force many reservations, so the reservers really contend for the sequence
row; the processes start on a signal so that they run while the threads do.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from helpers_flow import start_runtime

from protocolo.core.protocol_number import normalise_protocol_number
from protocolo.producers.protocol_issuer import ProtocolIssuer

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
PER_WORKER = 150
BLOCK = 4

CHILD = textwrap.dedent("""
    import os, sys, time
    from protocolo.producers.protocol_issuer import ProtocolIssuer
    url, ready, go, count, block = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    open(ready, "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.005)
    with ProtocolIssuer(url, block_size=block) as issuer:
        print("\\n".join(issuer.issue() for _ in range(count)), flush=True)
""")


def test_threads_and_processes_never_issue_the_same_number(settings, tmp_path):
    rt = start_runtime(settings)
    url = rt.database_url
    year_before = datetime.now(SAO_PAULO).year
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(2)]
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, url, str(r), str(go), str(PER_WORKER), str(BLOCK)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for r in ready
    ]
    shared = ProtocolIssuer(url, block_size=BLOCK)  # one issuer shared by several threads
    own = [ProtocolIssuer(url, block_size=BLOCK) for _ in range(2)]  # one issuer per thread
    issuers = [shared, shared, shared, *own]
    issued: list[list[str]] = [[] for _ in issuers]
    errors: list[BaseException] = []
    start = threading.Barrier(len(issuers) + 1)

    def work(i: int) -> None:
        try:
            start.wait()
            issued[i].extend(issuers[i].issue() for _ in range(PER_WORKER))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(issuers))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.005)
    go.touch()
    start.wait()
    for t in threads:
        t.join(60)
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        outputs.append(out.split())
    for issuer in {*issuers}:
        issuer.close()
    year_after = datetime.now(SAO_PAULO).year
    assert not errors, errors

    numbers = [n for batch in issued + outputs for n in batch]
    assert [len(b) for b in issued + outputs] == [PER_WORKER] * (len(issuers) + len(children))
    assert len(set(numbers)) == len(numbers), "a protocol number was issued twice"
    for n in numbers:
        assert normalise_protocol_number(n) == n
        assert int(n[:4]) in {year_before, year_after}
    # Per issuer the sequence only goes up; a new issuer starts past everything issued.
    for batch in [*issued[3:], *outputs]:
        sequences = [int(n[4:14]) for n in batch]
        assert sequences == sorted(sequences)
    with ProtocolIssuer(url, block_size=BLOCK) as later:
        assert int(later.issue()[4:14]) > max(int(n[4:14]) for n in numbers)
