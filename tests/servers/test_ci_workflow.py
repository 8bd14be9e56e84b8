"""The GitHub workflows ``ci init`` writes, driven step by step as the commands they are.

What is real: every ``run:`` step of the pull-request job and of the merge job runs in bash,
in order, with the environment GitHub would give it (``${{ }}`` expressions evaluated from a
pull-request or push event, ``GITHUB_OUTPUT``/``GITHUB_ENV``/``GITHUB_STEP_SUMMARY`` files
between steps); ``planets-mlops`` is the installed CLI; the registry is a real ``mlflow server``
(tests/support/fixtures/mlflow.py); git is real (the merge compares trees).

What stands in, because it cannot run here:
- the Kubeflow backend: tests/support/fake_kfp_api.py (the KFP v2beta1 REST API, no execution). While
  ``run --wait`` polls, this test does what the cluster's register-model and promote-model
  pods do for that run (the real ``register_trained_model`` and ``promote_registered`` with
  ``move_production=False`` on the real MLflow server), then lets the fake answer SUCCEEDED;
- GitHub (the CI provider): ``gh`` is a recording stand-in answering the API calls the steps
  make (comments, check runs, the merged pull request); ``uses:`` steps (checkout,
  setup-python, the Google auth actions) are skipped and their outputs given; the ``install``
  step is skipped (the suite is installed in this environment already);
- Kubernetes: the ``planets-mlops`` on PATH is the real CLI with the deploy layer's API
  replaced by the fake cluster of tests/pure/test_deploy_apply.py, as in test_registry.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from planets_mlops.app import cicd
from planets_mlops.gate import decide
from planets_mlops.knobs import RegistryParams
from planets_mlops.registry import registry as reg
from planets_mlops.registry import steps
from planets_mlops.registry.settings import TrackingSettings
from tests.support.ci_cases import PRODUCTION_CLASSES, _outcomes, confusion
from tests.support.fake_kfp_api import FakeKfpState, serve_fake_kfp

ROOT = Path(__file__).resolve().parents[2]
DATA_COMMIT = "4f9c2e1b7a0d3c5e8f6a1b2c3d4e5f60718293a4"
ID_TOKEN = "oidc-id-token-of-the-pr-identity"

GH_STUB = r'''#!PYTHON
"""Stands in for GitHub's `gh api` (the CI provider): records each call, answers from a state file."""
import json, os, re, sys
state_path = os.environ["GH_STATE"]
state = json.load(open(state_path))
args = sys.argv[1:]
assert args[0] == "api", args
method = "GET"
if "--method" in args:
    method = args[args.index("--method") + 1]
path = next(a for a in args[1:] if a.startswith("repos/"))
fields = {}
for i, a in enumerate(args):
    if a in ("-f", "-F"):
        key, _, value = args[i + 1].partition("=")
        fields[key] = open(value[1:]).read() if a == "-F" and value.startswith("@") else value
state["calls"].append({"method": method, "path": path, "fields": fields})
m = re.fullmatch(r"repos/[^/]+/[^/]+/issues/(\d+)/comments", path)
if m and method == "GET":
    # What the step's --jq selects: the bot's comments that start with the marker.
    for c in state["comments"]:
        mine = c["user"] == "github-actions[bot]" and c["body"].startswith(os.environ["MARKER"])
        if c["pr"] == m[1] and mine:
            print(c["id"])
elif m and method == "POST":
    state["comments"].append({"id": len(state["comments"]) + 1, "pr": m[1], "user": "github-actions[bot]",
                              "body": fields["body"]})
elif (m := re.fullmatch(r"repos/[^/]+/[^/]+/issues/comments/(\d+)", path)) and method == "PATCH":
    next(c for c in state["comments"] if c["id"] == int(m[1]))["body"] = fields["body"]
elif path.endswith("/check-runs") and method == "POST":
    state["checks"].append(fields)
elif (m := re.fullmatch(r"repos/[^/]+/[^/]+/commits/([0-9a-f]+)/pulls", path)):
    pr = state["merged"].get(m[1])
    if pr:
        print(f"number={pr['number']}\nhead_sha={pr['head_sha']}")
else:
    sys.exit(f"gh stand-in: no answer for {method} {path}")
