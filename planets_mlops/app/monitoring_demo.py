"""The quickstart's monitoring step: serve with records on, send shifted traffic, check drift.

Serves the bento of the training run with ``PLANETS_MONITORING_URI`` set (the service writes
one prediction record per image), sends the bundled ``extra`` images darkened (an
under-exposed camera) over HTTP, stops the server (which writes what is pending), then runs
the ``monitoring`` pipeline under ``kfp.local`` on the last hour of records against the
model's reference profile, and prints the verdict and where the report and the alert are.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any


def monitoring_step(
    workdir: Path, bento: Path, model_dir: Path, shift: str = "darken", images: int = 100
) -> dict:
    """Serve, send ``images`` shifted extra images, run the monitoring pipeline; returns its figures.

    Args:
        workdir: The quickstart's folder (records, pipeline root and logs go under it).
        bento: The bento archive of the training run.
        model_dir: Its model folder, holding the reference profile.
        shift: One of :data:`planets_mlops.app.dev.traffic.SHIFTS`.
        images: How many extra images to send (every fifth, so every class).

    Returns:
        The verdict, the record and drifted-column counts and the artifacts' paths.
    """
    import httpx

    from planets_mlops.app.dev import traffic
    from planets_mlops.app.dev.serve_local import classify_files, serve_bento
    from planets_mlops.app.labelling_demo import EXTRA_DIR
    from planets_mlops.app.local import run_local
    from planets_mlops.pipelines.monitoring import monitoring

    records = workdir / "monitoring" / "records"
    records.mkdir(parents=True, exist_ok=True)
    chosen = traffic.extra_images(EXTRA_DIR)[::5][:images]
    env = {
        "PLANETS_WORKERS": "1",
        "PLANETS_MONITORING_URI": str(records),
        "PLANETS_MONITORING_BATCH_AGE_S": "1",
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shifted-") as scratch:
        shifted = []
        for path in chosen:
            target = Path(scratch) / f"{path.stem}.jpg"
            target.write_bytes(traffic.shift_image(path.read_bytes(), shift))
            shifted.append(target)
        with serve_bento(bento, env=env, ready_timeout=120) as server:
            with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
                model_version = client.get("/metadata").json()["model_tag"]
            classify_files(server.url, shifted)
    print(f"  sent {len(shifted)} {shift}ed extra images to the served bento ({model_version}) in "
          f"{time.monotonic() - started:.1f} s; records under {records}")  # fmt: skip
    run = run_local(
        monitoring,
        workdir / "pipeline-root",
        log_file=workdir / "logs" / "monitoring.log",
        records_uri=str(records),
        model_uri=str(model_dir),
        model_version=model_version,
        window_hours=1,
    )
    verdict = run.tasks["detect-drift"].parameters["drift_verdict"]
    metrics = run.metadata("detect-drift", "metrics")
    summary: dict[str, Any] = {
        "verdict": verdict,
        "records": metrics.get("records"),
        "drifted_columns": metrics.get("drifted_columns"),
        "report": str(run.artifact("detect-drift", "report")),
        "evidence": str(run.artifact("detect-drift", "verdict")),
        "seconds": run.seconds,
    }
    records_seen, drifted = int(metrics.get("records", 0)), int(metrics.get("drifted_columns", 0))
    print(f"  verdict: {verdict.upper()} ({records_seen} records, {drifted} columns drifted)")
    print(f"  Evidently report: {summary['report']}")
    print(f"  evidence (Markdown): {summary['evidence']}")
    if "raise-alert" in run.tasks:
        summary["alert"] = str(run.artifact("raise-alert", "alert"))
        print(f"  alert: {summary['alert']}")
    return summary
