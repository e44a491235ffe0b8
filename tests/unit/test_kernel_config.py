"""Configuration the kernel refuses before anything runs, and URLs fit for messages."""

from __future__ import annotations

import base64

import pytest

from protocolo.core.config import ConfigError, Settings
from protocolo.runtime import redact_url

SECRET = "hunter2-not-for-logs"
GOOD_KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(("url", "expected"), [
    (f"postgresql://ana:{SECRET}@db.internal:5432/ledger", "postgresql://ana:***@db.internal:5432/ledger"),
    (f"postgresql://ana:{SECRET}@with@at@db:5432/ledger", "postgresql://ana:***@db:5432/ledger"),
    (f"postgresql://ana@db/ledger?sslmode=require&password={SECRET}",
     "postgresql://ana@db/ledger?sslmode=require&password=***"),
    (f"host=db port=5432 user=ana password={SECRET} dbname=ledger",
     "user=ana password=*** dbname=ledger host=db port=5432"),
    ("postgresql://postgres@/postgres?host=/tmp/pg&port=5432", "postgresql://postgres@/postgres?host=/tmp/pg&port=5432"),
    ("host=db dbname=ledger", "dbname=ledger host=db"),
])
def test_redact_url_masks_every_spelling_of_a_password(url, expected):
    assert redact_url(url) == expected
    assert SECRET not in redact_url(url)


def _env(**values: str) -> dict[str, str]:
    return {"PROTOCOLO_HOME": "/tmp/protocolo-unit", **values}


@pytest.mark.parametrize(("variable", "value", "rule"), [
    ("PROTOCOLO_POLICY", "br-made-up-2031", "unknown policy profile"),
    ("PROTOCOLO_INDEX_KEY", f"{SECRET}!", "is not valid base64"),
    ("PROTOCOLO_MASTER_KEY", base64.b64encode(b"too short").decode(), "must decode to 32 bytes, got 9"),
    ("PROTOCOLO_PARTITIONS", "0", "whole number from 1 to"),
    ("PROTOCOLO_DATABASE_URL", f"mysql://ana:{SECRET}@db/ledger", "is not postgresql"),
    ("PROTOCOLO_REGISTRY_URL", f"postgresql://ana:{SECRET}@db:99999/registry", "port is not a number"),
])
def test_a_malformed_setting_is_refused_naming_the_variable_and_never_echoing_secrets(variable, value, rule):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(_env(**{variable: value}))
    message = str(refused.value)
    assert variable in message and rule in message, message
    assert SECRET not in message


def test_well_formed_policy_and_keys_pass():
    settings = Settings.from_env(_env(PROTOCOLO_POLICY="br-anatel-rgc-small", PROTOCOLO_INDEX_KEY=GOOD_KEY,
                                      PROTOCOLO_MASTER_KEY=GOOD_KEY, PROTOCOLO_PARTITIONS="3"))
    assert settings.partitions == 3
    assert Settings.from_env(_env(PROTOCOLO_POLICY="  ", PROTOCOLO_INDEX_KEY="")).partitions == 6  # blank = unset
