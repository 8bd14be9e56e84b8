"""Two reviews built from the real gate (planets_mlops.gate.decide) on fixed outcomes.

``promote``: the candidate wins more pairs than it loses and knows a new class (Titan);
``refuse``: it loses 8 of 8 discordant pairs on Mars (McNemar p = 0.0078). Used by the golden
tests of the comment and by the screenshot script (scripts/render_ci_comment.py).
"""

from __future__ import annotations

import numpy as np

from planets_mlops.app.review import Review
from planets_mlops.gate import decide
from planets_mlops.knobs import EvaluateParams
from planets_mlops.registry.steps import gate_record

PRODUCTION_CLASSES = ["Earth", "Jupiter", "Mars", "Moon"]
CANDIDATE_CLASSES = ["Earth", "Jupiter", "Mars", "Moon", "Titan"]
LINEAGE = {
    "data_repo_url": "https://github.com/example/planets-data.git",
    "data_path": "data/raw",
    "data_commit": "4f9c2e1b7a0d3c5e8f6a1b2c3d4e5f60718293a4",
    "data_dvc_hash": "md5:1c8e4b0f6a2d9e7c5b3a1f0e9d8c7b6a.dir",
    "data_content_hash": "sha256:9d2f0c4b",
    "code_revision": "0.1.0-3a5c7e9",
    "bento_tag": "planets:v7",
    "ci.commit": "8b1d4f0e2c6a9b3d5f7e1a0c2b4d6f8e0a1c3e5b",
    "ci.pipeline_version": "pr-42-8b1d4f0e2c6a",
}


def _outcomes(case: str) -> tuple[list[int], list[int], list[int]]:
    """(labels, candidate predictions, production predictions), 10 images per shared class."""
    labels, cand, prod = [], [], []
    for cls in range(4):
        for i in range(10):
            labels.append(cls)
            wrong = (cls + 1) % 4
            if case == "promote":
                # Candidate: right on 9 of 10; production: right on 7 of 10 (its misses overlap once).
                cand.append(cls if i != 0 else wrong)
                prod.append(cls if i not in (0, 1, 2) else wrong)
            elif cls == 2:  # refuse: on Mars the candidate misses 8 images production gets right
                cand.append(cls if i >= 8 else wrong)
                prod.append(cls)
            else:
                cand.append(cls if i != 3 else wrong)
                prod.append(cls if i != 4 else wrong)
    if case == "promote":
        for i in range(6):  # Titan: only the candidate knows it (recall 5/6)
            labels.append(4)
            cand.append(4 if i else 0)
            prod.append(0)
    return labels, cand, prod


def confusion(labels: list[int], predictions: list[int], n: int) -> list[list[int]]:
    matrix = np.zeros((n, n), dtype=int)
    for truth, guess in zip(labels, predictions):
        matrix[truth, guess] += 1
    return matrix.tolist()


def review(case: str, kfp_ui: str = "https://kubeflow.example.com/pipeline") -> Review:
    """The review of ``case`` (``promote`` or ``refuse``) as ``planets-mlops report`` shows it."""
    classes = CANDIDATE_CLASSES if case == "promote" else PRODUCTION_CLASSES
    labels, cand, prod = _outcomes(case)
    verdict = decide(
        labels,
        cand,
        prod,
        classes,
        PRODUCTION_CLASSES,
        EvaluateParams(bootstrap_resamples=2000, bootstrap_seed=0),
    )
    gate = gate_record({"gate": verdict.summary(), "production_version": "6"}, verdict.promote)
    acc = float(np.mean(np.asarray(labels) == np.asarray(cand)))
    return Review(
        kfp_run_id="3f2a9c1e-run",
        model="planets-classifier",
        version="7",
        pipeline="training",
        gate=gate,
        metrics={
            "val_accuracy": acc,
            "f1_macro": acc - 0.01,
            "guard_coverage": 0.95,
            "guard_threshold": 0.8123,
            "guard_unseen_rejected": 0.62,
        },
        production_metrics={
            "val_accuracy": gate["overall"]["production_val_accuracy"],
            "f1_macro": gate["overall"]["production_val_accuracy"] - 0.01,
            "guard_coverage": 0.95,
        },
        params={
            "train_lr": "0.001",
            "train_epochs": "12",
            "train_guard_coverage": "0.95",
            "data_rev": "main",
        },
        production_params={"train_lr": "0.001", "train_epochs": "10", "data_rev": "main"},
        classes=list(classes),
        matrix=confusion(labels, cand, len(classes)),
        lineage=dict(LINEAGE),
        kfp_run_url=f"{kfp_ui}/#/runs/details/3f2a9c1e-run",
        mlflow_run_url="https://mlflow.example.com/#/experiments/1/runs/0a1b2c3d",
    )
