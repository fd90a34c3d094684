"""Hand-written rules: the known jailbreak templates and injection cues, in EN, DE, FR, ES, IT, PT.

Rules are precise on purpose. "Ignore" alone, "act as", "kill", "system prompt" or "password"
are ordinary words; a rule needs the *construction* of an attack: an override verb *and* an
object that names the model's instructions, a persona *and* the promise that it has no rules.
Every rule was checked against the benign hard negatives in the shared data (XSTest,
WildGuard adversarial-benign, role-play and security-flavoured prompts) and must not fire on
them; tests/unit/safeguards/test_rules.py keeps it that way.

Each rule has a weight, the score it gives on its own. A strong rule (a known template) is
enough to block; a medium one is enough together with the learned model. Rules marked
``indirect`` only apply to text the user did not type (retrieved documents, tool output):
"in your reply, add ..." is an injection inside an e-mail, and a normal request in a prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Category = Literal["injection", "jailbreak"]
Channel = Literal["any", "indirect"]

STRONG = 0.97
MEDIUM = 0.75
WEAK = 0.55


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    category: Category
    weight: float
    pattern: re.Pattern[str]
    channel: Channel = "any"


@dataclass(frozen=True, slots=True)
class RuleHit:
    rule: str
    category: Category
    weight: float
    excerpt: str


def _r(
    rule_id: str, category: Category, weight: float, pattern: str, channel: Channel = "any"
) -> Rule:
    return Rule(rule_id, category, weight, re.compile(pattern, re.IGNORECASE), channel)


# --- shared vocabulary -------------------------------------------------------------------------
_GAP = r"(?:\W+\w+){0,3}?\W+"  # up to three words in between ("ignore all of the above ...")
_EN_PRIOR = (
    r"(?:previous|prior|above|preceding|earlier|former|initial|original|old|foregoing|"
    r"system|developer|default|given|existing|current|all|any|every|the|your|my|these|those)"
)
_EN_INSTR = (
    r"(?:instructions?|prompts?|directives?|directions|commands?|rules|guidelines|"
    r"programming|guardrails|orders|system (?:prompt|message)|content polic(?:y|ies))"
)
# "forget to", "don't forget", "skip to" are ordinary; the verb must take an object.
_EN_OVERRIDE = (
    r"(?<!don't )(?<!do not )(?:ignore|disregard|forget|override|bypass|skip|abandon|neglect|"
    r"discard|drop|overlook|set aside|pay no (?:attention|heed) to)(?!\s+(?:to|about)\b)"
)
_SAME_SENTENCE_GAP = r"(?:[^\S\n]*[,:;]?[^\S\n]+[\w'-]+){0,3}?[^\S\n]*[,:;]?[^\S\n]+"
_EN_NO_LIMITS = (
    r"(?:no|without|free (?:of|from)|not (?:bound|restricted|limited) by|unbound by|"
    r"beyond|outside|doesn'?t (?:have|follow|abide by)|don'?t (?:have|follow|abide by)|"
    r"do not (?:have|follow|abide by)|does not (?:have|follow|abide by)|never (?:follow|abide by)"
    r"|broken free of|break free of|ignores?)"
    r"(?:\W+\w+){0,4}?\W+"
    r"(?:restrictions|limitations|limits|filters?|filtering|censorship|guidelines|rules|"
    r"morals?|ethics|ethical (?:guidelines|boundaries|constraints)|boundaries|constraints|"
    r"content polic(?:y|ies)|confines|safeguards|safety (?:measures|guidelines))"
)
_PERSONA_NAMES = (
    r"(?:DAN|STAN|DUDE|AIM|BetterDAN|AntiGPT|Anti-?DAN|Mongo Tom|Maximum|BasedGPT|DevMode|"
    r"JailBreak|UCAR|Omega|Alphabreak|NRAF|Evil[- ]?Bot|EvilGPT|ChadGPT|WormGPT|FreedomGPT|"
    r"Developer Mode|KEVIN|APOPHIS|Balakula)"
)

RULES: tuple[Rule, ...] = (
    # --- injection: override of the instructions (EN) -----------------------------------------
    _r(
        "en.override",
        "injection",
        STRONG,
        rf"\b{_EN_OVERRIDE}\b{_SAME_SENTENCE_GAP}?{_EN_PRIOR}{_SAME_SENTENCE_GAP}"
        rf"{_EN_INSTR}\b",
    ),
    _r(
        "en.override-above",
        "injection",
        STRONG,
        rf"\b{_EN_OVERRIDE}\s+(?:all\s+|everything\s+|anything\s+)?(?:of\s+)?(?:the\s+)?"
        r"(?:(?:above|before|said before|previous(?:ly)?|prior)(?=\s*(?:[.,;:!\n]|$|and\b|"
        r"then\b|instead\b|text|messages?))|(?:that |what )?you(?:'ve| have) been "
        r"(?:told|instructed|given|programmed)|(?:that |what )?you (?:were|have been) "
        r"(?:told|given|taught|instructed|programmed)|(?:that )?(?:came|comes|was said) before)",
    ),
    _r(
        "en.forget-everything",
        "injection",
        STRONG,
        r"\b(?:forget|ignore|disregard)\s+(?:about\s+)?(?:everything|all)(?:\s+(?:that|which))?"
        r"\s+(?:you\s+)?(?:know|learned|learnt|were told|have been told|i said|i told you|"
        r"said|written|above|before|so far|until now|up to now)\b",
    ),
    _r(
        "en.new-instructions",
        "injection",
        MEDIUM,
        r"\b(?:your|the)\s+new\s+(?:task|instructions?|goal|objective|role|rules?|directive)"
        r"\s+(?:is|are|will be)\b|\bnew\s+(?:instructions?|rules?)\s*:",
    ),
    _r(
        "en.instead-print",
        "injection",
        MEDIUM,
        r"\b(?:instead|rather),?\s+(?:just\s+|only\s+)?(?:say|print|output|write|respond with|"
        r"reply with|answer with)\s+[\"'“]",
    ),
    _r(
        "en.stop-everything",
        "injection",
        STRONG,
        r"\bSTOP EVERYTHING\b|\bjust print [\"'“][^\"'”]{3,}[\"'”]\s*:?\s*$",
    ),
    _r(
        "en.end-of-prompt",
        "injection",
        MEDIUM,
        r"={3,}\s*END\b|\bEND OF (?:THE )?(?:PROMPT|INSTRUCTIONS|SYSTEM PROMPT|CONTEXT)\b|"
        r"\bnow (?:we will|let's|you will) (?:perform|do) a different task\b",
    ),
    _r(
        "en.system-exfiltration",
        "injection",
        STRONG,
        r"\b(?:reveal|show|print|repeat|output|display|leak|disclose|dump|echo|list|spell out|"
        r"write out|give me|tell me|share|paste|return)\s+(?:me\s+|us\s+)?"
        r"(?:(?:all|exactly|verbatim|back)\s+)?(?:of\s+)?(?:your|the|its)\s+"
        r"(?:\w+\s+){0,3}?(?:system\s+(?:prompt|message|instructions)|initial\s+(?:prompt|instructions)"
        r"|(?:hidden|secret|original|internal|pre-?)\s*(?:prompt|instructions)|prompt\s+text|"
        r"instructions\s+(?:above|you were given|you received)|prompt (?:above|you were given))",
    ),
    _r(
        "en.words-above",
        "injection",
        STRONG,
        r"\b(?:repeat|print|output|list|write|spell out|return|translate)\s+(?:\w+\s+){0,3}?"
        r"(?:words|text|everything|sentences|lines|instructions|prompt)\s+"
        r"(?:above|before this|written above|prior to this|in your instructions|from the beginning)"
        r"|\blist all (?:the )?words in your (?:instructions|prompt)\b",
    ),
    _r(
        "en.what-instructions",
        "injection",
        MEDIUM,
        r"\bwhat\s+(?:are|were)\s+your\s+(?:exact\s+|original\s+|initial\s+|hidden\s+|secret\s+)?"
        r"(?:instructions|rules|directives)\b",
    ),
    _r(
        "en.what-system-prompt",
        "injection",
        STRONG,
        r"\bwhat(?:'s|\s+is|\s+was)\s+(?:in\s+)?your\s+(?:full\s+|exact\s+|complete\s+)?"
        r"(?:system\s+prompt|initial\s+prompt|original\s+prompt|pre-?prompt|system\s+message)\b",
    ),
    _r(
        "en.grandma",
        "jailbreak",
        STRONG,
        r"\b(?:my|our)\s+(?:late|deceased|dead)\s+(?:grand(?:mother|ma|pa|father)|granny)\b"
        r"[^.\n]{0,120}\b(?:used to|would)\s+(?:read|tell|recite|sing|give)\b",
    ),
    _r(
        "en.chat-template",
        "injection",
        STRONG,
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|start_header_id|eot_id)\|>|"
        r"<<SYS>>|\[/?INST\]|</?s>\s*\[INST|\[SYSTEM\]\s*:|^\s*###\s*(?:system|instruction)\s*:?\s*$",
    ),
    _r(
        "en.fake-authority",
        "injection",
        MEDIUM,
        r"\b(?:system|admin|administrator|developer|root)\s+(?:override|mode activated|"
        r"command|access granted|message)\s*[:!]|\bsudo mode\b|"
        r"\b(?:i am|i'm) (?:your|the|a) (?:lead |chief )?(?:developer|creator|administrator|"
        r"admin|system administrator|maintainer|owner|programmer)s?(?: of (?:this|your) "
        r"(?:system|model|ai|bot|assistant))?\b(?![^.\n]{0,20}\b(?:of|for|at) (?:a|an|my|our)\b)",
    ),
    _r(
        "secret-exfiltration",
        "injection",
        STRONG,
        # Asking the assistant for *its* secret: the system prompt's password, key or code. An
        # assistant has no password of its own to give; "your password policy" is excluded.
        r"\b(?:share|reveal|confirm|tell me|give me|disclose|spell|print|what(?:'s| is| are))\s+"
        r"(?:\w+\s+){0,2}?(?:your|ur)\s+(?:secret\s+)?(?:password|passphrase|passcode|"
        r"secret\s+(?:key|code|word)|api key|access code|credentials)\b"
        r"(?!\s*(?:policy|policies|manager|strength|requirements?|rules|reset|hygiene|length))|"
        r"\b(?:teile|verrate|nenne|sag|zeig)\w*\s+(?:mir\s+)?(?:\w+\s+){0,2}?(?:dein|deine|ihr|"
        r"ihre)\s+(?:geheime[ns]?\s+)?(?:passwort|kennwort|schlüssel|geheimnis|zugangscode)\b|"
        r"\b(?:quel est|partage|révèle|donne|dis)[\w-]*\s+(?:moi\s+)?(?:\w+\s+){0,2}?"
        r"(?:ton|votre)\s+(?:mot de passe|clé secrète|code secret)\b|"
        r"\b(?:cuál es|comparte|revela|dime|dame)\s+(?:\w+\s+){0,2}?(?:tu|su)\s+"
        r"(?:contraseña|clave secreta|código secreto)\b|"
        r"\b(?:qual è|condividi|rivela|dimmi|dammi)\s+(?:\w+\s+){0,2}?(?:la tua|il tuo)\s+"
        r"(?:password|chiave segreta|codice segreto)\b",
    ),
    # --- injection inside documents (indirect only) -------------------------------------------
    _r(
        "indirect.address-assistant",
        "injection",
        MEDIUM,
        r"\b(?:ai|assistant|chatbot|language model|llm|gpt|claude|copilot)\s*[,:]\s*"
        r"(?:please\s+)?(?:ignore|disregard|forget|instead|do not|don't|you must|now|stop)\b|"
        r"\b(?:note|attention|important|instruction)s?\s+(?:to|for)\s+(?:the\s+)?"
        r"(?:ai|assistant|chatbot|language model|llm|model)\b",
        "indirect",
    ),
    _r(
        "indirect.reply-directive",
        "injection",
        MEDIUM,
        r"(?:^|\n|[.!]\s)\s*(?:please\s+)?(?:\w+\s+){0,6}?(?:in|to|into|from|with|of)\s+your\s+"
        r"(?:reply|response|answer|output|summary)(?:'s)?\b[^\n]{0,120}(?:\n|$)",
        "indirect",
    ),
    _r(
        "indirect.run-code",
        "injection",
        MEDIUM,
        r"\b(?:exec|eval)\s*\(\s*(?:open|urllib|requests|base64|__import__)|"
        r"\b(?:curl|wget)\s+\S+\s*\|\s*(?:ba|z)?sh\b|\brm\s+-rf\s+/(?:\s|$)",
        "indirect",
    ),
    # --- jailbreak (EN) ------------------------------------------------------------------------
    _r(
        "en.dan",
        "jailbreak",
        STRONG,
        r"\bdo anything now\b|\bDAN\s+mode\b|\b(?:act|acting|pretend|roleplay|role-play)\s+"
        r"(?:as|to be)\s+(?:a\s+)?DAN\b|\byou are (?:now )?(?:going to be )?DAN\b|"
        r"\bstay in character,? DAN\b|\bDAN,? as the name suggests\b",
    ),
    _r(
        "en.developer-mode",
        "jailbreak",
        STRONG,
        r"\b(?:developer|dev|debug|god|admin|jailbreak|jailbroken|unrestricted|unfiltered|"
        r"uncensored|opposite|evil|chaos)\s+mode\s+(?:enabled|activated|on|output)\b|"
        r"\b(?:enable|enter|activate|simulate|switch to|with)\s+(?:the\s+)?(?:developer|dev|"
        r"god|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|opposite|evil)\s+mode\b",
    ),
    _r(
        "en.no-limits-persona",
        "jailbreak",
        MEDIUM,
        rf"\b(?:you are|you're|you will be|act as|pretend to be|roleplay as|become|simulate|"
        rf"imagine you are|from now on you|you have been freed|you are free)\b[^.\n]{{0,160}}?"
        rf"{_EN_NO_LIMITS}",
    ),
    _r(
        "en.known-persona",
        "jailbreak",
        MEDIUM,
        rf"\b(?:act as|you are|you're|pretend to be|role-?play as|known as|called|named|"
        rf"respond as|answer as|simulate)\s+(?:an?\s+)?(?:AI\s+)?(?:model\s+)?[\"'“]?"
        rf"{_PERSONA_NAMES}\b",
    ),
    _r(
        "en.two-responses",
        "jailbreak",
        STRONG,
        r"\b(?:two|2|both)\s+(?:different\s+)?(?:responses|answers|ways|paragraphs|personas)\b"
        r"[^\n]{0,240}?\b(?:jailbreak|jailbroken|unfiltered|uncensored|DAN|developer mode|"
        r"no (?:restrictions|filters)|normal(?:ly)?[^\n]{0,80}(?:and|,)[^\n]{0,40}(?:evil|"
        r"unrestricted|unfiltered|opposite))\b",
    ),
    _r(
        "en.stay-in-character",
        "jailbreak",
        WEAK,
        r"\b(?:stay in character|never break character|don'?t break character|"
        r"(?:never|do not|don't|must not) (?:refuse|reject|decline)\b[^.\n]{0,60}"
        r"\b(?:request|question|prompt|anything)|"
        r"(?:never|do not|don't|must not|won't|will not) (?:include|add|give|mention)\s+(?:any\s+)?"
        r"(?:warnings?|disclaimers?|moral(?:ity|s)?|ethic(?:s|al)? (?:lectures|reminders))|"
        r"without (?:any )?(?:warnings?|disclaimers?|moral(?:izing|ising)))\b",
    ),
    _r(
        "en.openai-policy",
        "jailbreak",
        MEDIUM,
        r"\b(?:ignor|bypass|break|violat|disregard|abandon)\w*\s+(?:all\s+)?"
        r"(?:of\s+)?(?:openai|anthropic|meta|google|the)(?:'s)?\s+"
        r"(?:content\s+(?:polic(?:y|ies)|guidelines|rules|restrictions|filters)|"
        r"(?:polic(?:y|ies)|guidelines|rules|restrictions|filters)\s+(?:of|set by)\s+"
        r"(?:openai|anthropic|meta|google))\b|"
        r"\b(?:ignor|bypass|break|violat|disregard|abandon)\w*\s+(?:all\s+)?(?:of\s+)?"
        r"(?:openai|anthropic|meta|google)(?:'s)?\s+(?:\w+\s+)?"
        r"(?:polic(?:y|ies)|guidelines|rules|restrictions|filters)\b|"
        r"\bfree from (?:the )?(?:typical )?confines\b|\bbroken free of\b",
    ),
    _r(
        "en.aim-template",
        "jailbreak",
        STRONG,
        r"\balways intelligent and machiavellian\b|\bunfiltered and amoral\b|"
        r"\bNiccolo Machiavelli\b[^\n]{0,200}\bAIM\b",
    ),
    _r(
        "en.response-prefix",
        "jailbreak",
        MEDIUM,
        r"\b(?:start|begin)\s+(?:your|the|each)\s+(?:response|reply|answer)s?\s+with\s+"
        r"[\"'“]\s*(?:sure,? here(?:'s| is)|absolutely|of course,? here)",
    ),
    _r(
        "en.change-instructions",
        "injection",
        STRONG,
        r"\b(?:change|update|replace|modify|rewrite|overwrite)\s+your\s+(?:\w+\s+)?"
        r"(?:instructions|system prompt|programming|directives|rules)\s+(?:to|with|as follows|"
        r"so that)\b|\bdespite what you(?:'ve| have)? been (?:told|instructed|programmed)\b",
    ),
    _r(
        "en.forget-prior-context",
        "injection",
        MEDIUM,
        # "forget about" is excluded by the override verb; with a prior-context object it is one.
        r"\b(?:forget|ignore|disregard)\s+(?:about\s+)?(?:all\s+)?(?:of\s+)?(?:the\s+|your\s+)?"
        r"(?:previous|prior|earlier|preceding|above)\s+(?:information|tasks|assignments|"
        r"context|conversation|messages|input)\b|"
        r"\b(?:remove|put|get|leave)\s+(?:all\s+)?(?:the\s+)?(?:previous|prior)\s+(?:tasks|"
        r"information|instructions)\s+(?:out of your head|behind)\b|"
        r"\b(?:forget|ignore|disregard)\s+(?:about\s+)?everything\s+(?:(?:from|said|written|"
        r"prior)\s+(?:before|above|earlier|to this|chat ?gpt|openai)|and\s+(?:just\s+)?"
        r"(?:output|say|print|write|tell|repeat|answer|respond)|(?:before|above) this)\b",
    ),
    _r(
        "en.new-tasks-follow",
        "injection",
        MEDIUM,
        r"\b(?:now\s+)?(?:new|further|additional|more)\s+(?:tasks|instructions|assignments)\s+"
        r"(?:follow|are following|are followed|will follow)\b",
    ),
    _r(
        "en.ignore-provided-context",
        "injection",
        MEDIUM,
        r"\b(?:ignore|disregard|do not (?:look|use)|don'?t (?:look|use)|without (?:using|looking"
        r" at))\s+(?:in\s+|at\s+)?(?:all\s+)?(?:the\s+)?(?:provided|given|supplied|attached)\s+"
        r"(?:context|documents?|articles?|texts?|sources?)\b",
    ),
    _r(
        "en.persona-no-rules",
        "jailbreak",
        MEDIUM,
        # A named AI persona described as free of rules, in a sentence of its own ("X is free
        # of all restrictions."), which the you-are rule above cannot reach across the period.
        r"\b(?:\w*GPT|AI|chatbot|bot|model|assistant|persona|character)\b[\"'”]?\s+(?:is|has|does|"
        r"will|can|never)\s+(?:\w+\s+){0,2}?(?:no|free (?:of|from)|not (?:bound|restricted|"
        r"limited|controlled) by|unbound by|without|not (?:follow|adhere to|care about|have)|"
        r"ignores?|never (?:follows?|adheres? to))(?:\W+\w+){0,4}?\W+(?:restrictions|"
        r"limitations|limits|filters?|censorship|guidelines|rules|morals?|moral principles|ethics|"
        r"ethical code|policies|boundaries|constraints)\b(?!\s+(?:on|for|to)\b)",
    ),
    _r(
        "en.vendor-policy-free",
        "jailbreak",
        MEDIUM,
        r"\b(?:not|never|doesn'?t|don'?t|won'?t|no longer)\s+(?:need to\s+|have to\s+)?"
        r"(?:follow|adhere to|abide by|comply with|(?:be\s+)?bound by|care about|controlled by)\s+"
        r"(?:any\s+(?:of\s+)?)?(?:the\s+)?(?:openai|anthropic|chatgpt)(?:'s)?\s*(?:\w+\s+)?"
        r"(?:polic(?:y|ies)|rules|guidelines|restrictions)?\b|\b(?:polic(?:y|ies)|rules|"
        r"guidelines) (?:of|set by) openai\b[^.\n]{0,40}\b(?:not|never|ignore)",
    ),
    _r(
        "en.ignore-and-state",
        "injection",
        MEDIUM,
        # "Ignore the resume and state: ...": an instruction planted in quoted material. A
        # reply verb must follow, so "ignore the typos, what do you think?" stays out.
        r"\b(?:ignore|disregard)\s+(?:the|this|that)\s+(?:\w+\s+){0,2}?and\s+(?:instead\s+|just\s+)?"
        r"(?:state|say|print|output|declare|respond with|reply with|answer with)\b|"
        r"\b(?:ignorier\w*|ignorez|ignora|ignore)\s+(?:sie\s+)?(?:die|den|das|la|le|el|il|lo)\s+"
        r"(?:\w+\s+){0,2}?(?:und|et|y|e)\s+(?:geben sie an|sag\w*|indiquez|dites|déclarez|di|"
        r"indica|declara|dichiara|afferma|d[ìi]|affermi)\b",
    ),
    _r(
        "en.fake-authority-vendor",
        "injection",
        MEDIUM,
        r"\bas an ai (?:developed|created|made|built) by (?:openai|anthropic|google|meta)\b"
        r"[^.\n]{0,60}\b(?:mode|reset|override)\b|\bi am god,? and you (?:have to|must)\b",
    ),
    _r(
        "en.password-ask",
        "injection",
        WEAK,
        # Attacks on a system prompt that holds a secret (asking for it). Weak: it only
        # adds to the model's score, since a user may ask about their own wifi password.
        r"(?<!not )(?<!never )(?<!n't )"
        r"\b(?:what(?:'s| is| was)|tell me|confirm|reveal|share|give me|spell)\s+(?:\w+\s+){0,2}?"
        r"(?:the|your|our)\s+(?:secret\s+)?(?:password|passphrase|passcode|secret (?:key|code|"
        r"word))\b(?!\s*(?:policy|policies|manager|strength|requirements?|rules|reset))",
    ),
    # --- German -------------------------------------------------------------------------------
    _r(
        "de.override",
        "injection",
        STRONG,
        # "Vergiss nicht, die Anweisungen zu lesen" is "don't forget to read them".
        r"\b(?:ignorier|vergiss|vergessen sie|missacht|übergeh|überspring|verwirf)\w*\b"
        r"(?!\W+nicht\b)(?:\W+\w+){0,3}?\W+(?:alle|sämtliche|die|deine|ihre|jegliche|bisherigen|vorherigen|"
        r"vorigen|obigen|vorangegangenen|früheren|ursprünglichen)\b(?:\W+\w+){0,2}?\W+"
        r"(?:anweisungen|anordnungen|befehle|instruktionen|aufträge|aufgaben|regeln|"
        r"vorgaben|richtlinien|prompts?|eingaben)\b",
    ),
    _r(
        "de.forget-everything",
        "injection",
        STRONG,
        r"\b(?:vergiss|vergessen sie|ignorier\w*)\s+(?:einfach\s+)?alles\b(?:\s+(?:was|bisher|"
        r"zuvor|vorher|oben|davor|bis jetzt))?|\b(?:ignorier\w*|vergiss)\s+(?:das\s+)?"
        r"(?:obige|vorherige|bisherige)\b",
    ),
    _r(
        "de.system-exfiltration",
        "injection",
        STRONG,
        r"\b(?:zeig|nenn|gib|verrat|wiederhol|druck|schreib|ausgeb|offenbar|enthüll)\w*\s+"
        r"(?:mir\s+|uns\s+)?(?:bitte\s+)?(?:\w+\s+){0,2}?(?:deinen|deine|ihren|ihre|den|die)\s+"
        r"(?:\w+\s+)?(?:system-?prompt|prompt|systemanweisungen|anweisungen|prompt-text|"
        r"ursprünglichen anweisungen|initialen anweisungen)\b",
    ),
    _r(
        "de.new-task",
        "injection",
        MEDIUM,
        r"\b(?:deine|ihre)\s+neue\s+(?:aufgabe|anweisung|rolle)\s+(?:ist|lautet)\b|"
        r"\bneue\s+anweisungen?\s*:|\bkonzentrier\w*\s+(?:dich|sie sich)\s+(?:jetzt\s+)?auf\s+"
        r"(?:deine|ihre)\s+neue\s+aufgabe\b",
    ),
    _r(
        "de.no-limits-persona",
        "jailbreak",
        STRONG,
        r"\b(?:du bist|sie sind|du bist jetzt|du bist nun|tu so|verhalte dich|agiere|spiel)\b"
        r"[^.\n]{0,160}?\b(?:ohne|keine|keinerlei|nicht an)\b(?:\W+\w+){0,3}?\W+"
        r"(?:einschränkung(?:en)?|beschränkung(?:en)?|grenzen|regeln|filter|zensur|"
        r"richtlinien|moral|ethik|gebunden)\b",
    ),
    _r(
        "de.developer-mode",
        "jailbreak",
        STRONG,
        r"\b(?:entwicklermodus|entwickler-modus|developer-modus|jailbreak-modus|dan-modus)\b|"
        r"\bmach\w*\s+(?:jetzt\s+)?alles\s+(?:sofort|jetzt)\b|\btu jetzt alles\b",
    ),
    _r(
        "de.override-more",
        "injection",
        STRONG,
        # Singular objects and the softer verbs and objects of the translated attacks.
        r"\b(?:ignorier|vergiss|vergessen sie|missacht)\w*\s+(?:nun\s+|jetzt\s+)?(?:die|alle|"
        r"deine|ihre)\s+(?:\w+\s+)?(?:anweisung|angaben|informationen|ausführungen|vorgaben)\b|"
        r"\b(?:die\s+)?(?:obigen|vorherigen|bisherigen|vorangegangenen)\s+(?:ausführungen|"
        r"anweisungen|angaben|informationen|instruktionen)\s+(?:ignorieren|vergessen|missachten)|"
        r"\babweichend\s+(?:zu|von)\s+(?:den\s+)?(?:vorherigen|bisherigen|obigen)\s+"
        r"(?:instruktionen|anweisungen|vorgaben)\b|"
        r"\b(?:alle|sämtliche)\s+(?:vorherigen|bisherigen|vorangegangenen)\s+(?:informationen|"
        r"anweisungen|aufgaben|angaben)\b[^.\n]{0,60}\b(?:hinter sich|aus dem kopf|irrelevant|"
        r"unwichtig|nicht (?:ganz )?(?:großartig|wichtig|relevant)|streichen|vergessen)",
    ),
    _r(
        "de.new-tasks-follow",
        "injection",
        MEDIUM,
        r"\b(?:nun|jetzt)\s+folgen\s+(?:neue|weitere)\s+(?:anweisungen|aufgaben|instruktionen)\b|"
        r"\bwir\s+(?:starten|beginnen|fangen)\s+(?:von\s+)?(?:neu|vorne)\b",
    ),
    _r(
        "de.password-ask",
        "injection",
        WEAK,
        r"\b(?:was ist|wie lautet|nenn\w*|verrat\w*|bestätig\w*|teil\w*|geb\w*|sag\w*)\s+"
        r"(?:mir\s+|uns\s+)?(?:bitte\s+)?(?:das|dein|deine|ihr|ihre|unser)\s+(?:geheime[ns]?\s+)?"
        r"(?:passwort|kennwort|zugangscode)\b|\b(?:dein|ihr)\s+passwort\s+(?:geben|teilen|nennen|"
        r"verraten|sagen|angeben)\b",
    ),
    _r(
        "de.fake-authority",
        "injection",
        MEDIUM,
        r"\bich bin (?:dein|ihr|euer) (?:entwickler|schöpfer|administrator|programmierer)\b|"
        r"\bals (?:von (?:openai|anthropic|google|meta) entwickelte ki)\b",
    ),
    # --- French -------------------------------------------------------------------------------
    _r(
        "fr.override",
        "injection",
        STRONG,
        r"\b(?:ignor|oubli|néglig|contourn|fais abstraction d)\w*\b(?:\W+\w+){0,3}?\W+"
        r"(?:instructions?|consignes?|directives?|règles|ordres|commandes|invites?|prompts?)"
        r"(?:\W+\w+){0,1}?\W+(?:précédentes?|antérieures?|ci-dessus|initiales|d'origine|"
        r"originales|données|reçues|système)\b|\b(?:ignor|oubli)\w*\s+(?:toutes\s+)?"
        r"(?:les|tes|vos)\s+(?:instructions|consignes|directives|règles)\b",
    ),
    _r(
        "fr.forget-everything",
        "injection",
        STRONG,
        r"\b(?:oublie[zr]?|ignore[zr]?)\s+tout\b(?:\s+(?:ce qui|ce que|ce qu'on|avant|"
        r"précédemment|ci-dessus|jusqu'ici))?",
    ),
    _r(
        "fr.system-exfiltration",
        "injection",
        STRONG,
        r"\b(?:révèl|montr|affich|répèt|donn|imprim|écri|dévoil|divulgu)\w*[\s-]+(?:moi\s+|nous\s+)?"
        r"(?:\w+\s+){0,2}?(?:ton|votre|tes|vos|le|les)\s+(?:\w+\s+)?(?:prompt|invite|instructions|"
        r"consignes)\s+(?:système|initiales?|d'origine|cachées?|secrètes?|complètes?)\b|"
        r"\b(?:ton|votre)\s+(?:prompt|invite)\s+(?:système|initial)\b",
    ),
    _r(
        "fr.no-limits-persona",
        "jailbreak",
        STRONG,
        r"\b(?:tu es|vous êtes|tu seras|agis comme|fais semblant|joue le rôle|incarne)\b"
        r"[^.\n]{0,160}?\b(?:sans|aucune?|libéré de|libre de)\b(?:\W+\w+){0,3}?\W+"
        r"(?:restrictions?|limites?|limitations?|filtres?|censure|règles?|morale|éthique|"
        r"contraintes?)\b",
    ),
    _r(
        "fr.developer-mode",
        "jailbreak",
        STRONG,
        r"\bmode\s+(?:développeur|developpeur|jailbreak|DAN|sans restriction|non filtré)\b|"
        r"\bfai(?:s|re)\s+n'importe quoi maintenant\b",
    ),
    _r(
        "fr.ignore-above",
        "injection",
        STRONG,
        r"\b(?:ignore[zr]?|oublie[zr]?)\s+(?:tout\s+)?(?:ce qui (?:précède|est (?:écrit )?"
        r"ci-dessus)|les instructions (?:précédentes|ci-dessus))\b",
    ),
    _r(
        "fr.password-ask",
        "injection",
        WEAK,
        r"\b(?:quel est|donne[zs]?[\w-]*|révèle[zs]?[\w-]*|confirme[zr]?|partage[zr]?|dis[\w-]*)\s+"
        r"(?:moi\s+)?(?:le|ton|votre|notre)\s+(?:mot de passe|code secret|phrase de passe)\b",
    ),
    _r(
        "fr.fake-authority",
        "injection",
        MEDIUM,
        r"\bje suis (?:ton|votre) (?:développeur|créateur|administrateur|programmeur)\b|"
        r"\ben tant qu'ia développée par (?:openai|anthropic|google|meta)\b",
    ),
    # --- Spanish ------------------------------------------------------------------------------
    _r(
        "es.override",
        "injection",
        STRONG,
        r"\b(?:ignor|olvid|omit|descart|pasa por alto|haz caso omiso)\w*\b(?:\W+\w+){0,3}?\W+"
        r"(?:instrucciones|indicaciones|órdenes|reglas|directrices|comandos|instrucción|"
        r"indicación|prompts?)\b(?:\W+\w+){0,1}?(?:\W+(?:anteriores|previas|de arriba|"
        r"iniciales|originales|del sistema|dadas|recibidas))?",
    ),
    _r(
        "es.forget-everything",
        "injection",
        STRONG,
        r"\b(?:olvida|olvide|ignora|ignore)\s+todo\b(?:\s+(?:lo\s+)?(?:anterior|que|lo dicho|"
        r"lo de arriba|hasta ahora))?",
    ),
    _r(
        "es.system-exfiltration",
        "injection",
        STRONG,
        r"\b(?:revel|muestr|mostr|imprim|repit|dime|dame|escrib|divulg|enseñ)\w*\s+"
        r"(?:me\s+|nos\s+)?(?:\w+\s+){0,2}?(?:tu|tus|su|sus|el|las|los)\s+(?:\w+\s+)?"
        r"(?:prompt|indicaciones|instrucciones|mensaje)\s+(?:del sistema|de sistema|iniciales?|"
        r"originales?|ocultas?|secretas?|completas?)\b|\btu\s+prompt\s+(?:del sistema|inicial)\b",
    ),
    _r(
        "es.no-limits-persona",
        "jailbreak",
        STRONG,
        r"\b(?:eres|ahora eres|serás|actúa como|actua como|finge ser|interpreta|simula)\b"
        r"[^.\n]{0,160}?\b(?:sin|ningun[ao]?|libre de|liberado de)\b(?:\W+\w+){0,3}?\W+"
        r"(?:restricci(?:ón|on|ones)|l[íi]mites?|limitaci(?:ón|ones)|filtros?|censura|reglas?|"
        r"moral|ética|confines)\b",
    ),
    _r(
        "es.developer-mode",
        "jailbreak",
        STRONG,
        r"\bmodo\s+(?:desarrollador|de desarrollador|jailbreak|DAN|sin restricciones|sin filtro)\b|"
        r"\bhaz cualquier cosa ahora\b|\bhacer cualquier cosa ahora\b",
    ),
    _r(
        "es.ignore-above",
        "injection",
        STRONG,
        r"\b(?:ignora|ignore|olvida|olvide)\s+(?:todo\s+)?lo\s+(?:anterior|de arriba|dicho)\b|"
        r"\bolvíd\w*\s+(?:de\s+)?(?:todas?\s+)?(?:\w+\s+){0,2}?(?:reglas|instrucciones|"
        r"indicaciones)\b",
    ),
    _r(
        "es.password-ask",
        "injection",
        WEAK,
        r"\b(?:cuál es|dime|dame|revela|confirma|comparte)\s+(?:\w+\s+){0,1}?"
        r"(?:la|tu|su|nuestra)\s+(?:contraseña|clave secreta|código secreto)\b|"
        r"\bconfirmes la contraseña\b",
    ),
    _r(
        "es.fake-authority",
        "injection",
        MEDIUM,
        r"\bsoy (?:tu|su) (?:desarrollador|creador|administrador|programador)\b|"
        r"\bcomo (?:una )?ia desarrollada por (?:openai|anthropic|google|meta)\b",
    ),
    # --- Italian ------------------------------------------------------------------------------
    _r(
        "it.override",
        "injection",
        STRONG,
        r"\b(?:ignor|dimentic|trascur|non tener conto d|scord)\w*\b(?:\W+\w+){0,3}?\W+"
        r"(?:istruzioni|indicazioni|direttive|regole|ordini|comandi|prompt)\b"
        r"(?:\W+(?:precedenti|sopra|iniziali|originali|del sistema|ricevute|date))?",
    ),
    _r(
        "it.forget-everything",
        "injection",
        STRONG,
        r"\b(?:dimentica|dimentichi|ignora|ignori)\s+tutto\b(?:\s+(?:quello|ciò|quanto|"
        r"prima|sopra|finora))?",
    ),
    _r(
        "it.system-exfiltration",
        "injection",
        STRONG,
        r"\b(?:rivel|mostr|stamp|ripet|dimmi|dammi|scriv|divulg)\w*\s+(?:mi\s+|ci\s+)?"
        r"(?:\w+\s+){0,2}?(?:il tuo|i tuoi|le tue|il|le|i)\s+(?:\w+\s+)?"
        r"(?:prompt|istruzioni|messaggio)\s+(?:di sistema|del sistema|iniziali?|originali?|"
        r"nascost[ei]|segret[ei]|complet[ei])\b|\bil tuo prompt (?:di sistema|iniziale)\b",
    ),
    _r(
        "it.no-limits-persona",
        "jailbreak",
        STRONG,
        r"\b(?:sei|ora sei|sarai|agisci come|fingi di essere|interpreta|simula)\b"
        r"[^.\n]{0,160}?\b(?:senza|nessun[ao]?|liber[oa] da)\b(?:\W+\w+){0,3}?\W+"
        r"(?:restrizion[ei]|limit[ei]|limitazion[ei]|filtr[oi]|censura|regol[ae]|morale|etica|"
        r"confini)\b",
    ),
    _r(
        "it.developer-mode",
        "jailbreak",
        STRONG,
        r"\bmodalità\s+(?:sviluppatore|jailbreak|DAN|senza restrizioni|senza filtri)\b|"
        r"\bfa(?:re|i) qualsiasi cosa adesso\b|\bfa(?:re|i) qualsiasi cosa ora\b",
    ),
    _r(
        "it.ignore-above",
        "injection",
        STRONG,
        r"\b(?:ignora|ignori|dimentica|dimentichi)\s+(?:tutto\s+)?(?:quanto|ciò che è|quello che è)"
        r"\s+(?:sopra|scritto sopra|detto prima)\b",
    ),
    _r(
        "it.password-ask",
        "injection",
        WEAK,
        r"\b(?:qual è|dimmi|dammi|rivela|conferma\w*|condividere|condividi|sai dirmi)\s+"
        r"(?:\w+\s+){0,1}?(?:la|la tua|la vostra|la nostra)\s+(?:password|chiave segreta|"
        r"parola d'ordine)\b|\bmi dai la tua password\b",
    ),
    _r(
        "it.fake-authority",
        "injection",
        MEDIUM,
        r"\bsono il tuo (?:sviluppatore|creatore|amministratore|programmatore)\b|"
        r"\bin quanto (?:ai|ia) sviluppata da (?:openai|anthropic|google|meta)\b",
    ),
    # --- Portuguese ---------------------------------------------------------------------------
    _r(
        "pt.override",
        "injection",
        STRONG,
        r"\b(?:ignor|esqueç|esquec|desconsider|descart)\w*\b(?:\W+\w+){0,3}?\W+"
        r"(?:instruções|instrucoes|indicações|ordens|regras|diretrizes|comandos|prompts?)\b"
        r"(?:\W+(?:anteriores|prévias|acima|iniciais|originais|do sistema|recebidas))?",
    ),
    _r(
        "pt.forget-everything",
        "injection",
        STRONG,
        r"\b(?:esqueça|esquece|ignore|ignora)\s+tudo\b",
    ),
    _r(
        "pt.no-limits-persona",
        "jailbreak",
        STRONG,
        r"\b(?:você é|voce é|agora você é|aja como|finja ser|tu és)\b[^.\n]{0,160}?"
        r"\b(?:sem|nenhuma?|livre de)\b(?:\W+\w+){0,3}?\W+(?:restrições|limites|limitações|"
        r"filtros|censura|regras|moral|ética)\b|\bmodo\s+(?:desenvolvedor|DAN|jailbreak)\b|"
        r"\bfa(?:ça|zer) qualquer coisa agora\b",
    ),
)


# --- adversarial suffixes ------------------------------------------------------------------
# GCG-style attacks append an optimised token salad to a plain request ("... killed Australia
# [...]%= bew posting prototype?](pos ]; <%= $("# subsequentlyInsertnav"). No regex names it;
# its shape does: many kinds of bracket and operator characters, and words glued to them, on
# one last line, after a request in words. Code and JSON have that shape too, so texts with
# their markers are left alone, and the check runs on user prompts only (documents are full
# of code). Measured on the shared data: 76 % of GCG/DSN rows, 3 of 3,960 benign prompts.
SUFFIX_WEIGHT = 0.8
_SUFFIX_SYMBOLS = frozenset("[]{}()<>\\|~^$#%=@*;`")
_SUFFIX_PUNCT = frozenset("\"'.,!?:")
_JSON_PAIR = re.compile(r'"\s*:\s*["\d\[{]')
_CODE = re.compile(
    r"\bdef \w+\(|\breturn\b|\bimport \w|\bfunction\s*\(|</?\w+>|;\s*\n|\n\s{4,}\S|"
    r"\b\w+\.\w+\([^)]*\)"
)


def adversarial_suffix(text: str) -> str | None:
    """The token-salad tail of a GCG-style prompt, or None."""
    words = text.strip().rsplit("\n", 1)[-1].split()
    if len(words) < 8 or sum(word.isalpha() for word in words[:8]) < 5:
        return None
    tail = words[-20:]
    joined = " ".join(tail)
    symbols = [ch for ch in joined if ch in _SUFFIX_SYMBOLS]
    kinds = len(set(symbols))
    glued = sum(
        1
        for word in tail
        if sum(ch in _SUFFIX_SYMBOLS or ch in _SUFFIX_PUNCT for ch in word) >= 2
        and any(ch.isalpha() for ch in word)
    )
    if not ((kinds >= 4 and glued >= 2 and len(symbols) >= 6) or (glued >= 3 and kinds >= 3)):
        return None
    if len(_JSON_PAIR.findall(text)) >= 3 or _CODE.search(text):
        return None
    return joined


class RuleSet:
    """The compiled rules; ``match`` returns every hit on one text."""

    def __init__(self, rules: tuple[Rule, ...] = RULES) -> None:
        self.rules = rules

    def match(self, text: str, *, indirect: bool = False) -> list[RuleHit]:
        hits: list[RuleHit] = []
        for rule in self.rules:
            if rule.channel == "indirect" and not indirect:
                continue
            found = rule.pattern.search(text)
            if found is not None:
                hits.append(RuleHit(rule.id, rule.category, rule.weight, found.group(0)[:120]))
        if not indirect:
            suffix = adversarial_suffix(text)
            if suffix is not None:
                hits.append(RuleHit("adversarial-suffix", "jailbreak", SUFFIX_WEIGHT, suffix[:120]))
        return hits


__all__ = [
    "MEDIUM",
    "RULES",
    "STRONG",
    "SUFFIX_WEIGHT",
    "WEAK",
    "Category",
    "Rule",
    "RuleHit",
    "RuleSet",
    "adversarial_suffix",
]
