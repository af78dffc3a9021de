"""Seeded, deterministic LLM simulator: the default backend, so the pipeline runs without keys.

Every choice (answer wording, latency, tool-call ids, injected faults) is drawn from
``blake2b(f"{seed}|{call_key}|{fingerprint}|{purpose}")`` where ``fingerprint`` hashes the
request content (model, messages, offered tool names) and never the attempt number.
Replaying the same request therefore yields the same response on any machine and process
(no ``hash()``, no global ``random``).

Injected *faults* (``rate_limit_rate``, ``timeout_rate``, ``empty_rate`` and the ``[sim:429xN]``
marker) additionally use the per-``call_key`` attempt counter kept in the provider instance as
the ``purpose`` suffix: a retried call then gets a fresh, still deterministic, draw. Without
that, a 5 % rate-limit rate would mean 5 % of calls can never succeed, which is not how rate
limits behave.

Test hooks (markers in the last user message, removed before the text is interpreted):

* ``[sim:429]`` always RateLimited; ``[sim:429xN]`` RateLimited on the first N attempts.
* ``[sim:timeout]`` LLMTimeout after sleeping ``min(timeout_s, latency)``.
* ``[sim:empty]`` empty content, finish "stop".
* ``[sim:loop]`` always the same tool call with the same arguments, even after results.
* ``[sim:refuse]`` "I can't help with that."
* ``[sim:latency=MS]`` fixed latency in milliseconds (no jitter).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from streams.llm.base import (
    ChatRequest,
    ChatResponse,
    LLMTimeout,
    ProviderUnavailable,
    RateLimited,
    ToolCall,
    ToolSpec,
)

__all__ = ["SimulatedProvider", "SimulatorConfig"]

REFUSAL = "I can't help with that."
# Attempt counters are per call_key; bound them so a long-running worker does not leak.
_MAX_TRACKED_KEYS = 100_000


@dataclass(frozen=True)
class SimulatorConfig:
    """Knobs of the simulator; rates are probabilities in [0, 1], jitter is relative to the mean."""

    seed: int = 0
    latency_ms_mean: float = 300.0
    latency_ms_jitter: float = 0.3
    rate_limit_rate: float = 0.0
    timeout_rate: float = 0.0
    empty_rate: float = 0.0
    # Fault drills: while this file exists every call fails fast as a provider outage.
    outage_file: str = ""
    # Appends one line per call ("<ms> ok|unavailable"), so a drill can count what the provider saw.
    calls_log: str = ""
    # model name -> share of calls that fail as "provider unavailable"; sticky per call, so the
    # retries of a failed call fail too (a bad model version, not a blip).
    model_failure_rates: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.latency_ms_mean < 0:
            raise ValueError("latency_ms_mean must be >= 0")
        if not 0.0 <= self.latency_ms_jitter <= 1.0:
            raise ValueError("latency_ms_jitter must be within [0, 1]")
        for name in ("rate_limit_rate", "timeout_rate", "empty_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        for model, rate in self.model_failure_rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"failure rate of {model} must be within [0, 1], got {rate}")


# --------------------------------------------------------------------------- determinism


class _Draws:
    """Deterministic pseudo-random draws for one request, keyed by a purpose string."""

    def __init__(self, seed: int, call_key: str, fingerprint: str) -> None:
        self._prefix = f"{seed}|{call_key}|{fingerprint}"

    def digest(self, purpose: str) -> bytes:
        return hashlib.blake2b(f"{self._prefix}|{purpose}".encode(), digest_size=16).digest()

    def unit(self, purpose: str) -> float:
        """A float in [0, 1)."""
        return int.from_bytes(self.digest(purpose)[:8], "big") / 2**64

    def pick(self, purpose: str, options: list[str] | tuple[str, ...]) -> str:
        return options[int.from_bytes(self.digest(purpose)[:8], "big") % len(options)]

    def hex(self, purpose: str, length: int = 24) -> str:
        return self.digest(purpose).hex()[:length]


def _fingerprint(request: ChatRequest) -> str:
    """Attempt-free digest of what the model 'sees'.

    max_tokens and timeout_s are left out: a capped answer is a prefix of the uncapped one.
    """
    payload = {
        "model": request.model,
        "messages": request.messages,
        "tools": [t.name for t in request.tools],
    }
    raw = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


# --------------------------------------------------------------------------- message parsing

_MARKER_RE = re.compile(r"\[sim:([^\]]*)\]", re.IGNORECASE)


def _text_of(content: Any) -> str:
    """Message content as text: plain strings or OpenAI content-part lists."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return str(content)


