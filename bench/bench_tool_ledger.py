"""The tool ledger's cost per tool call (a claim and a completion, each one SQLite transaction).

    python bench/bench_tool_ledger.py --calls 2000 --rounds 3

Runs `ToolLedger.run` for fresh keys with the ledger's own setting (WAL, synchronous=NORMAL)
and, as the baseline in the same run, the same ledger switched to synchronous=FULL (an fsync per
commit), alternating rounds; the database sits in a temporary directory on the disk that holds
`TMPDIR`. Prints one JSON line per round and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.stages.execution.tools import ToolLedger, lookup_order


async def per_call_ms(calls: int, synchronous: str | None) -> float:
    ledger = ToolLedger(Path(tempfile.mkdtemp(prefix="bench-ledger-")) / "ledger.sqlite")
    await ledger.open()
    if synchronous is not None:
        assert ledger._db is not None
        ledger._db.execute(f"PRAGMA synchronous={synchronous}")
    started = time.perf_counter()
    for i in range(calls):
        await ledger.run(f"k{i}", "lookup_order", {"order_id": "1234"}, lookup_order, 5.0)
    return (time.perf_counter() - started) / calls * 1000


async def main(args: argparse.Namespace) -> None:
    ours: list[float] = []
    full: list[float] = []
    for r in range(args.rounds):
        for name, setting, into in (("ledger", None, ours), ("synchronous_full", "FULL", full)):
            ms = await per_call_ms(args.calls, setting)
            into.append(ms)
            print(json.dumps({"bench": "tool_ledger", "round": r, "variant": name, "ms_per_call": round(ms, 3)}))
    print(json.dumps({
        "bench": "tool_ledger", "metric": "ms_per_call_median", "value": round(statistics.median(ours), 3),
        "baseline_synchronous_full": round(statistics.median(full), 3),
        "ratio": round(statistics.median(ours) / statistics.median(full), 3),
    }))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
