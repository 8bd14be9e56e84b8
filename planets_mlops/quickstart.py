"""The whole loop on this machine, on the bundled planets data: ``make quickstart``.

1. Builds a git + DVC data repository from ``data/planets/raw`` with a local-folder DVC
   remote (``dvc add`` + ``dvc push`` + commit), once; later runs reuse it.
2. Runs the ``training`` pipeline under ``kfp.local`` (pull -> prepare -> train ->
   evaluate) with the guide's chapter 2.5 parameters, one progress line per step.
3. Prints the metrics and where every artifact is.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_DATA = REPO_ROOT / "data" / "planets"
DATA_PATH = "data/raw"

CHAPTER_2_5 = {
    "prepare_seed": 5241,
    "prepare_split": 0.2,
    "prepare_image_size": 32,
    "prepare_grayscale": True,
    "train_lr": 0.001,
    "train_conv_size": 64,
    "train_dense_size": 128,
    "train_epochs": 10,
    "train_seed": 5241,
    "train_output_classes": 10,
}
BASELINE = {**CHAPTER_2_5, "train_lr": 0.0001, "train_conv_size": 32, "train_dense_size": 64, "train_epochs": 5}


def ensure_data_repo(workdir: Path, source: Path = BUNDLED_DATA / "raw") -> Path:
    """The quickstart's data repository under ``workdir``, created on first use."""
    from planets_mlops.datarepo import create_data_repo, git

    repo = workdir / "data-repo"
    if (repo / ".git").is_dir() and (repo / f"{DATA_PATH}.dvc").is_file():
        print(f"Data repository: {repo} (reused, commit {git(repo, 'rev-parse', '--short', 'HEAD')})")
        return repo
    remote = workdir / "dvc-remote"
    commit = create_data_repo(source, repo, str(remote.resolve()), data_path=DATA_PATH, tag="v1")
    print(f"Data repository: {repo} (new, commit {commit[:8]}, DVC remote {remote})")
    return repo


def print_training_summary(run: Any) -> dict[str, float]:
    metrics = run.metadata("evaluate-model", "metrics")
    dataset = run.metadata("pull-data", "dataset")
    print(f"\nData: {dataset.get('num_files')} files, commit {str(dataset.get('commit'))[:8]}, "
          f"DVC hash {dataset.get('dvc_hash')}")
    print("Metrics (validation):")
    for key, value in metrics.items():
        print(f"  {key:<18} {value:.4f}")
    print("Artifacts:")
    for task, result in run.tasks.items():
        for name, path in result.artifacts.items():
            # Metrics-type artifacts live in the run's metadata, not in files, locally.
            where = str(path) if path.exists() else "(metadata only: see executor_output.json)"
            print(f"  {task + '/' + name:<34} {where}")
    if run.log_file:
        print(f"Full log: {run.log_file}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".work" / "quickstart")
    parser.add_argument("--baseline", action="store_true", help="the guide's baseline settings instead of ch 2.5")
    parser.add_argument("--epochs", type=int, help="override the number of epochs")
    parser.add_argument("--json", type=Path, help="also write a JSON summary here")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("dvc").setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pipelines.training import training
    from planets_mlops.local import run_local

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print("== 1. Data repository (git + DVC, local remote)")
    repo = ensure_data_repo(workdir)

    params = dict(BASELINE if args.baseline else CHAPTER_2_5)
    if args.epochs:
        params["train_epochs"] = args.epochs
    print(f"\n== 2. Training pipeline under kfp.local ({', '.join(f'{k}={v}' for k, v in params.items())})")
    run = run_local(
        training, workdir / "pipeline-root", log_file=workdir / "logs" / "training.log",
        data_repo_url=str(repo), data_rev="main", data_path=DATA_PATH, **params,
    )
    print(f"Pipeline finished in {run.seconds:.1f} s: {run.root}")
    metrics = print_training_summary(run)
    summary = {
        "params": params,
        "metrics": metrics,
        "seconds": run.seconds,
        "steps": {name: task.seconds for name, task in run.tasks.items()},
        "run_dir": str(run.root),
    }
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