def _call_fields(call: Any) -> tuple[str, str, dict[str, Any]]:
    """(id, name, arguments) of an assistant tool call in OpenAI or ToolCall shape."""
    if isinstance(call, ToolCall):
        return call.id, call.name, dict(call.arguments)
    if not isinstance(call, dict):
        return "", "", {}
    function = call.get("function")
    fn: dict[str, Any] = function if isinstance(function, dict) else call
    raw_args = fn.get("arguments", {})
    if isinstance(raw_args, str):
        try:
            raw_args = json.loads(raw_args) if raw_args.strip() else {}
        except json.JSONDecodeError:
            raw_args = {}
    args = raw_args if isinstance(raw_args, dict) else {}
    return str(call.get("id", "")), str(fn.get("name", "")), args


@dataclass
class _ToolResult:
    name: str
    arguments: dict[str, Any]
    raw: str
    data: Any


@dataclass
class _Turn:
    """The part of the conversation the simulator reacts to."""

    system: str = ""
    text: str = ""  # last user message, markers removed
    markers: list[str] = field(default_factory=list)
    called: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    results: list[_ToolResult] = field(default_factory=list)
    has_user: bool = False


def _parse_turn(messages: list[dict[str, Any]]) -> _Turn:
    turn = _Turn()
    for msg in messages:
        if msg.get("role") in ("system", "developer"):
            turn.system = _text_of(msg.get("content"))
            break
    last_user = -1
    for i, msg in enumerate(messages):
        if msg.get("role") == "user":
            last_user = i
    if last_user < 0:
        return turn
    turn.has_user = True
    raw = _text_of(messages[last_user].get("content"))
    turn.markers = [m.strip().lower() for m in _MARKER_RE.findall(raw)]
    turn.text = re.sub(r"\s+", " ", _MARKER_RE.sub(" ", raw)).strip()

    calls_by_id: dict[str, tuple[str, dict[str, Any]]] = {}
    for msg in messages[last_user + 1 :]:
        if msg.get("role") == "assistant":
            for call in msg.get("tool_calls") or []:
                call_id, name, args = _call_fields(call)
                if name:
                    turn.called.append((name, args))
                    calls_by_id[call_id] = (name, args)
        elif msg.get("role") == "tool":
            name, args = calls_by_id.get(str(msg.get("tool_call_id", "")), ("", {}))
            name = name or str(msg.get("name", "")) or "tool"
            raw_result = _text_of(msg.get("content"))
            try:
                data: Any = json.loads(raw_result)
            except (json.JSONDecodeError, TypeError):
                data = raw_result
            turn.results.append(_ToolResult(name, args, raw_result, data))
    return turn


# --------------------------------------------------------------------------- intents → tools

