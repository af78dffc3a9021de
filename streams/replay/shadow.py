"""Replay a range of requests through the pipeline in an isolated namespace, and compare.

With recorded LLM answers (from the `steps` of the executed events) the replay must reproduce every
decision; with a candidate config (or model) it is a shadow run: its answers go to the replay
namespace's topics, never to users, and the report compares them with what was served.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.config.pipeline import PipelineConfig, load_config
from streams.config.settings import Settings
from streams.events.codecs import DecodeError, get_codec
from streams.events.records import Executed, Request, Response
from streams.kafka import topics
from streams.kafka.processes import WorkerProcess, environment_for
from streams.kafka.topic_reader import read_all, read_range
from streams.kafka.topics import ensure_topics
from streams.llm.recorded import recordings_from_steps

COMPARED = ("domain", "model", "verdict", "status", "reason")


@dataclass(frozen=True)
class Decision:
    domain: str
    model: str
    verdict: str  # the domain agent's status before the verifier ("" when the router answered)
    status: str
    reason: str
    input_tokens: int
    output_tokens: int
    llm_latency_ms: float

    @classmethod
    def of(cls, resp: Response, ex: Executed | None) -> Decision:
        return cls(
            domain=resp.domain,
            model=resp.model,
            verdict=ex.status if ex else "",
            status=resp.status,
            reason=resp.reason,
            input_tokens=resp.input_tokens,
            output_tokens=resp.output_tokens,
            llm_latency_ms=sum(s.latency_ms for s in ex.steps if s.kind == "llm_call") if ex else 0.0,
        )


@dataclass
class Comparison:
    request_id: str
    original: Decision
    replayed: Decision | None

    @property
    def differences(self) -> list[str]:
        if self.replayed is None:
            return ["no response"]
        return [f for f in COMPARED if getattr(self.original, f) != getattr(self.replayed, f)]


@dataclass
class ReplayReport:
    namespace: str
    comparisons: list[Comparison] = field(default_factory=list)
    skipped: int = 0  # requests in range that never got an original response

    @property
    def identical(self) -> int:
        return sum(1 for c in self.comparisons if not c.differences)

    def summary(self, cfg_original: PipelineConfig, cfg_replay: PipelineConfig) -> dict[str, Any]:
        done = [(c.original, c.replayed) for c in self.comparisons if c.replayed is not None]

        def cost(cfg: PipelineConfig, d: Decision) -> float:
            return cfg.cost_usd(d.model, d.input_tokens, d.output_tokens)

        def p95(values: list[float]) -> float:
            return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else (values[0] if values else 0.0)

        return {
            "requests": len(self.comparisons),
            "identical": self.identical,
            "agreement": self.identical / len(self.comparisons) if self.comparisons else 1.0,
            "status_agreement": (
                sum(1 for o, r in done if o.status == r.status) / len(done) if done else 1.0
            ),
            "cost_original_usd": round(sum(cost(cfg_original, o) for o, _ in done), 6),
            "cost_replay_usd": round(sum(cost(cfg_replay, r) for _, r in done), 6),
            "llm_latency_p95_original_ms": round(p95([o.llm_latency_ms for o, _ in done]), 1),
            "llm_latency_p95_replay_ms": round(p95([r.llm_latency_ms for _, r in done]), 1),
            "escalations_original": sum(1 for o, _ in done if o.status == "escalated"),
            "escalations_replay": sum(1 for _, r in done if r.status == "escalated"),
            "skipped_unanswered": self.skipped,
        }


async def _by_request(settings: Settings, name: str, cls: type) -> dict[str, Any]:
    codec, out = get_codec(), dict[str, Any]()
    for m in await read_all(settings.kafka_bootstrap_servers, settings.topic(name)):
        try:
            rec: Any = codec.decode(m.value, cls)
        except DecodeError:
            continue
        out.setdefault(rec.request_id, rec)  # the first answer is the one that was served
    return out


async def replay(
    source: Settings,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    start_offset: int | None = None,
    end_offset: int | None = None,
    candidate_config: Path | None = None,
    workdir: Path,
    timeout_s: float = 300.0,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> ReplayReport:
    codec = get_codec()
    records = await read_range(
        source.kafka_bootstrap_servers,
        source.topic(topics.REQUESTS),
        start_ms=start_ms,
        end_ms=end_ms,
        start_offset=start_offset,
        end_offset=end_offset,
    )
    originals: dict[str, Response] = await _by_request(source, topics.RESPONSES, Response)
    executed: dict[str, Executed] = await _by_request(source, topics.EXECUTED, Executed)
    wanted: list[str] = []
    for m in records:
        try:
            rid = codec.decode(m.value, Request).request_id
        except DecodeError:
            continue  # dead-lettered originally; nothing to compare
        if rid not in wanted:
            wanted.append(rid)
    report = ReplayReport(namespace=f"{source.namespace}-replay-{uuid.uuid4().hex[:8]}")
    report.skipped = sum(1 for rid in wanted if rid not in originals)
    wanted = [rid for rid in wanted if rid in originals]

    workdir.mkdir(parents=True, exist_ok=True)
    target = Settings(
        kafka_bootstrap_servers=source.kafka_bootstrap_servers,
        namespace=report.namespace,
        partitions=source.partitions,
        data_dir=workdir,
    )
    await ensure_topics(target)
    env = environment_for(target, AGENTSTREAM_TOOLS_LEDGER=str(workdir / "tools-ledger.sqlite"))
    if candidate_config:
        env["AGENTSTREAM_CONFIG_FILE"] = str(candidate_config)
        env["AGENTSTREAM_LLM_PROVIDER"] = os.environ.get("AGENTSTREAM_LLM_PROVIDER", source.llm_provider)
    else:
        if source.config_file:
            env["AGENTSTREAM_CONFIG_FILE"] = str(source.config_file)
        recordings: dict[str, dict[str, Any]] = {}
        for rid in wanted:
            if rid in executed:
                recordings.update(recordings_from_steps(rid, executed[rid].steps))
        rec_path = workdir / "recordings.json"
        rec_path.write_text(json.dumps(recordings))
        env["AGENTSTREAM_LLM_PROVIDER"] = "recorded"
        env["AGENTSTREAM_RECORDINGS"] = str(rec_path)

    worker = WorkerProcess.spawn(env, workdir / "replay-worker.log")
    try:
        await worker.wait_ready()
        producer = AIOKafkaProducer(bootstrap_servers=source.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            for m in records:  # original bytes and keys, in original partition order
                await producer.send(target.topic(topics.REQUESTS), m.value, key=m.key)
            await producer.flush()
        finally:
            await producer.stop()
        replayed = await _wait_for(target, set(wanted), timeout_s, on_progress, worker)
        replay_executed = await _by_request(target, topics.EXECUTED, Executed)
    finally:
        worker.stop()
    for rid in wanted:
        resp = replayed.get(rid)
        report.comparisons.append(
            Comparison(
                rid,
                Decision.of(originals[rid], executed.get(rid)),
                Decision.of(resp, replay_executed.get(rid)) if resp else None,
            )
        )
    return report


async def _wait_for(
    target: Settings,
    wanted: set[str],
    timeout_s: float,
    on_progress: Callable[[int, int], None],
    worker: WorkerProcess,
) -> dict[str, Response]:
    deadline = time.monotonic() + timeout_s
    got: dict[str, Response] = {}
    while time.monotonic() < deadline:
        got = await _by_request(target, topics.RESPONSES, Response)
        on_progress(len(wanted & set(got)), len(wanted))
        if wanted <= set(got) or not worker.alive:
            break
        await asyncio.sleep(0.5)
    return got


def original_config(source: Settings) -> PipelineConfig:
    return load_config(source.config_file)
