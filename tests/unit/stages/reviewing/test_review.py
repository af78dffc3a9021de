"""Human review as pure state transitions: hold -> decision -> resumed task -> final answer."""

import json
from dataclasses import replace

import pytest
from msgspec.structs import replace as replace_step

from streams.config.pipeline import load_config
from streams.events.records import Escalation, Executed, HumanDecision
from streams.stages.execution.logic import CallLLM, Finish, RunTool, plan_next
from streams.stages.execution.runner import step_record
from streams.stages.reviewing.queue import pending_reviews
from streams.stages.verification.logic import checks_for, verify
from streams.state import sessions as state
from streams.state.model import HoldSpec, Session, StepState
from streams.telemetry.redaction import Redactor
from tests.unit.steps import llm

CFG = load_config()
CHECKS = checks_for(CFG.policy, Redactor().findings)
REFUND = {"id": "c1", "name": "issue_refund", "arguments": {"order_id": "77", "amount": 250}}
ROUTED = {"request_id": "r1", "session_id": "s1", "user_id": "u1", "tenant_id": "t", "text": "refund 250 on #77"}


def plan(steps: list[StepState]):
    return plan_next("r1", steps, CFG.execution, CFG.policy)


def held_session() -> Session:
    """A session whose refund task was held: what the runner leaves after `_finish`."""
    s, _ = state.enqueue(None, ROUTED, 1_000)
    s = state.record_step(s, "r1", llm(0, calls=[REFUND]), 1_050)
    fin = plan(state.current_task(s).steps)
    assert isinstance(fin, Finish) and fin.status == "escalated" and fin.hold
    s = state.record_step(s, "r1", fin.hold.as_step(), 1_100)
    return state.finish_task(s, "r1", "escalated", "", fin.hold, 1_200)


def decision(verdict: str, **extra: str) -> dict:
    return {"request_id": "r1", "session_id": "s1", "reviewer": "alice", "decision": verdict,
            "note": extra.pop("note", ""), "decided_ms": 2_000, "decision_id": extra.pop("decision_id", "d1"),
            "edited_answer": extra.pop("edited_answer", ""), "edited_arguments": extra.pop("edited_arguments", "")}


def test_a_held_task_is_kept_pending_and_the_session_does_not_expire() -> None:
    s = held_session()
    assert state.pending_hold(s, "r1").call_id == "c1"
    assert not state.expired(s, 10**13), "a session waiting for a human outlives its TTL"


def test_approve_resumes_the_task_and_runs_the_held_call_past_the_policy() -> None:
    s, fresh = state.decide(held_session(), decision("approve"), 2_100)
    assert fresh and not state.pending_hold(s, "r1")
    task = state.current_task(s)
    assert task.follow_up == 1 and [x.kind for x in task.steps] == ["llm_call", "hold", "review"]
    action = plan(task.steps)
    assert isinstance(action, RunTool) and action.index == 3
    assert action.call.arguments == {"order_id": "77", "amount": 250}


def test_edit_runs_the_call_with_the_edited_arguments() -> None:
    s, _ = state.decide(held_session(), decision("edit", edited_arguments='{"order_id": "77", "amount": 90}'), 2_100)
    action = plan(state.current_task(s).steps)
    assert isinstance(action, RunTool) and action.call.arguments == {"order_id": "77", "amount": 90}
    approved = plan(state.current_task(state.decide(held_session(), decision("approve"), 2_100)[0]).steps)
    assert action.idempotency_key != approved.idempotency_key, "a different call, a different key"


def test_reject_tells_the_model_and_the_call_never_runs() -> None:
    s, _ = state.decide(held_session(), decision("reject", note="fraud suspected"), 2_100)
    steps = state.current_task(s).steps
    assert steps[-1].kind == "tool_result" and "fraud suspected" in steps[-1].result
    assert plan(steps) == CallLLM(len(steps))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (decision("maybe"), "approve, edit or reject"),
        (decision("edit", edited_arguments="[1, 2]"), "JSON object"),
        (decision("edit", edited_arguments="{not json"), "not JSON"),
        ({**decision("approve"), "reviewer": " "}, "names its reviewer"),
        ({**decision("approve"), "request_id": "other"}, "no pending escalation"),
    ],
)
def test_a_decision_that_cannot_apply_is_refused(bad: dict, message: str) -> None:
    with pytest.raises(state.DecisionRefused, match=message):
        state.decide(held_session(), bad, 2_100)


