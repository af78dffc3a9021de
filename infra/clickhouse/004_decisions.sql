-- One row per request's final decision (the span with agentstream.decision.final = "true").
--
-- Dedup (see 002_otel_traces.sql): insert_deduplication_token per batch, and ReplacingMergeTree
-- keyed by request_id alone with `timestamp` as the version, so a replay collapses and, should a
-- request ever get a later final decision, the latest wins. Read with FINAL (or argMax by
-- request_id) where counts must be exact. No partitioning by time: dedup by request_id must hold
-- across any time boundary.
CREATE TABLE IF NOT EXISTS agentstream.decisions
(
    timestamp      DateTime64(3, 'UTC'),
    trace_id       String,
    span_id        String,
    request_id     String,
    session_id     String,
    user_id        String,
    tenant_id      LowCardinality(String),
    route          LowCardinality(String),
    model          LowCardinality(String),
    rollout_arm    LowCardinality(String),
    verdict        LowCardinality(String),
    reasons        Array(String),
    escalated      UInt8,
    status         LowCardinality(String),
    reason         String,
    language       LowCardinality(String),
    input_tokens   UInt32,
    output_tokens  UInt32,
    cost_usd       Float64,
    latency_ms     Float64,
    llm_calls      UInt16,
    config_version LowCardinality(String),
    INDEX idx_ts timestamp TYPE minmax GRANULARITY 1,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(timestamp)
ORDER BY request_id
SETTINGS non_replicated_deduplication_window = 1000;
