"""Processes started by the demo, replay and tests (worker, sink): spawn, wait until ready, stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from streams.config.settings import REPO_ROOT, Settings

WORKER_READY = "[^Worker]: Ready"
SINK_READY = "sink ready:"
CONSOLE_READY = "console ready:"


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    ready_mark: str = WORKER_READY

    @classmethod
    def spawn(cls, env: dict[str, str], log_path: Path) -> WorkerProcess:
        """A Faust worker with every stage; `env` is its whole environment (start from os.environ)."""
        return cls._start(["worker", "-l", "info"], env, log_path, WORKER_READY)

    @classmethod
    def spawn_sink(cls, env: dict[str, str], log_path: Path) -> WorkerProcess:
        """The ClickHouse sink (`agentstream sink`)."""
        return cls._start(["sink"], env, log_path, SINK_READY)

    @classmethod
    def spawn_console(cls, env: dict[str, str], log_path: Path, port: int) -> WorkerProcess:
        """The web console (`agentstream console`); its address is in the log after CONSOLE_READY."""
        return cls._start(["console", "--port", str(port)], env, log_path, CONSOLE_READY)

    @classmethod
    def _start(cls, args: list[str], env: dict[str, str], log_path: Path, mark: str) -> WorkerProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli.main", *args],
                env=env,
                cwd=REPO_ROOT,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        return cls(proc, log_path, mark)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    async def wait_ready(self, timeout_s: float = 120) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if not self.alive:
                raise RuntimeError(f"process exited with {self.proc.returncode}; see {self.log_path}")
            if self.ready_mark in self.log():
                return time.monotonic() - started
            await asyncio.sleep(0.2)
        raise TimeoutError(f"process not ready after {timeout_s:.0f}s; see {self.log_path}")

    def kill(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 30) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


def environment_for(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment with our own variables replaced by `settings` (and `extra`).

    Child workers read their settings from the environment; inherited AGENTSTREAM_* or
    CLICKHOUSE_URL values from the caller must not leak into an isolated namespace.
    """
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AGENTSTREAM_", "CLICKHOUSE_URL"))
    }
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "AGENTSTREAM_NAMESPACE": settings.namespace,
            "AGENTSTREAM_PARTITIONS": str(settings.partitions),
            "AGENTSTREAM_DATA_DIR": str(settings.data_dir),
            **extra,
        }
    )
    return env
