"""What each page shows, computed from query results and topic records (pure, no I/O).

Handlers fetch; these functions decide. Everything text that came from a user or a model and
did not pass through the sink's redaction (conversation turns, drafts, held arguments, answers
read from Kafka) goes through the `redact` function given here before it can reach a template.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.config.pipeline import MonitorConfig
from streams.console import charts
from streams.console.queries import Cursor, Window
from streams.events.records import HumanDecision, Response
from streams.stages.reviewing.queue import PendingReview
from streams.telemetry import attributes as attr

Row = dict[str, Any]
Redact = Callable[[str], str]

__all__ = [
    "decided_items",
    "overview_model",
    "page_of",
    "pending_items",
    "trace_model",
]


# ------------------------------------------------------------------------------- requests list


def page_of(rows: Sequence[Row], limit: int) -> tuple[list[Row], Cursor | None]:
    """The rows to show and the cursor of the next page (None on the last page); `rows` is what
    `requests_query` returned (it asks for one row more than a page)."""
    shown = list(rows[:limit])
    if len(rows) <= limit or not shown:
        return shown, None
    last = shown[-1]
    ts = last["timestamp"]
    ts_ms = int(ts.timestamp() * 1000) if isinstance(ts, datetime) else int(ts)
    return shown, Cursor(ts_ms, str(last["request_id"]))


# ------------------------------------------------------------------------------------ overview

_STATUS_CLASSES = {"ok": "st-ok", "escalated": "st-escalated", "blocked": "st-blocked",
                   "error": "st-error", "degraded": "st-degraded", "other": "st-other"}


def _fmt_usd(v: float) -> str:
    return f"${v:.4f}" if v < 1 else f"${v:,.2f}"


def _fmt_pct(v: float) -> str:
    return f"{v * 100:.0f}%" if v >= 0.1 or v == 0 else f"{v * 100:.1f}%"


def _fmt_ms(v: float) -> str:
    return f"{v / 1000:.1f}s" if v >= 10_000 else f"{v:.0f}ms"


def _figures(row: Row) -> Row:
    """Rates and averages from one rollup row (sums); the monitor's error rate counts error,
    degraded and fallback answers, and so does the overview's."""
    requests = int(row.get("requests") or 0)
    q = list(row.get("latency_q") or [])
    ok = int(row.get("ok") or 0)

    def rate(n: float) -> float | None:
        return n / requests if requests else None

    return {
        "requests": requests,
        "ok": ok,
        "error_rate": rate(int(row.get("errors") or 0) + int(row.get("degraded") or 0)),
        "escalation_rate": rate(int(row.get("escalated") or 0)),
        "p50": q[0] if requests and len(q) == 3 else None,
        "p95": q[1] if requests and len(q) == 3 else None,
        "p99": q[2] if requests and len(q) == 3 else None,
        "avg_latency": rate(float(row.get("latency_sum") or 0.0)),
        "cost": float(row.get("cost_usd") or 0.0),
        "cost_per_interaction": rate(float(row.get("cost_usd") or 0.0)),
        "tokens_per_success": (int(row.get("success_tokens") or 0) / ok) if ok else None,
    }


@dataclass(frozen=True)
class Overview:
    charts: list[str]
    totals: Row
    split: list[Row]
    versions: list[str]
    arms: list[str]


