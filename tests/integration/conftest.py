"""Integration fixtures: the real broker (a missing broker fails, never skips)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streams.settings import REPO_ROOT
from tests.integration.harness import Pipeline


def _launcher():
    spec = importlib.util.spec_from_file_location("launcher", REPO_ROOT / "infra/kafka/launcher.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def bootstrap() -> str:
    """KAFKA_BOOTSTRAP_SERVERS if set, else the local launcher's broker (started if needed)."""
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if servers:
        launcher = _launcher()
        host, _, port = servers.split(",")[0].rpartition(":")
        assert launcher.probe(host, int(port)), f"no Kafka broker answers at {servers}"
        return servers
    return _launcher().up()


@pytest.fixture
async def pipeline(bootstrap: str, tmp_path: Path) -> AsyncIterator[Pipeline]:
    p = Pipeline(bootstrap, tmp_path)
    await p.create_topics()
    yield p
    p.stop_all()
