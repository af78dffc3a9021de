"""agentstream: an event-sourced pipeline for AI-agent requests on Kafka and Faust.

Where things live (a request's path, top to bottom):

- `client`: the client API (publish a request, read its committed response).
- `events/`: `records` (the dataclasses on the wire), `codecs` (Avro single-object encoding).
- `kafka/`: `app` (the Faust app), `topics` (names, partition counts, creation),
  `stream_topics` (the app's topic objects), `partitioning`, `topic_reader`, `heartbeats`
  (membership kept during a long assignment), `envelope`
  (decode → handle → dead-letter → finish), `commit_guard`, `processes` (worker subprocesses), `launcher` (the local
  KRaft broker: stdlib only).
- `stages/`: `routing` → `budgets` → `execution` → `verification` → `responding`, plus
  `reviewing` (human decisions) and `monitoring` (windowed metrics, rollback); `compose`
  registers them all on the app.
- `state/`: `model` (session, task, step and hold types), `sessions` (their transitions and
  encoding), `store` (scans over encoded sessions), `tables` (the Faust table), `snapshot`
  (the table's local copy of its changelog).
- `config/`: `settings` (environment), `pipeline` (the versioned config file), `services`
  (provider, tracer, tool ledger, redactor: one `Services` per app, `app.services`, each
  piece built on first use).
- `telemetry/`: `tracing`, `span_pump` (spans to Kafka), `redaction`.
- `llm/`: providers (OpenAI-compatible, recorded), retries, and `simulator/` (`provider`,
  `parsing`, `intents`, `phrasing`, `draws`).
- `control/`: rollout state and the control-topic watcher.
- `replay/`: shadow runs (`shadow`) and their diff (`report`).
- `console/`: the web console. `cli/`: the `agentstream` commands, one module per group.
"""
