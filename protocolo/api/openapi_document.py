"""The OpenAPI document as committed in docs/openapi.json.

Regenerate after changing a route: ``python -m protocolo.api.openapi_document > docs/openapi.json``
(tests/api/test_openapi.py fails while the two differ).
"""

from __future__ import annotations

import json
import sys

from .app import create_app


def document() -> str:
    return json.dumps(create_app().openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(document())
