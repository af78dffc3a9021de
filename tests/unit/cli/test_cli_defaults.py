"""What `agentstream worker` listens on when started with the plain command."""

from __future__ import annotations


def test_worker_web_server_is_off_by_default_and_loopback_when_on() -> None:
    from faust.cli.faust import cli as faust_cli

    from streams.cli import main  # noqa: F401 - applies our defaults to Faust's worker command
    from streams.kafka.app import app

    with_web = next(p for p in faust_cli.commands["worker"].params if p.name == "with_web")
    assert with_web.default is False, "no port unless --with-web"
    assert app.conf.web_bind == "127.0.0.1"
