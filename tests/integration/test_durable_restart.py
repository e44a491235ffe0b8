"""On the default embedded broker (Apache Kafka), a contact survives ``dev down``/``dev up``.

The user's path, with nothing configured but ``PROTOCOLO_HOME``: publish a contact,
project it, stop the whole stack, start it again. ``history`` must find the same contact,
the ledger topic must still hold every record, and projecting again must add nothing
(the stored offsets still match the log, which is on disk).
"""

from __future__ import annotations

import json
from datetime import timedelta

import backends
import pytest
from helpers_flow import contact_opened, drain, now_s, project, quiet

from protocolo import devstack
from protocolo.cli import main as cli_main
from protocolo.core.config import ENV_DATABASE_URL, ENV_KAFKA_BOOTSTRAP, Settings
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event
from protocolo.runtime import Runtime


def _history(protocol: str, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert cli_main(["history", "--protocol", protocol, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_a_projected_contact_survives_dev_down_and_up_on_apache_kafka(monkeypatch, capsys):
    with backends.scratch_dir("protocolo-test-durable-") as home:
        backends.share_kafka_jars(home)
        for name in (ENV_KAFKA_BOOTSTRAP, ENV_DATABASE_URL, devstack.ENV_BROKER,
                     "PROTOCOLO_TOPIC", "PROTOCOLO_PARTITIONS", "PROTOCOLO_GROUP_ID",
                     "PROTOCOLO_INDEX_KEY", "PROTOCOLO_MASTER_KEY", "PROTOCOLO_POLICY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("PROTOCOLO_HOME", str(home))
        settings = Settings.from_env()
        try:
            rt = Runtime.start(settings, log=quiet)
            assert devstack.status(settings)["kafka"]["broker"] == "kafka"
            with ProtocolIssuer(rt.database_url, block_size=5) as issuer:
                protocol = issuer.issue()
            opened = now_s() - timedelta(hours=2)
            with rt.publisher("durable-test") as publisher:
                publisher.publish_many([
                    Event("ContactOpened", contact_opened(), protocol_number=protocol, occurred_at=opened),
                    Event("DisclosureMade", {"kind": "PROTOCOL_NUMBER", "medium": "VOICE"},
                          protocol_number=protocol, occurred_at=opened + timedelta(seconds=5)),
                    Event("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=protocol,
                          occurred_at=opened + timedelta(minutes=3)),
                ])
            assert project(rt).journaled == 3
            before = _history(protocol, capsys)
            records_before = [(r.partition, r.offset, r.value)
                              for r in drain(rt.kafka_bootstrap, settings.topic, settings.partitions)]

            devstack.down(settings, log=quiet)
            assert devstack.status(settings)["kafka"]["running"] is False
            devstack.up(settings, log=quiet)

            again = Runtime.start(settings, log=quiet)
            assert again.database_url == rt.database_url  # the one stable ledger database
            records_after = [(r.partition, r.offset, r.value)
                             for r in drain(again.kafka_bootstrap, settings.topic, settings.partitions)]
            assert records_after == records_before and len(records_after) == 3
            assert project(again).journaled == 0  # nothing projected twice, nothing skipped
            after = _history(protocol, capsys)
            assert after == before
            assert [e["event_type"] for e in after["interactions"][0]["events"]] == [
                "ContactOpened", "DisclosureMade", "ContactClosed"]
        finally:
            devstack.down(settings, log=quiet)
