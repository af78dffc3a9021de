"""Where the pipeline's throughput limit lies: the same three relay hops as the baseline of
`bench_pipeline.py`, written as Faust agents, measured in the same run as the plain aiokafka hops.

    python bench/bench_faust_hops.py --requests 3000 --sessions 500

Three variants, each one process, same payloads (Avro decode + encode per hop), same partition
count, fed and read by the same load client as `bench_pipeline.py`:
- `aiokafka`: the plain relay (the baseline of every pipeline figure);
- `faust`: each hop a Faust agent (`stream.events()`, `topic.send`), at-least-once, memory tables;
- `faust_table`: the same, each hop also writing its record to a table (one changelog write per
  hop, as the pipeline's stages write session state);
- `faust_batched`: each hop a Faust agent that takes up to 500 events at a time
  (`stream.take_events`), the batching lever inside Faust.
The pipeline takes five Faust hops per request and writes its session state ~7 times, so what
these variants move bounds what the pipeline can move on this stack.
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

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_pipeline import drive, raw_hops
from streams.config.settings import Settings


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "faust_hops", **fields}), flush=True)


def faust_relay_main(bootstrap: str, prefix: str, table: bool, batched: bool, datadir: str) -> None:
    """Run in a child process: a Faust worker whose agent i relays `{prefix}.{i}` to i+1."""
    import faust

    from streams.events.codecs import get_codec
    from streams.events.records import Request

    codec = get_codec()
    app = faust.App(
        f"{prefix}-app", broker=f"kafka://{bootstrap}", store="memory://", datadir=datadir,
        key_serializer="raw", value_serializer="raw", topic_partitions=Settings().partitions,
        producer_linger_ms=5, web_enabled=False, processing_guarantee="at_least_once",
    )
    topics = [app.topic(f"{prefix}.{i}", key_serializer="raw", value_serializer="raw") for i in range(4)]
    states = [app.Table(f"state{i}") for i in range(3)]  # raw keys and values, as the app's

    def hop(i: int) -> None:
        async def relay(stream: faust.StreamT[bytes]) -> None:
            async for event in stream.events():
                req = codec.decode(event.value, Request)
                value = codec.encode(req)
                if table:
                    states[i][event.key] = value
                await topics[i + 1].send(key=event.key, value=value)

        async def relay_batches(stream: faust.StreamT[bytes]) -> None:
            async for events in stream.take_events(500, within=0.005):
                for event in events:
                    value = codec.encode(codec.decode(event.value, Request))
                    await topics[i + 1].send(key=event.key, value=value)

        app.agent(topics[i], name=f"hop{i}")(relay_batches if batched else relay)

    for i in range(3):
        hop(i)
    sys.argv = [sys.argv[0], "worker", "-l", "info", "--without-web"]
    app.main()


async def faust_hops(
    bootstrap: str, partitions: int, n: int, sessions: int, table: bool, batched: bool = False
) -> float:
    prefix = f"bench-fhops-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}.{i}", partitions, 1) for i in range(4)])
    finally:
        await admin.close()
    datadir = tempfile.mkdtemp(prefix="bench-fhops-")
    args = [sys.executable, __file__, "--faust-relay", prefix, "--datadir", datadir]
    with open(Path(datadir) / "worker.log", "wb") as log:
        child = subprocess.Popen(
            args + (["--table"] if table else []) + (["--batched"] if batched else []),
            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        await ready(child, Path(datadir) / "worker.log")
        # Warm up: every hop has joined its group and relayed its first records.
        await drive(bootstrap, f"{prefix}.0", f"{prefix}.3", "read_uncommitted", 50, 50)
        return await drive(bootstrap, f"{prefix}.0", f"{prefix}.3", "read_uncommitted", n, sessions)
    finally:
        child.terminate()
        child.wait(30)


async def ready(child: subprocess.Popen[bytes], log: Path, timeout_s: float = 120) -> None:
    for _ in range(int(timeout_s * 5)):
        if child.poll() is not None:
            raise RuntimeError(f"the Faust relay exited with {child.returncode}; see {log}")
        if "[^Worker]: Ready" in log.read_text(errors="replace"):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the Faust relay was not ready after {timeout_s:.0f} s; see {log}")


async def main(n: int, sessions: int) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    partitions = Settings().partitions
    meta = {"requests": n, "sessions": sessions, "partitions": partitions}
    raw = await raw_hops(bootstrap, partitions, n, sessions)
    emit(metric="three_hops_records_per_s", variant="aiokafka", value=round(raw, 1), **meta)
    plain = await faust_hops(bootstrap, partitions, n, sessions, table=False)
    emit(metric="three_hops_records_per_s", variant="faust", value=round(plain, 1),
         over_aiokafka=round(plain / raw, 3), **meta)
    tabled = await faust_hops(bootstrap, partitions, n, sessions, table=True)
    emit(metric="three_hops_records_per_s", variant="faust_table", value=round(tabled, 1),
         over_aiokafka=round(tabled / raw, 3), **meta)
    batched = await faust_hops(bootstrap, partitions, n, sessions, table=False, batched=True)
    emit(metric="three_hops_records_per_s", variant="faust_batched", value=round(batched, 1),
         over_aiokafka=round(batched / raw, 3), **meta)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--faust-relay", help=argparse.SUPPRESS)
    parser.add_argument("--datadir", help=argparse.SUPPRESS)
    parser.add_argument("--table", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batched", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.faust_relay:
        faust_relay_main(
            os.environ["KAFKA_BOOTSTRAP_SERVERS"], args.faust_relay, args.table, args.batched, args.datadir
        )
    else:
        asyncio.run(main(args.requests, args.sessions))
