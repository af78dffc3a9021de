"""Windowed metrics and rollback triggers."""

import asyncio

import pytest

from streams.config.pipeline import MonitorConfig
from streams.llm.base import ChatRequest, ProviderUnavailable
from streams.llm.simulator import SimulatedProvider, SimulatorConfig
from streams.stages.monitoring.metrics import counted, record, summarize, triggers

CFG = MonitorConfig(window_s=60, min_samples=20)


def fill(statuses: list[str], latency_ms: float = 100.0, cost: float = 0.001, start: int = 1_000_000) -> dict:
    w = None
    for i, status in enumerate(statuses):
        w = record(w, status, latency_ms, cost, start + i * 100, CFG.window_s)
    return w


def test_rates_latency_and_cost_over_the_window() -> None:
    w = fill(["ok"] * 15 + ["degraded"] * 3 + ["escalated"] * 2, latency_ms=300)
    s = summarize(w, 1_002_000, CFG.window_s)
    assert s.answers == 20 and s.error_rate == pytest.approx(0.15) and s.escalation_rate == pytest.approx(0.10)
    assert s.avg_latency_ms == pytest.approx(300) and s.p95_latency_ms == 500
    assert s.cost_per_answer_usd == pytest.approx(0.001)


def test_old_answers_leave_the_window() -> None:
    w = fill(["error"] * 30)
    later = record(w, "ok", 100, 0.0, 1_000_000 + 5 * 60_000, CFG.window_s)
    s = summarize(later, 1_000_000 + 5 * 60_000, CFG.window_s)
    assert s.answers == 1 and s.error_rate == 0.0
    assert len(later["buckets"]) == 1, "buckets past the window are dropped from the value"


def test_an_answer_read_again_after_a_crash_is_not_counted_twice() -> None:
    w = None
    for offset in (0, 2, 4):  # a transactional topic: each record is followed by its marker
        assert not counted(w, offset)
        w = record(w, "ok", 100, 0.0, 1_000_000 + offset, CFG.window_s, offset)
    assert counted(w, 2) and counted(w, 4) and not counted(w, 6)
    assert summarize(w, 1_000_010, CFG.window_s).answers == 3
    assert not counted(None, 0), "an empty window has counted nothing"


def test_each_trigger_fires_and_a_small_sample_never_does() -> None:
    assert triggers(summarize(fill(["error"] * 19), 1_002_000, 60), CFG) == []
    assert triggers(summarize(fill(["ok"] * 40), 1_004_000, 60), CFG) == []
    errors = triggers(summarize(fill(["ok"] * 36 + ["error"] * 4), 1_004_000, 60), CFG)
    assert len(errors) == 1 and errors[0].startswith("error rate 10.0% > 5%")
    slow = triggers(summarize(fill(["ok"] * 30, latency_ms=12_000), 1_003_000, 60), CFG)
    assert slow and slow[0].startswith("average latency 12,000 ms")
    costly = triggers(summarize(fill(["ok"] * 30, cost=0.05), 1_003_000, 60), CFG)
    assert costly and costly[0].startswith("cost 500% of budget")
    held = triggers(summarize(fill(["ok"] * 20 + ["escalated"] * 10), 1_003_000, 60), CFG)
    assert held and held[0].startswith("escalation rate 33.3%")


def test_the_simulator_fails_a_share_of_one_models_calls_and_retries_fail_too() -> None:
    sim = SimulatedProvider(SimulatorConfig(latency_ms_mean=0, model_failure_rates={"bad": 0.3}))

    async def outcome(model: str, key: str) -> bool:
        req = ChatRequest(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=50,
                          timeout_s=5, call_key=key)
        try:
            await sim.chat(req)
            return True
        except ProviderUnavailable:
            return False

    async def run() -> tuple[list[bool], list[bool], list[bool]]:
        bad = [await outcome("bad", f"k{i}") for i in range(400)]
        again = [await outcome("bad", f"k{i}") for i in range(400)]
        good = [await outcome("good", f"k{i}") for i in range(100)]
        return bad, again, good

    bad, again, good = asyncio.run(run())
    assert 0.24 < bad.count(False) / len(bad) < 0.36
    assert bad == again and all(good)