def test_a_second_decision_is_refused_and_a_redelivered_one_is_a_no_op() -> None:
    s, _ = state.decide(held_session(), decision("approve"), 2_100)
    again, fresh = state.decide(s, decision("approve"), 2_200)
    assert not fresh and again == s
    with pytest.raises(state.DecisionRefused, match=r"already decided \(approve by alice"):
        state.decide(s, decision("reject", decision_id="d2"), 2_200)


def test_a_held_answer_is_given_edited_or_declined() -> None:
    s, _ = state.enqueue(None, ROUTED, 1_000)
    hold = HoldSpec(kind="answer", draft="Your card 4111 1111 1111 1111 is blocked.", result="possible personal data")
    s = state.finish_task(s, "r1", "ok", hold.draft, hold, 1_200)
    approved = state.current_task(state.decide(s, decision("approve"), 2_000)[0])
    assert plan(approved.steps) == Finish("ok", hold.draft)
    edited = state.current_task(state.decide(s, decision("edit", edited_answer="Your card is blocked."), 2_000)[0])
    assert plan(edited.steps) == Finish("ok", "Your card is blocked.")
    rejected = plan(state.current_task(state.decide(s, decision("reject", note="no"), 2_000)[0]).steps)
    assert isinstance(rejected, Finish) and rejected.status == "blocked" and "no" in rejected.reasons[0]
    with pytest.raises(state.DecisionRefused, match="edited answer"):
        state.decide(s, decision("edit"), 2_000)


def _executed(steps: list[StepState], answer: str, follow_up: int) -> Executed:
    return Executed(
        request_id="r1", session_id="s1", user_id="u1", tenant_id="t", language="en", domain="account",
        model="m", rollout_arm="control", config_version="v", status="ok", answer=answer,
        steps=[step_record(s) for s in steps],
        input_tokens=0, output_tokens=0, llm_calls=1, created_ms=0, executed_ms=1, follow_up=follow_up,
    )


def test_an_approved_high_stakes_call_is_not_escalated_again_and_the_response_is_a_follow_up() -> None:
    call = StepState(index=3, kind="tool_call", name="delete_account", arguments="{}", result="c9", status="done")
    review = StepState(index=2, kind="review", name="c9", arguments="{}", result="{}", status="approved")
    verdict = verify(_executed([llm(0), review, call], "Done.", 1), CHECKS)
    assert verdict.escalation is None and verdict.response.status == "ok"
    assert verdict.response.follow_up == 1 and verdict.response.answer_key() == "r1#1"
    unreviewed = verify(_executed([llm(0), call], "Done.", 0), CHECKS)
    assert unreviewed.escalation is not None and unreviewed.response.answer_key() == "r1"


def test_held_deletes_are_high_priority() -> None:
    hold = StepState(index=1, kind="hold", name="delete_account", arguments="{}", result="held", status="held")
    ex = _executed([llm(0), hold], "", 0)
    ex.status, ex.reasons = "escalated", ["held for human review"]
    assert verify(ex, CHECKS).escalation.priority == "high"
    refund = _executed([llm(0), replace_step(hold, name="issue_refund")], "", 0)
    refund.status, refund.reasons = "escalated", ["held for human review"]
    assert verify(refund, CHECKS).escalation.priority == "normal"


def test_the_queue_lists_escalations_without_a_later_decision_high_priority_first() -> None:
    def esc(rid: str, at: int, priority: str = "normal", follow_up: int = 0) -> Escalation:
        return Escalation(request_id=rid, session_id="s", user_id="u", tenant_id="t", domain="billing",
                          reasons=["x"], created_ms=0, escalated_ms=at, priority=priority, follow_up=follow_up)

    def dec(rid: str, at: int) -> HumanDecision:
        return HumanDecision(request_id=rid, session_id="s", reviewer="a", decision="approve", decided_ms=at)

    escalations = [esc("a", 10), esc("b", 20, "high"), esc("c", 30), esc("c", 50, follow_up=1), esc("d", 5),
                   esc("e", 5), esc("e", 9)]  # e escalated again (a re-run) after a refused decision
    decisions = [dec("c", 40), dec("d", 6), dec("e", 6)]
    assert [p.request_id for p in pending_reviews(escalations, decisions)] == ["b", "e", "a", "c"]
    assert json.dumps([p.kind for p in pending_reviews(escalations, decisions)]) == '["answer", "answer", "answer", "answer"]'


