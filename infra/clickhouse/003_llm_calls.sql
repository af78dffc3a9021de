-- One row per LLM call (a `chat <model>` span): the prompt as sent and the response as received,
-- both already redacted. Analysts answer "what was the model told" from here.
--
-- Dedup (see 002_otel_traces.sql): insert_deduplication_token per batch, and ReplacingMergeTree
-- whose sorting key ends in span_id. Every other key column is a pure function of the span, so a
-- replayed span has the same key and collapses; read with FINAL where counts must be exact.
-- The key starts with the day so time-range queries prune, then request_id so one request's
-- calls sit together.
CREATE TABLE IF NOT EXISTS agentstream.llm_calls
(
    timestamp       DateTime64(3, 'UTC'),
    trace_id        String,
    span_id         String,
    request_id      String,
    session_id      String,
    user_id         String,
    tenant_id       LowCardinality(String),
    domain          LowCardinality(String),
    provider        LowCardinality(String),
    model           LowCardinality(String),
    response_model  LowCardinality(String),
    step_index      UInt16,
    max_tokens      UInt32,
    prompt          String CODEC(ZSTD(3)),
    response        String CODEC(ZSTD(3)),
    finish_reasons  Array(LowCardinality(String)),
    input_tokens    UInt32,
    output_tokens   UInt32,
    cost_usd        Float64,
    latency_ms      Float64,
    status          LowCardinality(String),
    error_type      LowCardinality(String),
    context_trimmed UInt8,
    trimmed_chars   UInt32,
    config_version  LowCardinality(String),
    rollout_arm     LowCardinality(String),
    INDEX idx_request_id request_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (toDate(timestamp), request_id, span_id)
SETTINGS non_replicated_deduplication_window = 1000;
