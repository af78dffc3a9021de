"""Console page load time with 1,000,000 rows in `decisions` (embedded chDB), against a plain
`SELECT count()` through the same read path, in the same run.

    python bench/bench_console.py [--rows 1000000] [--repeat 5]

Setup (not timed): a fresh chDB directory, the migrations, `--rows` decisions spread over the
last 24 hours inserted by ClickHouse itself (`INSERT … SELECT FROM numbers()`, which also fills
the per-minute rollups through their materialized views), the sink's read-only query endpoint
served from this process (as `agentstream sink` serves it), and `agentstream console` started as
a process reading through that endpoint, as it does in production.
Timed: full HTTP page loads (query + render + transfer) by a logged-in client, `--repeat` times
each; prints one JSON line per page (median, min, max ms) and a summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sinks.analytics import run_query
from sinks.clickhouse import connect, migrate
from sinks.query_server import QueryServer
from streams.config.settings import REPO_ROOT

TOKEN = "bench-console-token-0123456789"

FILL = """
INSERT INTO agentstream.decisions (timestamp, trace_id, span_id, request_id, session_id, user_id,
    tenant_id, route, model, rollout_arm, verdict, reasons, escalated, status, reason, language,
    input_tokens, output_tokens, cost_usd, latency_ms, llm_calls, config_version)
SELECT
    fromUnixTimestamp64Milli(toInt64({now_ms:Int64} - number * {spacing_ms:UInt32}), 'UTC'),
    lower(hex(MD5(toString(number)))),
    substring(lower(hex(SHA1(toString(number)))), 1, 16),
    lower(hex(MD5(concat('r', toString(number))))),
    concat('s-', toString(number % 50000)),
    concat('user-', toString(number % 20000)),
    ['default', 'acme', 'globex'][number % 3 + 1],
    ['customer_support', 'billing', 'technical'][number % 3 + 1],
    ['sim-small', 'sim-large'][number % 2 + 1],
    ['control', 'candidate'][(number % 10 = 0) + 1],
    'pass',
    if(number % 17 = 0, ['refund above the threshold'], []),
    number % 17 = 0,
    multiIf(number % 17 = 0, 'escalated', number % 41 = 0, 'error', number % 53 = 0, 'blocked', 'ok'),
    multiIf(number % 17 = 0, 'held for review', number % 41 = 0, 'provider error',
            number % 53 = 0, 'jailbreak screened', 'answered'),
    'en', 100 + number % 400, 50 + number % 300, (number % 100) / 10000,
    200 + (number % 1000) * 3, 1 + number % 3,
    ['2026-11-25.1', '2026-11-28.1-candidate'][(number % 10 = 0) + 1]
FROM numbers({rows:UInt64})
"""


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def fill(url: str, rows: int) -> float:
    client = connect(url)
    try:
        migrate(client)
        started = time.perf_counter()
        client.query(
            FILL,
            parameters={"now_ms": int(time.time() * 1000), "spacing_ms": max(1, 86_400_000 // rows), "rows": rows},
            settings={"insert_deduplicate": 0},
        )
        elapsed = time.perf_counter() - started
        count = int(client.command("SELECT count() FROM agentstream.decisions"))
        assert count == rows, count
        return elapsed
    finally:
        client.close()


def get(url: str, cookie: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Cookie": cookie})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.status, resp.read()


def login(base: str) -> str:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(f"{base}/?token={TOKEN}", timeout=30)
    except urllib.error.HTTPError as exc:  # the 303 with the cookie
        return exc.headers["Set-Cookie"].split(";", 1)[0]
    raise RuntimeError("login did not redirect")


async def timed(label: str, fn: Any, repeat: int) -> dict[str, Any]:
    times = []
    size = 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = await asyncio.to_thread(fn)
        times.append((time.perf_counter() - started) * 1000)
        size = len(result[1]) if isinstance(result, tuple) and isinstance(result[1], bytes) else size
    row = {"page": label, "median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
           "max_ms": round(max(times), 1), "repeat": repeat}
    if size:
        row["bytes"] = size
    emit(**row)
    return row


async def main(rows: int, repeat: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-console-"))
    url = f"chdb://{tmp / 'clickhouse'}"
    emit(phase="fill", rows=rows, seconds=round(await asyncio.to_thread(fill, url, rows), 2))
    server = QueryServer(url, port_file=tmp / "clickhouse" / "sink.port", pool_size=2)
    await server.start()
    log = tmp / "console.log"
    env = {**os.environ, "CLICKHOUSE_URL": url, "AGENTSTREAM_CONSOLE_TOKEN": TOKEN,
           "AGENTSTREAM_DATA_DIR": str(tmp / "data")}
    with open(log, "wb") as fh:
        console = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "console", "--port", "0"],
                                   env=env, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT)
    try:
        base = ""
        for _ in range(300):
            found = re.search(r"console ready: (http://127\.0\.0\.1:\d+)/", log.read_text(errors="replace"))
            if found:
                base = found.group(1)
                break
            if console.poll() is not None:
                raise RuntimeError(log.read_text())
            await asyncio.sleep(0.2)
        cookie = await asyncio.to_thread(login, base)
        # Warm-up, and the second page's link. Off the event loop: it serves the query endpoint.
        status, first = await asyncio.to_thread(get, f"{base}/requests", cookie)
        assert status == 200
        next_link = re.search(r'id="next-page" href="([^"]+)"', first.decode())
        assert next_link, "no next page link at 1M rows"
        second = next_link.group(1).replace("&amp;", "&")

        results = [await timed("baseline: SELECT count() FROM decisions (run_query, same endpoint)",
                               lambda: run_query("SELECT count() FROM agentstream.decisions", clickhouse_url=url),
                               repeat)]
        pages = {
            "requests list, first page": "/requests",
            "requests list, second page (keyset)": second,
            "requests list, status=error & domain=billing": "/requests?status=error&domain=billing",
            "requests list, user=user-77": "/requests?user=user-77",
            "requests list, text search 'provider'": "/requests?q=provider",
            "overview, last 1h": "/?window=1h",
            "overview, last 24h": "/?window=24h",
            "overview, last 7d": "/?window=7d",
        }
        for label, path in pages.items():
            results.append(await timed(label, lambda p=path: get(f"{base}{p}", cookie), repeat))
        baseline = results[0]["median_ms"]
        emit(summary=True, rows=rows, baseline_count_ms=baseline,
             slowest_page=max(results[1:], key=lambda r: r["median_ms"])["page"],
             slowest_median_ms=max(r["median_ms"] for r in results[1:]),
             requests_first_page_ms=results[1]["median_ms"], overview_1h_ms=results[6]["median_ms"])
    finally:
        console.terminate()
        console.wait(15)
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.repeat))
