"""`python -m sinks run|migrate|query|report|trace`: the sink and its reads without the Faust CLI.

The entry point reads the environment (KAFKA_BOOTSTRAP_SERVERS, CLICKHOUSE_URL,
AGENTSTREAM_NAMESPACE); the library functions it calls take explicit arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_URL = "chdb://.data/clickhouse"


def _url(args: argparse.Namespace) -> str:
    return args.clickhouse_url or os.environ.get("CLICKHOUSE_URL") or DEFAULT_URL


async def _run(args: argparse.Namespace) -> int:
    from sinks.consumer import run_sink
    from streams.redaction import Redactor
    from streams.settings import get_settings

    settings = get_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    stats = await run_sink(
        settings.kafka_bootstrap_servers,
        args.topic or settings.topic("traces"),
        args.group,
        _url(args),
        stop,
        batch_max_rows=args.batch_rows,
        batch_max_age_s=args.batch_age,
        dead_letter_topic=settings.topic("deadletter") if args.dead_letter else None,
        query_port=args.query_port,
        redact=Redactor(enabled=settings.redaction).redact,
    )
    print(json.dumps(stats.as_dict()))
    return 0


def _print_table(name: str, rows: list[dict[str, Any]]) -> None:
    print(f"== {name}")
    if not rows:
        print("(no rows)")
        return
    cols = list(rows[0])
    cells = [[_fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _print_tree(node: dict[str, Any], depth: int = 0) -> None:
    pad = "  " * depth
    attrs = node["attributes"]
    keys = ("agentstream.stage", "agentstream.status", "agentstream.verdict", "error.type")
    extra = " ".join(f"{k.split('.')[-1]}={attrs[k]}" for k in keys if attrs.get(k))
    print(f"{pad}{node['name']} [{node['duration_ms']:.1f} ms] {node['status']} {extra}".rstrip())
    call = node.get("llm")
    if call:
        print(
            f"{pad}  tokens {call['input_tokens']}->{call['output_tokens']} "
            f"cost ${call['cost_usd']:.6f} status {call['status']}"
        )
        print(f"{pad}  prompt:   {call['prompt'][:300]}")
        print(f"{pad}  response: {call['response'][:300]}")
    for child in node["children"]:
        _print_tree(child, depth + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sinks", description=__doc__)
    parser.add_argument("--clickhouse-url", help=f"default $CLICKHOUSE_URL or {DEFAULT_URL}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume the traces topic into ClickHouse")
    run.add_argument("--topic", help="default: the settings' traces topic")
    run.add_argument("--group", default="agentstream-clickhouse-sink")
    run.add_argument("--batch-rows", type=int, default=5000)
    run.add_argument("--batch-age", type=float, default=1.0)
    run.add_argument("--query-port", type=int, default=0, help="chDB only; 0 = any free port")
    run.add_argument("--no-dead-letter", dest="dead_letter", action="store_false")
    sub.add_parser("migrate", help="apply infra/clickhouse DDL")
    query = sub.add_parser("query", help="run one read-only SQL statement")
    query.add_argument("sql")
    rep = sub.add_parser("report", help="metrics over the last N minutes")
    rep.add_argument("--minutes", type=float, default=60.0)
    trace = sub.add_parser("trace", help="one request's trace tree")
    trace.add_argument("request_id")
    trace.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    if args.command == "run":
        return asyncio.run(_run(args))
    if args.command == "migrate":
        from sinks.clickhouse import connect, migrate

        client = connect(_url(args))
        print(json.dumps(migrate(client)))
        client.close()
        return 0
    from sinks.analytics import report, run_query, trace_tree

    if args.command == "query":
        columns, rows = run_query(args.sql, clickhouse_url=_url(args))
        _print_table("result", [dict(zip(columns, r, strict=True)) for r in rows])
    elif args.command == "report":
        until = datetime.now(UTC)
        for name, rows in report(
            _url(args), until - timedelta(minutes=args.minutes), until
        ).items():
            _print_table(name, rows)
    else:
        tree = trace_tree(_url(args), args.request_id)
        if tree is None:
            print(f"request {args.request_id} not found", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(tree, default=str, indent=2))
        else:
            print(f"request {tree['request_id']} trace {', '.join(tree['trace_ids'])}")
            for root in tree["roots"]:
                _print_tree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
