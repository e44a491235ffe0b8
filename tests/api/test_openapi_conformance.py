"""The OpenAPI document: the served one is the committed docs/openapi.json, and the running
server (real Kafka and PostgreSQL behind it) conforms to it under schemathesis: no 5xx,
every documented response matches its schema.

Bounded on purpose (``MAX_EXAMPLES`` per operation) so that it stays around a minute; the
figures of a run go in the report, not in an assertion.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from conftest import RunningApi
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
MAX_EXAMPLES = 12

def test_served_openapi_is_the_committed_one(api: RunningApi) -> None:
    with api.client() as c:
        served = c.get("/openapi.json").json()
    assert served["openapi"].startswith("3.1")
    assert served == json.loads(COMMITTED.read_text()), (
        "docs/openapi.json is stale: python -m protocolo.api.openapi_document > docs/openapi.json")


#: schemathesis acts as the broadest staff role, then as a customer (their own routes).
ACTING_AS = ("compliance", "customer")
BOUNDED = settings(max_examples=MAX_EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
                   suppress_health_check=list(HealthCheck), database=None)


def test_server_conforms_to_its_openapi(api: RunningApi) -> None:
    """Every operation, as each role in ACTING_AS. Driven through Hypothesis directly:
    schemathesis' pytest plugin (from_fixture) does not run under pytest 9."""
    schema = schemathesis.openapi.from_dict(json.loads(COMMITTED.read_text()))
    calls: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len({(m, p) for p, ms in json.loads(COMMITTED.read_text())["paths"].items()
                                   for m in ms})
    for operation in operations:
        for who in ACTING_AS:
            _check(api, operation, {"Authorization": f"Bearer {api.tokens[who]}"}, calls)
    print(f"schemathesis: {len(operations)} operations x {len(ACTING_AS)} roles, "
          f"{sum(calls.values())} calls, by status {dict(sorted(calls.items()))}")


def _check(api: RunningApi, operation: Any, headers: dict[str, str], calls: Counter[int]) -> None:
    @given(case=operation.as_strategy())
    @BOUNDED
    def conforms(case: Any) -> None:
        response = case.call_and_validate(base_url=api.base_url, headers=headers,
                                          checks=[not_a_server_error, response_schema_conformance])
        calls[response.status_code] += 1

    conforms()
