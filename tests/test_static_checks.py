"""The suite runs the static checks through ``tools/check``, the one command CONTRIBUTING and
CI document: ruff, the import-linter layering contracts, strict mypy (see that script for why
mypy and import-linter run over a link tree)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "tools" / "check"


def _check(*names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), *names], cwd=REPO, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.parametrize("name", ["imports", "types", "ruff"])
def test_static_check_is_clean(name: str) -> None:
    result = _check(name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_names_an_unknown_check() -> None:
    result = _check("typo")
    assert result.returncode == 2
    assert "unknown check typo" in result.stderr


def test_contributing_and_ci_use_the_same_command() -> None:
    assert "tools/check" in (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
    assert "tools/check" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
