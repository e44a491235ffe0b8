"""Crash-test instrumentation: a write observer that SIGKILLs the projector's own process
at a named point of a batch write (``protocolo.consumers.write_hooks``).

A crash test must know where the kill landed, not guess it with sleeps. Run the command
line through :mod:`project_killed_at` (a test-only entry script) with ``<point>[:<n>]`` and a
report path: on reaching that point for its ``n``-th batch (counted from 1 in this process)
the batch writer's observer first writes a JSON report (where it died, what this process had
committed, what the open transaction held), then sends itself SIGKILL: no handler, no
cleanup, no commit. The shipped code has no way to do this: no setting, no variable.

Points:

``before-first-commit``
    inside the first batch's transaction, rows and positions written, before COMMIT
    (nothing of this process is committed; ``n`` is always 1);
``in-transaction``
    the same place in batch ``n`` (default 2): batches 1..n-1 are committed;
``between-batches``
    right after batch ``n`` (default 1) committed, before the next transaction begins.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocolo.consumers.write_hooks import POINTS

DEFAULT_BATCH = {"before-first-commit": 1, "in-transaction": 2, "between-batches": 1}
ENTRY_SCRIPT = Path(__file__).resolve().with_name("project_killed_at.py")
DEFAULT_FAULT_SEED = 6523  # Decreto 6.523/2008: any fixed value does; this one is memorable


class KillSpecError(ValueError):
    """A kill point that names no point or batch: a typo must not turn a kill test into one
    that never kills."""


@dataclass(frozen=True)
class KillSwitch:
    point: str
    batch: int
    report: Path

    @classmethod
    def parse(cls, spec: str, report: Path) -> KillSwitch:
        point, _, n = spec.strip().partition(":")
        if point not in DEFAULT_BATCH:
            raise KillSpecError(f"kill point {spec!r}: the point must be one of {', '.join(POINTS)}")
        if point == "before-first-commit" and n not in ("", "1"):
            raise KillSpecError(f"kill point {spec!r}: before-first-commit is batch 1 only")
        if n and not (n.isdigit() and int(n) >= 1):
            raise KillSpecError(f"kill point {spec!r}: the batch number must be an integer from 1")
        return cls(point, int(n) if n else DEFAULT_BATCH[point], report)

    def reached(self, point: str, batch: int, facts: Callable[[], Mapping[str, Any]]) -> None:
        """Die here if this is the configured point and batch (after writing the report)."""
        if point != self.point or batch != self.batch:
            return
        with self.report.open("w", encoding="utf-8") as f:
            json.dump({"point": point, "batch": batch, **facts()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)


def killed_projector_argv(spec: str, report: Path, *protocolo_args: str) -> list[str]:
    """The command line running ``protocolo <protocolo_args>`` with the switch installed."""
    return [sys.executable, str(ENTRY_SCRIPT), spec, str(report), *protocolo_args]


def fault_seed() -> int:
    """The fault tests' seed: fixed by default so a run is reproducible, ``PROTOCOLO_FAULT_SEED``
    to try another (the seed is printed and named in every failure message)."""
    value = os.environ.get("PROTOCOLO_FAULT_SEED", "").strip()
    seed = int(value) if value else DEFAULT_FAULT_SEED
    print(f"fault seed {seed} (PROTOCOLO_FAULT_SEED={seed} replays this run)")
    return seed