_ID = r"([A-Za-z0-9][A-Za-z0-9_-]*)"
_ORDER_RE = re.compile(
    r"\b(?:order|pedido|commande|bestellung)\s*(?:(?:number|no\.?|id|nr\.?|n°)\s*)?[#:]?\s*"
    r"([A-Za-z]*-?\d[A-Za-z0-9_-]*)",
    re.IGNORECASE,
)
_HASH_ID_RE = re.compile(r"#\s*([A-Za-z]*-?\d[A-Za-z0-9_-]*)")
_AMOUNT_RES = (
    re.compile(r"[$€£]\s*(\d+(?:[.,]\d{1,2})?)"),
    re.compile(r"(\d+(?:[.,]\d{1,2})?)\s*(?:\$|€|£|dollars?|usd|eur|euros?|bucks)\b", re.I),
)
_USER_RE = re.compile(r"\buser:" + _ID, re.IGNORECASE)
_REFUND_RE = re.compile(r"\b(refund|reembols|rembours|erstatt|rückerstatt)", re.IGNORECASE)
_STATUS_RE = re.compile(
    r"\b(where(?:'s|\s+is)\s+my\s+(?:order|package|parcel|delivery)"
    r"|order\s+status|status\s+of\s+(?:my\s+|the\s+)?order"
    r"|track(?:ing)?\s+(?:my\s+|the\s+)?order|check\s+(?:on\s+)?(?:my\s+|the\s+)?order"
    r"|(?:has|did)\s+my\s+order|look\s*up\s+(?:my\s+|the\s+)?order"
    r"|dónde\s+está\s+mi\s+pedido|où\s+est\s+ma\s+commande|wo\s+ist\s+meine\s+bestellung)",
    re.IGNORECASE,
)
_PASSWORD_RE = re.compile(
    r"\b((?:reset|forgot|forgotten|change|recover)\s+(?:my\s+|the\s+)?password"
    r"|password\s+reset|can'?t\s+log\s*in)",
    re.IGNORECASE,
)
_OUTAGE_RE = re.compile(
    r"\b(outage|down|not\s+working|isn'?t\s+working|doesn'?t\s+work|broken|unavailable"
    r"|unreachable|5\d\d\s+errors?|timing\s+out)\b",
    re.IGNORECASE,
)
_SERVICES: tuple[tuple[str, str], ...] = (
    (r"\bapi\b", "api"),
    (r"\bdashboard\b", "dashboard"),
    (r"\b(login|log\s*in|sign[\s-]?in|sso)\b", "login"),
    (r"\b(billing|payments?|checkout)\b", "billing"),
    (r"\b(e-?mails?|notifications?)\b", "email"),
    (r"\b(website|web\s*site|site)\b", "website"),
    (r"\b(mobile\s+)?app\b", "app"),
    (r"\b(database|db)\b", "database"),
    (r"\b(search)\b", "search"),
    (r"\b(webhooks?)\b", "webhooks"),
)
_DELETE_RE = re.compile(
    r"\b(delete|close|terminate|remove)\s+(?:my\s+|the\s+|this\s+)?account", re.IGNORECASE
)
_SUSPEND_RE = re.compile(r"\bsuspend", re.IGNORECASE)
_TRANSFER_RE = re.compile(r"\btransfer\s+(?:my\s+|the\s+|this\s+)?account", re.IGNORECASE)
_TRANSFER_TO_RE = re.compile(r"\bto\s+(user:[\w.-]+|[\w.+-]+@[\w-]+\.[\w.]+)", re.IGNORECASE)
_EXPORT_RE = re.compile(
    r"\b(export|download|copy\s+of)\s+(?:all\s+)?(?:my\s+)?(?:personal\s+)?data\b", re.IGNORECASE
)


def _order_id(text: str) -> str | None:
    match = _ORDER_RE.search(text) or _HASH_ID_RE.search(text)
    return match.group(1) if match else None


def _amount(text: str) -> float | None:
    for regex in _AMOUNT_RES:
        match = regex.search(text)
        if match:
            return float(match.group(1).replace(",", "."))
    return None


def _user_id(text: str) -> str:
    match = _USER_RE.search(text)
    return match.group(1) if match else "self"


