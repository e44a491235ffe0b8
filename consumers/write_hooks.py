"""Named points of a batch write that an observer may watch.

The projector's batch writer reports reaching ``before-first-commit`` (inside batch 1's
transaction, rows and positions written, before COMMIT), ``in-transaction`` (the same
place in any batch) and ``between-batches`` (right after a batch committed) to the
observer installed here, with the facts of the moment (what it committed, what the open
transaction holds). Crash tests install one that SIGKILLs the process at a chosen point
(``tests/integration/kill_switch.py``, through a test-only entry script), so the kill lands
at a known place instead of being guessed with sleeps. Nothing in the shipped code installs
an observer, and no setting or environment variable can: uninstalled, it costs one
``is None`` check per point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

__all__ = ["POINTS", "WriteObserver", "install", "installed"]

POINTS = ("before-first-commit", "in-transaction", "between-batches")


class WriteObserver(Protocol):
    def reached(self, point: str, batch: int, facts: Callable[[], Mapping[str, Any]]) -> None:
        """``point`` of batch number ``batch`` (counted from 1 in this process); ``facts()``
        describes the writer's state there."""


_observer: WriteObserver | None = None


def install(observer: WriteObserver | None) -> None:
    """Watch the batch writers made from now on (``None``: stop watching)."""
    global _observer
    _observer = observer


def installed() -> WriteObserver | None:
    return _observer
