"""Changelog-backed state: `sessions` (conversation, task, holds) and `seen` (request ids)."""

from __future__ import annotations

from typing import Any

import faust

from streams.app import app
from streams.partitioning import partition_for


class SessionKeyedTable(faust.Table):
    """A table keyed by session id that may be written outside stream iteration.

    LLM steps finish in background tasks, where faust has no current event to take the partition
    from (and its `use_partitioner` path needs producer metadata it may not have yet). The
    partition is the session key's murmur2 partition, so the changelog stays co-partitioned with
    every topic keyed by `session_id`.
    """

    def partition_for_key(self, key: Any) -> int:
        return partition_for(key, self.app.conf.topic_partitions)


_json_by_session = faust.Schema(key_type=str, key_serializer="raw", value_serializer="json")

sessions = app.tables.add(
    SessionKeyedTable(app, name="sessions", schema=_json_by_session, default=None)
)
seen = app.tables.add(SessionKeyedTable(app, name="seen", schema=_json_by_session, default=None))
