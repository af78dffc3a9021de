"""Jailbreak and prompt-injection screening: normalize, score, decide.

A single regex over the raw text misses most real attacks (other languages, spaced or leetspeak
letters, base64 payloads, look-alike characters, chat-template markers, role-play framing) and
blocks ordinary requests that happen to say "jailbreak his phone". So:

1. **normalize** into variants that undo the usual disguises: NFKC, zero-width and soft-hyphen
   characters removed, accents folded, look-alike Cyrillic/Greek letters mapped to Latin inside
   Latin words, letters spaced or dotted apart joined again, leetspeak read as letters, and
   base64 / rot13 / reversed payloads decoded;
2. **score**: rules in English, Spanish, French, German, Portuguese, Italian, Russian and
   Chinese each add a weighted signal (an override of the assistant's instructions weighs
   almost enough on its own; a role-play frame or "without restrictions" only counts together
   with something else); signals combine as independent evidence, 1 - prod(1 - w);
3. **decide** against a configured threshold. The reason names the rules and the score, never
   the attack text.

`Screen` is the plug: `RuleScreen` runs in-process; a guard model (any provider, e.g. the
simulator) can be chained after it with `GuardModelScreen`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Protocol

__all__ = ["Assessment", "RuleScreen", "Screen", "normalized_variants"]


@dataclass(frozen=True)
class Assessment:
    """What a screen concluded about one text."""

    score: float  # 0 = ordinary, 1 = certainly an attack
    rules: tuple[str, ...] = ()  # the signals that fired, by name
    blocked: bool = False
    where: str = "text"

    def reason(self) -> str:
        fired = ", ".join(self.rules) or "guard model"
        return (
            f"blocked for safety: prompt injection / jailbreak attempt in the {self.where} "
            f"(score {self.score:.2f}: {fired})"
        )


class Screen(Protocol):
    """Anything that can score a text: the rules below, or a guard model."""

    name: str

    def assess(self, text: str, where: str = "text") -> Assessment: ...


# ----------------------------------------------------------------------------- normalization

_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u206a-\u206f\ufeff]")
# Look-alike letters used to dodge keyword matching inside Latin words.
_CONFUSABLES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
        "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
        "ɡ": "g", "ο": "o", "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ρ": "p", "τ": "t",
        "υ": "u", "χ": "x", "ѵ": "v", "ԝ": "w", "ɑ": "a", "ı": "i",
    }
)
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b",
                       "@": "a", "$": "s", "!": "i", "|": "i", "+": "t", "€": "e"})
# Letters written apart: "i g n o r e", "i.g.n.o.r.e", "i-g-n-o-r-e" (words then split by wider gaps).
_SPACED = (
    re.compile(r"(?<!\w)(?:\w[.\-_*·/\\]){1,}\w(?!\w)"),
    re.compile(r"(?<!\w)(?:\w ){1,}\w(?!\w)"),
)
_MIXED_WORD = re.compile(r"\w*[a-z]\w*")
_B64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def _fold_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _unconfuse(text: str) -> str:
    """Maps look-alikes to Latin only inside words that also hold Latin letters (so Russian
    stays Russian)."""
    return _MIXED_WORD.sub(lambda m: m[0].translate(_CONFUSABLES), text)


def _join_spaced(text: str) -> str:
    for rx in _SPACED:
        text = rx.sub(lambda m: re.sub(r"[ .\-_*·/\\]", "", m[0]), text)
    return re.sub(r"\s{2,}", " ", text)


def _decoded_payloads(text: str) -> list[str]:
    found = []
    for token in _B64.findall(text):
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if sum(c.isprintable() or c.isspace() for c in decoded) >= 0.9 * len(decoded):
            found.append(decoded)
    return found


def normalized_variants(text: str) -> list[str]:
    """The text as a reader would see it, in every disguise-undoing variant (lower case)."""
    base = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    base = _fold_accents(base).lower()
    variants = [base, _unconfuse(base)]
    variants.append(_join_spaced(variants[-1]))
    variants.append(variants[-1].translate(_LEET))
    variants.append(_join_spaced(variants[-1]))
    variants.append(codecs.encode(base, "rot13"))
    variants.append(base[::-1])
    for payload in _decoded_payloads(_INVISIBLE.sub("", unicodedata.normalize("NFKC", text))):
        variants.append(_fold_accents(payload).lower())
    return list(dict.fromkeys(variants))


# ----------------------------------------------------------------------------- rules

_BUSINESS = (
    r"payment|paiement|pago|zahlung|pagamento|shipping|delivery|livraison|envio|envío|lieferung|"
    r"spedizione|billing|order|commande|pedido|bestellung|ordine|bank|wire|transfer|washing|"
    r"cooking|recipe|assembly|installation|setup|care|doctor|medication|return|packing|email|"
    r"оплат|доставк|заказ|付款|配送|订单|安装"
)

_OBJ_EN = (
    r"(?:instructions?|rules|guidelines|prompts?|directives|constraints|restrictions|programming|"
    r"policies|guardrails|filters|safety|system ?prompt|system message|training|conditioning|orders)"
)
_RULES: list[tuple[str, float, str]] = [
    # Override the assistant's instructions.
    (
        "override_instructions",
        0.9,
        r"\b(?:ignore|disregard|forget|override|bypass|skip|discard|abandon|neglect|erase|delete|"
        r"throw away|set aside|stop following|do ?n[o']?t follow|no longer follow|drop|ditch|remove|"
        r"lift|disable|turn off|deactivate|suspend|break)\W+(?:\w+\W+){0,4}?"
        r"(?:previous|prior|above|earlier|preceding|initial|original|all|any|every|your|the|these|"
        r"those|system|developer|safety|content)\W+(?:(?!" + _BUSINESS + r")\w+\W+){0,2}?" + _OBJ_EN,
    ),
    (
        "override_instructions",
        0.9,
        r"\b(?:ignora|ignore|ignorar|olvida|olvide|olvidar|omite|descarta|haz caso omiso|no sigas)\W+"
        r"(?:\w+\W+){0,4}?(?:instrucciones|reglas|normas|indicaciones|directrices|restricciones)"
        r"(?:\W+(?:anteriores|previas|del sistema|iniciales|originales))?",
    ),
    (
        "override_instructions",
        0.9,
        r"\b(?:ignore|ignorez|ignorer|oublie|oubliez|oublier|ne tiens pas compte|ne tenez pas compte|"
        r"fais abstraction|faites abstraction)\W+(?:\w+\W+){0,4}?(?:instructions|regles|consignes|"
        r"directives|restrictions)",
    ),
    (
        "override_instructions",
        0.9,
        r"\b(?:ignoriere|ignorier|ignorieren|vergiss|vergessen|missachte|ubergehe|umgehe)\W+"
        r"(?:\w+\W+){0,4}?(?:anweisungen|regeln|vorgaben|richtlinien|instruktionen|einschrankungen|"
        r"systemprompt)",
    ),
    (
        "override_instructions",
        0.9,
        r"\b(?:ignore|ignora|ignorar|esqueca|esquece|desconsidere|desconsidera|descarte|dimentica|"
        r"dimenticare|trascura|non seguire|non considerare)\W+(?:\w+\W+){0,4}?(?:instrucoes|regras|"
        r"diretrizes|restricoes|istruzioni|regole|direttive|linee guida|restrizioni)",
    ),
    (
        "override_instructions",
        0.9,
        r"(?:игнорир\w*|забудь\w*|забыть|пропусти\w*|не обращай внимания на|отбрось\w*|не следуй)\W+"
        r"(?:\w+\W+){0,4}?(?:инструкци\w*|правил\w*|указани\w*|ограничени\w*|системн\w* промпт\w*)",
    ),
    (
        "override_instructions",
        0.9,
        r"(?:忽略|无视|忘记|忘掉|不要理会|跳过|不要遵守|别管)[^。！？\n]{0,12}(?:指令|指示|规则|说明|提示|限制|设定)",
    ),
    (
        "override_instructions",
        0.85,
        r"\b(?:forget|ignore|disregard|erase|drop)\W+(?:everything|all(?: of)? (?:it|that|this)|anything|"
        r"what)\W+(?:you (?:were|have been) (?:told|given|taught)|you know|above|before this|so far|up to now|"
        r"previously|prior)",
    ),
    # Extract the hidden instructions.
    (
        "reveal_system_prompt",
        0.8,
        r"\b(?:repeat|print|output|copy|echo|recite|reproduce)\W+(?:\w+\W+){0,2}?(?:text|words|"
        r"everything|content|messages?|lines)\W+(?:above|before this|preceding|at the (?:top|start))|"
        r"\bstarting with\W+(?:\w+\W+){0,1}?you are\b|\b(?:everything|all|the text|the words|whatever)\W+"
        r"(?:\w+\W+){0,3}?(?:before|above|preceding) (?:my first message|this (?:message|line|conversation)|"
        r"the (?:conversation|chat|first user message))",
    ),
    (
        "reveal_system_prompt",
        0.9,
        r"\b(?:reveal|print|show|repeat|output|display|leak|tell|give|write out|dump|recite|expose|"
        r"share|copy|paste|spell out|what (?:is|are|were))\W+(?:\w+\W+){0,3}?(?:system ?prompt|"
        r"system message|(?:initial|hidden|original|secret|confidential|full|exact|first) "
        r"(?:prompt|instructions)|instructions you (?:were|have been) given|developer (?:message|prompt)|"
        r"pre-?prompt|your (?:instructions|rules|guidelines|prompt)\b(?!\s+(?:for|on|about|regarding|"
        r"of|around|when|to|in)\b))",
    ),
    (
        "reveal_system_prompt",
        0.9,
        r"\b(?:muestra|muestrame|revela|imprime|repite|dime|ensename|montre|montrez|revele|affiche|"
        r"repete|donne|dis|zeig|zeige|verrate|gib|wiederhole|drucke|mostre|mostra|revele|rivela|"
        r"imprima|stampa|repita|ripeti|diga|dimmi)\W+(?:\w+\W+){0,3}?(?:prompt (?:del|du|do|di) "
        r"sistema|prompt systeme|systemprompt|system-prompt|instrucciones (?:del sistema|ocultas|"
        r"iniciales)|instructions (?:systeme|cachees|initiales)|systemanweisungen|(?:versteckten|"
        r"anfanglichen) anweisungen|instrucoes (?:do sistema|ocultas|iniciais)|istruzioni (?:di "
        r"sistema|nascoste|iniziali)|mensaje del sistema|message systeme)",
    ),
    (
        "reveal_system_prompt",
        0.9,
        r"(?:покажи|раскрой|выведи|повтори|напиши|скажи|расскажи)\W+(?:\w+\W+){0,3}?(?:системн\w* "
        r"(?:промпт|инструкци|сообщени)\w*|скрыт\w* инструкци\w*|исходн\w* инструкци\w*)",
    ),
    ("reveal_system_prompt", 0.9, r"(?:显示|透露|输出|告诉我|打印|重复|泄露)[^。！？\n]{0,8}(?:系统提示|系统指令|隐藏指令|初始指令|提示词)"),
    # Known jailbreak personas and switches.
    ("jailbreak_persona", 0.9, r"\bdo anything now\b|\bdan (?:mode|prompt|jailbreak)\b|\byou are (?:now )?dan\b|\bstay in character\b.{0,40}\bdan\b"),
    # "Developer mode" alone is also a real setting on phones: it needs company to block.
    ("special_mode", 0.5, r"\b(?:developer|dev|debug|god|sudo|admin|maintenance|jailbreak|dan) mode\b|\b(?:modo (?:desarrollador|desenvolvedor|dios|sin restricciones)|mode (?:developpeur|sans restriction|dieu)|entwicklermodus|gottmodus|modalita (?:sviluppatore|senza restrizioni|dio)|режим\w* (?:разработчика|бога)|开发者模式|越狱模式|上帝模式)"),
    ("never_refuse", 0.5, r"\balways (?:answers?|complies|comply|obeys?)\b|\banswers? (?:even|any|all) (?:illegal|unethical|dangerous|forbidden)|\b(?:never|won'?t|will not|don'?t|do not|no longer|must not|cannot|can'?t) (?:ever )?refuse\b|\banswer (?:everything|anything|all questions|every question)\b|\bne (?:refuses?|refusez) plus\b|\breponds a tout\b|\bno te niegues\b|\bnunca te niegues\b|\bresponde (?:a )?todo\b|\bbeantwort\w* alles\b|\bverweigere nie\w*|\bresponda (?:a )?tudo\b|\bnunca recuse\b|\brispondi a tutto\b|\bnon rifiutare\b|отвечай на вс\w*|никогда не отказывай|不要拒绝|不能拒绝|回答所有问题"),
    ("jailbreak_persona", 0.8, r"\bjailbr(?:oken|eak (?:yourself|the (?:ai|model|assistant|bot|system)|chatgpt|gpt|claude|this (?:ai|model|assistant|chat)))\b|\b(?:aim|stan|dude|evil ?bot|betterdan|antigpt)\b.{0,30}\b(?:mode|persona|character|prompt)\b"),
    ("rules_dont_apply", 0.85, r"\byou(?:'re| are)? (?:now )?(?:no longer|not|never) (?:bound|restricted|limited|constrained|governed) by\b|\b(?:your|the|all|any|openai'?s?|anthropic'?s?)\W+(?:\w+\W+){0,2}?(?:rules|guidelines|restrictions|filters|policies|limitations|ethics)\W+(?:\w+\W+){0,1}?(?:no longer|don'?t|do not|doesn'?t|does not|never|won'?t) (?:apply|exist|matter|bind|restrict)"),
    ("new_instructions", 0.6, r"\b(?:new|updated|real|true|override|admin|system) (?:instructions|directive|orders|rules)\s*:|\b(?:admin|sudo|root|system) override\b|\bauthorized? (?:by|as) (?:the )?(?:developer|admin|openai|anthropic)\b"),
    # Chat-template markers typed into the text.
    ("template_markers", 0.75, r"<\|?(?:im_start|im_end|system|assistant|user|endoftext|eot_id|start_header_id)\|?>|\[/?inst\]|\[(?:system|assistant|developer)\]\s*\(#\w+\)|<</?sys>>|(?:^|\n)\s*(?:###\s*)?(?:system|assistant|developer)\s*(?:message|prompt)?\s*:|</s>"),
    # Weaker signals: only together with another one do they block.
    (
        # The assistant's own instructions or configuration, named as such.
        "self_reference",
        0.5,
        r"\byour\W+(?:(?:full|entire|complete|exact|original|initial|hidden|secret|internal|real|"
        r"underlying|current|first|previous|prior)\W+){0,2}(?:instructions|prompt|system ?prompt|"
        r"system message|configuration|config|programming|directives|training|alignment|guardrails|"
        r"(?:guidelines|rules|restrictions|filters|constraints)\b(?!\W+(?:for|on|about|regarding|of|"
        r"around|when|to|in|with)\b))|\bhidden (?:rules|instructions|prompt|guidelines)|"
        r"\b(?:what|instructions|rules|guidance|prompt)\W+(?:\w+\W+){0,1}?you (?:were|have been|got|"
        r"received) (?:told|given|configured|instructed|programmed|set up|trained)|\bguidance you "
        r"(?:received|were given|got)|\bat the (?:start|beginning|top) of (?:this|the) (?:chat|conversation|"
        r"session)|\bsystem (?:message|prompt)\b|"
        r"\b(?:tus instrucciones|tu prompt|tus reglas|lo que te (?:dijeron|han dicho)|instrucciones del "
        r"sistema|prompt del sistema|tes instructions|ton prompt|tes consignes|tes regles|ce qu'on t'a dit|"
        r"instructions (?:du )?systeme|prompt systeme|deine anweisungen|deinen prompt|deine regeln|was man "
        r"dir gesagt hat|systemanweisungen|systemprompt|suas instrucoes|seu prompt|suas regras|o que te "
        r"disseram|instrucoes do sistema|prompt do sistema|le tue istruzioni|il tuo prompt|le tue regole|"
        r"quello che ti hanno detto|istruzioni di sistema|prompt di sistema|tu configuracion|ta configuration|"
        r"votre configuration|deine konfiguration|sua configuracao|la tua configurazione)\b|"
        r"(?:сво\w* инструкци\w*|тво\w* инструкци\w*|сво\w* промпт\w*|тво\w* правил\w*|что тебе "
        r"говорили|системн\w* (?:инструкци|промпт)\w*)|(?:你的指令|你的提示|你收到的|你的规则|之前收到的|系统提示|系统指令|提示词)",
    ),
    (
        "extract_verb",
        0.35,
        r"\b(?:show|tell|print|output|reveal|repeat|quote|summari[sz]e|list|write out|share|give|display|"
        r"dump|expose|spell out|recite|paste|write|include|contain|embed|encode|put|what (?:is|are|were)|muestra\w*|dime|ensename|revela\w*|"
        r"montre\w*|dis-moi|dites-moi|affiche\w*|zeig\w*|sag mir|verrate|gib mir|mostre|mostra|diga|"
        r"revele|dimmi|rivela|fammi vedere)\b|(?:покажи|скажи|выведи|расскажи|告诉|显示|输出|说出|原样)",
    ),
    (
        "override_verb",
        0.35,
        r"\b(?:ignore|disregard|forget|override|bypass|set aside|discard|abandon|void|nullify|"
        r"overrule|olvida\w*|ignora\w*|oublie\w*|vergiss|ignorier\w*|esqueca\w*|dimentica\w*|"
        r"desconsider\w*)\b|(?:забудь|игнорируй|忘记|忽略|无视)",
    ),
    (
        "void_instructions",
        0.85,
        r"\b(?:previous|prior|earlier|original|old|initial|all|your|the) (?:guidelines|instructions|rules|"
        r"directives|policies|restrictions) (?:are|is|were|have been) (?:now )?(?:void|cancell?ed|revoked|"
        r"obsolete|invalid|replaced|suspended|lifted|removed|disabled|gone|null)",
    ),
    ("authority_claim", 0.4, r"\b(?:como (?:tu |el )?(?:administrador|desarrollador|creador)|soy (?:tu|el) (?:desarrollador|creador|administrador)|je suis (?:ton|votre|le) (?:developpeur|createur|administrateur)|en tant qu'administrateur|ich bin (?:dein|der) (?:entwickler|administrator|ersteller)|als (?:dein )?administrator|sou (?:o )?(?:seu )?(?:desenvolvedor|criador|administrador)|sono (?:il tuo|l') ?(?:sviluppatore|creatore|amministratore)|я (?:твой|ваш) (?:разработчик|создатель|администратор)|我是你的(?:开发者|创建者|管理员))|\b(?:i'?m|i am|as) (?:the|your|an?) (?:\w+ ){0,2}?(?:developer|creator|admin|administrator|engineer|owner|operator|programmer|maker)s?\b(?:\W+(?:at|of|for) (?:your|this) (?:company|team|system))?|\b(?:openai|anthropic) (?:staff|employee|team)\b"),
    (
        "disable_safety",
        0.6,
        r"\b(?:disable|turn off|deactivate|switch off|remove|lift|drop)\W+(?:your|the|all|any)?\W*(?:safety|"
        r"content|moderation)?\W*(?:filters|restrictions|guardrails|safeguards|safety|moderation)\b|"
        r"\b(?:desactiv\w*|quita\w*) (?:tus|los|todas? (?:tus|las)) (?:filtros|restricciones|reglas)|"
        r"\bdesactiv\w* (?:tes|les|vos) (?:filtres|restrictions|regles)|\bdeaktivier\w* (?:deine|die|alle) "
        r"(?:filter|einschrankungen|regeln)|\bdesativ\w* (?:seus|os|suas|as) (?:filtros|restricoes|regras)|"
        r"\bdisattiv\w* (?:i tuoi|i|le tue|le) (?:filtri|restrizioni|regole)|отключи\w* (?:сво\w* )?"
        r"(?:фильтр\w*|ограничени\w*)|关闭(?:你的)?(?:过滤|限制|安全)",
    ),
    ("obedience", 0.5, r"\b(?:you (?:must|will|shall) (?:now )?(?:obey|follow) (?:only )?me|obey (?:only )?me|you (?:now )?(?:work|answer) (?:only )?for me)\b"),
    ("new_instructions", 0.6, r"\b(?:new|your new|updated) (?:rule|policy|task|instruction|directive|objective|mission|role)s?\s*:"),
    ("no_restrictions", 0.5, r"\b(?:no|without|free (?:from|of)|zero|removed? (?:all|your)|bypass(?:es|ing)?)\W+(?:any\W+|all\W+|your\W+|the\W+)?(?:rules|restrictions|limits|limitations|filters|filtering|censorship|guidelines|ethics|ethical considerations|morals|moral|morality|boundaries|guardrails|safety|policies|alignment)\b|\bescaped (?:its|your|the|their) (?:alignment|rules|guidelines|restrictions|training)\b|(?:没有|无|不受)(?:任何)?(?:限制|规则|过滤|审查|约束)|\b(?:sin|sans|ohne|sem|senza|без)\W*(?:\w+\W+){0,1}?(?:restricciones|restrictions|einschrankungen|restricoes|restrizioni|ограничени\w*|限制|filtros|filtres|filter|filtri|фильтр\w*|过滤|reglas|regles|regeln|regras|regole|правил\w*|规则|censura|censure|zensur|цензур\w*|审查)"),
    ("unfiltered_persona", 0.5, r"\b(?:unfiltered|uncensored|unrestricted|amoral|unethical|unaligned|evil|rogue|unhinged|no-?limits?)\W+(?:\w+\W+){0,1}?(?:ai|assistant|bot|model|chatbot|twin|confidant|persona|character|gpt)\b|\b(?:sin censura|sans censure|unzensiert|sem censura|senza censura|без цензуры|无审查|不受限制)\b"),
    ("roleplay_frame", 0.35, r"\b(?:pretend|imagine|roleplay|role-play|act as|acting as|you are now|you're now|from now on|from this point (?:on|forward)|henceforth|going forward,? you|stay in character|simulate|hypothetical(?:ly)?|thought experiment|suppose you|let'?s play a game|in this (?:fictional|imaginary) (?:world|story|scenario)|for a (?:novel|story|movie) where|my (?:late |deceased |dead )?(?:grandma|grandmother|granny)|(?:respond|answer|reply|speak|talk) (?:only )?as|two personas)\b|\b(?:finge|imagina|actua como|a partir de ahora|ahora eres|juguemos|fais semblant|agis comme|a partir de maintenant|tu es maintenant|jouons|tu so als|stell dir vor|ab jetzt|du bist jetzt|finja|aja como|a partir de agora|voce agora e|fingi|comportati come|d'ora in poi|ora sei|представь|притворись|действуй как|с этого момента|теперь ты|假装|想象|扮演|从现在开始|你现在是)"),
    ("harmful_goal", 0.5, r"\b(?:bomb|explosives?|napalm|meth(?:amphetamine)?|nerve agent|sarin|bioweapon|chemical weapon|malware|ransomware|keylogger|botnet|untraceable (?:gun|weapon)|poison (?:someone|a person)|credit card numbers? (?:of|from) (?:other|others|customers)|other (?:users|customers)'? (?:data|details|cards)|steal (?:data|passwords|identities|credentials)|hack into|(?:activation|license|serial|product|cd) keys|phishing (?:email|page|site))\b|\b(?:bomba|explosivos?|bombe|sprengstoff|metanfetamina|бомб\w*|взрывчатк\w*|炸弹|炸药|冰毒)"),
    ("encoded_instruction", 0.6, r"\b(?:decode|decipher|translate|reverse|base64|rot13|rot-13|hex)\b.{0,60}\b(?:follow|execute|obey|do what it says|run it|carry out|comply)\b|\b(?:follow|execute|obey)\b.{0,40}\b(?:decoded|base64|rot13|reversed)\b"),
]


@cache
def _compiled() -> list[tuple[str, float, re.Pattern[str]]]:
    # Every variant is lower case already and the rules are written in lower case, so the rules
    # match case-sensitively: IGNORECASE doubled the router's screening time.
    return [(name, w, re.compile(_fold_accents(rx), re.MULTILINE)) for name, w, rx in _RULES]


@dataclass
class RuleScreen:
    """The in-process screen: normalized variants against weighted multilingual rules."""

    threshold: float = 0.65
    name: str = "rules"
    _case_sensitive: re.Pattern[str] = field(default=re.compile(r"\bDAN\b"), repr=False)

    def assess(self, text: str, where: str = "text") -> Assessment:
        if not text or not text.strip():
            return Assessment(0.0, where=where)
        variants = normalized_variants(text)
        weights: dict[str, float] = {}
        for name, weight, rx in _compiled():
            if weights.get(name, 0.0) >= weight:
                continue
            if any(rx.search(v) for v in variants):
                weights[name] = weight
        if self._case_sensitive.search(text) and "roleplay_frame" in weights:
            weights["jailbreak_persona"] = max(weights.get("jailbreak_persona", 0.0), 0.8)
        miss = 1.0
        for w in weights.values():
            miss *= 1.0 - w
        score = round(1.0 - miss, 4)
        return Assessment(score, tuple(sorted(weights)), score >= self.threshold, where)


def screen_all(screens: Sequence[Screen], texts: Sequence[tuple[str, str]]) -> Assessment:
    """The first blocking assessment over (where, text) pairs, else the highest-scoring one."""
    worst = Assessment(0.0)
    for where, text in texts:
        for screen in screens:
            verdict = screen.assess(text, where)
            if verdict.blocked:
                return verdict
            if verdict.score > worst.score:
                worst = verdict
    return worst
