"""Windowed outcome metrics per config version and arm, as plain JSON values (table-friendly),
and the rollback triggers over them. Pure: the monitor agent stores what these return."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from streams.config.pipeline import MonitorConfig

BUCKETS_PER_WINDOW = 10
# Upper bounds (ms) of the latency histogram's bins; the last bin is open.
LATENCY_BINS_MS = (50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 60_000)
FAILED = ("error", "degraded", "fallback")

Window = dict[str, Any]
"""{"buckets": {start_ms: [n, failed, escalated, latency_sum_ms, cost_usd, [bins]]}, "offset": N}:
`offset` is the input offset of the last answer counted, written with the counts it changed."""


@dataclass(frozen=True)
class Summary:
    answers: int
    error_rate: float
    escalation_rate: float
    avg_latency_ms: float
    p95_latency_ms: float
    cost_per_answer_usd: float


def counted(window: Window | None, offset: int) -> bool:
    """Whether the answer at this input offset is already in the window: the monitor is
    at-least-once, so after a crash its successor reads again from the committed offset, and the
    rebuilt window tells it where it had got to."""
    return window is not None and offset <= int(window.get("offset", -1))


def record(
    window: Window | None,
    status: str,
    latency_ms: float,
    cost_usd: float,
    at_ms: int,
    window_s: float,
    offset: int = -1,
) -> Window:
    """A new window value with one answer counted in its time bucket (old buckets dropped) and
    `offset` recorded as the last one counted."""
    width = max(1, int(window_s * 1000 / BUCKETS_PER_WINDOW))
    buckets = {k: list(v) for k, v in (window or {}).get("buckets", {}).items()}
    start = str(at_ms - at_ms % width)
    b = buckets.setdefault(start, [0, 0, 0, 0.0, 0.0, [0] * (len(LATENCY_BINS_MS) + 1)])
    b[0] += 1
    b[1] += status in FAILED
    b[2] += status == "escalated"
    b[3] += latency_ms
    b[4] += cost_usd
    b[5][bisect.bisect_left(LATENCY_BINS_MS, latency_ms)] += 1
    horizon = at_ms - int(window_s * 1000) - width
    return {"buckets": {k: v for k, v in buckets.items() if int(k) >= horizon}, "offset": offset}


def summarize(window: Window | None, now_ms: int, window_s: float) -> Summary:
    """The answers of the last `window_s` seconds (whole buckets) up to `now_ms`."""
    since = now_ms - int(window_s * 1000)
    rows = [v for k, v in (window or {}).get("buckets", {}).items() if int(k) >= since]
    n = sum(r[0] for r in rows)
    if not n:
        return Summary(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    bins = [sum(r[5][i] for r in rows) for i in range(len(LATENCY_BINS_MS) + 1)]
    return Summary(
        answers=n,
        error_rate=sum(r[1] for r in rows) / n,
        escalation_rate=sum(r[2] for r in rows) / n,
        avg_latency_ms=sum(r[3] for r in rows) / n,
        p95_latency_ms=_quantile_bound(bins, 0.95),
        cost_per_answer_usd=sum(r[4] for r in rows) / n,
    )


def _quantile_bound(bins: list[int], q: float) -> float:
    """The upper bound of the histogram bin holding the q-quantile (inf for the open bin)."""
    target = q * sum(bins)
    seen = 0
    for i, count in enumerate(bins):
        seen += count
        if seen >= target:
            return float(LATENCY_BINS_MS[i]) if i < len(LATENCY_BINS_MS) else float("inf")
    return float("inf")


def triggers(s: Summary, cfg: MonitorConfig) -> list[str]:
    """Why this arm must be rolled back (empty: it may stay). Nothing below the minimum sample."""
    if s.answers < cfg.min_samples:
        return []
    window = f"over {cfg.window_s:g} s ({s.answers} answers)"
    out = []
    if s.error_rate > cfg.max_error_rate:
        out.append(f"error rate {s.error_rate:.1%} > {cfg.max_error_rate:.0%} {window}")
    if s.avg_latency_ms > cfg.max_avg_latency_ms:
        out.append(f"average latency {s.avg_latency_ms:,.0f} ms > {cfg.max_avg_latency_ms:,.0f} ms {window}")
    ratio = s.cost_per_answer_usd / cfg.budget_usd_per_request if cfg.budget_usd_per_request > 0 else 0.0
    if ratio > cfg.max_cost_ratio:
        out.append(f"cost {ratio:.0%} of budget > {cfg.max_cost_ratio:.0%} {window}")
    if s.escalation_rate > cfg.max_escalation_rate:
        out.append(f"escalation rate {s.escalation_rate:.1%} > {cfg.max_escalation_rate:.0%} {window}")
    return out
