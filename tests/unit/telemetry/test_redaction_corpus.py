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


def test_a_json_string_is_redacted_decoded() -> None:
    """A bare JSON string (a tool's result, an attribute) hides a number behind its escapes too."""
    r = Redactor()
    text = json.dumps("card on file:\n4111 1111 1111 1111")
    assert "\\n4111" in text and r.redact(text) == text, "as text, the escape hides the card"
    out = r.redact_structured(text)
    assert json.loads(out) == "card on file:\n[REDACTED:CARD]"
