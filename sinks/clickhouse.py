"""ClickHouse connection, migrations and the batching span sink.

One code path for both deployments: clickhouse-connect (>= 1.x) ships an in-process chDB
backend, so `chdb:///dir` (embedded) and `http(s)://...` (a server) give the same client type
and the same `command` / `insert` / `query` calls. Library code takes explicit arguments;
only entry points read the environment.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import clickhouse_connect

from sinks import rows as R
from sinks.readonly import QUERY_LIMITS
from sinks.sql import split_statements
from streams.events.records import Span

__all__ = [
    "DATABASE",
    "DDL_DIR",
    "TABLES",
    "ClickHouseSink",
    "Client",
    "FlushResult",
    "chdb_path",
    "connect",
    "migrate",
    "stored_offsets",
]

log = logging.getLogger(__name__)

DATABASE = "agentstream"
DDL_DIR = Path(__file__).resolve().parents[1] / "infra" / "clickhouse"
# Inserted batches are remembered per table for this many blocks (non_replicated_deduplication_window
# in the DDL); a replay older than that is still collapsed by ReplacingMergeTree + FINAL.
_INSERT_SETTINGS = {
    "insert_deduplicate": 1,
    "deduplicate_blocks_in_dependent_materialized_views": 1,
}


class Client(Protocol):
    """The subset of clickhouse-connect's client the sink and migrations use."""

    def command(self, cmd: str, parameters: Any = None, settings: Any = None) -> Any: ...

    def insert(
        self,
        table: str,
        data: Sequence[Sequence[Any]],
        column_names: str | Iterable[str] = "*",
        settings: dict[str, Any] | None = None,
    ) -> Any: ...

    def query(self, query: str, parameters: Any = None, settings: Any = None) -> Any: ...


def chdb_path(url: str) -> Path | None:
    """The data directory of a `chdb://` URL (None for http(s) URLs and `chdb://memory`).

    `chdb:///abs/dir` is the canonical form; `chdb://rel/dir` is resolved against the cwd.
    """
    if not url.startswith("chdb://"):
        return None
    rest = url[len("chdb://") :].split("?", 1)[0]
    if rest in ("", "memory", ":memory:"):
        return None
    return Path(rest).expanduser().resolve()


def connect(url: str, *, readonly: bool = False, settings: Mapping[str, Any] | None = None) -> Any:
    """A clickhouse-connect client for `chdb:///dir` or `http(s)://user:pw@host:port/db`.

    Always `tz_mode='aware'` so DateTime columns come back as aware datetimes from both engines.
    `readonly=True` makes the session itself read-only with the per-query limits of
    `sinks.readonly.QUERY_LIMITS` and `agentstream` as its default database (statements still go
    through `sinks.readonly.screen` first: the engine's readonly mode alone lets chDB write with
    `INTO OUTFILE`). chDB hosts one engine per process and one process per directory: a second
    process on the same directory fails to lock it.
    """
    opts: dict[str, Any] = dict(settings or {})
    path = chdb_path(url)
    database: str | None = None
    if readonly:
        # Limits first: once `readonly` is set, a setting can no longer be changed (chDB applies
        # them in order). A server gets readonly=2, since clickhouse-connect sends per-query
        # settings that readonly=1 would refuse; `sinks.readonly.screen` refuses SETTINGS there.
        opts = {**QUERY_LIMITS, **opts, "readonly": 1 if url.startswith("chdb:") else 2}
        database = DATABASE  # analysts name tables plainly: `SELECT … FROM llm_calls`
    if url.startswith("chdb:"):
        dsn = f"chdb://{path}" if path is not None else "chdb://memory"
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
        return _client_in(database, dsn=dsn, tz_mode="aware", settings=opts)
    if url.startswith(("http://", "https://")):
        return _client_in(database, dsn=url, tz_mode="aware", settings=opts)
    raise ValueError(f"unsupported ClickHouse URL {url!r}: want chdb:///dir or http(s)://host:port")


def _client_in(database: str | None, **kwargs: Any) -> Any:
    """A client whose default database is `database`, or the engine's default while that
    database does not exist yet (nothing written so far)."""
    if database is not None:
        try:
            return clickhouse_connect.get_client(database=database, **kwargs)
        except Exception as exc:
            if "UNKNOWN_DATABASE" not in str(exc) and "does not exist" not in str(exc):
                raise
    return clickhouse_connect.get_client(**kwargs)


# --------------------------------------------------------------------------------- migrations


def _applied_migrations(client: Client) -> dict[str, str]:
    if not int(client.command(f"EXISTS TABLE {DATABASE}.schema_migrations")):
        return {}
    result = client.query(
        f"SELECT file, argMax(checksum, applied_at) FROM {DATABASE}.schema_migrations GROUP BY file"
    )
    return {name: checksum for name, checksum in result.result_rows}


