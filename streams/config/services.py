"""The worker's runtime pieces, built from its settings on first use: pipeline config, LLM
provider, tool ledger, tracing, redaction.

One `Services` belongs to one Faust app (`app.services`), so two apps in one process (tests) do
not share a provider or a span queue, and a CLI command that never asks for the provider never
builds it.
"""

from __future__ import annotations

import queue
from functools import cached_property

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracer, Tracer

from streams.config.pipeline import PipelineConfig, load_config
from streams.config.settings import Settings
from streams.control.watcher import ControlWatcher
from streams.kafka.topics import CONTROL
from streams.llm import build_provider
from streams.llm.base import Provider
from streams.stages.execution.tools import ToolLedger
from streams.stages.verification.logic import Checks, checks_for
from streams.telemetry.redaction import Redactor
from streams.telemetry.span_batches import SpanMessage
from streams.telemetry.tracing import SCOPE, QueueSpanExporter, build_tracer_provider

SpanQueue = queue.SimpleQueue[SpanMessage]


class Services:
    """Each piece is built the first time a stage asks for it, then kept for the worker's life."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def pipeline_config(self) -> PipelineConfig:
        return load_config(self.settings.config_file)

    @cached_property
    def control_watcher(self) -> ControlWatcher:
        s = self.settings
        return ControlWatcher(s.kafka_bootstrap_servers, s.topic(CONTROL))

    @cached_property
    def provider(self) -> Provider:
        s = self.settings
        if s.llm_provider == "recorded":
            from streams.llm.recorded import RecordedProvider

            if s.recordings is None:
                raise ValueError("AGENTSTREAM_RECORDINGS must name a recordings file for the recorded provider")
            return RecordedProvider.from_file(s.recordings)
        if s.llm_provider == "openai":
            return build_provider("openai", base_url=s.llm_base_url, api_key=s.llm_api_key.get_secret_value())
        return build_provider(
            "simulator",
            seed=s.sim_seed,
            latency_ms_mean=s.sim_latency_ms,
            latency_ms_jitter=s.sim_latency_jitter,
            rate_limit_rate=s.sim_rate_limit_rate,
            timeout_rate=s.sim_timeout_rate,
            empty_rate=s.sim_empty_rate,
            outage_file=s.sim_outage_file,
            calls_log=s.sim_calls_log,
            model_failure_rates=_rates(s.sim_model_failures),
        )

    @cached_property
    def tool_ledger(self) -> ToolLedger:
        s = self.settings
        return ToolLedger(s.tools_ledger or s.data_dir / "tools-ledger.sqlite")

    @cached_property
    def span_queue(self) -> SpanQueue:
        return queue.SimpleQueue()

    @cached_property
    def span_exporter(self) -> QueueSpanExporter:
        return QueueSpanExporter(self.span_queue)

    @cached_property
    def tracer_provider(self) -> TracerProvider | None:
        s = self.settings
        if not s.tracing:
            return None
        return build_tracer_provider(f"{s.app_id}-worker", self.span_exporter)

    @cached_property
    def tracer(self) -> Tracer:
        provider = self.tracer_provider
        return provider.get_tracer(SCOPE) if provider else NoOpTracer()

    @cached_property
    def redactor(self) -> Redactor:
        return Redactor(self.pipeline_config.redaction_patterns, enabled=self.settings.redaction)

    def verifier_checks(self, config_version: str) -> Checks:
        """What the verifier holds for a human under that config version (policy + the redactor)."""
        return checks_for(self.pipeline_config.for_version(config_version).policy, self.redactor.findings)


def _rates(spec: str) -> dict[str, float]:
    """`"sim-large=0.3,sim-small=0"` -> {"sim-large": 0.3, "sim-small": 0.0}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        model, sep, rate = part.partition("=")
        if not sep:
            raise ValueError(f"AGENTSTREAM_SIM_MODEL_FAILURES: {part!r} is not model=rate")
        out[model.strip()] = float(rate)
    return out
