"""The SQL behind each console page, as pure builders (text plus parameters, no I/O).

Every value a user types reaches ClickHouse as a typed query parameter (`{name:Type}`), never
spliced into the text: the builders only choose which fixed fragments to join. The requests list
pages by keyset (`timestamp`, `request_id` of the last row shown) rather than OFFSET, so page
1,000 costs what page 1 costs. Charts read the per-minute rollups (`decisions_1m`,
`llm_calls_1m`), which stay small whatever the size of `decisions`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sinks.clickhouse import DATABASE

__all__ = [
    "STATUSES",
    "WINDOWS",
    "Cursor",
    "Query",
    "RequestFilters",
    "Window",
    "breaker_series_query",
    "overview_series_query",
    "overview_split_query",
    "overview_totals_query",
    "parse_time_ms",
    "replay_report_query",
    "replay_reports_query",
    "request_summary_query",
    "requests_query",
    "session_requests_query",
]

STATUSES = ("ok", "escalated", "blocked", "error", "degraded", "fallback")
# Overview windows (label -> minutes) and the bucket sizes a chart may use.
WINDOWS: dict[str, int] = {"15m": 15, "1h": 60, "6h": 360, "24h": 1440, "7d": 10080}
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360)
_MAX_BUCKETS = 180
_MAX_FILTER_CHARS = 200
_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,200}$")


@dataclass(frozen=True)
class Query:
    """One statement and its parameters, ready for `sinks.analytics.run_query`."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


