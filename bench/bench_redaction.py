"""Redaction quality on the labelled corpus, and its cost against a baseline in the same run.

    python bench/bench_redaction.py [--rounds 20]

Prints JSON lines: `quality` (recall over PII values, false-positive rate over ordinary texts,
per-label recall), `speed` (corpus texts redacted per second, against `json.dumps` of the
same texts as the baseline every prompt pays anyway; the ratio is what redaction adds) and
`tool_prompts` (prompts of a tool-using call with a new tool-call id each, redacted with the
runner's cache, against `json.loads` of the same prompts) and `conversation` (the prompts of
sessions 20 turns long, two LLM calls a turn, redacted whole as the runner does, and message
by message with each message's redacted JSON cached, the alternative tried and not kept
(bench/README.md, tenth session), against `json.dumps` of the same prompts, which every call
pays for its digest).
"""

from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.telemetry.redaction import Redactor
from tests.unit.corpora.pii_corpus import NEGATIVE, POSITIVE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    r = Redactor(cached_texts=0)  # every text scanned, as a new prompt would be
    values = caught = 0
    by_label: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for text, secrets in POSITIVE:
        out = r.redact(text)
        labels = [label for _, _, label in r.findings(text)] or ["NONE"]
        for value in secrets:
            values += 1
            hit = value not in out
            caught += hit
            label = labels[0] if len(labels) == 1 else "MIXED"
            by_label[label][0] += hit
            by_label[label][1] += 1
    changed = sum(r.redact(t) != t for t in NEGATIVE)
    print(json.dumps({
        "bench": "redaction", "kind": "quality", "values": values, "ordinary_texts": len(NEGATIVE),
        "recall": round(caught / values, 4), "false_positive_rate": round(changed / len(NEGATIVE), 4),
        "by_label": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_label.items())},
    }))
    texts = [t for t, _ in POSITIVE] + NEGATIVE
    started = time.perf_counter()
    for _ in range(args.rounds):
        for t in texts:
            json.dumps([{"role": "user", "content": t}])
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.rounds):
        for t in texts:
            r.redact_structured(json.dumps([{"role": "user", "content": t}]))
    took = time.perf_counter() - started
    n = args.rounds * len(texts)
    print(json.dumps({
        "bench": "redaction", "kind": "speed", "texts": n,
        "redacted_per_s": round(n / took), "baseline_dumps_per_s": round(n / baseline),
        "ratio_to_baseline": round(baseline / took, 4),
    }))
    prompts = _tool_prompts(args.rounds * 50)
    cached = Redactor()  # as the runner's: repeated messages are redacted once
    started = time.perf_counter()
    for p in prompts:
        json.loads(p)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    for p in prompts:
        cached.redact_structured(p)
    took = time.perf_counter() - started
    print(json.dumps({
        "bench": "redaction", "kind": "tool_prompts", "prompts": len(prompts),
        "redacted_per_s": round(len(prompts) / took), "baseline_loads_per_s": round(len(prompts) / baseline),
        "ratio_to_baseline": round(baseline / took, 4),
    }))
    conversation(args.rounds * 5)


def conversation(sessions: int, turns: int = 20) -> None:
    calls = _conversation_calls(sessions, turns)
    started = time.perf_counter()
    for messages in calls:
        json.dumps(messages, ensure_ascii=False)
    baseline = time.perf_counter() - started
    whole, by_message = Redactor(), Redactor()  # each with the runner's cache, warmed by its own calls
    cached = functools.lru_cache(maxsize=4096)(by_message.redact_structured)
    started = time.perf_counter()
    for messages in calls:
        whole.redact_structured(json.dumps(messages, ensure_ascii=False))
    took_whole = time.perf_counter() - started
    started = time.perf_counter()
    for messages in calls:
        "[" + ", ".join(cached(json.dumps(m, ensure_ascii=False)) for m in messages) + "]"
    took_by_message = time.perf_counter() - started
    print(json.dumps({
        "bench": "redaction", "kind": "conversation", "prompts": len(calls), "turns": turns,
        "whole_per_s": round(len(calls) / took_whole), "by_message_per_s": round(len(calls) / took_by_message),
        "baseline_dumps_per_s": round(len(calls) / baseline),
        "by_message_over_whole_time": round(took_by_message / took_whole, 4),
    }))


def _conversation_calls(sessions: int, turns: int) -> list[list[dict[str, object]]]:
    """Every LLM call's messages over `sessions` sessions of `turns` turns: each turn asks, calls
    a tool and answers, so its second call adds the tool call and its result."""
    calls = []
    for s in range(sessions):
        history: list[dict[str, object]] = [{"role": "system", "content": "You are the support agent for orders and refunds."}]
        for t in range(turns):
            question = {"role": "user", "content": f"Order {1000 + s}-{t}: where is it? Reach me at user{s}@example.com"}
            call_id = "call_" + hashlib.sha256(f"{s}-{t}".encode()).hexdigest()[:24]
            first = [*history, question]
            calls.append(first)
            tool = [
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": call_id, "name": "lookup_order", "arguments": {"order_id": f"{1000 + s}"}}]},
                {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"status": "shipped", "turn": t})},
            ]
            calls.append([*first, *tool])
            history += [question, {"role": "assistant", "content": f"Your order {1000 + s} has shipped (turn {t})."}]
    return calls


def _tool_prompts(n: int) -> list[str]:
    """The second LLM call of a tool-using request, as the runner redacts it for its span: the
    system prompt and question repeat across requests, the tool-call id is new every time."""
    prompts = []
    for i in range(n):
        call_id = "call_" + hashlib.sha256(str(i).encode()).hexdigest()[:24]
        prompts.append(json.dumps([
            {"role": "system", "content": "You are the support agent for orders and refunds."},
            {"role": "user", "content": "Where is my order 1234?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": call_id, "name": "lookup_order", "arguments": {"order_id": "1234"}}]},
            {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"order_id": "1234", "status": "shipped"})},
        ]))
    return prompts


if __name__ == "__main__":
    main()
