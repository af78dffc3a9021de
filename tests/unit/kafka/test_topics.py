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
