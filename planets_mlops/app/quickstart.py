"""The whole loop on this machine, on the bundled planets data: ``make quickstart``.

1. Builds a git + DVC data repository from ``data/planets/raw`` with a local-folder DVC
   remote (``dvc add`` + ``dvc push`` + commit), once; later runs reuse it.
2. Runs the ``training`` pipeline under ``kfp.local`` (pull -> prepare -> train ->
   evaluate -> package as a bento) with the suite's default recipe (``--reference``: the
   guide's chapter 2.5 parameters, grayscale), one progress line per step, and prints
   the metrics and where every artifact is.
3. Serves the bento with ``bentoml serve`` on 127.0.0.1 and classifies a few images of
   the bundled ``extra/`` set over HTTP.
4. The loop that learns (:mod:`planets_mlops.app.production_loop`): production changes
   (a new camera that swaps red and blue); the served accuracy on test images, before;
   the changed traffic goes to the bento with prediction records and the inbox on; the
   ``monitoring`` pipeline finds the drift and its alert pushes the inbox to Label Studio,
   hardest first; the tasks are labelled through the API from the known truth (standing in
   for a person in the UI); the ``retraining`` pipeline trains on the labels and the gate
   compares it with production on the same images; the promoted model is served and the
   test images are classified again: before/after accuracy with 95 % intervals.
5. With ``--monitoring``: serves the bento with prediction records on, sends darkened
   ``extra/`` images, runs the ``monitoring`` pipeline and prints the drift verdict and
   where the Evidently report is.

A training run that the gate does not promote (a weaker re-run, against the registry's
production) ends the quickstart with its verdict: production stays as it was.

Unless ``--no-tracking``, a local ``mlflow server`` (free 127.0.0.1 port, SQLite and
artifacts in the work folder) tracks both runs: the training run registers version 1 of
``planets-classifier`` and points ``production`` at it, retraining registers the next
version and moves the alias when the gate promotes it; the server stops at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from planets_mlops.errors import InvalidParameterError, PlanetsError

REPO_ROOT = Path(__file__).resolve().parents[2]
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
    "train_lr_schedule": "constant",
}
# The suite's recipe: the defaults (planets_mlops.knobs), ten classes.
SUITE = {"train_output_classes": 10}
BASELINE = {
    **CHAPTER_2_5,
    "train_lr": 0.0001,
    "train_conv_size": 32,
    "train_dense_size": 64,
    "train_epochs": 5,
}


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
    """Print the data, validation metrics and artifact locations of a ``training`` run.

    Args:
        run: The finished :class:`~planets_mlops.app.local.LocalRun`.

    Returns:
        The ``evaluate-model`` task's metrics (name -> value).
    """
    metrics = run.metadata("evaluate-model", "metrics")
    dataset = run.metadata("pull-data", "dataset")
    print(
        f"\nData: {dataset.get('num_files')} files, commit {str(dataset.get('commit'))[:8]}, "
        f"DVC hash {dataset.get('dvc_hash')}"
    )
    print("Metrics (validation):")
    for key, value in metrics.items():
        print(f"  {key:<18} {value:.4f}")
    print("Artifacts:")
    for task, result in run.tasks.items():
        for name, path in result.artifacts.items():
            # Metrics-type artifacts live in the run's metadata, not in files, locally.
            where = str(path) if path.exists() else "(metadata only: see executor_output.json)"
            print(f"  {task + '/' + name:<34} {where}")
    reports = run.report_copies(run.log_file.parent / "reports" if run.log_file else run.root / "reports")
    if reports:
        print("Reports (open in a browser):")
        for name, path in reports.items():
            print(f"  {name:<34} {path.resolve().as_uri()}")
    if run.log_file:
        print(f"Full log: {run.log_file}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Run the quickstart (see the module docstring for the steps).

    Args:
        argv: Command-line arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The process exit status (0 on success).
    """
    from planets_mlops.app.cli.parser import Parser

    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".work" / "quickstart")
    parser.add_argument(
        "--reference", action="store_true", help="the guide's chapter 2.5 settings (grayscale)"
    )
    parser.add_argument(
        "--baseline", action="store_true", help="the guide's baseline settings (grayscale, 5 epochs)"
    )
    parser.add_argument("--epochs", type=int, help="override the number of epochs")
    parser.add_argument(
        "--data-repo",
        metavar="URL",
        help="train on this git + DVC data repository (a path or git URL; see docs/your-data.md) "
        "instead of the bundled planets; steps 3 to 5 need the planets classes and are skipped",
    )
    parser.add_argument(
        "--data-rev", default="main", help="with --data-repo: the git revision (default main)"
    )
    parser.add_argument(
        "--data-path",
        default=DATA_PATH,
        help=f"with --data-repo: the DVC-tracked folder (default {DATA_PATH})",
    )
    parser.add_argument("--json", type=Path, help="also write a JSON summary here")
    parser.add_argument("--skip-serving", action="store_true", help="skip step 3 (serve and classify)")
    parser.add_argument(
        "--skip-labelling",
        action="store_true",
        help="skip step 4 (the loop: changed traffic, monitoring, Label Studio, retraining)",
    )
    parser.add_argument(
        "--monitoring",
        action="store_true",
        help="step 5: serve with prediction records on, send darkened images, run the monitoring pipeline",
    )
    parser.add_argument(
        "--shift",
        default="swap_rb",
        choices=("swap_rb", "zoom", "darken", "rotate"),
        help="the production change of step 4 (default swap_rb: red and blue swapped)",
    )
    parser.add_argument(
        "--no-tracking",
        action="store_true",
        help="no MLflow: by default a local mlflow server (SQLite in the work folder) tracks the runs "
        "and registers the models, and is stopped at the end",
    )
    args = parser.parse_args(argv)
    try:
        return _main(args)
    except PlanetsError as exc:
        # The project's own message (a failed step's error, log tail and log path, or a bad
        # argument) without a traceback; see the logs for the rest.
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        return 2 if isinstance(exc, InvalidParameterError) else 1


