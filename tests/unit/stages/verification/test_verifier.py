"""The verifier's decision on its own: respond, degrade or escalate, and what the escalation holds."""

from streams.config.pipeline import PolicyConfig
from streams.events.records import Executed, Step
from streams.stages.verification.logic import checks_for, verify
from streams.telemetry.redaction import Redactor

POLICY = PolicyConfig(held_tools=("issue_refund",), high_priority_tools=("issue_refund",))
CHECKS = checks_for(POLICY, Redactor().findings)


def executed(answer: str = "Your order ships tomorrow.", **overrides: object) -> Executed:
    fields: dict[str, object] = dict(
        request_id="r1", session_id="s1", user_id="u1", tenant_id="t1", language="en",
        domain="orders", model="sim-large", rollout_arm="stable", config_version="v1",
        status="ok", answer=answer, input_tokens=10, output_tokens=5, llm_calls=1,
        created_ms=1_000, executed_ms=1_050,
    )
    fields.update(overrides)
    return Executed(**fields)  # type: ignore[arg-type]


def test_a_plain_answer_goes_to_the_user_with_its_identity_and_usage() -> None:
    verdict = verify(executed(), CHECKS)
    r = verdict.response
    assert verdict.escalation is None
    assert (r.status, r.reason, r.answer) == ("ok", "answered", "Your order ships tomorrow.")
    assert (r.request_id, r.session_id, r.tenant_id, r.model) == ("r1", "s1", "t1", "sim-large")
    assert (r.input_tokens, r.output_tokens) == (10, 5)


def test_refusal_and_empty_answers_are_escalated_and_the_user_gets_no_draft() -> None:
    for answer, reason in (("I'm sorry, I can't help with that.", "refused"), ("  ", "empty answer")):
        verdict = verify(executed(answer), CHECKS)
        assert verdict.response.status == "escalated" and reason in verdict.response.reason
        assert verdict.response.answer != answer, "the user never sees the held draft"
        assert verdict.escalation is not None and verdict.escalation.draft_answer == answer


def test_personal_data_in_the_answer_is_held_only_for_the_configured_labels() -> None:
    leaky = "Sure, the card on file is 4111 1111 1111 1111."
    held = verify(executed(leaky), CHECKS)
    assert held.response.status == "escalated" and "(CARD)" in held.response.reason
    relaxed = checks_for(PolicyConfig(answer_personal_data=("SSN",)), Redactor().findings)
    assert verify(executed(leaky), relaxed).response.status == "ok"


def test_an_executed_held_tool_escalates_with_high_priority_unless_a_human_approved_it() -> None:
    call = Step(index=1, kind="tool_call", name="issue_refund", arguments='{"amount": 20}', result="c1")
    hold = Step(index=2, kind="hold", name="issue_refund", arguments='{"amount": 20}')
    verdict = verify(executed(steps=[call, hold]), CHECKS)
    assert verdict.response.status == "escalated"
    assert "high-stakes action issue_refund" in verdict.response.reason
    assert verdict.escalation is not None and verdict.escalation.priority == "high"
    assert '"tool": "issue_refund"' in verdict.escalation.held_action

    approved = Step(index=3, kind="review", name="c1", status="approved")
    assert verify(executed(steps=[call, approved]), CHECKS).response.status == "ok"


def test_budget_degradation_and_failures_keep_their_status() -> None:
    degraded = verify(executed(notes=["budget degraded to sim-small"]), CHECKS).response
    assert degraded.status == "degraded" and "budget degraded" in degraded.reason
    failed = verify(executed(status="error", answer="", reasons=["tool crashed"]), CHECKS)
    assert failed.response.status == "error" and failed.response.reason == "tool crashed"
    assert failed.escalation is None, "a failure is answered, not queued for review"