def parse_time_ms(value: str | None) -> int | None:
    """Epoch milliseconds from epoch-ms text or ISO-8601 (a browser's datetime-local input has no
    zone: it is read as UTC, like every time the console shows); None for empty or unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _clean(value: str | None) -> str:
    return (value or "").strip()[:_MAX_FILTER_CHARS]


@dataclass(frozen=True)
class RequestFilters:
    """What the requests list is narrowed to; empty fields do not filter."""

    status: str = ""
    domain: str = ""
    model: str = ""
    user: str = ""
    tenant: str = ""
    arm: str = ""
    text: str = ""
    since_ms: int | None = None
    until_ms: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> RequestFilters:
        """From a page's query string (`from` / `to` for the time range, `q` for text)."""
        return cls(
            status=_clean(query.get("status")),
            domain=_clean(query.get("domain")),
            model=_clean(query.get("model")),
            user=_clean(query.get("user")),
            tenant=_clean(query.get("tenant")),
            arm=_clean(query.get("arm")),
            text=_clean(query.get("q")),
            since_ms=parse_time_ms(query.get("from")),
            until_ms=parse_time_ms(query.get("to")),
        )

    def as_query(self) -> dict[str, str]:
        """The query-string form (for links to the next page), empty fields left out."""
        out = {
            "status": self.status, "domain": self.domain, "model": self.model, "user": self.user,
            "tenant": self.tenant, "arm": self.arm, "q": self.text,
            "from": str(self.since_ms) if self.since_ms is not None else "",
            "to": str(self.until_ms) if self.until_ms is not None else "",
        }
        return {k: v for k, v in out.items() if v}

    def conditions(self) -> tuple[list[str], dict[str, Any]]:
        """WHERE fragments over `decisions` and their parameters."""
        where: list[str] = []
        params: dict[str, Any] = {}
        exact = {"status": "status", "domain": "route", "model": "model", "user": "user_id",
                 "tenant": "tenant_id", "arm": "rollout_arm"}
        for name, column in exact.items():
            value = getattr(self, name)
            if value:
                where.append(f"{column} = {{f_{name}:String}}")
                params[f"f_{name}"] = value
        if self.since_ms is not None:
            where.append("timestamp >= fromUnixTimestamp64Milli({f_since:Int64}, 'UTC')")
            params["f_since"] = self.since_ms
        if self.until_ms is not None:
            where.append("timestamp < fromUnixTimestamp64Milli({f_until:Int64}, 'UTC')")
            params["f_until"] = self.until_ms
        if self.text:
            # Ids match exactly (they are what people paste); the reasons match as substrings.
            where.append(
                "(request_id = {f_text:String} OR session_id = {f_text:String} "
                "OR trace_id = {f_text:String} "
                "OR positionCaseInsensitiveUTF8(reason, {f_text:String}) > 0 "
                "OR arrayExists(r -> positionCaseInsensitiveUTF8(r, {f_text:String}) > 0, reasons))"
            )
            params["f_text"] = self.text
        return where, params

    def is_empty(self) -> bool:
        return all(not getattr(self, f.name) and getattr(self, f.name) != 0 for f in fields(self))


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: strictly after (older than) this row in list order."""

    ts_ms: int
    request_id: str

    def encode(self) -> str:
        return f"{self.ts_ms}_{self.request_id}"

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        """None for anything that is not a cursor this module wrote (no error page for a typo)."""
        ts, sep, rid = (text or "").partition("_")
        if not sep or not ts.isdigit() or not _ID.match(rid):
            return None
        return cls(int(ts), rid)


REQUEST_COLUMNS = (
    "timestamp", "request_id", "session_id", "user_id", "tenant_id", "route", "model",
    "rollout_arm", "config_version", "status", "reason", "latency_ms", "cost_usd",
    "input_tokens", "output_tokens", "trace_id",
)


def requests_query(filters: RequestFilters, cursor: Cursor | None = None, limit: int = 50) -> Query:
    """One page of requests, newest first; asks for `limit + 1` rows so the page knows whether
    a next one exists without counting.

    FINAL, so a row written twice (a replayed sink batch, before ClickHouse merges it) shows
    once: measured at 1M rows it costs no more than the plain read (~0.1-0.2 s on 2 cores),
    while `LIMIT 1 BY request_id` took 1.5 s (bench/bench_console.py).
    """
    where, params = filters.conditions()
    if cursor is not None:
        where.append(
            "timestamp <= fromUnixTimestamp64Milli({c_ts:Int64}, 'UTC') AND "
            "(timestamp < fromUnixTimestamp64Milli({c_ts:Int64}, 'UTC') OR request_id < {c_rid:String})"
        )
        params.update(c_ts=cursor.ts_ms, c_rid=cursor.request_id)
    params["limit"] = max(1, min(int(limit), 500)) + 1
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    sql = (
        f"SELECT {', '.join(REQUEST_COLUMNS)} FROM {DATABASE}.decisions FINAL {clause}"
        "ORDER BY timestamp DESC, request_id DESC LIMIT {limit:UInt32}"
    )
    return Query(sql, params)


def request_summary_query(request_id: str) -> Query:
    """The decision of one request (the trace page's header)."""
    return Query(
        f"SELECT {', '.join(REQUEST_COLUMNS)}, verdict, reasons, escalated, language, llm_calls, "
        f"complexity FROM {DATABASE}.decisions FINAL WHERE request_id = {{rid:String}} LIMIT 1",
        {"rid": request_id},
    )


def session_requests_query(session_id: str, limit: int = 200) -> Query:
    """The requests of one session, oldest first (the trace page's "same session" links)."""
    return Query(
        "SELECT timestamp, request_id, route, status, reason, latency_ms "
        f"FROM {DATABASE}.decisions FINAL WHERE session_id = {{sid:String}} "
        "ORDER BY timestamp LIMIT {limit:UInt32}",
        {"sid": session_id, "limit": int(limit)},
    )


@dataclass(frozen=True)
class Window:
    """The overview's time range and chart bucket size."""

    since_ms: int
    until_ms: int
    step_minutes: int

    @classmethod
    def last(cls, label: str, now_ms: int) -> Window:
        """The last `label` of WINDOWS up to `now_ms` (1h for an unknown label), ending at the
        next minute boundary so the newest bucket is included."""
        minutes = WINDOWS.get(label, WINDOWS["1h"])
        until = (now_ms // 60_000 + 1) * 60_000
        step = next((s for s in _STEPS if math.ceil(minutes / s) <= _MAX_BUCKETS), _STEPS[-1])
        return cls(until - minutes * 60_000, until, step)

    def buckets(self) -> list[int]:
        """Start of every bucket (epoch ms) in the window, aligned as ClickHouse aligns them."""
        step_ms = self.step_minutes * 60_000
        first = self.since_ms // step_ms * step_ms
        return list(range(first, self.until_ms, step_ms))


def _rollup_conditions(window: Window, version: str, arm: str) -> tuple[str, dict[str, Any]]:
    where = [
        "minute >= toStartOfMinute(fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC'))",
        "minute < fromUnixTimestamp64Milli({until_ms:Int64}, 'UTC')",
    ]
    params: dict[str, Any] = {"since_ms": window.since_ms, "until_ms": window.until_ms,
                              "step": window.step_minutes}
    if version:
        where.append("config_version = {version:String}")
        params["version"] = version
    if arm:
        where.append("rollout_arm = {arm:String}")
        params["arm"] = arm
    return " AND ".join(where), params


_ROLLUP_FIGURES = (
    "sum(requests) AS requests, sum(successes) AS ok, sum(errors) AS errors, "
    "sum(escalations) AS escalated, sum(blocked) AS blocked, sum(degraded) AS degraded, "
    "quantilesMerge(0.5, 0.95, 0.99)(latency_ms_q) AS latency_q, "
    "sum(latency_ms_sum) AS latency_sum, sum(success_tokens) AS success_tokens, "
    "sum(cost_usd) AS cost_usd"
)


def overview_series_query(window: Window, version: str = "", arm: str = "") -> Query:
    """Per-bucket figures from the `decisions_1m` rollup, optionally for one version and arm."""
    where, params = _rollup_conditions(window, version, arm)
    return Query(
        "SELECT toUnixTimestamp(toStartOfInterval(minute, toIntervalMinute({step:UInt32}))) * 1000 "
        f"AS t, {_ROLLUP_FIGURES} FROM {DATABASE}.decisions_1m WHERE {where} GROUP BY t ORDER BY t",
        params,
    )


def overview_split_query(window: Window) -> Query:
    """The window's figures per config version and rollout arm (the overview's table)."""
    where, params = _rollup_conditions(window, "", "")
    return Query(
        f"SELECT config_version, rollout_arm, {_ROLLUP_FIGURES} FROM {DATABASE}.decisions_1m "
        f"WHERE {where} GROUP BY config_version, rollout_arm ORDER BY requests DESC",
        params,
    )


def overview_totals_query(window: Window, version: str = "", arm: str = "") -> Query:
    """The window's figures in one row (percentiles merged over the whole window)."""
    where, params = _rollup_conditions(window, version, arm)
    return Query(f"SELECT {_ROLLUP_FIGURES} FROM {DATABASE}.decisions_1m WHERE {where}", params)


def breaker_series_query(window: Window) -> Query:
    """Circuit-breaker trips (LLM calls answered by the fallback) and LLM errors per bucket."""
    where, params = _rollup_conditions(window, "", "")
    return Query(
        "SELECT toUnixTimestamp(toStartOfInterval(minute, toIntervalMinute({step:UInt32}))) * 1000 "
        "AS t, sum(breaker_trips) AS breaker_trips, sum(errors) AS llm_errors, sum(calls) AS calls "
        f"FROM {DATABASE}.llm_calls_1m WHERE {where} GROUP BY t ORDER BY t",
        params,
    )


REPLAY_COLUMNS = (
    "timestamp", "report_id", "mode", "namespace", "source_namespace", "requests", "identical",
    "agreement", "status_agreement", "cost_original_usd", "cost_replay_usd",
    "llm_latency_p95_original_ms", "llm_latency_p95_replay_ms", "escalations_original",
    "escalations_replay", "skipped_unanswered", "original_version", "replay_version",
)


def replay_reports_query(limit: int = 100) -> Query:
    """The latest replay and shadow reports, newest first."""
    return Query(
        f"SELECT {', '.join(REPLAY_COLUMNS)} FROM {DATABASE}.replay_reports FINAL "
        "ORDER BY timestamp DESC LIMIT {limit:UInt32}",
        {"limit": int(limit)},
    )


def replay_report_query(report_id: str) -> Query:
    """One report with the requests whose replayed decision differs."""
    return Query(
        f"SELECT {', '.join(REPLAY_COLUMNS)}, differing FROM {DATABASE}.replay_reports FINAL "
        "WHERE report_id = {rid:String} LIMIT 1",
        {"rid": report_id},
    )
