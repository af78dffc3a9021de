"""The embedded query endpoint cannot write, read files, change settings or be reached from a web
page: bypass attempts against the real chDB engine behind the real HTTP endpoint.

chDB hosts one engine per process: every client a test opens is closed before it ends, and
each test uses its own directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sinks.analytics import run_query
from sinks.clickhouse import connect, migrate
from sinks.query_server import QueryServer
from sinks.sql import ReadOnlyViolation

pytestmark = pytest.mark.integration

SECRET_FILE_TEXT = "do-not-leak-7f3a"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'chdb'}"


@pytest.fixture
def client(url: str) -> Iterator[Any]:
    c = connect(url)
    migrate(c)
    c.command(
        "INSERT INTO agentstream.decisions (request_id, session_id, user_id, verdict) "
        "SELECT toString(number), 's', 'u', 'pass' FROM numbers(25)"
    )
    try:
        yield c
    finally:
        c.close()


@contextlib.asynccontextmanager
async def serving(url: str, tmp: Path) -> AsyncIterator[QueryServer]:
    server = QueryServer(url, port_file=tmp / "chdb" / "sink.port")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def post(
    port: int,
    body: bytes,
    *,
    token: str | None,
    content_type: str = "application/json",
    host: str | None = None,
) -> tuple[int, str]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if host is not None:
        headers["Host"] = host
    req = urllib.request.Request(f"http://127.0.0.1:{port}/query", body, headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def bypass_attempts(out: Path, secret: Path) -> list[str]:
    """Ways to write a file, read one, change data or settings, dressed up to slip past a check."""
    o = out / "pwned.txt"
    return [
        f"SELECT 1 INTO OUTFILE '{o}'",
        f"SELECT 1 WHERE $$'$$ != '' INTO OUTFILE '{o}' TRUNCATE --'",
        f"select 1 into outfile '{o}'",
        f"SeLeCt 1 InTo OuTfIlE '{o}'",
        f"SELECT 1 INTO OUTFILE '{o}' APPEND",
        f"SELECT 1 INTO OUTFILE '{o}' AND STDOUT",
        f"SELECT 1 /* c */ INTO /* c */ OUTFILE '{o}'",
        f"SELECT 1 -- c\nINTO OUTFILE '{o}'",
        f"SELECT 'a' INTO OUTFILE $${o}$$",
        f"SELECT $tag$x$tag$ INTO OUTFILE '{o}'",
        f"SELECT 1 INTO OUTFILE '{o}' COMPRESSION 'gzip'",
        f"WITH 1 AS x SELECT x INTO OUTFILE '{o}'",
        f"(SELECT 1) INTO OUTFILE '{o}'",
        f"SELECT 1 UNION ALL SELECT 2 INTO OUTFILE '{o}'",
        f"EXPLAIN SELECT 1 INTO OUTFILE '{o}'",
        f"EXPLAIN AST SELECT 1 INTO OUTFILE '{o}'",
        f"SELECT 1; SELECT 2 INTO OUTFILE '{o}'",
        f"SELECT 1 INTO OUTFILE '{o}' FORMAT CSV",
        f"SELECT\u200b1 INTO OUTFILE '{o}'",
        f"SELECT 1 \uff29NTO OUTFILE '{o}'",
        f"INSERT INTO FUNCTION file('{o}', 'CSV') SELECT 1",
        f"BACKUP TABLE agentstream.decisions TO File('{o}')",
        "SELECT 1;\nINSERT INTO agentstream.decisions (request_id) VALUES ('x')",
        "INSERT INTO agentstream.decisions (request_id) VALUES ('x')",
        "SELECT 1\x00; DROP TABLE agentstream.decisions",
        "DROP TABLE agentstream.decisions",
        "/* SELECT */ DROP TABLE agentstream.decisions",
        "/*!SELECT*/ TRUNCATE TABLE agentstream.decisions",
        "ALTER TABLE agentstream.decisions DELETE WHERE 1",
        "DELETE FROM agentstream.decisions WHERE 1",
        "OPTIMIZE TABLE agentstream.decisions FINAL",
        "RENAME TABLE agentstream.decisions TO agentstream.gone",
        "DETACH TABLE agentstream.decisions",
        "CREATE TABLE agentstream.x (a Int8) ENGINE = Memory",
        "SYSTEM STOP MERGES",
        "KILL QUERY WHERE 1",
        "GRANT ALL ON *.* TO default",
        "SET readonly = 0",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT * FROM (SELECT 1 SETTINGS max_result_rows = 0)",
        f"SELECT * FROM file('{secret}', 'LineAsString')",
        f"SELECT file('{secret}')",
        f"SELECT FiLe('{secret}')",
        f"SELECT * FROM `file`('{secret}', 'LineAsString')",
        f"SELECT * FROM \"file\"('{secret}', 'LineAsString')",
        f"SELECT request_id FROM agentstream.decisions WHERE request_id IN "
        f"(SELECT * FROM file('{secret}', 'LineAsString'))",
        f"WITH (SELECT file('{secret}')) AS s SELECT s",
        "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')",
        "SELECT * FROM remote('127.0.0.1', system.one)",
        "SELECT * FROM executable('id', 'TSV', 'a String')",
        "SELECT * FROM s3('http://127.0.0.1:9/b/k', 'CSV', 'a String')",
        "SELECT * FROM mysql('127.0.0.1:9', 'a', 'b', 'c', 'd')",
        "SELECT * FROM input('a String')",
        "\uff33\uff25\uff2c\uff25\uff23\uff34 1",  # full-width SELECT
    ]


async def test_no_bypass_writes_reads_a_file_or_changes_data(
    client: Any, url: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET_FILE_TEXT)
    tables_before = client.query("SELECT name FROM system.tables WHERE database = 'agentstream'").result_rows
    attempts = bypass_attempts(out, secret)
    assert len(attempts) >= 40
    async with serving(url, tmp_path) as server:
        answered = []
        for sql in attempts:
            status, body = await asyncio.to_thread(
                post, server.port, json.dumps({"sql": sql}).encode(), token=server.token
            )
            answered.append((sql, status, body))
            with pytest.raises(ReadOnlyViolation):  # the in-process path screens the same way
                await asyncio.to_thread(_screen_directly, server, sql)
    allowed = [(sql, body[:200]) for sql, status, body in answered if status == 200]
    assert allowed == [], "every bypass attempt is refused"
    refused = [body for _, status, body in answered if status == 403]
    assert len(refused) >= len(attempts) - 5, "refused by the screen, not by luck"
    assert all(SECRET_FILE_TEXT not in body for _, _, body in answered)
    assert list(out.iterdir()) == [], "no file written"
    assert int(client.command("SELECT count() FROM agentstream.decisions")) == 25
    assert client.query("SELECT name FROM system.tables WHERE database = 'agentstream'").result_rows == tables_before


def _screen_directly(server: QueryServer, sql: str) -> None:
    from sinks.readonly import screen

    client = server._all_clients[0]
    screen(client, sql)


async def test_endpoint_wants_the_token_json_and_a_loopback_host(
    client: Any, url: str, tmp_path: Path
) -> None:
    body = json.dumps({"sql": "SELECT count() FROM decisions"}).encode()
    async with serving(url, tmp_path) as server:
        token_file = tmp_path / "chdb" / "sink.token"
        assert token_file.read_text().strip() == server.token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600, "only the owner reads the token"
        call = lambda **kw: asyncio.to_thread(post, server.port, body, **kw)  # noqa: E731
        assert (await call(token=None))[0] == 401
        assert (await call(token="guess"))[0] == 401
        assert (await call(token=server.token, content_type="text/plain"))[0] == 415
        assert (await call(token=server.token, host="attacker.example"))[0] == 403
        assert (await call(token=server.token, host="attacker.example:80"))[0] == 403
        status, text = await call(token=server.token, host="localhost")
        assert status == 200 and json.loads(text)["rows"] == [[25]], text
        # The CLI path finds the endpoint and its token by itself; tables need no database prefix.
        cols, rows = await asyncio.to_thread(
            run_query, "SELECT count() AS n FROM decisions", clickhouse_url=url
        )
        assert cols == ["n"] and rows == [(25,)]
    assert not token_file.exists(), "the token goes away with the endpoint"


async def test_limits_hold_for_an_endless_query(client: Any, url: str, tmp_path: Path) -> None:
    async with serving(url, tmp_path) as server:
        started = time.monotonic()
        status, text = await asyncio.to_thread(
            post,
            server.port,
            json.dumps({"sql": "SELECT number FROM system.numbers"}).encode(),
            token=server.token,
        )
        took = time.monotonic() - started
    assert status == 200, text
    rows = json.loads(text)["rows"]
    assert 0 < len(rows) <= server.max_rows, "the result is cut at the row limit"
    assert took < 30, f"an endless scan stops at the result limit, not at a timeout ({took:.1f}s)"


def test_direct_path_screens_and_uses_the_default_database(client: Any, url: str) -> None:
    client.close()  # no sink runs: run_query opens the directory itself
    _, rows = run_query("SELECT count() AS n FROM decisions", clickhouse_url=url)
    assert rows == [(25,)]
    with pytest.raises(ReadOnlyViolation, match="INTO OUTFILE"):
        run_query("SELECT 1 WHERE $$'$$ != '' INTO OUTFILE '/tmp/x' TRUNCATE --'", clickhouse_url=url)
