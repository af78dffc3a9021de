"""How far behind the monitor's committed offset stays, against the responder's, after a run.

    python bench/bench_monitor_commit.py --requests 500

The monitor reads a topic the responder writes in transactions, so commit markers take offsets
there: the commit guard must commit over them (`streams/kafka/commit_guard.py`). One worker
answers the requests; then, every 0.5 s, the committed offset of both consumer groups is
compared with the offset just past the last *record* of their input (a trailing commit marker
is never committed over, and needs not be). Prints the seconds each took to catch up after the
last answer, and the ratio (the responder, a plain aiokafka consumer committing in its
transactions, is the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_scale import BOOTSTRAP, Namespace
from streams.kafka.topic_reader import read_all
from streams.kafka.topics import MONITOR, OUTBOX


async def record_ends(topic: str) -> dict[int, int]:
    """Per partition, the offset just past its last committed record."""
    ends: dict[int, int] = {}
    for r in await read_all(BOOTSTRAP, topic):
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    return ends


async def behind(admin: AIOKafkaAdminClient, group: str, topic: str, ends: dict[int, int]) -> int:
    """Records of `topic` past the group's committed offsets."""
    offsets = await admin.list_consumer_group_offsets(group)
    got = {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == topic}
    return sum(max(0, end - max(got.get(p, 0), 0)) for p, end in ends.items())


async def main(n: int, timeout_s: float) -> None:
    ns = Namespace(Path(tempfile.mkdtemp()), "moncommit")
    await ns.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        rate = await ns.throughput(n, max(1, n // 5))
        answered = time.monotonic()
        app_id = ns.settings.app_id
        targets = {
            "monitor": (app_id, ns.settings.topic(MONITOR)),
            "responder": (f"{app_id}-responder", ns.settings.topic(OUTBOX)),
        }
        ends = {name: await record_ends(topic) for name, (_, topic) in targets.items()}
        caught: dict[str, float] = {}
        while len(caught) < len(targets) and time.monotonic() - answered < timeout_s:
            for name, (group, topic) in targets.items():
                if name not in caught and await behind(admin, group, topic, ends[name]) == 0:
                    caught[name] = time.monotonic() - answered
            await asyncio.sleep(0.5)
        left = {name: await behind(admin, group, topic, ends[name]) for name, (group, topic) in targets.items()}
    finally:
        await admin.close()
        ns.stop()
    monitor_s = caught.get("monitor")
    responder_s = caught.get("responder")
    print(json.dumps({
        "bench": "monitor_commit", "requests": n, "req_per_s": round(rate, 1),
        "monitor_caught_up_s": None if monitor_s is None else round(monitor_s, 1),
        "responder_caught_up_s": None if responder_s is None else round(responder_s, 1),
        "monitor_offsets_behind_at_end": left["monitor"],
        "monitor_input_end": sum(ends["monitor"].values()),
        "timeout_s": timeout_s,
        "ratio": None if not (monitor_s and responder_s) else round(monitor_s / max(responder_s, 0.5), 2),
    }))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.timeout_s))
