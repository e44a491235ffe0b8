"""The evidence core is the offline verifier: it may import only the standard library,
``cryptography``, ``rfc3161_client`` (timestamps) and itself. The import-linter contract
in pyproject.toml forbids the project's layers and heavy libraries; this test is the
positive allow-list, which import-linter cannot express."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import protocolo.evidence

PACKAGE = Path(protocolo.evidence.__file__).parent
ALLOWED_THIRD_PARTY = {"cryptography", "rfc3161_client"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_evidence_imports_only_stdlib_cryptography_and_itself() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 10
    for path in modules:
        for name in _imports(path):
            top = name.split(".")[0]
            allowed = (
                top in sys.stdlib_module_names
                or top in ALLOWED_THIRD_PARTY
                or name == "protocolo.evidence"
                or name.startswith("protocolo.evidence.")
            )
            assert allowed, f"{path.name} imports {name}"
