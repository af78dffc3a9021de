"""The versioned agents-and-policies file, parsed into frozen dataclasses."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.stages.budgets.ledger import Ceiling

DEFAULT_CONFIG = Path(__file__).parent / "default.toml"


@dataclass(frozen=True)
class ModelConfig:
    name: str
    price_in_per_1k: float
    price_out_per_1k: float


@dataclass(frozen=True)
class DomainConfig:
    name: str
    system_prompt: str
    model: str  # key into PipelineConfig.models
    max_tokens: int
    tools: tuple[str, ...]
    # Models this domain may use (keys into PipelineConfig.models); empty = only `model`.
    models: tuple[str, ...] = ()

    def allowed_models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.models, self.model)))


@dataclass(frozen=True)
class RouterConfig:
    max_input_chars: int = 50_000
    overlong: str = "truncate"
    rollout_candidate_percent: int = 0
    # Carried-over context and the whole encoded request are bounded so that a task (and the
    # session value holding it) stays far below the producer's 1 MB request limit.
    max_context_messages: int = 50
    max_context_chars: int = 40_000
    max_request_bytes: int = 256 * 1024
    # Jailbreak screening: a text (or carried-over turn) scoring at least this is blocked.
    screen_threshold: float = 0.65
    # A guard model after the rules (a model name served by the configured provider; "" = off).
    guard_model: str = ""
    guard_threshold: float = 0.5
    guard_fail_closed: bool = False


@dataclass(frozen=True)
class ExecutionConfig:
    max_steps: int = 8
    max_context_chars: int = 24_000
    loop_repeats: int = 3
    llm_timeout_s: float = 30.0
    llm_attempts: int = 3
    retry_base_delay_s: float = 0.2
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    tool_timeout_s: float = 5.0


@dataclass(frozen=True)
class PolicyConfig:
    refund_hold_above: float = 100.0
    held_tools: tuple[str, ...] = ()
    # Refunds of one session within the window, summed: past the limit, the next one is held.
    refund_session_limit: float = 100.0
    refund_window_s: float = 24 * 3600.0
    # Escalations holding these tools are `high` priority in the review queue.
    high_priority_tools: tuple[str, ...] = ("delete_account", "transfer_account")
    # Redaction labels that, found in an answer, hold it for a human (the redactor's detectors).
    answer_personal_data: tuple[str, ...] = ("CARD", "SSN")


@dataclass(frozen=True)
class MonitorConfig:
    """Automatic rollback of the candidate arm: any trigger over the window rolls it back to 0%,
    once at least `min_samples` answers of the candidate are in the window."""

    window_s: float = 300.0
    min_samples: int = 20
    max_error_rate: float = 0.05  # error, degraded and fallback answers
    max_avg_latency_ms: float = 10_000.0
    max_escalation_rate: float = 0.20
    # Cost per answer against the budget per answer; 2.0 = rolled back above 200% of it.
    budget_usd_per_request: float = 0.01
    max_cost_ratio: float = 2.0


@dataclass(frozen=True)
class PipelineConfig:
    version: str
    router: RouterConfig
    execution: ExecutionConfig
    policy: PolicyConfig
    models: dict[str, ModelConfig]
    domains: dict[str, DomainConfig]
    # Extra or overriding redaction patterns, label -> regex ("" switches a default off).
    redaction_patterns: dict[str, str] = field(default_factory=dict)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    # Token and cost ceilings per tenant and user (streams/budgets); none: no budget stage.
    budgets: tuple[Ceiling, ...] = ()
    # The candidate of a gradual rollout: this config with the `[candidate]` overrides applied.
    candidate: PipelineConfig | None = None

    def for_version(self, version: str) -> PipelineConfig:
        """The config a request was routed with (the candidate's, or this one)."""
        if self.candidate is not None and version == self.candidate.version:
            return self.candidate
        return self

    def model_for(self, key: str) -> ModelConfig:
        return self.models[key]

    def cost_usd(self, model_name: str, input_tokens: int, output_tokens: int) -> float:
        """Price of a call by the model's served name; unknown models cost 0 (and say so in docs)."""
        for m in self.models.values():
            if m.name == model_name:
                return (input_tokens * m.price_in_per_1k + output_tokens * m.price_out_per_1k) / 1000
        return 0.0


class ConfigError(ValueError):
    pass


def parse_config(raw: dict[str, Any]) -> PipelineConfig:
    try:
        models = {k: ModelConfig(**v) for k, v in raw["models"].items()}
        domains = {
            k: DomainConfig(
                name=k, **{**v, "tools": tuple(v.get("tools", ())), "models": tuple(v.get("models", ()))}
            )
            for k, v in raw["domains"].items()
        }
        policy = raw.get("policy", {})
        cfg = PipelineConfig(
            version=str(raw["version"]),
            router=RouterConfig(**raw.get("router", {})),
            execution=ExecutionConfig(**raw.get("execution", {})),
            policy=PolicyConfig(
                refund_hold_above=float(policy.get("refund_hold_above", 100.0)),
                held_tools=tuple(policy.get("held_tools", ())),
                refund_session_limit=float(
                    policy.get("refund_session_limit", policy.get("refund_hold_above", 100.0))
                ),
                refund_window_s=float(policy.get("refund_window_s", 24 * 3600.0)),
                high_priority_tools=tuple(
                    policy.get("high_priority_tools", PolicyConfig.high_priority_tools)
                ),
                answer_personal_data=tuple(
                    policy.get("answer_personal_data", PolicyConfig.answer_personal_data)
                ),
            ),
            models=models,
            domains=domains,
            redaction_patterns={str(k): str(v) for k, v in raw.get("redaction", {}).get("patterns", {}).items()},
            monitor=MonitorConfig(**raw.get("monitor", {})),
            budgets=tuple(Ceiling(**c) for c in raw.get("budgets", {}).get("ceilings", [])),
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"invalid agentstream config: {exc!r}") from exc
    for c in cfg.budgets:
        if c.scope not in ("tenant", "user") or c.window not in ("hour", "day", "month"):
            raise ConfigError(f"budget ceiling {c}: scope is tenant|user, window is hour|day|month")
        if c.on_exceed not in ("error", "degraded") or not (c.max_tokens or c.max_cost_usd):
            raise ConfigError(f"budget ceiling {c}: on_exceed is error|degraded, and it needs a max")
    if cfg.router.overlong not in ("truncate", "reject"):
        raise ConfigError("router.overlong must be 'truncate' or 'reject'")
    for d in cfg.domains.values():
        if d.model not in models:
            raise ConfigError(f"domain {d.name} uses unknown model {d.model!r}")
        unknown = [m for m in d.models if m not in models]
        if unknown:
            raise ConfigError(f"domain {d.name} allows unknown model(s) {unknown}")
    return cfg


def load_config(path: Path | None = None) -> PipelineConfig:
    """The config file, with its `[candidate]` section (if any) parsed as the rollout candidate:
    the same file with the candidate's keys merged over it and its own `version`."""
    with open(path or DEFAULT_CONFIG, "rb") as fh:
        raw = tomllib.load(fh)
    overrides = raw.pop("candidate", None)
    base = parse_config(raw)
    if not overrides:
        return base
    if "version" not in overrides or str(overrides["version"]) == base.version:
        raise ConfigError("[candidate] needs its own `version`, different from the active one")
    candidate = parse_config(_merged(raw, overrides))
    return dataclasses.replace(base, candidate=candidate)


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
