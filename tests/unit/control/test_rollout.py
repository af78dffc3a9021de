"""Rollout arms: stable per user across processes, proportional, served with the candidate config."""

import subprocess
import sys

from streams.config.pipeline import load_config
from streams.control.rollout import ROLLOUT, candidate_share, pick_arm, stable_bucket
from streams.events.records import Control, Request, Routed
from streams.stages.routing.logic import route

CFG = load_config()


def control(percent: int, **kw) -> Control:
    return Control(name=ROLLOUT, percent=percent, updated_ms=1, **kw)


def test_the_config_file_names_a_candidate_with_its_own_version_and_overrides() -> None:
    cand = CFG.candidate
    assert cand is not None and cand.version != CFG.version
    assert cand.domains["customer_support"].system_prompt != CFG.domains["customer_support"].system_prompt
    assert cand.domains["billing"] == CFG.domains["billing"], "keys not overridden are the active ones"
    assert CFG.for_version(cand.version) is cand and CFG.for_version(CFG.version) is CFG


def test_the_share_follows_the_latest_control_record() -> None:
    assert candidate_share(CFG, None) == CFG.router.rollout_candidate_percent
    assert candidate_share(CFG, control(20)) == 20
    assert candidate_share(CFG, control(20, paused=True)) == 0
    assert candidate_share(CFG, control(20, promoted=True)) == 100
    assert candidate_share(CFG, control(20, candidate_version="some-other-version")) == 0


def test_candidate_users_are_routed_with_the_candidate_config() -> None:
    picks = {f"user-{i}": pick_arm(f"user-{i}", CFG, control(20)) for i in range(2000)}
    candidates = [u for u, (arm, _) in picks.items() if arm == "candidate"]
    assert 0.15 < len(candidates) / len(picks) < 0.25
    assert all(cfg is CFG.candidate for arm, cfg in picks.values() if arm == "candidate")
    assert all(cfg is CFG for arm, cfg in picks.values() if arm == "control")
    user = candidates[0]
    arm, cfg = pick_arm(user, CFG, control(20))
    req = Request(request_id="r", session_id="s", user_id=user, text="where is my order 1234?", created_ms=0)
    routed = route(req, cfg, arm=arm)
    assert isinstance(routed, Routed) and (routed.rollout_arm, routed.config_version) == ("candidate", CFG.candidate.version)
    assert pick_arm(user, CFG, control(20, paused=True))[0] == "control"


def test_a_user_gets_the_same_bucket_in_another_process() -> None:
    users = [f"user-{i}" for i in range(200)]
    code = "import sys; from streams.control.rollout import stable_bucket; print([stable_bucket(u) for u in sys.argv[1:]])"
    out = subprocess.run([sys.executable, "-c", code, *users], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""}, cwd=".")
    assert out.stdout.strip() == str([stable_bucket(u) for u in users])