def test_record_step_leaves_the_value_it_was_given_untouched() -> None:
    import copy

    s, _ = state.enqueue(None, ROUTED, 1_000)
    s = state.finish_task(state.record_step(s, "r1", llm(0, "hi"), 1_001), "r1", "ok", "hi", None, 1_002)
    s, _ = state.enqueue(s, {**ROUTED, "request_id": "r2"}, 1_003)
    before = copy.deepcopy(s)
    after = state.record_step(s, "r2", llm(0, "yo"), 1_004)
    assert s == before, "the table's current value (maybe not yet serialized) is not mutated"
    assert len(after.queue[0].steps) == 1 and not s.queue[0].steps
    assert after.finished is s.finished and after.conversation is s.conversation, "untouched parts are shared, not copied"


def test_a_redelivered_decision_never_approves_a_later_hold_of_the_same_request() -> None:
    s, _ = state.decide(held_session(), decision("approve"), 2_100)
    # The resumed run holds another call of the same request (round 1).
    s = state.finish_task(s, "r1", "escalated", "", HoldSpec(index=5, kind="hold", name="delete_account",
                                                              arguments="{}", result="held", call_id="c2"), 2_200)
    again, fresh = state.decide(s, decision("approve"), 2_300)
    assert not fresh and state.pending_hold(again, "r1").call_id == "c2", "d1 is a duplicate, c2 still waits"
    with pytest.raises(state.DecisionRefused, match="round 0 of r1, but round 1 is pending"):
        state.decide(s, decision("approve", decision_id="d2"), 2_300)
    resumed, fresh = state.decide(s, {**decision("approve", decision_id="d3"), "follow_up": 1}, 2_300)
    assert fresh and state.current_task(resumed).follow_up == 2


def test_the_resumed_run_counts_only_its_own_usage_and_an_approval_at_the_step_limit_runs() -> None:
    s, _ = state.decide(held_session(), decision("approve"), 2_100)
    task = state.current_task(s)
    assert task.counted_from == 2, "the first run's llm call and hold were settled with its answer"
    steps = [llm(i) for i in range(CFG.execution.max_steps - 2)]
    steps.append(llm(len(steps), calls=[REFUND]))
    hold = plan(steps)
    assert isinstance(hold, Finish) and hold.hold
    steps.append(hold.hold.as_step())
    steps.append(StepState(index=len(steps), kind="review", name="c1", arguments=hold.hold.arguments,
                           result="{}", status="approved"))
    assert len(steps) > CFG.execution.max_steps and isinstance(plan(steps), RunTool)


def test_what_the_verifier_holds_comes_from_the_config_policy() -> None:
    """The held tools and the personal-data labels are configuration; the detector is the
    redactor's (one detector in the product)."""
    call = StepState(index=1, kind="tool_call", name="export_personal_data", arguments="{}", result="c1", status="done")
    assert any("export_personal_data" in r for r in verify(_executed([llm(0), call], "Done.", 0), CHECKS).escalation.reasons)
    lenient = checks_for(replace(CFG.policy, held_tools=()), Redactor().findings)
    assert verify(_executed([llm(0), call], "Done.", 0), lenient).escalation is None

    card = "Your card 4111 1111 1111 1111 is on file."
    assert verify(_executed([llm(0)], card, 0), CHECKS).escalation.reasons == ["possible personal data in the answer (CARD)"]
    email = "We wrote to jane.doe@example.com."
    assert verify(_executed([llm(0)], email, 0), CHECKS).escalation is None
    strict = checks_for(replace(CFG.policy, answer_personal_data=("EMAIL",)), Redactor().findings)
    assert verify(_executed([llm(0)], email, 0), strict).escalation.reasons == ["possible personal data in the answer (EMAIL)"]
    assert verify(_executed([llm(0)], card, 0), strict).escalation is None