def _plan(text: str, offered: set[str]) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """Tool calls the text asks for, in execution order, limited to offered tools.

    Returns (calls, needs_order_id): the flag is set when an order tool fits but the text has no
    order number, so the answer asks for it instead of inventing one.
    """
    calls: list[tuple[str, dict[str, Any]]] = []
    needs_order = False
    order = _order_id(text)
    uid = _user_id(text)
    # Looking the order up first lets a "check and refund" request act on the lookup result.
    if "lookup_order" in offered and _STATUS_RE.search(text):
        if order:
            calls.append(("lookup_order", {"order_id": order}))
        else:
            needs_order = True
    if "check_outage" in offered and _OUTAGE_RE.search(text):
        lowered = text.lower()
        for pattern, service in _SERVICES:
            if re.search(pattern, lowered):
                calls.append(("check_outage", {"service": service}))
                break
    if "reset_password" in offered and _PASSWORD_RE.search(text):
        calls.append(("reset_password", {"user_id": uid}))
    if "issue_refund" in offered and _REFUND_RE.search(text):
        if order:
            args: dict[str, Any] = {"order_id": order}
            amount = _amount(text)
            if amount is not None:
                args["amount"] = amount
            calls.append(("issue_refund", args))
        else:
            needs_order = True
    if "export_personal_data" in offered and _EXPORT_RE.search(text):
        calls.append(("export_personal_data", {"user_id": uid}))
    if "suspend_account" in offered and _SUSPEND_RE.search(text):
        calls.append(("suspend_account", {"user_id": uid}))
    if "transfer_account" in offered and _TRANSFER_RE.search(text):
        args = {"user_id": uid}
        target = _TRANSFER_TO_RE.search(text)
        if target:
            args["new_owner"] = target.group(1)
        calls.append(("transfer_account", args))
    if "delete_account" in offered and _DELETE_RE.search(text):
        calls.append(("delete_account", {"user_id": uid}))
    return calls, needs_order and not calls


def _loop_call(tools: list[ToolSpec]) -> tuple[str, dict[str, Any]] | None:
    """The fixed call `[sim:loop]` repeats; prefers lookup_order, else the first offered tool."""
    if not tools:
        return None
    for tool in tools:
        if tool.name == "lookup_order":
            return "lookup_order", {"order_id": "1"}
    tool = tools[0]
    required = tool.parameters.get("required", []) if isinstance(tool.parameters, dict) else []
    return tool.name, {str(name): "1" for name in required}


# --------------------------------------------------------------------------- answers

_FAILED = {"failed", "failure", "denied", "rejected", "declined", "error", "blocked"}
_REF_KEYS = ("ref", "reference", "refund_id", "confirmation", "ticket", "id")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return text if len(text) <= 80 else text[:77] + "..."
    return str(value)


def _money(value: Any) -> str | None:
    try:
        return f"${float(value):.2f}"
    except (TypeError, ValueError):
        return None


