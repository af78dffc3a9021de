"""Synthetic request traces shaped like the pipeline's spans (tests, benchmarks, demos).

One request = router span -> domain-agent span -> `chat <model>` span(s), and a verifier span
carrying the final decision, with the attribute conventions the tracing code emits. Ids are
derived from (seed, index), so the same call yields the same spans (replays are byte-identical).
"""

from __future__ import annotations

import hashlib
import json

from streams.events.records import Span, SpanEvent
from streams.telemetry import attributes as attr

__all__ = ["request_trace", "request_traces"]


def _hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def request_trace(
    i: int,
    *,
    seed: str = "sample",
    t0_ns: int = 1_750_000_000_000_000_000,
    status: str = "ok",
    llm_calls: int = 1,
    llm_status: str = "ok",
    users: int = 10,
    domain: str = "billing",
    model: str = "sim-small",
    prompt: str = "Why was I charged twice?",
) -> list[Span]:
    """The spans of request `i` (2 stage spans + `llm_calls` chat spans + 1 final decision)."""
    trace_id = _hex(f"{seed}:{i}:trace", 32)
    rid, sid, uid = f"{seed}-req-{i}", f"{seed}-sess-{i % 97}", f"user-{i % users}"
    ids = {
        attr.AGENTSTREAM_REQUEST_ID: rid,
        attr.AGENTSTREAM_SESSION_ID: sid,
        attr.AGENTSTREAM_USER_ID: uid,
        attr.AGENTSTREAM_TENANT_ID: "acme",
    }
    start = t0_ns + i * 1_000_000  # 1 ms apart
    router_id, agent_id = _hex(f"{seed}:{i}:router", 16), _hex(f"{seed}:{i}:agent", 16)

    def stage(span_id: str, parent: str, topic: str, name: str, t: int, dur_ms: float) -> Span:
        return Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=f"process agentstream.{topic}.v1",
            kind="Consumer",
            service_name="agentstream",
            resource_attributes={"service.name": "agentstream"},
            scope_name="agentstream",
            start_time_unix_nano=t,
            end_time_unix_nano=t + int(dur_ms * 1e6),
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": f"agentstream.{topic}.v1",
                attr.AGENTSTREAM_STAGE: name,
                **ids,
            },
            status_code="Ok",
        )

    spans = [
        stage(router_id, "", "requests", "router", start, 2.0),
        stage(agent_id, router_id, "routed", "domain_agent", start + 3_000_000, 40.0 * llm_calls),
    ]
    in_tok, out_tok, cost = 0, 0, 0.0
    for step in range(llm_calls):
        t = start + 4_000_000 + step * 40_000_000
        i_tok, o_tok, c = 120 + step * 10, 30 + i % 7, 0.00015 + step * 0.00001
        in_tok, out_tok, cost = in_tok + i_tok, out_tok + o_tok, cost + c
        failed = llm_status == "error"
        attrs = {
            attr.GEN_AI_OPERATION_NAME: "chat",
            attr.GEN_AI_PROVIDER_NAME: "simulator",
            attr.GEN_AI_REQUEST_MODEL: model,
            attr.GEN_AI_REQUEST_MAX_TOKENS: "512",
            attr.GEN_AI_RESPONSE_MODEL: model,
            attr.GEN_AI_RESPONSE_FINISH_REASONS: json.dumps(["stop"]),
            attr.GEN_AI_USAGE_INPUT_TOKENS: str(i_tok),
            attr.GEN_AI_USAGE_OUTPUT_TOKENS: str(o_tok),
            attr.GEN_AI_CONVERSATION_ID: sid,
            attr.GEN_AI_INPUT_MESSAGES: json.dumps([{"role": "user", "content": prompt}]),
            attr.GEN_AI_OUTPUT_MESSAGES: json.dumps(
                [{"role": "assistant", "content": f"Answer {i}.{step}"}]
            ),
            attr.AGENTSTREAM_DOMAIN: domain,
            attr.AGENTSTREAM_CONFIG_VERSION: "v1",
            attr.AGENTSTREAM_ROLLOUT_ARM: "control" if i % 2 else "candidate",
            attr.AGENTSTREAM_COST_USD: f"{c:.6f}",
            attr.AGENTSTREAM_LLM_STATUS: llm_status,
            attr.AGENTSTREAM_STEP_INDEX: str(step),
            attr.AGENTSTREAM_CONTEXT_TRIMMED: "true" if i % 5 == 0 else "false",
            attr.AGENTSTREAM_CONTEXT_TRIMMED_CHARS: "200" if i % 5 == 0 else "0",
            **ids,
        }
        if failed:
            attrs[attr.ERROR_TYPE] = "timeout"
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=_hex(f"{seed}:{i}:chat:{step}", 16),
                parent_span_id=agent_id,
                name=f"chat {model}",
                kind="Client",
                service_name="agentstream",
                resource_attributes={"service.name": "agentstream"},
                scope_name="agentstream",
                start_time_unix_nano=t,
                end_time_unix_nano=t + 35_000_000 + (i % 11) * 1_000_000,
                attributes=attrs,
                status_code="Error" if failed else "Unset",
                events=[SpanEvent(time_unix_nano=t + 1000, name=attr.GEN_AI_CHOICE_EVENT)],
            )
        )
    verify = stage(
        _hex(f"{seed}:{i}:verifier", 16),
        agent_id,
        "executed",
        "verifier",
        start + 5_000_000 + llm_calls * 40_000_000,
        1.5,
    )
    verify.attributes.update(
        {
            attr.AGENTSTREAM_DECISION_FINAL: "true",
            attr.AGENTSTREAM_ROUTE: domain,
            attr.GEN_AI_REQUEST_MODEL: model,
            attr.AGENTSTREAM_ROLLOUT_ARM: "control" if i % 2 else "candidate",
            attr.AGENTSTREAM_VERDICT: "pass" if status == "ok" else status,
            attr.AGENTSTREAM_REASONS: json.dumps([] if status == "ok" else [f"{status} reason"]),
            attr.AGENTSTREAM_ESCALATED: "true" if status == "escalated" else "false",
            attr.AGENTSTREAM_STATUS: status,
            attr.AGENTSTREAM_REASON: "answered" if status == "ok" else status,
            attr.AGENTSTREAM_CONFIG_VERSION: "v1",
            attr.AGENTSTREAM_LATENCY_MS: f"{50.0 + 40.0 * llm_calls + i % 13:.1f}",
            attr.GEN_AI_USAGE_INPUT_TOKENS: str(in_tok),
            attr.GEN_AI_USAGE_OUTPUT_TOKENS: str(out_tok),
            attr.AGENTSTREAM_COST_USD: f"{cost:.6f}",
            attr.AGENTSTREAM_LANGUAGE: "en",
            attr.AGENTSTREAM_LLM_CALLS: str(llm_calls),
        }
    )
    spans.append(verify)
    return spans


def request_traces(n: int, *, seed: str = "sample", **kwargs: object) -> list[Span]:
    """Spans of requests 0..n-1; every 10th is an error, every 7th escalated."""
    out: list[Span] = []
    for i in range(n):
        status = "error" if i % 10 == 3 else "escalated" if i % 7 == 5 else "ok"
        out.extend(request_trace(i, seed=seed, status=status, **kwargs))  # type: ignore[arg-type]
    return out
