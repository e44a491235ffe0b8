"""The crash-test instrumentation reads its setting strictly (a typo must not silently
turn a kill test into a test that never kills)."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocolo.consumers.errors import ProjectorError
from protocolo.consumers.kill_points import ENV_POINT, ENV_REPORT, KillSwitch


def test_unset_is_off() -> None:
    assert KillSwitch.from_env({}) == KillSwitch()
    KillSwitch().reached("in-transaction", 0, {})  # returns: nothing configured


@pytest.mark.parametrize(("spec", "point", "batch"), [
    ("before-first-commit", "before-first-commit", 1),
    ("in-transaction", "in-transaction", 2),
    ("in-transaction:7", "in-transaction", 7),
    ("between-batches", "between-batches", 1),
    ("between-batches:3", "between-batches", 3),
])
def test_points_and_batches(spec: str, point: str, batch: int, tmp_path: Path) -> None:
    switch = KillSwitch.from_env({ENV_POINT: spec, ENV_REPORT: str(tmp_path / "r.json")})
    assert (switch.point, switch.batch, switch.report) == (point, batch, tmp_path / "r.json")
    switch.reached(point, batch + 1, {})  # another batch: no kill
    switch.reached("elsewhere", batch, {})  # another point: no kill


@pytest.mark.parametrize(("spec", "says"), [
    ("in-transation", "must be one of before-first-commit, in-transaction, between-batches"),
    ("in-transaction:0", "integer from 1"),
    ("in-transaction:x", "integer from 1"),
    ("before-first-commit:2", "batch 1 only"),
])
def test_a_bad_setting_is_refused_by_name(spec: str, says: str) -> None:
    with pytest.raises(ProjectorError, match=says):
        KillSwitch.from_env({ENV_POINT: spec})
