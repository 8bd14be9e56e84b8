"""The cluster commands the docs give work as written (issue 22: "the docs' commands work").

Every ``planets-mlops compile|upload|run|schedule`` line of a code block in the README and
the docs is parsed by the real CLI parser; the ``run``/``schedule``/``upload`` commands of
the cluster pages (the README's CLI block, the loop, monitoring, Kubeflow, cluster setup) are
run, as written, by
the real CLI against the fake KFP API (``tests/support/fake_kfp_api.py``), with the environment the
loop page exports. Each run and recurring run must carry the pipeline runner's service
account and the exported pipeline root, name a pipeline with the suite's prefix, and a
monitoring run must follow production (no pinned model version) and hand the same account,
root and the prefixed retraining pipeline on to the runs its alert starts.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from planets_mlops.app import cli
from planets_mlops.app.cli import versions
from tests.support.fake_kfp_api import FakeKfpState, serve_fake_kfp

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CLUSTER_PAGES = {"README.md", "cluster-loop.md", "monitoring.md", "kubeflow.md", "cluster-setup.md"}
# What docs/cluster-loop.md exports before its first run (steps 1 and 6).
ENV = {
    "PROJECT_ID": "my-project",
    "REGION": "europe-west4",
    "BUCKET": "my-project-planets-mlops",
    "KFP_PIPELINE_ROOT": "gs://my-project-planets-mlops/pipeline-root",
}
# Placeholders the reader fills in, given the value a reader would.
FILL = {"...": "https://github.com/ORG/DATA.git", "https://...": "https://github.com/ORG/DATA.git"}
RUNNER = "planets-pipeline-runner"
TOKEN = "documented-commands-token"


def _blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, body) of each fenced code block."""
    return [
        (text[: m.start(1)].count("\n") + 1, m.group(1))
        for m in re.finditer(r"^```[a-z]*\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    ]


PARTIAL: set[str] = set()  # commands written with "..." for the arguments given elsewhere


def documented_commands() -> list[tuple[str, list[str]]]:
    """("page:line", argv after ``planets-mlops``) of every command line in a code block."""
    found = []
    for page in DOCS:
        for first, body in _blocks(page.read_text()):
            lines = body.split("\n")
            i = 0
            while i < len(lines):
                line, start = lines[i], i
                while line.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line.rstrip()[:-1] + " " + lines[i]
                i += 1
                words = shlex.split(line, comments=True) if line.lstrip().startswith("planets-mlops ") else []
                if len(words) < 2 or words[1] not in {"compile", "upload", "run", "schedule"}:
                    continue
                if any(w.startswith("[") or "|" in w for w in words):  # a synopsis, not a command
                    continue
                if words[1:3] == ["schedule", "sync"]:  # its own parser (tests/pure/test_ci.py)
                    continue
                argv = [_fill(w) for w in words[1:] if w != "..."]  # "...": the other arguments
                found.append((f"{page.name}:{first + start}", argv))
                if "..." in words:
                    PARTIAL.add(f"{page.name}:{first + start}")
    return found


def _fill(word: str) -> str:
    for name, value in ENV.items():
        word = word.replace(f"${name}", value)
    key, eq, value = word.partition("=")
    return f"{key}={FILL[value]}" if eq and value in FILL else word


COMMANDS = documented_commands()


def test_the_docs_give_the_cluster_commands():
    pages = {where.split(":")[0] for where, argv in COMMANDS if argv[0] in {"run", "schedule"}}
    assert CLUSTER_PAGES <= pages, pages
    monitoring = [
        where for where, argv in COMMANDS if argv[:2] in (["run", "monitoring"], ["schedule", "monitoring"])
    ]
    assert len(monitoring) >= 5, monitoring


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_every_documented_command_parses_with_the_real_cli(where, argv):
    parser = cli.build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: planets-mlops {shlex.join(argv)} does not parse (exit {exc.code})")


def _monitoring_yaml() -> str:
    """The run's inputs docs/cluster-loop.md has the reader write to monitoring.yaml."""
    text = (ROOT / "docs" / "cluster-loop.md").read_text()
    (block,) = re.findall(r"`monitoring\.yaml`, the run's inputs:\n\n```yaml\n(.*?)```", text, re.DOTALL)
    return block


RUNNABLE = [
    (where, argv)
    for where, argv in COMMANDS
    if where.split(":")[0] in CLUSTER_PAGES
    and argv[0] in {"run", "schedule", "upload"}
    and len(argv) > 1
    and argv[1] in {"training", "retraining", "monitoring"}
    and "--version" not in argv  # names a version uploaded earlier
    and where not in PARTIAL
]


@pytest.fixture
def fake(monkeypatch, tmp_path):
    for var in ("KFP_NAMESPACE", "KFP_COOKIES", "KFP_SERVICE_ACCOUNT", "PLANETS_PIPELINE_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    # The version name is the checkout's commit; tmp_path is no checkout (as in test_cli.py).
    monkeypatch.setattr(versions, "git_short_commit", lambda cwd=None: ("abc1234", False))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    if any("monitoring.yaml" in argv for _, argv in RUNNABLE):
        (tmp_path / "monitoring.yaml").write_text(_monitoring_yaml())
    with serve_fake_kfp(FakeKfpState(token=TOKEN, run_states=["SUCCEEDED"])) as (url, state):
        monkeypatch.setenv("KFP_HOST", url)
        monkeypatch.setenv("KFP_TOKEN", TOKEN)
        monkeypatch.setenv("KFP_TIMEOUT", "5")
        yield state


def test_the_cluster_pages_run_every_pipeline():
    assert {(argv[0], argv[1]) for _, argv in RUNNABLE} >= {
        ("run", "training"),
        ("upload", "retraining"),
        ("run", "monitoring"),
        ("schedule", "monitoring"),
    }


@pytest.mark.parametrize(("where", "argv"), RUNNABLE, ids=[where for where, _ in RUNNABLE])
def test_the_documented_cluster_commands_run_as_written(where, argv, fake, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 0, f"{where}: planets-mlops {shlex.join(argv)}\n{err}"
    # run PIPELINE submits the compiled package; upload and schedule name the pipeline.
    named = {p["display_name"] for p in fake.pipelines.values()}
    assert named == (set() if argv[0] == "run" else {f"planets-{argv[1]}"}), where
    posts = fake.calls("POST", "/runs") + fake.calls("POST", "/recurringruns")
    assert len(posts) == (0 if argv[0] == "upload" else 1), where
    given = argv[argv.index("--pipeline-root") + 1] if "--pipeline-root" in argv else None
    root = given or ENV["KFP_PIPELINE_ROOT"]
    for post in posts:
        assert post.body["service_account"] == RUNNER, where
        assert post.body["runtime_config"]["pipeline_root"] == root, where
        parameters = post.body["runtime_config"]["parameters"]
        if argv[1] == "monitoring":
            # Follows production; its alert's runs carry the same account, root and prefix.
            assert "model_version" not in parameters, where
            assert parameters["retraining_service_account"] == RUNNER, where
            assert parameters["retraining_pipeline_root"] == root, where
            assert parameters.get("retraining_pipeline", "planets-retraining") == "planets-retraining", where


# ------------------------------------------------ the smaller claims of issue 22, item 12


def _compiled(pipeline: str, out: Path, *flags: str) -> tuple[dict, dict]:
    from tests.support.helpers import load_ir

    assert cli.main(["compile", pipeline, "--out-dir", str(out), "--no-components", *flags]) == 0
    return load_ir(out / "pipelines" / f"{pipeline}.yaml")


def test_the_documented_autopilot_selector_is_the_accelerator_label(tmp_path, capsys):
    # GKE Autopilot names its node pools itself: the default gke-nodepool=gpu-pool selector
    # matches no node there. The docs must give the compile command that does match.
    pattern = r"planets-mlops (compile [^`\n]*--gpu-node-label cloud\.google\.com/gke-accelerator[^`\n]*)"
    found = {m for page in DOCS for m in re.findall(pattern, page.read_text())}
    assert found, "no page gives the Autopilot compile command"
    for command in found:
        argv = [w for w in shlex.split(command) if w != "compile"]
        _, platform = _compiled("training", tmp_path / str(len(command)), *argv)
        selector = platform["deploymentSpec"]["executors"]["exec-train-model"]["nodeSelector"]["labels"]
        assert selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}, command


def test_no_page_or_comment_claims_a_guaranteed_training_pod(tmp_path, capsys):
    # The training container's requests equal its limits, but KFP's init container and Argo's
    # wait container carry none: the pod is Burstable. Wherever Guaranteed is named, so is that.
    for path in [*DOCS, *(ROOT / "pipelines").glob("*.py"), *(ROOT / "components").glob("*.py")]:
        text = path.read_text()
        if "Guaranteed" in text:
            assert "Burstable" in text, path
    spec, _ = _compiled("training", tmp_path)
    resources = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]
    assert resources["resourceCpuRequest"] == resources["resourceCpuLimit"]
    assert resources["resourceMemoryRequest"] == resources["resourceMemoryLimit"]


def test_window_end_is_described_as_when_the_drift_step_starts(tmp_path, capsys):
    # An empty window_end is resolved by the drift step when it starts (the run may have
    # queued or its first steps retried), not at the run's start.
    spec, _ = _compiled("monitoring", tmp_path)
    described = spec["root"]["inputDefinitions"]["parameters"]["window_end"].get("description", "")
    assert "when the drift step starts" in described, described
    for page in DOCS:
        for line in page.read_text().splitlines():
            assert not ("window_end" in line and "the run's start" in line), (page.name, line)


def test_kind_e2e_python_compiles_and_counts_the_alerts_runs_by_their_name():
    # scripts/kind_e2e.sh cannot run here (no Docker, no kind): its Python parts must at
    # least compile, follow production (no model version named) and count the retraining
    # runs by the name the alert gives them (monitoring.trigger.run_name).
    from planets_mlops.monitoring.trigger import RUN_PREFIX

    script = (ROOT / "scripts" / "kind_e2e.sh").read_text()
    blocks = re.findall(r"<<'PY'\n(.*?)^PY$", script, re.DOTALL | re.MULTILINE)
    assert len(blocks) >= 4
    for number, block in enumerate(blocks):
        compile(block, f"kind_e2e.sh python block {number}", "exec")
    (loop,) = [block for block in blocks if "retraining_runs" in block]
    assert "RUN_PREFIX" in loop and RUN_PREFIX == "retraining"
    assert '"model_version"' not in loop and '"service_url"' in loop
