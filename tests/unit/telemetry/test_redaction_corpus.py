"""Redaction measured on a labelled corpus: recall >= 98 %, false positives <= 2 %."""

from __future__ import annotations

import json

from streams.telemetry.redaction import Redactor
from tests.unit.corpora.pii_corpus import NEGATIVE, POSITIVE


def measure(r: Redactor) -> tuple[float, float, list[str]]:
    """(recall over values, false-positive rate over ordinary texts, what went wrong)."""
    wrong: list[str] = []
    values = caught = 0
    for text, secrets in POSITIVE:
        out = r.redact(text)
        for value in secrets:
            values += 1
            if value in out:
                wrong.append(f"missed {value!r} in {out!r}")
            else:
                caught += 1
    changed = [t for t in NEGATIVE if r.redact(t) != t]
    wrong += [f"changed {t!r} -> {r.redact(t)!r}" for t in changed]
    return caught / values, len(changed) / len(NEGATIVE), wrong


def test_corpus_is_big_and_varied_enough() -> None:
    assert len(POSITIVE) + len(NEGATIVE) >= 150
    assert sum("\n" in t for t, _ in POSITIVE) >= 10, "multi-line cases"


def test_recall_and_false_positives_on_the_corpus() -> None:
    recall, false_positive_rate, wrong = measure(Redactor())
    assert recall >= 0.98, wrong
    assert false_positive_rate <= 0.02, wrong


def test_structured_redaction_sees_through_json_escapes() -> None:
    """A prompt is JSON: a number after a line break is `\\n4111…` in the text, which hides it
    from a text pattern; redacting the decoded strings does not."""
    r = Redactor()
    messages = [
        {"role": "user", "content": "my card:\n4111 1111 1111 1111\nssn\n123-45-6789\ncall\n(415) 555-2671"}
    ]
    out = r.redact_structured(json.dumps(messages))
    assert "4111" not in out and "123-45-6789" not in out and "555-2671" not in out, out
    decoded = json.loads(out)
    assert decoded[0]["role"] == "user" and "[REDACTED:CARD]" in decoded[0]["content"]
    assert r.redact_structured(out) == out, "idempotent"
    assert r.redact_structured("plain 4111 1111 1111 1111") == "plain [REDACTED:CARD]"


def test_a_prompt_redacted_message_by_message_is_the_prompt_redacted_whole() -> None:
    """The runner encodes and redacts each message on its own (the cache then serves the
    conversation so far); what it writes must equal the whole prompt's encoding and redaction."""
    from streams.stages.execution.runner import json_array

    messages = [
        {"role": "system", "content": "You are a support agent. Ünïcode, \"quotes\", tabs\tand\nlines."},
        {"role": "user", "content": "I'm jane.doe@example.com, card 4111 1111 1111 1111, call +44 20 7946 0958"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_81623", "type": "function",
             "function": {"name": "lookup_order", "arguments": json.dumps({"order": "1234", "ssn": "123-45-6789"})}}
        ]},
        {"role": "tool", "tool_call_id": "call_81623", "content": "{\"status\": \"shipped\", \"eta\": [1, 2.5, true]}"},
        {"role": "user", "content": "ok 😀 " + "x" * 5000},  # past the cached length
        {"role": "user", "content": ""},
        "a bare string item:\n4111 1111 1111 1111",
    ]
    for n in range(len(messages) + 1):
        whole = json.dumps(messages[:n], ensure_ascii=False)
        encoded = [json.dumps(m, ensure_ascii=False) for m in messages[:n]]
        assert json_array(encoded) == whole, "the same prompt, so the same digest"
        r = Redactor()
        once = json_array([r.redact_structured(e) for e in encoded])
        assert once == Redactor().redact_structured(whole)
        assert json_array([r.redact_structured(e) for e in encoded]) == once, "the same from the cache"
    assert "4111" not in once and "jane.doe" not in once and "123-45-6789" not in once
