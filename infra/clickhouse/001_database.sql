-- Database and the migration ledger used by sinks.clickhouse.migrate().
-- Every file in this directory is idempotent (IF NOT EXISTS): applying it twice is a no-op,
-- and the ledger lets migrate() skip files it already applied.
CREATE DATABASE IF NOT EXISTS agentstream;

CREATE TABLE IF NOT EXISTS agentstream.schema_migrations
(
    file       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY file;
