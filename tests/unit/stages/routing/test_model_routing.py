"""Model routing by complexity and cost: simple requests of any domain take the cheapest model
the domain allows, hard ones the most capable; the estimate is a plug."""

from __future__ import annotations

import dataclasses

from streams.config.pipeline import load_config
from streams.events.records import Request, Routed
from streams.stages.routing.complexity import Complexity, HeuristicComplexity, choose_model
from streams.stages.routing.logic import route

CFG = load_config()


def _route(text: str, **kw) -> Routed:
    out = route(Request(request_id="r", session_id="s", user_id="u", text=text, created_ms=1), CFG, **kw)
    assert isinstance(out, Routed), out
    return out


def test_simple_requests_of_every_domain_take_the_cheapest_allowed_model() -> None:
    cheapest = min(CFG.models.values(), key=lambda m: m.price_in_per_1k + m.price_out_per_1k).name
    for text, domain in (
        ("Where is my order 1234?", "customer_support"),
        ("Can I get an invoice?", "billing"),
        ("Is the dashboard down?", "technical"),
    ):
        routed = _route(text)
        assert routed.domain == domain and routed.complexity == "low", routed
        assert routed.model == cheapest, f"{text!r} went to {routed.model}"


def test_hard_requests_take_the_most_capable_allowed_model() -> None:
    priciest = max(CFG.models.values(), key=lambda m: m.price_in_per_1k + m.price_out_per_1k).name
    text = (
        "Our API integration fails intermittently with error 502 after the migration. "
        "Can you explain why, compare it with last week's configuration, and then walk me through "
        "troubleshooting it step by step? Also, what is the root cause in this stack trace?"
    )
    routed = _route(text)
    assert routed.complexity == "high" and routed.model == priciest


def test_a_domain_that_allows_one_model_keeps_it() -> None:
    billing = dataclasses.replace(CFG.domains["billing"], models=())
    assert choose_model("low", billing, CFG.models)[0] == "large"


def test_the_estimate_is_pluggable_and_explains_itself() -> None:
    class AlwaysHigh:
        def estimate(self, text: str, domain: str) -> Complexity:
            return Complexity("high", 9.0, {"custom": 1.0})

    assert _route("Where is my order?", estimator=AlwaysHigh()).complexity == "high"
    estimate = HeuristicComplexity().estimate("Why does login fail? And then the app crashes.", "technical")
    assert set(estimate.inputs) >= {"words", "parts", "reasoning_keywords", "code_or_error", "domain_prior"}
    assert estimate.inputs["parts"] >= 1 and estimate.inputs["reasoning_keywords"] >= 1
