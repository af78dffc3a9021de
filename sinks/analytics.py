"""Analyst-facing reads: ad-hoc read-only SQL, a metrics report, and one request's trace tree.

`run_query` hides where the data lives: a ClickHouse server is queried directly; an embedded
chDB directory is queried through the running sink's endpoint (the sink holds the directory's
lock, see `sinks.query_server`) or, when no sink is running, by opening the directory here.
Figures in `report` come from the base tables read with FINAL, so a replayed batch can never
be counted twice in them.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from sinks.clickhouse import DATABASE, chdb_path, connect
from sinks.readonly import screen
from sinks.rows import CONTENT_ATTRIBUTES
from sinks.sql import ReadOnlyViolation

__all__ = ["QueryError", "close_clients", "report", "run_query", "trace_tree"]

Columns = list[str]
Rows = list[tuple[Any, ...]]
Runner = Callable[[str, Mapping[str, Any] | None], tuple[Columns, Rows]]

# One read-only client per URL, each used by one thread at a time (clickhouse-connect clients
# reject concurrent queries in one session).
_clients: dict[str, tuple[Any, threading.Lock]] = {}
_clients_lock = threading.Lock()


class QueryError(RuntimeError):
    """A query the engine or the sink's endpoint refused; the message is the engine's."""


def _from_json(value: Any, type_name: str) -> Any:
    base = type_name.removeprefix("Nullable(").removeprefix("LowCardinality(")
    if value is None or not isinstance(value, str):
        return value
    if base.startswith("DateTime"):
        return datetime.fromisoformat(value)
    if base.startswith("Date"):
        return date.fromisoformat(value)
    return value


def _via_endpoint(
    port: int, token: str, sql: str, params: Mapping[str, Any] | None, timeout_s: float
) -> tuple[Columns, Rows]:
    body = json.dumps({"sql": sql, "params": dict(params or {})}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/query",
        body,
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            payload = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]
        except Exception:
            message = str(exc)
        if exc.code == 403 and message.startswith("read-only"):
            raise ReadOnlyViolation(message) from None
        raise QueryError(message) from None
    columns, types = payload["columns"], payload["types"]
    rows = [
        tuple(_from_json(v, t) for v, t in zip(row, types, strict=True)) for row in payload["rows"]
    ]
    return columns, rows


def _endpoint(url: str) -> tuple[int, str] | None:
    """Port and token of a live sink endpoint for this chDB directory, if one answers."""
    path = chdb_path(url)
    if path is None:
        return None
    try:
        port = int((path / "sink.port").read_text().strip())
        token = (path / "sink.token").read_text().strip()
    except (OSError, ValueError):
        return None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2.0) as resp:
            return (port, token) if resp.status == 200 else None
    except (OSError, ValueError):
        return None  # stale file from a sink that died: open the directory ourselves


def _open(url: str) -> Any:
    try:
        return connect(url, readonly=True)
    except Exception as exc:
        hint = ""
        if chdb_path(url) is not None:
            hint = f"; if a sink holds it, its endpoint ({chdb_path(url)}/sink.port) is down"
        raise QueryError(f"cannot open {url}: {exc}{hint}") from exc


def _shared_client(url: str) -> tuple[Any, threading.Lock]:
    with _clients_lock:
        entry = _clients.get(url)
        if entry is None:
            entry = _clients[url] = (_open(url), threading.Lock())
        return entry


def _client_query(client: Any, sql: str, params: Mapping[str, Any] | None) -> tuple[Columns, Rows]:
    try:
        result = client.query(sql, parameters=dict(params) if params else None)
    except Exception as exc:
        raise QueryError(str(exc)) from exc
    return list(result.column_names), [tuple(r) for r in result.result_rows]


def _screened_query(client: Any, sql: str, params: Mapping[str, Any] | None) -> tuple[Columns, Rows]:
    return _client_query(client, screen(client, sql, params), params)


def run_query(
    sql: str,
    *,
    clickhouse_url: str,
    params: Mapping[str, Any] | None = None,
    timeout_s: float = 60.0,
) -> tuple[Columns, Rows]:
    """Run one read-only statement; returns (column names, rows).

    Raises `sinks.sql.ReadOnlyViolation` for anything `sinks.readonly.screen` refuses (only
    SELECT/SHOW/DESCRIBE/EXISTS, nothing that reaches outside the database) and `QueryError`
    for engine errors. Tables may be named without the `agentstream.` prefix. Blocking: from
    async code call it via `asyncio.to_thread` (in the sink's own process above all, whose
    event loop serves the endpoint).
    """
    if chdb_path(clickhouse_url) is not None:
        endpoint = _endpoint(clickhouse_url)
        if endpoint is not None:
            return _via_endpoint(*endpoint, sql, params, timeout_s)
        # Open per call: a chDB handle left open would pin this process's one engine to the
        # directory (and keep another process, e.g. a sink starting later, out of it).
        with _clients_lock:
            client = _open(clickhouse_url)
            try:
                return _screened_query(client, sql, params)
            finally:
                client.close()
    client, lock = _shared_client(clickhouse_url)
    with lock:
        return _screened_query(client, sql, params)


def close_clients() -> None:
    """Close the cached server clients (tests, long-lived processes switching servers)."""
    with _clients_lock:
        for client, _ in _clients.values():
            client.close()
        _clients.clear()


def _runner(source: Any) -> Runner:
    if isinstance(source, str):
        return lambda sql, params: run_query(sql, clickhouse_url=source, params=params)
    return lambda sql, params: _client_query(source, sql, params)


def _dicts(columns: Columns, rows: Rows) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


# ------------------------------------------------------------------------------------ report

_RANGE = (
    "timestamp >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC') "
    "AND timestamp < fromUnixTimestamp64Milli({until_ms:Int64}, 'UTC')"
)
_DECISION_METRICS = """
    count() AS requests,
    countIf(status = 'error') AS errors,
    if(requests = 0, 0, errors / requests) AS error_rate,
    countIf(escalated = 1) AS escalations,
    if(requests = 0, 0, escalations / requests) AS escalation_rate,
    quantilesExact(0.5, 0.95, 0.99)(latency_ms) AS latency_q,
    latency_q[1] AS latency_p50_ms,
    latency_q[2] AS latency_p95_ms,
    latency_q[3] AS latency_p99_ms,
    countIf(status = 'ok') AS successes,
    if(successes = 0, 0,
       sumIf(toUInt64(input_tokens) + output_tokens, status = 'ok') / successes)
       AS tokens_per_success,
    sum(cost_usd) AS total_cost_usd,
    if(requests = 0, 0, total_cost_usd / requests) AS cost_per_interaction,
    uniqExact(user_id) AS users,
    if(users = 0, 0, total_cost_usd / users) AS cost_per_user