def overview_model(
    series: Sequence[Row],
    totals: Sequence[Row],
    split: Sequence[Row],
    breakers: Sequence[Row],
    window: Window,
    monitor: MonitorConfig,
) -> Overview:
    """The overview's SVG charts (the monitor's rollback thresholds drawn on the ones it
    watches), the window's totals and the per version / arm table."""
    step_ms = window.step_minutes * 60_000
    x_range = (window.since_ms, window.until_ms)
    by_t = {int(r["t"]): r for r in series}
    buckets = window.buckets()
    per_minute = 1 / window.step_minutes

    def status_points(key: str) -> list[tuple[int, float]]:
        return [(t, float(by_t[t].get(key) or 0) * per_minute if t in by_t else 0.0) for t in buckets]

    other = [
        (t, max(0.0, float(r["requests"]) - sum(float(r.get(k) or 0) for k in
                                                 ("ok", "escalated", "blocked", "errors", "degraded"))) * per_minute)
        for t in buckets if (r := by_t.get(t)) is not None
    ]
    stacks: dict[str, Sequence[tuple[int, float]]] = {"ok": status_points("ok"), "escalated": status_points("escalated"),
              "blocked": status_points("blocked"), "error": status_points("errors"),
              "degraded": status_points("degraded"), "other": other}
    figs = {t: _figures(r) for t, r in by_t.items()}

    def line(name: str, key: str) -> charts.Series:
        return charts.Series(name, [(t + step_ms // 2, figs[t][key] if t in figs else None) for t in buckets])

    hour_factor = 60 / window.step_minutes
    cost_hour = charts.Series("USD per hour", [
        (t + step_ms // 2, figs[t]["cost"] * hour_factor if t in figs else None) for t in buckets])
    trips = {int(r["t"]): float(r.get("breaker_trips") or 0) for r in breakers}
    cost_cap = monitor.budget_usd_per_request * monitor.max_cost_ratio
    out = [
        charts.stacked_bars("requests per minute by status", x_range, step_ms, stacks,
                            classes=_STATUS_CLASSES),
        charts.line_chart("latency", x_range,
                          [line("p50", "p50"), line("p95", "p95"), line("p99", "p99"),
                           line("avg", "avg_latency")],
                          [charts.Threshold("rollback: avg >", monitor.max_avg_latency_ms)], fmt=_fmt_ms),
        charts.line_chart("error rate (error, degraded, fallback)", x_range, [line("error rate", "error_rate")],
                          [charts.Threshold("rollback >", monitor.max_error_rate)], fmt=_fmt_pct),
        charts.line_chart("escalation rate", x_range, [line("escalation rate", "escalation_rate")],
                          [charts.Threshold("rollback >", monitor.max_escalation_rate)], fmt=_fmt_pct),
        charts.line_chart("cost per interaction", x_range, [line("USD / request", "cost_per_interaction")],
                          [charts.Threshold("rollback >", cost_cap)], fmt=_fmt_usd),
        charts.line_chart("cost per hour", x_range, [cost_hour], fmt=_fmt_usd),
        charts.line_chart("tokens per successful interaction", x_range,
                          [line("tokens / ok answer", "tokens_per_success")]),
        charts.stacked_bars("circuit-breaker trips (LLM calls answered by the fallback)", x_range, step_ms,
                            {"breaker trips": [(t, trips.get(t, 0.0)) for t in buckets]},
                            classes={"breaker trips": "st-error"}),
    ]
    window_figures = _figures(totals[0] if totals else {})
    window_figures["breaker_trips"] = int(sum(trips.values()))
    rows = [{"config_version": r["config_version"], "rollout_arm": r["rollout_arm"], **_figures(r)} for r in split]
    return Overview(
        charts=out,
        totals=window_figures,
        split=rows,
        versions=sorted({str(r["config_version"]) for r in split}),
        arms=sorted({str(r["rollout_arm"]) for r in split}),
    )


# ------------------------------------------------------------------------------------- trace


@dataclass(frozen=True)
class TraceModel:
    waterfall: str
    spans: list[Row]
    llm_calls: list[Row]


def trace_model(tree: Mapping[str, Any]) -> TraceModel:
    """A `sinks.analytics.trace_tree` result as a waterfall (depth-first, children by start) and
    the LLM calls' details (prompt and response as ClickHouse holds them: redacted by the sink)."""
    flat: list[tuple[int, Row]] = []

    def walk(node: Row, depth: int) -> None:
        flat.append((depth, node))
        for child in sorted(node.get("children", []), key=lambda c: c["start"]):
            walk(child, depth + 1)

    for root in sorted(tree.get("roots", []), key=lambda c: c["start"]):
        walk(root, 0)
    if not flat:
        return TraceModel(charts.waterfall([]), [], [])
    t0 = min(_ms(n["start"]) for _, n in flat)
    bars, spans, calls = [], [], []
    for i, (depth, node) in enumerate(flat):
        anchor = f"llm-{i}" if node.get("llm") else ""
        attrs = node.get("attributes") or {}
        label = str(node["name"])
        tool = attrs.get(attr.GEN_AI_TOOL_NAME)
        if tool and tool not in label:
            label = f"{label} ({tool})"
        bars.append(charts.Span(label, depth, _ms(node["start"]) - t0, float(node["duration_ms"]),
                                str(node.get("status") or ""), anchor))
        spans.append({"name": label, "depth": depth, "duration_ms": float(node["duration_ms"]),
                      "status": node.get("status"), "service": node.get("service"),
                      "attributes": {k: v for k, v in sorted(attrs.items()) if k.startswith(("agentstream.", "gen_ai.", "error."))}})
        if node.get("llm"):
            call = dict(node["llm"])
            calls.append({"anchor": anchor, "name": node["name"], **call,
                          "prompt": _pretty(call.get("prompt", "")),
                          "response": _pretty(call.get("response", ""))})
    return TraceModel(charts.waterfall(bars), spans, calls)


def _ms(value: Any) -> float:
    return value.timestamp() * 1000 if isinstance(value, datetime) else float(value)


def _pretty(text: str) -> str:
    """JSON content (GenAI messages) indented for reading; other text as it is."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, TypeError):
        return text


# ------------------------------------------------------------------------------------ review


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pending_items(
    pending: Sequence[PendingReview], sessions: Mapping[str, Any], redact: Redact, now_ms: int,
    turns: int = 6,
) -> list[Row]:
    """The review queue, every text redacted: reasons, held call, draft, the last turns."""
    out = []
    for p in pending:
        e = p.escalation
        held = None
        if e.held_action:
            try:
                action = json.loads(e.held_action)
            except ValueError:
                action = {"tool": "?", "arguments": {}}
            args = json.dumps(action.get("arguments", {}), sort_keys=True, ensure_ascii=False)
            held = {"tool": str(action.get("tool", "")), "arguments": redact(args)}
        convo = (sessions.get(e.session_id) or {}).get("conversation", [])[-turns:]
        out.append({
            "request_id": e.request_id,
            "session_id": e.session_id,
            "user_id": e.user_id,
            "tenant_id": e.tenant_id,
            "domain": e.domain,
            "kind": p.kind,
            "priority": e.priority,
            "waiting_min": max(0, (now_ms - e.escalated_ms) // 60_000),
            "escalated": _when(e.escalated_ms),
            "reasons": [redact(r) for r in e.reasons],
            "held": held,
            "draft": redact(e.draft_answer),
            "conversation": [{"role": str(t.get("role", "")), "content": redact(str(t.get("content", "")))}
                             for t in convo],
        })
    return out


def decided_items(
    decisions: Iterable[HumanDecision], responses: Iterable[Response], redact: Redact, limit: int = 20
) -> list[Row]:
    """The latest decisions and, once the task resumed, its follow-up answer."""
    latest_answer: dict[str, Response] = {}
    for r in responses:
        if r.follow_up >= 1:
            seen = latest_answer.get(r.request_id)
            if seen is None or r.follow_up > seen.follow_up:
                latest_answer[r.request_id] = r
    out = []
    for d in sorted(decisions, key=lambda d: d.decided_ms, reverse=True)[:limit]:
        answer = latest_answer.get(d.request_id)
        out.append({
            "request_id": d.request_id,
            "session_id": d.session_id,
            "decision": d.decision,
            "reviewer": d.reviewer,
            "decided": _when(d.decided_ms),
            "note": redact(d.note),
            "arguments": redact(d.edited_arguments) if d.edited_arguments else "",
            "outcome": None if answer is None else {
                "status": answer.status, "reason": redact(answer.reason), "answer": redact(answer.answer)},
        })
    return out
