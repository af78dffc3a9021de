"""Real worker processes against the real broker, each test in its own namespace."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.client import AgentStreamClient
from streams.config.settings import Settings
from streams.events.codecs import get_codec
from streams.events.records import Executed, Response
from streams.kafka.processes import WorkerProcess, environment_for
from streams.kafka.topic_reader import read_all
from streams.kafka.topics import ensure_topics
from streams.stages.execution.tools import ToolLedger


@dataclass
class Pipeline:
    bootstrap: str
    tmp: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    namespace: str = field(default_factory=lambda: f"-t{uuid.uuid4().hex[:10]}")
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings(
            kafka_bootstrap_servers=self.bootstrap, namespace=self.namespace, data_dir=self.tmp
        )

    @property
    def ledger_path(self) -> Path:
        return self.tmp / "tools-ledger.sqlite"

    def env(self) -> dict[str, str]:
        defaults = {
            "AGENTSTREAM_TOOLS_LEDGER": str(self.ledger_path),
            "AGENTSTREAM_SESSION_TIMEOUT_S": "6",
            "AGENTSTREAM_SIM_LATENCY_MS": "50",
        }
        return environment_for(self.settings, **{**defaults, **self.env_extra})

    async def create_topics(self) -> None:
        await ensure_topics(self.settings)

    def start_worker(self, new_machine: bool = False) -> WorkerProcess:
        """`new_machine`: a data dir of its own, so no local state copy to start from."""
        env = self.env()
        if new_machine:
            env["AGENTSTREAM_DATA_DIR"] = str(self.tmp / f"machine-{len(self.workers)}")
        worker = WorkerProcess.spawn(env, self.tmp / f"worker-{len(self.workers)}.log")
        self.workers.append(worker)
        return worker

    async def wait_ready(self, worker: WorkerProcess, timeout_s: float = 90) -> float:
        try:
            return await worker.wait_ready(timeout_s)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}:\n{worker.log()[-4000:]}") from None

    def client(self) -> AgentStreamClient:
        return AgentStreamClient.from_settings(self.settings)

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()

    async def produce_raw(self, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            for key, value in items:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    async def read_topic(self, short_name: str) -> list[Any]:
        """Every record currently on a topic, from the beginning (all partitions)."""
        return await read_all(self.bootstrap, self.settings.topic(short_name))

    async def responses(self) -> list[Response]:
        return [get_codec().decode(m.value, Response) for m in await self.read_topic("responses")]

    async def wait_responses(self, request_ids: set[str], timeout_s: float) -> list[Response]:
        """All responses on the topic once every id in `request_ids` has one."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = await self.responses()
            if request_ids <= {r.request_id for r in got}:
                return got
            if time.monotonic() > deadline:
                missing = request_ids - {r.request_id for r in got}
                logs = "\n".join(w.log()[-3000:] for w in self.workers)
                raise AssertionError(f"{len(missing)} request(s) unanswered: {sorted(missing)[:5]}\n{logs}")
            await asyncio.sleep(0.5)

    async def executed_steps(self, request_id: str) -> list[dict[str, Any]]:
        """The steps of a request's last `Executed` record (a finished task's steps live there,
        the session keeps a line per finished task)."""
        executed = [
            e for e in (get_codec().decode(m.value, Executed) for m in await self.read_topic("executed"))
            if e.request_id == request_id
        ]
        assert executed, f"no Executed record for {request_id}"
        return [dataclasses.asdict(step) for step in executed[-1].steps]

    async def sessions_changelog(self) -> dict[str, Any]:
        """Latest value per key of the sessions changelog, decoded."""
        return {key: json.loads(raw) for key, raw in (await self.sessions_changelog_raw()).items()}

    async def sessions_changelog_raw(self) -> dict[str, bytes]:
        """Latest record per key of the sessions changelog: what a rebuilt table must hold."""
        latest: dict[str, bytes] = {}
        for m in await read_all(self.bootstrap, f"{self.settings.app_id}-sessions-changelog"):
            key = json.loads(m.key)
            if m.value is None:
                latest.pop(key, None)
            else:
                latest[key] = m.value
        return latest

    def ledger(self) -> list[dict[str, Any]]:
        """Tool calls completed in the shared ledger (what the "external system" executed)."""
        return ToolLedger(self.ledger_path).executions()


async def new_topic(bootstrap: str, prefix: str, partitions: int = 1) -> str:
    """A fresh topic with a unique name, for tests of one Kafka-facing piece without a pipeline."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    return topic
