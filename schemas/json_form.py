"""The JSON form of a decoded record: what ``journal.payload`` holds, and what readers and
``protocolo verify`` recompute from the record's bytes to check it.

One definition, shared by the projector (which writes the column) and the audit (which
decodes ``record_value`` again and compares), so that the two can only differ where the
stored copy was changed.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import orjson


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    raise TypeError(f"cannot represent {type(value).__name__} in JSON")


def to_json(value: Any, *, judged_storable: bool = False) -> str:
    """JSON text of a decoded record: timestamps ISO 8601, UUIDs as text, bytes as hex.
    NaN and infinities are refused (ValueError): jsonb has no spelling for them.

    ``judged_storable``: the caller has already found ``value`` storable
    (:func:`protocolo.schemas.storable.unstorable_reason`, which refuses non-finite numbers,
    NUL and lone surrogates), so orjson may write it: it serialises datetimes and UUIDs in C
    with the same ISO 8601 and UUID spellings (the projector's hot path; json.dumps calls
    the ``default`` hook back in Python for each of them). orjson would write NaN as null,
    hence only for judged values."""
    if judged_storable:
        return orjson.dumps(value, default=_json_default).decode("utf-8")
    return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
