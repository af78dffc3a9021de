"""`agentstream console`: serve the web console on 127.0.0.1 (see streams/console)."""

from __future__ import annotations

import getpass
import os

from faust.cli import AppCommand, option

from streams.cli.output import console as out
from streams.cli.output import fail
from streams.kafka.app import app

settings = app.agentstream_settings


@app.command(
    option("--port", type=int, default=8484, help="Port on 127.0.0.1 (0: any free port)."),
    option("--reviewer", default=None, help="Name stamped on review decisions (default: the login name)."),
)
async def console(self: AppCommand, port: int, reviewer: str | None) -> None:
    """Web pages: overview, requests, trace, review queue, replay reports, status."""
    from streams.config.pipeline import load_config
    from streams.console.auth import Auth
    from streams.console.server import build_app, serve
    from streams.console.sources import Sources
    from streams.telemetry.redaction import Redactor

    config = load_config(settings.config_file)
    try:
        auth = Auth.create(os.environ.get("AGENTSTREAM_CONSOLE_TOKEN") or None)
    except ValueError as exc:
        fail(f"AGENTSTREAM_CONSOLE_TOKEN: {exc}")
    sources = Sources(settings, config, Redactor(config.redaction_patterns, enabled=True))
    web_app = build_app(sources, auth, reviewer=reviewer or f"{getpass.getuser()}@console")

    def ready(url: str) -> None:
        out.print(f"console ready: {url}", soft_wrap=True, highlight=False)
        out.print(f"[dim]reading ClickHouse at {settings.clickhouse_url}, Kafka at {settings.kafka_bootstrap_servers}")

    try:
        await serve(web_app, port=port, on_ready=ready)
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{port}: {exc}")