"""


def report(
    source: Any, since: datetime, until: datetime, *, top_users: int = 20
) -> dict[str, list[dict[str, Any]]]:
    """Dashboard figures for [since, until) as named tables of rows.

    `source` is a ClickHouse URL (`run_query` rules apply) or a clickhouse-connect client.
    Tables: `summary` (requests, error and escalation rates, p50/p95/p99 latency, tokens per
    successful interaction, cost per interaction and per user), `by_route` (the same per route,
    model and rollout arm), `cost_per_user`, `llm` (calls, errors, circuit-breaker trips,
    tokens, p95 latency per provider/model) and `per_minute` (the materialized rollups).
    """
    run = _runner(source)
    params = {
        "since_ms": int(since.timestamp() * 1000),
        "until_ms": int(until.timestamp() * 1000),
        "top": int(top_users),
    }
    queries = {
        "summary": f"SELECT {_DECISION_METRICS} FROM {DATABASE}.decisions FINAL WHERE {_RANGE}",
        "by_route": (
            f"SELECT route, model, rollout_arm, {_DECISION_METRICS} "
            f"FROM {DATABASE}.decisions FINAL WHERE {_RANGE} "
            "GROUP BY route, model, rollout_arm ORDER BY requests DESC"
        ),
        "cost_per_user": (
            "SELECT tenant_id, user_id, count() AS requests, "
            "sum(toUInt64(input_tokens) + output_tokens) AS tokens, "
            "sum(cost_usd) AS total_cost_usd, total_cost_usd / requests AS cost_per_request "
            f"FROM {DATABASE}.decisions FINAL WHERE {_RANGE} "
            "GROUP BY tenant_id, user_id ORDER BY total_cost_usd DESC, user_id LIMIT {top:UInt32}"
        ),
        "llm": (
            "SELECT provider, model, count() AS calls, countIf(status = 'error') AS errors, "
            "countIf(status = 'fallback') AS breaker_trips, "
            "countIf(status = 'degraded') AS degraded_calls, "
            "sum(toUInt64(input_tokens)) AS total_input_tokens, "
            "sum(toUInt64(output_tokens)) AS total_output_tokens, "
            "sum(cost_usd) AS total_cost_usd, quantileExact(0.95)(latency_ms) AS latency_p95_ms, "
            "countIf(context_trimmed = 1) AS trimmed_calls "
            f"FROM {DATABASE}.llm_calls FINAL WHERE {_RANGE} "
            "GROUP BY provider, model ORDER BY calls DESC"
        ),
        "per_minute": (
            f"SELECT * FROM {DATABASE}.v_metrics_1m "
            "WHERE minute >= toStartOfMinute(fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')) "
            "AND minute < fromUnixTimestamp64Milli({until_ms:Int64}, 'UTC') ORDER BY minute"
        ),
    }
    out: dict[str, list[dict[str, Any]]] = {}
    for name, sql in queries.items():
        columns, rows = run(sql, params)
        table = _dicts(columns, rows)
        for row in table:
            row.pop("latency_q", None)
        out[name] = table
    return out


# -------------------------------------------------------------------------------- trace tree


def _trace_ids(run: Runner, request_id: str) -> list[str]:
    params = {"rid": request_id}
    for sql in (
        f"SELECT DISTINCT trace_id FROM {DATABASE}.decisions FINAL WHERE request_id = {{rid:String}}",
        f"SELECT DISTINCT trace_id FROM {DATABASE}.llm_calls WHERE request_id = {{rid:String}}",
        f"SELECT DISTINCT TraceId FROM {DATABASE}.otel_traces "
        "WHERE SpanAttributes['agentstream.request.id'] = {rid:String}",
    ):
        _, rows = run(sql, params)
        ids = sorted({r[0] for r in rows if r[0]})
        if ids:
            return ids
    return []


def trace_tree(source: Any, request_id: str) -> dict[str, Any] | None:
    """The spans of a request's trace as a tree, or None if the request is unknown.

    Returns `{"request_id", "trace_ids", "spans": n, "roots": [node, ...]}`; a node has span_id,
    parent_span_id, name, kind, service, start, duration_ms, status, status_message,
    attributes (all but prompt/response content), `llm` (model, provider, prompt, response,
    tokens, cost, latency, status) for LLM calls, and `children` ordered by start time. Spans
    whose parent is not in the trace (a remote parent) are roots.
    """
    run = _runner(source)
    trace_ids = _trace_ids(run, request_id)
    if not trace_ids:
        return None
    params = {"tids": trace_ids}
    columns, rows = run(
        "SELECT SpanId AS span_id, ParentSpanId AS parent_span_id, SpanName AS name, "
        "SpanKind AS kind, ServiceName AS service, Timestamp AS start, "
        "Duration / 1e6 AS duration_ms, StatusCode AS status, StatusMessage AS status_message, "
        "SpanAttributes AS attributes "
        f"FROM {DATABASE}.otel_traces FINAL WHERE TraceId IN {{tids:Array(String)}} "
        "ORDER BY Timestamp, SpanId",
        params,
    )
    spans = _dicts(columns, rows)
    lcols, lrows = run(
        "SELECT span_id, provider, model, response_model, step_index, prompt, response, "
        "finish_reasons, input_tokens, output_tokens, cost_usd, latency_ms, status, error_type, "
        "context_trimmed, trimmed_chars "
        f"FROM {DATABASE}.llm_calls FINAL WHERE trace_id IN {{tids:Array(String)}}",
        params,
    )
    llm = {row["span_id"]: row for row in _dicts(lcols, lrows)}
    nodes: dict[str, dict[str, Any]] = {}
    for span in spans:
        attributes = {
            k: v for k, v in dict(span["attributes"]).items() if k not in CONTENT_ATTRIBUTES
        }
        node = {**span, "attributes": attributes, "children": []}
        call = llm.get(span["span_id"])
        if call is not None:
            node["llm"] = {k: v for k, v in call.items() if k != "span_id"}
        nodes[span["span_id"]] = node
    roots: list[dict[str, Any]] = []
    for node in nodes.values():
        parent = nodes.get(node["parent_span_id"])
        (parent["children"] if parent is not None else roots).append(node)
    return {"request_id": request_id, "trace_ids": trace_ids, "spans": len(nodes), "roots": roots}
