"""What the pages show, from query rows and topic records (no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from streams.config.pipeline import MonitorConfig
from streams.console.queries import Cursor, Window
from streams.console.views import decided_items, overview_model, page_of, pending_items, trace_model
from streams.events.records import Escalation, HumanDecision, Response
from streams.stages.reviewing.queue import PendingReview
from streams.telemetry.redaction import Redactor

REDACT = Redactor().redact
T0 = datetime(2025, 6, 15, 15, 0, tzinfo=UTC)


def _row(i: int) -> dict:
    return {"timestamp": T0.replace(second=59 - i), "request_id": f"r{i}"}


def test_page_of_knows_the_next_page_from_the_extra_row() -> None:
    rows = [_row(i) for i in range(6)]
    shown, cursor = page_of(rows, 5)
    assert [r["request_id"] for r in shown] == ["r0", "r1", "r2", "r3", "r4"]
    assert cursor == Cursor(int(T0.replace(second=55).timestamp() * 1000), "r4")
    shown, cursor = page_of(rows[:5], 5)
    assert len(shown) == 5 and cursor is None
    assert page_of([], 5) == ([], None)


def _rollup(t: int, requests: int, **kw: float) -> dict:
    base = {"t": t, "requests": requests, "ok": requests, "errors": 0, "escalated": 0, "blocked": 0,
            "degraded": 0, "latency_q": [100.0, 200.0, 300.0], "latency_sum": 150.0 * requests,
            "success_tokens": 40 * requests, "cost_usd": 0.001 * requests}
    return {**base, **kw}


def test_overview_rates_thresholds_and_breakers() -> None:
    w = Window(since_ms=0, until_ms=5 * 60_000, step_minutes=1)
    series = [_rollup(0, 10, ok=7, errors=1, degraded=1, escalated=1), _rollup(120_000, 4)]
    totals = [_rollup(0, 14, ok=11, errors=1, degraded=1, escalated=1)]
    split = [{"config_version": "v1", "rollout_arm": "control", **_rollup(0, 14)}]
    breakers = [{"t": 120_000, "breaker_trips": 3}]
    monitor = MonitorConfig(max_error_rate=0.05, max_escalation_rate=0.2, budget_usd_per_request=0.01,
                            max_cost_ratio=2.0, max_avg_latency_ms=10_000)
    model = overview_model(series, totals, split, breakers, w, monitor)
    assert len(model.charts) == 8
    # The monitor counts error, degraded and fallback answers as errors: (1 + 1) / 14.
    assert abs(model.totals["error_rate"] - 2 / 14) < 1e-9
    assert model.totals["p95"] == 200.0 and model.totals["breaker_trips"] == 3
    assert model.totals["tokens_per_success"] == 40 * 14 / 11
    assert model.versions == ["v1"] and model.arms == ["control"]
    charts = {c.split('aria-label="', 1)[1].split('"', 1)[0]: c for c in model.charts}
    assert "rollback &gt; 5.0%" in charts["error rate (error, degraded, fallback)"]
    assert "rollback &gt; 20%" in charts["escalation rate"]
    assert "rollback &gt; $0.0200" in charts["cost per interaction"]
    assert "rollback: avg &gt; 10.0s" in charts["latency"]
    assert 'data-points="2"' in charts["requests per minute by status"]  # two buckets with traffic
    assert 'data-points="1"' in charts["circuit-breaker trips (LLM calls answered by the fallback)"]


def test_overview_of_an_empty_window() -> None:
    w = Window(since_ms=0, until_ms=60_000, step_minutes=1)
    model = overview_model([], [], [], [], w, MonitorConfig())
    assert model.totals["requests"] == 0 and model.totals["error_rate"] is None
    assert all("no data in this window" in c for c in model.charts)


def _node(name: str, start_ms: int, dur: float, children: list | None = None, llm: dict | None = None) -> dict:
    node = {"name": name, "start": datetime.fromtimestamp(start_ms / 1000, UTC), "duration_ms": dur,
            "status": "Unset", "service": "agentstream", "attributes": {"agentstream.stage": "x"},
            "children": children or []}
    if llm:
        node["llm"] = llm
    return node


def test_trace_model_flattens_depth_first_by_start() -> None:
    call = {"model": "sim-small", "prompt": json.dumps([{"role": "user", "content": "hi"}]),
            "response": "plain text", "input_tokens": 5, "output_tokens": 2, "cost_usd": 0.1}
    tree = {"roots": [_node("process requests", 1000, 40.0, [
        _node("chat sim-small", 1030, 5.0, llm=call), _node("process routed", 1010, 10.0)])]}
    model = trace_model(tree)
    assert [(s["name"], s["depth"]) for s in model.spans] == [
        ("process requests", 0), ("process routed", 1), ("chat sim-small", 1)]
    assert len(model.llm_calls) == 1 and model.llm_calls[0]["anchor"] == "llm-2"
    assert '"role": "user"' in model.llm_calls[0]["prompt"] and model.llm_calls[0]["response"] == "plain text"
    assert 'data-points="3"' in model.waterfall
    assert trace_model({}).spans == []


def _escalation(rid: str, sid: str, **kw: object) -> Escalation:
    base = dict(request_id=rid, session_id=sid, user_id="u", tenant_id="t", domain="billing",
                reasons=["refund of $250.00 above $100.00 (mail bob@example.com)"],
                held_action=json.dumps({"tool": "issue_refund", "arguments": {"amount": 250, "note": "call +1 415 555 2671"}}),
                created_ms=1, escalated_ms=60_001)
    return Escalation(**{**base, **kw})  # type: ignore[arg-type]


def test_pending_items_redact_everything_from_kafka() -> None:
    pending = [PendingReview(_escalation("r1", "s1", draft_answer="Sure jane@example.com"))]
    sessions = {"s1": {"conversation": [{"role": "user", "content": f"turn {i} jane@example.com"} for i in range(10)]}}
    [item] = pending_items(pending, sessions, REDACT, now_ms=60_001 + 5 * 60_000)
    text = json.dumps(item)
    assert "example.com" not in text and "415 555" not in text
    assert item["held"]["tool"] == "issue_refund" and '"amount": 250' in item["held"]["arguments"]
    assert item["waiting_min"] == 5 and item["kind"] == "tool"
    assert len(item["conversation"]) == 6 and item["conversation"][0]["content"].startswith("turn 4")
    assert "[REDACTED:EMAIL]" in item["draft"]


def test_decided_items_show_the_latest_follow_up() -> None:
    decisions = [HumanDecision(request_id="r1", session_id="s1", reviewer="a", decision="approve", decided_ms=10),
                 HumanDecision(request_id="r2", session_id="s2", reviewer="b", decision="reject", decided_ms=20,
                               note="no, mail me at x@example.com")]
    answers = [Response(request_id="r1", session_id="s1", user_id="u", status="ok", reason="", answer="done",
                        created_ms=1, responded_ms=2, follow_up=1),
               Response(request_id="r1", session_id="s1", user_id="u", status="escalated", reason="",
                        created_ms=1, responded_ms=2, follow_up=0)]
    items = decided_items(decisions, answers, REDACT)
    assert [i["request_id"] for i in items] == ["r2", "r1"]  # newest first
    assert items[0]["outcome"] is None and "example.com" not in items[0]["note"]
    assert items[1]["outcome"] == {"status": "ok", "reason": "", "answer": "done"}
