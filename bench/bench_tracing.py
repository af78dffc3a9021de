"""Pipeline throughput with tracing on vs off, in the same run (ratio). Prints JSON lines.

    python bench/bench_tracing.py --requests 400

Each arm gets its own namespace and worker; requests go to 100 sessions with a 20 ms simulated
LLM latency, so the figure is dominated by the pipeline, not the model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

from streams.client import AgentStreamClient
from streams.config.settings import Settings
from streams.kafka.processes import WorkerProcess, environment_for
from streams.kafka.topics import ensure_topics

TEXTS = ["Where is my order 1234?", "Refund $5 for order 1234", "Is the dashboard down?"]


async def run_arm(bootstrap: str, tracing: bool, n: int, tmp: Path) -> float:
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        namespace=f"-bt{uuid.uuid4().hex[:8]}",
        data_dir=tmp / str(tracing),
    )
    await ensure_topics(settings)
    env = environment_for(
        settings,
        AGENTSTREAM_SIM_LATENCY_MS="20",
        AGENTSTREAM_TRACING="true" if tracing else "false",
    )
    worker = WorkerProcess.spawn(env, settings.data_dir / "worker.log")
    try:
        await worker.wait_ready()
        async with AgentStreamClient.from_settings(settings) as client:
            warm = await client.send("warm up", session_id="warm", user_id="w")
            await client.response(warm.request_id, 120)
            started = time.perf_counter()
            ids = [
                (
                    await client.send(TEXTS[i % 3], session_id=f"s{i % 100}", user_id=f"u{i % 100}")
                ).request_id
                for i in range(n)
            ]
            for rid in ids:
                await client.response(rid, 600)
            return n / (time.perf_counter() - started)
    finally:
        worker.stop()


async def main(n: int, rounds: int) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    tmp = Path(tempfile.mkdtemp(prefix="bench-tracing-"))
    for r in range(rounds):
        off = await run_arm(bootstrap, False, n, tmp / f"r{r}")
        on = await run_arm(bootstrap, True, n, tmp / f"r{r}")
        print(
            json.dumps(
                {
                    "bench": "tracing",
                    "round": r,
                    "metric": "requests_per_s_off",
                    "value": round(off, 1),
                }
            )
        )
        print(
            json.dumps(
                {
                    "bench": "tracing",
                    "round": r,
                    "metric": "requests_per_s_on",
                    "value": round(on, 1),
                }
            )
        )
        print(
            json.dumps(
                {
                    "bench": "tracing",
                    "round": r,
                    "metric": "on_over_off",
                    "value": round(on / off, 3),
                }
            )
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
