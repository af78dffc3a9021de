"""How the simulator words its answers: tool results summarized, the domain of the system prompt,
the user's language, advice and closings."""

from __future__ import annotations

import json
import re
from typing import Any

from streams.llm.simulator.draws import Draws
from streams.llm.simulator.parsing import ToolResult, Turn

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


def summarize(result: ToolResult) -> str:
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
CLOSINGS = (
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


def plain_answer(turn: Turn, draws: Draws, needs_order: bool) -> str:
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
        (opening, draws.pick("advice", _ADVICE[kind]), draws.pick("closing", CLOSINGS))
    )
