"""Faust topic objects for the stages; names come from `topics.py` and settings."""

from __future__ import annotations

import faust

from streams.kafka import topics as t
from streams.kafka.app import app

_settings = app.agentstream_settings


def _topic(name: str) -> faust.TopicT:
    return app.topic(_settings.topic(name), key_type=bytes, value_type=bytes)


requests = _topic(t.REQUESTS)
routed = _topic(t.ROUTED)
executed = _topic(t.EXECUTED)
outbox = _topic(t.OUTBOX)
escalations = _topic(t.ESCALATIONS)
human_decisions = _topic(t.HUMAN_DECISIONS)
deadletter = _topic(t.DEADLETTER)
traces = _topic(t.TRACES)
monitor = _topic(t.MONITOR)
budget = _topic(t.BUDGET)
control = _topic(t.CONTROL)
workers = _topic(t.WORKERS)
