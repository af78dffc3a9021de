"""Migrations, replayed batches and read-only querying against a real chDB engine.

chDB hosts one engine per process: every client a test opens is closed before it ends, and
each test uses its own directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sinks.analytics import QueryError, report, run_query, trace_tree
from sinks.clickhouse import DDL_DIR, ClickHouseSink, connect, migrate
from sinks.query_server import QueryServer
from sinks.samples import request_trace, request_traces
from sinks.sql import ReadOnlyViolation, split_statements
from streams.config.settings import REPO_ROOT
from streams.telemetry.redaction import Redactor

pytestmark = pytest.mark.integration

TABLES = ("otel_traces", "llm_calls", "decisions")
T0 = 1_750_000_000_000_000_000  # 2025-06-15T15:06:40Z


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'chdb'}"


@pytest.fixture
def client(url: str) -> Iterator[Any]:
    c = connect(url)
    migrate(c)
    try:
        yield c
    finally:
        c.close()


def counts(client: Any, final: bool = True) -> dict[str, int]:
    suffix = " FINAL" if final else ""
    return {t: int(client.command(f"SELECT count() FROM agentstream.{t}{suffix}")) for t in TABLES}


def test_migrate_twice_is_a_noop(url: str) -> None:
    c = connect(url)
    try:
        applied = migrate(c)
        assert applied == sorted(p.name for p in DDL_DIR.glob("*.sql"))

        def tables() -> list[tuple[str, str]]:
            return c.query(
                "SELECT name, create_table_query FROM system.tables "
                "WHERE database = 'agentstream' ORDER BY name"
            ).result_rows

        before = tables()
        assert {
            "otel_traces",
            "llm_calls",
            "decisions",
            "decisions_1m",
            "mv_decisions_1m",
            "cost_per_user_1m",
            "llm_calls_1m",
            "v_metrics_1m",
            "sink_offsets",
            "otel_traces_trace_id_ts",
        } <= {name for name, _ in before}
        assert migrate(c) == []
        # the files themselves are idempotent too, ledger or not
        for path in sorted(DDL_DIR.glob("*.sql")):
            for statement in split_statements(path.read_text()):
                c.command(statement)
        assert tables() == before
    finally:
        c.close()


def test_otel_traces_has_the_exporter_columns(client: Any) -> None:
    got = client.query(
        "SELECT name, type FROM system.columns WHERE database = 'agentstream' "
        "AND table = 'otel_traces' ORDER BY position"
    ).result_rows
    lc, m = "LowCardinality(String)", "Map(LowCardinality(String), String)"
    assert got == [
        ("Timestamp", "DateTime64(9)"),
        ("TraceId", "String"),
        ("SpanId", "String"),
        ("ParentSpanId", "String"),
        ("TraceState", "String"),
        ("SpanName", lc),
        ("SpanKind", lc),
        ("ServiceName", lc),
        ("ResourceAttributes", m),
        ("ScopeName", "String"),
        ("ScopeVersion", "String"),
        ("SpanAttributes", m),
        ("Duration", "UInt64"),
        ("StatusCode", lc),
        ("StatusMessage", "String"),
        ("Events.Timestamp", "Array(DateTime64(9))"),
        ("Events.Name", f"Array({lc})"),
        ("Events.Attributes", f"Array({m})"),
        ("Links.TraceId", "Array(String)"),
        ("Links.SpanId", "Array(String)"),
        ("Links.TraceState", "Array(String)"),
        ("Links.Attributes", f"Array({m})"),
    ]
    indexes = client.query(
        "SELECT name FROM system.data_skipping_indices WHERE database = 'agentstream' "
        "AND table = 'otel_traces' ORDER BY name"
    ).result_rows
    assert [i for (i,) in indexes] == [
        "idx_duration",
        "idx_res_attr_key",
        "idx_res_attr_value",
        "idx_span_attr_key",
        "idx_span_attr_value",
        "idx_trace_id",
    ]


def test_a_batch_inserted_twice_yields_no_duplicates(client: Any) -> None:
    spans = request_traces(50, seed="twice")
    for _ in range(2):  # e.g. a sink killed after its insert and before its commit
        sink = ClickHouseSink(client)
        for span in spans:
            sink.add(span)
        sink.flush({("traces", 0): len(spans)}, group="g")
    expected = {"otel_traces": 200, "llm_calls": 50, "decisions": 50}
    assert counts(client, final=False) == expected  # dropped at insert: identical token
    assert int(client.command("SELECT sum(requests) FROM agentstream.decisions_1m")) == 50
    # Replayed with other batch boundaries (new tokens): rows already there are not inserted
    # again, so even without FINAL and in the rollups nothing is doubled.
    sink = ClickHouseSink(client)
    for cut in (spans[:77], spans[60:130], spans[120:]):  # overlapping, as after a revoke
        for span in cut:
            sink.add(span)
        sink.flush()
    assert counts(client, final=False) == expected
    assert counts(client) == expected
    rollups = {
        "decisions_1m": "SELECT sum(requests) FROM agentstream.decisions_1m",
        "llm_calls_1m": "SELECT sum(calls) FROM agentstream.llm_calls_1m",
    }
    recount = {
        "decisions_1m": "SELECT count() FROM agentstream.decisions FINAL",
        "llm_calls_1m": "SELECT count() FROM agentstream.llm_calls FINAL",
    }
    for name, sql in rollups.items():
        assert int(client.command(sql)) == int(client.command(recount[name])), name
    client.command("OPTIMIZE TABLE agentstream.decisions_1m FINAL")
    assert int(client.command(rollups["decisions_1m"])) == 50


def test_timestamps_are_aware_utc(client: Any) -> None:
    sink = ClickHouseSink(client)
    for span in request_trace(0, seed="tz", t0_ns=T0):
        sink.add(span)
    sink.flush()
    ts = client.query("SELECT min(Timestamp) FROM agentstream.otel_traces").result_rows[0][0]
    # DateTime64(9) without a zone (the exporter's type) reads back in the engine's zone: aware,
    # and the same instant whatever that zone is
    assert ts.tzinfo is not None and ts == datetime.fromtimestamp(T0 / 1e9, UTC)
    (dts,) = client.query("SELECT timestamp FROM agentstream.llm_calls").result_rows[0]
    assert dts.tzinfo is not None and dts.utcoffset() == timedelta(0)


def _fill(client: Any) -> None:
    sink = ClickHouseSink(client, redact=Redactor())
    spans = request_traces(40, seed="q", t0_ns=T0)
    spans += request_trace(
        99,
        seed="q",
        t0_ns=T0,
        llm_calls=2,
        llm_status="fallback",
        prompt="card 4111 1111 1111 1111, mail me at x@y.org",
    )
    for span in spans:
        sink.add(span)
    sink.flush()


def _post(port: int, sql: str, token_dir: Path) -> tuple[int, dict[str, Any]]:
    token = (token_dir / "chdb" / "sink.token").read_text().strip()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/query",
        json.dumps({"sql": sql}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextlib.asynccontextmanager
async def serving(url: str, tmp: Path) -> Any:
    server = QueryServer(url, port_file=Path(tmp) / "chdb" / "sink.port")
    port = await server.start()
    try:
        yield port
    finally:
        await server.stop()


async def test_query_server_is_read_only(client: Any, url: str, tmp_path: Path) -> None:
    _fill(client)
    async with serving(url, tmp_path) as port:
        assert (tmp_path / "chdb" / "sink.port").read_text().strip() == str(port)
        cols, rows = await asyncio.to_thread(
            run_query, "SELECT count() AS n FROM agentstream.decisions FINAL", clickhouse_url=url
        )
        assert cols == ["n"] and rows == [(41,)]
        for sql in (
            "INSERT INTO agentstream.decisions (request_id) VALUES ('x')",
            "DROP TABLE agentstream.decisions",
            "SELECT 1; DROP TABLE agentstream.decisions",
            "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        ):
            with pytest.raises(ReadOnlyViolation):
                await asyncio.to_thread(run_query, sql, clickhouse_url=url)
            status, body = await asyncio.to_thread(_post, port, sql, tmp_path)  # past the client check
            assert status == 403 and "read-only" in body["error"]
        status, body = await asyncio.to_thread(_post, port, "SELECT no_such_column", tmp_path)
        assert status == 400 and "no_such_column" in body["error"]
        with pytest.raises(QueryError):
            await asyncio.to_thread(run_query, "SELECT nope()", clickhouse_url=url)
    assert not (tmp_path / "chdb" / "sink.port").exists()
    assert int(client.command("SELECT count() FROM agentstream.decisions")) == 41


def test_read_only_handle_refuses_writes_even_without_the_keyword_check(
    client: Any, url: str
) -> None:
    ro = connect(url, readonly=True)
    try:
        for sql in (
            "INSERT INTO agentstream.decisions (request_id) VALUES ('x')",
            "DROP TABLE agentstream.decisions",
        ):
            with pytest.raises(Exception, match=r"readonly|READONLY"):
                ro.command(sql)
    finally:
        ro.close()
    assert int(client.command("EXISTS TABLE agentstream.decisions")) == 1


async def test_another_process_queries_through_the_endpoint(
    client: Any, url: str, tmp_path: Path
) -> None:
    _fill(client)
    code = (
        "import sys, json; from sinks.analytics import run_query; "
        "print(json.dumps(run_query(sys.argv[1], clickhouse_url=sys.argv[2])[1]))"
    )
    sql = "SELECT count() FROM agentstream.llm_calls FINAL"

    async def other_process(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            *args,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        return proc.returncode or 0, out.decode(), err.decode()

    async with serving(url, tmp_path):
        rc, out, err = await other_process(code, sql, url)
        assert rc == 0, err
        assert json.loads(out) == [[42]]
        # opening the directory directly from another process fails while we hold it
        rc, _, err = await other_process(
            "import sys; from sinks.clickhouse import connect; connect(sys.argv[1])", url
        )
        assert rc != 0 and "lock" in err.lower(), err[-2000:]


def test_report_and_trace_tree(client: Any, url: str) -> None:
    _fill(client)
    since = datetime.fromtimestamp(T0 / 1e9, UTC) - timedelta(minutes=5)
    until = since + timedelta(hours=1)
    tables = report(client, since, until)
    (summary,) = tables["summary"]
    assert summary["requests"] == 41
    assert summary["errors"] == 4 and summary["error_rate"] == pytest.approx(4 / 41)
    assert summary["escalations"] == 4 and summary["escalation_rate"] == pytest.approx(4 / 41)
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p95_ms"] <= summary["latency_p99_ms"]
    assert summary["tokens_per_success"] > 0 and summary["cost_per_interaction"] > 0
    assert summary["users"] == 10
    assert sum(r["requests"] for r in tables["cost_per_user"]) == 41
    (llm,) = tables["llm"]
    assert llm["calls"] == 42 and llm["breaker_trips"] == 2
    assert sum(r["requests"] for r in tables["per_minute"]) == 41
    assert sum(r["breaker_trips"] for r in tables["per_minute"]) == 2
    assert report(client, until, until + timedelta(hours=1))["summary"][0]["requests"] == 0

    assert trace_tree(client, "nope") is None
    tree = trace_tree(client, "q-req-99")
    assert tree is not None and tree["spans"] == 5 and len(tree["trace_ids"]) == 1
    (root,) = tree["roots"]
    assert (
        root["name"] == "process agentstream.requests.v1"
        and root["attributes"]["agentstream.stage"] == "router"
    )
    (agent,) = root["children"]
    names = [c["name"] for c in agent["children"]]
    assert names == ["chat sim-small", "chat sim-small", "process agentstream.executed.v1"]
    call = agent["children"][1]["llm"]
    assert call["step_index"] == 1 and call["input_tokens"] == 130 and call["status"] == "fallback"
    assert "[REDACTED:CARD]" in call["prompt"] and "[REDACTED:EMAIL]" in call["prompt"]
    assert "4111" not in json.dumps(tree, default=str)
    assert "gen_ai.input.messages" not in agent["children"][0]["attributes"]
    assert agent["children"][0]["duration_ms"] > 0


async def test_report_and_trace_tree_through_the_endpoint(
    client: Any, url: str, tmp_path: Path
) -> None:
    _fill(client)
    since = datetime.fromtimestamp(T0 / 1e9, UTC) - timedelta(minutes=5)
    direct = report(client, since, since + timedelta(hours=1))
    async with serving(url, tmp_path):
        via = await asyncio.to_thread(report, url, since, since + timedelta(hours=1))
        tree = await asyncio.to_thread(trace_tree, url, "q-req-99")
    assert via["summary"] == direct["summary"]
    assert [r["minute"] for r in via["per_minute"]] == [r["minute"] for r in direct["per_minute"]]
    assert tree is not None and tree["spans"] == 5
    assert isinstance(tree["roots"][0]["start"], datetime)


def test_run_query_opens_the_directory_when_no_sink_runs(url: str) -> None:
    c = connect(url)
    try:
        migrate(c)
        _fill(c)
    finally:
        c.close()
    _, rows = run_query("SELECT count() FROM agentstream.decisions FINAL", clickhouse_url=url)
    assert rows == [(41,)]
    Path(url.removeprefix("chdb://"), "sink.port").write_text("1\n")  # stale: sink died
    assert run_query("SHOW TABLES FROM agentstream", clickhouse_url=url)[1]


def test_grafana_dashboard_queries_run(client: Any) -> None:
    _fill(client)
    dashboard = json.loads((REPO_ROOT / "infra/grafana/dashboards/agentstream.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            sql = re.sub(
                r"\$__timeFilter\((\w+)\)",
                r"\1 >= toDateTime('2025-06-15 00:00:00', 'UTC')",
                target["rawSql"],
            )
            assert client.query(sql).result_rows, panel["title"]


def test_cli_query_and_trace(client: Any, url: str) -> None:
    _fill(client)
    client.close()  # let the CLI process open the directory
    env = {**os.environ, "CLICKHOUSE_URL": url}
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "streams.cli.main", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    out = run("query", "SELECT count() AS n FROM agentstream.decisions FINAL", "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["n", "41"]
    out = run("query", "DROP TABLE agentstream.decisions")
    assert out.returncode != 0 and "read-only" in (out.stdout + out.stderr).lower()
    out = run("trace", "q-req-99", "--json")
    assert out.returncode == 0, out.stderr
    assert "chat sim-small" in out.stdout and "REDACTED:CARD" in out.stdout
