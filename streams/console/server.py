"""The console's aiohttp application: routes, the guard in front of them, templates, serving.

The guard runs before every handler: loopback `Host` only, login by `?token=` (then a cookie),
CSRF and same-origin for POSTs; every response carries a strict Content-Security-Policy (no
script at all, styles from our own file) and `no-store`, since pages show prompts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from aiokafka.errors import KafkaError

from streams.console.auth import LOOPBACK_NAMES, Auth, host_name, origin_allowed
from streams.console.pages import CONSOLE, STARTED, Console, routes
from streams.console.sources import Sources

__all__ = ["build_app", "serve", "templates"]

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not "no-referrer": with it, browsers send `Origin: null` on our own form POSTs.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _usd(value: Any) -> str:
    if _missing(value):
        return "-"
    v = float(value)
    return f"${v:.6f}".rstrip("0").rstrip(".") if v < 0.01 else f"${v:,.4f}" if v < 10 else f"${v:,.2f}"


def _ms(value: Any) -> str:
    if _missing(value):
        return "-"
    v = float(value)
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"


def _pct(value: Any) -> str:
    return "-" if _missing(value) else f"{float(value) * 100:.1f}%"


def _num(value: Any) -> str:
    return "-" if _missing(value) else f"{float(value):,.0f}"


def _ts(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def templates() -> jinja2.Environment:
    """Autoescaping templates from this package, with the console's number formats."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(usd=_usd, ms=_ms, pct=_pct, num=_num, ts=_ts)
    return env


def cookie_name(auth: Auth) -> str:
    """Per token, so two consoles on one machine (cookies ignore ports) do not log each other out."""
    return "agentstream_console_" + hashlib.sha256(auth.token.encode()).hexdigest()[:10]


def _guard(allowed_hosts: frozenset[str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[STARTED] = time.perf_counter()
        try:
            response = await _checked(request, handler, allowed_hosts)
        except web.HTTPException as exc:  # redirects raised by handlers
            exc.headers.update(SECURITY_HEADERS)
            raise
        except KafkaError as exc:
            response = web.Response(status=503, text=f"Kafka is not reachable: {exc}", content_type="text/plain")
        response.headers.update(SECURITY_HEADERS)
        return response

    return guard


async def _checked(request: web.Request, handler: Handler, allowed_hosts: frozenset[str]) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    auth = console.auth
    if host_name(request.headers.get("Host", "")) not in allowed_hosts:
        return web.Response(status=403, text="forbidden: unexpected Host header", content_type="text/plain")
    if request.path.startswith("/static/"):
        return await handler(request)
    name = cookie_name(auth)
    if "token" in request.query:
        if not auth.token_ok(request.query.get("token")):
            return web.Response(status=401, text="wrong token", content_type="text/plain")
        rest = request.rel_url.with_query([(k, v) for k, v in request.query.items() if k != "token"])
        response = web.Response(status=303, headers={"Location": str(rest)})
        response.set_cookie(name, auth.cookie_value, httponly=True, samesite="Strict", path="/")
        return response
    if not auth.cookie_ok(request.cookies.get(name)):
        return web.Response(
            status=401, content_type="text/plain",
            text="Log in: open the address `agentstream console` printed (it ends with ?token=...).",
        )
    if request.method == "POST":
        if not origin_allowed(request.headers.get("Origin"), request.headers.get("Host", "")):
            return web.Response(status=403, text="forbidden: cross-origin POST", content_type="text/plain")
        form = await request.post()
        if not auth.csrf_ok(str(form.get("csrf", ""))):
            return web.Response(status=403, text="forbidden: missing or wrong CSRF token", content_type="text/plain")
    elif request.method not in ("GET", "HEAD"):
        return web.Response(status=405, text="method not allowed", content_type="text/plain")
    return await handler(request)


def build_app(
    sources: Sources, auth: Auth, *, reviewer: str, allowed_hosts: frozenset[str] = frozenset()
) -> web.Application:
    """The application; `allowed_hosts` adds names to the loopback ones accepted in `Host`."""
    app = web.Application(client_max_size=256 * 1024, middlewares=[_guard(LOOPBACK_NAMES | allowed_hosts)])
    app[CONSOLE] = Console(sources=sources, auth=auth, templates=templates(), reviewer=reviewer)
    app.add_routes(routes())
    app.router.add_static("/static", HERE / "static", append_version=False)
    return app


async def serve(
    app: web.Application,
    *,
    host: str = "127.0.0.1",
    port: int = 8484,
    on_ready: Callable[[str], None] = lambda url: None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or `stop` is set); `on_ready` gets the login address."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = int(runner.addresses[0][1])
        on_ready(f"http://{host}:{bound}/?token={app[CONSOLE].auth.token}")
        await stop.wait()
    finally:
        await runner.cleanup()
