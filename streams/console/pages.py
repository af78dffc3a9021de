"""Request handlers: read the query string, fetch through `Sources`, shape with `views`, render.

Handlers hold no state of their own; everything they need is the `Console` stored on the
aiohttp application (see `server.build_app`).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from sinks.analytics import QueryError
from sinks.sql import ReadOnlyViolation
from streams.console import views
from streams.console.auth import Auth
from streams.console.queries import (
    STATUSES,
    WINDOWS,
    Cursor,
    RequestFilters,
    Window,
    breaker_series_query,
    overview_series_query,
    overview_split_query,
    overview_totals_query,
    replay_report_query,
    replay_reports_query,
    request_summary_query,
    requests_query,
    session_requests_query,
)
from streams.console.sources import Sources
from streams.events.records import now_ms

__all__ = ["CONSOLE", "STARTED", "Console", "routes"]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class Console:
    """Everything the handlers share: data sources, the auth checks, the templates."""

    sources: Sources
    auth: Auth
    templates: jinja2.Environment
    reviewer: str
    page_size: int = 50


CONSOLE = web.AppKey("console", Console)
STARTED = web.RequestKey("started", float)  # perf_counter() when the request came in


def _console(request: web.Request) -> Console:
    return request.app[CONSOLE]


def _render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    c = _console(request)
    started = request.get(STARTED, time.perf_counter())
    values: dict[str, Any] = {"query_ms": None, "flashes": [], **context}
    html = c.templates.get_template(name).render(
        config_version=c.sources.config.version,
        csrf=c.auth.csrf_token,
        render_ms=(time.perf_counter() - started) * 1000,
        **values,
    )
    return web.Response(text=html, content_type="text/html", status=status)


def _message(request: web.Request, title: str, message: str, status: int, nav: str = "") -> web.Response:
    return _render(request, "message.html", status=status, title=title, message=message, nav=nav)


async def _timed_rows(request: web.Request, *queries: Any) -> tuple[list[list[dict[str, Any]]], float]:
    """Run queries concurrently; returns their rows and the wall time in ms."""
    started = time.perf_counter()
    results = await asyncio.gather(*(_console(request).sources.rows(q) for q in queries))
    return list(results), (time.perf_counter() - started) * 1000


def _clickhouse_down(request: web.Request, exc: Exception, nav: str) -> web.Response:
    return _message(
        request, "ClickHouse is not reachable",
        f"{exc}. Start the sink (agentstream sink) or set CLICKHOUSE_URL to a server.", 503, nav,
    )


# ------------------------------------------------------------------------------------- pages


async def overview(request: web.Request) -> web.Response:
    c = _console(request)
    label = request.query.get("window", "1h")
    label = label if label in WINDOWS else "1h"
    version = request.query.get("version", "")[:200]
    arm = request.query.get("arm", "")[:200]
    window = Window.last(label, now_ms())
    try:
        (series, totals, split, breakers), query_ms = await _timed_rows(
            request, overview_series_query(window, version, arm), overview_totals_query(window, version, arm),
            overview_split_query(window), breaker_series_query(window),
        )
    except (QueryError, ReadOnlyViolation) as exc:
        return _clickhouse_down(request, exc, "Overview")
    model = views.overview_model(series, totals, split, breakers, window, c.sources.config.monitor)
    return _render(request, "overview.html", title="Overview", nav="Overview", model=model,
                   windows=list(WINDOWS), window=label, version=version, arm=arm,
                   window_s=c.sources.config.monitor.window_s, query_ms=query_ms)


def _local_input(ms: int | None) -> str:
    """A datetime-local input's value (UTC) for epoch ms."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


async def requests_list(request: web.Request) -> web.Response:
    c = _console(request)
    filters = RequestFilters.from_query(request.query)
    cursor = Cursor.decode(request.query.get("after"))
    try:
        (rows,), query_ms = await _timed_rows(request, requests_query(filters, cursor, c.page_size))
    except (QueryError, ReadOnlyViolation) as exc:
        return _clickhouse_down(request, exc, "Requests")
    shown, next_cursor = views.page_of(rows, c.page_size)
    next_url = None
    if next_cursor is not None:
        next_url = "/requests?" + urlencode({**filters.as_query(), "after": next_cursor.encode()})
    return _render(request, "requests.html", title="Requests", nav="Requests", rows=shown, f=filters,
                   statuses=STATUSES, cursor=cursor, next_url=next_url, query_ms=query_ms,
                   since=_local_input(filters.since_ms), until=_local_input(filters.until_ms))


