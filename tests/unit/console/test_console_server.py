"""The console's guard and actions through aiohttp's test client, with sources in memory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.config.pipeline import load_config
from streams.console.auth import Auth, host_name, origin_allowed
from streams.console.queries import Query
from streams.console.server import build_app, cookie_name
from streams.events.records import Escalation, HumanDecision
from streams.stages.reviewing.queue import PendingReview
from streams.telemetry.redaction import Redactor

TOKEN = "unit-test-token-0123456789"


@dataclass
class FakeSources:
    """Stands in for `Sources`: canned rows and topic state, records what is published."""

    config: Any = field(default_factory=lambda: load_config(None))
    published: list[HumanDecision] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)
    escalation: Escalation = field(default_factory=lambda: Escalation(
        request_id="req-1", session_id="sess-1", user_id="u", tenant_id="t", domain="billing",
        reasons=["refund of $250.00 above $100.00"], created_ms=1, escalated_ms=2,
        held_action=json.dumps({"tool": "issue_refund", "arguments": {"amount": 250, "order_id": "77"}})))

    def redact(self, text: str) -> str:
        return Redactor().redact(text)

    async def rows(self, query: Query) -> list[dict[str, Any]]:
        self.queries.append(query)
        return []

    async def trace(self, request_id: str) -> None:
        return None

    async def review_state(self) -> tuple[list[PendingReview], list[HumanDecision]]:
        decided = {d.request_id for d in self.published}
        pending = [] if self.escalation.request_id in decided else [PendingReview(self.escalation)]
        return pending, list(self.published)

    async def sessions(self, ids: set[str]) -> dict[str, Any]:
        return {"sess-1": {"conversation": [{"role": "user", "content": "refund me, I am ann@example.com"}]}}

    async def follow_ups(self, ids: set[str]) -> list[Any]:
        return []

    async def publish(self, decision: HumanDecision) -> None:
        self.published.append(decision)

    async def status(self) -> dict[str, Any]:
        return {"rollout": {"active_version": "v1"}, "pending_reviews": {"count": 1}}


@pytest.fixture
async def console() -> AsyncIterator[tuple[TestClient, FakeSources]]:
    sources = FakeSources()
    app = build_app(sources, Auth.create(TOKEN), reviewer="tester")  # type: ignore[arg-type]
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, sources


async def _login(client: TestClient) -> None:
    resp = await client.get(f"/requests?status=ok&token={TOKEN}", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/requests?status=ok"  # the token leaves the address bar
    cookie = resp.cookies[cookie_name(Auth(TOKEN))]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie.value != TOKEN


async def test_every_page_needs_the_token(console: tuple[TestClient, FakeSources]) -> None:
    client, _ = console
    for path in ("/", "/requests", "/trace/abc", "/review", "/replays", "/status"):
        resp = await client.get(path)
        assert resp.status == 401, path
        assert "Content-Security-Policy" in resp.headers
    assert (await client.get("/?token=not-the-token")).status == 401
    assert (await client.get("/static/console.css")).status == 200  # the stylesheet is public


async def test_login_then_pages_render_with_strict_headers(console: tuple[TestClient, FakeSources]) -> None:
    client, sources = console
    await _login(client)
    for path in ("/", "/requests", "/replays", "/status"):
        resp = await client.get(path)
        assert resp.status == 200, (path, await resp.text())
        assert "script-src" not in resp.headers["Content-Security-Policy"]  # default-src 'none'
        assert resp.headers["Cache-Control"] == "no-store" and resp.headers["X-Frame-Options"] == "DENY"
    assert any("decisions_1m" in q.sql for q in sources.queries)
    assert (await client.get("/trace/no-such-request")).status == 404
    assert (await client.get("/trace/bad%20id")).status == 400


async def test_foreign_host_is_refused(console: tuple[TestClient, FakeSources]) -> None:
    client, _ = console
    resp = await client.get(f"/?token={TOKEN}", headers={"Host": "evil.example:8484"})
    assert resp.status == 403


async def test_review_page_redacts_and_approve_publishes_once(console: tuple[TestClient, FakeSources]) -> None:
    client, sources = console
    await _login(client)
    page = await client.get("/review")
    html = await page.text()
    assert "ann@example.com" not in html and "[REDACTED:EMAIL]" in html
    assert "issue_refund" in html and "$250.00" in html
    csrf = Auth(TOKEN).csrf_token
    assert f'value="{csrf}"' in html

    # No CSRF token, a wrong one, or another site's Origin: refused, nothing published.
    assert (await client.post("/review/req-1", data={"action": "approve"})).status == 403
    assert (await client.post("/review/req-1", data={"action": "approve", "csrf": "x"})).status == 403
    cross = await client.post("/review/req-1", data={"action": "approve", "csrf": csrf},
                              headers={"Origin": "http://evil.example"})
    assert cross.status == 403 and sources.published == []
    assert (await client.put("/review/req-1")).status in (403, 405)

    bad = await client.post("/review/req-1", data={"action": "edit", "args": "[1]", "csrf": csrf})
    assert bad.status == 400 and "JSON object" in await bad.text() and sources.published == []

    ok = await client.post("/review/req-1", data={"action": "approve", "csrf": csrf}, allow_redirects=False)
    assert ok.status == 303 and ok.headers["Location"].startswith("/review?published=req-1")
    [decision] = sources.published
    assert (decision.decision, decision.request_id, decision.session_id, decision.reviewer) == (
        "approve", "req-1", "sess-1", "tester")

    again = await client.post("/review/req-1", data={"action": "reject", "csrf": csrf})
    assert again.status == 409 and "already decided: approve by tester" in await again.text()
    assert len(sources.published) == 1


async def test_edit_runs_with_the_given_arguments(console: tuple[TestClient, FakeSources]) -> None:
    client, sources = console
    await _login(client)
    resp = await client.post("/review/req-1", allow_redirects=False, data={
        "action": "edit", "args": '{"order_id": "77", "amount": 90}', "csrf": Auth(TOKEN).csrf_token})
    assert resp.status == 303
    assert json.loads(sources.published[0].edited_arguments) == {"amount": 90, "order_id": "77"}


def test_auth_helpers() -> None:
    auth = Auth.create(TOKEN)
    assert auth.token_ok(TOKEN) and not auth.token_ok(TOKEN + "x") and not auth.token_ok(None)
    assert auth.cookie_ok(auth.cookie_value) and not auth.cookie_ok(TOKEN)
    assert auth.csrf_ok(auth.csrf_token) and auth.csrf_token != auth.cookie_value
    assert Auth.create().token != Auth.create().token and len(Auth.create().token) >= 24
    with pytest.raises(ValueError):
        Auth.create("short")
    assert host_name("127.0.0.1:8484") == "127.0.0.1" and host_name("[::1]:80") == "[::1]"
    assert origin_allowed(None, "127.0.0.1:8484") and origin_allowed("http://127.0.0.1:8484", "127.0.0.1:8484")
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8484")
    assert not origin_allowed("null", "127.0.0.1:8484")
