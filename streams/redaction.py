"""Personal-data redaction for prompts and answers before they leave the process.

Prompts and responses are stored in full (ClickHouse `llm_calls`, span attributes), so e-mail
addresses, phone numbers, card numbers and US social security numbers are replaced by
`[REDACTED:<LABEL>]` first. Patterns are plain regular expressions keyed by label and can be
extended or switched off per label; card-like matches are kept only when they pass the Luhn
check, so order numbers and timestamps survive. Redaction is idempotent: the placeholders
match no pattern, so redacting twice (tracing code, then the sink) changes nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

__all__ = ["DEFAULT_PATTERNS", "Redactor", "luhn_ok"]

DEFAULT_PATTERNS: dict[str, str] = {
    # Applied in this order: cards and SSNs before phones, whose shapes overlap.
    "EMAIL": r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])",
    "CARD": r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])",
    "SSN": r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])",
    "PHONE": (
        # NANP: (415) 555-1234, 415-555-1234, 415.555.1234, +1 415 555 1234
        r"(?<![\w+])(?:\+?1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-])"
        # international with a leading +: +44 20 7946 0958, +49-30-1234567
        r"|(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w-])"
    ),
}
"""Label -> regex. Pass `patterns={"IBAN": r"..."}` to add, `{"PHONE": ""}` to switch one off."""

_DIGITS = re.compile(r"\d")


def luhn_ok(digits: str) -> bool:
    """True if the digit string passes the Luhn checksum (every card number does)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(text: str) -> bool:
    digits = "".join(_DIGITS.findall(text))
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _phone_ok(text: str) -> bool:
    return 7 <= len(_DIGITS.findall(text)) <= 15


# Extra checks a regex cannot express, by label.
_VALIDATORS: dict[str, Callable[[str], bool]] = {"CARD": _card_ok, "PHONE": _phone_ok}


class Redactor:
    """Replaces personal data in text with `[REDACTED:<LABEL>]`.

    Args:
        patterns: label -> regex, merged over DEFAULT_PATTERNS (an empty regex removes a
            default label). None means the defaults.
        enabled: False makes `redact` return its input unchanged (a config switch, not code).
    """

    def __init__(self, patterns: Mapping[str, str] | None = None, enabled: bool = True) -> None:
        merged = {**DEFAULT_PATTERNS, **(patterns or {})}
        self.enabled = enabled
        self._rules: list[tuple[str, re.Pattern[str], Callable[[str], bool] | None]] = [
            (label, re.compile(rx), _VALIDATORS.get(label)) for label, rx in merged.items() if rx
        ]
        # One pass over the text instead of one per label: alternatives in label order, so at
        # any position the first label that matches (and validates) wins.
        self._combined = (
            re.compile(
                "|".join(f"(?P<_r{i}>{rx.pattern})" for i, (_, rx, _) in enumerate(self._rules))
            )
            if self._rules
            else None
        )

    @property
    def labels(self) -> list[str]:
        """The active labels, in the order they are applied."""
        return [label for label, _, _ in self._rules]

    def _replace(self, m: re.Match[str]) -> str:
        i = int(m.lastgroup[2:])  # type: ignore[index]
        label, _, valid = self._rules[i]
        if valid is None or valid(m[0]):
            return f"[REDACTED:{label}]"
        # Rejected by its validator (e.g. a 16-digit order number failing Luhn): the later
        # labels still get their chance at this text.
        return self._sequential(m[0], self._rules[i + 1 :])

    @staticmethod
    def _sequential(
        text: str, rules: list[tuple[str, re.Pattern[str], Callable[[str], bool] | None]]
    ) -> str:
        for label, rx, valid in rules:
            placeholder = f"[REDACTED:{label}]"
            if valid is None:
                text = rx.sub(placeholder, text)
            else:
                text = rx.sub(lambda m, v=valid, p=placeholder: p if v(m[0]) else m[0], text)
        return text

    def redact(self, text: str) -> str:
        """`text` with every match replaced."""
        if not self.enabled or not text or self._combined is None:
            return text
        return self._combined.sub(self._replace, text)

    __call__ = redact
