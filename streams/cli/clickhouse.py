"""Analyst and sink commands: `sink`, `clickhouse migrate`, `query`, `report`, `trace`.

With the embedded engine (chDB, `chdb:///dir`) only one process may open the directory: the sink
owns it and serves read-only SQL on 127.0.0.1, and these commands go through it when it runs (and
open the directory themselves when it does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from faust.cli import AppCommand, argument, option
from rich.tree import Tree

from streams.cli.output import console, fail, print_rows
from streams.kafka.app import app
from streams.kafka.topics import DEADLETTER, TRACES
from streams.telemetry import attributes as attr

settings = app.agentstream_settings


@app.command(
    option("--group", default="agentstream-clickhouse-sink", help="Consumer group."),
    option("--batch-rows", type=int, default=5000, help="Flush after this many spans."),
    option("--batch-age", type=float, default=1.0, help="Flush after this many seconds."),
    option("--query-port", type=int, default=0, help="Embedded mode: port of the SQL endpoint."),
)
async def sink(self: AppCommand, group: str, batch_rows: int, batch_age: float, query_port: int) -> None:
    """Consume agentstream.traces.v1 into ClickHouse (commits offsets only after the insert)."""
    from sinks.consumer import run_sink

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = asyncio.Event()
    client = None
    if settings.clickhouse_outage_file:
        from sinks.clickhouse import connect
        from sinks.outage import OutageGate

        inner = await asyncio.to_thread(connect, settings.clickhouse_url)
        client = OutageGate(inner, settings.clickhouse_outage_file)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    stats = await run_sink(
        settings.kafka_bootstrap_servers,
        settings.topic(TRACES),
        f"{group}{settings.namespace}",
        settings.clickhouse_url,
        stop,
        batch_max_rows=batch_rows,
        batch_max_age_s=batch_age,
        dead_letter_topic=settings.topic(DEADLETTER),
        query_port=query_port,
        client=client,
        redact=app.services.redactor.redact_structured,
        on_ready=lambda: console.print(f"sink ready: {settings.topic(TRACES)} -> {settings.clickhouse_url}"),
    )
    console.print_json(json.dumps(stats.as_dict()))


@app.command(argument("action", type=click.Choice(["migrate"])))
async def clickhouse(self: AppCommand, action: str) -> None:
    """Apply the numbered DDL in infra/clickhouse (idempotent)."""
    from sinks.clickhouse import connect, migrate

    client = await asyncio.to_thread(connect, settings.clickhouse_url)
    try:
        applied = await asyncio.to_thread(migrate, client)
    finally:
        client.close()
    console.print(f"applied: {', '.join(applied) or 'nothing (already up to date)'}")


@app.command(
    argument("sql"),
    option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table"),
)
async def query(self: AppCommand, sql: str, fmt: str) -> None:
    """Run one read-only SQL statement (SELECT/WITH/SHOW/DESCRIBE/EXPLAIN) against ClickHouse."""
    from sinks.analytics import QueryError, run_query
    from sinks.sql import ReadOnlyViolation

    try:
        columns, rows = await asyncio.to_thread(run_query, sql, clickhouse_url=settings.clickhouse_url)
    except (QueryError, ReadOnlyViolation) as exc:
        fail(str(exc))
    print_rows("query", columns, rows, fmt)


@app.command(
    option("--minutes", type=float, default=60.0, help="Report the last N minutes."),
    option("--since", default=None, help="Start (ISO-8601, UTC if no zone); overrides --minutes."),
    option("--until", default=None, help="End (ISO-8601); default now."),
    option("--json", "as_json", is_flag=True),
)
async def report(self: AppCommand, minutes: float, since: str | None, until: str | None, as_json: bool) -> None:
    """The dashboard metrics for a time range, as tables."""
    from sinks.analytics import report as build_report

    end = _when(until) or datetime.now(UTC)
    start = _when(since) or end - timedelta(minutes=minutes)
    tables = await asyncio.to_thread(build_report, settings.clickhouse_url, start, end)
    if as_json:
        click.echo(json.dumps(tables, default=str))
        return
    for name, rows in tables.items():
        if len(rows) == 1:  # one row reads better as metric / value
            print_rows(name, ["metric", "value"], list(rows[0].items()))
        else:
            cols = list(rows[0]) if rows else ["(no rows)"]
            print_rows(name, cols, [tuple(r.values()) for r in rows])


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@app.command(argument("request_id"), option("--json", "as_json", is_flag=True))
async def trace(self: AppCommand, request_id: str, as_json: bool) -> None:
    """One request's whole decision path as a tree: stages, LLM calls, tools, latencies."""
    from sinks.analytics import trace_tree

    tree = await asyncio.to_thread(trace_tree, settings.clickhouse_url, request_id)
    if tree is None:
        fail(f"request {request_id} not found in ClickHouse")
    if as_json:
        click.echo(json.dumps(tree, default=str, indent=2))
        return
    root = Tree(f"request {tree['request_id']}  trace {', '.join(tree['trace_ids'])}")
    for node in tree["roots"]:
        _add(root, node)
    console.print(root)


def _add(parent: Tree, node: dict[str, Any]) -> None:
    attrs = node["attributes"]
    keys = (attr.AGENTSTREAM_STAGE, attr.AGENTSTREAM_STATUS, attr.AGENTSTREAM_VERDICT, attr.AGENTSTREAM_REASON, attr.ERROR_TYPE)
    extra = "  ".join(f"{k.split('.')[-1]}={attrs[k]}" for k in keys if attrs.get(k))
    branch = parent.add(f"[bold]{node['name']}[/] {node['duration_ms']:.1f} ms {node['status']} {extra}".rstrip())
    call = node.get("llm")
    if call:
        branch.add(
            f"tokens {call['input_tokens']} in / {call['output_tokens']} out, "
            f"cost ${call['cost_usd']:.6f}, status {call['status']}"
        )
        branch.add(f"prompt: {call['prompt'][:400]}")
        branch.add(f"response: {call['response'][:400]}")
    for child in node["children"]:
        _add(branch, child)