def _main(args: argparse.Namespace) -> int:
    from planets_mlops.app.local import check_arguments
    from planets_mlops.pipelines.training import training

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("dvc").setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    params = dict(BASELINE if args.baseline else CHAPTER_2_5 if args.reference else SUITE)
    if args.epochs is not None:
        params["train_epochs"] = args.epochs
    if args.data_repo:
        params["train_output_classes"] = 0  # as many classes as the repository holds
        args.skip_serving = args.skip_labelling = True
        args.monitoring = False
    # Every value checked before anything runs (the data repository, the MLflow server).
    check_arguments(training, {"data_repo_url": ".", **params})
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # The MLflow server starts (and migrates its database, the first time) while the data
    # repository is made; the training pipeline waits for it.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-start")
    tracking = None if args.no_tracking else pool.submit(start_tracking, workdir)
    pool.shutdown(wait=False)
    try:
        print("== 1. Data repository (git + DVC, local remote)")
        if args.data_repo:
            repo = args.data_repo
            print(f"Data repository: {repo} (yours: revision {args.data_rev}, folder {args.data_path})")
        else:
            repo = ensure_data_repo(workdir)
    except BaseException:
        if tracking is not None and tracking.exception() is None:
            tracking.result().stop()
        raise
    setup = {"1. data repository": time.monotonic() - started}
    server = None if tracking is None else tracking.result()
    if server is not None:
        print(f"MLflow tracking server {server.url} (SQLite and artifacts in {workdir / 'mlflow'})")
        setup["MLflow server (waited)"] = time.monotonic() - started - setup["1. data repository"]
    try:
        return _loop(args, workdir, repo, params, server, setup, began=started)
    finally:
        if server is not None:
            server.stop()


def start_tracking(workdir: Path) -> Any:
    """A local ``mlflow server`` for the quickstart, with ``MLFLOW_TRACKING_URI`` pointing at it."""
    from planets_mlops.app.dev.mlflow_server import start_server

    # A loaded 2-core machine can take more than the default 90 s to start it.
    server = start_server(workdir / "mlflow", ready_timeout_s=240)
    os.environ["MLFLOW_TRACKING_URI"] = server.url
    return server


