"""docs/wire-contract.md says what the code does: the commands and endpoints it sends outside
producers to exist (none is "planned" or "future"), and the dev key files it names are the
ones the code writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from protocolo.cli import main
from protocolo.core.deployment_keys import load_keys

DOC = (Path(__file__).resolve().parents[2] / "docs" / "wire-contract.md").read_text(encoding="utf-8")


def test_nothing_the_contract_relies_on_is_promised_for_later() -> None:
    stale = [line for line in DOC.splitlines()
             if re.search(r"\b(planned|future|until then)\b|\bissue \d+", line, re.IGNORECASE)
             and not re.search(r"in the future \(|future,? \(clock|occurred_at", line)]
    assert stale == []


def test_protocol_reserve_exists_as_documented(capsys: pytest.CaptureFixture[str]) -> None:
    assert "protocolo protocol reserve --count N" in DOC
    assert main(["protocol", "reserve", "--help"]) == 0
    assert "--count" in capsys.readouterr().out


def test_http_ingest_is_documented_with_its_route() -> None:
    assert "POST\n/v1/events" in DOC or "POST /v1/events" in DOC


def test_the_dev_key_files_named_are_the_ones_written(tmp_path: Path) -> None:
    load_keys(tmp_path, environ={}, may_invent=True)
    written = sorted(p.name for p in (tmp_path / "keys").iterdir())
    assert written  # index.key, master.key
    for name in written:
        assert f"$PROTOCOLO_HOME/keys/{name}" in DOC or f"`{name}`" in DOC, name
