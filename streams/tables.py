"""Changelog-backed state: `sessions` (conversation, task, holds) and `seen` (request ids)."""

from __future__ import annotations

import faust

from streams.app import app

_json_by_session = faust.Schema(key_type=str, key_serializer="raw", value_serializer="json")

# use_partitioner: LLM steps finish in background tasks, outside stream iteration; the key's
# partition then comes from the same murmur2 partitioner the producers use for `session_id`,
# so the changelog stays co-partitioned with the topics.
sessions = app.Table("sessions", schema=_json_by_session, default=None, use_partitioner=True)
seen = app.Table("seen", schema=_json_by_session, default=None)
