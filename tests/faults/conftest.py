"""Fault drills run against the real broker, like the integration tests (same fixtures)."""

from tests.integration.conftest import bootstrap, pipeline

__all__ = ["bootstrap", "pipeline"]
