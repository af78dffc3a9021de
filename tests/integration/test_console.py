"""The console in a real browser against the real pipeline: worker, ClickHouse sink (chDB) and
`agentstream console` as processes, headless Chromium from Debian's packages driven by Selenium.

The browser is /usr/bin/chromium with /usr/bin/chromedriver (`apt-get install chromium
chromium-driver`; `.ci/run` installs them): a missing browser fails the test, and nothing is
ever downloaded. Screenshots of every page go to the test's tmp dir; the overview and the trace
are copied to docs/ for the README when AGENTSTREAM_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sinks.analytics import run_query
from streams.config.pipeline import load_config
from streams.config.settings import REPO_ROOT
from streams.kafka.processes import WorkerProcess
from streams.replay.report import publish_report, report_span
from tests.harness import Pipeline

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REFUND_250 = "I was charged twice, refund 250 dollars on order #77"
EMAIL = "jane.doe@example.com"
TOKEN = "console-test-token-" + uuid.uuid4().hex


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    assert os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK), (
        "install Debian's browser: apt-get install -y chromium chromium-driver"
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1700"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _console_url(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"console ready: (http://127\.0\.0\.1:\d+)/\?token=", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        assert proc.poll() is None, f"console exited:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"console not ready:\n{log.read_text()[-3000:]}")


async def _wait_rows(sql: str, url: str, want: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    got = -1
    while time.monotonic() < deadline:
        try:
            _, rows = await asyncio.to_thread(run_query, sql, clickhouse_url=url)
            got = int(rows[0][0])
            if got >= want:
                return
        except Exception:
            pass  # the sink is still migrating
        await asyncio.sleep(1.0)
    raise AssertionError(f"{sql}: {got} rows, wanted {want}")


def _until(driver: Any, what: str, check: Any, timeout_s: float = 60, reload: bool = True) -> Any:
    """Poll the page (reloading it) until `check(driver)` is truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check(driver)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} on {driver.current_url}")
        time.sleep(1.0)
        if reload:
            driver.refresh()


