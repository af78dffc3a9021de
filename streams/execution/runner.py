"""Runs queued tasks in the background, one runner per session, many sessions at once.

Why not faust's agent `concurrency`: it can commit offsets past events still being processed
(faust-streaming#606). Here the domain agent only *records* a task in the changelog-backed
`sessions` table (committed before its offset), and the runner drives it step by step, writing every
step back to the table. After a crash or a rebalance, whichever worker owns the session's partition
finds the unfinished task in the rebuilt table and resumes it at its last recorded step.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streams import sessions as state
from streams.config import PipelineConfig
from streams.execution.breaker import BreakerBoard
from streams.execution.logic import (
    CallLLM,
    Finish,
    RunTool,
    build_messages,
    canonical_args,
    plan_next,
)
from streams.execution.tools import DEMO_TOOLS, ToolLedger, tools_for
from streams.llm.base import ChatRequest, LLMError, Provider
from streams.llm.retry import call_with_retries_outcome
from streams.partitioning import partition_for
from streams.records import Executed, Step, now_ms

log = logging.getLogger(__name__)

FALLBACK_ANSWER = (
    "Sorry, our assistant is temporarily unavailable. Your request is saved and a person will "
    "follow up shortly."
)


def llm_step(index: int, model: str) -> dict[str, Any]:
    return {
        "index": index,
        "kind": "llm_call",
        "name": model,
        "arguments": "",
        "result": "",
        "idempotency_key": "",
        "input_tokens": 0,
        "output_tokens": 0,
        "latency_ms": 0.0,
        "status": "ok",
    }


@dataclass
class TaskRunner:
    """Worker-local driver of the agent loop; the durable state is the `sessions` table."""

    sessions: Any  # faust Table[str, dict]
    emit: Callable[[Executed], Any]  # async: publish an Executed event
    provider: Provider
    cfg: PipelineConfig
    ledger: ToolLedger
    partitions: int
    owned: Callable[[int], bool]  # is this partition actively ours right now?
    crash: Callable[[BaseException], None]  # makes a runner bug end the worker loudly
    inflight: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    breakers: BreakerBoard = field(init=False)
    recovered: bool = False  # first recovery logged

    def __post_init__(self) -> None:
        ex = self.cfg.execution
        self.breakers = BreakerBoard(ex.breaker_failures, ex.breaker_cooldown_s)

    def kick(self, session_id: str) -> None:
        """Starts the session's runner unless one is already going."""
        if session_id not in self.inflight:
            task = asyncio.create_task(self._run(session_id), name=f"runner:{session_id}")
            self.inflight[session_id] = task

    def resume_all(self) -> int:
        """Starts runners for every owned session with unfinished tasks (after recovery)."""
        started = 0
        for sid, s in list(self.sessions.items()):
            if s and s.get("queue") and sid not in self.inflight and self.owned(self._part(sid)):
                self.kick(sid)
                started += 1
        return started

    def revoke(self, partitions: set[int]) -> None:
        for sid, task in list(self.inflight.items()):
            if self._part(sid) in partitions:
                task.cancel()

    def _part(self, session_id: str) -> int:
        return partition_for(session_id, self.partitions)

    async def _run(self, sid: str) -> None:
        try:
            while True:
                task = state.current_task(self.sessions.get(sid))
                if task is None or not self.owned(self._part(sid)):
                    return
                await self._drive(sid, task["request_id"], task["routed"])
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not go silent: the process ends, the task resumes elsewhere
            log.exception("runner for session %s crashed", sid)
            self.crash(RuntimeError(f"runner for session {sid} crashed"))
        finally:
            self.inflight.pop(sid, None)

    def _steps(self, sid: str, request_id: str) -> list[dict[str, Any]]:
        task = state.current_task(self.sessions.get(sid))
        assert task and task["request_id"] == request_id
        return task["steps"]

    def _write_step(self, sid: str, request_id: str, step: dict[str, Any]) -> None:
        if not self.owned(self._part(sid)):
            raise asyncio.CancelledError
        self.sessions[sid] = state.record_step(self.sessions[sid], request_id, step, now_ms())

    async def _drive(self, sid: str, request_id: str, routed: dict[str, Any]) -> None:
        ex, policy = self.cfg.execution, self.cfg.policy
        domain = self.cfg.domains[routed["domain"]]
        while True:
            steps = self._steps(sid, request_id)
            action = plan_next(request_id, steps, ex, policy)
            if isinstance(action, CallLLM):
                session = self.sessions[sid]
                history = [
                    {"role": m["role"], "content": m["content"]} for m in session["conversation"]
                ]
                messages = build_messages(
                    domain, history, routed["context"], routed["text"], steps, routed["notes"]
                )
                step = await self._call_llm(action.index, routed, messages, request_id)
                self._write_step(sid, request_id, step)
            elif isinstance(action, RunTool):
                await self._run_tool(sid, request_id, action)
            else:
                await self._finish(sid, request_id, routed, action)
                return

    async def _call_llm(
        self, index: int, routed: dict[str, Any], messages: list[dict[str, Any]], request_id: str
    ) -> dict[str, Any]:
        ex = self.cfg.execution
        model = routed["model"]
        step = llm_step(index, model)
        step["arguments"] = json.dumps(messages, ensure_ascii=False)
        breaker = self.breakers.get(self.provider.name, model)
        if not breaker.allow():
            step["status"] = "fallback"
            step["result"] = f"circuit breaker open for {self.provider.name}/{model}; fallback answer"
            return step
        domain = self.cfg.domains[routed["domain"]]
        request = ChatRequest(
            model=model,
            messages=messages,
            max_tokens=routed["max_tokens"],
            tools=tools_for(domain.tools),
            timeout_s=ex.llm_timeout_s,
            call_key=f"{request_id}:{index}",
        )
        started = time.perf_counter()
        try:
            outcome = await call_with_retries_outcome(
                self.provider, request, attempts=ex.llm_attempts, base_delay_s=ex.retry_base_delay_s
            )
        except LLMError as exc:
            breaker.record_failure()
            step["status"] = "degraded"
            step["result"] = (
                f"LLM {exc.kind} after {ex.llm_attempts} attempts ({exc}); fallback answer given"
            )
            step["latency_ms"] = (time.perf_counter() - started) * 1000
            return step
        breaker.record_success()
        resp = outcome.response
        step["result"] = json.dumps(
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
        step["input_tokens"] = resp.input_tokens
        step["output_tokens"] = resp.output_tokens
        step["latency_ms"] = (time.perf_counter() - started) * 1000
        return step

    async def _run_tool(self, sid: str, request_id: str, action: RunTool) -> None:
        call = action.call
        tool_step = {
            "index": action.index,
            "kind": "tool_call",
            "name": call.name,
            "arguments": canonical_args(call.arguments),
            "result": call.id,
            "idempotency_key": action.idempotency_key,
            "input_tokens": 0,
            "output_tokens": 0,
            "latency_ms": 0.0,
            "status": "started",
        }
        self._write_step(sid, request_id, tool_step)
        started = time.perf_counter()
        if call.name in DEMO_TOOLS:
            fn = DEMO_TOOLS[call.name][1]
            result, _ = await self.ledger.run(
                action.idempotency_key, call.name, call.arguments, fn, self.cfg.execution.tool_timeout_s
            )
        else:
            result = {"error": f"unknown tool {call.name!r}"}
        latency = (time.perf_counter() - started) * 1000
        self._write_step(sid, request_id, {**tool_step, "status": "done", "latency_ms": latency})
        result_step = {
            **tool_step,
            "index": action.index + 1,
            "kind": "tool_result",
            "name": call.id,
            "arguments": "",
            "result": json.dumps(result, sort_keys=True),
            "status": "error" if "error" in result else "ok",
            "latency_ms": latency,
        }
        self._write_step(sid, request_id, result_step)

    async def _finish(self, sid: str, request_id: str, routed: dict[str, Any], fin: Finish) -> None:
        if fin.hold:
            self._write_step(sid, request_id, {**llm_step(fin.hold["index"], ""), **fin.hold})
        steps = self._steps(sid, request_id)
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
            input_tokens=sum(s["input_tokens"] for s in steps),
            output_tokens=sum(s["output_tokens"] for s in steps),
            llm_calls=sum(1 for s in steps if s["kind"] == "llm_call"),
            created_ms=routed["created_ms"],
            executed_ms=now_ms(),
        )
        await self.emit(executed)
        if not self.owned(self._part(sid)):
            raise asyncio.CancelledError
        self.sessions[sid] = state.finish_task(
            self.sessions[sid], request_id, fin.status, answer, fin.hold, now_ms()
        )


def step_record(s: dict[str, Any]) -> Step:
    return Step(**{k: s.get(k, v) for k, v in llm_step(0, "").items()})