def migrate(client: Client, ddl_dir: Path = DDL_DIR) -> list[str]:
    """Apply the numbered `NNN_*.sql` files in `ddl_dir` not applied yet; return their names.

    Files are idempotent DDL; the ledger table (created by 001) records each applied file with
    its checksum, so a second run applies nothing. A file edited after it was applied is not
    re-run (its CREATE ... IF NOT EXISTS would not alter anything): it is logged instead.
    """
    files = sorted(p for p in Path(ddl_dir).glob("*.sql") if p.name[:3].isdigit())
    applied = _applied_migrations(client)
    done: list[str] = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        checksum = hashlib.sha256(text.encode()).hexdigest()
        if path.name in applied:
            if applied[path.name] != checksum:
                log.warning("migration %s changed after it was applied; not re-applied", path.name)
            continue
        for statement in split_statements(text):
            client.command(statement)
        client.insert(
            f"{DATABASE}.schema_migrations",
            [[path.name, checksum, datetime.now(UTC)]],
            column_names=["file", "checksum", "applied_at"],
        )
        done.append(path.name)
        log.info("applied migration %s", path.name)
    return done


def stored_offsets(client: Client, group: str, topic: str) -> dict[int, int]:
    """partition -> next offset the sink recorded in ClickHouse for `group` on `topic`."""
    result = client.query(
        f"SELECT partition, max(next_offset) FROM {DATABASE}.sink_offsets "
        "WHERE consumer_group = {g:String} AND topic = {t:String} GROUP BY partition",
        parameters={"g": group, "t": topic},
    )
    return {int(p): int(o) for p, o in result.result_rows}


# ---------------------------------------------------------------------------------- the sink

TABLES: dict[str, tuple[str, ...]] = {
    "otel_traces": R.OTEL_TRACES_COLUMNS,
    "llm_calls": R.LLM_CALL_COLUMNS,
    "decisions": R.DECISION_COLUMNS,
    "replay_reports": R.REPLAY_REPORT_COLUMNS,
}
# The identity of a row per table (and its time column, to prune the look-up): a span is one
# otel_traces and at most one llm_calls row; a request is one decision.
_ROW_KEYS = {
    "otel_traces": ("SpanId", "Timestamp", 1_000_000_000),
    "llm_calls": ("span_id", "timestamp", 1000),
    "decisions": ("request_id", "timestamp", 1000),
    "replay_reports": ("report_id", "timestamp", 1000),
}
_OFFSET_COLUMNS = ("consumer_group", "topic", "partition", "next_offset", "updated_at")


@dataclass
class _Batch:
    """Rows frozen for insertion; the token makes a retried insert a no-op on the server."""

    rows: dict[str, list[list[Any]]]
    span_keys: list[str]
    offsets: dict[tuple[str, int], int]
    group: str
    token: str = ""
    done: set[str] = field(default_factory=set)

    def seal(self) -> None:
        digest = hashlib.sha256()
        # Order-free: a replay may fetch the same records in another partition interleaving.
        for key in sorted(self.span_keys):
            digest.update(key.encode())
            digest.update(b"\n")
        for (topic, partition), offset in sorted(self.offsets.items()):
            digest.update(f"{topic}/{partition}@{offset}\n".encode())
        self.token = digest.hexdigest()


@dataclass(frozen=True)
class FlushResult:
    """What one successful flush wrote."""

    rows: dict[str, int]
    offsets: dict[tuple[str, int], int]
    seconds: float


