-- The router's complexity estimate (low / medium / high) that picked the request's model, next to
-- `model` and `cost_usd`: "which requests went to the expensive model, and was it worth it".
-- Empty for decisions recorded before this column existed.
ALTER TABLE agentstream.decisions ADD COLUMN IF NOT EXISTS complexity LowCardinality(String) DEFAULT '' AFTER config_version;
