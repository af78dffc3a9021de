-- Spans, with exactly the columns, types and indexes of the OpenTelemetry Collector contrib
-- ClickHouse exporter (exporter/clickhouseexporter/internal/sqltemplates/traces_table.sql),
-- so Grafana's ClickHouse plugin reads it as it reads the exporter's table.
--
-- Deviation (deliberate): the engine. The exporter uses MergeTree; our sink is at-least-once
-- (it commits Kafka offsets only after the insert), so a batch can be written twice. Two layers
-- keep that from duplicating rows:
--   1. Every flush inserts each table with insert_deduplication_token = hash of the batch's span
--      ids; non_replicated_deduplication_window makes a non-replicated MergeTree remember the last
--      N tokens, so a retried or replayed identical batch is dropped at insert time, and so are
--      the blocks its materialized views would have produced (their targets keep a window too).
--   2. ReplacingMergeTree with TraceId and SpanId in the sorting key collapses a span written in
--      two different batches (a replay whose batch boundaries moved). Collapsing happens at merge
--      time, so queries that must not double count read `FINAL` (or argMax by span id).
-- The sorting key is the exporter's (ServiceName, SpanName, toDateTime(Timestamp)) extended with
-- (TraceId, SpanId), so the exporter's access pattern is unchanged.
CREATE TABLE IF NOT EXISTS agentstream.otel_traces
(
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), TraceId, SpanId)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

-- The exporter's trace-id -> time-range lookup (Grafana's plugin uses it to bound trace searches).
-- min/max states are idempotent, so a replayed span cannot distort it.
CREATE TABLE IF NOT EXISTS agentstream.otel_traces_trace_id_ts
(
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))
)
ENGINE = AggregatingMergeTree
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS agentstream.otel_traces_trace_id_ts_mv
TO agentstream.otel_traces_trace_id_ts
AS SELECT
    TraceId,
    min(toDateTime(Timestamp)) AS Start,
    max(toDateTime(Timestamp)) AS End
FROM agentstream.otel_traces
WHERE TraceId != ''
GROUP BY TraceId;
