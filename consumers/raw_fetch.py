"""Fetch one partition's record batches as bytes, without kafka-python's record parser.

For the partitions kafka-python cannot parse (see :mod:`.raw_records`): one Fetch request
(API key 1, version at most 12, so topics are named rather than given by id) sent to the
partition's leader through an admin client's connection manager. kafka-python 3.0 has no
public call for a raw request; ``_manager`` is the one its admin client itself uses for
every request, and a missing attribute (another kafka-python) raises :class:`RawFetchError`
instead of failing obscurely.
"""

from __future__ import annotations

from typing import Any

from kafka.errors import for_code
from kafka.protocol.consumer import FetchRequest

__all__ = ["RawFetchError", "fetch_raw"]


class RawFetchError(RuntimeError):
    pass


def fetch_raw(admin: Any, topic: str, partition: int, offset: int, max_bytes: int) -> bytes:
    """The bytes of the record batches of ``topic``/``partition`` from the one holding
    ``offset`` on, at most about ``max_bytes`` (a first batch larger than that is still
    returned whole, as Kafka does)."""
    described = admin.describe_topics([topic])
    leaders = [p["leader_id"] for t in described for p in t["partitions"] if p["partition_index"] == partition]
    if not leaders or leaders[0] < 0:
        raise RawFetchError(f"{topic}[{partition}]: no leader")
    request = FetchRequest(
        max_wait_ms=0, min_bytes=0, max_bytes=max_bytes, isolation_level=0, session_id=0,
        session_epoch=-1, forgotten_topics_data=[], rack_id="", max_version=12,
        topics=[FetchRequest.FetchTopic(topic=topic, partitions=[FetchRequest.FetchTopic.FetchPartition(
            partition=partition, current_leader_epoch=-1, fetch_offset=offset, last_fetched_epoch=-1,
            log_start_offset=-1, partition_max_bytes=max_bytes)])],
    )
    manager = getattr(admin, "_manager", None)
    if manager is None:
        raise RawFetchError("this kafka-python's admin client has no connection manager to fetch with")

    async def send() -> Any:
        return await manager.send(request, node_id=leaders[0])

    response = manager.run(send)
    (answer,) = [p for t in response.responses for p in t.partitions if p.partition_index == partition]
    if answer.error_code:
        raise for_code(answer.error_code)(f"raw fetch of {topic}[{partition}]@{offset}")
    return bytes(answer.records or b"")
