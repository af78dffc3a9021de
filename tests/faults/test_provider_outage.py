"""Every LLM call fails for 20 s: the breaker opens, users get `fallback`, the provider sees a
bounded number of calls (no retry storm), and service recovers by itself afterwards."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from streams.config.pipeline import DEFAULT_CONFIG
from tests.faults.load import Load, count, report, settle
from tests.harness import Pipeline

pytestmark = pytest.mark.fault

SESSIONS = 20
ATTEMPTS = 3
FAILURES_TO_OPEN = 5
COOLDOWN_S = 5.0


def _config(tmp: Path) -> Path:
    text = DEFAULT_CONFIG.read_text()
    text = text.replace("breaker_cooldown_s = 30.0", f"breaker_cooldown_s = {COOLDOWN_S}")
    text = text.replace("breaker_failures = 5", f"breaker_failures = {FAILURES_TO_OPEN}")
    text = text.replace("llm_attempts = 3", f"llm_attempts = {ATTEMPTS}")
    path = tmp / "outage.toml"
    path.write_text(text)
    return path


async def test_provider_outage_opens_the_breaker_without_a_retry_storm(pipeline: Pipeline) -> None:
    outage, calls = pipeline.tmp / "outage", pipeline.tmp / "calls.log"
    pipeline.env_extra.update(
        {
            "AGENTSTREAM_SIM_LATENCY_MS": "100",
            "AGENTSTREAM_CONFIG_FILE": str(_config(pipeline.tmp)),
            "AGENTSTREAM_SIM_OUTAGE_FILE": str(outage),
            "AGENTSTREAM_SIM_CALLS_LOG": str(calls),
        }
    )
    worker = pipeline.start_worker()
    await pipeline.wait_ready(worker)
    load = Load()
    rate = 10.0
    producing = asyncio.create_task(
        load.publish(pipeline, 450, sessions=SESSIONS, rate=rate, tool_every=0)
    )
    await asyncio.sleep(10.0)
    outage.touch()
    began = time.time()
    await asyncio.sleep(20.0)
    outage.unlink()
    ended = time.time()
    await producing  # 45 s of load: the last 15 s after the outage
    responses, _ = await settle(pipeline, set(load.sent), timeout_s=120)
    figures = count(responses, set(load.sent))

    lines = [line.split() for line in calls.read_text().splitlines()]
    during = [int(ms) for ms, outcome in lines if outcome == "unavailable"]
    figures["provider_calls_during_outage"] = len(during)
    figures["requests_during_outage"] = int(20 * rate)
    report("provider outage", figures)

    assert figures["lost"] == 0 and figures["doubled"] == 0 and figures["unexpected"] == 0, figures
    assert figures["statuses"].get("fallback", 0) > 0, "an open breaker answers fallback"
    # Bound: every session in flight when the outage began may spend its attempts, the breaker
    # needs FAILURES_TO_OPEN failures per model to open, and each half-open probe after a
    # cool-down is one more call. Without the breaker this would be requests x attempts (600).
    probes = int(20 / COOLDOWN_S) + 1
    bound = (SESSIONS + FAILURES_TO_OPEN) * ATTEMPTS * 2 + probes * ATTEMPTS * 2
    assert len(during) <= bound, figures
    assert all(began - 1 <= ms / 1000 <= ended + 1 for ms in during)
    # Recovered by itself: what was sent well after the outage (cool-down passed) is answered ok.
    late = [r for r in responses if r.created_ms / 1000 > ended + COOLDOWN_S + 2]
    assert late and all(r.status == "ok" for r in late), figures
    assert worker.alive