class ClickHouseSink:
    """Collects span rows and writes them in batches: `add()` collects, `flush()` writes.

    `flush()` returns only after every table has the rows. If an insert fails it raises and
    keeps the batch, frozen with its deduplication token, so the next `flush()` re-inserts it
    (tables already written are skipped, and a write that did land although the call failed is
    dropped by the server's token dedup): rows are written once, never lost. Spans added while
    a batch is pending go to the next batch.

    Not thread-safe for concurrent flushes; `add()` may run while another thread flushes.
    """

    def __init__(
        self,
        client: Client,
        batch_max_rows: int = 5000,
        batch_max_age_s: float = 1.0,
        *,
        redact: R.Redact | None = None,
    ) -> None:
        self.client = client
        self.batch_max_rows = batch_max_rows
        self.batch_max_age_s = batch_max_age_s
        self.redact = redact
        # Rows this sink has made sure are in each table (inserted, or found there on a replay).
        self.inserted: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._lock = threading.Lock()
        self._pending: list[_Batch] = []
        self._new_buffer()

    def _new_buffer(self) -> None:
        self._rows: dict[str, list[list[Any]]] = {t: [] for t in TABLES}
        self._keys: list[str] = []
        self._first_add: float | None = None

    # -- collecting ------------------------------------------------------------------------

    def add(self, span: Span) -> None:
        """Map a span to its rows (otel_traces always; llm_calls / decisions when it is one)."""
        if self.redact is not None:
            span = R.redact_span(span, self.redact)
        trace = R.otel_traces_row(span)
        call = R.llm_call_row(span)
        decision = R.decision_row(span)
        report = R.replay_report_row(span)
        with self._lock:
            self._rows["otel_traces"].append(trace)
            if call is not None:
                self._rows["llm_calls"].append(call)
            if decision is not None:
                self._rows["decisions"].append(decision)
            if report is not None:
                self._rows["replay_reports"].append(report)
            self._keys.append(span.trace_id + span.span_id)
            if self._first_add is None:
                self._first_add = time.monotonic()

    @property
    def buffered_spans(self) -> int:
        """Spans not yet written (pending batches included)."""
        with self._lock:
            return len(self._keys) + sum(len(b.span_keys) for b in self._pending)

    @property
    def has_pending(self) -> bool:
        """True while a batch whose flush failed waits to be retried."""
        return bool(self._pending)

    def age_s(self) -> float:
        """Seconds since the oldest unflushed span was added (0 when empty)."""
        first = self._first_add
        return 0.0 if first is None else time.monotonic() - first

    def should_flush(self) -> bool:
        """Batch full or old enough."""
        return len(self._keys) >= self.batch_max_rows or (
            bool(self._keys) and self.age_s() >= self.batch_max_age_s
        )

    def discard(self) -> int:
        """Forget every unwritten span (their offsets were never committed, so Kafka still has
        them); returns how many. Used when a rebalance takes the partitions mid-outage."""
        with self._lock:
            n = len(self._keys) + sum(len(b.span_keys) for b in self._pending)
            self._pending.clear()
            self._new_buffer()
        return n

    # -- writing ---------------------------------------------------------------------------

    def flush(
        self, offsets: Mapping[tuple[str, int], int] | None = None, *, group: str = ""
    ) -> FlushResult:
        """Insert everything buffered; raises on the first failing insert (nothing is dropped).

        `offsets` ((topic, partition) -> next offset to consume) and `group` describe the Kafka
        progress the buffered spans represent; they are written to `sink_offsets` after the
        rows, so a restarted sink can resume past a batch whose Kafka commit never happened.
        """
        started = time.perf_counter()
        with self._lock:
            if self._keys or offsets:
                batch = _Batch(self._rows, self._keys, dict(offsets or {}), group)
                batch.seal()
                self._pending.append(batch)
                self._new_buffer()
            pending = list(self._pending)
        written: dict[str, int] = dict.fromkeys(TABLES, 0)
        last_offsets: dict[tuple[str, int], int] = {}
        for batch in pending:
            for table, n in self._insert_batch(batch).items():
                written[table] += n
            last_offsets.update(batch.offsets)
            with self._lock:
                if batch in self._pending:  # discard() may have dropped it meanwhile
                    self._pending.remove(batch)
        return FlushResult(written, last_offsets, time.perf_counter() - started)

    def _unwritten(self, table: str, rows: list[list[Any]]) -> tuple[list[list[Any]], int]:
        """The rows whose key the table does not have yet, each key once; and how many distinct
        keys the batch holds (all of them are in the table once these rows are inserted).

        This is what makes rows and rollups exact whatever the batch boundaries: the insert token
        only recognises a batch cut exactly as before, while a replay after a crash or a revoke
        cuts differently. Filtering before the insert also keeps the materialized views (which
        fire on every insert, before any merge) from counting a row twice. One sink writes a
        given key at a time: a span goes to the partition its session hashes to (as a keyed
        message, or in that partition's batch), so a key stays on one partition.
        """
        key_col, ts_col, ticks_per_s = _ROW_KEYS[table]
        columns = TABLES[table]
        k, t = columns.index(key_col), columns.index(ts_col)
        unique: dict[str, list[Any]] = {}
        for row in rows:
            unique.setdefault(row[k], row)
        # A copy of a row has the same time; a day of slack covers a re-run decision.
        since_ms = min(row[t] for row in unique.values()) * 1000 // ticks_per_s - 86_400_000
        found = self.client.query(
            f"SELECT DISTINCT {key_col} FROM {DATABASE}.{table} "
            f"WHERE {ts_col} >= fromUnixTimestamp64Milli({{since:Int64}}) "
            f"AND {key_col} IN {{keys:Array(String)}}",
            parameters={"since": int(since_ms), "keys": list(unique)},
        )
        existing = {r[0] for r in found.result_rows}
        return [row for key, row in unique.items() if key not in existing], len(unique)

    def _insert_batch(self, batch: _Batch) -> dict[str, int]:
        settings = {**_INSERT_SETTINGS, "insert_deduplication_token": batch.token}
        written: dict[str, int] = {}
        for table, columns in TABLES.items():
            rows = batch.rows[table]
            if not rows or table in batch.done:
                continue
            fresh, keys = self._unwritten(table, rows)
            if fresh:
                self.client.insert(
                    f"{DATABASE}.{table}", fresh, column_names=columns, settings=settings
                )
            batch.done.add(table)
            # Rows of this batch now in the table: inserted here, or found there (a replay, or
            # an earlier attempt of this batch that landed although the call failed).
            written[table] = keys
            self.inserted[table] += keys
        if batch.offsets and batch.group and "sink_offsets" not in batch.done:
            now = datetime.now(UTC)
            offset_rows = [
                [batch.group, topic, partition, offset, now]
                for (topic, partition), offset in sorted(batch.offsets.items())
            ]
            self.client.insert(
                f"{DATABASE}.sink_offsets",
                offset_rows,
                column_names=_OFFSET_COLUMNS,
                settings=settings,
            )
            batch.done.add("sink_offsets")
        return written
