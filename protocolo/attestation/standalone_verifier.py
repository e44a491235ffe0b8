"""The bundle's ``verify.py``: the offline verifier's own modules, inlined into one file.

Nothing is rewritten: the file carries the exact source of every ``protocolo.evidence``
module the verifier needs and serves them to ``import`` from memory (a meta-path finder
placed first), then runs :func:`protocolo.evidence.bundle.main`. So the standalone script
and ``protocolo verify-evidence`` are the same code, and the script needs only Python and
``cryptography`` (plus ``rfc3161-client`` to check timestamps; without it the script says
"timestamps not checked: rfc3161-client missing").
"""

from __future__ import annotations

import importlib.util

#: The modules of ``protocolo.evidence`` the bundle verifier imports, directly or not.
MODULES = ("errors", "merkle", "proof", "note", "checkpoint", "cosignature", "keys", "policy",
           "tlog_proof", "leaf", "timestamp_errors", "timestamp_der", "tsa_trust",
           "timestamp_request", "timestamp_verify", "timestamp", "avro", "readable", "bundle_zip",
           "bundle_derived", "vindex", "bundle_index", "bundle")

#: Where the repository publishes the generated file (its SHA-256 is in README.md and
#: docs/evidence-format.md; a test checks the file is what :func:`standalone_verifier` makes).
PUBLISHED_PATH = "verifier/protocolo_verify.py"

_HEADER = '''#!/usr/bin/env python3
"""Verify a Protocolo proof-of-service bundle offline.

Generated from protocolo.evidence by protocolo/attestation/standalone_verifier.py; compare
this file's SHA-256 with the one published in Protocolo's README before trusting it.

Usage:  python3 protocolo_verify.py BUNDLE.zip --vkey '<log verifier key>' [--policy policy.txt]
                          [--tsa-root root.pem] [--protocol N] [--request ID] [--json]
Exit:   0 VALID, 1 INVALID, 2 bad arguments, 3 UNPINNED (no pinned key: never VALID).
Needs:  Python >= 3.11 and `cryptography`; `rfc3161-client` to check the RFC 3161 timestamps.
The code below is protocolo.evidence, module by module, verbatim (docs/evidence-format.md).
"""
import importlib.abc
import importlib.util
import sys

_SOURCES = {
'''

_FOOTER = '''}


class _Embedded(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves protocolo.evidence from _SOURCES, ahead of anything installed."""

    def find_spec(self, name, path=None, target=None):
        if name in ("protocolo", "protocolo.evidence"):
            return importlib.util.spec_from_loader(name, self, is_package=True)
        if name in _SOURCES:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = _SOURCES.get(module.__name__)
        if source is None:
            module.__path__ = []
            return
        exec(compile(source, "verify.py:" + module.__name__, "exec"), module.__dict__)


sys.meta_path.insert(0, _Embedded())

if __name__ == "__main__":
    from protocolo.evidence.bundle import main

    sys.exit(main(sys.argv[1:], prog="protocolo_verify.py"))
'''


def module_source(name: str) -> str:
    spec = importlib.util.find_spec(f"protocolo.evidence.{name}")
    if spec is None or spec.origin is None:
        raise RuntimeError(f"protocolo.evidence.{name} has no source file")
    with open(spec.origin, encoding="utf-8") as f:
        return f.read()


def standalone_verifier() -> bytes:
    """The text of the standalone verifier (deterministic: same modules, same bytes)."""
    parts = [_HEADER]
    for name in MODULES:
        parts.append(f"    {f'protocolo.evidence.{name}'!r}: {module_source(name)!r},\n")
    parts.append(_FOOTER)
    return "".join(parts).encode("utf-8")
