"""Composes the stages into one worker: importing this registers every agent on the app."""

from streams.kafka.app import app
from streams.stages.budgets import agent as budgets_agent
from streams.stages.execution import agent as execution_agent
from streams.stages.monitoring import agent as monitoring_agent
from streams.stages.responding import service as responding_service
from streams.stages.reviewing import agent as reviewing_agent
from streams.stages.routing import agent as routing_agent
from streams.stages.verification import agent as verification_agent
from streams.stages.warm_up import warm_up
from streams.telemetry import span_pump

app.startup_work.append(warm_up)

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
