"""Every shell example of the README and docs/serving.md runs, or says why not (issue 24).

Each line of a ```bash / ```sh / ```shell / ```console block of the pages in EXAMPLES is
looked up, as written (its ``# comment`` dropped, continuation lines joined), in that page's
table below, which says what this test does with it:

- RUN: run here as written (cheap, no cluster), by the check of the same line in RUNS;
- DRY: ``make`` lines: each make command of the line with ``-n`` (the targets exist and
  their recipes expand); the detail names where the real run happens;
- ELSEWHERE: run for real by the test(s) the detail names;
- CLUSTER: needs a cluster, a cloud account or a registry server; the reason, and the
  test(s) that run its logic here against a fake or a local stand-in;
- BENCHMARK: a benchmark (minutes of training and load; it prints figures, not a test).

Every ``planets-mlops`` line, whatever its kind, is parsed by the real CLI parser, and every
``python -m benchmarks.X`` line by that benchmark's own parser; every test a detail names
must exist. A new example in none of the tables fails, naming the line and what to do; a
table line the page no longer gives fails too, so the tables stay the pages' own.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from planets_mlops.app.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
HERE = "tests/component/test_shell_examples.py"

RUN = "run here"
DRY = "make -n here"
ELSEWHERE = "run by"
CLUSTER = "needs a cluster"
BENCHMARK = "benchmark"

QUICKSTART_TEST = (
    "tests/pipeline/test_quickstart.py::"
    "test_a_weaker_grayscale_rerun_is_gated_against_colour_production_and_ends_with_its_verdict"
)
FAKE_KFP = "the fake KFP API (tests/support/fake_kfp_api.py)"

# page -> {line as written -> (kind, detail)}. Review a change here as you would a test.
EXAMPLES: dict[str, dict[str, tuple[str, str]]] = {
    "README.md": {
        "make setup && make quickstart": (
            DRY,
            "make setup runs first in CI's .ci/run (PyPI, sudo for Chromium: minutes); the "
            f"quickstart's training steps 1-2 run by {QUICKSTART_TEST}; the whole loop (10+ min of "
            "training) only by hand, as the README's measured run",
        ),
        "make ci": (
            DRY,
            "CI's .ci/run runs exactly this target (tests/component/test_shell_examples.py::"
            "test_ci_runs_the_readme_test_line); images need Podman and minutes on a fresh machine",
        ),
        "planets-mlops compile": (RUN, "every pipeline and component into build/ of an empty folder"),
        "planets-mlops upload": (
            CLUSTER,
            f"needs a KFP host; run against {FAKE_KFP} by tests/component/test_cli.py::"
            "test_upload_creates_pipeline_then_version_and_is_idempotent",
        ),
        "planets-mlops run training --params-file params.yaml --param data_repo_url=https://... "
        "--experiment planets --pipeline-root gs://my-bucket/pipeline-root "
        "--service-account planets-pipeline-runner": (
            CLUSTER,
            "needs a KFP host and a bucket; this line runs as written (the URL filled in) against "
            f"{FAKE_KFP} in tests/component/test_documented_commands.py::"
            "test_the_documented_cluster_commands_run_as_written",
        ),
        'planets-mlops schedule retraining --cron "0 0 3 * * *" --params-file params.yaml '
        "--param data_repo_url=https://... --param label_studio_project=planets": (
            CLUSTER,
            "needs a KFP host; this line runs as written (the URL filled in) against "
            f"{FAKE_KFP} in tests/component/test_documented_commands.py::"
            "test_the_documented_cluster_commands_run_as_written",
        ),
        "planets-mlops status": (
            CLUSTER,
            f"needs a KFP host; run against {FAKE_KFP} by tests/component/test_cli.py::"
            "test_status_lists_runs_with_state_and_metrics",
        ),
        "planets-mlops models list": (
            ELSEWHERE,
            "needs an MLflow registry: a real local one in tests/pipeline/test_registry_pipeline.py::"
            "test_train_register_promote_retrain_by_alias_and_roll_back",
        ),
        'planets-mlops models rollback --reason "..."': (
            ELSEWHERE,
            "needs an MLflow registry: a real local one in tests/pipeline/test_registry_pipeline.py::"
            "test_train_register_promote_retrain_by_alias_and_roll_back and tests/servers/"
            "test_registry.py::test_cli_rollback_redeploys_the_previous_versions_bento",
        ),
        "planets-mlops report RUN_ID --format github --check": (
            CLUSTER,
            "needs a KFP run; the pull request job runs it against "
            f"{FAKE_KFP} and a real MLflow server in tests/servers/test_ci_workflow.py::"
            "test_pull_request_then_merge_ship_exactly_the_reviewed_model",
        ),
        "planets-mlops serve models:/planets-classifier@production": (
            ELSEWHERE,
            "needs an MLflow registry whose production has a bento: tests/servers/test_serve_command.py::"
            "test_models_uri_serves_the_bento_the_alias_names (the alias to the archive) and "
            "tests/servers/test_serve_command.py::test_serve_answers_predictions_and_stops (serving it)",
        ),
        "planets-mlops data init my-images --remote gs://my-bucket/dvc": (
            CLUSTER,
            "needs a GCS bucket; with a local DVC remote in tests/pure/test_your_data.py::"
            "test_data_init_builds_pushes_and_the_pipeline_pulls_it",
        ),
        "planets-mlops schedule sync .planets/schedules.yaml": (
            CLUSTER,
            f"needs a KFP host; the schedules workflow runs it against {FAKE_KFP} in "
            "tests/servers/test_ci_workflow.py::test_schedules_workflow_syncs_the_file_and_prunes_what_it_dropped",
        ),
        "make help": (RUN, "lists every target of the Makefile"),
        "make test-fast": (DRY, "the real run: CI's make test (every tier) and each session's inner loop"),
        "make lint": (DRY, "the real run: before every landing (CONTRIBUTING.md)"),
        "make compile": (DRY, "its recipe is planets-mlops compile, run here for real (the line above)"),
        "make lock": (
            DRY,
            "re-resolves against PyPI; tests/pure/test_locks.py::test_every_dependency_is_pinned_exactly "
            "checks what it writes",
        ),
    },
    "docs/serving.md": {
        **{
            line: (
                ELSEWHERE,
                "needs a served bento: run as written (only the port changes) by tests/servers/"
                "test_serve_command.py::test_the_serving_docs_curl_examples_run_as_written",
            )
            for line in (
                "curl -F image=@data/planets/extra/0ATMfhGdyFWR.jpg http://127.0.0.1:3000/predict",
                "curl --data-binary @data/planets/extra/0EzXzVnbhJXV.jpg -H 'Content-Type: image/jpeg' "
                "http://127.0.0.1:3000/predict",
                "curl -F image=@data/planets/extra/0ATMfhGdyFWR.jpg -F image=@data/planets/extra/"
                "0IjMfhGdyFWR.jpg http://127.0.0.1:3000/predict_batch",
            )
        },
        "git worktree add --detach .work/base <revision before the limits>": (
            RUN,
            "in a scratch git repository, the revision HEAD",
        ),
        ".venv/bin/python -m benchmarks.bench_hostile --model-dir M --reference-src .work/base "
        "--seconds 60": (
            BENCHMARK,
            "two servers under 60 s of each hostile load, minutes in all",
        ),
        "planets-mlops serve planets.bento": (
            ELSEWHERE,
            "needs a bento: tests/servers/test_serve_command.py::test_serve_answers_predictions_and_stops",
        ),
        "planets-mlops serve .work/quickstart/pipeline-root/training-2026-12-07-09-13-32-873596": (
            ELSEWHERE,
            "needs a quickstart run: tests/servers/test_serve_command.py::"
            "test_sources_resolve_to_the_archive (a run folder to its bento) and "
            "tests/servers/test_serve_command.py::"
            "test_serve_answers_predictions_and_stops (serving it)",
        ),
        "planets-mlops serve models:/planets-classifier@production --tracking-uri http://127.0.0.1:5000": (
            ELSEWHERE,
            "needs an MLflow server whose production has a bento: tests/servers/test_serve_command.py::"
            "test_models_uri_serves_the_bento_the_alias_names",
        ),
        "planets-mlops serve gs://my-bucket/bentos/planets.bento --port 3001": (
            CLUSTER,
            "needs a GCS bucket; the same download from the GCS emulator in tests/containers/"
            "test_containers.py::test_serving_image_serves_a_bento_from_gcs",
        ),
        ".venv/bin/python -m benchmarks.bench_serving --seconds 15 --json .work/bench/results.json": (
            BENCHMARK,
            "trains the chapter 2.5 model, then minutes of load",
        ),
        ".venv/bin/python -m benchmarks.bench_serving --reuse --seconds 15 "
        "--bytecode-cache .work/bench/pycache": (
            BENCHMARK,
            "minutes of load on the model the line above trained",
        ),
        "PYTHONPYCACHEPREFIX=$PWD/build/pycache PYTHONDONTWRITEBYTECODE= nice -n 5 .venv/bin/python -m "
        "benchmarks.bench_serving --reuse --cold-starts 1 --clients --container --rounds 4 --seconds 10": (
            BENCHMARK,
            "the serving image (make images) and bentoml serve alternating under load, minutes; the image "
            "serving a bento from the GCS emulator is tested by tests/containers/test_containers.py::"
            "test_serving_image_serves_a_bento_from_gcs",
        ),
        "PYTHONPYCACHEPREFIX=$PWD/build/pycache PYTHONDONTWRITEBYTECODE= .venv/bin/python -m "
        "benchmarks.bench_serving --work WORK --reuse --cold-starts 3 --clients 1 8 --seconds 10 "
        "--container --rounds 3": (
            BENCHMARK,
            "the serving image (make images) and bentoml serve alternating under load after 3 cold "
            "starts and the plain phase, minutes; the image serving a bento from the GCS emulator is "
            "tested by tests/containers/test_containers.py::test_serving_image_serves_a_bento_from_gcs",
        ),
        "PYTHONPYCACHEPREFIX=$PWD/build/pycache PYTHONDONTWRITEBYTECODE= nice -n 5 .venv/bin/python -m "
        "benchmarks.bench_serving --work WORK --reuse --cold-starts 1 --clients 1 8 --seconds 8": (
            BENCHMARK,
            "run in two worktrees (before and after), alternating, each with its own copy of the model "
            "folder as WORK; a cold start and 16 s of load each",
        ),
    },
}  # fmt: skip

SHELL_FENCE = re.compile(
    r"^[ \t]*```(bash|sh|shell|console)[ \t]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE
)
ANY_FENCE = re.compile(r"^[ \t]*```([a-z]*)[ \t]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
COMMAND_WORDS = (
    "make",
    "planets-mlops",
    "pip",
    "python",
    ".venv/",
    "git",
    "dvc",
    "curl",
    "kubectl",
    "gcloud",
    "$ ",
)
TEST_NAME = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def _drop_comment(line: str) -> str:
    """``line`` without its shell comment: a ``#`` that starts a word outside quotes."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def shell_lines(page: str) -> list[tuple[str, str]]:
    """("page:line", command as written) of every command line of the page's shell blocks."""
    text = (ROOT / page).read_text()
    found = []
    for block in SHELL_FENCE.finditer(text):
        first = text[: block.start(2)].count("\n") + 1
        lines = block.group(2).split("\n")
        i = 0
        while i < len(lines):
            start, line = i, lines[i].strip()
            while line.endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line[:-1] + " " + lines[i].strip()
            i += 1
            if block.group(1) == "console":  # a prompt marks a command; the rest is its output
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            command = " ".join(_drop_comment(line).split())
            if command:
                found.append((f"{page}:{first + start}", command))
    return found