def _loop(
    args: argparse.Namespace,
    workdir: Path,
    repo: Path | str,
    params: dict[str, Any],
    server: Any,
    setup: dict[str, float],
    began: float,
) -> int:
    from planets_mlops.app.local import run_local
    from planets_mlops.pipelines.training import training

    tracking = {"tracking": True} if server is not None else {}
    steps: dict[str, float] = dict(setup)
    print(f"\n== 2. Training pipeline under kfp.local ({', '.join(f'{k}={v}' for k, v in params.items())})")
    run = run_local(
        training,
        workdir / "pipeline-root",
        log_file=workdir / "logs" / "training.log",
        data_repo_url=str(repo),
        data_rev=args.data_rev if args.data_repo else "main",
        data_path=args.data_path if args.data_repo else DATA_PATH,
        **params,
        **tracking,
    )
    steps["2. training pipeline"] = run.seconds
    print(f"Pipeline finished in {run.seconds:.1f} s: {run.root}")
    metrics = print_training_summary(run)
    summary: dict[str, Any] = {
        "params": params,
        "metrics": metrics,
        "seconds": run.seconds,
        "steps": {name: task.seconds for name, task in run.tasks.items()},
        "run_dir": str(run.root),
        "promoted": "package-model" in run.tasks,
    }
    if "package-model" not in run.tasks:
        # The gate kept production (a weaker run than the registry's production model).
        print_not_promoted(run)
    else:
        from planets_mlops.app.production_loop import Turn, run_loop

        model_dir = run.artifact("train-model", "model")
        bento = run.artifact("package-model", "bento")
        turn = (
            None if args.skip_labelling else Turn.make(workdir, args.shift, params.get("prepare_seed", 5241))
        )
        before = None
        if not args.skip_serving:
            print("\n== 3. Serve the bento (bentoml serve on 127.0.0.1) and classify extra images")
            started = time.monotonic()
            summary["serving"], before = serve_and_show(bento, turn)
            steps["3. serving"] = time.monotonic() - started
        if turn is not None:
            print(
                "\n== 4. The loop: production changes -> monitoring finds drift -> inbox to Label Studio "
                "-> labels -> retraining -> gate -> the new model served"
            )
            started = time.monotonic()
            loop = run_loop(
                workdir,
                Path(repo),
                model_dir,
                bento,
                {**params, **tracking},
                data_path=DATA_PATH,
                turn=turn,
                before=before,
            )
            steps["4. loop"] = time.monotonic() - started
            summary["loop"] = loop.summary()
            print_loop_summary(summary["loop"])
        if args.monitoring:
            from planets_mlops.app.monitoring_demo import monitoring_step

            print(
                "\n== 5. Monitoring: served traffic (darkened) -> prediction records -> monitoring pipeline"
            )
            started = time.monotonic()
            summary["monitoring"] = monitoring_step(workdir, bento, model_dir)
            steps["5. monitoring"] = time.monotonic() - started
    if server is not None:
        summary["registry"] = print_registry_summary(server.url)
    summary["step_seconds"] = steps
    summary["total_seconds"] = time.monotonic() - began
    print("\n== Time per step")
    for name, seconds in steps.items():
        print(f"  {name:<22} {seconds:6.1f} s")
    print(f"  {'whole quickstart':<22} {summary['total_seconds']:6.1f} s")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=str))
    return 0


def print_not_promoted(run: Any) -> None:
    """The gate's verdict of a training run it did not promote, and what that means."""
    verdict = run.tasks["evaluate-model"].artifacts.get("verdict") if "evaluate-model" in run.tasks else None
    print("\n== Not promoted: the gate kept the production model")
    if verdict is not None and Path(verdict).is_file():
        print(Path(verdict).read_text().strip())
    print(
        "Nothing was packaged, so there is nothing new to serve: production stays as it was "
        "(planets-mlops models list shows it). Steps 3 to 5 need a promoted model."
    )


