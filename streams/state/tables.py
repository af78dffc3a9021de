"""Changelog-backed state: `sessions` (conversation, task, holds, request ids seen)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, cast

import faust

from streams.kafka.app import app
from streams.kafka.partitioning import partition_for
from streams.state.model import Session
from streams.state.sessions import is_stale


class SessionKeyedTable(faust.Table[str, Session]):
    """A table keyed by session id that may be written outside stream iteration.

    LLM steps finish in background tasks, where faust has no current event to take the partition
    from (and its `use_partitioner` path needs producer metadata it may not have yet). The
    partition is the session key's murmur2 partition, so the changelog stays co-partitioned with
    every topic keyed by `session_id`.
    """

    def partition_for_key(self, key: Any) -> int:
        return partition_for(key, self.app.conf.topic_partitions)

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        """Rebuilds (and standby replicas) skip writes of an older owner epoch (a zombie's)."""
        super().apply_changelog_batch(self._fresh(batch))

    def _fresh(self, batch: Iterable[Any]) -> Iterator[Any]:
        applied: dict[Any, Any] = {}
        for event in batch:
            key = self._to_key(event.key)
            current = applied[key] if key in applied else self.data.get(key)
            value = event.value
            if isinstance(value, dict) and isinstance(current, dict) and is_stale(cast(Session, current), cast(Session, value)):
                continue
            applied[key] = value
            yield event


_json_by_session: faust.Schema[str, Any] = faust.Schema(key_type=str, key_serializer="raw", value_serializer="json")

sessions = SessionKeyedTable(app, name="sessions", schema=_json_by_session, default=None)
app.tables.add(sessions)
