"""The package as Python sees it, laid out as folders, for tools that read the source.

The design's layers live in top-level folders (``schemas/``, ``producers/`` ...) that
setuptools maps onto the ``protocolo`` namespace (``package-dir`` in ``pyproject.toml``).
Static tools (mypy, import-linter's grimp) walk folders instead of importing, so they see
``protocolo/`` without its sub-packages. :func:`link_tree` builds, in a scratch folder, a
``protocolo/`` tree of symbolic links that follows the same mapping, read from
``pyproject.toml`` so it can never drift from the install.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def package_dirs(repo: Path = REPO) -> dict[str, Path]:
    """Import name -> source folder, for every package the project installs."""
    setuptools = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = setuptools["package-dir"]
    result = {}
    for package in setuptools["packages"]:
        parent, _, leaf = package.rpartition(".")
        if package in mapping:
            result[package] = repo / mapping[package]
        else:  # not mapped itself: a folder inside its parent's
            result[package] = result[parent] / leaf
    return result


def link_tree(target: Path, repo: Path = REPO) -> Path:
    """Lay ``protocolo/`` out under ``target`` (one link per module file); return ``target``."""
    for package, folder in package_dirs(repo).items():
        destination = target.joinpath(*package.split("."))
        destination.mkdir(parents=True, exist_ok=True)
        for source in folder.iterdir():
            if source.is_file() and source.suffix in (".py", ".pyi", ".typed"):
                link = destination / source.name
                if not link.exists():
                    os.symlink(source, link)
    return target
