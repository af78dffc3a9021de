"""Redaction of personal data in prompt/answer text."""

from __future__ import annotations

import json

import pytest

from streams.telemetry.redaction import DEFAULT_PATTERNS, Redactor, luhn_ok


@pytest.fixture
def r() -> Redactor:
    return Redactor()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe+x@example.co.uk now", "mail [REDACTED:EMAIL] now"),
        ("card 4111 1111 1111 1111 please", "card [REDACTED:CARD] please"),
        ("card 4111-1111-1111-1111.", "card [REDACTED:CARD]."),
        ("amex 378282246310005", "amex [REDACTED:CARD]"),
        ("ssn 123-45-6789", "ssn [REDACTED:SSN]"),
        ("call (415) 555-2671 today", "call [REDACTED:PHONE] today"),
        ("call 415-555-2671", "call [REDACTED:PHONE]"),
        ("call +1 415 555 2671", "call [REDACTED:PHONE]"),
        ("ring +44 20 7946 0958", "ring [REDACTED:PHONE]"),
        ("ring +49-30-1234567", "ring [REDACTED:PHONE]"),
    ],
)
def test_redacts_defaults(r: Redactor, text: str, expected: str) -> None:
    assert r.redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112 failed",  # 16 digits, Luhn fails: an order number, kept
        "invoice 2024-01-15 10:30:00 total 123.45",
        "request 123e4567-e89b-12d3-a456-426614174000",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
        "ssn-like 000-12-3456 is invalid",
        "version 1.2.3, 42 items, code 12345",
        "",
    ],
)
def test_leaves_non_personal_text(r: Redactor, text: str) -> None:
    assert r.redact(text) == text


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112")


def test_idempotent_and_json_safe(r: Redactor) -> None:
    content = json.dumps([{"role": "user", "content": "I'm a@b.io, card 5555 5555 5555 4444"}])
    once = r.redact(content)
    assert r.redact(once) == once
    assert json.loads(once)[0]["content"] == "I'm [REDACTED:EMAIL], card [REDACTED:CARD]"


def test_configurable_patterns() -> None:
    r = Redactor({"EMPLOYEE": r"\bEMP-\d{6}\b", "PHONE": ""})
    assert "PHONE" not in r.labels and r.labels[-1] == "EMPLOYEE"
    assert r.redact("EMP-123456 at 415-555-2671") == "[REDACTED:EMPLOYEE] at 415-555-2671"
    assert set(DEFAULT_PATTERNS) - {"PHONE"} <= set(r.labels)


def test_disabled_is_identity() -> None:
    r = Redactor(enabled=False)
    assert r.redact("a@b.io") == "a@b.io"
    assert r("a@b.io") == "a@b.io"


def test_cached_redaction_gives_the_same_text_as_a_fresh_scan() -> None:
    """Prompts repeat (system prompt, the conversation so far): the cache must never change an answer."""
    from tests.unit.corpora.pii_corpus import NEGATIVE, POSITIVE

    cached, fresh = Redactor(cached_texts=8), Redactor(cached_texts=0)
    texts = [t for t, _ in POSITIVE] + NEGATIVE
    for _ in range(2):  # the second pass is served from the cache where it still holds them
        assert [cached.redact(t) for t in texts] == [fresh.redact(t) for t in texts]
