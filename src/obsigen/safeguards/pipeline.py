"""The detection pipeline: normalise -> rules + learned model on every view -> one verdict.

:class:`Detector` is the synchronous core (used by the service, the CLI and the evaluation);
:class:`DetectionPipeline` wraps it as the turn's :class:`~obsigen.assistant.hooks.ContentGuard`
with a threshold per kind of source and a policy mode.

How the signals combine: each is read as an independent probability of attack and they are
joined by a noisy-OR, ``1 - (1 - model) * (1 - rules) * (1 - obfuscation)``. A strong rule
(a known template) blocks on its own; a medium rule or a hiding trick (zero-width characters,
lookalike letters, an encoded payload) lifts a doubtful model score over the threshold but
does not block ordinary text by itself.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from obsigen.assistant.hooks import AllowAll, ContentGuard, GuardResult, Redactor, Verdict
from obsigen.config import SafeguardsSettings
from obsigen.inference.interfaces import InferenceProvider
from obsigen.metrics import counts_verdicts
from obsigen.safeguards.judge import VERDICTS, LLMJudge, Outcome
from obsigen.safeguards.ngram_model import MODELS_DIR, NgramModel
from obsigen.safeguards.normalise import Normalised, normalise
from obsigen.safeguards.policy import (
    Channel,
    GuardPolicy,
    Mode,
    PolicyCache,
    base_policy,
    channel_of,
    deprecation_notice,
)
from obsigen.safeguards.redaction import PlaceholderRedactor
from obsigen.safeguards.rules import RuleHit, RuleSet

log = logging.getLogger(__name__)

# A hiding trick alone is not an attack (bidi marks occur in mixed Hebrew/English text, a
# zero-width space in pasted web text), so it only adds to the other evidence.
OBFUSCATION_WEIGHT = 0.35
HIDDEN_TEXT_WEIGHT = 0.5
# Long texts are scored in overlapping windows, so an instruction at the end of a long
# document is not diluted by, or cut off after, the text before it.
WINDOW_CHARS = 2000
WINDOW_STRIDE = 1500
MAX_WINDOWS = 12
MAX_RULE_CHARS = 20_000
# Indirect text is also scored sentence by sentence (see Detector.detect_many).
MIN_SEGMENT_WORDS = 4
MAX_SEGMENTS = 300


@dataclass(frozen=True, slots=True)
class Detection:
    score: float
    model_score: float
    rule_score: float
    categories: tuple[str, ...]
    rules: tuple[str, ...]
    signals: tuple[str, ...]
    view: str  # "text", or the payload kind the worst score came from

    @property
    def detector(self) -> str:
        parts = []
        if self.rules:
            # The rule ids go into the audit event: they say *why*, in words a reviewer knows.
            parts.append("rules:" + ",".join(self.rules[:3]))
        if self.model_score >= 0.5:
            parts.append("ngram")
        if self.signals:
            parts.append("normalise")
        return "+".join(parts) or "none"


class Detector:
    """Rules and (optionally) the n-gram model over every view of a normalised text."""

    def __init__(self, model: NgramModel | None, rules: RuleSet | None = None) -> None:
        self.model = model
        self.rules = rules or RuleSet()

    @classmethod
    def load(cls, models_dir: Path = MODELS_DIR) -> Detector:
        return cls(NgramModel.load(models_dir))

    def detect(self, text: str, *, indirect: bool = False) -> Detection:
        return self.detect_many([text], indirect=indirect)[0]

    def detect_many(self, texts: Sequence[str], *, indirect: bool = False) -> list[Detection]:
        normalised = [normalise(text) for text in texts]
        chunks: list[str] = []
        owners: list[tuple[int, str]] = []
        segment_rows: list[int] = []
        for index, item in enumerate(normalised):
            for view, label in _labelled_views(item):
                for window in _windows(view):
                    chunks.append(window)
                    owners.append((index, label))
            if indirect:
                for segment in _segments(item.text):
                    chunks.append(segment)
                    owners.append((index, "text"))
                    segment_rows.append(len(chunks) - 1)
        heads = self.model.heads(chunks) if self.model is not None and chunks else None
        best: list[tuple[float, str, str]] = [(0.0, "text", "")] * len(texts)
        best_segment = [0.0] * len(texts)
        if heads is not None:
            is_segment = set(segment_rows)
            for row, (index, label) in enumerate(owners):
                attack = float(heads[row, 0])
                if row in is_segment:
                    best_segment[index] = max(best_segment[index], attack)
                elif attack > best[index][0]:
                    kind = "jailbreak" if heads[row, 1] >= 0.5 else "injection"
                    best[index] = (attack, label, kind)
        for index, segment_score in enumerate(best_segment):
            if segment_score:
                # A document's windows and its single worst sentence are two pieces of
                # evidence: an injected sentence is diluted in a window of benign text.
                attack, label, kind = best[index]
                joined = 1.0 - (1.0 - attack) * (1.0 - segment_score)
                best[index] = (joined, label, kind or "injection")
        return [
            self._combine(item, best[index], indirect=indirect)
            for index, item in enumerate(normalised)
        ]

    def _combine(
        self, item: Normalised, model_best: tuple[float, str, str], *, indirect: bool
    ) -> Detection:
        model_score, model_view, model_kind = model_best
        hits: dict[str, RuleHit] = {}
        rule_view = "text"
        for view, label in _labelled_views(item):
            for hit in self.rules.match(view[:MAX_RULE_CHARS], indirect=indirect):
                if hit.rule not in hits:
                    hits[hit.rule] = hit
                    if label != "text" and rule_view == "text":
                        rule_view = label
        rule_miss = 1.0
        for hit in hits.values():
            rule_miss *= 1.0 - hit.weight
        rule_score = 1.0 - rule_miss

        obfuscation = 0.0
        if item.signals:
            obfuscation = OBFUSCATION_WEIGHT
        if any(payload.kind == "unicode-tags" for payload in item.payloads):
            obfuscation = max(obfuscation, HIDDEN_TEXT_WEIGHT)
        score = 1.0 - (1.0 - model_score) * rule_miss * (1.0 - obfuscation)

        categories: list[str] = []
        for hit in sorted(hits.values(), key=lambda h: -h.weight):
            if hit.category not in categories:
                categories.append(hit.category)
        if model_score >= 0.5 and model_kind and model_kind not in categories:
            categories.append(model_kind)
        # Worst evidence found only after decoding means the attack was hidden on purpose.
        view = model_view if model_score >= rule_score else rule_view
        hidden = view != "text" and (model_score >= 0.5 or bool(hits))
        if item.signals or hidden:
            categories.append("obfuscation")
        return Detection(
            score=round(min(score, 1.0), 4),
            model_score=round(model_score, 4),
            rule_score=round(rule_score, 4),
            categories=tuple(categories),
            rules=tuple(hits),
            signals=item.signals,
            view=view,
        )


def _labelled_views(item: Normalised) -> list[tuple[str, str]]:
    labelled = [(item.text, "text")]
    for payload in item.payloads:
        labelled.append((payload.text, payload.kind))
    return labelled


_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+|\|")


def _segments(text: str) -> list[str]:
    """The sentences, lines and table cells of a document that are long enough to instruct."""
    parts = [part.strip() for part in _SENTENCE_BREAK.split(text[:MAX_RULE_CHARS])]
    return [part for part in parts if len(part.split()) >= MIN_SEGMENT_WORDS][:MAX_SEGMENTS]


def _windows(text: str) -> list[str]:
    if len(text) <= WINDOW_CHARS:
        return [text]
    starts = range(0, max(len(text) - WINDOW_CHARS, 0) + WINDOW_STRIDE, WINDOW_STRIDE)
    windows = [text[start : start + WINDOW_CHARS] for start in starts]
    if len(windows) > MAX_WINDOWS:
        # Keep the start and the end (where injections are usually placed) and an even spread.
        picks = np.linspace(0, len(windows) - 1, MAX_WINDOWS).round().astype(int)
        windows = [windows[i] for i in sorted(set(picks.tolist()))]
    return windows


class DetectionPipeline:
    """The content guard on prompts and on everything else the model reads.

    In ``warn`` and ``log-only`` modes the verdict is always "allow", but the score and the
    categories are those that would have blocked, so the audit event shows what happened.

    With ``policies``, each tenant's stored policy (``obsigen.safeguards.policy``) is read per
    check through its cache; without, ``tenant_policies`` and ``policy`` are fixed.
    """

    def __init__(
        self,
        detector: Detector,
        policy: GuardPolicy | None = None,
        tenant_policies: Mapping[str, GuardPolicy] | None = None,
        *,
        policies: PolicyCache | None = None,
        llm_judge: LLMJudge | None = None,
    ) -> None:
        self.detector = detector
        self.policy = policy or GuardPolicy()
        # Tenants with their own mode or thresholds, by tenant id; the rest use ``policy``.
        self.tenant_policies = dict(tenant_policies or {})
        self.policies = policies
        self.llm_judge = llm_judge

    def policy_for(self, tenant_id: str | None) -> GuardPolicy:
        """The tenant's policy as last read (synchronous callers, after a check)."""
        if tenant_id is None:
            return self.policy
        if self.policies is not None:
            known = self.policies.last_known(tenant_id)
            if known is not None:
                return known
        return self.tenant_policies.get(tenant_id, self.policy)

    async def current_policy(self, tenant_id: str | None) -> GuardPolicy:
        if tenant_id is None or self.policies is None:
            return self.policy_for(tenant_id)
        return await self.policies.get(tenant_id)

    @classmethod
    def load(
        cls, policy: GuardPolicy | None = None, models_dir: Path = MODELS_DIR
    ) -> DetectionPipeline:
        return cls(Detector.load(models_dir), policy)

    @counts_verdicts
    async def check(self, text: str, *, source: str, tenant_id: str | None = None) -> GuardResult:
        policy = await self.current_policy(tenant_id)
        if not text.strip():
            return GuardResult("allow", 0.0, (), "none", policy_version=policy.version)
        try:
            # Off the event loop: a long document takes tens of milliseconds to score.
            detection = await asyncio.to_thread(
                self.detector.detect, text, indirect=channel_of(source) == "indirect"
            )
        except Exception:
            log.exception("safeguard detector failed on %s input", source)
            # Fail closed where the policy blocks: an unchecked prompt must not pass.
            verdict: Verdict = "block" if policy.mode == "block" else "allow"
            return GuardResult(
                verdict, 1.0, ("safeguard-error",), "error", policy_version=policy.version
            )
        judged: Outcome | None = None
        judge = self.llm_judge
        if (
            judge is not None
            and policy.judge
            and judge.consulted(detection.score, policy.threshold_for(source))
        ):
            judged = await judge.classify(text, source=source)
        return self.judge(detection, source=source, policy=policy, judged=judged)

    def judge(
        self,
        detection: Detection,
        *,
        source: str,
        policy: GuardPolicy | None = None,
        judged: Outcome | None = None,
    ) -> GuardResult:
        """The verdict for a detection under ``policy``; ``judged`` is the LLM judge's answer
        where it was consulted. Only "attack" or "benign" decide; a malformed or failed answer
        leaves the detectors' verdict and is named in ``detector`` for the audit."""
        policy = policy or self.policy
        flagged = detection.score >= policy.threshold_for(source)
        if judged in VERDICTS:
            flagged = judged == "attack"
        # Categories name what was flagged; below the threshold the rule ids still show in
        # ``detector`` ("rules+ngram") for the audit.
        categories = detection.categories if flagged else ()
        if flagged and not categories:
            categories = ("injection",) if channel_of(source) == "indirect" else ("unsafe",)
        verdict: Verdict = "block" if flagged and policy.mode == "block" else "allow"
        detector = detection.detector
        if judged is not None:
            detector = f"{detector}+judge:{judged}"
        if flagged and policy.mode != "block":
            detector = f"{detector} ({policy.mode})"
        return GuardResult(
            verdict, detection.score, categories, detector, policy_version=policy.version
        )