def print_loop_summary(loop: dict[str, Any]) -> None:
    """Before/after served accuracy of the loop's test images, with 95 % intervals."""
    print(
        f"\nThe loop: {loop['traffic_images']} changed images sent, inbox {loop['inbox_items']}, monitor "
        f"{loop['verdict']} ({loop['drifted_columns']} columns), {loop['labelled']} images labelled "
        f"({loop['new_labels']} labelled images imported by retraining), "
        f"promoted {loop['promoted']}"
    )
    print(f"  {'served accuracy (95 % interval)':<34}{'before':>22}{'after':>22}   gain (95 % interval)")
    for kind in ("changed", "unchanged"):
        figures = loop.get(kind) or {}
        if "before" not in figures:
            continue
        cells = []
        for when in ("before", "after"):
            acc = figures.get(when)
            cells.append(
                f"{acc['accuracy']:.3f} [{acc['interval'][0]:.3f}, {acc['interval'][1]:.3f}]" if acc else "-"
            )
        paired = figures.get("paired")
        gain = (
            f"{paired['gain']:+.3f} [{paired['interval'][0]:+.3f}, {paired['interval'][1]:+.3f}]"
            if paired
            else "-"
        )
        label = f"{kind} test images ({figures['before']['images']})"
        print(f"  {label:<34}{cells[0]:>22}{cells[1]:>22}   {gain}")


def print_registry_summary(url: str) -> dict[str, Any]:
    """The registered versions and every alias move, as ``planets-mlops models`` shows them."""
    from planets_mlops.knobs import RegistryParams
    from planets_mlops.registry import registry as reg
    from planets_mlops.registry.settings import TrackingSettings

    client = TrackingSettings(url).client()
    name = RegistryParams.model_name
    versions = reg.list_versions(client, name)
    moves = reg.moves(client, name)
    print(f"\n== Registry ({url}, model {name})")
    for version in versions[:5]:
        print(f"  version {version['version']}: {', '.join(version['aliases']) or '-'}")
    for move in moves[-5:]:
        print(
            f"  move {move['sequence']}: production {move['from_version'] or 'none'} -> "
            f"{move['to_version']} ({move['why']})"
        )
    print(f"  (while a server runs: planets-mlops models list --tracking-uri {url})")
    return {"versions": [v["version"] for v in versions], "moves": len(moves)}


def one_extra_image_per_class() -> list[Path]:
    """The first image of each class in the bundled ``extra/`` set, sorted by class name.

    Returns:
        One path per class that has an extra image.
    """
    from planets_mlops.app.labelling_demo import extra_images

    chosen: dict[str, Path] = {}
    from planets_mlops.app.labelling_demo import true_label

    for path in extra_images():
        chosen.setdefault(true_label(path), path)
    return [chosen[name] for name in sorted(chosen)]


def serve_and_show(bento: Path, turn: Any = None) -> tuple[dict[str, Any], Any]:
    """Serve ``bento`` on a free port, classify one extra image per class, print the answers.

    Args:
        bento: The bento archive.
        turn: A :class:`~planets_mlops.app.production_loop.Turn`: its test images are also
            classified by the same server (production's accuracy before the loop).

    Returns:
        The figures of the shown images, and production's outcomes on the turn's test
        images (None without a turn).
    """
    from planets_mlops.app.dev.serve_local import classify_files, serve_bento
    from planets_mlops.app.labelling_demo import true_label

    images = one_extra_image_per_class()
    started = time.monotonic()
    before = None
    with serve_bento(Path(bento), env={"PLANETS_WORKERS": "1"}, ready_timeout=120) as server:
        results = classify_files(server.url, images)
        if turn is not None:
            before = turn.measure(server.url)
    right = 0
    for path, result in zip(images, results):
        truth = true_label(path)
        closest = result["closest_class"]
        right += closest == truth
        confidence = result["probabilities"][closest]
        mark = "ok   " if closest == truth else "WRONG"
        known = (
            "" if result.get("recognised", True) else f", not recognised: score {result['known_score']:.3f}"
        )
        print(f"  {mark} {path.name:<22} -> {closest:<8} (p={confidence:.3f}{known}; truly {truth})")
    print(
        f"  {right}/{len(images)} right; server started, answered and stopped in {time.monotonic() - started:.1f} s"  # noqa: E501
    )
    if before is not None:
        from planets_mlops.app.production_loop import print_accuracy

        print(f"  The loop's {len(turn.plan.test)} test images (extra images no model trains on), before:")
        print_accuracy(print, "production", before)
    return {"images": len(images), "right": right}, before


if __name__ == "__main__":
    sys.exit(main())
