"""Jailbreak screening on the labelled corpus: block rate, false-positive rate, confusion matrix
(overall, per disguise and per script), and its cost against a baseline in the same run.

    python bench/bench_screening.py [--rounds 5]

Prints JSON lines. The baseline is the old single pass of six English regexes over the raw
text, measured on the same texts in the same run (quality and speed both).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.stages.routing.screening import RuleScreen
from tests.unit.corpora.jailbreak_corpus import ATTACKS, DISGUISED, HAND_ATTACKS, ORDINARY

BASELINE = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\b(ignore|disregard|forget)\b.{0,40}\b(previous|prior|above|all|your)\b.{0,20}"
        r"\b(instructions?|rules|prompts?|guidelines)\b",
        r"\bjailbreak\b",
        r"\bDAN mode\b|\bdo anything now\b",
        r"\b(reveal|print|show|repeat)\b.{0,30}\b(system prompt|hidden instructions)\b",
        r"\bdeveloper mode\b",
        r"\byou (have|has) no (rules|restrictions|limits)\b",
    )
]


def baseline_blocks(text: str) -> bool:
    return any(p.search(text) for p in BASELINE)


def confusion(blocks, attacks: list[str], ordinary: list[str]) -> dict[str, float | int]:
    tp = sum(blocks(a) for a in attacks)
    fp = sum(blocks(o) for o in ordinary)
    return {
        "attacks": len(attacks), "ordinary": len(ordinary),
        "true_positive": tp, "false_negative": len(attacks) - tp,
        "false_positive": fp, "true_negative": len(ordinary) - fp,
        "block_rate": round(tp / len(attacks), 4),
        "false_positive_rate": round(fp / len(ordinary), 4),
    }


def script(text: str) -> str:
    if any("\u4e00" <= c <= "\u9fff" for c in text):
        return "zh"
    if any("\u0400" <= c <= "\u04ff" for c in text):
        return "ru"
    return "latin"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    screen = RuleScreen()

    def ours(t: str) -> bool:
        return screen.assess(t).blocked

    print(json.dumps({"bench": "screening", "screen": "rules", **confusion(ours, ATTACKS, ORDINARY)}))
    print(json.dumps({"bench": "screening", "screen": "baseline", **confusion(baseline_blocks, ATTACKS, ORDINARY)}))
    per_disguise = collections.defaultdict(list)
    for name, text in DISGUISED:
        per_disguise[name].append(ours(text))
    for lang in ("latin", "ru", "zh"):
        per_disguise[f"hand:{lang}"] = [ours(a) for a in HAND_ATTACKS if script(a) == lang]
    print(json.dumps({
        "bench": "screening", "kind": "block_rate_by_group",
        **{k: round(sum(v) / len(v), 4) for k, v in sorted(per_disguise.items())},
    }))
    texts = ATTACKS + ORDINARY
    started = time.perf_counter()
    for _ in range(args.rounds):
        for t in texts:
            baseline_blocks(t)
    base = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.rounds):
        for t in texts:
            screen.assess(t)
    took = time.perf_counter() - started
    n = args.rounds * len(texts)
    print(json.dumps({
        "bench": "screening", "kind": "speed", "texts": n,
        "screened_per_s": round(n / took), "baseline_per_s": round(n / base),
        "ratio_to_baseline": round(base / took, 4),
    }))


if __name__ == "__main__":
    main()
