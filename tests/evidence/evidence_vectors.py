"""Where the public evidence vectors live, and how to read them.

The folder is ``tests/evidence/vectors`` in this repository (override with
``PROTOCOLO_EVIDENCE_VECTORS``); its README names each source, commit and licence. A
missing folder fails the run (raised at collection), never skips.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS = Path(__file__).resolve().parent / "vectors"


def vectors_dir() -> Path:
    override = os.environ.get("PROTOCOLO_EVIDENCE_VECTORS")
    folder = Path(override) if override else VECTORS
    if not (folder / "README.md").is_file():
        raise RuntimeError(
            f"evidence vectors not found at {folder}: set PROTOCOLO_EVIDENCE_VECTORS to the "
            "evidence-vectors folder (these tests never skip)"
        )
    return folder


def load(relative: str) -> Any:
    return json.loads((vectors_dir() / relative).read_text(encoding="utf-8"))


def files(relative_dir: str) -> list[Path]:
    found = sorted((vectors_dir() / relative_dir).rglob("*.json"))
    if not found:
        raise RuntimeError(f"no vectors under {vectors_dir() / relative_dir}")
    return found


def b64(text: str) -> bytes:
    return base64.b64decode(text)
