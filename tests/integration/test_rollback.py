"""Automatic rollback on the real broker: a candidate whose model fails 30% of its calls, rolled out
to 50%, is taken back to 0% by the monitor within one (test-sized) window; later requests are
served by the known-good config."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid

from streams.config.pipeline import DEFAULT_CONFIG, load_config
from streams.events.codecs import get_codec
from streams.events.records import Control
from tests.harness import Pipeline

FLAKY = """
[candidate.models.small]
name = "sim-small-v2"

[candidate.models.large]
name = "sim-large-v2"
"""


async def test_a_failing_candidate_is_rolled_back_within_a_window(pipeline: Pipeline) -> None:
    config = pipeline.tmp / "config.toml"
    text = DEFAULT_CONFIG.read_text().replace("window_s = 300", "window_s = 30")
    config.write_text(text + FLAKY)
    cfg = load_config(config)
    assert cfg.monitor.window_s == 30 and cfg.candidate is not None
    pipeline.env_extra.update(
        AGENTSTREAM_CONFIG_FILE=str(config), AGENTSTREAM_SIM_MODEL_FAILURES="sim-small-v2=0.3,sim-large-v2=0.3"
    )
    worker = pipeline.start_worker()
    await pipeline.wait_ready(worker)
    set_50 = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "streams.cli.main", "rollout", "set", "50", "--json"],
        env=pipeline.env(), capture_output=True, text=True, timeout=120,
    )
    assert set_50.returncode == 0, set_50.stderr
    started = time.monotonic()
    run = uuid.uuid4().hex[:6]

    async def rolled_back() -> Control | None:
        for m in await pipeline.read_topic("control"):
            control = get_codec().decode(m.value, Control)
            if control.actor == "monitor":
                return control
        return None

    answered = []
    async with pipeline.client() as client:
        back = None
        for batch in range(30):  # 20 requests a second, at most as long as a window
            reqs = [await client.send("Where is my order 1234?", session_id=f"s-{run}-{batch}-{i}",
                                      user_id=f"u-{run}-{batch}-{i}") for i in range(20)]
            answered += [await client.response(r.request_id, timeout_s=60) for r in reqs]
            back = await rolled_back()
            if back:
                break
            await asyncio.sleep(0.5)
        reaction_s = time.monotonic() - started
        assert back is not None, worker.log()[-3000:]
        assert back.percent == 0 and back.candidate_version == cfg.candidate.version
        assert back.reason.startswith("automatic rollback: error rate"), back.reason
        candidate = [r for r in answered if r.rollout_arm == "candidate"]
        failed = [r for r in candidate if r.status in ("degraded", "error", "fallback")]
        print(json.dumps({"rollback_reaction_s": round(reaction_s, 1), "answers_before": len(answered),
                          "candidate_answers": len(candidate), "candidate_failed": len(failed),
                          "reason": back.reason}))
        assert reaction_s < cfg.monitor.window_s
        await asyncio.sleep(1.5)  # the worker's control watcher reads the rollback
        later = [await client.send("Where is my order 1234?", session_id=f"after-{run}-{i}", user_id=f"v-{run}-{i}")
                 for i in range(40)]
        after = [await client.response(r.request_id, timeout_s=60) for r in later]
    assert {(r.rollout_arm, r.config_version, r.status) for r in after} == {("control", cfg.version, "ok")}
    assert "rolled back candidate" in worker.log()
    spans = await pipeline.read_topic("traces")
    assert any(b"automatic rollback" in (m.value or b"") for m in spans), "the rollback is on a span"

    status = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "streams.cli.main", "status", "--json"],
        env=pipeline.env(), capture_output=True, text=True, timeout=120,
    )
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["last_rollback"]["reason"] == back.reason
    assert report["rollout"]["candidate_percent"] == 0 and report["rollout"]["set_by"] == "monitor"
    assert report["monitor"].get(f"{cfg.version}|control", {}).get("answers", 0) >= 40, report
    assert len(report["workers"]["members"]) >= 1 and "lag" in report["workers"]
    live = report["live_workers"]
    assert len(live) == 1 and sorted(live[0]["partitions"]) == list(range(pipeline.settings.partitions))
    assert any(name.endswith("sim-small-v2") or name.endswith("sim-large-v2") for name in live[0]["breakers"])
