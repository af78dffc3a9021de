"""Which arm serves a user, and with which config: a pure function of the control state."""

from __future__ import annotations

import hashlib

from streams.config.pipeline import PipelineConfig
from streams.events.records import Control

ROLLOUT = "rollout"  # the control record's name (and Kafka key) for the rollout


def stable_bucket(user_id: str) -> int:
    """0-99 from a keyed hash: the same user lands in the same arm in every process."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8, person=b"rollout").digest()
    return int.from_bytes(digest, "big") % 100


def rollout_arm(user_id: str, candidate_percent: int) -> str:
    return "candidate" if stable_bucket(user_id) < candidate_percent else "control"


def candidate_share(cfg: PipelineConfig, control: Control | None) -> int:
    """The percentage of users the candidate serves now: the control topic's latest word, else the
    config file's `router.rollout_candidate_percent`; 0 when there is no candidate to serve (none in
    the config, or the control record names a version this config does not have)."""
    if cfg.candidate is None:
        return 0
    if control is None:
        return max(0, min(100, cfg.router.rollout_candidate_percent))
    if control.candidate_version not in ("", cfg.candidate.version):
        return 0
    return control.candidate_share()


def pick_arm(user_id: str, cfg: PipelineConfig, control: Control | None) -> tuple[str, PipelineConfig]:
    """The user's arm and the config that arm is served with."""
    share = candidate_share(cfg, control)
    arm = rollout_arm(user_id, share) if share > 0 else "control"
    if arm == "candidate" and cfg.candidate is not None:
        return arm, cfg.candidate
    return "control", cfg
