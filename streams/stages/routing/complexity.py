"""How hard a request is, and therefore which model tier it needs.

The estimate is a plug (`ComplexityEstimator`): the default reads length, how many questions or
parts the request has, the domain, and keywords that signal diagnosis or reasoning; a learned
classifier can replace it. The choice of model then follows cost: a `low` request goes to the
cheapest model its domain allows, `medium` to the domain's own model, `high` to the most capable
(priciest) model the domain allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

from streams.config.pipeline import DomainConfig, ModelConfig

Level = Literal["low", "medium", "high"]

_PARTS = re.compile(
    r"\b(?:and also|also|and then|then|after that|additionally|plus|as well as|besides)\b|"
    r"(?:^|\n)\s*(?:\d+[.)]|[-*•])\s+|\?\s+\S",
    re.IGNORECASE,
)
_REASONING = re.compile(
    r"\b(?:why|explain|compare|difference between|step by step|diagnos\w*|troubleshoot\w*|"
    r"root cause|stack ?trace|traceback|exception|configur\w*|migrat\w*|integrat\w*|"
    r"intermittent\w*|sometimes|dispute|chargeback|prorat\w*|contract|legal|gdpr)\b",
    re.IGNORECASE,
)
_CODE = re.compile(r"```|\b(?:error|code)\s*[A-Z]?\d{3,}\b|\w+\(\)|\bat \w+\.\w+", re.IGNORECASE)


@dataclass(frozen=True)
class Complexity:
    level: Level
    score: float
    inputs: dict[str, float] = field(default_factory=dict)


class ComplexityEstimator(Protocol):
    def estimate(self, text: str, domain: str) -> Complexity: ...


@dataclass(frozen=True)
class HeuristicComplexity:
    """Points for length, parts, reasoning keywords, code or error codes, and a domain prior."""

    domain_prior: dict[str, float] = field(default_factory=lambda: {"technical": 0.5})
    medium_at: float = 1.5
    high_at: float = 3.0

    def estimate(self, text: str, domain: str) -> Complexity:
        words = len(text.split())
        parts = len(_PARTS.findall(text))
        reasoning = len(set(m.lower() for m in _REASONING.findall(text)))
        code = 1.0 if _CODE.search(text) else 0.0
        score = (
            min(words / 40.0, 3.0)
            + 0.75 * min(parts, 4)
            + 0.75 * min(reasoning, 3)
            + code
            + self.domain_prior.get(domain, 0.0)
        )
        level: Level = "high" if score >= self.high_at else "medium" if score >= self.medium_at else "low"
        inputs = {
            "words": float(words),
            "parts": float(parts),
            "reasoning_keywords": float(reasoning),
            "code_or_error": code,
            "domain_prior": self.domain_prior.get(domain, 0.0),
        }
        return Complexity(level, round(score, 3), inputs)


def choose_model(level: Level, domain: DomainConfig, models: dict[str, ModelConfig]) -> tuple[str, str]:
    """(model key, why) for a request of `level` in `domain`, by price among the allowed models."""
    allowed = [key for key in domain.allowed_models() if key in models]
    if not allowed:
        return domain.model, "the domain's model (no other allowed)"

    def price(key: str) -> float:
        m = models[key]
        return m.price_in_per_1k + m.price_out_per_1k

    if level == "low":
        key = min(allowed, key=price)
        return key, f"low complexity: cheapest allowed model {models[key].name}"
    if level == "high":
        key = max(allowed, key=price)
        return key, f"high complexity: most capable allowed model {models[key].name}"
    return domain.model, f"medium complexity: the domain's model {models[domain.model].name}"
