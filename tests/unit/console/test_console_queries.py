"""The SQL behind the console's pages: filters become typed parameters, pages are keysets."""

from __future__ import annotations

import re

from streams.console.queries import (
    Cursor,
    RequestFilters,
    Window,
    breaker_series_query,
    overview_series_query,
    overview_split_query,
    overview_totals_query,
    parse_time_ms,
    replay_report_query,
    replay_reports_query,
    request_summary_query,
    requests_query,
    session_requests_query,
)

PLACEHOLDER = re.compile(r"\{(\w+):[\w()]+\}")


def _placeholders_match(sql: str, params: dict) -> None:
    """Every `{name:Type}` has a parameter and every parameter is used."""
    assert set(PLACEHOLDER.findall(sql)) == set(params), (PLACEHOLDER.findall(sql), params)


def test_unfiltered_first_page() -> None:
    q = requests_query(RequestFilters(), None, limit=50)
    assert "WHERE" not in q.sql
    assert q.sql.endswith("ORDER BY timestamp DESC, request_id DESC LIMIT {limit:UInt32}")
    assert "decisions FINAL" in q.sql and "OFFSET" not in q.sql.upper()
    assert q.params == {"limit": 51}  # one more than a page: is there a next one?
    _placeholders_match(q.sql, q.params)


def test_every_filter_is_a_parameter_never_text() -> None:
    evil = "x' OR 1=1 --"
    f = RequestFilters.from_query({
        "status": "error", "domain": "billing", "model": "sim-large", "user": evil, "tenant": "acme",
        "arm": "candidate", "q": "refund", "from": "2025-06-15T15:00", "to": "1750000000000",
    })
    q = requests_query(f, None, 20)
    assert evil not in q.sql and "refund" not in q.sql
    assert q.params["f_user"] == evil and q.params["f_text"] == "refund"
    assert q.params["f_status"] == "error" and q.params["f_domain"] == "billing"
    assert q.params["f_since"] == 1_749_999_600_000 and q.params["f_until"] == 1_750_000_000_000
    for column in ("status =", "route =", "model =", "user_id =", "tenant_id =", "rollout_arm ="):
        assert column in q.sql
    assert "positionCaseInsensitiveUTF8(reason" in q.sql and "request_id = {f_text:String}" in q.sql
    _placeholders_match(q.sql, q.params)


def test_filters_round_trip_through_the_query_string() -> None:
    f = RequestFilters(status="ok", user="u1", text="abc", since_ms=5, until_ms=9)
    assert RequestFilters.from_query(f.as_query()) == f
    assert RequestFilters.from_query({}).as_query() == {}
    assert RequestFilters.from_query({"user": "  spaced  ", "q": "x" * 1000}).user == "spaced"
    assert len(RequestFilters.from_query({"q": "x" * 1000}).text) == 200


def test_keyset_cursor_continues_strictly_after_the_last_row() -> None:
    cursor = Cursor(1_750_000_000_123, "req-42")
    assert Cursor.decode(cursor.encode()) == cursor
    q = requests_query(RequestFilters(status="ok"), cursor, 50)
    assert q.params["c_ts"] == 1_750_000_000_123 and q.params["c_rid"] == "req-42"
    assert "timestamp <= fromUnixTimestamp64Milli({c_ts:Int64}, 'UTC')" in q.sql
    assert "OR request_id < {c_rid:String}" in q.sql  # ties on the time break by id, as ordered
    _placeholders_match(q.sql, q.params)


def test_bad_cursors_mean_first_page() -> None:
    for text in (None, "", "abc", "12", "x_req", "12_", "12_bad id", "12_a'b"):
        assert Cursor.decode(text) is None, text


def test_page_size_is_bounded() -> None:
    assert requests_query(RequestFilters(), None, 10_000).params["limit"] == 501
    assert requests_query(RequestFilters(), None, 0).params["limit"] == 2


def test_parse_time() -> None:
    assert parse_time_ms("1750000000000") == 1_750_000_000_000
    assert parse_time_ms("2025-06-15T15:06:40+00:00") == 1_750_000_000_000
    assert parse_time_ms("2025-06-15T17:06:40+02:00") == 1_750_000_000_000
    assert parse_time_ms("2025-06-15T15:06:40") == 1_750_000_000_000  # no zone: UTC
    assert parse_time_ms("yesterday") is None and parse_time_ms("") is None and parse_time_ms(None) is None


def test_window_buckets_stay_few_and_aligned() -> None:
    now = 1_750_000_030_000  # 30 s into a minute
    w = Window.last("1h", now)
    assert w.until_ms == 1_750_000_080_000  # the next minute boundary: the current minute is in
    assert w.until_ms - w.since_ms == 3_600_000 and w.step_minutes == 1
    assert len(w.buckets()) == 60 and all(b % 60_000 == 0 for b in w.buckets())
    week = Window.last("7d", now)
    assert week.step_minutes == 60 and len(week.buckets()) <= 181
    assert all(b % 3_600_000 == 0 for b in week.buckets())
    assert Window.last("bogus", now) == w


def test_overview_queries_read_the_rollups() -> None:
    w = Window.last("6h", 1_750_000_000_000)
    series = overview_series_query(w, "v2", "candidate")
    assert "FROM agentstream.decisions_1m" in series.sql and "GROUP BY t" in series.sql
    assert series.params["version"] == "v2" and series.params["arm"] == "candidate"
    assert series.params["step"] == w.step_minutes == 2
    _placeholders_match(series.sql, series.params)
    plain = overview_series_query(w)
    assert "config_version" not in plain.sql and "version" not in plain.params
    totals = overview_totals_query(w, "v2")
    assert "GROUP BY" not in totals.sql and "quantilesMerge(0.5, 0.95, 0.99)" in totals.sql
    split = overview_split_query(w)
    assert "GROUP BY config_version, rollout_arm" in split.sql
    breakers = breaker_series_query(w)
    assert "FROM agentstream.llm_calls_1m" in breakers.sql and "breaker_trips" in breakers.sql
    for q in (totals, split, breakers):
        assert set(PLACEHOLDER.findall(q.sql)) <= set(q.params)


def test_trace_and_replay_queries() -> None:
    for q, key, value in (
        (request_summary_query("r-1"), "rid", "r-1"),
        (session_requests_query("s-1"), "sid", "s-1"),
        (replay_report_query("rep-1"), "rid", "rep-1"),
    ):
        assert q.params[key] == value and value not in q.sql
        _placeholders_match(q.sql, q.params)
    assert "FINAL" in replay_reports_query().sql and replay_reports_query(5).params == {"limit": 5}
