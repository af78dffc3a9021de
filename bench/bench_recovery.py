"""State rebuild after SIGKILL: how long a new worker takes to rebuild `sessions` from its changelog.

Baseline in the same run: the same worker starting on an empty namespace. Prints JSON lines.

    python bench/bench_recovery.py --sessions 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

from streams.client import AgentStreamClient
from streams.config.settings import Settings
from streams.kafka.processes import WorkerProcess, environment_for
from streams.kafka.topic_reader import read_all
from streams.kafka.topics import ensure_topics

REBUILT = re.compile(
    r"sessions table rebuilt: keys=(\d+) digest=\w+ after ([\d.]+)s \(([\d.]+)s after assignment\)"
)


async def rebuilt(worker: WorkerProcess, timeout_s: float = 300) -> tuple[int, float, float]:
    """(keys, seconds since process start, seconds since partitions were assigned)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = REBUILT.search(worker.log())
        if m:
            return int(m.group(1)), float(m.group(2)), float(m.group(3))
        await asyncio.sleep(0.1)
    raise TimeoutError(worker.log()[-2000:])


def env_for(settings: Settings) -> dict[str, str]:
    return environment_for(settings, AGENTSTREAM_SIM_LATENCY_MS="5", AGENTSTREAM_TRACING="false")


async def main(sessions: int, per_session: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    settings = Settings(
        kafka_bootstrap_servers=bootstrap, namespace=f"-b{uuid.uuid4().hex[:8]}", data_dir=tmp
    )
    await ensure_topics(settings)

    empty = WorkerProcess.spawn(env_for(settings), tmp / "empty.log")
    _, baseline_s, baseline_assigned_s = await rebuilt(empty)
    await empty.wait_ready()

    async with AgentStreamClient.from_settings(settings) as client:
        ids = []
        for turn in range(per_session):
            for i in range(sessions):
                text = "Refund $5 for order 1234" if turn == 0 else "Where is my order 1234?"
                ids.append(
                    (await client.send(text, session_id=f"bs-{i}", user_id=f"u{i}")).request_id
                )
        for rid in ids:
            await client.response(rid, 600)
    await asyncio.sleep(2)
    empty.kill()
    records = len(await read_all(bootstrap, f"{settings.app_id}-sessions-changelog"))

    again = WorkerProcess.spawn(env_for(settings), tmp / "again.log")
    keys, rebuild_s, rebuild_assigned_s = await rebuilt(again)
    again.stop()
    print(
        json.dumps(
            {
                "bench": "recovery",
                "metric": "empty_start_s",
                "value": round(baseline_s, 3),
                "after_assignment_s": round(baseline_assigned_s, 3),
            }
        )
    )
    print(
        json.dumps(
            {
                "bench": "recovery",
                "metric": "rebuild_s",
                "value": round(rebuild_s, 3),
                "after_assignment_s": round(rebuild_assigned_s, 3),
                "keys": keys,
                "changelog_records": records,
                "ratio_vs_empty": round(rebuild_s / baseline_s, 2),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--per-session", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.sessions, args.per_session))
