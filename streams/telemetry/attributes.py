"""Span attribute and event names, declared once (as the OpenTelemetry semantic-conventions
package does). The GenAI ones come from that package, so a renamed convention shows up here;
the `agentstream.*` ones are ours: the sink and the console read spans by these names."""

from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_AGENT_NAME,
    GEN_AI_CONVERSATION_ID,
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_SYSTEM_INSTRUCTIONS,
    GEN_AI_TOOL_CALL_ARGUMENTS,
    GEN_AI_TOOL_CALL_ID,
    GEN_AI_TOOL_CALL_RESULT,
    GEN_AI_TOOL_NAME,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

AGENTSTREAM_BUDGET_ADMITTED = "agentstream.budget.admitted"
AGENTSTREAM_BUDGET_REASON = "agentstream.budget.reason"
AGENTSTREAM_BUDGET_RESERVED_COST_USD = "agentstream.budget.reserved_cost_usd"
AGENTSTREAM_BUDGET_RESERVED_TOKENS = "agentstream.budget.reserved_tokens"
AGENTSTREAM_COMPLEXITY = "agentstream.complexity"
AGENTSTREAM_COMPLEXITY_SCORE = "agentstream.complexity.score"
AGENTSTREAM_CONFIG_VERSION = "agentstream.config.version"
AGENTSTREAM_CONTEXT_TRIMMED = "agentstream.context.trimmed"
AGENTSTREAM_CONTEXT_TRIMMED_CHARS = "agentstream.context.trimmed_chars"
AGENTSTREAM_COST_USD = "agentstream.cost.usd"
AGENTSTREAM_DECISION_FINAL = "agentstream.decision.final"
AGENTSTREAM_DOMAIN = "agentstream.domain"
AGENTSTREAM_DUPLICATE = "agentstream.duplicate"
AGENTSTREAM_ESCALATED = "agentstream.escalated"
AGENTSTREAM_FOLLOW_UP = "agentstream.follow_up"
AGENTSTREAM_LANGUAGE = "agentstream.language"
AGENTSTREAM_LATENCY_MS = "agentstream.latency_ms"
AGENTSTREAM_LLM_ATTEMPTS = "agentstream.llm.attempts"
AGENTSTREAM_LLM_STATUS = "agentstream.llm.status"
AGENTSTREAM_LLM_CALLS = "agentstream.llm_calls"
AGENTSTREAM_MODEL_REASON = "agentstream.model.reason"
AGENTSTREAM_NOTES = "agentstream.notes"
AGENTSTREAM_REASON = "agentstream.reason"
AGENTSTREAM_REASONS = "agentstream.reasons"
AGENTSTREAM_REJECTED = "agentstream.rejected"
AGENTSTREAM_REPLAY_DIFFERING = "agentstream.replay.differing"
AGENTSTREAM_REPLAY_ID = "agentstream.replay.id"
AGENTSTREAM_REPLAY_REPORT = "agentstream.replay.report"
AGENTSTREAM_REPLAY_SUMMARY = "agentstream.replay.summary"
AGENTSTREAM_REQUEST_ID = "agentstream.request.id"
AGENTSTREAM_RESPONDER = "agentstream.responder"
AGENTSTREAM_RESUMED_AT_STEP = "agentstream.resumed_at_step"
AGENTSTREAM_REVIEW_DECISION = "agentstream.review.decision"
AGENTSTREAM_REVIEW_REFUSED = "agentstream.review.refused"
AGENTSTREAM_REVIEW_REVIEWER = "agentstream.review.reviewer"
AGENTSTREAM_ROLLBACK_REASON = "agentstream.rollback.reason"
AGENTSTREAM_ROLLOUT_ARM = "agentstream.rollout.arm"
AGENTSTREAM_ROUTE = "agentstream.route"
AGENTSTREAM_SESSION_ID = "agentstream.session.id"
AGENTSTREAM_STAGE = "agentstream.stage"
AGENTSTREAM_STATUS = "agentstream.status"
AGENTSTREAM_STEP_INDEX = "agentstream.step.index"
AGENTSTREAM_TASK_STATUS = "agentstream.task.status"
AGENTSTREAM_TENANT_ID = "agentstream.tenant.id"
AGENTSTREAM_TOOL_EXECUTED_NOW = "agentstream.tool.executed_now"
AGENTSTREAM_TOOL_IDEMPOTENCY_KEY = "agentstream.tool.idempotency_key"
AGENTSTREAM_USER_ID = "agentstream.user.id"
AGENTSTREAM_VERDICT = "agentstream.verdict"
GEN_AI_CHOICE_EVENT = "gen_ai.choice"

