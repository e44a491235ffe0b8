"""The suite runs the static checks: types (mypy, strict), layering (import-linter), ruff.

mypy and import-linter read folders, and the layers' folders are mapped onto the
``protocolo`` namespace by ``package-dir``; both run over a link tree that follows that
mapping (:mod:`source_tree`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import source_tree
except ImportError:  # tests/ turned into a package
    from tests import source_tree

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield source_tree.link_tree(tmp_path_factory.mktemp("source"))


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_layers_import_only_what_the_architecture_allows(tree: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(tree))
    # lint-imports reads [tool.importlinter] from the repo's pyproject.toml
    result = _run([str(BIN / "lint-imports"), "--config", str(source_tree.REPO / "pyproject.toml"),
                   "--no-cache"], cwd=tree, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean(tree: Path) -> None:
    result = _run([str(BIN / "mypy"), "--config-file", str(source_tree.REPO / "pyproject.toml"),
                   "--no-incremental", "-p", "protocolo"], cwd=tree)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(BIN)) or "ruff"
    result = _run([ruff, "check", "."], cwd=source_tree.REPO)
    assert result.returncode == 0, result.stdout + result.stderr
