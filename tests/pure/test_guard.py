"""The open-set guard as pure functions, on synthetic embeddings with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from planets_mlops.errors import DataError, InvalidParameterError
from planets_mlops.guard import (
    BANK_FILE,
    GUARD_FILE,
    Guard,
    calibrate_threshold,
    knn_scores,
    load_guard,
    normalize,
    rejection_rate,
    tradeoff,
)
from planets_mlops.knobs import GuardParams


def clusters(rng: np.random.Generator, centres: np.ndarray, per: int, spread: float) -> np.ndarray:
    """Non-negative (post-ReLU-like) points around each centre."""
    points = np.repeat(centres, per, axis=0) + rng.normal(0.0, spread, (len(centres) * per, centres.shape[1]))
    return np.maximum(points, 0.0)


@pytest.fixture
def synthetic():
    """Ten known clusters on disjoint coordinates and one unseen cluster on others."""
    rng = np.random.default_rng(0)
    dim = 64
    centres = np.zeros((11, dim))
    for i in range(11):
        centres[i, i * 5 : i * 5 + 5] = 3.0
    known = centres[:10]
    return {
        "train": clusters(rng, known, 80, 0.3),
        "validation": clusters(rng, known, 20, 0.3),
        "unseen": clusters(rng, centres[10:], 200, 0.3),
    }


def test_calibration_keeps_the_stated_share_of_known_scores():
    scores = np.arange(1, 301) / 300.0  # 300 distinct scores
    threshold = calibrate_threshold(scores, 0.95)
    # 15 lowest rejected, 285 kept: exactly 95 %.
    assert threshold == pytest.approx(16 / 300.0)
    assert np.mean(scores >= threshold) == pytest.approx(0.95)
    assert calibrate_threshold(scores, 1.0) == pytest.approx(1 / 300.0)
    # 10 scores at 90 %: one rejected.
    assert calibrate_threshold(np.arange(10.0), 0.9) == 1.0
    # Shuffled input, same answer.
    assert calibrate_threshold(np.random.default_rng(1).permutation(scores), 0.95) == threshold


def test_calibration_keeps_at_least_the_coverage_with_ties():
    scores = np.array([0.5] * 50 + [0.9] * 50)
    threshold = calibrate_threshold(scores, 0.95)
    assert threshold == 0.5
    assert np.mean(scores >= threshold) == 1.0


@pytest.mark.parametrize("coverage", [0.0, -0.1, 1.5, float("nan"), "0.9", True])
def test_calibration_refuses_a_bad_coverage(coverage):
    with pytest.raises(InvalidParameterError, match="coverage"):
        calibrate_threshold([0.1, 0.2], coverage)


@pytest.mark.parametrize("scores", [[], [0.1, float("nan")]])
def test_calibration_refuses_empty_or_broken_scores(scores):
    with pytest.raises(DataError):
        calibrate_threshold(scores, 0.95)


def test_knn_scores_are_cosine_similarities_of_the_nearest_rows():
    bank = normalize(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    queries = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0], [3.0, 1.0]])
    np.testing.assert_allclose(knn_scores(bank, queries, k=1), [1.0, 1.0, 0.0, 3 / np.sqrt(10)], atol=1e-6)
    # k=2: mean of the two nearest; for [1, 0]: 1 and cos 45 degrees.
    np.testing.assert_allclose(knn_scores(bank, queries[:1], k=2), [(1 + np.sqrt(0.5)) / 2], atol=1e-6)


def test_knn_scores_in_blocks_equal_one_matrix_product():
    rng = np.random.default_rng(3)
    bank = normalize(rng.random((50, 8)))
    queries = rng.random((1300, 8))  # more than one block
    expected = np.sort(normalize(queries) @ bank.T, axis=1)[:, -3:].mean(axis=1)
    np.testing.assert_allclose(knn_scores(bank, queries, k=3), expected, atol=1e-6)


def test_knn_scores_refuse_mismatched_inputs():
    bank = normalize(np.eye(3))
    with pytest.raises(DataError, match="dimensions"):
        knn_scores(bank, np.ones((2, 4)))
    with pytest.raises(InvalidParameterError, match="k"):
        knn_scores(bank, np.ones((2, 3)), k=4)
    with pytest.raises(DataError, match="NaN"):
        knn_scores(bank, np.array([[np.nan, 0.0, 0.0]]))
    with pytest.raises(DataError, match="2-D"):
        knn_scores(bank, np.ones(3))


def test_fitted_guard_keeps_known_and_rejects_unseen(synthetic):
    guard = Guard.fit(synthetic["train"], synthetic["validation"], GuardParams(coverage=0.95))
    assert guard.calibration == {"count": 200, "kept": pytest.approx(0.95), "per_class": {"0": 200}}
    validation = guard.scores(synthetic["validation"])
    assert np.mean(guard.recognised(validation)) >= 0.95
    unseen = guard.scores(synthetic["unseen"])
    assert rejection_rate(unseen, guard.threshold) == 1.0
    # A blank input (all-zero embedding) is never recognised.
    assert not guard.recognised(guard.scores(np.zeros((1, 64))))[0]


def test_higher_coverage_lowers_the_threshold(synthetic):
    thresholds = [
        Guard.fit(synthetic["train"], synthetic["validation"], GuardParams(coverage=c)).class_thresholds[0]
        for c in (0.8, 0.95, 1.0)
    ]
    assert thresholds[0] >= thresholds[1] >= thresholds[2]
    assert thresholds[0] > thresholds[2]


def test_guard_round_trips_through_its_files(synthetic, tmp_path):
    guard = Guard.fit(
        synthetic["train"],
        synthetic["validation"],
        GuardParams(coverage=0.9, k=3),
        # Interleaved classes: the guard keeps (and saves) its bank sorted by class.
        bank_labels=np.tile(np.arange(10), 80),
    )
    guard.save(tmp_path)
    doc = json.loads((tmp_path / GUARD_FILE).read_text())
    assert doc["format"] == "planets-guard/3" and doc["metric"] == "cosine-euclidean-knn-classwise"
    assert (doc["bank_size"], doc["embedding_dim"], doc["k"], doc["threshold"]) == (800, 64, 3, 0.5)
    assert len(doc["class_thresholds"]) == 10 and doc["bank_class_rows"] == [80] * 10
    assert len(doc["euclidean_thresholds"]) == len(doc["joint_thresholds"]) == 10
    loaded = load_guard(tmp_path)
    assert loaded.threshold == guard.threshold and loaded.coverage == 0.9 and loaded.k == 3
    np.testing.assert_array_equal(loaded.bank, guard.bank)
    np.testing.assert_array_equal(loaded.labels, guard.labels)
    np.testing.assert_array_equal(loaded.class_thresholds, guard.class_thresholds)
    np.testing.assert_array_equal(loaded.euclidean_thresholds, guard.euclidean_thresholds)
    np.testing.assert_array_equal(loaded.joint_thresholds, guard.joint_thresholds)
    np.testing.assert_array_equal(loaded.scores(synthetic["unseen"]), guard.scores(synthetic["unseen"]))


def test_loading_a_broken_guard_names_the_problem(synthetic, tmp_path):
    with pytest.raises(DataError, match="Retrain"):
        load_guard(tmp_path)  # nothing there
    Guard.fit(synthetic["train"], synthetic["validation"], GuardParams(coverage=0.95)).save(tmp_path)
    np.save(tmp_path / BANK_FILE, np.ones((5, 64), np.float32))
    with pytest.raises(DataError, match="do not belong together"):
        load_guard(tmp_path)
    (tmp_path / GUARD_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(
        DataError,
        match="format 'other'.*reads planets-guard/4.*/3.*planets-guard/2.*and planets-guard/1.*Retrain",
    ):
        load_guard(tmp_path)
    np.save(tmp_path / BANK_FILE, np.ones((800, 64), np.float32))
    doc = Guard.fit(synthetic["train"], synthetic["validation"], GuardParams(coverage=0.95)).describe()
    (tmp_path / GUARD_FILE).write_text(json.dumps({**doc, "class_thresholds": []}))
    with pytest.raises(DataError, match="0 class thresholds"):
        load_guard(tmp_path)
    (tmp_path / GUARD_FILE).write_text(json.dumps({**doc, "joint_thresholds": []}))
    with pytest.raises(DataError, match="malformed.*1 class thresholds, 1 Euclidean and 0 joint"):
        load_guard(tmp_path)
    (tmp_path / GUARD_FILE).write_text(json.dumps({**doc, "euclidean_thresholds": [float("nan")]}))
    with pytest.raises(DataError, match="non-finite thresholds"):
        load_guard(tmp_path)
    (tmp_path / GUARD_FILE).write_text(json.dumps({**doc, "bank_class_rows": [1, 2]}))
    with pytest.raises(DataError, match="malformed.*do not add up to bank_size 800"):
        load_guard(tmp_path)
    np.save(tmp_path / BANK_FILE, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / GUARD_FILE).write_text(json.dumps({"format": "planets-guard/1", "metric": "cosine-knn"}))
    with pytest.raises(DataError, match="Cannot read"):
        load_guard(tmp_path)  # pickled objects are refused, not executed


def test_fit_refuses_a_model_with_dead_embeddings():
    with pytest.raises(DataError, match="zero"):
        Guard.fit(np.zeros((10, 4)), np.ones((3, 4)))


def test_answers_never_present_an_unrecognised_image_as_a_class():
    from planets_mlops.model_folder import answers

    logits = np.array([[5.0, 0.0], [9.0, 0.0]])
    plain = answers(logits, ["Earth", "Moon"])
    assert [a["prediction"] for a in plain] == ["Earth", "Earth"]
    assert "recognised" not in plain[0]
    guarded = answers(logits, ["Earth", "Moon"], known_scores=np.array([0.9, 0.2]), threshold=0.5)
    assert guarded[0]["prediction"] == "Earth" and guarded[0]["recognised"] is True
    assert guarded[0]["known_score"] == 0.9 and guarded[0]["known_threshold"] == 0.5
    # Confident logits, unknown image: no prediction, only the closest class.
    assert guarded[1]["prediction"] is None and guarded[1]["recognised"] is False
    assert guarded[1]["closest_class"] == "Earth" and guarded[1]["known_score"] == 0.2
    assert guarded[1]["probabilities"] == plain[1]["probabilities"]


def _blobs(rng, centres, spreads, per):
    """Non-negative points around each centre, each class with its own spread."""
    return np.concatenate(
        [np.maximum(c + rng.normal(0.0, s, (per, len(c))), 0.0) for c, s in zip(centres, spreads)]
    )


@pytest.fixture
def uneven():
    """A tight class and a loose one, a benign shift of both, and an unseen class between."""
    rng = np.random.default_rng(5)
    dim = 32
    centres = np.zeros((3, dim))
    centres[0, :8] = 3.0
    centres[1, 8:16] = 3.0
    centres[2, 16:24] = 3.0  # unseen
    spreads = [0.05, 0.6]
    shift = np.zeros(dim)
    shift[24:] = 0.4  # a benign change: the same offset for every image, of any class
    return {
        "train": _blobs(rng, centres[:2], spreads, 200),
        "labels": np.repeat([0, 1], 200),
        "validation": _blobs(rng, centres[:2], spreads, 100),
        "validation_labels": np.repeat([0, 1], 100),
        "shifted": _blobs(rng, centres[:2] + shift, spreads, 100),
        "unseen": _blobs(rng, centres[2:], [0.3], 300),
    }


def test_classwise_thresholds_keep_every_class_where_one_threshold_cannot(uneven):
    classwise = Guard.fit(
        uneven["train"], uneven["validation"], GuardParams(coverage=0.95), bank_labels=uneven["labels"]
    )
    one = Guard.fit(uneven["train"], uneven["validation"], GuardParams(coverage=0.95))
    tight, loose = classwise.class_thresholds
    assert tight > loose  # the near-duplicate class gets the stricter threshold
    known = uneven["validation_labels"]
    for guard in (classwise, one):
        kept = guard.recognised(guard.scores(uneven["validation"]))
        assert np.mean(kept) >= 0.95
        assert rejection_rate(guard.scores(uneven["unseen"]), guard.threshold) == 1.0
    # One global threshold, pooled over both classes, spends its rejections on the loose
    # class; class-wise thresholds keep each class at its share.
    classwise_kept = classwise.recognised(classwise.scores(uneven["validation"]))
    assert min(np.mean(classwise_kept[known == c]) for c in (0, 1)) >= 0.95
    one_kept = one.recognised(one.scores(uneven["validation"]))
    assert np.mean(one_kept[known == 1]) < 0.95


def test_calibrating_on_benign_changes_keeps_them_and_still_rejects_the_unseen(uneven):
    bank, labels = uneven["train"], uneven["labels"]
    clean_only = Guard.fit(bank, uneven["validation"], GuardParams(coverage=0.99), bank_labels=labels)
    with_benign = Guard.fit(
        bank,
        np.concatenate([uneven["validation"], uneven["shifted"]]),
        GuardParams(coverage=0.99),
        bank_labels=labels,
    )
    before, after = (np.mean(g.recognised(g.scores(uneven["shifted"]))) for g in (clean_only, with_benign))
    # The calibration keeps 99 % of clean and shifted images together, in each class.
    assert before < 0.6 and after >= 0.97
    assert np.mean(with_benign.recognised(with_benign.scores(uneven["validation"]))) >= 0.99
    assert rejection_rate(with_benign.scores(uneven["unseen"]), with_benign.threshold) >= 0.99


def test_the_known_score_is_the_distance_in_units_of_the_class_threshold():
    bank = np.array([[1.0, 0.0], [0.0, 1.0]])
    guard = Guard(normalize(bank), np.array([0, 1]), np.array([0.9, 0.5]), 0.95)
    # Cosine 0.95 to class 0 (threshold 0.9): half the threshold distance, score 0.75.
    angle = np.arccos(0.95)
    scores = guard.scores(np.array([[np.cos(angle), np.sin(angle)], [0.0, 1.0], [0.0, 0.0], [1.0, 1.0]]))
    np.testing.assert_allclose(scores[:2], [0.75, 1.0], atol=1e-6)
    assert scores[2] == 0.0  # a blank input is never known
    # [1, 1] has cosine 0.707 to both rows; the nearest (first) is class 0: distance 0.29
    # against 0.1, beyond twice the threshold distance: clipped to 0.
    assert scores[3] == 0.0
    assert guard.threshold == 0.5 and list(guard.recognised([0.5, 0.49])) == [True, False]


def test_a_version_1_guard_loads_and_recognises_what_it_recognised_before(synthetic, tmp_path):
    """A model trained by an earlier version (planets-guard/1, one global cosine threshold)."""
    bank = normalize(synthetic["train"])
    raw = knn_scores(bank, synthetic["validation"], 1)
    old_threshold = float(np.quantile(raw, 0.1))
    np.save(tmp_path / BANK_FILE, bank.astype(np.float32))
    old = {
        "format": "planets-guard/1",
        "metric": "cosine-knn",
        "k": 1,
        "threshold": old_threshold,
        "coverage": 0.9,
        "embedding_dim": 64,
        "bank_size": 800,
        "embedding_output": "embedding",
        "calibration": {"count": 200, "kept": 0.9},
    }
    (tmp_path / GUARD_FILE).write_text(json.dumps(old))
    guard = load_guard(tmp_path)
    everything = np.concatenate([synthetic["validation"], synthetic["unseen"]])
    before = knn_scores(bank.astype(np.float32), everything, 1) >= old_threshold
    np.testing.assert_array_equal(guard.recognised(guard.scores(everything)), before)
    assert 0 < before.sum() < len(before)


def test_the_tradeoff_curve_counts_kept_and_rejected_at_each_threshold():
    curve = tradeoff([0.2, 0.6, 0.9, 1.0], [0.0, 0.1, 0.7], thresholds=[0.0, 0.5, 0.95])
    assert curve == {"threshold": [0.0, 0.5, 0.95], "kept": [1.0, 0.75, 0.25], "rejected": [0.0, 2 / 3, 1.0]}
    full = tradeoff(np.linspace(0, 1, 50))
    assert len(full["threshold"]) == 101 and "rejected" not in full
    assert full["kept"] == sorted(full["kept"], reverse=True)


def test_a_guard_built_with_unsorted_labels_saves_and_scores_the_same(synthetic, tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 800)
    guard = Guard(normalize(synthetic["train"]), labels, np.linspace(0.9, 0.99, 10), 0.95)
    guard.save(tmp_path)
    loaded = load_guard(tmp_path)
    queries = np.concatenate([synthetic["validation"], synthetic["unseen"]])
    np.testing.assert_allclose(loaded.scores(queries), guard.scores(queries), atol=1e-6)


def test_an_unseen_class_in_the_direction_of_a_known_one_is_rejected_by_its_length(synthetic):
    """The Neptune case: an unseen class whose embeddings point the way a known class's do.

    Cosine alone cannot tell them apart (same direction); the Euclidean distance can (they
    are three times as long), and the joint threshold still keeps the known images.
    """
    rng = np.random.default_rng(7)
    train, validation = synthetic["train"], synthetic["validation"]
    labels = np.repeat(np.arange(10), 80)
    # Class 3's embeddings, three times as long, plus a little noise of their own.
    unseen = np.maximum(3.0 * clusters(rng, train[labels == 3][:10].mean(0, keepdims=True), 200, 0.1), 0.0)
    guard = Guard.fit(train, validation, GuardParams(coverage=0.95), bank_labels=labels)
    cosine_only = Guard(guard.bank, guard.labels, guard.class_thresholds, guard.coverage, guard.k)
    assert np.mean(cosine_only.recognised(cosine_only.scores(unseen))) > 0.5
    assert not np.any(guard.recognised(guard.scores(unseen)))
    assert np.mean(guard.recognised(guard.scores(validation))) >= 0.95
    assert np.mean(guard.recognised(guard.scores(synthetic["unseen"]))) == 0.0


def test_the_joint_threshold_keeps_the_coverage_in_every_class(synthetic):
    labels = np.repeat(np.arange(10), 80)
    for coverage in (0.8, 0.9, 0.99):
        guard = Guard.fit(
            synthetic["train"], synthetic["validation"], GuardParams(coverage=coverage), bank_labels=labels
        )
        kept = guard.recognised(guard.scores(synthetic["validation"]))
        for c in range(10):
            assert np.mean(kept[np.repeat(np.arange(10), 20) == c]) >= coverage
        assert guard.calibration["kept"] >= coverage


def test_a_version_2_guard_loads_and_recognises_what_it_recognised_before(synthetic, tmp_path):
    """A model trained by the previous version (planets-guard/2: cosine distance alone)."""
    labels = np.repeat(np.arange(10), 80)
    fitted = Guard.fit(
        synthetic["train"], synthetic["validation"], GuardParams(coverage=0.9), bank_labels=labels
    )
    old = Guard(normalize(fitted.bank), fitted.labels, fitted.class_thresholds, 0.9, 1)
    old.save(tmp_path)
    assert json.loads((tmp_path / GUARD_FILE).read_text())["format"] == "planets-guard/2"
    everything = np.concatenate([synthetic["validation"], synthetic["unseen"]])
    # The cosine-only score of planets-guard/2, written out: 1 - (1 - s) / (1 - t_c) / 2.
    similarity = normalize(everything).astype(np.float64) @ normalize(fitted.bank).astype(np.float64).T
    nearest = fitted.labels[similarity.argmax(1)]
    expected = np.clip(1 - (1 - similarity.max(1)) / (1 - fitted.class_thresholds[nearest]) / 2, 0, 1)
    loaded = load_guard(tmp_path)
    assert loaded.euclidean_thresholds is None
    np.testing.assert_allclose(loaded.scores(everything), expected, atol=1e-5)  # a float32 bank


def discs(rng: np.random.Generator, count: int, tint: float, size: int = 16) -> np.ndarray:
    """Model inputs of a bright textured disc on black, warmer (red > green) by ``tint``."""
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (size * 0.4) ** 2
    images = np.zeros((count, size, size, 3), np.float32)
    for image in images:
        grey = 0.6 + rng.normal(0.0, 0.08, (size, size))
        image[inside] = np.stack([grey * (1 + tint), grey, grey * (1 - tint / 2)], -1)[inside]
    return np.clip(images, 0.0, 1.0)


@pytest.fixture
def warm():
    """Model inputs of the synthetic clusters, row for row: class c's discs tinted by its own
    amount (every known class is warm), and a generator for more discs."""
    rng = np.random.default_rng(11)
    tints = np.linspace(0.1, 0.3, 10)
    return {
        "train": np.concatenate([discs(rng, 80, t) for t in tints]),
        "validation": np.concatenate([discs(rng, 20, t) for t in tints]),
        "rng": rng,
    }


def image_guard(
    embeddings: np.ndarray, validation: np.ndarray, images: dict, coverage: float, **extra: object
) -> Guard:
    """A guard with image statistics over ten classes of 80 bank rows each."""
    from planets_mlops.imagestats import image_statistics

    return Guard.fit(
        embeddings,
        validation,
        GuardParams(coverage=coverage),
        bank_labels=np.repeat(np.arange(10), 80),
        bank_statistics=image_statistics(images["train"]),
        calibration_statistics=image_statistics(images["validation"]),
        **extra,
    )


def test_an_unseen_class_with_a_known_class_embedding_is_rejected_by_its_image_statistics(synthetic, warm):
    """The Mercury case: the model gives an unseen class a known class's embedding.

    Only the images tell them apart (here a neutral grey disc where class 3's is warm):
    the embedding guard (planets-guard/3) keeps them as class 3 (all but the calibration's
    share), the one with image statistics rejects them all, and both keep the known images.
    """
    rng, validation_images = warm["rng"], warm["validation"]
    train, validation = synthetic["train"], synthetic["validation"]
    labels, validation_labels = np.repeat(np.arange(10), 80), np.repeat(np.arange(10), 20)
    embeddings_only = Guard.fit(train, validation, GuardParams(coverage=0.95), bank_labels=labels)
    guard = image_guard(train, validation, warm, 0.95)
    assert guard.needs_images and not embeddings_only.needs_images
    assert guard.describe()["format"] == "planets-guard/4"
    unseen = validation[validation_labels == 3]  # class 3's embeddings ...
    grey = discs(rng, len(unseen), 0.0)  # ... of grey discs
    assert np.mean(embeddings_only.recognised(embeddings_only.scores(unseen))) >= 0.9
    assert not np.any(guard.recognised(guard.scores(unseen, grey)))
    kept = guard.recognised(guard.scores(validation, validation_images))
    for c in range(10):
        assert np.mean(kept[validation_labels == c]) >= 0.95
    # Unseen embeddings are still rejected by the embedding part, whatever the images.
    assert not np.any(guard.recognised(guard.scores(synthetic["unseen"], discs(rng, 200, 0.2))))


def test_a_guard_with_image_statistics_needs_the_images_and_round_trips(synthetic, warm, tmp_path):
    from planets_mlops.guard import IMAGES_FILE
    from planets_mlops.imagestats import image_statistics

    train_images, validation_images = warm["train"], warm["validation"]
    guard = image_guard(synthetic["train"], synthetic["validation"], warm, 0.9)
    with pytest.raises(
        DataError, match=r"compares the images themselves.*guard\.scores\(embeddings, images\)"
    ):
        guard.scores(synthetic["validation"])
    with pytest.raises(DataError, match="200 rows of .* image statistics"):
        guard.scores(synthetic["validation"], validation_images[:10])
    with pytest.raises(DataError, match="both the bank and the calibration images, or of neither"):
        Guard.fit(synthetic["train"], synthetic["validation"], bank_statistics=image_statistics(train_images))
    guard.save(tmp_path)
    doc = json.loads((tmp_path / GUARD_FILE).read_text())
    assert doc["metric"] == "cosine-euclidean-image-knn-classwise"
    assert doc["image_statistics"] == "planets-image-stats/1" and len(doc["image_thresholds"]) == 10
    loaded = load_guard(tmp_path)
    np.testing.assert_array_equal(
        loaded.scores(synthetic["validation"], validation_images),
        guard.scores(synthetic["validation"], validation_images),
    )
    np.save(tmp_path / IMAGES_FILE, np.ones((5, 3), np.float32))
    with pytest.raises(DataError, match="do not belong together"):
        load_guard(tmp_path)
    (tmp_path / IMAGES_FILE).unlink()
    with pytest.raises(DataError, match="Cannot read guard_images.npy.*Retrain"):
        load_guard(tmp_path)


def test_a_version_3_guard_loads_and_recognises_what_it_recognised_before(synthetic, tmp_path):
    """A model trained by the previous version (planets-guard/3: the embedding alone)."""
    labels = np.repeat(np.arange(10), 80)
    fitted = Guard.fit(
        synthetic["train"], synthetic["validation"], GuardParams(coverage=0.9), bank_labels=labels
    )
    fitted.save(tmp_path)
    assert json.loads((tmp_path / GUARD_FILE).read_text())["format"] == "planets-guard/3"
    everything = np.concatenate([synthetic["validation"], synthetic["unseen"]])
    loaded = load_guard(tmp_path)
    assert not loaded.needs_images
    np.testing.assert_array_equal(loaded.scores(everything), fitted.scores(everything))
    # Images given to a guard that does not use them change nothing.
    np.testing.assert_array_equal(
        loaded.scores(everything, np.zeros((len(everything), 8, 8, 3))), fitted.scores(everything)
    )


def test_images_of_another_class_near_a_class_do_not_stretch_its_image_threshold(synthetic, warm):
    """Each class's image threshold is set on its own calibration images.

    Two class-5 images whose embeddings lie among class 3's (the model still answers 5 for
    them) must not widen class 3's threshold so far that grey discs with class 3's embedding
    pass: calibrated on the images nearest each class, they would.
    """
    rng = warm["rng"]
    validation_labels = np.repeat(np.arange(10), 20)
    strays = np.flatnonzero(validation_labels == 5)[:2]
    validation = synthetic["validation"].copy()
    validation[strays] = validation[validation_labels == 3][:2]
    warm["validation"][strays] = discs(rng, 2, 0.0)  # grey, unlike class 3's
    validation_images = warm["validation"]
    fitted = {
        own: image_guard(
            synthetic["train"], validation, warm, 0.95, calibration_labels=validation_labels if own else None
        )
        for own in (True, False)
    }
    unseen, grey = validation[validation_labels == 3], discs(rng, 20, 0.0)
    assert not np.any(fitted[True].recognised(fitted[True].scores(unseen, grey)))
    assert np.mean(fitted[False].recognised(fitted[False].scores(unseen, grey))) > 0.5
    kept = fitted[True].recognised(fitted[True].scores(validation, validation_images))
    assert np.mean(np.delete(kept, strays)) >= 0.95


def test_row_by_row_scores_are_those_of_each_image_alone_whatever_the_batch(synthetic, warm):
    """What the service asks (coalesced requests): each score to the bit, alone or in any batch.

    The default (two matrix products a block, unit rows for the cosine) may differ from it
    in the last bits only, and recognises the same images.
    """
    guard = image_guard(synthetic["train"], synthetic["validation"], warm, 0.9)
    embeddings = np.concatenate([synthetic["validation"], synthetic["unseen"][:40]])
    images = np.concatenate([warm["validation"], discs(warm["rng"], 40, 0.0)])
    alone = np.array(
        [
            guard.scores(embeddings[i : i + 1], images[i : i + 1], row_by_row=True)[0]
            for i in range(len(images))
        ]
    )
    for size in (2, 3, 8, 17, len(images)):
        batched = np.concatenate(
            [
                guard.scores(embeddings[i : i + size], images[i : i + size], row_by_row=True)
                for i in range(0, len(images), size)
            ]
        )
        np.testing.assert_array_equal(batched, alone)
    default = guard.scores(embeddings, images)
    np.testing.assert_allclose(default, alone, rtol=0, atol=1e-9)
    # The calibration images that set a class's threshold score 0.5 exactly, give or take the
    # last bits; every other image is recognised alike.
    clear = np.abs(alone - 0.5) > 1e-9
    assert np.mean(clear) > 0.9
    np.testing.assert_array_equal(guard.recognised(default)[clear], guard.recognised(alone)[clear])
    assert 0 < np.mean(guard.recognised(alone)) < 1
