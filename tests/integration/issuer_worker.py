"""One protocol-number issuing worker, run as a thread by test_issuer_concurrency.py and as
a process (``python issuer_worker.py URL NAME FOLDER COUNT BLOCK WORKERS TIMEOUT``).

It issues its first number, announces it (a file ``started-NAME`` in FOLDER), waits until
WORKERS workers have announced theirs, then issues the rest: so every worker is issuing
while every other one is, and the test can check that their intervals intersect.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path


def work(issue: Callable[[], str], name: str, folder: str, count: int, workers: int,
         timeout_s: float) -> list[str]:
    numbers = [issue()]
    Path(folder, f"started-{name}").touch()
    deadline = time.monotonic() + timeout_s
    while len(list(Path(folder).glob("started-*"))) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: the other workers never started issuing")
        time.sleep(0.002)
    numbers += [issue() for _ in range(count - 1)]
    return numbers


def main(argv: list[str]) -> None:
    from protocolo.producers.protocol_issuer import ProtocolIssuer

    url, name, folder, count, block, workers, timeout_s = argv
    with ProtocolIssuer(url, block_size=int(block)) as issuer:
        numbers = work(issuer.issue, name, folder, int(count), int(workers), float(timeout_s))
    print("\n".join(numbers), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
