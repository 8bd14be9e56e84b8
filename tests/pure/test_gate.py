"""The champion/challenger gate: McNemar and bootstrap against known values, and the decision."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planets_mlops.errors import DataError, InvalidParameterError
from planets_mlops.gate import decide, mcnemar_exact, paired_bootstrap
from planets_mlops.knobs import EvaluateParams


@pytest.mark.parametrize(
    "wins, losses, expected",
    [
        (10, 0, 2 * 0.5**10),
        (0, 10, 2 * 0.5**10),
        # n = 6, P(X <= 1) = (1 + 6) / 64
        (5, 1, 2 * 7 / 64),
        # n = 12, P(X <= 2) = (1 + 12 + 66) / 4096
        (2, 10, 2 * 79 / 4096),
        (1, 0, 1.0),
        (3, 3, 1.0),
        (0, 0, 1.0),
        # n = 20, P(X <= 5) = (1 + 20 + 190 + 1140 + 4845 + 15504) / 2**20
        (15, 5, 2 * 21700 / 2**20),
    ],
)
def test_mcnemar_exact_by_hand(wins, losses, expected):
    assert mcnemar_exact(wins, losses) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_is_symmetric_and_stays_finite_for_large_counts():
    for wins, losses in [(7, 2), (40, 25), (1, 9)]:
        assert mcnemar_exact(wins, losses) == mcnemar_exact(losses, wins)
    # 2**-2000 underflows a float; the exact integers still give a tiny positive p-value.
    assert 0.0 <= mcnemar_exact(2000, 0) < 1e-300
    tiny = mcnemar_exact(1100, 900)
    # Normal approximation with continuity correction: z = (200 - 1) / sqrt(2000).
    z = 199 / math.sqrt(2000)
    assert tiny == pytest.approx(math.erfc(z / math.sqrt(2)), rel=0.05)


@pytest.mark.parametrize("wins, losses", [(-1, 0), (1.5, 2), (True, 0)])
def test_mcnemar_refuses_bad_counts(wins, losses):
    with pytest.raises(InvalidParameterError, match="non-negative integer"):
        mcnemar_exact(wins, losses)


def test_bootstrap_degenerate_cases():
    same = np.array([True, False, True, True] * 10)
    assert paired_bootstrap(same, same, seed=3) == (0.0, 0.0)
    assert paired_bootstrap(np.ones(50, bool), np.zeros(50, bool)) == (1.0, 1.0)
    assert paired_bootstrap([], []) == (0.0, 0.0)


def test_bootstrap_is_seeded_and_matches_index_resampling():
    rng = np.random.default_rng(11)
    cand = rng.random(300) < 0.95
    prod = rng.random(300) < 0.90
    first = paired_bootstrap(cand, prod, resamples=4000, seed=7)
    assert first == paired_bootstrap(cand, prod, resamples=4000, seed=7)
    assert first != paired_bootstrap(cand, prod, resamples=4000, seed=8)
    # The textbook paired bootstrap: resample image indices, recompute the difference.
    idx = np.random.default_rng(99).integers(0, 300, size=(4000, 300))
    brute = np.quantile(cand[idx].mean(axis=1) - prod[idx].mean(axis=1), [0.025, 0.975])
    assert first[0] == pytest.approx(brute[0], abs=0.01)
    assert first[1] == pytest.approx(brute[1], abs=0.01)
    assert first[0] < cand.mean() - prod.mean() < first[1]


def test_bootstrap_covers_the_true_difference_about_95_percent_of_the_time():
    # True difference +0.10: each image is a win with p 0.15, a loss with p 0.05.
    rng = np.random.default_rng(5241)
    covered = 0
    trials = 400
    for trial in range(trials):
        u = rng.random(300)
        cand = u < 0.95  # both right below 0.80, wins in [0.80, 0.95)
        prod = (u < 0.80) | (u >= 0.95)  # losses in [0.95, 1)
        low, high = paired_bootstrap(cand, prod, resamples=1000, seed=trial)
        covered += low <= 0.10 <= high
    assert 0.92 <= covered / trials <= 0.98


def test_bootstrap_refuses_bad_arguments():
    with pytest.raises(InvalidParameterError, match="bootstrap_resamples=0"):
        paired_bootstrap([True], [True], resamples=0)
    with pytest.raises(InvalidParameterError, match="confidence=1.0"):
        paired_bootstrap([True], [True], confidence=1.0)
    with pytest.raises(DataError, match="same images"):
        paired_bootstrap([True, False], [True])


CLASSES = ["Earth", "Mars", "Moon"]


def outcomes(per_class: dict[str, tuple[int, int, int, int]]):
    """Labels and predictions with, per class: (both right, wins, losses, both wrong)."""
    labels, cand, prod = [], [], []
    for name, counts in per_class.items():
        k = CLASSES.index(name)
        wrong = (k + 1) % len(CLASSES)
        for count, (c_ok, p_ok) in zip(counts, [(1, 1), (1, 0), (0, 1), (0, 0)]):
            labels += [k] * count
            cand += [k if c_ok else wrong] * count
            prod += [k if p_ok else wrong] * count
    return np.array(labels), np.array(cand), np.array(prod)


def test_equal_models_are_promoted_with_a_zero_margin():
    labels, cand, prod = outcomes({c: (28, 1, 1, 0) for c in CLASSES})
    verdict = decide(labels, cand, prod, CLASSES, CLASSES)
    assert verdict.promote
    assert verdict.overall.delta == 0 and verdict.overall.p_value == 1.0
    assert not verdict.new_classes and not verdict.forgotten_classes
    assert not decide(labels, cand, prod, CLASSES, CLASSES, EvaluateParams(min_improvement=0.01)).promote


def test_a_class_worse_beyond_noise_blocks_promotion_despite_a_better_total():
    # Moon: 10 losses, 0 wins (p = 0.00195); Earth and Mars: 12 wins each.
    labels, cand, prod = outcomes({"Earth": (18, 12, 0, 0), "Mars": (18, 12, 0, 0), "Moon": (20, 0, 10, 0)})
    verdict = decide(labels, cand, prod, CLASSES, CLASSES)
    assert verdict.overall.delta > 0 and not verdict.overall.worse
    assert verdict.per_class["Moon"].worse
    assert verdict.per_class["Moon"].p_value == pytest.approx(2 * 0.5**10)
    assert not verdict.promote
    assert any("on Moon" in reason for reason in verdict.reasons)
    markdown = verdict.to_markdown("cand", "gs://prod")
    assert "KEEP PRODUCTION" in markdown and "| Moon | 30 |" in markdown and "0.001953" in markdown


def test_a_small_loss_within_noise_does_not_block():
    # Moon: 4 losses, 0 wins: p = 0.125, not beyond noise at 0.05.
    labels, cand, prod = outcomes({"Earth": (20, 5, 0, 0), "Mars": (25, 0, 0, 0), "Moon": (21, 0, 4, 0)})
    verdict = decide(labels, cand, prod, CLASSES, CLASSES)
    assert not verdict.per_class["Moon"].worse and verdict.promote


def test_overall_worse_beyond_noise_is_refused():
    labels, cand, prod = outcomes({c: (20, 0, 4, 0) for c in CLASSES})
    verdict = decide(labels, cand, prod, CLASSES, CLASSES, EvaluateParams(min_improvement=-1.0))
    assert verdict.overall.worse and verdict.overall.p_value == pytest.approx(2 * 0.5**12)
    assert not verdict.promote


def test_a_new_class_is_compared_on_shared_classes_and_its_recall_reported():
    labels, cand, prod = outcomes({"Earth": (30, 0, 0, 0), "Mars": (30, 0, 0, 0), "Moon": (9, 1, 0, 0)})
    # Production knows Earth and Mars only; its "Moon" column does not exist.
    production_classes = ["Earth", "Mars"]
    prod[labels == 2] = 0  # production calls every Moon an Earth
    cand[labels == 2] = [2] * 9 + [0]  # the candidate knows 9 of 10
    verdict = decide(labels, cand, prod, CLASSES, production_classes, EvaluateParams(min_improvement=0.05))
    assert verdict.shared_classes == ["Earth", "Mars"]
    assert verdict.overall.images == 60 and verdict.overall.delta == 0
    (new,) = verdict.new_classes
    assert (new.name, new.images, new.recall) == ("Moon", 10, pytest.approx(0.9))
    assert verdict.promote  # no gain needed: it knows one more class and is not worse
    assert verdict.metadata()["new_class_recall_Moon"] == pytest.approx(0.9)
    assert "## New classes" in verdict.to_markdown()


def test_a_candidate_that_forgets_a_class_is_refused():
    labels, cand, prod = outcomes({"Earth": (30, 0, 0, 0), "Mars": (30, 0, 0, 0)})
    verdict = decide(labels, cand, prod, ["Earth", "Mars"], CLASSES, EvaluateParams(min_improvement=-1.0))
    assert verdict.forgotten_classes == ["Moon"] and not verdict.promote


def test_decide_refuses_mismatched_or_disjoint_input():
    with pytest.raises(DataError, match="same images"):
        decide([0, 1], [0], [0, 1], CLASSES, CLASSES)
    with pytest.raises(DataError, match="none in common"):
        decide([0], [0], [0], ["Earth"], ["Pluto"])
    with pytest.raises(DataError, match="production predictions hold indices"):
        decide([0], [0], [5], CLASSES, CLASSES)
    with pytest.raises(InvalidParameterError, match="gate_alpha=0"):
        decide([0], [0], [0], CLASSES, CLASSES, EvaluateParams(gate_alpha=0))


def test_the_verdict_cites_the_rule_behind_each_reason():
    from planets_mlops.gate import RULES, decide

    labels = [0] * 20 + [1] * 20
    candidate = [0] * 20 + [0] * 12 + [1] * 8  # worse on class b
    production = labels
    verdict = decide(labels, candidate, production, ["a", "b"], ["a", "b"])
    rules = verdict.summary()["rules"]
    assert [r["rule"] for r in rules] == [
        "knows-production-classes",
        "not-worse-overall",
        "not-worse-on-any-class",
        "gains-or-learns",
    ]
    assert {name for name, _ in RULES} == {r["rule"] for r in rules}
    failed = {f.rule: f.reason for f in verdict.findings if not f.passed}
    assert not verdict.promote
    assert "Worse beyond noise on b" in failed["not-worse-on-any-class"]
    assert all(f.reason in verdict.reasons for f in verdict.findings if f.reason)
