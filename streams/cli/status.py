"""`agentstream status`: what an operator checks first, from Kafka alone (no worker needed).

Config and rollout (control topic), the last automatic rollback, pending reviews, the monitor's
windows per config version and arm (its changelog), and the worker group's members and lag.
"""

from __future__ import annotations

import json
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faust.cli import AppCommand, option

from streams.cli.output import console, fail
from streams.cli.review import review_state
from streams.cli.rollout import current_rollout, rollout_summary
from streams.config.pipeline import load_config
from streams.events.codecs import DecodeError, get_codec
from streams.events.records import Control, WorkerStatus, now_ms
from streams.kafka.app import app
from streams.kafka.topic_reader import read_all
from streams.kafka.topics import CONTROL, WORKER_HEARTBEAT_S, WORKERS
from streams.stages.monitoring.metrics import summarize

settings = app.agentstream_settings


async def last_rollback() -> dict[str, Any] | None:
    found = None
    for m in await read_all(settings.kafka_bootstrap_servers, settings.topic(CONTROL)):
        try:
            control = get_codec().decode(m.value, Control)
        except DecodeError:
            continue
        if control.actor == "monitor":
            found = {"candidate_version": control.candidate_version, "reason": control.reason, "at_ms": control.updated_ms}
    return found


async def monitor_windows(window_s: float) -> dict[str, Any]:
    """The monitor's current windows (latest changelog value per `version|arm`), summarized."""
    latest: dict[str, Any] = {}
    for m in await read_all(settings.kafka_bootstrap_servers, f"{settings.app_id}-monitor-changelog"):
        key = json.loads(m.key) if m.key else ""  # faust writes table keys as JSON
        latest[key] = json.loads(m.value) if m.value else None
    now = now_ms()
    out = {}
    for key, window in sorted(latest.items()):
        if "|" not in key or key.startswith("rollback|") or not window:
            continue
        s = summarize(window, now, window_s)
        if s.answers:
            out[key] = {
                "answers": s.answers,
                "error_rate": round(s.error_rate, 4),
                "escalation_rate": round(s.escalation_rate, 4),
                "avg_latency_ms": round(s.avg_latency_ms, 1),
                "p95_latency_ms_at_most": s.p95_latency_ms,
                "cost_per_answer_usd": round(s.cost_per_answer_usd, 6),
            }
    return out


async def budget_use(top: int = 10) -> list[dict[str, Any]]:
    """The windows using the most tokens now, over all tenants (from the budgets changelog)."""
    latest: dict[str, Any] = {}
    for m in await read_all(settings.kafka_bootstrap_servers, f"{settings.app_id}-budgets-changelog"):
        latest[json.loads(m.key)] = json.loads(m.value) if m.value else None
    rows = [
        {"tenant": tenant, "window": key, **counters}
        for tenant, value in latest.items()
        if value
        for key, counters in value.get("windows", {}).items()
    ]
    rows.sort(key=lambda r: (r["tokens"] + r["held_tokens"], r["cost"]), reverse=True)
    return rows[:top]


async def live_workers() -> list[dict[str, Any]]:
    """Workers whose last heartbeat is recent, with their partitions and circuit breakers."""
    latest: dict[str, WorkerStatus] = {}
    for m in await read_all(settings.kafka_bootstrap_servers, settings.topic(WORKERS)):
        try:
            w = get_codec().decode(m.value, WorkerStatus)
        except DecodeError:
            continue
        latest[w.worker_id] = w
    cutoff = now_ms() - int(3 * WORKER_HEARTBEAT_S * 1000)
    return [
        {
            "worker": w.worker_id,
            "partitions": w.partitions,
            "running_tasks": w.running_tasks,
            "breakers": w.breakers,
            "seen_s_ago": round((now_ms() - w.updated_ms) / 1000, 1),
        }
        for w in sorted(latest.values(), key=lambda w: w.worker_id)
        if w.updated_ms >= cutoff
    ]


async def group_state(group: str) -> dict[str, Any]:
    """Members of a consumer group and its lag per topic (end offset minus committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
        members: list[dict[str, str]] = []
        state = "unknown"
        for response in described:
            for g in response.groups:
                state = g[2]
                members += [{"client_id": mem[1], "host": mem[2]} for mem in g[5]]
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    lag: dict[str, int] = {}
    if committed:
        reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
        await reader.start()
        try:
            ends = await reader.end_offsets(list(committed))
        finally:
            await reader.stop()
        for tp, meta in committed.items():
            if meta.offset >= 0 and not tp.topic.endswith("-changelog"):
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, ends[tp] - meta.offset)
    return {"group": group, "state": state, "members": members, "lag": dict(sorted(lag.items()))}


async def status_report() -> dict[str, Any]:
    cfg = load_config(settings.config_file)
    pending, _ = await review_state()
    return {
        "rollout": rollout_summary(cfg, await current_rollout()),
        "last_rollback": await last_rollback(),
        "pending_reviews": {
            "count": len(pending),
            "high_priority": sum(1 for p in pending if p.escalation.priority == "high"),
            "oldest": [p.request_id for p in pending[:5]],
        },
        "monitor": await monitor_windows(cfg.monitor.window_s),
        "budgets": {"ceilings": len(cfg.budgets), "top_windows": await budget_use()},
        "live_workers": await live_workers(),
        "workers": await group_state(settings.app_id),
        "responder": await group_state(f"{settings.app_id}-responder"),
    }


@app.command(option("--json", "as_json", is_flag=True, help="One JSON object, for scripts."))
async def status(self: AppCommand, as_json: bool) -> None:
    """Rollout, last rollback, pending reviews, monitor windows, budgets, live workers with their
    circuit breakers, group members and lag."""
    try:
        report = await status_report()
    except KafkaError as exc:
        fail(f"cannot talk to Kafka at {settings.kafka_bootstrap_servers}: {exc}")
    if as_json:
        print(json.dumps(report, default=str))
        return
    console.print_json(json.dumps(report, default=str))
