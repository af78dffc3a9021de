"""Gradual rollout on the real broker: `agentstream rollout` changes reach running workers within
seconds, users are split by a stable hash, and the candidate arm is served with the candidate."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid

from streams.config.pipeline import DEFAULT_CONFIG, load_config
from streams.control.rollout import stable_bucket
from streams.events.records import Response
from tests.harness import Pipeline

CFG = load_config()


async def _rollout(pipeline: Pipeline, *args: str) -> dict:
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "streams.cli.main", "rollout", *args, "--json"],
        env=pipeline.env(), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def _ask_all(pipeline: Pipeline, users: list[str], tag: str) -> dict[str, Response]:
    async with pipeline.client() as client:
        sent = [(u, await client.send("Where is my order 1234?", session_id=f"{tag}-{u}", user_id=u)) for u in users]
        return {u: await client.response(req.request_id, timeout_s=120) for u, req in sent}


async def test_rollout_is_applied_live_split_by_user_and_served_with_the_candidate(pipeline: Pipeline) -> None:
    assert CFG.candidate is not None
    # The 2,000-user burst below queues for seconds on a slow machine: the monitor's latency
    # rollback (its own test is test_rollback.py) must not end the rollout under this test.
    config = pipeline.tmp / "config.toml"
    config.write_text(DEFAULT_CONFIG.read_text().replace("max_avg_latency_ms = 10000", "max_avg_latency_ms = 3600000"))
    pipeline.env_extra["AGENTSTREAM_CONFIG_FILE"] = str(config)
    workers = [pipeline.start_worker(), pipeline.start_worker()]
    for w in workers:
        await pipeline.wait_ready(w)
    run = uuid.uuid4().hex[:6]
    users = [f"user-{run}-{i}" for i in range(2000)]
    canaries = [u for u in users if stable_bucket(u) < 20][:5]

    before = await _ask_all(pipeline, canaries, "before")
    assert {(r.rollout_arm, r.config_version) for r in before.values()} == {("control", CFG.version)}

    state = await _rollout(pipeline, "set", "20", "--reason", "canary")
    assert state["candidate_percent"] == 20 and state["candidate_version"] == CFG.candidate.version
    # Applied without a restart, within seconds: canary users move to the candidate arm.
    started = time.monotonic()
    for attempt in range(30):
        after = await _ask_all(pipeline, canaries, f"after{attempt}")
        if {r.rollout_arm for r in after.values()} == {"candidate"}:
            break
        await asyncio.sleep(0.5)
    applied_s = time.monotonic() - started
    print(json.dumps({"rollout_applied_within_s": round(applied_s, 2), "attempts": attempt + 1}))
    assert {r.rollout_arm for r in after.values()} == {"candidate"} and applied_s < 15

    answers = await _ask_all(pipeline, users, "split")
    candidates = [r for r in answers.values() if r.rollout_arm == "candidate"]
    share = len(candidates) / len(answers)
    assert 0.15 <= share <= 0.25, share
    assert {r.config_version for r in candidates} == {CFG.candidate.version}
    assert {r.config_version for r in answers.values() if r.rollout_arm == "control"} == {CFG.version}
    assert all(r.status == "ok" for r in answers.values())
    # The same user in another session (likely another partition, so the other worker) keeps its arm.
    again = await _ask_all(pipeline, users[:300], "again")
    assert all(again[u].rollout_arm == answers[u].rollout_arm for u in users[:300])
    for w in workers:  # both processes applied the change (each routes its own partitions)
        assert f"candidate {CFG.candidate.version} at 20%" in w.log(), w.log()[-3000:]

    await _rollout(pipeline, "pause", "--reason", "looks off")
    paused = await _ask_all(pipeline, canaries, "paused")
    assert {r.rollout_arm for r in paused.values()} == {"control"}
    state = await _rollout(pipeline, "promote")
    assert state["candidate_percent"] == 100 and state["promoted"]
    promoted = await _ask_all(pipeline, users[:50], "promoted")
    assert {(r.rollout_arm, r.config_version) for r in promoted.values()} == {("candidate", CFG.candidate.version)}
