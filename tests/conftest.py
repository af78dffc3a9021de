"""Shared fixtures of the integration tests and fault drills: the real broker (a missing broker
fails, never skips) and a pipeline of real worker processes. Tests under `tests/integration/`
and `tests/faults/` are marked `integration` and `fault` by their folder, so
`pytest -m "not integration and not fault"` runs the unit tests alone."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from streams.kafka import launcher
from tests.harness import Pipeline


def _docker_answers() -> bool:
    try:
        import docker  # installed with testcontainers

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # no engine, no socket, no permission: all mean "no"
        return False


_MARK_BY_FOLDER = {"integration": pytest.mark.integration, "faults": pytest.mark.fault}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.parent.name
        if folder in _MARK_BY_FOLDER:
            item.add_marker(_MARK_BY_FOLDER[folder])


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """The broker the integration tests talk to; a missing one fails, never skips.

    KAFKA_BOOTSTRAP_SERVERS if set; with AGENTSTREAM_TEST_KAFKA=docker and a Docker engine that
    answers, a testcontainers KRaft broker; otherwise the local launcher's broker (started if
    needed, as `.ci/run` does).
    """
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if servers:
        host, _, port = servers.split(",")[0].rpartition(":")
        assert launcher.probe(host, int(port)), f"no Kafka broker answers at {servers}"
        yield servers
    elif os.environ.get("AGENTSTREAM_TEST_KAFKA") == "docker":
        assert _docker_answers(), "AGENTSTREAM_TEST_KAFKA=docker but no Docker engine answers"
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        yield launcher.up()


@pytest.fixture
async def pipeline(bootstrap: str, tmp_path: Path) -> AsyncIterator[Pipeline]:
    p = Pipeline(bootstrap, tmp_path)
    await p.create_topics()
    yield p
    p.stop_all()
