"""Worker processes started by the demo and by replay: spawn, wait until ready, stop."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from streams.settings import REPO_ROOT

READY_MARK = "[^Worker]: Ready"


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def spawn(cls, env: dict[str, str], log_path: Path) -> WorkerProcess:
        """`env` is the whole environment of the worker (callers start from `os.environ`)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "-l", "info", "--without-web"],
                env=env,
                cwd=REPO_ROOT,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        return cls(proc, log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    async def wait_ready(self, timeout_s: float = 120) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if not self.alive:
                raise RuntimeError(f"worker exited with {self.proc.returncode}; see {self.log_path}")
            if READY_MARK in self.log():
                return time.monotonic() - started
            await asyncio.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout_s:.0f}s; see {self.log_path}")

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
