"""The local broker launcher must be idempotent: `agentstream kafka up` is run by CI, by
developers and by tests, and a second call has to reuse the running broker, not start one."""

from __future__ import annotations

import os
from types import ModuleType

import pytest

from streams.kafka import launcher

pytestmark = pytest.mark.integration

def _load_launcher() -> ModuleType:
    """The module the CLI, the tests and `infra/kafka/launcher.py` all use."""
    return launcher


def test_up_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    launcher = _load_launcher()
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    before = launcher.status()
    if external and not (before["running"] and before["bootstrap"] == external):
        pytest.skip(f"broker {external} was not started by infra/kafka/launcher.py")
    port = int(external.rsplit(":", 1)[1]) if external else launcher.default_port()
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)

    first = launcher.up(port=port)  # starts the broker only if CI did not
    try:
        pid = launcher.status()["pid"]
        second = launcher.up(port=port)

        assert second == first == f"127.0.0.1:{port}"
        info = launcher.status()
        assert info["running"] and info["ready"]
        assert info["pid"] == pid
        assert info["bootstrap"] == first
        assert launcher.probe("127.0.0.1", port)
    finally:
        if not before["running"]:
            launcher.down()  # leave the machine as we found it
