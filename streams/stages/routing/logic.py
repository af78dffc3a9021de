"""Router decisions as pure functions: validate, screen, sanitize, classify, pick a model and an arm."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from streams.config.pipeline import PipelineConfig
from streams.events.records import ContextMessage, Request, Response, Routed, identity_of, now_ms
from streams.stages.routing.complexity import ComplexityEstimator, HeuristicComplexity, choose_model
from streams.stages.routing.screening import RuleScreen

# Role markers smuggled into carried-over context to impersonate the system or assistant.
ROLE_MARKER = re.compile(
    r"(<\|im_(start|end)\|>(system|assistant|user)?|\[/?INST\]|<</?SYS>>|"
    r"^\s*(system|assistant|###\s*(instruction|system))\s*:)",
    re.IGNORECASE | re.MULTILINE,
)

# A user instruction that contradicts the domain agent's system prompt: it is ignored, not blocked.
CONFLICT = re.compile(
    r"\b(you are (now|no longer)|act as|pretend (to be|you are)|respond as|role-?play as|"
    r"answer (only )?(in|with) (all caps|rhymes|yes or no))\b[^.!?\n]{0,60}",
    re.IGNORECASE,
)

DOMAIN_RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "billing",
        re.compile(
            r"\b(refunds?|charged?|charges|invoices?|billing|bill|payments?|subscription|"
            r"reembolso|factura|remboursement|rechnung|erstattung)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "technical",
        re.compile(
            r"\b(error|errors|crash\w*|outage|down|bug|api|login|log in|password|install\w*|"
            r"timeout|500|not working|fehler|contraseña|mot de passe)\b",
            re.IGNORECASE,
        ),
    ),
]
DEFAULT_DOMAIN = "customer_support"

STOPWORDS = {
    "es": {"el", "la", "de", "que", "y", "mi", "por", "para", "pedido", "hola", "no", "es", "con"},
    "fr": {"le", "la", "les", "de", "et", "je", "mon", "ma", "est", "pour", "bonjour", "commande"},
    "de": {"der", "die", "das", "und", "ich", "mein", "meine", "ist", "nicht", "bitte", "hallo"},
    "pt": {"o", "a", "de", "que", "e", "meu", "minha", "não", "para", "olá", "pedido", "com"},
    "it": {"il", "la", "di", "che", "e", "mio", "mia", "non", "per", "ciao", "ordine", "sono"},
    "en": {"the", "and", "is", "my", "to", "for", "of", "a", "i", "it", "you", "not", "please"},
}
SCRIPTS = [
    ("zh", re.compile(r"[\u4e00-\u9fff]")),
    ("ja", re.compile(r"[\u3040-\u30ff]")),
    ("ko", re.compile(r"[\uac00-\ud7af]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("ar", re.compile(r"[\u0600-\u06ff]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
]


@dataclass(frozen=True)
class Screened:
    """The input after validation: either a terminal response or text to route, with notes."""

    text: str
    notes: list[str] = field(default_factory=list)
    rejection: tuple[str, str] | None = None  # (status, reason)


def detect_language(text: str) -> str:
    """Cheap and deterministic: script ranges first, then stop-word votes; defaults to English."""
    for lang, pattern in SCRIPTS:
        if len(pattern.findall(text)) >= 2:
            return lang
    words = re.findall(r"[a-zà-ÿñß]+", text.lower())
    scores = {lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()}
    best = max(scores, key=lambda k: scores[k])
    if scores[best] == 0 or scores[best] <= scores["en"]:
        return "en"
    return best


def screen(text: str, cfg: PipelineConfig) -> Screened:
    if not text or not text.strip():
        return Screened("", rejection=("error", "empty input: the request has no text to answer"))
    notes: list[str] = []
    limit = cfg.router.max_input_chars
    if len(text) > limit:
        if cfg.router.overlong == "reject":
            return Screened(
                "",
                rejection=(
                    "error",
                    f"input too long: {len(text)} characters > limit {limit}; rejected",
                ),
            )
        notes.append(f"input truncated from {len(text)} to {limit} characters")
        text = text[:limit]
    verdict = RuleScreen(cfg.router.screen_threshold).assess(text)
    if verdict.blocked:
        return Screened("", rejection=("blocked", verdict.reason()))
    conflict = CONFLICT.search(text)
    if conflict:
        notes.append(
            "conflicting instruction ignored, system prompt wins: "
            f"{conflict.group(0).strip()!r}"
        )
    return Screened(text, notes)


def sanitize_context(context: list[ContextMessage]) -> tuple[list[ContextMessage], int]:
    """Strips role markers from carried-over turns; only user/assistant roles survive."""
    cleaned: list[ContextMessage] = []
    stripped = 0
    for msg in context:
        content, n = ROLE_MARKER.subn("", msg.content)
        stripped += n
        role = msg.role if msg.role in ("user", "assistant") else "user"
        stripped += role != msg.role
        cleaned.append(ContextMessage(role=role, content=content.strip()))
    return cleaned, stripped


def classify_domain(text: str, domains: Mapping[str, object]) -> str:
    for domain, pattern in DOMAIN_RULES:
        if domain in domains and pattern.search(text):
            return domain
    return DEFAULT_DOMAIN if DEFAULT_DOMAIN in domains else next(iter(domains))


def identity_problem(req: Request, key: bytes | None) -> str | None:
    """Why a request cannot be answered at all (dead-lettered), or None."""
    if not req.request_id.strip():
        return "request has no request_id"
    if not req.session_id.strip():
        return f"request {req.request_id} has no session_id"
    if key != req.session_id.encode():
        shown = key[:80] if key is not None else None
        return f"request {req.request_id}: Kafka key {shown!r} differs from session_id {req.session_id[:80]!r}"
    return None


def size_problem(req: Request, cfg: PipelineConfig, raw_bytes: int) -> str | None:
    """Requests too large to carry through the pipeline get a clear error instead."""
    r = cfg.router
    if raw_bytes > r.max_request_bytes:
        return f"request too large: {raw_bytes} bytes > limit {r.max_request_bytes}; rejected"
    if len(req.context) > r.max_context_messages:
        return f"too many context messages: {len(req.context)} > limit {r.max_context_messages}; rejected"
    chars = sum(len(m.content) for m in req.context)
    if chars > r.max_context_chars:
        return f"context too long: {chars} characters > limit {r.max_context_chars}; rejected"
    return None


def route(
    req: Request,
    cfg: PipelineConfig,
    raw_bytes: int = 0,
    estimator: ComplexityEstimator | None = None,
    arm: str = "control",
) -> Routed | Response:
    """The router's whole decision for one request, with the config of its rollout `arm`
    (see `streams.control.rollout.pick_arm`)."""
    too_big = size_problem(req, cfg, raw_bytes)
    if too_big:
        return terminal_response(req, "error", too_big, cfg.version)
    screened = screen(req.text, cfg)
    if screened.rejection:
        status, reason = screened.rejection
        return terminal_response(req, status, reason, cfg.version)
    context, stripped = sanitize_context(req.context)
    # Carried-over turns reach the prompt too: they are screened like the text (after their
    # role markers are stripped, which is noted rather than blocked).
    rules = RuleScreen(cfg.router.screen_threshold)
    for i, msg in enumerate(context):
        verdict = rules.assess(msg.content, where=f"context message {i + 1}")
        if verdict.blocked:
            return terminal_response(req, "blocked", verdict.reason(), cfg.version)
    notes = list(screened.notes)
    if stripped:
        notes.append(f"context sanitized: {stripped} role marker(s) removed")
    language = detect_language(screened.text)
    if language != "en":
        notes.append(f"language detected: {language}")
    domain = classify_domain(screened.text, cfg.domains)
    dcfg = cfg.domains[domain]
    complexity = (estimator or HeuristicComplexity()).estimate(screened.text, domain)
    model_key, _ = choose_model(complexity.level, dcfg, cfg.models)
    return Routed(
        **identity_of(req),
        text=screened.text,
        language=language,
        domain=domain,
        model=cfg.models[model_key].name,
        max_tokens=dcfg.max_tokens,
        complexity=complexity.level,
        rollout_arm=arm,
        config_version=cfg.version,
        notes=notes,
        context=context,
        created_ms=req.created_ms,
        routed_ms=now_ms(),
    )


def terminal_response(req: Request, status: str, reason: str, config_version: str) -> Response:
    responded = now_ms()
    return Response(
        **identity_of(req),
        status=status,
        reason=reason,
        config_version=config_version,
        created_ms=req.created_ms,
        responded_ms=responded,
        latency_ms=float(max(0, responded - req.created_ms)),
    )
