"""Tracing (OpenTelemetry GenAI spans), the span exporter pump to Kafka, and redaction."""
