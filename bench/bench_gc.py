"""What the garbage collector costs the worker, with the heap settled after the warm-up
(`AGENTSTREAM_GC_FREEZE=true`, the default) and with Python's defaults, in the same run.

    python bench/bench_gc.py --requests 1500 --rounds 4

Two workers side by side, tracing on, simulator at 0 ms, driven in alternating rounds over 500
sessions. Each loads `bench/gc_probe/sitecustomize.py`, which times every collection; figures
are per request over the rounds, plus the longest single collection (the event loop stops for
it) and how many objects the collector still tracks at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_pipeline import drive
from streams.config.settings import Settings
from streams.kafka.processes import WorkerProcess, environment_for
from streams.kafka.topics import REQUESTS, RESPONSES, ensure_topics

PROBE = Path(__file__).resolve().parent / "gc_probe"


def emit(**fields: Any) -> None:
    print(json.dumps({"bench": "gc", **fields}), flush=True)


async def main(args: argparse.Namespace) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    tmp = Path(tempfile.mkdtemp(prefix="bench-gc-"))
    workers: dict[bool, tuple[WorkerProcess, Path, tuple[str, str, str, str]]] = {}
    try:
        for freeze in (True, False):
            settings = Settings(kafka_bootstrap_servers=bootstrap, namespace=f"-bg{uuid.uuid4().hex[:8]}",
                                data_dir=tmp / f"freeze-{freeze}")
            await ensure_topics(settings)
            probe = settings.data_dir / "gc.json"
            env = environment_for(settings, AGENTSTREAM_SIM_LATENCY_MS="0", AGENTSTREAM_GC_FREEZE=str(freeze).lower(),
                                  PYTHONPATH=str(PROBE), GC_PROBE_OUT=str(probe))
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            worker = WorkerProcess.spawn(env, settings.data_dir / "worker.log")
            workers[freeze] = (worker, probe, (bootstrap, settings.topic(REQUESTS), settings.topic(RESPONSES), "read_committed"))
        for worker, _, topics in workers.values():
            await worker.wait_ready()
            await drive(*topics, 50, 50)
        await asyncio.sleep(2.5)  # the warm-up's own collection is not a request's
        for _, probe, _ in workers.values():
            Path(f"{probe}.reset").write_text("")
        await asyncio.sleep(2.5)
        totals = {freeze: {"gc_s": 0.0, "collections": [0, 0, 0], "wall_s": 0.0} for freeze in workers}
        for r in range(args.rounds):
            for freeze in (True, False) if r % 2 == 0 else (False, True):
                _, probe, topics = workers[freeze]
                before = json.loads(probe.read_text())
                rate = await drive(*topics, args.requests, args.sessions)
                await asyncio.sleep(1.5)  # the probe writes once a second
                after = json.loads(probe.read_text())
                gc_s = sum(after["seconds"]) - sum(before["seconds"])
                got = totals[freeze]
                got["gc_s"] += gc_s
                got["wall_s"] += args.requests / rate
                got["collections"] = [a + (x - y) for a, x, y in zip(got["collections"], after["count"], before["count"], strict=True)]
                emit(metric="round", round=r, gc_freeze=freeze, req_per_s=round(rate, 1),
                     gc_ms_per_request=round(gc_s * 1000 / args.requests, 4))
        n = args.requests * args.rounds
        for freeze, got in totals.items():
            final = json.loads(workers[freeze][1].read_text())
            emit(metric="gc", gc_freeze=freeze, gc_ms_per_request=round(got["gc_s"] * 1000 / n, 4),
                 collections_by_generation=got["collections"], longest_collection_ms=round(final["longest_s"] * 1000, 1),
                 tracked_objects=final["tracked"], frozen_objects=final["frozen"], req_per_s=round(n / got["wall_s"], 1))
        on, off = totals[True]["gc_s"], totals[False]["gc_s"]
        emit(metric="gc_time_frozen_over_defaults", value=round(on / off, 3) if off else None)
    finally:
        for worker, _, _ in workers.values():
            with contextlib.suppress(Exception):
                worker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1500, help="per round and worker")
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    asyncio.run(main(parser.parse_args()))
