"""What a person sees when a local run fails: the step's own error, its log, nothing else.

The acceptance test runs the quickstart as a user would, in a subprocess whose output is a
pipe (not a terminal), on a real git repository that holds no DVC-tracked data.
"""

import pytest

from planets_mlops.app import quickstart
from planets_mlops.app.local import StepFailedError, run_log_folder, step_error, trains
from planets_mlops.pipelines.monitoring import monitoring
from planets_mlops.pipelines.retraining import retraining
from planets_mlops.pipelines.training import training

LOG = """\
08:21:46.900 - INFO - Executing task 'pull-data'
    Traceback (most recent call last):
      File "/x/planets_mlops/pull.py", line 58, in _normalise_repo_url
        raise DataSourceError(
    planets_mlops.errors.DataSourceError: Data repository '/nope' not found. Pass a git URL
    or an existing local repository path as data_repo_url.

08:21:48.079 - ERROR - Task 'pull-data' finished with status FAILURE
"""


def test_step_error_is_the_last_exception_with_its_continuation_lines():
    assert step_error(LOG) == (
        "DataSourceError: Data repository '/nope' not found. Pass a git URL\n"
        "or an existing local repository path as data_repo_url."
    )
    assert step_error("Killed\n") is None


def test_each_run_gets_its_own_log_folder(tmp_path):
    first = run_log_folder(tmp_path / "logs" / "training.log")
    second = run_log_folder(tmp_path / "logs" / "training.log")
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name.startswith("training-") and first.parent == tmp_path / "logs"


def test_step_failed_message_names_error_tail_and_logs(tmp_path):
    exc = StepFailedError(
        "pull-data", "DataSourceError: bad", ["a", "b"], tmp_path / "p.log", tmp_path / "r.log"
    )
    text = str(exc)
    assert text.splitlines()[0] == "Step pull-data failed: DataSourceError: bad"
    assert f"Last 2 lines of its log, {tmp_path / 'p.log'}:" in text and "  | b" in text
    assert text.endswith(f"Whole run's log: {tmp_path / 'r.log'}")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "-3"], "Invalid train_epochs=-3: must be a positive integer."),
        (["--epochs", "0"], "Invalid train_epochs=0"),
    ],
)
def test_quickstart_refuses_bad_values_before_anything_runs(tmp_path, capsys, argv, message):
    code = quickstart.main(["--workdir", str(tmp_path), "--no-tracking", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert list(tmp_path.iterdir()) == []  # no data repository, no MLflow, no log


def test_quickstart_refuses_option_prefixes(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        quickstart.main(["--workdir", str(tmp_path), "--epoch", "3"])
    assert exc.value.code == 2
    assert "Did you mean '--epochs'?" in capsys.readouterr().err


def test_reports_are_copied_with_names_a_browser_opens(tmp_path):
    from planets_mlops.app.local import LocalRun, TaskResult

    task = tmp_path / "run" / "evaluate-model"
    task.mkdir(parents=True)
    (task / "report").write_text("<!doctype html><html><body>report</body></html>")
    (task / "verdict").write_text("# Promotion gate: **PROMOTE**\n")
    (task / "metrics").write_text("")
    (task / "model").mkdir()
    artifacts = {name: task / name for name in ("report", "verdict", "metrics", "model")}
    run = LocalRun(
        root=tmp_path / "run",
        seconds=1.0,
        tasks={"evaluate-model": TaskResult("evaluate-model", artifacts=artifacts)},
    )
    copies = run.report_copies(tmp_path / "reports")
    assert copies == {
        "evaluate-model/report": tmp_path / "reports" / "evaluate-model-report.html",
        "evaluate-model/verdict": tmp_path / "reports" / "evaluate-model-verdict.md",
    }
    assert copies["evaluate-model/report"].read_text() == (task / "report").read_text()


def test_only_a_pipeline_that_always_trains_gets_a_warm_training_child():
    # retraining trains only on new labels: a warm child would import TensorFlow for nothing.
    assert [trains(p) for p in (training, retraining, monitoring)] == [True, False, False]
    assert trains(step_error) is False  # not a pipeline


def test_the_warm_training_container_runs_the_training_step_s_own_image():
    from components.images import TRAINING_GPU_IMAGE
    from planets_mlops.app.containers import training_image

    assert training_image(training) == TRAINING_GPU_IMAGE
    # No top-level training step: no warm container.
    assert training_image(retraining) is None and training_image(monitoring) is None
