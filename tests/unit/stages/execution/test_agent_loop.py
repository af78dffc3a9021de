import json

from msgspec.structs import replace

from streams.config.pipeline import load_config
from streams.llm.base import ToolCall
from streams.stages.execution.breaker import CircuitBreaker
from streams.stages.execution.logic import CallLLM, Finish, RunTool, idempotency_key, plan_next
from streams.stages.execution.policy import hold_reason
from streams.state.model import StepState, Task
from tests.unit.steps import llm, tool

CFG = load_config()


def plan(steps: list[StepState]):
    return plan_next("req-1", steps, CFG.execution, CFG.policy)


def test_first_step_is_an_llm_call_and_a_final_answer_finishes() -> None:
    assert plan([]) == CallLLM(0)
    fin = plan([llm(0, "hello")])
    assert isinstance(fin, Finish) and fin.status == "ok" and fin.answer == "hello"


def test_small_refund_runs_large_refund_is_held() -> None:
    small = plan([llm(0, calls=[{"id": "c1", "name": "issue_refund", "arguments": {"order_id": "1234", "amount": 40}}])])
    assert isinstance(small, RunTool) and small.call.name == "issue_refund" and small.index == 1
    big = plan([llm(0, calls=[{"id": "c1", "name": "issue_refund", "arguments": {"order_id": "77", "amount": 250}}])])
    assert isinstance(big, Finish) and big.status == "escalated"
    assert "$250.00" in big.reasons[0] and big.hold and big.hold.kind == "hold"


def test_account_actions_are_held() -> None:
    assert hold_reason("delete_account", {}, CFG.policy)
    assert hold_reason("lookup_order", {"order_id": "1"}, CFG.policy) is None
    assert hold_reason("lookup_order", {"ssn": "x"}, CFG.policy)


def test_after_tool_result_the_model_is_called_again() -> None:
    calls = [{"id": "c1", "name": "lookup_order", "arguments": {"order_id": "1"}}]
    steps = [llm(0, calls=calls), *tool(1, "lookup_order", {"order_id": "1"}, "c1")]
    assert plan(steps) == CallLLM(3)


def test_a_started_tool_call_resumes_with_the_same_key() -> None:
    calls = [{"id": "c1", "name": "issue_refund", "arguments": {"order_id": "1234", "amount": 40}}]
    steps = [llm(0, calls=calls), *tool(1, "issue_refund", calls[0]["arguments"], "c1", status="started")]
    again = plan(steps)
    assert isinstance(again, RunTool) and again.index == 1
    assert again.idempotency_key == idempotency_key("req-1", 1, ToolCall("c1", "issue_refund", calls[0]["arguments"]))


def test_loop_detector_stops_the_third_identical_call() -> None:
    call = {"id": "c", "name": "lookup_order", "arguments": {"order_id": "1"}}
    steps = [llm(0, calls=[call]), *tool(1, "lookup_order", {"order_id": "1"}, "c"),
             llm(3, calls=[{**call, "id": "d"}]), *tool(4, "lookup_order", {"order_id": "1"}, "d"),
             llm(6, calls=[{**call, "id": "e"}])]
    fin = plan(steps)
    assert isinstance(fin, Finish) and fin.status == "escalated" and "loop detected" in fin.reasons[0]


def test_step_limit_ends_with_error() -> None:
    steps = []
    for i in range(3):
        steps += [llm(len(steps), calls=[{"id": f"c{i}", "name": "lookup_order", "arguments": {"order_id": str(i)}}])]
        steps += tool(len(steps), "lookup_order", {"order_id": str(i)}, f"c{i}")
    steps += [llm(len(steps), calls=[{"id": "z", "name": "lookup_order", "arguments": {"order_id": "9"}}])]
    fin = plan(steps)
    assert isinstance(fin, Finish) and fin.status == "error" and "step limit" in fin.reasons[0]


def test_failed_llm_step_finishes_with_its_status() -> None:
    fin = plan([replace(llm(0, status="degraded"), result="rate limited")])
    assert isinstance(fin, Finish) and fin.status == "degraded"


def test_circuit_breaker_opens_and_half_opens() -> None:
    now = [0.0]
    b = CircuitBreaker(failure_threshold=2, cooldown_s=10, clock=lambda: now[0])
    b.record_failure()
    assert b.allow()
    b.record_failure()
    assert b.state == "open" and not b.allow()
    now[0] = 11
    assert b.allow() and b.state == "half_open"
    b.record_failure()
    assert b.state == "open" and b.trips == 2
    now[0] = 22
    assert b.allow()
    b.record_success()
    assert b.state == "closed"


