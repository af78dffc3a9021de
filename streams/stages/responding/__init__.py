"""Exactly-once publication of responses (outbox -> responses, Kafka transactions)."""