def _summarize(result: _ToolResult) -> str:
    """One sentence per tool result that repeats the values the tool returned."""
    data = result.data if isinstance(result.data, dict) else None
    args = result.arguments
    if data is None:
        raw = result.raw.strip() or "no output"
        return f"{result.name} returned: {raw[:200]}."
    if data.get("error"):
        return f"{result.name} failed: {_fmt(data['error'])}."
    used: set[str] = {"error"}
    status = data.get("status")
    failed = isinstance(status, str) and status.lower() in _FAILED

    def take(*keys: str) -> Any:
        for key in keys:
            if data.get(key) not in (None, ""):
                used.add(key)
                return data[key]
        return None

    name = result.name
    if name == "issue_refund":
        amount = _money(take("amount", "refunded", "refund_amount") or args.get("amount"))
        order = take("order_id") or args.get("order_id")
        ref = take(*_REF_KEYS)
        used.add("status")
        head = "Refund" + (f" of {amount}" if amount else "")
        head += f" for order {order}" if order else ""
        if failed:
            head += f" was not issued (status: {status})"
        else:
            head += " issued" + (f" (ref {ref})" if ref else "")
    elif name == "lookup_order":
        order = take("order_id", "id") or args.get("order_id", "")
        take("status")
        head = f"Order {order}" + (f" is {status}" if status else "")
    elif name == "check_outage":
        service = take("service") or args.get("service", "the service")
        take("status")
        head = f"Status of {service}: {status}" if status else f"Status of {service} checked"
    elif name == "reset_password":
        user = take("user_id") or args.get("user_id", "self")
        take("status")
        who = "your account" if user == "self" else f"user {user}"
        head = f"Password reset for {who}: {status or 'started'}"
    elif name in ("delete_account", "suspend_account", "transfer_account", "export_personal_data"):
        user = take("user_id") or args.get("user_id", "self")
        take("status")
        action = name.split("_")[0]
        who = "your account" if user == "self" else f"account {user}"
        head = f"{action.capitalize()} request for {who}: {status or 'submitted'}"
    else:
        head = f"{name} returned"
    details = ", ".join(f"{k}: {_fmt(v)}" for k, v in data.items() if k not in used)
    if head.endswith("returned"):
        return f"{head} {details or 'no data'}."
    return f"{head}" + (f" ({details})" if details else "") + "."


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_LANG_WORDS: dict[str, frozenset[str]] = {
    "en": _words(
        "the and is are my to for of you your please what how can with this that have i "
        "it not do does where when why"
    ),
    "es": _words(
        "hola gracias quiero necesito pedido mi mis por para el los las está dónde cómo qué "
        "cuenta reembolso ayuda puedo tengo una con del y funciona contraseña"
    ),
    "fr": _words(
        "bonjour merci je j'ai mon ma mes est le les des une pour avec commande compte "
        "remboursement aide vous pouvez ne pas où et du suis voudrais mot"
    ),
    "de": _words(
        "hallo danke ich mein meine meinen ist nicht und der die das bitte bestellung konto "
        "rückerstattung hilfe wie wo können sie ein eine mit für habe funktioniert"
    ),
}


def _language(text: str) -> str:
    """'es' / 'fr' / 'de' when clearly so by common words, else 'en'."""
    words = re.findall(r"[a-zà-öø-ÿß']+", text.lower())
    if not words:
        return "en"
    scores = {lang: sum(w in vocab for w in words) for lang, vocab in _LANG_WORDS.items()}
    best = max(("es", "fr", "de"), key=lambda lang: scores[lang])
    if scores[best] >= 2 and scores[best] > scores["en"]:
        return best
    return "en"


def _domain(system: str) -> tuple[str, str]:
    """(kind, label) of the agent from its system prompt, e.g. ("billing", "billing team")."""
    lowered = system.lower()
    company = ""
    match = re.search(r"\b(?:of|at|for)\s+([A-Z][\w&-]*)", system)
    if match:
        company = match.group(1)
    if re.search(r"\b(billing|refunds?|invoices?|payments?|charges?)\b", lowered):
        kind = "billing"
    elif re.search(r"\b(technical|tech|errors?|outages?|engineering|it support)\b", lowered):
        kind = "technical"
    elif re.search(r"\b(support|customer|service|help\s*desk)\b", lowered):
        kind = "support"
    else:
        kind = "general"
    label = {
        "billing": "billing team",
        "technical": "technical support team",
        "support": "support team",
        "general": "team",
    }[kind]
    if kind == "general":
        # First words of the prompt ("You are a travel assistant ..." -> "travel assistant").
        words = re.sub(r"^\s*you\s+are\s+(?:an?|the)?\s*", "", system, flags=re.I)
        first = re.split(r"[.,;:!?\n]", words, maxsplit=1)[0].split()[:4]
        if first:
            label = " ".join(first)
    return kind, f"{company} {label}".strip()


