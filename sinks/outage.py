"""A ClickHouse client that can be made unreachable on purpose, for fault drills.

`agentstream sink` wraps its client in this when `AGENTSTREAM_CLICKHOUSE_OUTAGE_FILE` names a
file: while that file exists every call is refused as a down server would refuse it, which is how
the fault suite takes an embedded (chDB) ClickHouse away for a minute under load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class OutageGate:
    """Delegates to `inner` unless the outage file exists."""

    def __init__(self, inner: Any, outage_file: Path) -> None:
        self.inner = inner
        self.outage_file = outage_file
        self.refused = 0

    def _check(self) -> None:
        if self.outage_file.exists():
            self.refused += 1
            raise ConnectionRefusedError(f"ClickHouse unreachable (drill: {self.outage_file} exists)")

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self.inner.insert(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self.inner.query(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self.inner.command(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
