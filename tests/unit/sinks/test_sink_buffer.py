"""ClickHouseSink batching and retry semantics against a recording fake client (no engine)."""

from __future__ import annotations

from typing import Any

import pytest

from sinks.clickhouse import ClickHouseSink
from sinks.samples import request_traces


class FakeClient:
    """Records inserts; `fail_on` maps a table to how many of its inserts fail first."""

    def __init__(self, fail_on: dict[str, int] | None = None) -> None:
        self.fail_on = dict(fail_on or {})
        self.inserts: list[tuple[str, int, str]] = []

    def insert(self, table: str, data: Any, column_names: Any = "*", settings: Any = None) -> None:
        name = table.split(".")[-1]
        if self.fail_on.get(name, 0) > 0:
            self.fail_on[name] -= 1
            raise ConnectionError(f"{name} down")
        self.inserts.append((name, len(data), settings["insert_deduplication_token"]))

    def command(self, *a: Any, **k: Any) -> None: ...

    def query(self, *a: Any, **k: Any) -> Any:
        return type("Result", (), {"result_rows": []})()  # the tables hold none of these keys


def test_flush_writes_all_tables_and_progress() -> None:
    client = FakeClient()
    sink = ClickHouseSink(client, batch_max_rows=100)
    for span in request_traces(10, seed="u"):
        sink.add(span)
    assert sink.buffered_spans == 40 and not sink.should_flush()
    result = sink.flush({("t", 0): 40}, group="g")
    assert result.rows == {"otel_traces": 40, "llm_calls": 10, "decisions": 10, "replay_reports": 0}
    assert [i[0] for i in client.inserts] == [
        "otel_traces",
        "llm_calls",
        "decisions",
        "sink_offsets",
    ]
    assert len({i[2] for i in client.inserts}) == 1  # one token per batch
    assert sink.buffered_spans == 0 and sink.flush().rows["otel_traces"] == 0


def test_failed_flush_keeps_batch_and_retries_with_same_token() -> None:
    client = FakeClient(fail_on={"llm_calls": 2})
    sink = ClickHouseSink(client)
    spans = request_traces(5, seed="u")
    for span in spans[:8]:
        sink.add(span)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            sink.flush()
        assert sink.has_pending and sink.buffered_spans == 8
    for span in spans[8:]:  # arrives during the outage: next batch, not the frozen one
        sink.add(span)
    result = sink.flush()
    assert not sink.has_pending and sink.buffered_spans == 0
    names = [i[0] for i in client.inserts]
    # otel_traces of batch 1 written once (skipped on retries), then the rest, then batch 2
    assert names == ["otel_traces", "llm_calls", "decisions"] * 2
    tokens = [i[2] for i in client.inserts]
    assert tokens[0] == tokens[1] == tokens[2] != tokens[3]
    assert sum(n for name, n, _ in client.inserts if name == "otel_traces") == 20
    assert result.rows == {"otel_traces": 12, "llm_calls": 5, "decisions": 5, "replay_reports": 0}
    assert sink.inserted == {"otel_traces": 20, "llm_calls": 5, "decisions": 5, "replay_reports": 0}


def test_token_is_content_derived() -> None:
    a, b = FakeClient(), FakeClient()
    for client in (a, b):
        sink = ClickHouseSink(client)
        for span in request_traces(3, seed="same"):
            sink.add(span)
        sink.flush({("t", 0): 12}, group="g")
    assert a.inserts == b.inserts


def test_should_flush_on_size_and_age() -> None:
    sink = ClickHouseSink(FakeClient(), batch_max_rows=4, batch_max_age_s=0.0)
    assert not sink.should_flush()
    sink.add(request_traces(1)[0])
    assert sink.should_flush()  # age 0 reached
    sink = ClickHouseSink(FakeClient(), batch_max_rows=4, batch_max_age_s=60)
    for span in request_traces(1):
        sink.add(span)
    assert sink.should_flush()  # 4 spans


def test_discard() -> None:
    sink = ClickHouseSink(FakeClient(fail_on={"otel_traces": 1}))
    for span in request_traces(2):
        sink.add(span)
    with pytest.raises(ConnectionError):
        sink.flush()
    sink.add(request_traces(1, seed="x")[0])
    assert sink.discard() == 9 and sink.buffered_spans == 0 and not sink.has_pending