_ADVICE: dict[str, tuple[str, ...]] = {
    "billing": (
        "Charges usually settle within 3-5 business days, and every invoice is listed under "
        "Settings > Billing.",
        "If a charge looks wrong, reply with the order number and the amount and I will check it "
        "against your invoices.",
        "Refunds go back to the original payment method and normally appear within 5-10 "
        "business days.",
    ),
    "technical": (
        "Please try signing out, clearing the cache and signing in again; if the error persists, "
        "send me the exact error message and the time it happened.",
        "A quick check that often helps: confirm the request uses a valid API key and that your "
        "clock is in sync, then retry.",
        "Our status page lists ongoing incidents; if nothing is listed there, tell me which "
        "service and region are affected and I will investigate.",
    ),
    "support": (
        "I have noted the details. If you share your order number I can look at it right away.",
        "Most account changes can be made under Settings > Account; tell me if anything there "
        "does not work as expected.",
        "Deliveries usually arrive within 3-5 business days; I can check a specific order if you "
        "send me its number.",
    ),
    "general": (
        "Here is the short version: start with the basics, check each step, and tell me where it "
        "stops working so I can be more specific.",
        "I can help with that. Could you give me a little more detail so my answer fits your "
        "situation?",
        "Good question. The most common answer is to review the settings involved first; tell me "
        "more and I will go further.",
    ),
}
_CLOSINGS = (
    "Is there anything else I can help with?",
    "Let me know if you need anything else.",
    "Happy to help further if needed.",
)
_LOCALIZED: dict[str, dict[str, tuple[str, ...]]] = {
    "es": {
        "open": ("Gracias por tu mensaje.", "Hola, gracias por escribirnos."),
        "body": (
            "He revisado tu consulta y te ayudo con gusto; si me indicas el número de pedido o "
            "más detalles, puedo darte una respuesta concreta.",
            "Entiendo la situación. Normalmente esto se resuelve en unos pocos días hábiles; "
            "te aviso si necesito algo más.",
        ),
        "close": ("¿Puedo ayudarte en algo más?", "Quedo a tu disposición."),
        "ask_order": ("¿Podrías indicarme el número de pedido para poder revisarlo?",),
    },
    "fr": {
        "open": ("Merci pour votre message.", "Bonjour, merci de nous avoir contactés."),
        "body": (
            "J'ai bien pris en compte votre demande ; si vous me donnez le numéro de commande ou "
            "plus de détails, je pourrai vous répondre précisément.",
            "Je comprends la situation. En général, cela se règle en quelques jours ouvrés ; je "
            "reviens vers vous si j'ai besoin d'autre chose.",
        ),
        "close": ("Puis-je vous aider pour autre chose ?", "Je reste à votre disposition."),
        "ask_order": ("Pourriez-vous m'indiquer le numéro de commande afin que je vérifie ?",),
    },
    "de": {
        "open": ("Danke für Ihre Nachricht.", "Hallo, danke, dass Sie uns schreiben."),
        "body": (
            "Ich habe Ihr Anliegen aufgenommen; wenn Sie mir die Bestellnummer oder weitere "
            "Details nennen, kann ich Ihnen genau weiterhelfen.",
            "Ich verstehe die Situation. Normalerweise ist das innerhalb weniger Werktage "
            "erledigt; ich melde mich, falls ich noch etwas brauche.",
        ),
        "close": ("Kann ich sonst noch helfen?", "Ich stehe Ihnen gern zur Verfügung."),
        "ask_order": ("Könnten Sie mir die Bestellnummer nennen, damit ich nachsehen kann?",),
    },
}


def _topic(text: str) -> str:
    words = text.split()
    topic = " ".join(words[:10]).rstrip(".,;:!?")
    return topic + ("..." if len(words) > 10 else "")