def test_context_is_trimmed_oldest_first_and_counted() -> None:
    from streams.stages.execution.logic import build_messages

    domain = CFG.domains["billing"]
    history = [{"role": "user", "content": "a" * 100}, {"role": "assistant", "content": "b" * 50}]
    msgs, trimmed = build_messages(domain, history, [], "hi", [], [], max_context_chars=10_000)
    assert trimmed == 0 and [m["content"] for m in msgs[1:3]] == ["a" * 100, "b" * 50]
    budget = len(domain.system_prompt) + len("hi") + 60
    msgs, trimmed = build_messages(domain, history, [], "hi", [], [], max_context_chars=budget)
    assert trimmed == 100 and [m["content"] for m in msgs[1:]] == ["b" * 50, "hi"]


def test_sessions_expire_only_when_idle_and_empty() -> None:
    from streams.state import sessions as state

    s, fresh = state.enqueue(None, {"request_id": "r", "session_id": "s", "user_id": "u", "tenant_id": "t"}, 0)
    assert fresh and not state.expired(s, state.SESSION_TTL_MS + 1), "a queued task keeps it alive"
    again, fresh = state.enqueue(s, {"request_id": "r", "session_id": "s", "user_id": "u", "tenant_id": "t"}, 5)
    assert not fresh and len(again.queue) == 1, "a request id is taken in once"
    s.queue.clear()
    assert not state.expired(s, state.SESSION_TTL_MS - 1)
    assert state.expired(s, state.SESSION_TTL_MS + 1)


def test_refund_amounts_that_are_not_positive_numbers_are_held_never_run() -> None:
    for amount in ("NaN", float("nan"), "inf", float("-inf"), -5, 0, "12abc", True, None, [40], "1e999"):
        reason = hold_reason("issue_refund", {"order_id": "1", "amount": amount}, CFG.policy)
        assert reason and "not a positive number" in reason, amount
        step = llm(0, calls=[{"id": "c1", "name": "issue_refund", "arguments": {"order_id": "1", "amount": amount}}])
        assert isinstance(plan([step]), Finish), f"{amount!r} must not reach the tool"
    assert hold_reason("issue_refund", {"order_id": "1", "amount": "40"}, CFG.policy) is None


def test_small_refunds_that_add_up_past_the_session_limit_are_held() -> None:
    from streams.stages.execution.policy import refunded, refunded_by
    from streams.state import sessions as state

    def refund(amount: float) -> list[StepState]:
        steps = tool(1, "issue_refund", {"order_id": "1", "amount": amount}, "c1")
        steps[1].result = json.dumps({"order_id": "1", "amount": amount, "refund_id": "R"})
        return [llm(0), *steps]

    limit = CFG.policy.refund_session_limit
    n = int(limit // 90)
    history = state.new_session("s", "u", "t")
    # The first as a value written before `finished` existed keeps it: a whole task in `history`.
    history.history.append(Task(request_id="r0", routed={"created_ms": 10_000}, steps=refund(90.0)))
    for i in range(1, n):
        steps = refund(90.0)
        history.queue.append(Task(request_id=f"r{i}", routed={"created_ms": 10_000 + i, "text": "t"}, steps=steps))
        history = state.finish_task(history, f"r{i}", "ok", "done", None, 15_000, refunded=refunded_by(steps))
    assert [f.refunded for f in history.finished] == [90.0] * (n - 1) and len(history.history) == 1
    before = refunded(history, since_ms=0)
    assert before == 90.0 * n and before + 90 > limit
    step = llm(0, calls=[{"id": "c1", "name": "issue_refund", "arguments": {"order_id": "1", "amount": 90}}])
    held = plan_next("req-9", [step], CFG.execution, CFG.policy, before)
    assert isinstance(held, Finish) and held.status == "escalated" and "total" in held.reasons[0]
    assert refunded(history, since_ms=20_000) == 0, "refunds before the window do not count"
    assert isinstance(plan_next("req-9", [step], CFG.execution, CFG.policy, 0.0), RunTool)
    # Refunds earlier in the same task count too.
    calls = [{"id": f"c{i}", "name": "issue_refund", "arguments": {"order_id": "1", "amount": 90}} for i in range(4)]
    steps = [llm(0, calls=calls)]
    for i in range(int(limit // 90)):
        pair = tool(len(steps), "issue_refund", {"order_id": "1", "amount": 90}, f"c{i}")
        pair[1].result = json.dumps({"amount": 90})
        steps += pair
    assert isinstance(plan(steps), Finish), "the call that passes the limit within one task is held"
