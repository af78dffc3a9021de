-- The sink's progress, written right after each batch's rows and before its Kafka commit.
-- On partition assignment the sink resumes at max(Kafka committed offset, next_offset here), so a
-- sink killed after the insert but before the commit does not replay the batch (which would
-- otherwise be deduplicated in the base tables but could be counted twice by the rollups).
-- next_offset is the version: the highest progress per partition wins.
CREATE TABLE IF NOT EXISTS agentstream.sink_offsets
(
    consumer_group String,
    topic          String,
    partition      UInt32,
    next_offset    UInt64,
    updated_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(next_offset)
ORDER BY (consumer_group, topic, partition);
