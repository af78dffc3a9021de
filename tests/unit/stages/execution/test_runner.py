"""The task runner against an in-memory table: breaker, fallback, resume from a recorded step."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import asdict, replace
from typing import Any

from msgspec.structs import replace as replace_step

from streams.config.pipeline import load_config
from streams.events.records import Executed, Routed
from streams.llm.base import ChatRequest, ChatResponse, ProviderUnavailable
from streams.llm.simulator import SimulatedProvider, SimulatorConfig
from streams.stages.execution.runner import FALLBACK_ANSWER, TaskRunner
from streams.stages.execution.tools import ToolLedger
from streams.state import sessions as state
from streams.state.model import Session, StepState, Task
from streams.state.store import MemorySessions

CFG = load_config()


def routed(rid: str, sid: str, text: str, domain: str = "billing") -> dict[str, Any]:
    return asdict(
        Routed(
            request_id=rid, session_id=sid, user_id="u", tenant_id="t", text=text, language="en",
            domain=domain, model="sim-large", max_tokens=256, complexity="low", rollout_arm="control",
            config_version=CFG.version, notes=[], context=[], created_ms=1, routed_ms=1,
        )
    )


class Down:
    """A provider that is always unavailable, counting the calls that reach it."""

    name = "down"

    def __init__(self) -> None:
        self.calls = 0

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        raise ProviderUnavailable("connection refused")


def make_runner(provider: Any, tmp_path, **cfg_changes: Any) -> tuple[TaskRunner, MemorySessions, list]:
    table = MemorySessions()  # encoded values, decoded on read: as the Faust table behaves
    out: list[Executed] = []

    async def emit(ex: Executed, headers: dict[str, bytes]) -> None:
        out.append(ex)

    cfg = replace(CFG, execution=replace(CFG.execution, retry_base_delay_s=0.001, **cfg_changes))
    runner = TaskRunner(
        sessions=table, emit=emit, provider=provider, cfg=cfg, ledger=ToolLedger(tmp_path / "l.sqlite"),
        partitions=4, owned=lambda p: True, crash=lambda exc: (_ for _ in ()).throw(exc),
    )
    return runner, table, out


async def run_all(runner: TaskRunner, table: MemorySessions, items: list[dict[str, Any]]) -> None:
    for r in items:
        table[r["session_id"]], _ = state.enqueue(table.get(r["session_id"]), r, 0)
        runner.kick(r["session_id"])
        await asyncio.gather(*runner.inflight.values())


async def test_breaker_opens_after_failures_and_answers_fallback(tmp_path) -> None:
    provider = Down()
    runner, table, out = make_runner(provider, tmp_path, breaker_failures=2, breaker_cooldown_s=60)
    await run_all(runner, table, [routed(f"r{i}", "s1", "Where is my order?") for i in range(4)])
    assert [e.status for e in out] == ["degraded", "degraded", "fallback", "fallback"]
    assert provider.calls == 2 * CFG.execution.llm_attempts, "an open breaker sends nothing"
    assert all(e.answer == FALLBACK_ANSWER for e in out)
    assert "circuit breaker open" in out[2].reasons[0]
    assert runner.breakers.get("down", "sim-large").trips == 1


async def test_a_task_resumes_at_its_last_recorded_step(tmp_path) -> None:
    sim = SimulatedProvider(SimulatorConfig(latency_ms_mean=1))
    runner, table, out = make_runner(sim, tmp_path)
    item = routed("r-resume", "s2", "Please refund $40 for order 1234")
    await run_all(runner, table, [item])
    # The finished task's steps travel on in its Executed record; the session keeps a line.
    [line] = table["s2"].finished
    assert (line.request_id, line.status, line.steps, line.refunded) == ("r-resume", "ok", 4, 40.0)
    finished = [StepState(**dataclasses.asdict(s)) for s in out[0].steps]  # type: ignore[arg-type]
    assert [s.kind for s in finished] == ["llm_call", "tool_call", "tool_result", "llm_call"]

    # A second worker finds the task with only its first two steps recorded (the tool call had
    # started when the first one died) and finishes it: same steps, the refund not run again.
    runner2, table2, out2 = make_runner(sim, tmp_path)
    table2["s2"], _ = state.enqueue(None, item, 0)
    for step in finished[:2]:
        table2["s2"] = state.record_step(table2["s2"], "r-resume", replace_step(step, status="started") if step.kind == "tool_call" else step, 0)
    runner2.kick("s2")
    await asyncio.gather(*runner2.inflight.values())
    resumed = [StepState(**dataclasses.asdict(s)) for s in out2[0].steps]  # type: ignore[arg-type]
    assert [s.kind for s in resumed] == ["llm_call", "tool_call", "tool_result", "llm_call"]
    assert resumed[0] == finished[0] and resumed[1].idempotency_key == finished[1].idempotency_key
    assert json.loads(resumed[2].result) == json.loads(finished[2].result)
    assert len(ToolLedger(tmp_path / "l.sqlite").executions()) == 1
    assert out2[0].status == "ok" and out2[0].answer == out[0].answer


class Buggy:
    """A provider with a bug (not an LLMError): the runner itself fails on every attempt."""

    name = "buggy"

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise KeyError("bug")


async def test_a_task_that_keeps_failing_is_answered_error_and_dead_lettered(tmp_path) -> None:
    runner, table, out = make_runner(Buggy(), tmp_path)
    crashes: list[BaseException] = []
    dead: list[tuple[str, str]] = []

    async def dead_letter(r: dict[str, Any], reason: str) -> None:
        dead.append((r["request_id"], reason))

    runner.crash = crashes.append
    runner.dead_letter = dead_letter
    table["s9"], _ = state.enqueue(None, routed("r-poison", "s9", "Where is my order?"), 0)
    for _ in range(runner.max_failures):  # each failure would end the worker; the task resumes
        runner.kick("s9")
        await asyncio.gather(*runner.inflight.values(), return_exceptions=True)
    assert len(crashes) == runner.max_failures - 1, "the worker ends on the first failures"
    assert [e.status for e in out] == ["error"]
    assert "failed 3 times" in out[0].reasons[0] and "KeyError" in out[0].reasons[0]
    assert dead == [("r-poison", out[0].reasons[0])]
    assert not table["s9"].queue, "the partition is free for the next task"


async def test_a_give_up_interrupted_by_a_crash_is_finished_without_running_the_task_again(tmp_path) -> None:
    """The worker died after recording the last failure but before the error answer: the next
    owner answers `error` at once instead of running (and paying for) the task once more."""
    calls: list[str] = []

    class Counting(Buggy):
        async def chat(self, request: ChatRequest) -> ChatResponse:
            calls.append("chat")
            return await super().chat(request)

    runner, table, out = make_runner(Counting(), tmp_path)
    dead: list[str] = []

    async def dead_letter(r: dict[str, Any], reason: str) -> None:
        dead.append(r["request_id"])

    runner.dead_letter = dead_letter
    given_up, _ = state.enqueue(None, routed("r-given-up", "s8", "Where is my order?"), 0)
    given_up.queue[0].failures = runner.max_failures
    table["s8"] = given_up
    runner.kick("s8")
    await asyncio.gather(*runner.inflight.values(), return_exceptions=True)
    assert calls == [], "no LLM call for a task already given up"
    assert [e.status for e in out] == ["error"] and dead == ["r-given-up"]
    assert not table["s8"].queue


def _with_queue(sid: str, *request_ids: str) -> Session:
    s = state.new_session(sid, "u", "t")
    s.queue = [Task(request_id=rid, routed={}) for rid in request_ids]
    return s


async def test_resume_all_walks_the_index_and_rescans_after_an_assignment(tmp_path) -> None:
    runner, table, _ = make_runner(SimulatedProvider(SimulatorConfig(latency_ms_mean=0)), tmp_path)
    kicked: list[str] = []
    runner.kick = kicked.append  # type: ignore[method-assign]
    table["idle"], table["busy"] = _with_queue("idle"), _with_queue("busy", "r")
    assert runner.resume_all() == 1 and kicked == ["busy"], "the first call scans the table"
    table["recovered"] = _with_queue("recovered", "r2")  # a changelog value, not our write
    kicked.clear()
    runner.resume_all()
    assert kicked == ["busy"], "no scan between assignments"
    runner.rescan = True
    kicked.clear()
    runner.resume_all()
    assert sorted(kicked) == ["busy", "recovered"]
    runner.write("busy", _with_queue("busy"))
    kicked.clear()
    runner.resume_all()
    assert kicked == ["recovered"] and "busy" not in runner.unfinished
