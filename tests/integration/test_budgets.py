"""Budgets on the real broker: reservations stop concurrent requests of one user from overshooting
a ceiling together, refusals name the ceiling and its reset, and the counters equal the usage the
answered requests recorded, also after a worker is SIGKILLed under load and restarted."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

from streams.config.pipeline import DEFAULT_CONFIG, load_config
from streams.events.codecs import get_codec
from streams.events.records import Request, Response, now_ms
from streams.kafka.topic_reader import read_all
from streams.stages.budgets.estimate import reservation
from streams.stages.budgets.ledger import Ceiling, window_key
from streams.stages.routing.logic import route
from tests.harness import Pipeline

TEXT = "Where is my order 1234?"


async def _budget(pipeline: Pipeline, tenant: str) -> dict:
    latest = None
    for m in await read_all(pipeline.bootstrap, f"{pipeline.settings.app_id}-budgets-changelog"):
        if json.loads(m.key) == tenant:
            latest = json.loads(m.value) if m.value else None
    return latest or {}


async def _configured(pipeline: Pipeline, max_tokens: int) -> None:
    config = pipeline.tmp / "config.toml"
    config.write_text(
        DEFAULT_CONFIG.read_text()
        + f'\n[[budgets.ceilings]]\nscope = "user"\nwindow = "day"\nmax_tokens = {max_tokens}\non_exceed = "error"\n'
        + '\n[[budgets.ceilings]]\nscope = "tenant"\nwindow = "month"\nmax_cost_usd = 100.0\non_exceed = "error"\n'
    )
    pipeline.env_extra["AGENTSTREAM_CONFIG_FILE"] = str(config)


def _estimate(user: str) -> int:
    cfg = load_config()
    routed = route(Request(request_id="r", session_id="s", user_id=user, text=TEXT, created_ms=0), cfg)
    return reservation(routed, cfg, b"").tokens


async def test_fifty_concurrent_requests_against_a_ceiling_of_ten(pipeline: Pipeline) -> None:
    user, tenant = f"u-{uuid.uuid4().hex[:6]}", f"acme-{uuid.uuid4().hex[:6]}"
    estimate = _estimate(user)
    await _configured(pipeline, max_tokens=estimate * 10 + estimate // 2)
    # Slow answers: all 50 are reserved before the first one settles.
    pipeline.env_extra["AGENTSTREAM_SIM_LATENCY_MS"] = "3000"
    worker = pipeline.start_worker()
    await pipeline.wait_ready(worker)
    async with pipeline.client() as client:
        reqs = [await client.send(TEXT, session_id=f"s-{user}-{i}", user_id=user, tenant_id=tenant) for i in range(50)]
        answers = await asyncio.gather(*(client.response(r.request_id, timeout_s=120) for r in reqs))
    ok = [a for a in answers if a.status == "ok"]
    refused = [a for a in answers if a.status == "error"]
    assert len(ok) == 10 and len(refused) == 40, [a.status for a in answers]
    assert all(a.cost_usd > 0 for a in ok) and all(a.cost_usd == 0 for a in refused), "responses carry their cost"
    assert all(a.reason.startswith("budget: user daily budget of") and "resets at" in a.reason for a in refused)
    key = window_key(Ceiling("user", "day", 1), tenant, user, now_ms())
    for _ in range(40):  # the settlements are acknowledged before each task is marked done
        window = (await _budget(pipeline, tenant)).get("windows", {}).get(key, {})
        if window.get("held_tokens", -1) == 0:
            break
        await asyncio.sleep(0.5)
    assert window["tokens"] == sum(a.input_tokens + a.output_tokens for a in ok) > 0
    assert window["held_tokens"] == 0
    status = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "streams.cli.main", "status", "--json"],
        env=pipeline.env(), capture_output=True, text=True, timeout=120,
    )
    assert status.returncode == 0, status.stderr
    top = json.loads(status.stdout)["budgets"]["top_windows"]
    assert {"tenant": tenant, "window": key, **window} in top


async def test_counters_stay_exact_across_a_sigkill_under_load(pipeline: Pipeline) -> None:
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    users = [f"u-{uuid.uuid4().hex[:6]}-{i}" for i in range(20)]
    await _configured(pipeline, max_tokens=10_000_000)
    pipeline.env_extra["AGENTSTREAM_SIM_LATENCY_MS"] = "400"
    worker = pipeline.start_worker()
    await pipeline.wait_ready(worker)
    async with pipeline.client() as client:
        reqs = []
        for i in range(200):
            u = users[i % len(users)]
            reqs.append(await client.send(f"{TEXT} ({i})", session_id=f"s-{u}-{i % 7}", user_id=u, tenant_id=tenant))
            if i == 100:
                worker.kill()
                worker = pipeline.start_worker()
        await pipeline.wait_ready(worker)
        answers: list[Response] = list(
            await asyncio.gather(*(client.response(r.request_id, timeout_s=180) for r in reqs))
        )
    assert all(a.status == "ok" for a in answers), {a.status for a in answers}
    # What every answered request recorded, per user: the budget counts exactly that.
    want = {u: sum(a.input_tokens + a.output_tokens for a in answers if a.user_id == u) for u in users}
    for _ in range(60):
        windows = (await _budget(pipeline, tenant)).get("windows", {})
        got = {u: windows.get(window_key(Ceiling("user", "day", 1), tenant, u, now_ms()), {}) for u in users}
        if all(g.get("held_tokens", -1) == 0 for g in got.values()):
            break
        await asyncio.sleep(0.5)
    assert {u: g.get("tokens") for u, g in got.items()} == want
    assert all(g["held_tokens"] == 0 for g in got.values())
    codec = get_codec()
    assert len({codec.decode(m.value, Response).request_id for m in await pipeline.read_topic("responses")}) == 200