json.dump(state, open(state_path, "w"))
'''

CLI_SHIM = r'''#!PYTHON
"""The real planets-mlops CLI; Kubernetes is the fake cluster of tests/pure/test_deploy_apply.py."""
import json, os, sys
sys.path.insert(0, "ROOT")
from planets_mlops.deploy import apply as deploy_apply
from tests.pure.test_deploy_apply import FakeCluster, Predictor, env_of
cluster = FakeCluster()
deploy_apply.KubernetesApi = lambda: cluster
deploy_apply.http_predict = Predictor()
from planets_mlops.app.cli import main
code = main(sys.argv[1:])
try:
    deployed = cluster.deployment()
except Exception:
    deployed = None
if deployed is not None:
    with open(os.environ["DEPLOYED_FILE"], "w") as out:
        json.dump(env_of(deployed), out)
sys.exit(code)
'''


# ----------------------------------------------------------------------------- a tiny Actions runner


def _lookup(ctx: dict[str, Any], dotted: str) -> Any:
    value: Any = ctx
    for part in dotted.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return value


def evaluate(expression: str, ctx: dict[str, Any]) -> Any:
    """The ``${{ }}`` expressions these workflows use: contexts, ==, !=, &&, ||, contains, x.*.y."""
    expr = re.sub(
        r"([a-z_]+(?:\.[\w-]+)*)\.\*\.(\w+)", lambda m: f"_star({m[1]!r}, {m[2]!r})", expression.strip()
    )
    expr = re.sub(r"(?<!['\w.])((?:github|vars|steps|env)(?:\.[\w-]+)+)", lambda m: f"_ctx({m[1]!r})", expr)
    expr = expr.replace("&&", " and ").replace("||", " or ")
    names = {
        "_ctx": lambda d: _lookup(ctx, d),
        "_star": lambda d, f: [x.get(f) for x in _lookup(ctx, d) or []],
        "contains": lambda seq, item: item in seq,
        "hashFiles": lambda *a: "",
    }
    return eval(expr, {"__builtins__": {}}, names)  # noqa: S307 - the test's own workflow files


def substitute(text: str, ctx: dict[str, Any]) -> str:
    def one(m: re.Match[str]) -> str:
        value = evaluate(m[1], ctx)
        return str(value).lower() if isinstance(value, bool) else str(value)

    return re.sub(r"\$\{\{(.*?)\}\}", one, str(text))


def run_job(
    workflow: dict[str, Any], job: str, ctx: dict[str, Any], base_env: dict[str, str], cwd: Path, work: Path
) -> list[dict[str, Any]]:
    """Every step of ``job`` in order; returns what each did. Stops at the first failing step."""
    spec = workflow["jobs"][job]
    env = dict(base_env)
    for key, value in {**workflow.get("env", {}), **spec.get("env", {})}.items():
        env[key] = substitute(value, ctx)
    ctx["steps"] = {}
    done = []
    for index, step in enumerate(spec["steps"]):
        name = step.get("name") or step.get("uses", "")
        if "if" in step and not evaluate(step["if"], ctx):
            done.append({"name": name, "skipped": "if"})
            continue
        if "uses" in step:
            outputs = ctx["given_outputs"].get(step.get("id", ""), {})
            ctx["steps"][step.get("id", f"s{index}")] = {"outputs": outputs}
            done.append({"name": name, "skipped": "uses"})
            continue
        if name == "install":
            done.append({"name": name, "skipped": "installed here"})
            continue
        files = {k: work / f"{job}-{index}-{k.lower()}" for k in ("GITHUB_OUTPUT", "GITHUB_ENV")}
        for path in files.values():
            path.write_text("")
        step_env = {**env, **{k: substitute(v, ctx) for k, v in step.get("env", {}).items()}}
        step_env.update({k: str(p) for k, p in files.items()})
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=cwd,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        outputs = dict(
            line.split("=", 1) for line in files["GITHUB_OUTPUT"].read_text().splitlines() if "=" in line
        )
        env.update(
            dict(line.split("=", 1) for line in files["GITHUB_ENV"].read_text().splitlines() if "=" in line)
        )
        ctx["steps"][step.get("id", f"s{index}")] = {"outputs": outputs}
        done.append({"name": name, "rc": proc.returncode, "out": proc.stdout, "err": proc.stderr})
        if proc.returncode != 0:
            break
    return done


# ----------------------------------------------------------------------------- the cluster's part


def _model_folder(path: Path, tag: str) -> Path:
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(f"onnx bytes of {tag}".encode())
    (path / "classes.json").write_text(json.dumps(PRODUCTION_CLASSES))
    (path / "preprocess.json").write_text("{}")
    return path


def _confusion_metadata(classes: list[str], matrix: list[list[int]]) -> dict[str, Any]:
    return {
        "confusionMatrix": {
            "annotationSpecs": [{"displayName": c} for c in classes],
            "rows": [{"row": row} for row in matrix],
        }
    }


def _register(
    model: str, kfp_run_id: str, case: str, params: dict[str, Any], tmp: Path, production: str
) -> steps.Registration:
    """What register-model (and, when promoted, promote-model with release off) do in the cluster."""
    # The four shared classes only (the golden cases' new class needs a five-class model).
    kept = [(t, c, p) for t, c, p in zip(*_outcomes(case)) if t < len(PRODUCTION_CLASSES)]
    labels, cand, prod = (list(x) for x in zip(*kept))
    verdict = decide(labels, cand, prod, PRODUCTION_CLASSES, PRODUCTION_CLASSES)
    folder = tmp / f"run-{kfp_run_id}"
    verdict_md = folder / "verdict.md"
    model_dir = _model_folder(folder / "model", kfp_run_id)
    verdict_md.write_text(verdict.to_markdown())
    registry = RegistryParams(tracking=True, model_name=model, experiment=f"exp-{model}")
    registration = steps.register_trained_model(
        registry,
        kfp_run_id=kfp_run_id,
        task_name="register-model",
        pipeline="training",
        run_params=params,
        metrics={
            "val_accuracy": verdict.overall.candidate_acc,
            "guard_coverage": 0.95,
            "guard_threshold": 0.81,
            **verdict.metadata(),
        },
        confusion=_confusion_metadata(PRODUCTION_CLASSES, confusion(labels, cand, len(PRODUCTION_CLASSES))),
        model_dir=model_dir,
        files={"evaluation/verdict.md": verdict_md},
        source={
            "repo_url": params.get("data_repo_url", ""),
            "commit": DATA_COMMIT,
            "dvc_hash": "md5:0f1e.dir",
        },
        prepared={"data_content_hash": "sha256:abc"},
        promote=verdict.promote,
        images={},
        code_revision="0.1.0-test",
        verdict={"gate": verdict.summary(), "production_version": production, "production_source": "x"},
    )
    if verdict.promote and params.get("release") is False:  # the pull request's runs
        held = steps.promote_registered(
            registry,
            registered=registration.metadata(),
            expected_version=production,
            why="gate: promote",
            bento_tag=f"planets_classifier:{kfp_run_id}",
            bento_uri=f"gs://bucket/bentos/{kfp_run_id}.bento",
            kfp_run_id=kfp_run_id,
            move_production=False,
        )
        assert not held.moved and "held for review" in held.markdown
    return registration


class Cluster(threading.Thread):
    """Watches the fake KFP for submitted runs and plays the cluster's part for each."""

    def __init__(self, state: FakeKfpState, model: str, tmp: Path, production: str) -> None:
        super().__init__(daemon=True)
        self.state, self.model, self.tmp, self.production = state, model, tmp, production
        self.case = "promote"
        self.seen: set[str] = set()
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for run_id, body in list(self.state.runs.items()):
                if run_id in self.seen:
                    continue
                self.seen.add(run_id)
                try:
                    params = body.get("runtime_config", {}).get("parameters", {})
                    _register(self.model, run_id, self.case, params, self.tmp, self.production)
                    self.state.run_states = ["RUNNING", "SUCCEEDED"]
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    self.errors.append(exc)
                    self.state.run_states = ["FAILED"]
            time.sleep(0.1)


# ----------------------------------------------------------------------------- the test


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def _executable(path: Path, text: str) -> None:
    path.write_text(text.replace("#!PYTHON", f"#!{sys.executable}").replace("ROOT", str(ROOT)))
    path.chmod(0o755)


@pytest.fixture
def repo(tmp_path) -> Path:
    """A user's repository after `planets-mlops ci init --provider github`, with one commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    cicd.write_templates(cicd.render_templates("github"), repo)
    (repo / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (repo / ".gitignore").write_text("run.txt\nreport.md\nmerged.md\n")  # what the jobs write
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "ci init")
    return repo


def test_pull_request_then_merge_ship_exactly_the_reviewed_model(repo, tmp_path, mlflow_env, model_name):
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "gh", GH_STUB)
    _executable(bin_dir / "planets-mlops", CLI_SHIM)
    gh_state = work / "gh.json"
    gh_state.write_text(json.dumps({"calls": [], "comments": [], "checks": [], "merged": {}}))

    # Production before the pull request: version 1, packaged and served.
    first = _register(model_name, "kfp-production", "promote", {"data_rev": "main"}, tmp_path, "")
    client = TrackingSettings.from_env().client()
    for key, value in (
        ("planets.bento_tag", "planets_classifier:v1"),
        ("planets.bento_uri", "gs://b/v1.bento"),
    ):
        client.set_model_version_tag(model_name, first.version, key, value)
    reg.move_alias(client, model_name, reg.PRODUCTION, first.version, expected=None, why="first model")

    pr_workflow = yaml.safe_load((repo / ".github/workflows/planets-pull-request.yml").read_text())
    merge_workflow = yaml.safe_load((repo / ".github/workflows/planets-merge.yml").read_text())
    # PyYAML reads the key `on` as True; the workflows are triggered as the issue asks.
    assert pr_workflow[True] == {"pull_request": {"types": ["opened", "synchronize", "reopened", "labeled"]}}
    assert merge_workflow[True] == {"push": {"branches": ["main"]}}

    with serve_fake_kfp(FakeKfpState(token=ID_TOKEN)) as (url, kfp):
        cluster = Cluster(kfp, model_name, tmp_path, production=first.version)
        cluster.start()
        base_env = {
            "PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "GH_STATE": str(gh_state),
            "MARKER": "<!-- planets-mlops:model-gate -->",
            "GITHUB_REPOSITORY": "example/planets",
            "GITHUB_STEP_SUMMARY": str(work / "summary.md"),
            "DEPLOYED_FILE": str(work / "deployed.json"),
            "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
            "NO_PROXY": "127.0.0.1,localhost",
        }
        variables = {
            "KFP_HOST": url,
            "KFP_UI": "https://kubeflow.example.com/pipeline",
            "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
            "DATA_REPO_URL": "https://github.com/example/planets-data.git",
            "KFP_SERVICE_ACCOUNT_PR": "planets-pr-runner",
            "PLANETS_MODEL": model_name,
        }

        def pull_request(number: int, case: str) -> tuple[str, list[dict[str, Any]]]:
            _git(repo, "checkout", "-q", "-B", f"pr-{number}", "main")
            (repo / "CHANGES.md").write_text(f"pull request {number}: {case}\n")
            _git(repo, "add", "-A")
            _git(repo, "commit", "-q", "-m", f"change {number}")
            head = _git(repo, "rev-parse", "HEAD")
            cluster.case = case
            ctx = _ctx_for(number, head, variables)
            assert evaluate(pr_workflow["jobs"]["train"]["if"], ctx) is True
            fork = json.loads(json.dumps(ctx))
            fork["github"]["event"]["pull_request"]["head"]["repo"]["full_name"] = "someone/planets"
            assert evaluate(pr_workflow["jobs"]["train"]["if"], fork) is False  # forks never train
            return head, run_job(pr_workflow, "train", ctx, base_env, repo, work)

        try:
            # ---- pull request 41: the gate refuses; the check fails, production stays.
            refused_head, done = pull_request(41, "refuse")
            names = [d["name"] for d in done]
            assert all(d.get("rc", 0) == 0 for d in done), [
                (d["name"], d.get("err", "")[-2000:]) for d in done
            ]
            assert names[-2:] == ["sticky comment", "check model-gate"], names
            state = json.loads(gh_state.read_text())
            (check,) = state["checks"]
            assert check["name"] == "model-gate" and check["head_sha"] == refused_head
            assert check["conclusion"] == "failure" and check["output[title]"].startswith("Model gate: KEEP")
            (comment,) = state["comments"]
            assert comment["body"].startswith(
                "<!-- planets-mlops:model-gate -->\n## Model gate: KEEP PRODUCTION"
            )
            assert "| Mars |" in comment["body"] and "**worse**" in comment["body"]

            # ---- pull request 42: the gate promotes; one sticky comment per pull request.
            head, done = pull_request(42, "promote")
            assert all(d.get("rc", 0) == 0 for d in done), [
                (d["name"], d.get("err", "")[-2000:]) for d in done
            ]
            by_name = {d["name"]: d for d in done}
            assert "state=SUCCEEDED" in by_name["run against production and wait"]["out"]
            state = json.loads(gh_state.read_text())
            assert [c["conclusion"] for c in state["checks"]] == ["failure", "success"]
            assert [c["pr"] for c in state["comments"]] == ["41", "42"]
            assert "Model gate: PROMOTE" in state["comments"][1]["body"]
            summary = (work / "summary.md").read_text()
            assert summary.count("## Model gate:") == 2  # the job summary of each run
            # A re-run on the same commit updates the sticky comment instead of adding one.
            done = run_job(pr_workflow, "train", _ctx_for(42, head, variables), base_env, repo, work)
            assert all(d.get("rc", 0) == 0 for d in done), [
                (d["name"], d.get("err", "")[-2000:]) for d in done
            ]
            state = json.loads(gh_state.read_text())
            assert len(state["comments"]) == 2 and state["calls"][-2]["method"] == "PATCH"

            # What the KFP API saw: versions named by pull request and commit, release off, PR identity.
            uploads = kfp.calls("POST", "/pipelines/upload_version")
            # The re-run found its version uploaded already (get-or-upload).
            assert [u.query["name"] for u in uploads] == [f"pr-41-{refused_head[:12]}", f"pr-42-{head[:12]}"]
            runs = kfp.calls("POST", "/runs")
            assert all(r.headers.get("authorization") == f"Bearer {ID_TOKEN}" for r in runs)
            assert all(r.body["runtime_config"]["parameters"]["release"] is False for r in runs)
            assert all(r.body.get("service_account") == "planets-pr-runner" for r in runs)
            assert reg.alias_version(client, model_name, reg.PRODUCTION) == first.version  # nothing moved yet
        finally:
            cluster.stop.set()
            cluster.join(5)
    assert not cluster.errors, cluster.errors
    reviewed = cicd.reviewed_version(client, model_name, head)
    assert reviewed["tags"]["planets.ci.pr"] == "42"

    def merge_job(sha: str) -> list[dict[str, Any]]:
        state = json.loads(gh_state.read_text())
        state["merged"][sha] = {"number": 42, "head_sha": head}
        gh_state.write_text(json.dumps(state))
        ctx = {
            "github": {"repository": "example/planets", "token": "ghs-job-token", "sha": sha},
            "vars": {"MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"], "PLANETS_MODEL": model_name},
            "given_outputs": {"gcp": {"id_token": ID_TOKEN}},
        }
        return run_job(merge_workflow, "promote", ctx, {**base_env, "GITHUB_SHA": sha}, repo, work)

    # ---- merge refused: main moved after the review, so what merged is not what was reviewed.
    _git(repo, "checkout", "-q", "main")
    (repo / "NOTES.md").write_text("a change merged meanwhile\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "meanwhile on main")
    _git(repo, "merge", "-q", "--no-ff", "-m", "Merge pull request #42", "pr-42")
    done = merge_job(_git(repo, "rev-parse", "HEAD"))
    assert done[-1]["name"] == "promote and deploy" and done[-1]["rc"] != 0
    assert "trees differ" in done[-1]["err"] and "declares" not in done[-1]["err"]
    assert reg.alias_version(client, model_name, reg.PRODUCTION) == first.version
    _git(repo, "reset", "-q", "--hard", "HEAD~2")

    # ---- merge: the reviewed tree lands on main (a merge commit of an up-to-date branch).
    _git(repo, "merge", "-q", "--no-ff", "-m", "Merge pull request #42", "pr-42")
    merged = _git(repo, "rev-parse", "HEAD")
    assert merged != head
    # The promote step's command, with a data revision other than the one reviewed: refused.
    env = {**base_env, "PATH": base_env["PATH"]}
    refused = subprocess.run(
        ["planets-mlops", "ci", "promote", "--model", model_name, "--merged-commit", merged,
         "--reviewed-commit", head, "--data-rev", "v2-relabelled"],
        cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode == 1 and "declares v2-relabelled" in refused.stderr
    assert "trees differ" not in refused.stderr
    assert reg.alias_version(client, model_name, reg.PRODUCTION) == first.version

    done = merge_job(merged)
    assert all(d.get("rc", 0) == 0 for d in done), [(d["name"], d.get("err", "")[-2000:]) for d in done]
    assert reg.alias_version(client, model_name, reg.PRODUCTION) == reviewed["version"]
    deployed = json.loads((work / "deployed.json").read_text())
    assert deployed["BENTO_URI"] == reviewed["tags"]["planets.bento_uri"]
    state = json.loads(gh_state.read_text())
    last = state["comments"][-1]
    assert last["pr"] == "42" and f"version {reviewed['version']} is production" in last["body"]
    assert re.search(r"endpoint revision \*\*\S+\*\*", last["body"]), last["body"]
    record = reg.moves(client, model_name)[-1]
    assert record["to_version"] == reviewed["version"] and record["from_version"] == first.version
    assert f"reviewed at {head[:12]}" in record["why"]

    # A re-run of the same merge job is idempotent: the move it made is found, none is added.
    moves = len(reg.moves(client, model_name))
    done = merge_job(merged)
    assert all(d.get("rc", 0) == 0 for d in done), [(d["name"], d.get("err", "")[-2000:]) for d in done]
    assert reg.alias_version(client, model_name, reg.PRODUCTION) == reviewed["version"]
    assert len(reg.moves(client, model_name)) == moves


def _ctx_for(number: int, head: str, variables: dict[str, str]) -> dict[str, Any]:
    return {
        "github": {
            "repository": "example/planets",
            "token": "ghs-job-token",
            "event": {
                "pull_request": {
                    "number": number,
                    "head": {"sha": head, "repo": {"full_name": "example/planets"}},
                    "labels": [{"name": "train-model"}],
                }
            },
        },
        "vars": variables,
        "given_outputs": {"gcp": {"id_token": ID_TOKEN}},
    }


def test_schedules_workflow_syncs_the_file_and_prunes_what_it_dropped(repo, tmp_path):
    """The schedules job's steps against the fake KFP API (standing in for the Kubeflow backend)."""
    workflow = yaml.safe_load((repo / ".github/workflows/planets-schedules.yml").read_text())
    assert workflow[True]["push"]["paths"] == [cicd.SCHEDULES_FILE]
    work = tmp_path / "work"
    work.mkdir()
    with serve_fake_kfp(FakeKfpState(token=ID_TOKEN)) as (url, kfp):
        ctx = {
            "github": {"repository": "example/planets", "token": "ghs-job-token"},
            "vars": {"KFP_HOST": url},
            "given_outputs": {"gcp": {"id_token": ID_TOKEN}},
        }
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}

        def sync() -> list[dict[str, Any]]:
            done = run_job(workflow, "sync", ctx, env, repo, work)
            assert all(d.get("rc", 0) == 0 for d in done), [
                (d["name"], d.get("err", "")[-2000:]) for d in done
            ]
            return done

        sync()
        (live,) = kfp.recurring.values()
        assert (
            live["display_name"] == "monitoring-hourly"
            and live["trigger"]["cron_schedule"]["cron"] == "0 0 * * * *"
        )
        assert live["runtime_config"]["parameters"]["model_version"] == "production"
        # A recurring run made by hand (not by the CLI) is never pruned.
        kfp.recurring["manual"] = {**live, "recurring_run_id": "manual", "display_name": "by-hand",
                                   "description": "made in the UI"}  # fmt: skip
        # The file now declares a daily run instead: the hourly one goes, the daily one comes.
        path = repo / cicd.SCHEDULES_FILE
        path.write_text(path.read_text().replace("monitoring-hourly", "monitoring-daily").replace(
            '"0 0 * * * *"', '"0 0 3 * * *"'))  # fmt: skip
        done = sync()
        assert "removed" in done[-1]["err"]
        assert sorted(r["display_name"] for r in kfp.recurring.values()) == ["by-hand", "monitoring-daily"]
        assert all(
            c.headers.get("authorization") == f"Bearer {ID_TOKEN}"
            for c in kfp.calls("POST", "/recurringruns")
        )