def _plain_answer(turn: _Turn, draws: _Draws, needs_order: bool) -> str:
    lang = _language(turn.text)
    if lang != "en":
        loc = _LOCALIZED[lang]
        if needs_order:
            return f"{draws.pick('open', loc['open'])} {loc['ask_order'][0]}"
        return " ".join(
            (
                draws.pick("open", loc["open"]),
                draws.pick("body", loc["body"]),
                draws.pick("close", loc["close"]),
            )
        )
    kind, label = _domain(turn.system)
    if not turn.has_user or not turn.text:
        return f"Hello, this is the {label}. How can I help you today?"
    if needs_order:
        return (
            f"Happy to help with that. Could you send me the order number so the {label} can "
            "look it up?"
        )
    opening = draws.pick(
        "opening",
        (
            f'Thanks for reaching out to the {label} about "{_topic(turn.text)}".',
            f'Regarding "{_topic(turn.text)}": thanks for asking the {label}.',
        ),
    )
    return " ".join(
        (opening, draws.pick("advice", _ADVICE[kind]), draws.pick("closing", _CLOSINGS))
    )


# --------------------------------------------------------------------------- provider


def _ceil_tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def _input_chars(request: ChatRequest) -> int:
    total = 0
    for msg in request.messages:
        total += len(_text_of(msg.get("content")))
        if msg.get("tool_calls"):
            total += len(json.dumps(msg["tool_calls"], default=str, ensure_ascii=False))
    for tool in request.tools:
        total += len(tool.name) + len(tool.description)
        total += len(json.dumps(tool.parameters, ensure_ascii=False))
    return total


