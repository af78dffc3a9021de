"""What a routed request is expected to use, before its first LLM call."""

from __future__ import annotations

import math

from streams.config.pipeline import PipelineConfig
from streams.events.records import BudgetEvent, Routed, identity_of, now_ms
from streams.stages.routing.complexity import choose_model

CHARS_PER_TOKEN = 4


def reservation(routed: Routed, cfg: PipelineConfig, routed_bytes: bytes) -> BudgetEvent:
    """The reserve event: prompt tokens estimated from its characters, output at `max_tokens`,
    priced with the routed model; and the degraded alternative: the cheapest model the domain
    allows with a quarter of the output budget."""
    domain = cfg.domains[routed.domain]
    chars = len(domain.system_prompt) + len(routed.text) + sum(len(m.content) for m in routed.context)
    prompt = math.ceil(chars / CHARS_PER_TOKEN)
    tokens = prompt + routed.max_tokens
    cheap_key, _ = choose_model("low", domain, cfg.models)
    cheap = cfg.models[cheap_key].name
    return BudgetEvent(
        kind="reserve",
        **identity_of(routed),
        routed=routed_bytes,
        tokens=tokens,
        cost_usd=cfg.cost_usd(routed.model, prompt, routed.max_tokens),
        cheaper_tokens=prompt + degraded_max_tokens(routed.max_tokens),
        cheaper_cost_usd=cfg.cost_usd(cheap, prompt, degraded_max_tokens(routed.max_tokens)),
        cheaper_model=cheap,
        created_ms=now_ms(),
    )


def degraded_max_tokens(max_tokens: int) -> int:
    return max(64, max_tokens // 4)
