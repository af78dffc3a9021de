"""One frozen settings object, read from the environment at the entry point only."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Connections and worker knobs; agents and policies live in the versioned config file."""

    model_config = SettingsConfigDict(env_prefix="AGENTSTREAM_", frozen=True, populate_by_name=True)

    # The local broker's port (`agentstream kafka up`); the default bootstrap points at it.
    kafka_port: int = 9092
    kafka_bootstrap_servers: str = Field(
        "",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "AGENTSTREAM_KAFKA_BOOTSTRAP_SERVERS"),
    )
    # Suffix appended to every topic and the app id so tests and replays stay isolated.
    namespace: str = ""
    partitions: int = 4
    # Replicas of every topic the pipeline creates: 1 suits one broker; 3 on a cluster.
    replication_factor: int = Field(1, ge=1)
    config_file: Path | None = None
    data_dir: Path = REPO_ROOT / ".data"
    session_timeout_s: float = 6.0
    # Keep a local copy of the sessions changelog under data_dir/state, so a restart replays
    # only the changelog's tail (`streams.state.snapshot`); false: replay it all at every start.
    local_state: bool = True
    # The worker's event loop: uvloop (libuv) unless "asyncio".
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # After the warm-up, freeze what the worker built out of the garbage collector's way and
    # collect the young generation less often (`streams.kafka.heap`); false keeps Python's defaults.
    gc_freeze: bool = True
    # How long a request id is remembered as seen / answered (duplicates older than this are new).
    dedup_window_s: float = 24 * 3600.0
    # Demo tools keep their ledger (the "external system") here so a crash cannot hide a double charge.
    tools_ledger: Path | None = None

    # A ClickHouse server URL (http(s)://user:pass@host:8123/) or the embedded engine, chdb:///dir.
    clickhouse: str = Field("", validation_alias=AliasChoices("CLICKHOUSE_URL", "AGENTSTREAM_CLICKHOUSE_URL"))
    # Fault drills: while this file exists the sink's ClickHouse calls are refused.
    clickhouse_outage_file: Path | None = None
    tracing: bool = True
    # Prompt and answer text on LLM spans (GenAI opt-in content), redacted unless turned off.
    capture_content: bool = True
    redaction: bool = True

    llm_provider: str = "simulator"
    llm_base_url: str = Field(
        "", validation_alias=AliasChoices("OPENAI_BASE_URL", "AGENTSTREAM_LLM_BASE_URL")
    )
    llm_api_key: SecretStr = Field(
        SecretStr(""), validation_alias=AliasChoices("OPENAI_API_KEY", "AGENTSTREAM_LLM_API_KEY")
    )
    # For `llm_provider = "recorded"` (replay): JSON of recorded LLM answers by call key.
    recordings: Path | None = None
    sim_seed: int = 0
    sim_latency_ms: float = 300.0
    sim_latency_jitter: float = 0.3
    sim_rate_limit_rate: float = 0.0
    sim_timeout_rate: float = 0.0
    sim_empty_rate: float = 0.0
    sim_outage_file: str = ""  # fault drills: every call fails while this file exists
    sim_calls_log: str = ""  # fault drills: one line per provider call
    sim_model_failures: str = ""  # drills: "model=rate,model=rate" share of calls that fail

    @model_validator(mode="after")
    def _local_broker_by_default(self) -> Settings:
        if not self.kafka_bootstrap_servers:
            object.__setattr__(self, "kafka_bootstrap_servers", f"127.0.0.1:{self.kafka_port}")
        return self

    @property
    def app_id(self) -> str:
        return f"agentstream{self.namespace}"

    @property
    def clickhouse_url(self) -> str:
        """Embedded chDB under the data dir unless a URL is configured."""
        return self.clickhouse or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    def topic(self, name: str) -> str:
        return f"agentstream{self.namespace}.{name}.v1"


@cache
def get_settings() -> Settings:
    return Settings()