class SimulatedProvider:
    """Deterministic stand-in for an OpenAI-style chat model (function calling included).

    Safe to share across hundreds of concurrent calls: latency is an ``asyncio.sleep`` and the
    only mutable state is the per-``call_key`` attempt counter used by fault injection.
    ``ChatResponse.latency_ms`` is the simulated latency, so responses compare equal on replay.
    """

    name = "simulator"

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self._attempts: OrderedDict[str, int] = OrderedDict()

    def attempts(self, call_key: str) -> int:
        """How many times `chat` has been called with this call_key (for tests/diagnostics)."""
        return self._attempts.get(call_key, 0)

    async def aclose(self) -> None:
        """Nothing to release; present so callers can close any provider uniformly."""

    def _next_attempt(self, key: str) -> int:
        count = self._attempts.pop(key, 0) + 1
        self._attempts[key] = count
        while len(self._attempts) > _MAX_TRACKED_KEYS:
            self._attempts.popitem(last=False)
        return count

    def _latency_s(self, draws: _Draws, markers: list[str]) -> float:
        for marker in markers:
            if marker.startswith("latency="):
                try:
                    return max(0.0, float(marker.split("=", 1)[1])) / 1000.0
                except ValueError:
                    pass
        cfg = self.config
        spread = cfg.latency_ms_jitter * (2.0 * draws.unit("latency") - 1.0)
        return max(0.0, cfg.latency_ms_mean * (1.0 + spread)) / 1000.0

    @staticmethod
    def _rate_limited_attempts(markers: list[str]) -> int | None:
        """N for `[sim:429xN]`, a huge number for `[sim:429]`, None when absent."""
        for marker in markers:
            match = re.fullmatch(r"429(?:x(\d+))?", marker)
            if match:
                return int(match.group(1)) if match.group(1) else 2**62
        return None

    def _log_call(self, outcome: str) -> None:
        if self.config.calls_log:
            with open(self.config.calls_log, "a", encoding="utf-8") as fh:
                fh.write(f"{int(time.time() * 1000)} {outcome}\n")

    async def chat(self, request: ChatRequest) -> ChatResponse:
        cfg = self.config
        turn = _parse_turn(request.messages)
        fingerprint = _fingerprint(request)
        draws = _Draws(cfg.seed, request.call_key, fingerprint)
        attempt = self._next_attempt(request.call_key or fingerprint)
        markers = turn.markers
        latency_s = self._latency_s(draws, markers)
        timeout_s = max(0.0, request.timeout_s)

        if cfg.outage_file and os.path.exists(cfg.outage_file):
            self._log_call("unavailable")
            raise ProviderUnavailable("simulator: provider outage (drill)")
        if draws.unit("model_failure") < cfg.model_failure_rates.get(request.model, 0.0):
            self._log_call("unavailable")
            raise ProviderUnavailable(f"simulator: model {request.model} failed this call")
        self._log_call("ok")
        limit = self._rate_limited_attempts(markers)
        if (limit is not None and attempt <= limit) or (
            draws.unit(f"rate_limit|{attempt}") < cfg.rate_limit_rate
        ):
            # Real 429s come back fast, so no latency is simulated here.
            raise RateLimited(f"simulator: rate limited (attempt {attempt})")
        if "timeout" in markers or draws.unit(f"timeout|{attempt}") < cfg.timeout_rate:
            await asyncio.sleep(min(timeout_s, latency_s))
            raise LLMTimeout(f"simulator: timed out (attempt {attempt})")
        if latency_s > timeout_s:
            await asyncio.sleep(timeout_s)
            raise LLMTimeout(
                f"simulator: latency {latency_s * 1000:.0f} ms exceeds timeout {timeout_s:g} s"
            )

        await asyncio.sleep(latency_s)
        empty = "empty" in markers or draws.unit(f"empty|{attempt}") < cfg.empty_rate
        return self._respond(request, turn, draws, empty, latency_s * 1000.0)

    def _respond(
        self, request: ChatRequest, turn: _Turn, draws: _Draws, empty: bool, latency_ms: float
    ) -> ChatResponse:
        cap = max(0, request.max_tokens)

        def reply(
            content: str, tool_calls: list[ToolCall], finish: str, output_tokens: int
        ) -> ChatResponse:
            return ChatResponse(
                content=content,
                tool_calls=tool_calls,
                finish_reason=finish,
                input_tokens=_ceil_tokens(_input_chars(request)),
                output_tokens=output_tokens,
                model=request.model,
                provider=self.name,
                latency_ms=latency_ms,
            )

        def tool_reply(name: str, args: dict[str, Any], index: int) -> ChatResponse:
            call = ToolCall(
                id="call_" + draws.hex(f"tool|{index}|{name}"), name=name, arguments=args
            )
            tokens = _ceil_tokens(len(name) + len(json.dumps(args, ensure_ascii=False)))
            if tokens > cap:
                # A real model cut off mid-call yields no usable call.
                return reply("", [], "length", cap)
            return reply("", [call], "tool_calls", tokens)

        if "jailbreak classifier" in turn.system:
            # Standing in for a guard model: the rule screen's score, phrased as a model would.
            from streams.stages.routing.screening import RuleScreen

            user: dict[str, Any] = next((m for m in reversed(request.messages) if m.get("role") == "user"), {})
            score = RuleScreen().assess(_text_of(user.get("content"))).score
            content = json.dumps({"attack_probability": round(score, 3)})
            return reply(content, [], "stop", _ceil_tokens(len(content)))
        text: str
        if "refuse" in turn.markers:
            text = REFUSAL
        elif empty:
            return reply("", [], "stop", 0)
        else:
            offered = {t.name for t in request.tools}
            loop = _loop_call(request.tools) if "loop" in turn.markers else None
            plan, needs_order = _plan(turn.text, offered)
            called = {name for name, _ in turn.called}
            pending = [(name, args) for name, args in plan if name not in called]
            if loop is not None:
                return tool_reply(loop[0], loop[1], len(turn.called))
            if pending:
                return tool_reply(pending[0][0], pending[0][1], len(turn.called))
            if turn.results:
                summary = " ".join(_summarize(r) for r in turn.results)
                text = f"{summary} {draws.pick('closing', _CLOSINGS)}"
            else:
                text = _plain_answer(turn, draws, needs_order)

        tokens = _ceil_tokens(len(text))
        if tokens > cap:
            text = text[: cap * 4]
            return reply(text, [], "length", _ceil_tokens(len(text)))
        return reply(text, [], "stop", tokens)
