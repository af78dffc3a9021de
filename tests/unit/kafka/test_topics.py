"""Topic creation: only missing topics, with the partition counts of the design and the
configured replication factor (1 for one broker, 3 on a cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.config.settings import Settings
from streams.kafka import topics


class Admin:
    """The part of aiokafka's admin client `ensure_topics` uses, recording what it creates."""

    created: list[Any] = []
    existing: set[str] = set()

    def __init__(self, **_: Any) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def list_topics(self) -> list[str]:
        return sorted(self.existing)

    async def create_topics(self, new: list[Any]) -> None:
        Admin.created = list(new)

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        counts = {t.name: t.num_partitions for t in Admin.created}
        return [served(n, counts.get(n, 64)) for n in names]  # existing topics: all served


def served(name: str, partitions: int, leader: int = 1) -> dict[str, Any]:
    parts = [{"error_code": 0, "partition": i, "leader": leader} for i in range(partitions)]
    return {"error_code": 0, "topic": name, "partitions": parts}


async def test_missing_topics_are_created_with_the_configured_replication(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topics, "AIOKafkaAdminClient", Admin)
    settings = Settings(namespace="-rf", partitions=6, replication_factor=3)
    requests = settings.topic(topics.REQUESTS)
    Admin.existing = {requests}
    created = await topics.ensure_topics(settings)
    assert requests not in created, "an existing topic is used as it is"
    assert {t.name for t in Admin.created} == set(created) and created
    assert {t.replication_factor for t in Admin.created} == {3}
    by_name = {t.name: t.num_partitions for t in Admin.created}
    assert by_name[settings.topic(topics.ROUTED)] == 6
    assert by_name[settings.topic(topics.MONITOR)] == 1, "the monitor's input stays one partition"


def test_replication_defaults_to_one_and_refuses_zero() -> None:
    assert Settings().replication_factor == 1
    with pytest.raises(ValueError, match="replication_factor"):
        Settings(replication_factor=0)


def test_a_topic_is_unserved_until_every_partition_has_a_leader() -> None:
    spec = topics.TopicSpec("t", 3, {})
    assert topics.unserved([served("t", 3)], [spec]) == []
    assert topics.unserved([served("t", 2)], [spec]) == ["t"], "a partition missing from the metadata"
    assert topics.unserved([served("t", 3, leader=-1)], [spec]) == ["t"], "no leader elected yet"
    unknown = {"error_code": 3, "topic": "t", "partitions": []}
    assert topics.unserved([unknown], [spec]) == ["t"]
    assert topics.unserved([], [spec]) == ["t"]


class SlowAdmin:
    """Metadata that shows a topic's partitions only after a few requests, as a new topic does."""

    def __init__(self, ready_after: int) -> None:
        self.calls = 0
        self.ready_after = ready_after

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        self.calls += 1
        return [served(n, 4 if self.calls > self.ready_after else 0) for n in names]


async def test_waits_until_new_topics_are_served() -> None:
    admin = SlowAdmin(ready_after=3)
    await topics.wait_until_served(admin, [topics.TopicSpec("t", 4, {})], timeout_s=5)  # type: ignore[arg-type]
    assert admin.calls == 4


async def test_a_topic_never_served_is_a_clear_error() -> None:
    admin = SlowAdmin(ready_after=10**9)
    with pytest.raises(RuntimeError, match="not served by the cluster after 0 s: t"):
        await topics.wait_until_served(admin, [topics.TopicSpec("t", 4, {})], timeout_s=0.2)  # type: ignore[arg-type]
