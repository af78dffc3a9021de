"""Twice the sustainable rate for 60 s: the worker's memory stays bounded (the backlog waits in
Kafka, not in the worker) and everything is answered exactly once after the burst."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.load import Load, count, report, settle
from tests.harness import Pipeline

pytestmark = pytest.mark.fault


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def test_burst_at_twice_the_sustainable_rate(pipeline: Pipeline) -> None:
    pipeline.env_extra["AGENTSTREAM_SIM_LATENCY_MS"] = "20"
    worker = pipeline.start_worker()
    await pipeline.wait_ready(worker)
    load = Load()

    # Calibrate: what this machine sustains right now (a flood of 600, answered throughput).
    t0 = time.monotonic()
    await load.publish(pipeline, 600, sessions=200, rate=10_000.0, tool_every=0)
    await settle(pipeline, set(load.sent), timeout_s=120)
    sustainable = 600 / (time.monotonic() - t0 - 3.0)
    rate = min(2 * sustainable, 400.0)
    base_rss = rss_mb(worker.proc.pid)

    samples: list[float] = []

    async def sample() -> None:
        while True:
            samples.append(rss_mb(worker.proc.pid))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    burst = int(rate * 60)
    started = time.monotonic()
    await load.publish(pipeline, burst, sessions=200, rate=rate, start=600, tool_every=0)
    responses, took = await settle(pipeline, set(load.sent), timeout_s=400)
    sampler.cancel()
    figures = count(responses, set(load.sent))
    figures.update(
        sustainable_rps=round(sustainable, 1),
        burst_rps=round(rate, 1),
        burst_requests=burst,
        drain_after_burst_s=round(took, 1),
        total_s=round(time.monotonic() - started, 1),
        rss_start_mb=round(base_rss, 1),
        rss_peak_mb=round(max(samples), 1),
        rss_end_mb=round(samples[-1], 1),
    )
    report("burst 2x for 60 s", figures)
    assert figures["lost"] == 0 and figures["doubled"] == 0 and figures["unexpected"] == 0, figures
    assert set(figures["statuses"]) == {"ok"}, figures
    # Bounded: the backlog stays in Kafka. The worker may grow by its buffers and the sessions
    # it holds (200 here), not by the thousands of requests waiting.
    assert max(samples) - base_rss < 200, figures
    assert worker.alive