__all__ = [
    "AGENTSTREAM_BUDGET_ADMITTED",
    "AGENTSTREAM_BUDGET_REASON",
    "AGENTSTREAM_BUDGET_RESERVED_COST_USD",
    "AGENTSTREAM_BUDGET_RESERVED_TOKENS",
    "AGENTSTREAM_COMPLEXITY",
    "AGENTSTREAM_COMPLEXITY_SCORE",
    "AGENTSTREAM_CONFIG_VERSION",
    "AGENTSTREAM_CONTEXT_TRIMMED",
    "AGENTSTREAM_CONTEXT_TRIMMED_CHARS",
    "AGENTSTREAM_COST_USD",
    "AGENTSTREAM_DECISION_FINAL",
    "AGENTSTREAM_DOMAIN",
    "AGENTSTREAM_DUPLICATE",
    "AGENTSTREAM_ESCALATED",
    "AGENTSTREAM_FOLLOW_UP",
    "AGENTSTREAM_LANGUAGE",
    "AGENTSTREAM_LATENCY_MS",
    "AGENTSTREAM_LLM_ATTEMPTS",
    "AGENTSTREAM_LLM_CALLS",
    "AGENTSTREAM_LLM_STATUS",
    "AGENTSTREAM_MODEL_REASON",
    "AGENTSTREAM_NOTES",
    "AGENTSTREAM_REASON",
    "AGENTSTREAM_REASONS",
    "AGENTSTREAM_REJECTED",
    "AGENTSTREAM_REPLAY_DIFFERING",
    "AGENTSTREAM_REPLAY_ID",
    "AGENTSTREAM_REPLAY_REPORT",
    "AGENTSTREAM_REPLAY_SUMMARY",
    "AGENTSTREAM_REQUEST_ID",
    "AGENTSTREAM_RESPONDER",
    "AGENTSTREAM_RESUMED_AT_STEP",
    "AGENTSTREAM_REVIEW_DECISION",
    "AGENTSTREAM_REVIEW_REFUSED",
    "AGENTSTREAM_REVIEW_REVIEWER",
    "AGENTSTREAM_ROLLBACK_REASON",
    "AGENTSTREAM_ROLLOUT_ARM",
    "AGENTSTREAM_ROUTE",
    "AGENTSTREAM_SESSION_ID",
    "AGENTSTREAM_STAGE",
    "AGENTSTREAM_STATUS",
    "AGENTSTREAM_STEP_INDEX",
    "AGENTSTREAM_TASK_STATUS",
    "AGENTSTREAM_TENANT_ID",
    "AGENTSTREAM_TOOL_EXECUTED_NOW",
    "AGENTSTREAM_TOOL_IDEMPOTENCY_KEY",
    "AGENTSTREAM_USER_ID",
    "AGENTSTREAM_VERDICT",
    "ERROR_TYPE",
    "GEN_AI_AGENT_NAME",
    "GEN_AI_CHOICE_EVENT",
    "GEN_AI_CONVERSATION_ID",
    "GEN_AI_INPUT_MESSAGES",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_OUTPUT_MESSAGES",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_MAX_TOKENS",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_RESPONSE_FINISH_REASONS",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_SYSTEM_INSTRUCTIONS",
    "GEN_AI_TOOL_CALL_ARGUMENTS",
    "GEN_AI_TOOL_CALL_ID",
    "GEN_AI_TOOL_CALL_RESULT",
    "GEN_AI_TOOL_NAME",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
]