LINES = [(where, line) for page in EXAMPLES for where, line in shell_lines(page)]


# ------------------------------------------------------------------ RUN: the checks, by line


def _env() -> dict[str, str]:
    """This environment with the venv's console scripts (planets-mlops) first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _bash(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{line} (in {cwd}) exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def _compile(line: str, tmp_path: Path) -> None:
    done = _bash(line, tmp_path)
    for pipeline in ("training", "retraining", "monitoring"):
        assert (tmp_path / "build" / "pipelines" / f"{pipeline}.yaml").is_file(), done.stdout
    assert (tmp_path / "build" / "components" / "train_model.yaml").is_file(), done.stdout
    assert "build and push them before running on a cluster" in done.stderr + done.stdout


def _make_help(line: str, tmp_path: Path) -> None:
    done = _bash(line, ROOT)
    (phony,) = re.findall(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    listed = set(re.findall(r"^  make (\S+)", done.stdout, re.MULTILINE))
    assert set(phony.split()) <= listed, sorted(set(phony.split()) - listed)


def _git_worktree(line: str, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    author = ["-c", "user.name=planets-mlops", "-c", "user.email=planets-mlops@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", *author, "commit", "-q", "--allow-empty", "-m", "x"], cwd=repo, check=True)
    _bash(line.replace("<revision before the limits>", "HEAD"), repo)
    assert (repo / ".work" / "base" / ".git").is_file()


RUNS: dict[str, Callable[[str, Path], None]] = {
    "planets-mlops compile": _compile,
    "make help": _make_help,
    "git worktree add --detach .work/base <revision before the limits>": _git_worktree,
}


# ------------------------------------------------------------------ parsers


def _parses_with_the_cli(where: str, words: list[str]) -> None:
    argv = words[1:]
    if argv[:2] == ["schedule", "sync"]:  # as planets_mlops.app.cli.entry.main spells it
        argv = ["schedule-sync", *argv[2:]]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: {shlex.join(words)} does not parse with the real CLI (exit {exc.code})")


class _Parsed(Exception):
    """Raised in place of running a benchmark once its arguments have parsed."""


def _parses_with_the_benchmark(where: str, words: list[str], monkeypatch) -> None:
    module = words[words.index("-m") + 1]
    assert module.startswith("benchmarks."), where
    parse = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        raise _Parsed(parse(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
    try:
        importlib.import_module(module).main(words[words.index("-m") + 2 :])
    except _Parsed:
        return
    except SystemExit as exc:
        pytest.fail(
            f"{where}: {shlex.join(words)} does not parse with the benchmark's parser (exit {exc.code})"
        )
    pytest.fail(f"{where}: {module}.main returned without parsing its arguments")


# ------------------------------------------------------------------ the tests


def test_the_pages_give_shell_examples_of_every_kind():
    assert len(LINES) >= 25, LINES
    kinds = {EXAMPLES[where.split(":")[0]].get(line, ("?",))[0] for where, line in LINES}
    assert {RUN, DRY, ELSEWHERE, CLUSTER, BENCHMARK} <= kinds, kinds


@pytest.mark.parametrize(("where", "line"), LINES, ids=[where for where, _ in LINES])
def test_every_shell_example_runs_or_is_accounted_for(where, line, tmp_path, monkeypatch):
    page = where.split(":")[0]
    if line not in EXAMPLES[page]:
        pytest.fail(
            f"{where}: `{line}` is a shell example that {HERE} does not know. Add it to "
            f"EXAMPLES[{page!r}] as RUN (cheap, no cluster: with its check in RUNS), DRY (make "
            "targets), ELSEWHERE (name the test that runs it, tests/x.py::test_y), or CLUSTER or "
            "BENCHMARK with the reason (and the test that runs its logic here, if any)."
        )
    kind, detail = EXAMPLES[page][line]
    for path, name in TEST_NAME.findall(detail):
        source = ROOT / path
        assert source.is_file() and re.search(rf"^def {name}\(", source.read_text(), re.MULTILINE), (
            f"{where}: the table names {path}::{name}, which does not exist"
        )
    words = shlex.split(line)
    if words[0] == "planets-mlops":
        _parses_with_the_cli(where, words)
    if "-m" in words and words[words.index("-m") + 1].startswith("benchmarks."):
        _parses_with_the_benchmark(where, words, monkeypatch)
    if kind == RUN:
        RUNS[line](line, tmp_path)
    elif kind == DRY:
        commands = [command.split() for command in " ".join(words).split(" && ")]
        for make, *targets in commands:
            assert make == "make" and targets, f"{where}: DRY is for make lines: {line!r}"
            done = subprocess.run(
                ["make", "-n", *targets], cwd=ROOT, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, f"{where}: make -n {' '.join(targets)}:\n{done.stderr}"
    elif kind == ELSEWHERE:
        assert TEST_NAME.search(detail), f"{where}: ELSEWHERE must name the test that runs it"
    else:
        assert kind in (CLUSTER, BENCHMARK) and detail, f"{where}: {kind!r} needs a reason"


def test_the_tables_hold_only_lines_the_pages_give():
    given = {(where.split(":")[0], line) for where, line in LINES}
    stale = [(page, line) for page, table in EXAMPLES.items() for line in table if (page, line) not in given]
    assert not stale, f"lines in {HERE}'s EXAMPLES that the page no longer gives (remove them): {stale}"
    assert set(RUNS) == {
        line for table in EXAMPLES.values() for line, (kind, _) in table.items() if kind == RUN
    }


def test_no_shell_example_hides_in_an_untagged_block():
    # A block without a language is output (the README's failed-step example); a command in
    # one would escape this test.
    for page in EXAMPLES:
        text = (ROOT / page).read_text()
        for block in ANY_FENCE.finditer(text):
            first_line = block.group(2).lstrip().split("\n")[0]
            if block.group(1) == "" and first_line.startswith(COMMAND_WORDS):
                line = text[: block.start(2)].count("\n") + 1
                pytest.fail(f"{page}:{line}: a command in an untagged block: tag it ```bash")


def test_ci_runs_the_readme_test_line():
    # The README's second command is CI's script: the same make targets, in the same order.
    (line,) = [line for _, line in shell_lines("README.md") if line.startswith("make ci")]
    readme = [target for command in line.split(" && ") for target in command.split()[1:]]
    rows = (ROOT / ".ci" / "run").read_text().splitlines()
    ci = [target for row in rows if row.startswith("make ") for target in row.split()[1:]]
    assert ci == readme == ["ci"], (ci, readme)
    # ... and `make ci` is the set-up, then the images and every tier (scripts/ci_tests.sh).
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nci:", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    assert [row.strip() for row in recipe] == [
        "$(MAKE) setup containers-setup",
        "TEST_WORKERS=$(TEST_WORKERS) scripts/ci_tests.sh",
    ]
    script = (ROOT / "scripts" / "ci_tests.sh").read_text()
    assert "setsid make images" in script
    assert '-m "not containers"' in script and "-m containers" in script
