"""`python3 infra/kafka/launcher.py` works before the package is installed (CI runs it first):
it is a thin script over the importable `streams.kafka.launcher`."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_the_script_reports_status_of_a_data_dir_without_a_broker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["AGENTSTREAM_KAFKA_DIR"] = str(tmp_path / "kafka")
    done = subprocess.run(
        [sys.executable, "-S", str(REPO_ROOT / "infra" / "kafka" / "launcher.py"), "status"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1, done.stderr  # 1: no broker running for that data dir
    info = json.loads(done.stdout)
    assert info["running"] is False
