"""Runs queued tasks in the background, one runner per session, many sessions at once.

Why not faust's agent `concurrency`: it can commit offsets past events still being processed
(faust-streaming#606). Here the domain agent only *records* a task in the changelog-backed
`sessions` table (committed before its offset), and the runner drives it step by step, writing every
step back to the table. After a crash or a rebalance, whichever worker owns the session's partition
finds the unfinished task in the rebuilt table and resumes it at its last recorded step.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from msgspec.structs import replace
from opentelemetry.trace import NoOpTracer, SpanKind, Tracer

from streams.config.pipeline import PipelineConfig
from streams.events.records import Executed, Step, now_ms
from streams.kafka.partitioning import partition_for
from streams.llm.base import ChatRequest, ChatResponse, LLMError, Provider
from streams.llm.retry import call_with_retries_outcome
from streams.stages.execution.breaker import BreakerBoard
from streams.stages.execution.logic import (
    CallLLM,
    Finish,
    RunTool,
    build_messages,
    canonical_args,
    plan_next,
)
from streams.stages.execution.policy import refunded, refunded_by
from streams.stages.execution.tools import DEMO_TOOLS, ToolLedger, tools_for
from streams.stages.verification.logic import Checks, findings
from streams.state import sessions as state
from streams.state.model import HoldSpec, Session, StepState, Task
from streams.state.store import SessionStore, epoch_of, with_queue
from streams.telemetry import attributes as attr
from streams.telemetry.tracing import context_from_traceparent, headers_with_context, mark_error

log = logging.getLogger(__name__)

RESCAN_EVERY_S = 5.0  # the unfinished-session index is rebuilt from the table at least this often
# And on every tick this long after partitions were assigned (a tick can fall between the assignment
# and its recovery); the table's recovery callback asks for one more scan when values arrive. Each
# scan reads every session's first bytes: ~30% of a worker's CPU with 100,000 sessions while it lasts.
SCAN_AFTER_ASSIGNMENT_S = 5.0

FALLBACK_ANSWER = (
    "Sorry, our assistant is temporarily unavailable. Your request is saved and a person will "
    "follow up shortly."
)


def llm_step(index: int, model: str) -> StepState:
    return StepState(index=index, kind="llm_call", name=model)


@dataclass
class TaskRunner:
    """Worker-local driver of the agent loop; the durable state is the `sessions` table."""

    sessions: SessionStore  # the Faust table; `MemorySessions` in unit tests
    emit: Callable[[Executed, dict[str, bytes]], Any]  # async: publish an Executed event
    provider: Provider
    cfg: PipelineConfig
    ledger: ToolLedger
    partitions: int
    owned: Callable[[int], bool]  # is this partition actively ours right now?
    crash: Callable[[BaseException], None]  # makes a runner bug end the worker loudly
    # Waits while a rebalance or a table recovery is in progress: ownership is only known after.
    settled: Callable[[], Awaitable[None]] = field(default=lambda: _no_wait())
    # Makes the table's pending changelog writes durable (before the worker dies on a bug).
    flush: Callable[[], Awaitable[None]] = field(default=lambda: _no_wait())
    max_failures: int = 3  # a task that crashes the runner this often is ended with an error
    epochs: state.OwnerEpochs = field(default_factory=state.OwnerEpochs)
    # async (routed task, reason): records a task given up on in the dead-letter topic.
    dead_letter: Callable[[dict[str, Any], str], Awaitable[None]] = field(
        default=lambda routed, reason: _no_wait()
    )
    # async: settles the task's actual usage against its budget reservation (idempotent by
    # request id and follow-up), after the answer is out and before the task is marked done.
    settle: Callable[[Executed], Awaitable[None]] = field(default=lambda executed: _no_wait())
    # async (routed task, settle id, charge id, tokens, cost): one recorded LLM call's usage,
    # counted against the budget at once (the settlement reconciles a charge lost in a crash).
    charge: Callable[[dict[str, Any], str, str, int, float], Awaitable[None]] = field(
        default=lambda routed, settle_id, charge_id, tokens, cost: _no_wait()
    )
    # config version -> what the verifier will hold (so a held answer keeps what a review resumes)
    checks: Callable[[str], Checks] = field(default=lambda version: Checks())
    tracer: Tracer = field(default_factory=NoOpTracer)
    redact: Callable[[str], str] = str
    capture_content: bool = True  # gen_ai.input/output.messages on LLM spans (opt-in content)
    inflight: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    breakers: BreakerBoard = field(init=False)
    recovered: bool = False  # first recovery logged
    # Sessions with queued tasks, as far as this worker's writes tell; `rescan` rebuilds it
    # from the table (set at start and by every partition assignment).
    unfinished: set[str] = field(default_factory=set)
    rescan: bool = True
    scanned_at: float = 0.0
    assigned_at: float = 0.0  # monotonic time of the last partition assignment

    def __post_init__(self) -> None:
        ex = self.cfg.execution
        self.breakers = BreakerBoard(ex.breaker_failures, ex.breaker_cooldown_s)

    def kick(self, session_id: str) -> None:
        """Starts the session's runner unless one is already going."""
        if session_id not in self.inflight:
            task = asyncio.create_task(self._run(session_id), name=f"runner:{session_id}")
            self.inflight[session_id] = task

    def resume_all(self) -> int:
        """Starts runners for owned sessions with unfinished tasks that have none running.

        Scans the whole table only after a (re)assignment or recovery (`rescan`); otherwise it
        walks the index of sessions this worker wrote with a non-empty queue, so the 0.5 s timer
        costs nothing per idle session (it was the top function with 28k sessions)."""
        now = time.monotonic()
        if (
            self.rescan
            or now - self.scanned_at >= RESCAN_EVERY_S
            or now - self.assigned_at < SCAN_AFTER_ASSIGNMENT_S
        ):
            # Every tick for a while after an assignment (a tick can fall between the assignment
            # and its recovery, and recovered values never went through `write`), then every 5 s.
            self.rescan = False
            self.scanned_at = now
            self.unfinished = {sid for sid, _ in with_queue(self.sessions)}
        started = 0
        for sid in list(self.unfinished):
            s = self.sessions.get(sid)
            if not s or not s.queue or not self.owned(self.part(sid)):
                self.unfinished.discard(sid)  # done, or elsewhere: a reassignment rescans
            elif sid not in self.inflight:
                self.kick(sid)
                started += 1
        return started

    def keep_only(self, partitions: set[int]) -> int:
        """After a rebalance: stops the runners of sessions whose partition went elsewhere.

        Nothing is cancelled when partitions are revoked (the eager protocol revokes all of them
        on every rebalance): an LLM call in flight for a partition that comes straight back is
        kept, and its result is written once the new assignment shows the partition is still ours.
        """
        stopped = 0
        for sid, task in list(self.inflight.items()):
            if self.part(sid) not in partitions:
                task.cancel()
                stopped += 1
        return stopped

    def config_of(self, routed: dict[str, Any]) -> PipelineConfig:
        """The config the request was routed with: the rollout candidate's, or the active one."""
        cfg = self.cfg.for_version(routed["config_version"])
        if cfg.version != routed["config_version"]:  # a rolling config deploy: say so
            log.warning(
                "request %s was routed with config %s, unknown to this worker; running it with %s",
                routed["request_id"], routed["config_version"], cfg.version,
            )
        return cfg

    def part(self, session_id: str) -> int:
        return partition_for(session_id, self.partitions)

    async def _run(self, sid: str) -> None:
        try:
            while True:
                await self.settled()
                task = state.current_task(self.sessions.get(sid))
                if task is None or not self.owned(self.part(sid)):
                    return
                if task.failures >= self.max_failures:
                    # Given up before, but the worker died before the answer was written: answer
                    # now, without running the task a fourth time.
                    await self._give_up(sid, task, "task failed too often; its last run was interrupted")
                    continue
                try:
                    await self._drive(sid, task)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await self._failed(sid, task, exc)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not go silent: the process ends, the task resumes elsewhere
            log.exception("runner for session %s crashed", sid)
            self.crash(RuntimeError(f"runner for session {sid} crashed"))
        finally:
            self.inflight.pop(sid, None)

    async def _failed(self, sid: str, task: Task, exc: Exception) -> None:
        """A task that keeps failing must not crash-loop its partition: after `max_failures` it
        is answered `error` with the reason; before that the failure is recorded and the worker
        ends (the task resumes on the next owner, which may not share this worker's fault)."""
        failures = task.failures + 1
        log.error("task %s of session %s failed (%d/%d): %r", task.request_id, sid, failures, self.max_failures, exc)
        await self._fence(sid)
        s = self.sessions[sid]  # a fresh copy: the store decodes on every read
        s.queue[0].failures = failures
        self.write(sid, s)
        if failures < self.max_failures:
            await self.flush()
            raise exc
        await self._give_up(sid, task, f"task failed {failures} times, last with {type(exc).__name__}: {exc}")

    async def _give_up(self, sid: str, task: Task, reason: str) -> None:
        """Dead-letters the task's request with the reason and answers `error`."""
        reason = reason[:500]
        await self.dead_letter(task.routed, reason)
        await self._finish(sid, task.request_id, task.routed, Finish("error", "", [reason], None), None)

    def _steps(self, sid: str, request_id: str) -> list[StepState]:
        return _task_steps(self.sessions.get(sid), request_id)

    def write(self, sid: str, value: Session) -> None:
        """Every write to a session goes here: stamped with this worker's owner epoch, and
        indexed when it leaves work to do."""
        current = self.sessions.raw(sid)
        self.sessions[sid] = self.epochs.stamp(sid, value, epoch_of(current) if current else None)
        if value.queue:
            self.unfinished.add(sid)
        else:
            self.unfinished.discard(sid)

    async def owns(self, sid: str) -> bool:
        """Whether the session's partition is actively ours, once any rebalance is over."""
        await self.settled()
        return self.owned(self.part(sid))

    async def _fence(self, sid: str) -> None:
        """Only the partition's current owner writes: a worker that lost it stops here."""
        if not await self.owns(sid):
            raise asyncio.CancelledError

    async def _write_step(self, sid: str, request_id: str, *steps: StepState) -> Session:
        """Records `steps` in the task in one write (the value written is returned)."""
        await self._fence(sid)
        session, now = self.sessions[sid], now_ms()
        for step in steps:
            session = state.record_step(session, request_id, step, now)
        self.write(sid, session)
        return session

    async def _drive(self, sid: str, task: Task) -> None:
        request_id, routed = task.request_id, task.routed
        parent = context_from_traceparent(task.traceparent)
        with self.tracer.start_as_current_span(
            f"invoke_agent {routed['domain']}",
            context=parent,
            attributes={
                attr.GEN_AI_OPERATION_NAME: "invoke_agent",
                attr.GEN_AI_AGENT_NAME: routed["domain"],
                attr.GEN_AI_CONVERSATION_ID: sid,
                attr.AGENTSTREAM_STAGE: "domain_agent",
                **ids_attributes(routed),
            },
        ) as span:
            resumed = len(self._steps(sid, request_id))
            if resumed:
                span.set_attribute(attr.AGENTSTREAM_RESUMED_AT_STEP, resumed)
            await self._loop(sid, request_id, routed, span)

    async def _loop(self, sid: str, request_id: str, routed: dict[str, Any], span: Any) -> None:
        cfg = self.config_of(routed)
        ex, policy = cfg.execution, cfg.policy
        domain = cfg.domains[routed["domain"]]
        since = now_ms() - int(policy.refund_window_s * 1000)
        refunded_before = refunded(self.sessions[sid], since)
        while True:
            session = self.sessions[sid]  # decoded afresh each turn: the steps written since
            steps = _task_steps(session, request_id)
            action = plan_next(request_id, steps, ex, policy, refunded_before)
            if isinstance(action, CallLLM):
                # Not this request's own turns: a task resumed after review sends its text once.
                history = [
                    {"role": m.role, "content": m.content}
                    for m in session.conversation
                    if m.request_id != request_id
                ]
                messages, trimmed = build_messages(
                    domain, history, routed["context"], routed["text"], steps, routed["notes"],
                    ex.max_context_chars,
                )
                step = await self._call_llm(action.index, routed, messages, request_id, trimmed)
                written = await self._write_step(sid, request_id, step)
                await self._charge(written, routed, step)
            elif isinstance(action, RunTool):
                await self._run_tool(sid, request_id, routed, action)
            else:
                await self._finish(sid, request_id, routed, action, span)
                return

    async def _charge(self, session: Session, routed: dict[str, Any], step: StepState) -> None:
        """The call's usage to the budget stage, priced as the settlement prices the task."""
        tokens = step.input_tokens + step.output_tokens
        if not tokens:
            return
        task = state.current_task(session)
        assert task is not None
        run = f"{routed['request_id']}#{task.follow_up}"
        cost = self.config_of(routed).cost_usd(routed["model"], step.input_tokens, step.output_tokens)
        await self.charge(routed, run, f"{run}@{step.index}", tokens, cost)

    async def _call_llm(
        self,
        index: int,
        routed: dict[str, Any],
        messages: list[dict[str, Any]],
        request_id: str,
        trimmed_chars: int,
    ) -> StepState:
        cfg = self.config_of(routed)
        ex = cfg.execution
        model = routed["model"]
        step = llm_step(index, model)
        prompt = json.dumps(messages, ensure_ascii=False)
        # The prompt itself goes to the LLM span (and ClickHouse); the task state keeps only its
        # digest, so session values (and their changelog) stay small and a replay can tell
        # whether it sent the same prompt.
        step.arguments = "sha256:" + hashlib.sha256(prompt.encode()).hexdigest()[:32]
        domain = cfg.domains[routed["domain"]]
        input_trimmed = any(n.startswith("input truncated") for n in routed["notes"])
        attributes = {
            attr.GEN_AI_OPERATION_NAME: "chat",
            attr.GEN_AI_PROVIDER_NAME: self.provider.name,
            attr.GEN_AI_REQUEST_MODEL: model,
            attr.GEN_AI_REQUEST_MAX_TOKENS: routed["max_tokens"],
            attr.GEN_AI_CONVERSATION_ID: routed["session_id"],
            attr.AGENTSTREAM_STEP_INDEX: index,
            attr.AGENTSTREAM_CONTEXT_TRIMMED: trimmed_chars > 0 or input_trimmed,
            attr.AGENTSTREAM_CONTEXT_TRIMMED_CHARS: trimmed_chars,
            **ids_attributes(routed),
        }
        if self.capture_content:
            attributes[attr.GEN_AI_INPUT_MESSAGES] = self.redact(prompt)
        with self.tracer.start_as_current_span(
            f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            started = time.perf_counter()
            breaker = self.breakers.get(self.provider.name, model)
            if not breaker.allow():
                step.status = "fallback"
                step.result = f"circuit breaker open for {self.provider.name}/{model}; fallback answer"
                span.set_attribute(attr.AGENTSTREAM_LLM_STATUS, "fallback")
                span.add_event("circuit_breaker.open")
                mark_error(span, "circuit_open", step.result)
                return step
            request = ChatRequest(
                model=model,
                messages=messages,
                max_tokens=routed["max_tokens"],
                tools=tools_for(domain.tools),
                timeout_s=ex.llm_timeout_s,
                call_key=f"{request_id}:{index}",
            )
            try:
                outcome = await call_with_retries_outcome(
                    self.provider, request, attempts=ex.llm_attempts, base_delay_s=ex.retry_base_delay_s
                )
            except LLMError as exc:
                tripped = breaker.record_failure()
                step.status = "degraded"
                # The provider's own message goes on the span; the decision reason stays stable.
                step.result = f"LLM {exc.kind} after {ex.llm_attempts} attempts; fallback answer given"
                step.latency_ms = (time.perf_counter() - started) * 1000
                span.set_attribute(attr.AGENTSTREAM_LLM_STATUS, "degraded")
                span.set_attribute(attr.AGENTSTREAM_LATENCY_MS, step.latency_ms)
                if tripped:
                    span.add_event("circuit_breaker.tripped")
                mark_error(span, exc.kind, str(exc))
                return step
            breaker.record_success()
            resp = outcome.response
            step.result = json.dumps(
                {
                    "content": resp.content,
                    "finish_reason": resp.finish_reason,
                    "attempts": outcome.attempts,
                    "tool_calls": [
                        {"id": c.id, "name": c.name, "arguments": c.arguments} for c in resp.tool_calls
                    ],
                },
                ensure_ascii=False,
            )
            step.input_tokens = resp.input_tokens
            step.output_tokens = resp.output_tokens
            step.latency_ms = (time.perf_counter() - started) * 1000
            span.set_attributes(
                {
                    attr.GEN_AI_RESPONSE_MODEL: resp.model,
                    attr.GEN_AI_RESPONSE_FINISH_REASONS: [resp.finish_reason],
                    attr.GEN_AI_USAGE_INPUT_TOKENS: resp.input_tokens,
                    attr.GEN_AI_USAGE_OUTPUT_TOKENS: resp.output_tokens,
                    attr.AGENTSTREAM_COST_USD: cfg.cost_usd(model, resp.input_tokens, resp.output_tokens),
                    attr.AGENTSTREAM_LLM_STATUS: "ok",
                    attr.AGENTSTREAM_LLM_ATTEMPTS: outcome.attempts,
                    attr.AGENTSTREAM_LATENCY_MS: step.latency_ms,
                }
            )
            if self.capture_content:
                span.set_attribute(attr.GEN_AI_OUTPUT_MESSAGES, self.redact(output_messages(resp)))
            return step

    async def _run_tool(
        self, sid: str, request_id: str, routed: dict[str, Any], action: RunTool
    ) -> None:
        call = action.call
        tool_step = StepState(
            index=action.index,
            kind="tool_call",
            name=call.name,
            arguments=canonical_args(call.arguments),
            result=call.id,
            idempotency_key=action.idempotency_key,
            status="started",
        )
        await self._write_step(sid, request_id, tool_step)
        with self.tracer.start_as_current_span(
            f"execute_tool {call.name}",
            attributes={
                attr.GEN_AI_OPERATION_NAME: "execute_tool",
                attr.GEN_AI_TOOL_NAME: call.name,
                attr.GEN_AI_TOOL_CALL_ID: call.id,
                attr.AGENTSTREAM_TOOL_IDEMPOTENCY_KEY: action.idempotency_key,
                attr.AGENTSTREAM_STEP_INDEX: action.index,
                **ids_attributes(routed),
            },
        ) as span:
            started = time.perf_counter()
            if call.name in DEMO_TOOLS:
                fn = DEMO_TOOLS[call.name][1]
                result, executed_now = await self.ledger.run(
                    action.idempotency_key,
                    call.name,
                    call.arguments,
                    fn,
                    self.config_of(routed).execution.tool_timeout_s,
                    request_id=request_id,
                )
                span.set_attribute(attr.AGENTSTREAM_TOOL_EXECUTED_NOW, executed_now)
            else:
                result = {"error": f"unknown tool {call.name!r}"}
            if "error" in result:
                mark_error(span, "tool_error", str(result["error"]))
            latency = (time.perf_counter() - started) * 1000
        result_step = replace(
            tool_step,
            index=action.index + 1,
            kind="tool_result",
            name=call.id,
            arguments="",
            result=json.dumps(result, sort_keys=True),
            status="error" if "error" in result else "ok",
            latency_ms=latency,
        )
        # The call done and its result in one write: a crash before it re-runs the call through
        # the ledger, which returns the recorded result.
        await self._write_step(sid, request_id, replace(tool_step, status="done", latency_ms=latency), result_step)

    async def _finish(
        self, sid: str, request_id: str, routed: dict[str, Any], fin: Finish, span: Any
    ) -> None:
        if fin.hold:
            # A hold step: the step fields of an empty LLM step, with the hold's own.
            held = fin.hold
            await self._write_step(sid, request_id, held.as_step())
            if span is not None:
                span.add_event("hold", {attr.GEN_AI_TOOL_NAME: held.name, "reason": held.result})
        steps = self._steps(sid, request_id)
        task = state.current_task(self.sessions[sid])
        assert task is not None
        follow_up = task.follow_up
        # A resumed task's earlier steps were counted (and settled) with its first answer.
        used = steps[task.counted_from :]
        answer = fin.answer
        if fin.status in ("degraded", "fallback") and not answer:
            answer = FALLBACK_ANSWER
        executed = Executed(
            request_id=request_id,
            session_id=sid,
            user_id=routed["user_id"],
            tenant_id=routed["tenant_id"],
            language=routed["language"],
            domain=routed["domain"],
            model=routed["model"],
            rollout_arm=routed["rollout_arm"],
            config_version=routed["config_version"],
            status=fin.status,
            answer=answer,
            reasons=list(fin.reasons),
            notes=list(routed["notes"]),
            steps=[step_record(s) for s in steps],
            input_tokens=sum(s.input_tokens for s in used),
            output_tokens=sum(s.output_tokens for s in used),
            llm_calls=sum(1 for s in used if s.kind == "llm_call"),
            created_ms=routed["created_ms"],
            executed_ms=now_ms(),
            complexity=routed.get("complexity", ""),
            follow_up=follow_up,
        )
        executed.cost_usd = self.config_of(routed).cost_usd(executed.model, executed.input_tokens, executed.output_tokens)
        hold = fin.hold
        found = findings(executed, self.checks(executed.config_version)) if fin.status == "ok" else []
        if hold is None and (fin.status == "escalated" or found):
            # The verifier will hold this answer for a human: keep what a decision resumes.
            hold = HoldSpec(kind="answer", draft=answer, result="; ".join(fin.reasons or found))
        headers: dict[str, bytes] = {}
        if span is not None:
            span.set_attribute(attr.AGENTSTREAM_TASK_STATUS, fin.status)
            headers = headers_with_context(span)
        await self._fence(sid)
        # Delivered before the task is marked done: a crash in between re-emits (the responder
        # drops the copy) instead of losing the answer.
        await self.emit(executed, headers)
        await self.settle(executed)
        await self._fence(sid)
        self.write(
            sid,
            state.finish_task(
                self.sessions[sid], request_id, fin.status, answer, hold, now_ms(), refunded=refunded_by(used)
            ),
        )


def ids_attributes(routed: dict[str, Any]) -> dict[str, Any]:
    return {
        attr.AGENTSTREAM_REQUEST_ID: routed["request_id"],
        attr.AGENTSTREAM_SESSION_ID: routed["session_id"],
        attr.AGENTSTREAM_USER_ID: routed["user_id"],
        attr.AGENTSTREAM_TENANT_ID: routed["tenant_id"],
        attr.AGENTSTREAM_DOMAIN: routed["domain"],
        attr.AGENTSTREAM_ROLLOUT_ARM: routed["rollout_arm"],
        attr.AGENTSTREAM_CONFIG_VERSION: routed["config_version"],
    }


def output_messages(resp: ChatResponse) -> str:
    """The answer as received, in the GenAI conventions' output-messages shape."""
    parts: list[dict[str, Any]] = []
    if resp.content:
        parts.append({"type": "text", "content": resp.content})
    parts += [
        {"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments} for c in resp.tool_calls
    ]
    return json.dumps(
        [{"role": "assistant", "parts": parts, "finish_reason": resp.finish_reason}], ensure_ascii=False
    )


def step_record(s: StepState) -> Step:
    """The Avro `Step` of a recorded step (a hold's `call_id` stays in the session)."""
    return Step(
        index=s.index, kind=s.kind, name=s.name, arguments=s.arguments, result=s.result,
        idempotency_key=s.idempotency_key, input_tokens=s.input_tokens,
        output_tokens=s.output_tokens, latency_ms=s.latency_ms, status=s.status,
    )


async def _no_wait() -> None:
    return None


def _task_steps(session: Session | None, request_id: str) -> list[StepState]:
    """The steps of the session's current task, which must be `request_id`'s."""
    task = state.current_task(session)
    assert task and task.request_id == request_id
    return task.steps
