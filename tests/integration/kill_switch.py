"""Test instrumentation: the projector SIGKILLs its own process at a named point of a write.

A crash test must know where the kill landed, not guess it with sleeps. With
``PROTOCOLO_TEST_KILL_AT`` set to ``<point>[:<n>]``, the batch writer, on reaching that
point for its ``n``-th batch (counted from 1 in this process), first writes a JSON report
to ``PROTOCOLO_TEST_KILL_REPORT`` (where it died, what this process had committed, what
the open transaction held), then sends itself SIGKILL: no handler, no cleanup, no commit.

Points:

``before-first-commit``
    inside the first batch's transaction, rows and positions written, before COMMIT
    (nothing of this process is committed; ``n`` is always 1);
``in-transaction``
    the same place in batch ``n`` (default 2): batches 1..n-1 are committed;
``between-batches``
    right after batch ``n`` (default 1) committed, before the next transaction begins.

Unset (always, outside tests) it costs one comparison per batch.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ProjectorError

ENV_POINT = "PROTOCOLO_TEST_KILL_AT"
ENV_REPORT = "PROTOCOLO_TEST_KILL_REPORT"
DEFAULT_BATCH = {"before-first-commit": 1, "in-transaction": 2, "between-batches": 1}
POINTS = tuple(DEFAULT_BATCH)


@dataclass(frozen=True)
class KillSwitch:
    point: str | None = None
    batch: int = 0
    report: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KillSwitch:
        env = os.environ if env is None else env
        spec = env.get(ENV_POINT, "").strip()
        if not spec:
            return cls()
        point, _, n = spec.partition(":")
        if point not in DEFAULT_BATCH:
            raise ProjectorError(f"{ENV_POINT}={spec!r}: the point must be one of {', '.join(POINTS)}")
        if point == "before-first-commit" and n not in ("", "1"):
            raise ProjectorError(f"{ENV_POINT}={spec!r}: before-first-commit is batch 1 only")
        if n and not (n.isdigit() and int(n) >= 1):
            raise ProjectorError(f"{ENV_POINT}={spec!r}: the batch number must be an integer from 1")
        report = env.get(ENV_REPORT)
        return cls(point, int(n) if n else DEFAULT_BATCH[point], Path(report) if report else None)

    def reached(self, point: str, batch: int, facts: Mapping[str, Any]) -> None:
        """Die here if this is the configured point and batch (after writing the report)."""
        if point != self.point or batch != self.batch:
            return
        if self.report is not None:
            with self.report.open("w", encoding="utf-8") as f:
                json.dump({"point": point, "batch": batch, **facts}, f)
                f.flush()
                os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
