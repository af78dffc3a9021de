"""Domain-agent wiring: a routed request becomes a recorded task; the runner drives it.

The agent itself never awaits an LLM: it records the task in `sessions` (so the changelog has it
before the offset is committed) and hands the session to the runner.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import asdict
from typing import Any

import faust

from streams.events.codecs import get_codec
from streams.events.records import (
    BudgetEvent,
    ContextMessage,
    DeadLetter,
    Executed,
    Routed,
    WorkerStatus,
    identity_of,
    now_ms,
)
from streams.kafka import stream_topics
from streams.kafka.app import active_partitions, app, ownership_settled
from streams.kafka.envelope import consume, die, log, publish
from streams.kafka.partitioning import partition_for
from streams.kafka.topics import WORKER_HEARTBEAT_S
from streams.stages.execution.runner import TaskRunner
from streams.stages.verification.logic import verify  # pure: the same verdict as the verifier stage
from streams.state import sessions as state
from streams.state.store import digest_of, idle_before
from streams.state.tables import sessions
from streams.telemetry import attributes as attr
from streams.telemetry.tracing import request_attributes, stage_span, traceparent_of

_settings = app.agentstream_settings
_started = time.monotonic()
MAX_QUEUED = 20  # tasks waiting in one session; more are answered `error` (bounded state)
_assigned_at: list[float] = []  # when partitions were last assigned (for the rebuild log line)


def _owned(partition: int) -> bool:
    name = stream_topics.routed.get_topic_name()
    return partition in active_partitions(app, name)


async def _emit(executed: Executed, headers: dict[str, bytes] | None = None) -> None:
    """Publishes a finished task durably: the `Executed` event, and its verified answer straight
    into the outbox, both acknowledged before the runner marks the task done.

    The verifier stage verifies the same event again (and records the decision and any
    escalation); the responder keeps whichever copy of the answer comes first. The direct copy
    is there because a Faust stage is only at-least-once as far as Faust's commits are: the kill
    loop once saw a worker commit the verifier's input offset past an event whose answer never
    reached the outbox (1 of 3,000 requests, 10 SIGKILLs). The runner does not depend on that.
    """
    await publish(stream_topics.executed, executed, headers, wait=True)
    verdict = verify(executed, app.services.verifier_checks(executed.config_version))
    if verdict.escalation:
        # On the review queue before the user reads "escalated" (the verifier's copy is the same
        # escalation again; the queue keeps one per request and follow-up).
        await publish(stream_topics.escalations, verdict.escalation, headers, wait=True)
    await publish(stream_topics.outbox, verdict.response, headers, wait=True)


async def _settle(executed: Executed) -> None:
    """What the task used, to its tenant's budget partition (acknowledged): releases the
    reservation and counts the actual tokens and cost. Nothing when no budget is configured."""
    cfg = app.services.pipeline_config
    if not cfg.budgets:
        return
    used = executed.input_tokens + executed.output_tokens
    event = BudgetEvent(
        kind="settle",
        **identity_of(executed),
        settle_id=f"{executed.request_id}#{executed.follow_up}",
        tokens=used,
        cost_usd=executed.cost_usd,
        created_ms=now_ms(),
    )
    fut = await stream_topics.budget.send(key=executed.tenant_id.encode(), value=get_codec().encode(event))
    await fut


async def _charge(routed: dict[str, Any], _run: str, charge_id: str, tokens: int, cost_usd: float) -> None:
    """One LLM call's usage, to its tenant's budget partition. Not awaited to the broker: the
    settlement at the task's end counts whatever a lost charge did not (same producer, same
    partition, so a charge never arrives after its own settlement)."""
    if not app.services.pipeline_config.budgets:
        return
    event = BudgetEvent(
        kind="charge",
        **identity_of(routed),
        settle_id=charge_id,  # `run@step`: the run is what its settlement is named
        tokens=tokens,
        cost_usd=cost_usd,
        created_ms=now_ms(),
    )
    await stream_topics.budget.send(key=routed["tenant_id"].encode(), value=get_codec().encode(event))


async def _dead_letter_task(routed: dict[str, Any], reason: str) -> None:
    """A task the runner gave up on: its routed request and the reason, for an operator."""
    record = DeadLetter(
        topic=stream_topics.routed.get_topic_name(),
        partition=partition_for(routed["session_id"], _settings.partitions),
        offset=-1,  # taken in long before; the task state holds it, not an offset
        key=routed["session_id"].encode(),
        value=get_codec().encode(
            Routed(**{**routed, "context": [ContextMessage(**c) for c in routed["context"]]})
        ),
        reason=reason,
        failed_ms=now_ms(),
    )
    fut = await stream_topics.deadletter.send(key=record.key, value=get_codec().encode(record))
    await fut


async def _settled() -> None:
    """Returns once no rebalance or table recovery is in progress (ownership is known)."""
    while not ownership_settled(app):
        await asyncio.sleep(0.05)


runner = TaskRunner(
    sessions=sessions,
    emit=_emit,
    provider=app.services.provider,
    cfg=app.services.pipeline_config,
    ledger=app.services.tool_ledger,
    partitions=_settings.partitions,
    owned=_owned,
    crash=lambda exc: die("domain-runner", exc),
    settled=_settled,
    flush=lambda: app.producer.flush(),
    dead_letter=_dead_letter_task,
    settle=_settle,
    charge=_charge,
    checks=app.services.verifier_checks,
    tracer=app.services.tracer,
    redact=app.services.redactor.redact_structured,
    capture_content=_settings.capture_content,
)


@app.agent(stream_topics.routed, name="domain-agents")
async def domain_agents(stream: faust.StreamT[bytes]) -> None:
    await consume(stream, Routed, "domain-agents", take_in)


async def take_in(routed: Routed, event: Any) -> None:
    """Records the routed request as a queued task; the runner does the rest."""
    if routed.domain not in runner.cfg.for_version(routed.config_version).domains:
        await _reject(routed, f"no domain agent named {routed.domain!r}")
        return
    current = sessions.get(routed.session_id)
    if current and not state.belongs_to(current, routed.user_id, routed.tenant_id):
        # Nothing of the session is read for this request: not its history, not its queue.
        await _reject(routed, "session belongs to another user; start a new session")
        return
    queued = len(current.queue) if current else 0
    window_ms = int(_settings.dedup_window_s * 1000)
    if queued >= MAX_QUEUED and not state.knows(current, routed.request_id):
        await _reject_busy(routed, f"too many requests in progress for this session ({queued}); try again later")
        return
    attrs = {**request_attributes(routed), attr.AGENTSTREAM_DOMAIN: routed.domain}
    with stage_span(runner.tracer, stream_topics.routed.get_topic_name(), "domain_agent", event.headers, attrs) as span:
        try:
            value, fresh = state.enqueue(current, _as_dict(routed), now_ms(), traceparent_of(span), window_ms)
        except state.SessionFull as full:
            span.set_attribute(attr.AGENTSTREAM_REJECTED, str(full))
            await _reject_busy(routed, str(full))
            return
        span.set_attribute(attr.AGENTSTREAM_DUPLICATE, not fresh)
    if fresh:
        runner.write(routed.session_id, value)
    runner.kick(routed.session_id)


async def _reject_busy(routed: Routed, reason: str) -> None:
    """Answers `error` first (acknowledged), then remembers the id, so a redelivered copy is a
    duplicate rather than a task run after its error answer; a crash in between answers twice,
    and the responder keeps the first."""
    await _reject(routed, reason)
    # The answer's broker round trips are an await: the partition may have moved meanwhile, and a
    # write from here would be a zombie's with the new generation's epoch (not fenced).
    if not await runner.owns(routed.session_id):
        return
    current = sessions.get(routed.session_id)
    if current is not None:
        runner.write(routed.session_id, state.mark_handled(current, routed.request_id, now_ms(), window_ms=int(_settings.dedup_window_s * 1000)))


async def _reject(routed: Routed, reason: str) -> None:
    log.error("routed request %s rejected: %s", routed.request_id, reason)
    executed = Executed(
        **identity_of(routed),
        language=routed.language,
        domain=routed.domain,
        model=routed.model,
        rollout_arm=routed.rollout_arm,
        config_version=routed.config_version,
        status="error",
        answer="",
        reasons=[reason],
        notes=list(routed.notes),
        steps=[],
        input_tokens=0,
        output_tokens=0,
        llm_calls=0,
        created_ms=routed.created_ms,
        executed_ms=now_ms(),
        complexity=routed.complexity,
    )
    await _emit(executed)
    await _settle(executed)  # releases the reservation: nothing was used


def _as_dict(routed: Routed) -> dict[str, Any]:
    return asdict(routed)


@app.timer(interval=0.5)
async def resume_unfinished() -> None:
    """After recovery or a takeover, picks up tasks whose runner died with the old owner."""
    if not ownership_settled(app):
        return
    if not runner.recovered:
        runner.recovered = True
        now = time.monotonic()
        items = sessions.raw_items()  # values are immutable bytes: a consistent snapshot
        # Hashed off the event loop: with 100,000 sessions it held the first answers for ~0.5 s.
        digest = await asyncio.to_thread(digest_of, items)
        log.warning(
            "sessions table rebuilt: keys=%d digest=%s after %.2fs (%.2fs after assignment)",
            len(items), digest, now - _started, now - (_assigned_at[-1] if _assigned_at else _started),
        )
    started = runner.resume_all()
    if started:
        log.info("resumed %d session(s) with unfinished tasks", started)


@sessions.on_recover
async def _rescan_recovered() -> None:
    """Recovered values never went through `runner.write`: the next tick scans for queued tasks."""
    runner.rescan = True


@app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types receivers without named kwargs
async def _note_assignment(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
    _assigned_at.append(time.monotonic())
    del _assigned_at[:-1]


@app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types receivers without named kwargs
async def _stop_moved(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
    """Runners of sessions whose partition went to another worker stop; the others carry on."""
    name = stream_topics.routed.get_topic_name()
    runner.epochs.reassigned(int(getattr(app, "consumer_generation_id", 0) or 0))
    runner.rescan = True  # recovered or standby values never went through runner.write
    runner.assigned_at = time.monotonic()
    actives = app.assignor.assigned_actives()
    stopped = runner.keep_only({tp.partition for tp in actives if tp.topic == name})
    if stopped:
        log.info("stopped %d runner(s) of partitions now owned elsewhere", stopped)


_worker_started_ms = now_ms()


@app.timer(interval=WORKER_HEARTBEAT_S)
async def heartbeat() -> None:
    """This worker's partitions, breakers and running tasks, for `agentstream status`."""
    name = stream_topics.routed.get_topic_name()
    status = WorkerStatus(
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        host=socket.gethostname(),
        pid=os.getpid(),
        started_ms=_worker_started_ms,
        partitions=sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == name),
        breakers=runner.breakers.states(),
        running_tasks=len(runner.inflight),
        updated_ms=now_ms(),
    )
    await stream_topics.workers.send(key=status.worker_id.encode(), value=get_codec().encode(status), partition=0)


@app.timer(interval=60.0)
async def expire_sessions() -> None:
    """Drops sessions idle past their TTL (1 h) with nothing queued, on the partitions we own."""
    if not ownership_settled(app):
        return
    now = now_ms()
    for sid, s in list(idle_before(sessions, now)):
        if state.expired(s, now) and _owned(runner.part(sid)):
            del sessions[sid]