async def trace(request: web.Request) -> web.Response:
    c = _console(request)
    request_id = request.match_info["request_id"]
    if not _REQUEST_ID.match(request_id):
        return _message(request, "Not a request id", "Request ids are letters, digits and . _ : -", 400, "Requests")
    started = time.perf_counter()
    try:
        tree, summary = await asyncio.gather(
            c.sources.trace(request_id), c.sources.rows(request_summary_query(request_id))
        )
        decision = summary[0] if summary else None
        session = []
        if decision is not None:
            session = await c.sources.rows(session_requests_query(str(decision["session_id"])))
    except (QueryError, ReadOnlyViolation) as exc:
        return _clickhouse_down(request, exc, "Requests")
    if tree is None and decision is None:
        return _message(request, "Request not found",
                        f"No spans or decision for {request_id} in ClickHouse (yet).", 404, "Requests")
    model = views.trace_model(tree or {})
    return _render(request, "trace.html", title=f"Request {request_id}", nav="Requests", d=decision,
                   model=model, trace_ids=(tree or {}).get("trace_ids", []), session=session,
                   request_id=request_id, query_ms=(time.perf_counter() - started) * 1000)


async def review(request: web.Request, flashes: list[dict[str, str]] | None = None,
                 status: int = 200) -> web.Response:
    c = _console(request)
    started = time.perf_counter()
    pending, decisions = await c.sources.review_state()
    recent = sorted(decisions, key=lambda d: d.decided_ms, reverse=True)[:20]
    sessions, follow_ups = await asyncio.gather(
        c.sources.sessions({p.escalation.session_id for p in pending}),
        c.sources.follow_ups({d.request_id for d in recent}),
    )
    published = request.query.get("published", "")
    if published and _REQUEST_ID.match(published) and not flashes:
        action = request.query.get("action", "decision")
        flashes = [{"kind": "ok", "text": f"{action} of {published} published; the task resumes on its worker"}]
    return _render(
        request, "review.html", status=status, title="Review queue", nav="Review",
        pending=views.pending_items(pending, sessions, c.sources.redact, now_ms()),
        decided=views.decided_items(recent, follow_ups, c.sources.redact),
        reviewer=c.reviewer, flashes=flashes or [], pending_count=len(pending),
        query_ms=(time.perf_counter() - started) * 1000,
    )


async def decide(request: web.Request) -> web.StreamResponse:
    """POST /review/{request_id}: approve, edit or reject, published as `agentstream review` does."""
    from streams.cli.review import DecisionInvalid, build_decision
    from streams.stages.reviewing.queue import last_decision

    c = _console(request)
    request_id = request.match_info["request_id"]
    form = await request.post()
    action = str(form.get("action", ""))
    pending, decisions = await c.sources.review_state()
    item = next((p for p in pending if p.request_id == request_id), None)
    if item is None:
        prior = last_decision(decisions, request_id)
        text = (f"{request_id} was already decided: {prior.decision} by {prior.reviewer}" if prior
                else f"no pending escalation {request_id}")
        return await review(request, [{"kind": "error", "text": text}], status=409)
    args = str(form["args"]) if "args" in form else None
    try:
        if args is not None:
            json.loads(args)  # a clearer message than the CLI's --args wording
        decision = build_decision(item, action, args, str(form.get("answer", "")) or None,
                                  str(form.get("note", ""))[:2000], c.reviewer)
    except (DecisionInvalid, ValueError) as exc:
        text = str(exc).replace("--args", "the arguments").replace("--answer", "an answer")
        return await review(request, [{"kind": "error", "text": text}], status=400)
    await c.sources.publish(decision)
    raise web.HTTPSeeOther(f"/review?{urlencode({'published': request_id, 'action': action})}")


async def replays(request: web.Request) -> web.Response:
    report_id = request.match_info.get("report_id")
    queries = [replay_reports_query()]
    if report_id:
        if not _REQUEST_ID.match(report_id):
            return _message(request, "Not a report id", "Report ids are hex", 400, "Replays")
        queries.append(replay_report_query(report_id))
    try:
        results, query_ms = await _timed_rows(request, *queries)
    except (QueryError, ReadOnlyViolation) as exc:
        return _clickhouse_down(request, exc, "Replays")
    report = results[1][0] if report_id and results[1] else None
    differing: list[Any] = []
    if report is not None:
        try:
            differing = json.loads(report["differing"] or "[]")
        except ValueError:
            differing = []
    return _render(request, "replays.html", title="Replay and shadow reports", nav="Replays",
                   reports=results[0], report=report, differing=differing, query_ms=query_ms)


async def status(request: web.Request) -> web.Response:
    started = time.perf_counter()
    report = await _console(request).sources.status()
    return _render(request, "status.html", title="Status", nav="Status", report=report,
                   query_ms=(time.perf_counter() - started) * 1000)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", overview),
        web.get("/requests", requests_list),
        web.get("/trace/{request_id}", trace),
        web.get("/review", review),
        web.post("/review/{request_id}", decide),
        web.get("/replays", replays),
        web.get("/replays/{report_id}", replays),
        web.get("/status", status),
    ]
