"""Personal data and secrets out of prompt and answer text before it leaves the worker.

Prompts and answers are kept (LLM spans, ClickHouse `llm_calls` and `decisions`), so what they
carry is replaced by `[REDACTED:<LABEL>]` first. Recognizers, in priority order (an earlier one
owns the characters it matched):

- SECRET: API keys (`sk-…`, `sk_live_…`), cloud access keys (AWS `AKIA…`, Google `AIza…`),
  GitHub and Slack tokens, JWTs, bearer tokens, private-key blocks, and the value after
  "password is / pwd: / api key: …" in several languages;
- EMAIL (plus-addressing, subdomains, international domains);
- IBAN: any case, with or without spaces, kept only if the check digits verify (`python-stdnum`);
- CARD: 13 to 19 digits with any separators, a card-network prefix and a valid Luhn checksum (so
  order numbers and epoch timestamps survive);
- SSN: `123-45-6789`, `123 45 6789`, `123.45.6789`, or nine bare digits after an SSN keyword;
- IP: IPv4 and IPv6 addresses that `ipaddress` accepts;
- PHONE: Google's libphonenumber (`phonenumbers`) finds numbers in international form and in the
  national forms of the configured regions (US, GB, FR, DE, ES by default); a bare run of digits
  counts only with a trunk `0` or a phone word before it, and dates never count.

Labels can be added or switched off from the config (`[redaction.patterns]`, "" disables one).
Redaction is idempotent: placeholders match nothing. `redact_structured` redacts the string
leaves of a JSON document (a prompt's messages) so escapes such as `\\n` cannot hide a number.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_PATTERNS", "Redactor", "luhn_ok"]

Span = tuple[int, int]

# Redaction results kept per Redactor: texts up to 4,000 characters, the 4,096 latest (<= ~32 MB).
_CACHED_CHARS = 4_000
_CACHED_TEXTS = 4_096
_PASSWORD_WORDS = (
    r"password|passwd|passphrase|passcode|pwd|pin|mot de passe|passwort|kennwort|contraseña|"
    r"clave|senha|parola d'ordine|password dell'account|пароль|密码|口令"
)
_SECRET_WORDS = r"api[ _-]?key|access[ _-]?key|secret[ _-]?key|client[ _-]?secret|auth[ _-]?token|access[ _-]?token|token|secret"
_NOT_A_VALUE = frozenset(
    ["is", "was", "not", "wrong", "incorrect", "expired", "invalid", "reset", "forgotten", "forgot", "working", "required", "too", "the", "a", "an", "my", "your", "for", "and", "or", "to", "of", "it", "that", "this", "again", "change", "changed", "please", "help"]
)

DEFAULT_PATTERNS: dict[str, str] = {
    "SECRET": "|".join(
        (
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            r"\bsk-(?:proj-|live-|test-|ant-)?[A-Za-z0-9_-]{16,}",
            r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
            r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b",
            r"\bAIza[0-9A-Za-z_-]{35}",
            r"\bgh[pousr]_[A-Za-z0-9]{30,}",
            r"\bgithub_pat_[A-Za-z0-9_]{30,}",
            r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            r"(?i:\bbearer\s+)[A-Za-z0-9._~+/-]{16,}=*",
            r"(?i:aws_secret_access_key\s*[:=]\s*)[A-Za-z0-9/+=]{40}",
        )
    ),
    "EMAIL": r"(?<![\w.%+-])[\w.%+-]+@(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,}(?![\w-])",
    "IBAN": r"(?i)(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,34}",
    "CARD": r"(?<![\w.-])\d(?:[ .-]?\d){12,18}(?![\w-])",
    "SSN": (
        r"(?<![\w.-])(?!000|666|9\d\d)\d{3}([- .])(?!00)\d{2}\1(?!0000)\d{4}(?![\w-])"
        r"|(?i:(?:ssn|social security(?: number| no\.?)?|ss#|sozialversicherungsnummer|"
        r"n[uú]mero de la seguridad social)\W{0,3}(?:is\W{0,2}|:\W{0,2}|#\W{0,2})?)"
        r"(?!000|666|9\d\d)\d{3}(?!00)\d{2}(?!0000)\d{4}(?!\d)"
    ),
    "IP": (
        r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d|-\w)"
        r"|(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"
    ),
}
"""Label -> regex. `Redactor(patterns={"ZIP": r"..."})` adds one, `{"IP": ""}` switches one off."""

_KEYED_VALUE = re.compile(
    rf"(?i)\b(?:{_PASSWORD_WORDS}|{_SECRET_WORDS})\b"
    r"(?:\s+(?:is|was|=|:|est|ist|es|é|è|это|是)|\s*[:=])\s*[\"'“«]?"
    r"(?P<value>[^\s\"'”»,;]{4,})"
)
_PHONE_WORDS = re.compile(
    r"(?i)(?:phone|tel|telephone|call|mobile|cell|whatsapp|sms|text me|fax|número|numero|"
    r"teléfono|telefono|móvil|movil|llamar|téléphone|portable|appeler|telefon|handy|nummer|"
    r"anrufen|ruf|telefone|celular|ligar)\W{0,3}(?:\w+\W{1,3}){0,2}$"
)
# Local numbers written without a prefix but in their usual grouping (NANP 3-3-4, ES 3-3-3).
_LOCAL_GROUPING = re.compile(r"^(?:1[-. ])?\d{3}[-. ]\d{3}[-. ]\d{4}$|^[6-9]\d{2} \d{3} \d{3}$")
_PHONE_CANDIDATE = re.compile(r"(?:\+|\()?\d[\d \t().\-/]{5,28}\d")
_DATE_LIKE = re.compile(r"^\d{1,4}[-./ ]\d{1,2}[-./ ]\d{1,4}$")
_DIGITS = re.compile(r"\d")
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6|35|62|9792)")


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
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_ok(digits)


def _ip_ok(text: str) -> bool:
    if text.count(":") and not any(c in text for c in "abcdefABCDEF") and text.count(":") <= 2:
        return False  # 12:30:45 is a time, not an address
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _iban_spans(text: str, rx: re.Pattern[str]) -> Iterator[Span]:
    """IBAN candidates, shortened from the right until the check digits verify."""
    from stdnum import iban

    for m in rx.finditer(text):
        chars = [(i, c) for i, c in enumerate(m[0]) if c != " "]
        for n in range(min(len(chars), 34), 14, -1):
            compact = "".join(c for _, c in chars[:n]).upper()
            if iban.is_valid(compact):
                yield m.start(), m.start() + chars[n - 1][0] + 1
                break


@dataclass(frozen=True)
class _Rule:
    label: str
    find: Callable[[str], Iterator[Span]]


def _inside_a_token(text: str, run: re.Match[str]) -> bool:
    """A digit run glued to the token before it (an id like `call_9f3a14216056e2d4`, a
    reference `R-09545481`, a path, a version) and without a space or parenthesis inside: every
    number libphonenumber could find in it starts right after a letter, a digit or one of
    `-_/.`, which `_is_phone` rejects. Skipping the run up front saves the matcher, which was
    most of the cost of redacting a prompt full of tool-call ids."""
    start = run.start()
    before = text[start - 1] if start else " "
    if not (before.isalnum() or before in "-_/."):
        return False
    return not any(c in " \t()" for c in run[0])


class Redactor:
    """Replaces personal data and secrets in text with `[REDACTED:<LABEL>]`.

    Args:
        patterns: label -> regex, merged over DEFAULT_PATTERNS (an empty regex removes a label;
            `PHONE: ""` switches the phone recognizer off). None means the defaults.
        enabled: False makes `redact` return its input unchanged (a config switch, not code).
        regions: national phone formats recognized besides the international `+…` form.
        cached_texts: how many redacted texts (up to 4,000 characters each) to keep; 0 keeps none.
    """

    def __init__(
        self,
        patterns: Mapping[str, str] | None = None,
        enabled: bool = True,
        regions: tuple[str, ...] = ("US", "GB", "FR", "DE", "ES"),
        cached_texts: int = _CACHED_TEXTS,
    ) -> None:
        merged = {**DEFAULT_PATTERNS, **(patterns or {})}
        self.enabled = enabled
        self.regions = regions
        self._rules: list[_Rule] = []
        for label, rx in merged.items():
            if not rx or label == "PHONE":
                continue
            self._rules.append(_Rule(label, self._finder(label, re.compile(rx))))
        if merged.get("PHONE") != "":
            self._rules.append(_Rule("PHONE", self._phones))
        if merged.get("SECRET") != "":
            self._rules.insert(1, _Rule("SECRET", self._keyed_values))
        # Every LLM call's prompt repeats the system prompt and the conversation so far: each
        # message is redacted once, later calls find it here. Long texts are not kept.
        self._redact_short = functools.lru_cache(maxsize=cached_texts)(self._redact) if cached_texts else self._redact

    @property
    def labels(self) -> list[str]:
        """The active labels, in the order they are applied."""
        return list(dict.fromkeys(rule.label for rule in self._rules))

    @staticmethod
    def _finder(label: str, rx: re.Pattern[str]) -> Callable[[str], Iterator[Span]]:
        if label == "IBAN":
            return lambda text: _iban_spans(text, rx)
        valid = {"CARD": _card_ok, "IP": _ip_ok}.get(label)

        def find(text: str) -> Iterator[Span]:
            for m in rx.finditer(text):
                if valid is None or valid(m[0]):
                    start = m.start()
                    if label == "SSN" and not m[0][0].isdigit():  # keyword form: keep the keyword
                        start = m.end() - 9
                    yield start, m.end()

        return find

    @staticmethod
    def _keyed_values(text: str) -> Iterator[Span]:
        for m in _KEYED_VALUE.finditer(text):
            value = m["value"]
            if value.lower().strip(".!?") in _NOT_A_VALUE:
                continue
            yield m.start("value"), m.end("value")

    def _phones(self, text: str) -> Iterator[Span]:
        import phonenumbers

        seen: set[Span] = set()
        # libphonenumber is thorough but slow over long text: it only sees the digit runs that
        # could be a number (7+ digits with the usual separators), each with its offset.
        for run in _PHONE_CANDIDATE.finditer(text):
            if len(_DIGITS.findall(run[0])) < 7 or _inside_a_token(text, run):
                continue
            for region in self.regions:
                matches = phonenumbers.PhoneNumberMatcher(
                    run[0], region, leniency=phonenumbers.Leniency.POSSIBLE
                )
                for m in matches:
                    span = (run.start() + m.start, run.start() + m.end)
                    if span not in seen and self._is_phone(text, span, m.raw_string, m.number):
                        seen.add(span)
                        yield span

    @staticmethod
    def _is_phone(text: str, span: Span, raw: str, number: Any) -> bool:
        import phonenumbers

        start, end = span
        if not 7 <= len(_DIGITS.findall(raw)) <= 15 or _DATE_LIKE.match(raw):
            return False
        if not phonenumbers.is_valid_number(number):
            return False
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if before.isalnum() or before in "-_/." or after.isalnum() or after in "-_/":
            return False  # part of a longer token: a UUID, a path, a version
        if not raw.startswith(("+", "0", "(")) and not _LOCAL_GROUPING.match(raw):
            # Without an international or trunk prefix, or a usual grouping, digits are an
            # order number, a reference or a timestamp unless introduced as a phone number.
            return bool(_PHONE_WORDS.search(text[max(0, start - 40) : start]))
        return True

    def findings(self, text: str, only: frozenset[str] | None = None) -> list[tuple[int, int, str]]:
        """(start, end, label) of everything to redact, earlier rules first, no overlaps;
        `only` restricts it to those labels (the verifier asks for a few)."""
        taken: list[tuple[int, int, str]] = []
        for rule in self._rules:
            if only is not None and rule.label not in only:
                continue
            for start, end in rule.find(text):
                if start < end and all(end <= s or start >= e for s, e, _ in taken):
                    taken.append((start, end, rule.label))
        return sorted(taken)

    def redact(self, text: str) -> str:
        """`text` with every finding replaced by its placeholder."""
        if not self.enabled or not text:
            return text
        return self._redact(text) if len(text) > _CACHED_CHARS else self._redact_short(text)

    def _redact(self, text: str) -> str:
        out, last = [], 0
        for start, end, label in self.findings(text):
            out.append(text[last:start])
            out.append(f"[REDACTED:{label}]")
            last = end
        out.append(text[last:])
        return "".join(out)

    __call__ = redact

    def redact_structured(self, text: str) -> str:
        """Redacts the string values of a JSON document (keys and structure kept); plain text
        that is not JSON is redacted as text."""
        if not self.enabled or not text:
            return text
        try:
            doc = json.loads(text)
        except ValueError:
            return self.redact(text)
        if not isinstance(doc, dict | list | str):  # a JSON string is decoded: `\n4111…` hides a card
            return self.redact(text)
        return json.dumps(self._walk(doc), ensure_ascii=False)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        if isinstance(value, dict):
            return {k: self._walk(v) for k, v in value.items()}
        return value
