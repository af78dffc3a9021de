"""Composes the stages into one worker: importing this registers every agent on the app."""

from streams import span_pump
from streams.app import app
from streams.budgets import agent as budgets_agent
from streams.execution import agent as execution_agent
from streams.monitoring import agent as monitoring_agent
from streams.responding import service as responding_service
from streams.reviewing import agent as reviewing_agent
from streams.routing import agent as routing_agent
from streams.verification import agent as verification_agent

__all__ = [
    "app",
    "budgets_agent",
    "execution_agent",
    "monitoring_agent",
    "responding_service",
    "reviewing_agent",
    "routing_agent",
    "span_pump",
    "verification_agent",
]
