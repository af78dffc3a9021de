"""The shared tool ledger: one completion per idempotency key across processes, with the key."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

from streams.stages.execution.tools import ToolLedger


def _race(path: str, n: int, out: Any) -> None:
    calls: list[str] = []

    async def refund(args: dict[str, Any], key: str) -> dict[str, Any]:
        calls.append(key)
        await asyncio.sleep(0.05)
        return {"refund": args["amount"], "key": key}

    async def main() -> None:
        ledger = ToolLedger(Path(path))
        for i in range(n):
            await ledger.run(f"k{i}", "issue_refund", {"amount": i}, refund, 5.0)

    asyncio.run(main())
    out.put(calls)


def test_two_processes_complete_each_key_once(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite")
    out: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_race, args=(path, 30, out)) for _ in range(2)]
    for p in procs:
        p.start()
    calls = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    # Every key was called by exactly one of the two processes (the other awaited its result).
    assert sorted(calls[0] + calls[1]) == sorted(f"k{i}" for i in range(30))
    done = ToolLedger(Path(path)).executions()
    assert sorted(e["key"] for e in done) == sorted(f"k{i}" for i in range(30))
    assert all(e["result"]["key"] == e["key"] for e in done), "the tool received the key"


async def test_a_cancelled_call_is_resumed_with_the_same_key_and_completes_once(tmp_path: Path) -> None:
    ledger = ToolLedger(tmp_path / "ledger.sqlite")
    seen: list[str] = []

    async def slow(args: dict[str, Any], key: str) -> dict[str, Any]:
        seen.append(key)
        await asyncio.sleep(10)
        return {"ok": True}

    async def fast(args: dict[str, Any], key: str) -> dict[str, Any]:
        seen.append(key)
        return {"ok": True, "key": key}

    task = asyncio.create_task(ledger.run("k1", "t", {}, slow, 30))
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    result, now = await ledger.run("k1", "t", {}, fast, 5)
    assert (result, now) == ({"ok": True, "key": "k1"}, True)
    assert seen == ["k1", "k1"]
    again, now = await ledger.run("k1", "t", {}, fast, 5)
    assert again == result and now is False
    assert [e["attempts"] for e in ledger.executions()] == [2]


async def test_a_claim_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ToolLedger(path).executions()  # creates nothing: no file yet
    ledger = ToolLedger(path)
    ledger._conn()
    db = sqlite3.connect(path)
    import socket

    db.execute(
        "INSERT INTO tool_calls VALUES ('k', 't', '{}', 'claimed', NULL, 1, 9999999999999, NULL, ?, '')",
        (f"{socket.gethostname()}:999999999",),
    )
    db.commit()

    async def tool(args: dict[str, Any], key: str) -> dict[str, Any]:
        return {"done": key}

    result, now = await asyncio.wait_for(ledger.run("k", "t", {}, tool, 5), 5)
    assert result == {"done": "k"} and now


async def test_a_live_claim_elsewhere_is_awaited_not_repeated(tmp_path: Path) -> None:
    first, second = ToolLedger(tmp_path / "l.sqlite"), ToolLedger(tmp_path / "l.sqlite")
    second._me = "otherhost:1"  # another machine: its claim stays until completed or stale
    calls = 0

    async def tool(args: dict[str, Any], key: str) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.5)
        return {"n": calls}

    a = asyncio.create_task(second.run("k", "t", {}, tool, 5))
    await asyncio.sleep(0.1)
    b = asyncio.create_task(first.run("k", "t", {}, tool, 5))
    (ra, na), (rb, nb) = await asyncio.gather(a, b)
    assert calls == 1 and ra == rb == {"n": 1} and (na, nb) == (True, False)


async def _echo(args: dict[str, Any], key: str) -> dict[str, Any]:
    return {"key": key}


async def test_a_free_ledger_commits_on_the_loop_without_a_thread(tmp_path: Path, monkeypatch: Any) -> None:
    ledger = ToolLedger(tmp_path / "l.sqlite")
    await ledger.open()  # on a thread, as the worker's warm-up does
    assert (tmp_path / "l.sqlite").exists()
    threads = 0
    real = asyncio.to_thread

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal threads
        threads += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr("streams.stages.execution.tools.asyncio.to_thread", counted)
    assert await ledger.run("k1", "t", {}, _echo, 5) == ({"key": "k1"}, True)
    assert await ledger.run("k1", "t", {}, _echo, 5) == ({"key": "k1"}, False)
    assert threads == 0


async def test_a_database_held_by_another_process_waits_on_a_thread_not_on_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = ToolLedger(path)
    await ledger.run("k0", "t", {}, _echo, 5)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another worker's transaction holds the write lock
    try:
        call = asyncio.create_task(ledger.run("k1", "t", {}, _echo, 5))
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(0.3)
        # The loop went on (the sleep came back on time) and the call waits for the lock.
        assert asyncio.get_running_loop().time() - started < 1.0
        assert not call.done()
    finally:
        other.execute("COMMIT")
        other.close()
    assert await asyncio.wait_for(call, 10) == ({"key": "k1"}, True)
    assert [e["key"] for e in ledger.executions()] == ["k0", "k1"]
