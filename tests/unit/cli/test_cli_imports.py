"""The CLI's read-only commands (query, report, trace, session, kafka) must not build the worker:
importing the console script loads no stage wiring, no LLM provider and no tracing SDK."""

import json
import subprocess
import sys

WORKER_ONLY = (
    "streams.stages.compose",
    "streams.config.services",
    "streams.llm",
    "streams.telemetry.span_pump",
    "opentelemetry.sdk",
)


def test_importing_the_cli_builds_none_of_the_worker() -> None:
    code = "import json, sys, streams.cli.main; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "streams.cli.main" in loaded
    worker = [m for m in loaded if m.startswith(WORKER_ONLY) or (m.startswith("streams.stages.") and m.endswith(".agent"))]
    assert worker == [], f"the CLI imported worker modules: {worker}"
