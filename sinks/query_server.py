"""Read-only SQL over HTTP on 127.0.0.1, served by the process that owns the chDB directory.

chDB runs one engine per process and lets one process lock a data directory, so while the sink
writes, no other process (a `query` command, a notebook) can open it. The sink therefore serves
reads itself: `POST /query {"sql": ..., "params": {...}}` returns
`{"columns": [...], "types": [...], "rows": [[...]]}`, with the port written to `<dir>/sink.port`
for `sinks.analytics.run_query` to find. Queries run on their own read-only chDB handles
(`readonly=1`, per-query limits) in worker threads, so they never block the sink's event loop or
its inserts, and `sinks.readonly.screen` lets only one plain read through, decided by the
engine's own parser.

Who may ask: a random token, written to `<dir>/sink.token` readable by its owner only and sent
by the CLI as `Authorization: Bearer …`, is required; only `application/json` bodies (a web page
cannot send that cross-origin without a preflight, which is never answered) and only a `Host`
that names this machine's loopback (no DNS rebinding) are accepted; the socket binds to
127.0.0.1 unless configured otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any
from uuid import UUID

from aiohttp import web

from sinks.clickhouse import connect
from sinks.readonly import screen
from sinks.sql import ReadOnlyViolation

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

__all__ = ["QueryServer", "jsonable", "write_private"]

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def write_private(path: Path, text: str) -> None:
    """Writes `text` to `path` readable and writable by the owner only (0600), atomically."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    tmp.replace(path)


def host_name(header: str) -> str:
    """The name part of a `Host` header (`[::1]:8123` -> `[::1]`, `localhost:80` -> `localhost`)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header

log = logging.getLogger(__name__)


def jsonable(value: Any) -> Any:
    """A ClickHouse result value as JSON data (datetimes as ISO text, NaN/inf as null)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, Decimal | UUID | IPv4Address | IPv6Address):
        return str(value)
    return str(value)


class QueryServer:
    """aiohttp endpoint answering read-only SQL against a ClickHouse URL (chDB in practice)."""

    def __init__(
        self,
        clickhouse_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        port_file: Path | None = None,
        pool_size: int = 2,
        max_rows: int = 100_000,
        token: str | None = None,
        token_file: Path | None = None,
        allowed_hosts: frozenset[str] = frozenset(),
    ) -> None:
        self.clickhouse_url = clickhouse_url
        self.token = token or os.environ.get("AGENTSTREAM_QUERY_TOKEN") or secrets.token_urlsafe(32)
        self.token_file = token_file or (port_file.with_name("sink.token") if port_file else None)
        self.allowed_hosts = LOOPBACK_NAMES | {h.lower() for h in allowed_hosts} | (
            {host.lower()} if host not in ("0.0.0.0", "::", "") else set()
        )
        self.host = host
        self.port = port
        self.port_file = port_file
        self.max_rows = max_rows
        self._pool_size = pool_size
        self._clients: asyncio.Queue[Any] = asyncio.Queue()
        self._all_clients: list[Any] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Open the read-only handles, bind, publish the port; returns the bound port."""
        for _ in range(self._pool_size):
            client = await asyncio.to_thread(connect, self.clickhouse_url, readonly=True)
            self._all_clients.append(client)
            self._clients.put_nowait(client)
        if self.token_file is not None:
            write_private(self.token_file, self.token + "\n")
        app = web.Application(client_max_size=1 << 20, middlewares=[self._guard])
        app.router.add_get("/health", self._health)
        app.router.add_post("/query", self._query)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        if self.port_file is not None:
            tmp = self.port_file.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(f"{self.port}\n")
            tmp.replace(self.port_file)
        log.info("read-only query endpoint on http://%s:%d/query", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        """Remove the port file (if still ours), stop serving, close the handles."""
        if self.port_file is not None:
            with contextlib.suppress(OSError, ValueError):
                if int(self.port_file.read_text().strip()) == self.port:
                    self.port_file.unlink()
                    if self.token_file is not None:
                        self.token_file.unlink(missing_ok=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for client in self._all_clients:
            with contextlib.suppress(Exception):
                client.close()
        self._all_clients.clear()

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Loopback `Host` for everything; token and JSON for queries."""
        if host_name(request.headers.get("Host", "")) not in self.allowed_hosts:
            return web.json_response({"error": "forbidden: unexpected Host header"}, status=403)
        if request.path == "/health":
            return await handler(request)
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return web.json_response({"error": "unauthorized: send the token from sink.token"}, status=401)
        if request.content_type != "application/json":
            return web.json_response({"error": "unsupported media type: send application/json"}, status=415)
        return await handler(request)

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _query(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            sql = body["sql"]
            params = body.get("params") or None
            if not isinstance(sql, str) or not (params is None or isinstance(params, dict)):
                raise TypeError("sql must be a string and params an object")
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        client = await self._clients.get()
        try:
            statement = await asyncio.to_thread(screen, client, sql, params)
            result = await asyncio.to_thread(client.query, statement, parameters=params)
        except ReadOnlyViolation as exc:
            return web.json_response({"error": str(exc)}, status=403)
        except Exception as exc:
            return web.json_response({"error": str(exc)}, status=400)
        finally:
            self._clients.put_nowait(client)
        rows = result.result_rows
        payload = {
            "columns": list(result.column_names),
            "types": [t.name for t in result.column_types],
            "rows": jsonable(rows[: self.max_rows]),
            "truncated": len(rows) > self.max_rows,
        }
        return web.Response(text=json.dumps(payload), content_type="application/json")