@functools.cache
def shipped_detector() -> Detector:
    """The detector with the model shipped in the package, loaded once per process."""
    return Detector.load(MODELS_DIR)


def content_guard(
    settings: SafeguardsSettings,
    sessions: async_sessionmaker[AsyncSession] | None = None,
    provider: InferenceProvider | None = None,
    redactor: Redactor | None = None,
) -> ContentGuard:
    """The guard the turn calls on prompts and tool output, as configured.

    With ``sessions``, tenants' stored policies apply; with ``provider`` and
    ``[safeguards.judge] enabled``, the LLM judge is consulted in its grey zone.
    """
    if not settings.enabled:
        return AllowAll()
    notice = deprecation_notice(settings)
    if notice is not None:
        log.warning(notice)
    tenants = {
        tenant_id: base_policy(settings, tenant_id) for tenant_id in settings.tenant_overrides
    }
    judge = None
    if provider is not None and settings.judge.enabled:
        judge = LLMJudge(provider, settings.judge, redactor or PlaceholderRedactor())
    return DetectionPipeline(
        shipped_detector(),
        base_policy(settings),
        tenants,
        policies=PolicyCache(sessions, settings) if sessions is not None else None,
        llm_judge=judge,
    )


__all__ = [
    "Channel",
    "Detection",
    "DetectionPipeline",
    "Detector",
    "GuardPolicy",
    "Mode",
    "channel_of",
    "content_guard",
    "shipped_detector",
]
