"""The producer flush that Faust runs before committing offsets waits for the message its buffer
task has taken off the queue but not yet handed to aiokafka (the gap that lets a commit pass a
table write that was never sent)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.kafka.app import _make_flush_strict


class Buffer:
    """Faust's ProducerBuffer in miniature: a queue and a task that takes, awaits a send, sets."""

    def __init__(self, send_s: float) -> None:
        self.pending: asyncio.Queue[Any] = asyncio.Queue()
        self.message_sent = asyncio.Event()
        self.send_s = send_s
        self.handed: list[Any] = []

    @property
    def size(self) -> int:
        return self.pending.qsize()

    def put(self, fut: Any) -> None:
        self.pending.put_nowait(fut)

    async def flush(self) -> None:  # Faust's: gives up after 0.1 s without progress
        while self.size:
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
            except TimeoutError:
                return

    async def run(self) -> None:
        while True:
            msg = await self.pending.get()
            await asyncio.sleep(self.send_s)  # metadata lookup, a slow broker
            self.handed.append(msg)
            self.message_sent.set()


async def test_flush_waits_for_the_message_in_flight() -> None:
    buffer = Buffer(send_s=0.3)
    _make_flush_strict(SimpleNamespace(buffer=buffer))
    task = asyncio.create_task(buffer.run())
    try:
        buffer.put("changelog write")
        await asyncio.sleep(0.01)  # the task has taken it: the queue is empty, the send is not done
        assert buffer.size == 0 and buffer.handed == []
        await buffer.flush()
        assert buffer.handed == ["changelog write"], "flush returned before the write was handed over"
        for i in range(5):
            buffer.put(i)
        await buffer.flush()
        assert buffer.handed[1:] == [0, 1, 2, 3, 4], "everything, not just up to a 0.1 s stall"
    finally:
        task.cancel()