def _status(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_console_pages_in_a_browser(bootstrap: str, tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    ch_url = f"chdb://{tmp_path / 'clickhouse'}"
    pipeline = Pipeline(bootstrap, tmp_path, env_extra={"CLICKHOUSE_URL": ch_url})
    await pipeline.create_topics()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    worker = pipeline.start_worker()
    sink = WorkerProcess.spawn_sink(pipeline.env(), tmp_path / "sink.log")
    console_log = tmp_path / "console.log"
    with open(console_log, "wb") as fh:
        console = subprocess.Popen(
            [sys.executable, "-m", "streams.cli.main", "console", "--port", "0", "--reviewer", "selenium"],
            env={**pipeline.env(), "AGENTSTREAM_CONSOLE_TOKEN": TOKEN},
            cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT,
        )
    try:
        await pipeline.wait_ready(worker)
        await sink.wait_ready(120)
        base = _console_url(console, console_log)

        # Traffic: a few ordinary requests, and a session that gives an email, then asks for a
        # $250 refund (held for review).
        run = uuid.uuid4().hex[:6]
        refund_session, user = f"console-refund-{run}", f"console-user-{run}"
        async with pipeline.client() as client:
            sent = [await client.send(text, session_id=f"console-{i}-{run}", user_id=f"u{i}-{run}")
                    for i, text in enumerate(["Where is my order 1234?", "The dashboard is down, is there an outage?",
                                              "I can't log in, please reset my password"])]
            first = await client.send(f"Where is my order 1234? Write to me at {EMAIL}",
                                      session_id=refund_session, user_id=user)
            await client.response(first.request_id, 60)
            refund = await client.send(REFUND_250, session_id=refund_session, user_id=user)
            answers = {r.request_id: await client.response(r.request_id, 60) for r in [*sent, first, refund]}
        assert answers[refund.request_id].status == "escalated", answers[refund.request_id]
        ok_request = next(r for r in sent if answers[r.request_id].status == "ok")
        await _wait_rows("SELECT count() FROM agentstream.decisions FINAL", ch_url, len(answers))
        await _wait_rows("SELECT count() FROM agentstream.llm_calls FINAL", ch_url, 4)

        # Not logged in: every page and action is refused.
        assert _status(f"{base}/") == 401 and _status(f"{base}/requests") == 401
        assert _status(f"{base}/?token=wrong-token-000000") == 401
        assert _status(f"{base}/review/{refund.request_id}", data=b"action=approve") == 401

        # Overview: plots render with data.
        browser.get(f"{base}/?token={TOKEN}")
        assert "token=" not in browser.current_url, "the login redirect drops the token"
        charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert len(charts) == 8
        by_title = {c.get_attribute("aria-label"): int(c.get_attribute("data-points")) for c in charts}
        assert by_title["requests per minute by status"] >= 1, by_title
        assert by_title["latency"] >= 4 and by_title["cost per interaction"] >= 1, by_title
        assert browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar")
        assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart g.threshold")) == 4
        requests_card = browser.find_element(By.CSS_SELECTOR, "#totals .card b").text
        assert int(requests_card) >= len(answers), requests_card
        browser.save_screenshot(str(shots / "overview.png"))

        # Requests: find ours with a filter, open its trace.
        browser.get(f"{base}/requests?user={ok_request.user_id}")
        links = browser.find_elements(By.CSS_SELECTOR, "a.request-link")
        assert [a.text for a in links] == [ok_request.request_id[:12]]
        browser.get(f"{base}/requests?q={refund.request_id}")
        assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "a.request-link")] == [refund.request_id[:12]]
        browser.get(f"{base}/requests")
        assert len(browser.find_elements(By.CSS_SELECTOR, "a.request-link")) == len(answers)
        browser.save_screenshot(str(shots / "requests.png"))
        browser.get(f"{base}/requests?user={ok_request.user_id}")
        browser.find_element(By.CSS_SELECTOR, "a.request-link").click()

        # Trace: a waterfall of spans with durations, and the LLM calls' details.
        assert browser.current_url.endswith(f"/trace/{ok_request.request_id}")
        rows = browser.find_elements(By.CSS_SELECTOR, "svg.waterfall g.span-row")
        assert len(rows) >= 4, len(rows)
        durations = [float(r.get_attribute("data-duration-ms")) for r in rows]
        assert all(d >= 0 for d in durations) and max(durations) > 0, durations
        names = browser.find_element(By.CSS_SELECTOR, "svg.waterfall").get_attribute("textContent")
        assert "process agentstream" in names and "chat sim-" in names, names[:400]
        calls = browser.find_elements(By.CSS_SELECTOR, "section.llm")
        assert calls and "in /" in calls[0].text and "finish" in calls[0].text
        browser.save_screenshot(str(shots / "trace.png"))
        # The refund session's trace: the other request of the session is one click away, and
        # the email never appears unredacted.
        browser.get(f"{base}/trace/{refund.request_id}")
        session_links = browser.find_elements(By.CSS_SELECTOR, "#session-requests a")
        assert [a.get_attribute("href").rsplit("/", 1)[1] for a in session_links] == [first.request_id]
        browser.get(f"{base}/trace/{first.request_id}")
        assert EMAIL not in browser.page_source and "[REDACTED:EMAIL]" in browser.page_source

        # Review: the held refund is listed with its reason and call; approve it in the page.
        browser.get(f"{base}/review")
        card = _until(browser, "the held refund",
                      lambda d: d.find_elements(By.ID, f"pending-{refund.request_id}"))[0]
        assert "$250.00" in card.text and "issue_refund" in card.text, card.text
        assert "[REDACTED:EMAIL]" in card.text and EMAIL not in browser.page_source
        browser.save_screenshot(str(shots / "review.png"))
        # A POST without the CSRF token is refused, even with the session cookie.
        cookie = "; ".join(f"{c['name']}={c['value']}" for c in browser.get_cookies())
        assert _status(f"{base}/review/{refund.request_id}", data=b"action=reject",
                       headers={"Cookie": cookie}) == 403
        card.find_element(By.CSS_SELECTOR, "button.approve").click()
        # The click returns before the POST's redirect has loaded: wait for it (no reload: that
        # would re-read the pre-click page).
        deadline = time.monotonic() + 30
        while "published=" not in browser.current_url and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "published=" in browser.current_url, (browser.current_url, browser.page_source[-1500:])
        outcome = _until(
            browser, "the follow-up answer",
            lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, f"#decided tr[data-request-id='{refund.request_id}'] .outcome .pill")
                       if e.text],
            timeout_s=90,
        )
        assert outcome[0].text == "ok"
        assert not browser.find_elements(By.ID, f"pending-{refund.request_id}")
        browser.save_screenshot(str(shots / "review-decided.png"))
        refunds = [e["arguments"]["amount"] for e in pipeline.ledger() if e["tool"] == "issue_refund"]
        assert refunds == [250.0], "the approved refund ran once"
        follow = [r for r in await pipeline.responses() if r.request_id == refund.request_id and r.follow_up == 1]
        assert [(r.status, r.session_id) for r in follow] == [("ok", refund_session)]

        # Replay reports: a report published as `agentstream replay` does is listed.
        summary = {"mode": "shadow", "namespace": "-replay-test", "requests": 5, "identical": 4,
                   "agreement": 0.8, "status_agreement": 1.0, "cost_original_usd": 0.01,
                   "cost_replay_usd": 0.02, "original_version": "v1", "replay_version": "v2"}
        differ = [{"request_id": ok_request.request_id, "differences": ["model"],
                   "original": {"domain": "billing", "model": "sim-small", "status": "ok"},
                   "replayed": {"domain": "billing", "model": "sim-large", "status": "ok"}}]
        report_id = uuid.uuid4().hex
        await publish_report(pipeline.settings, report_span(summary, differ, report_id=report_id))
        await _wait_rows("SELECT count() FROM agentstream.replay_reports FINAL", ch_url, 1)
        browser.get(f"{base}/replays")
        link = browser.find_element(By.CSS_SELECTOR, f"a[href='/replays/{report_id}']")
        assert "80.0%" in browser.find_element(By.ID, "replays").text
        link.click()
        assert ok_request.request_id[:12] in browser.find_element(By.ID, "differing").text
        browser.save_screenshot(str(shots / "replays.png"))

        # Status: the facts of `agentstream status`.
        browser.get(f"{base}/status")
        for section in ("rollout", "pending_reviews", "workers", "responder"):
            assert browser.find_elements(By.ID, f"status-{section}"), section
        assert load_config(None).version in browser.find_element(By.ID, "status-rollout").text
        browser.save_screenshot(str(shots / "status.png"))
    finally:
        console.terminate()
        try:
            console.wait(15)
        except subprocess.TimeoutExpired:
            console.kill()
        sink.stop()
        pipeline.stop_all()
    assert {p.name for p in shots.iterdir()} >= {"overview.png", "trace.png", "review.png", "requests.png"}
    if os.environ.get("AGENTSTREAM_UPDATE_SCREENSHOTS") == "1":  # refresh the README's images
        docs = REPO_ROOT / "docs"
        docs.mkdir(exist_ok=True)
        shutil.copyfile(shots / "overview.png", docs / "console-overview.png")
        shutil.copyfile(shots / "trace.png", docs / "console-trace.png")
