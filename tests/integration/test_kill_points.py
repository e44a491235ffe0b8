"""The crash-test kill switch kills exactly where it is told, and only there; the shipped
code cannot be made to kill itself.

The switch runs in a child process (a SIGKILL in pytest's own process would end the run),
which walks the write points in the batch writer's order and prints each before reaching
it: the child must die by SIGKILL, right after printing the named point, with a report
that says where. Where the kill lands in a real projector, checked against PostgreSQL, is
``test_fault_sigkill.py``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from kill_switch import DEFAULT_FAULT_SEED, KillSpecError, KillSwitch, fault_seed

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

WALK = """
import sys
sys.path.insert(0, {here!r})
from pathlib import Path
from kill_switch import KillSwitch
from protocolo.consumers import write_hooks
write_hooks.install(KillSwitch.parse({spec!r}, Path({report!r})))
observer = write_hooks.installed()
facts = lambda: {{"committed_records": 7}}
for batch in range(1, 6):
    points = (["before-first-commit"] if batch == 1 else []) + ["in-transaction", "between-batches"]
    for point in points:
        print(point, batch, flush=True)
        observer.reached(point, batch, facts)
print("walked", flush=True)
"""


def _walk(spec: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    report = tmp_path / "report.json"
    code = WALK.format(here=str(HERE), spec=spec, report=str(report))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return done, report


@pytest.mark.parametrize(("spec", "point", "batch"), [
    ("before-first-commit", "before-first-commit", 1),
    ("in-transaction", "in-transaction", 2),
    ("in-transaction:4", "in-transaction", 4),
    ("between-batches", "between-batches", 1),
    ("between-batches:3", "between-batches", 3),
])
def test_killed_by_sigkill_exactly_at_the_named_point(spec: str, point: str, batch: int, tmp_path: Path) -> None:
    done, report = _walk(spec, tmp_path)
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stdout, done.stderr)
    assert done.stdout.splitlines()[-1] == f"{point} {batch}", done.stdout
    assert json.loads(report.read_text()) == {"point": point, "batch": batch, "committed_records": 7}


def test_a_point_never_reached_does_not_kill(tmp_path: Path) -> None:
    done, report = _walk("in-transaction:9", tmp_path)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "walked", done.stderr
    assert not report.exists()


@pytest.mark.parametrize(("spec", "says"), [
    ("in-transation", "must be one of before-first-commit, in-transaction, between-batches"),
    ("in-transaction:0", "integer from 1"),
    ("in-transaction:x", "integer from 1"),
    ("before-first-commit:2", "batch 1 only"),
])
def test_a_bad_point_is_refused_by_name(spec: str, says: str, tmp_path: Path) -> None:
    with pytest.raises(KillSpecError, match=says):
        KillSwitch.parse(spec, tmp_path / "r.json")


def test_the_entry_script_refuses_a_bad_point_before_running_anything(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(HERE / "project_killed_at.py"), "in-transation",
                           str(tmp_path / "r.json"), "project"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "must be one of" in done.stderr and "Traceback" not in done.stderr


def test_no_shipped_module_can_kill_its_own_process() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {REPO / folder for folder in setuptools["package-dir"].values()}
    found = []
    for folder in folders:
        for source in folder.glob("*.py"):
            text = source.read_text(encoding="utf-8")
            if "PROTOCOLO_TEST_" in text or "os.getpid(), signal.SIGKILL" in text:
                found.append(str(source.relative_to(REPO)))
    assert found == []


def test_the_fault_seed_is_fixed_unless_overridden(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PROTOCOLO_FAULT_SEED", raising=False)
    assert fault_seed() == fault_seed() == DEFAULT_FAULT_SEED
    assert f"fault seed {DEFAULT_FAULT_SEED}" in capsys.readouterr().out
    monkeypatch.setenv("PROTOCOLO_FAULT_SEED", "42")
    assert fault_seed() == 42
