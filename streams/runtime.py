"""The worker's runtime pieces built once from settings: pipeline config, LLM provider, tool ledger."""

from __future__ import annotations

from functools import cache

from streams.config import PipelineConfig, load_config
from streams.execution.tools import ToolLedger
from streams.llm import build_provider
from streams.llm.base import Provider
from streams.settings import get_settings


@cache
def pipeline_config() -> PipelineConfig:
    return load_config(get_settings().config_file)


@cache
def provider() -> Provider:
    s = get_settings()
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
    )


@cache
def tool_ledger() -> ToolLedger:
    s = get_settings()
    return ToolLedger(s.tools_ledger or s.data_dir / "tools-ledger.jsonl")
