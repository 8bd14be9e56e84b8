"""Champion/challenger gate: the candidate against production on the same images, paired.

Both models classify the same validation images, so each image is a pair of outcomes
(candidate right or wrong, production right or wrong). Only the *discordant* pairs say
anything about which model is better: ``wins`` (candidate right, production wrong) and
``losses`` (the reverse).

- :func:`mcnemar_exact` -- the exact McNemar test: under "equally good", each discordant
  pair is a fair coin, so ``wins ~ Binomial(wins + losses, 1/2)``; the two-sided p-value is
  ``min(1, 2 * P(X <= min(wins, losses)))``.
- :func:`paired_bootstrap` -- a percentile interval for the accuracy difference
  (candidate minus production), resampling images with their pair of outcomes. Resampling
  ``n`` images with replacement only changes how many wins, losses and ties are drawn, so it
  draws those counts from a multinomial: the same distribution as resampling indices, in
  O(resamples) time and memory whatever ``n``.
- :func:`decide` -- the gate. The comparison is on the images of classes both models know.
  The candidate is *worse beyond noise* on a set of images when it loses more pairs than it
  wins and the McNemar p-value is below ``alpha``. It is promoted only when it is not worse
  beyond noise overall nor on any shared class, forgets no class of production, and either
  gains at least ``min_improvement`` accuracy on the shared images or knows more classes.
  Each class is tested at ``alpha`` without a multiple-comparison correction: the gate errs
  on keeping production. With fewer than six discordant pairs no p-value is below 0.05, so
  a class of well-agreeing models is never flagged by chance.

NumPy only; no I/O. :meth:`Verdict.to_markdown` writes the verdict for the KFP UI.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planets_mlops import metric_names
from planets_mlops.errors import DataError, InvalidParameterError
from planets_mlops.knobs import EvaluateParams


def mcnemar_exact(wins: int, losses: int) -> float:
    """Two-sided exact McNemar p-value for ``wins`` and ``losses`` discordant pairs.

    Args:
        wins: Pairs the candidate got right and production wrong.
        losses: Pairs production got right and the candidate wrong.

    Returns:
        ``min(1, 2 * sum_{i <= min(wins, losses)} C(n, i) / 2**n)`` with ``n = wins + losses``;
        1.0 when there is no discordant pair. Computed with exact integers.

    Raises:
        InvalidParameterError: a negative or non-integer count.
    """
    for name, value in (("wins", wins), ("losses", losses)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InvalidParameterError(name, value, "a non-negative integer count of discordant pairs")
    n = int(wins) + int(losses)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(int(wins), int(losses)) + 1))
    # Integer true division is correctly rounded, so this stays exact far past 2**-1074.
    return min(1.0, 2 * tail / 2**n)


def _check_fraction(name: str, value: float, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise InvalidParameterError(name, value, allowed)
    return float(value)


def paired_bootstrap(
    candidate_correct: Any,
    production_correct: Any,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the paired accuracy difference (candidate - production).

    Args:
        candidate_correct: One boolean per image: the candidate classified it right.
        production_correct: The same images, production's outcome.
        resamples: Bootstrap resamples.
        confidence: Two-sided confidence of the interval, in (0, 1).
        seed: Seed of the resampling; the same inputs and seed give the same interval.

    Returns:
        ``(low, high)``; ``(0.0, 0.0)`` for no images.

    Raises:
        InvalidParameterError: ``resamples`` not positive, ``confidence`` outside (0, 1).
        DataError: the two outcome arrays differ in length.
    """
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples <= 0:
        raise InvalidParameterError("bootstrap_resamples", resamples, "a positive integer", "2000 is plenty.")
    confidence = _check_fraction("confidence", confidence, "a fraction strictly between 0 and 1")
    cand = np.asarray(candidate_correct, dtype=bool).ravel()
    prod = np.asarray(production_correct, dtype=bool).ravel()
    if cand.shape != prod.shape:
        raise DataError(
            f"Paired outcomes differ in length ({cand.size} candidate, {prod.size} production): "
            "both models must be scored on the same images."
        )
    n = cand.size
    if n == 0:
        return 0.0, 0.0
    wins = int(np.sum(cand & ~prod))
    losses = int(np.sum(~cand & prod))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [wins / n, losses / n, (n - wins - losses) / n], size=resamples)
    differences = (draws[:, 0] - draws[:, 1]) / n
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(differences, [tail, 1.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedStats:
    """Both models on one set of images (all shared-class images, or one class's).

    Attributes:
        images: Number of images.
        candidate_acc: Share the candidate got right.
        production_acc: Share production got right.
        wins: Candidate right, production wrong.
        losses: Production right, candidate wrong.
        p_value: Exact McNemar p-value of ``wins`` against ``losses``.
        interval: Bootstrap interval of ``delta``.
        worse: The candidate is worse beyond noise here (more losses, ``p_value < alpha``).
    """

    images: int
    candidate_acc: float
    production_acc: float
    wins: int
    losses: int
    p_value: float
    interval: tuple[float, float]
    worse: bool

    @property
    def delta(self) -> float:
        """Candidate minus production accuracy."""
        return self.candidate_acc - self.production_acc


def paired_stats(
    candidate_correct: Any,
    production_correct: Any,
    alpha: float,
    resamples: int,
    confidence: float,
    seed: int,
) -> PairedStats:
    """:class:`PairedStats` of two aligned boolean outcome arrays.

    Args:
        candidate_correct: One boolean per image for the candidate.
        production_correct: One boolean per image for production, same order.
        alpha: Significance level of "worse beyond noise".
        resamples: Bootstrap resamples.
        confidence: Confidence of the bootstrap interval.
        seed: Bootstrap seed.

    Returns:
        Accuracies, discordant counts, p-value, interval and the "worse" flag.
    """
    cand = np.asarray(candidate_correct, dtype=bool).ravel()
    prod = np.asarray(production_correct, dtype=bool).ravel()
    interval = paired_bootstrap(cand, prod, resamples, confidence, seed)
    wins = int(np.sum(cand & ~prod))
    losses = int(np.sum(~cand & prod))
    p_value = mcnemar_exact(wins, losses)
    n = int(cand.size)
    return PairedStats(
        images=n,
        candidate_acc=float(cand.mean()) if n else 0.0,
        production_acc=float(prod.mean()) if n else 0.0,
        wins=wins,
        losses=losses,
        p_value=p_value,
        interval=interval,
        worse=losses > wins and p_value < alpha,
    )


@dataclass(frozen=True)
class NewClass:
    """A class the candidate knows and production does not: its recall on validation."""

    name: str
    images: int
    recall: float


@dataclass(frozen=True)
class Finding:
    """What one rule of the gate found.

    Attributes:
        rule: The rule's name (:data:`RULES`).
        passed: Whether the candidate meets it.
        reason: The sentence the verdict gives for it ("" when it has nothing to say).
    """

    rule: str
    passed: bool
    reason: str = ""


@dataclass(frozen=True)
class Evidence:
    """What the rules judge: both models on the same images, and the gate's settings."""

    shared: list[str]
    overall: PairedStats
    per_class: dict[str, PairedStats]
    new_classes: list[NewClass]
    forgotten: list[str]
    min_improvement: float
    alpha: float


def knows_production_classes(e: Evidence) -> list[Finding]:
    """The candidate forgets no class production knows."""
    if e.forgotten:
        return [Finding(KNOWS, False, f"The candidate does not know production's classes {e.forgotten}.")]
    return [Finding(KNOWS, True)]


def not_worse_overall(e: Evidence) -> list[Finding]:
    """Not worse beyond noise on every shared-class image together."""
    if e.overall.worse:
        return [
            Finding(
                NOT_WORSE_OVERALL,
                False,
                f"Worse beyond noise overall: {e.overall.losses} losses against {e.overall.wins} wins, "
                f"McNemar p = {e.overall.p_value:.4g} < {e.alpha:g}.",
            )
        ]
    return [Finding(NOT_WORSE_OVERALL, True)]


def not_worse_on_any_class(e: Evidence) -> list[Finding]:
    """Not worse beyond noise on any shared class (one finding per class that is)."""
    worse = [
        Finding(
            NOT_WORSE_PER_CLASS,
            False,
            f"Worse beyond noise on {name}: {stats.losses} losses against {stats.wins} wins, "
            f"McNemar p = {stats.p_value:.4g} < {e.alpha:g}.",
        )
        for name, stats in e.per_class.items()
        if stats.worse
    ]
    return worse or [Finding(NOT_WORSE_PER_CLASS, True)]


def gains_or_learns(e: Evidence) -> list[Finding]:
    """Gains at least ``min_improvement`` accuracy on the shared images, or knows more classes."""
    if e.new_classes:
        learnt = ", ".join(f"{n.name} (recall {n.recall:.3f} on {n.images})" for n in e.new_classes)
        return [Finding(GAINS, True, f"Knows {len(e.new_classes)} more class(es): {learnt}.")]
    if e.overall.delta >= e.min_improvement - 1e-12:
        return [
            Finding(
                GAINS,
                True,
                f"Accuracy gain {e.overall.delta:+.4f} reaches the required {e.min_improvement:+.4f}.",
            )
        ]
    return [
        Finding(
            GAINS,
            False,
            f"Accuracy gain {e.overall.delta:+.4f} is short of the required {e.min_improvement:+.4f}.",
        )
    ]


KNOWS = "knows-production-classes"
NOT_WORSE_OVERALL = "not-worse-overall"
NOT_WORSE_PER_CLASS = "not-worse-on-any-class"
GAINS = "gains-or-learns"
# The gate, in the order its verdict gives the reasons: the candidate is promoted when every
# rule holds. A rule takes the evidence and returns its findings.
RULES: tuple[tuple[str, Callable[[Evidence], list[Finding]]], ...] = (
    (KNOWS, knows_production_classes),
    (NOT_WORSE_OVERALL, not_worse_overall),
    (NOT_WORSE_PER_CLASS, not_worse_on_any_class),
    (GAINS, gains_or_learns),
)
# The rules that make "not worse": when they all hold, the verdict says so in one sentence.
NOT_WORSE_RULES = (KNOWS, NOT_WORSE_OVERALL, NOT_WORSE_PER_CLASS)


@dataclass(frozen=True)
class Verdict:
    """The gate's decision with every number behind it.

    Attributes:
        promote: Whether to promote the candidate.
        reasons: Why, one sentence each (the failed conditions when refused).
        shared_classes: Classes both models know; the comparison is on their images.
        overall: Both models on every shared-class image.
        per_class: Class -> both models on that class's images.
        new_classes: Classes only the candidate knows, with its recall on them.
        forgotten_classes: Classes of production the candidate lacks.
        min_improvement: Required accuracy gain on the shared images.
        alpha: Significance level of "worse beyond noise".
        confidence: Confidence of the bootstrap intervals.
        resamples: Bootstrap resamples.
        seed: Bootstrap seed.
        findings: What each rule of :data:`RULES` found, in order; the verdict is "promote"
            when every finding holds, and each reason is a finding's.
    """

    promote: bool
    reasons: list[str]
    shared_classes: list[str]
    overall: PairedStats
    per_class: dict[str, PairedStats]
    new_classes: list[NewClass] = field(default_factory=list)
    forgotten_classes: list[str] = field(default_factory=list)
    min_improvement: float = 0.0
    alpha: float = 0.05
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0
    findings: list[Finding] = field(default_factory=list)

    def metadata(self) -> dict[str, float]:
        """Numbers for the KFP Metrics output (all floats)."""
        values = {
            metric_names.GATE_PROMOTE: float(self.promote),
            metric_names.GATE_IMAGES: float(self.overall.images),
            metric_names.GATE_CANDIDATE_VAL_ACCURACY: self.overall.candidate_acc,
            metric_names.GATE_PRODUCTION_VAL_ACCURACY: self.overall.production_acc,
            metric_names.GATE_DELTA_VAL_ACCURACY: self.overall.delta,
            metric_names.GATE_DELTA_LOW: self.overall.interval[0],
            metric_names.GATE_DELTA_HIGH: self.overall.interval[1],
            metric_names.GATE_MCNEMAR_P: self.overall.p_value,
            metric_names.GATE_WINS: float(self.overall.wins),
            metric_names.GATE_LOSSES: float(self.overall.losses),
            metric_names.GATE_OVERALL_WORSE: float(self.overall.worse),
            metric_names.GATE_CLASSES_WORSE: float(sum(s.worse for s in self.per_class.values())),
        }
        for new in self.new_classes:
            values[f"{metric_names.NEW_CLASS_RECALL_PREFIX}{new.name}"] = new.recall
        return values

    def summary(self) -> dict[str, Any]:
        """Every number of the verdict as plain JSON values (the pull request's report reads it).

        Returns:
            ``promote``, ``reasons``, the gate's settings, ``overall`` and ``per_class`` (each
            as :func:`stats_dict`), ``new_classes``, ``forgotten_classes`` and ``rules`` (each
            rule's name and whether it held).
        """
        return {
            "promote": self.promote,
            "reasons": list(self.reasons),
            "alpha": self.alpha,
            "confidence": self.confidence,
            "min_improvement": self.min_improvement,
            "resamples": self.resamples,
            "seed": self.seed,
            "shared_classes": list(self.shared_classes),
            "overall": stats_dict(self.overall),
            "per_class": {name: stats_dict(stats) for name, stats in self.per_class.items()},
            "new_classes": [
                {"name": n.name, "images": n.images, "recall": n.recall} for n in self.new_classes
            ],
            "forgotten_classes": list(self.forgotten_classes),
            "rules": [{"rule": f.rule, "passed": f.passed} for f in self.findings],
        }

    def to_markdown(self, candidate: str = "candidate", production: str = "production") -> str:
        """The verdict as Markdown for the KFP UI: decision, reasons, overall and per-class tables.

        Args:
            candidate: How to name the candidate model.
            production: How to name the production model (e.g. its URI).

        Returns:
            A Markdown document.
        """
        pct = round(self.confidence * 100)
        lines = [
            f"# Promotion gate: **{'PROMOTE' if self.promote else 'KEEP PRODUCTION'}**",
            "",
            f"Candidate `{candidate}` against production `{production}`, paired on "
            f"{self.overall.images} validation images of the {len(self.shared_classes)} classes both know.",
            "",
            *[f"- {reason}" for reason in self.reasons],
            "",
            "## Overall (shared classes)",
            "",
            f"| images | production | candidate | delta | {pct} % interval | wins | losses | McNemar p |",
            "|---:|---:|---:|---:|---|---:|---:|---:|",
            _row(self.overall),
            "",
            "## Per class",
            "",
            f"| class | images | production | candidate | delta | {pct} % interval | wins | losses "
            "| McNemar p | worse |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
            *[
                f"| {name} " + _row(stats) + f" {'**yes**' if stats.worse else 'no'} |"
                for name, stats in self.per_class.items()
            ],
        ]
        if self.new_classes:
            lines += [
                "",
                "## New classes (candidate only)",
                "",
                "| class | images | recall |",
                "|---|---:|---:|",
                *[f"| {n.name} | {n.images} | {n.recall:.4f} |" for n in self.new_classes],
            ]
        if self.forgotten_classes:
            lines += ["", f"Production classes the candidate lacks: {', '.join(self.forgotten_classes)}."]
        lines += [
            "",
            f"Gate: worse beyond noise = more losses than wins with McNemar p < {self.alpha:g} "
            f"(overall and per class); required gain {self.min_improvement:+.4f} or a new class. "
            f"Intervals: paired percentile bootstrap, {self.resamples} resamples, seed {self.seed}.",
        ]
        return "\n".join(lines) + "\n"


def stats_dict(stats: PairedStats) -> dict[str, Any]:
    """One :class:`PairedStats` as plain JSON values (names: :data:`metric_names.OLD_STATS_NAMES`)."""
    return {
        "images": stats.images,
        metric_names.STATS_PRODUCTION: stats.production_acc,
        metric_names.STATS_CANDIDATE: stats.candidate_acc,
        metric_names.STATS_DELTA: stats.delta,
        "interval": [stats.interval[0], stats.interval[1]],
        "wins": stats.wins,
        "losses": stats.losses,
        "p_value": stats.p_value,
        "worse": stats.worse,
    }


def _row(stats: PairedStats) -> str:
    low, high = stats.interval
    return (
        f"| {stats.images} | {stats.production_acc:.4f} | {stats.candidate_acc:.4f} | {stats.delta:+.4f} "
        f"| [{low:+.4f}, {high:+.4f}] | {stats.wins} | {stats.losses} | {stats.p_value:.4g} |"
    )


def decide(
    labels: Any,
    candidate_predictions: Any,
    production_predictions: Any,
    candidate_classes: Sequence[str],
    production_classes: Sequence[str],
    params: EvaluateParams | None = None,
) -> Verdict:
    """Compare the candidate with production on the same images and decide on promotion.

    Args:
        labels: True class index of each image, in ``candidate_classes``.
        candidate_predictions: The candidate's predicted index per image (``candidate_classes``).
        production_predictions: Production's predicted index per image (``production_classes``).
        candidate_classes: The candidate's class names (the data's classes).
        production_classes: Production's class names.
        params: The gate's knobs (checked when they were made): ``min_improvement``, the
            significance level ``gate_alpha``, the bootstrap's ``bootstrap_resamples``,
            ``gate_confidence`` and ``bootstrap_seed``; None: the defaults.

    Returns:
        The :class:`Verdict`.

    Raises:
        DataError: arrays of different lengths, indices outside the class lists, or no
            class in common.
    """
    params = params or EvaluateParams()
    min_improvement, alpha = params.min_improvement, params.gate_alpha
    resamples, confidence, seed = params.bootstrap_resamples, params.gate_confidence, params.bootstrap_seed
    labels = np.asarray(labels, dtype=np.int64).ravel()
    cand = np.asarray(candidate_predictions, dtype=np.int64).ravel()
    prod = np.asarray(production_predictions, dtype=np.int64).ravel()
    if not labels.shape == cand.shape == prod.shape:
        raise DataError(
            f"{labels.size} labels, {cand.size} candidate and {prod.size} production predictions: "
            "both models must be scored on the same images."
        )
    for name, values, classes in (
        ("labels", labels, candidate_classes),
        ("candidate predictions", cand, candidate_classes),
        ("production predictions", prod, production_classes),
    ):
        if values.size and (values.min() < 0 or values.max() >= len(classes)):
            raise DataError(f"{name} hold indices outside the {len(classes)} classes {list(classes)}.")
    shared = [c for c in candidate_classes if c in set(production_classes)]
    if not shared:
        raise DataError(
            f"The candidate's classes {list(candidate_classes)} and production's {list(production_classes)} "
            "have none in common: there is nothing to compare on."
        )
    names = np.asarray(list(candidate_classes), dtype=object)
    production_names = np.asarray(list(production_classes), dtype=object)
    truth = names[labels] if labels.size else np.zeros(0, dtype=object)
    cand_right = names[cand] == truth if labels.size else np.zeros(0, bool)
    prod_right = production_names[prod] == truth if labels.size else np.zeros(0, bool)
    on_shared = np.isin(truth, shared)
    overall = paired_stats(cand_right[on_shared], prod_right[on_shared], alpha, resamples, confidence, seed)
    per_class = {
        name: paired_stats(
            cand_right[truth == name], prod_right[truth == name], alpha, resamples, confidence, seed
        )
        for name in shared
    }
    new_classes = [
        NewClass(
            name,
            int(np.sum(truth == name)),
            float(cand_right[truth == name].mean()) if np.any(truth == name) else 0.0,
        )
        for name in candidate_classes
        if name not in set(production_classes)
    ]
    forgotten = [c for c in production_classes if c not in set(candidate_classes)]

    evidence = Evidence(
        shared, overall, per_class, new_classes, forgotten, float(min_improvement), float(alpha)
    )
    findings = [finding for _, rule in RULES for finding in rule(evidence)]
    ok = all(f.passed for f in findings)
    reasons = [f.reason for f in findings if f.reason and f.rule in NOT_WORSE_RULES]
    if all(f.passed for f in findings if f.rule in NOT_WORSE_RULES):
        reasons.append(
            f"Not worse beyond noise overall (p = {overall.p_value:.4g}) nor on any of "
            f"{len(shared)} shared classes."
        )
    reasons += [f.reason for f in findings if f.reason and f.rule not in NOT_WORSE_RULES]
    return Verdict(
        promote=ok,
        reasons=reasons,
        shared_classes=shared,
        overall=overall,
        per_class=per_class,
        new_classes=new_classes,
        forgotten_classes=forgotten,
        min_improvement=float(min_improvement),
        alpha=float(alpha),
        confidence=float(confidence),
        resamples=int(resamples),
        seed=int(seed),
        findings=findings,
    )
