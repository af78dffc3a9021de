"""One worker's throughput, optionally profiled: the quick A/B behind a single change.

    python bench/bench_worker.py --requests 2000 --sessions 500            # req/s, tracing on
    python bench/bench_worker.py --requests 2500 --profile 30 --out w.raw  # py-spy raw samples

A worker in a fresh namespace, simulator at 0 ms, 50 warm-up requests, then the run; the load
client is `bench_pipeline.drive`. The baseline is the other tree (or setting) run the same way
right before or after: alternate them, the machine's load drifts. `--profile` records the
worker with py-spy (`-f raw`) for that many seconds from the start of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_pipeline import drive
from streams.config.settings import Settings
from streams.kafka.processes import WorkerProcess, environment_for
from streams.kafka.topics import REQUESTS, RESPONSES, ensure_topics


async def main(args: argparse.Namespace) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    settings = Settings(kafka_bootstrap_servers=bootstrap, namespace=f"-bw{uuid.uuid4().hex[:8]}", data_dir=tmp)
    await ensure_topics(settings)
    env = environment_for(settings, AGENTSTREAM_SIM_LATENCY_MS="0", AGENTSTREAM_TRACING=args.tracing)
    worker = WorkerProcess.spawn(env, tmp / "worker.log")
    try:
        await worker.wait_ready()
        topics = (bootstrap, settings.topic(REQUESTS), settings.topic(RESPONSES), "read_committed")
        await drive(*topics, 50, 50)
        spy = None
        if args.profile:
            spy = subprocess.Popen(
                ["py-spy", "record", "-p", str(worker.proc.pid), "-d", str(args.profile), "-r", "50",
                 "-f", "raw", "-o", args.out],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        rate = await drive(*topics, args.requests, args.sessions)
        print(json.dumps({"bench": "worker", "metric": "req_per_s", "value": round(rate, 1),
                          "requests": args.requests, "sessions": args.sessions, "tracing": args.tracing}))
        if spy:
            spy.wait()
    finally:
        worker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--tracing", choices=["true", "false"], default="true")
    parser.add_argument("--profile", type=int, default=0, help="seconds of py-spy recording (0: none)")
    parser.add_argument("--out", default="worker-profile.raw")
    asyncio.run(main(parser.parse_args()))
