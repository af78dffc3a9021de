-- One row per `agentstream replay` run (recorded or shadow): the summary the command prints and
-- the requests whose replayed decision differs (JSON), so the console can list past runs. The
-- replay publishes the report as one span (`agentstream.replay.report = true`) on the traces
-- topic and the sink writes it here, like every other row: the sink stays the only writer (the
-- embedded chDB directory has one owner).
--
-- Dedup as for decisions: ReplacingMergeTree keyed by report_id; read with FINAL.
CREATE TABLE IF NOT EXISTS agentstream.replay_reports
(
    timestamp                   DateTime64(3, 'UTC'),
    report_id                   String,
    mode                        LowCardinality(String),
    namespace                   String,
    source_namespace            String,
    requests                    UInt32,
    identical                   UInt32,
    agreement                   Float64,
    status_agreement            Float64,
    cost_original_usd           Float64,
    cost_replay_usd             Float64,
    llm_latency_p95_original_ms Float64,
    llm_latency_p95_replay_ms   Float64,
    escalations_original        UInt32,
    escalations_replay          UInt32,
    skipped_unanswered          UInt32,
    original_version            LowCardinality(String),
    replay_version              LowCardinality(String),
    differing                   String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(timestamp)
ORDER BY report_id
SETTINGS non_replicated_deduplication_window = 1000;

-- The trace page lists a session's other requests: let that look-up skip granules.
ALTER TABLE agentstream.decisions ADD INDEX IF NOT EXISTS idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1;
