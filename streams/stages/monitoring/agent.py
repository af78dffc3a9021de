"""Monitor wiring: every answer once (from the responder's transactions) into windowed metrics
per config version and arm; a candidate arm that crosses a trigger is rolled back to 0%.

The input topic has one partition, so one worker (whoever owns it) sees all answers in order and
keeps the windows in a changelog-backed table that a successor rebuilds.
"""

from __future__ import annotations

from typing import Any

import faust

from streams.control.rollout import ROLLOUT, candidate_share
from streams.events.codecs import get_codec
from streams.events.records import Control, Response, now_ms
from streams.kafka import stream_topics
from streams.kafka.app import app
from streams.kafka.envelope import consume, log
from streams.stages.monitoring.metrics import counted, record, summarize, triggers
from streams.telemetry import attributes as attr
from streams.telemetry.tracing import stage_span

metrics: faust.Table[str, Any] = faust.Table(
    app,
    name="monitor",
    default=None,
    partitions=1,
    schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
)
app.tables.add(metrics)
"""`<version>|<arm>` -> window of outcomes; `rollback|<version>` -> the last automatic rollback."""


@app.agent(stream_topics.monitor, name="monitor")
async def monitor(stream: faust.StreamT[bytes]) -> None:
    # The responder writes this topic in transactions: commit markers take offsets.
    await consume(stream, Response, "monitor", observe, contiguous=False)


async def observe(resp: Response, event: Any) -> None:
    if resp.follow_up or resp.reason.startswith("budget:"):
        # A follow-up's latency includes the human review; a budget refusal says nothing of the
        # config that would have served it.
        return
    base = app.services.pipeline_config
    cfg = base.for_version(resp.config_version)
    key = f"{resp.config_version}|{resp.rollout_arm or 'control'}"
    cost = cfg.cost_usd(resp.model, resp.input_tokens, resp.output_tokens)
    status = "ok" if resp.status == "degraded" and "budget degraded" in resp.reason else resp.status
    before = metrics.get(key)
    offset = event.message.offset
    if counted(before, offset):
        return  # counted before a crash, read again from the committed offset
    window = record(before, status, resp.latency_ms, cost, resp.responded_ms, base.monitor.window_s, offset)
    metrics[key] = window
    candidate = base.candidate
    if resp.rollout_arm != "candidate" or candidate is None or resp.config_version != candidate.version:
        return
    reasons = triggers(summarize(window, resp.responded_ms, base.monitor.window_s), base.monitor)
    if not reasons:
        return
    current = app.services.control_watcher.get(ROLLOUT)
    if candidate_share(base, current) == 0:
        return  # already off
    last = metrics.get(f"rollback|{candidate.version}")
    if last and current is not None and current.updated_ms <= last["at_ms"]:
        return  # ours, not yet read back by the watcher
    await roll_back(candidate.version, "automatic rollback: " + "; ".join(reasons), event)


async def roll_back(version: str, reason: str, event: Any) -> None:
    """Publishes 0% for the candidate (acknowledged), records why, and starts its windows afresh
    so a later rollout is judged on its own answers."""
    control = Control(
        name=ROLLOUT, percent=0, candidate_version=version, reason=reason, actor="monitor", updated_ms=now_ms()
    )
    attrs = {attr.AGENTSTREAM_CONFIG_VERSION: version, attr.AGENTSTREAM_ROLLBACK_REASON: reason}
    with stage_span(app.services.tracer, stream_topics.monitor.get_topic_name(), "monitor", event.headers, attrs) as span:
        fut = await stream_topics.control.send(key=ROLLOUT.encode(), value=get_codec().encode(control), partition=0)
        await fut
        span.add_event("rollback", {attr.AGENTSTREAM_ROLLBACK_REASON: reason, attr.AGENTSTREAM_CONFIG_VERSION: version})
    metrics[f"rollback|{version}"] = {"at_ms": control.updated_ms, "reason": reason}
    metrics[f"{version}|candidate"] = None
    log.warning("rolled back candidate %s to 0%%: %s", version, reason)


