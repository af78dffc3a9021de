-- Per-minute rollups for the dashboard, fed by materialized views on insert.
--
-- Exactness: the targets keep a deduplication window, so a retried/replayed batch that carries
-- the same insert_deduplication_token (see 002) adds nothing here either. The sink also records
-- its progress in sink_offsets (006) and resumes after it, so a crash between the insert and the
-- Kafka commit does not replay. What remains (a crash between the data insert and the progress
-- row, microseconds wide) could count one batch twice here; the base tables never do when read
-- with FINAL, which is what sinks.analytics.report() uses for exact figures.
--
-- Sums are SimpleAggregateFunction (read them with sum()), latency percentiles are quantile
-- states (read with quantilesMerge). "Successful" means status = 'ok'.

CREATE TABLE IF NOT EXISTS agentstream.decisions_1m
(
    minute             DateTime('UTC'),
    tenant_id          LowCardinality(String),
    route              LowCardinality(String),
    model              LowCardinality(String),
    rollout_arm        LowCardinality(String),
    config_version     LowCardinality(String),
    requests           SimpleAggregateFunction(sum, UInt64),
    successes          SimpleAggregateFunction(sum, UInt64),
    errors             SimpleAggregateFunction(sum, UInt64),
    escalations        SimpleAggregateFunction(sum, UInt64),
    blocked            SimpleAggregateFunction(sum, UInt64),
    degraded           SimpleAggregateFunction(sum, UInt64),
    input_tokens       SimpleAggregateFunction(sum, UInt64),
    output_tokens      SimpleAggregateFunction(sum, UInt64),
    success_tokens     SimpleAggregateFunction(sum, UInt64),
    cost_usd           SimpleAggregateFunction(sum, Float64),
    latency_ms_sum     SimpleAggregateFunction(sum, Float64),
    latency_ms_max     SimpleAggregateFunction(max, Float64),
    latency_ms_q       AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64),
    users              AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, tenant_id, route, model, rollout_arm, config_version)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS agentstream.mv_decisions_1m
TO agentstream.decisions_1m
AS SELECT
    toStartOfMinute(timestamp) AS minute,
    tenant_id, route, model, rollout_arm, config_version,
    count() AS requests,
    countIf(status = 'ok') AS successes,
    countIf(status = 'error') AS errors,
    countIf(escalated = 1) AS escalations,
    countIf(status = 'blocked') AS blocked,
    countIf(status IN ('degraded', 'fallback')) AS degraded,
    sum(toUInt64(input_tokens)) AS input_tokens,
    sum(toUInt64(output_tokens)) AS output_tokens,
    sumIf(toUInt64(src.input_tokens) + src.output_tokens, src.status = 'ok') AS success_tokens,
    sum(cost_usd) AS cost_usd,
    sum(latency_ms) AS latency_ms_sum,
    max(latency_ms) AS latency_ms_max,
    quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms_q,
    uniqState(user_id) AS users
FROM agentstream.decisions AS src
GROUP BY minute, tenant_id, route, model, rollout_arm, config_version;

CREATE TABLE IF NOT EXISTS agentstream.cost_per_user_1m
(
    minute        DateTime('UTC'),
    tenant_id     LowCardinality(String),
    user_id       String,
    requests      SimpleAggregateFunction(sum, UInt64),
    input_tokens  SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    cost_usd      SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, tenant_id, user_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS agentstream.mv_cost_per_user_1m
TO agentstream.cost_per_user_1m
AS SELECT
    toStartOfMinute(timestamp) AS minute,
    tenant_id, user_id,
    count() AS requests,
    sum(toUInt64(input_tokens)) AS input_tokens,
    sum(toUInt64(output_tokens)) AS output_tokens,
    sum(cost_usd) AS cost_usd
FROM agentstream.decisions
GROUP BY minute, tenant_id, user_id;

-- LLM calls per minute; circuit-breaker trips are calls answered by the fallback (status
-- 'fallback': the breaker was open).
CREATE TABLE IF NOT EXISTS agentstream.llm_calls_1m
(
    minute          DateTime('UTC'),
    tenant_id       LowCardinality(String),
    provider        LowCardinality(String),
    model           LowCardinality(String),
    domain          LowCardinality(String),
    calls           SimpleAggregateFunction(sum, UInt64),
    errors          SimpleAggregateFunction(sum, UInt64),
    breaker_trips   SimpleAggregateFunction(sum, UInt64),
    degraded        SimpleAggregateFunction(sum, UInt64),
    context_trimmed SimpleAggregateFunction(sum, UInt64),
    input_tokens    SimpleAggregateFunction(sum, UInt64),
    output_tokens   SimpleAggregateFunction(sum, UInt64),
    cost_usd        SimpleAggregateFunction(sum, Float64),
    latency_ms_q    AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, tenant_id, provider, model, domain)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS agentstream.mv_llm_calls_1m
TO agentstream.llm_calls_1m
AS SELECT
    toStartOfMinute(timestamp) AS minute,
    tenant_id, provider, model, domain,
    count() AS calls,
    countIf(status = 'error') AS errors,
    countIf(status = 'fallback') AS breaker_trips,
    countIf(status = 'degraded') AS degraded,
    countIf(src.context_trimmed = 1) AS context_trimmed,
    sum(toUInt64(input_tokens)) AS input_tokens,
    sum(toUInt64(output_tokens)) AS output_tokens,
    sum(cost_usd) AS cost_usd,
    quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_ms_q
FROM agentstream.llm_calls AS src
GROUP BY minute, tenant_id, provider, model, domain;

-- The dashboard's per-minute figures, finalized across all dimensions.
CREATE VIEW IF NOT EXISTS agentstream.v_metrics_1m
AS SELECT
    minute,
    d.requests AS requests,
    d.errors AS errors,
    if(d.requests = 0, 0, d.errors / d.requests) AS error_rate,
    d.escalations AS escalations,
    if(d.requests = 0, 0, d.escalations / d.requests) AS escalation_rate,
    d.q[1] AS latency_p50_ms,
    d.q[2] AS latency_p95_ms,
    d.q[3] AS latency_p99_ms,
    if(d.requests = 0, 0, d.latency_ms_sum / d.requests) AS latency_avg_ms,
    if(d.successes = 0, 0, d.success_tokens / d.successes) AS tokens_per_success,
    if(d.requests = 0, 0, d.cost_usd / d.requests) AS cost_per_interaction,
    d.cost_usd AS cost_usd,
    d.users AS users,
    if(d.users = 0, 0, d.cost_usd / d.users) AS cost_per_user,
    l.calls AS llm_calls,
    l.breaker_trips AS breaker_trips
FROM
(
    SELECT
        minute,
        sum(requests) AS requests,
        sum(successes) AS successes,
        sum(errors) AS errors,
        sum(escalations) AS escalations,
        sum(success_tokens) AS success_tokens,
        sum(cost_usd) AS cost_usd,
        sum(latency_ms_sum) AS latency_ms_sum,
        quantilesMerge(0.5, 0.95, 0.99)(latency_ms_q) AS q,
        uniqMerge(users) AS users
    FROM agentstream.decisions_1m
    GROUP BY minute
) AS d
FULL OUTER JOIN
(
    SELECT minute, sum(calls) AS calls, sum(breaker_trips) AS breaker_trips
    FROM agentstream.llm_calls_1m
    GROUP BY minute
) AS l USING (minute);
