"""The registry logic against a real ``mlflow server`` (SQLite, artifacts on the GCS emulator).

Versions and their lineage, the promotion lock, alias moves by compare-and-set and their
records, the release record, nesting like the KFP MLflow plugin, and a dead server.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from planets_mlops.app.dev.net import free_port
from planets_mlops.errors import NotFoundError, PromotionConflictError
from planets_mlops.registry import registry as reg
from planets_mlops.registry import release, tracking
from planets_mlops.registry.settings import TrackingSettings


def model_folder(tmp_path: Path, tag: str) -> Path:
    folder = tmp_path / f"model-{tag}"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(f"onnx bytes of {tag}".encode())
    (folder / "classes.json").write_text(json.dumps(["Earth", "Moon"]))
    (folder / "preprocess.json").write_text("{}")
    (folder / "not-a-model-file.txt").write_text("left out of downloads")
    return folder


def new_version(client, name: str, tmp_path: Path, tag: str, kfp_run: str) -> str:
    run = tracking.task_run(client, f"exp-{name}", kfp_run, "register-model", {})
    client.log_artifacts(run.run_id, str(model_folder(tmp_path, tag)), "model")
    return reg.register_version(client, name, run.run_id, {"planets.data_commit": f"commit-{tag}"})


def test_register_tags_candidate_and_reuses_on_retry(mlflow_client, model_name, tmp_path):
    run = tracking.task_run(mlflow_client, f"exp-{model_name}", "kfp-run-1", "register-model", {})
    mlflow_client.log_artifacts(run.run_id, str(model_folder(tmp_path, "a")), "model")
    version = reg.register_version(mlflow_client, model_name, run.run_id, {"planets.data_commit": "abc"})
    assert version == "1"
    info = reg.version_info(mlflow_client, model_name, version)
    assert info["aliases"] == ["candidate"] and info["tags"]["planets.data_commit"] == "abc"
    assert info["run_id"] == run.run_id and info["source"].endswith("/model")
    # A retried task: same run -> same version, none added.
    assert reg.register_version(mlflow_client, model_name, run.run_id, {}) == "1"
    assert [v["version"] for v in reg.list_versions(mlflow_client, model_name)] == ["1"]
    # Only the model files come back, byte for byte.
    target = reg.download_model(mlflow_client, model_name, version, tmp_path / "down")
    assert sorted(p.name for p in target.iterdir()) == ["classes.json", "model.onnx", "preprocess.json"]
    assert (target / "model.onnx").read_bytes() == b"onnx bytes of a"


def test_compare_and_set_moves_records_and_rolls_back(mlflow_client, model_name, tmp_path):
    v1 = new_version(mlflow_client, model_name, tmp_path, "a", "kfp-a")
    v2 = new_version(mlflow_client, model_name, tmp_path, "b", "kfp-b")
    first = reg.move_alias(
        mlflow_client, model_name, "production", v1, expected=None, why="first model", kfp_run_id="kfp-a"
    )
    assert (first.sequence, first.from_version, first.to_version) == (1, None, "1")
    # The promoter of v2 saw no production: production has moved since, so it is refused.
    with pytest.raises(PromotionConflictError, match=r"names version 1, not none"):
        reg.move_alias(mlflow_client, model_name, "production", v2, expected=None, why="stale view")
    assert reg.alias_version(mlflow_client, model_name, "production") == "1"
    reg.move_alias(
        mlflow_client,
        model_name,
        "production",
        v2,
        expected="1",
        why="gate",
        gate={"delta_val_accuracy": 0.1},
    )
    assert reg.previous_version(mlflow_client, model_name) == "1"
    back = reg.move_alias(mlflow_client, model_name, "production", "1", expected="2", why="rollback")
    assert back.from_version == "2" and reg.alias_version(mlflow_client, model_name, "production") == "1"
    records = reg.moves(mlflow_client, model_name)
    assert [(r["from_version"], r["to_version"], r["why"]) for r in records] == [
        (None, "1", "first model"),
        ("1", "2", "gate"),
        ("2", "1", "rollback"),
    ]
    assert records[1]["gate"] == {"delta_val_accuracy": 0.1} and records[0]["kfp_run_id"] == "kfp-a"
    assert all(r["when"] and r["by"] for r in records)
    # The lock is gone after each move, and never listed as a model.
    assert mlflow_client.search_registered_models(f"name = '{model_name}{reg.LOCK_SUFFIX}'") == []


def test_two_promotions_at_once_leave_one_winner_and_one_refusal(mlflow_env, model_name, tmp_path):
    client = TrackingSettings.from_env().client()
    v1 = new_version(client, model_name, tmp_path, "a", "kfp-a")
    reg.move_alias(client, model_name, "production", v1, expected=None, why="first")
    challengers = [new_version(client, model_name, tmp_path, tag, f"kfp-{tag}") for tag in ("b", "c")]
    start = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def promote(version: str) -> None:
        own = TrackingSettings.from_env().client()  # one client per promoter, as two pods would
        start.wait()
        try:
            # Both gates compared against version 1; the winner holds the lock a while.
            outcomes[version] = reg.move_alias(
                own, model_name, "production", version, expected="1", why="gate",
                before_move=lambda: time.sleep(0.5),
            )  # fmt: skip
        except PromotionConflictError as exc:
            outcomes[version] = exc

    threads = [threading.Thread(target=promote, args=(v,)) for v in challengers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    won = [v for v, o in outcomes.items() if isinstance(o, reg.Move)]
    refused = [o for o in outcomes.values() if isinstance(o, PromotionConflictError)]
    assert len(won) == 1 and len(refused) == 1, outcomes
    assert reg.alias_version(client, model_name, "production") == won[0]
    assert f"names version {won[0]}, not 1" in str(refused[0])
    assert [r["to_version"] for r in reg.moves(client, model_name)] == ["1", won[0]]


def test_a_live_lock_makes_a_promotion_wait_then_refuse(mlflow_client, model_name, tmp_path):
    v1 = new_version(mlflow_client, model_name, tmp_path, "a", "kfp-a")
    with reg.promotion_lock(mlflow_client, model_name):
        with pytest.raises(PromotionConflictError, match="holds its lock"):
            reg.move_alias(
                mlflow_client, model_name, "production", v1, expected=None, why="x",
                lock=reg.LockSettings(wait_s=0.6, poll_s=0.1),
            )  # fmt: skip
    assert reg.alias_version(mlflow_client, model_name, "production") is None


def test_an_expired_lock_is_taken_over(mlflow_client, model_name, tmp_path):
    v1 = new_version(mlflow_client, model_name, tmp_path, "a", "kfp-a")
    mlflow_client.create_registered_model(
        model_name + reg.LOCK_SUFFIX,
        tags={reg.TAG_HOLDER: "dead-pod", reg.TAG_EXPIRES: str(time.time() - 1)},
    )
    move = reg.move_alias(mlflow_client, model_name, "production", v1, expected=None, why="after a crash")
    assert move.to_version == "1"
    leftovers = [
        m.name for m in mlflow_client.search_registered_models() if m.name.startswith(model_name + ".")
    ]
    assert leftovers == []


def test_release_record_ties_lineage_and_reproduces(mlflow_client, model_name, tmp_path):
    v1 = new_version(mlflow_client, model_name, tmp_path, "a", "kfp-a")
    for key, value in {
        "planets.data_repo_url": "https://git.example/data.git",
        "planets.data_commit": "c0ffee",
        "planets.code_revision": "0.1.0-abc",
        "planets.pipeline": "retraining",
        "planets.pipeline_version": "0.1.0-1234567",
        "planets.images": json.dumps({"runtime": "ghcr.io/x/runtime:0.1.0-abc"}),
        "planets.bento_tag": "planets_classifier:v1",
    }.items():
        mlflow_client.set_model_version_tag(model_name, v1, key, value)
    move = reg.move_alias(mlflow_client, model_name, "production", v1, expected=None, why="gate: promote")
    info = reg.version_info(mlflow_client, model_name, v1)
    record = release.release_record(move, info, {"train_lr": 0.001, "prepare_seed": 5241})
    assert record["data"]["commit"] == "c0ffee" and record["images"]["runtime"].endswith("0.1.0-abc")
    assert record["reproduce"] == (
        "planets-mlops run training --version 0.1.0-1234567 "
        "--param data_repo_url=https://git.example/data.git --param data_rev=c0ffee "
        "--param prepare_seed=5241 --param train_lr=0.001"
    )
    path = release.store_record(mlflow_client, record)
    assert release.load_record(mlflow_client, info["run_id"], path) == record
    updated = release.record_deployment(
        mlflow_client, model_name, v1, {"revision": "3", "endpoint_url": "http://x"}
    )
    assert updated is not None and updated["deployed"]["revision"] == "3"
    assert release.load_record(mlflow_client, info["run_id"], path)["deployed"]["revision"] == "3"
    assert "c0ffee" in release.to_markdown(updated) and "data_rev=c0ffee" in release.to_markdown(updated)


def test_runs_nest_like_the_kfp_plugin(mlflow_client, monkeypatch):
    first = tracking.task_run(mlflow_client, "nesting", "kfp-run-n", "register-model", {"x": "1"})
    again = tracking.task_run(mlflow_client, "nesting", "kfp-run-n", "register-model", {})
    other = tracking.task_run(mlflow_client, "nesting", "kfp-run-n", "promote-model", {})
    assert again == first and other.parent_run_id == first.parent_run_id and other.run_id != first.run_id
    parent = mlflow_client.get_run(first.parent_run_id).data.tags
    child = mlflow_client.get_run(first.run_id).data.tags
    assert parent["kfp.pipeline_run_id"] == "kfp-run-n"
    assert child["mlflow.parentRunId"] == first.parent_run_id and child["kfp.task_name"] == "register-model"
    # With the plugin on, the driver hands the task only MLFLOW_RUN_ID (its nested run, tagged
    # with the parent), MLFLOW_EXPERIMENT_ID and MLFLOW_TRACKING_URI (KFP 2.17 handler.go).
    plugin_exp = mlflow_client.create_experiment("KFP-Default-test")
    plugin_parent = mlflow_client.create_run(
        plugin_exp, tags={"kfp.pipeline_run_id": "kfp-run-p"}
    ).info.run_id
    plugin_task = mlflow_client.create_run(plugin_exp, tags={"mlflow.parentRunId": plugin_parent}).info.run_id
    monkeypatch.delenv("KFP_MLFLOW_PARENT_RUN_ID", raising=False)
    monkeypatch.setenv("MLFLOW_RUN_ID", plugin_task)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", plugin_exp)
    used = tracking.task_run(mlflow_client, "nesting", "kfp-run-p", "register-model", {})
    assert (used.run_id, used.parent_run_id, used.experiment_id) == (plugin_task, plugin_parent, plugin_exp)
    assert mlflow_client.get_run(plugin_task).data.tags["kfp.task_name"] == "register-model"
    # No second parent of our own next to the plugin's.
    nesting = mlflow_client.get_experiment_by_name("nesting").experiment_id
    tagged = mlflow_client.search_runs([plugin_exp, nesting], "tags.`kfp.pipeline_run_id` = 'kfp-run-p'")
    assert [r.info.run_id for r in tagged if "mlflow.parentRunId" not in r.data.tags] == [plugin_parent]


def test_unknown_model_and_rollback_without_history(mlflow_client, model_name, tmp_path):
    with pytest.raises(NotFoundError, match="No registered model"):
        reg.list_versions(mlflow_client, model_name)
    v1 = new_version(mlflow_client, model_name, tmp_path, "a", "kfp-a")
    with pytest.raises(NotFoundError, match="names no version"):
        reg.previous_version(mlflow_client, model_name)
    reg.move_alias(mlflow_client, model_name, "production", v1, expected=None, why="first")
    with pytest.raises(NotFoundError, match="never moved from another version"):
        reg.previous_version(mlflow_client, model_name)


def test_a_failed_registration_leaves_no_version(mlflow_client, model_name, tmp_path):
    run = tracking.task_run(mlflow_client, f"exp-{model_name}", "kfp-x", "register-model", {})
    mlflow_client.log_artifacts(run.run_id, str(model_folder(tmp_path, "a")), "model")
    too_long = "x" * 200_000  # over the registry's tag value limit: the tag write fails
    with pytest.raises(Exception, match="(?i)length|long|exceed"):
        reg.register_version(mlflow_client, model_name, run.run_id, {"planets.note": too_long})
    assert mlflow_client.search_model_versions(f"name = '{model_name}'") == []
    assert reg.alias_version(mlflow_client, model_name, "candidate") is None


def test_cli_promote_refuses_a_stale_expectation_and_names_a_dead_server(
    mlflow_client, model_name, tmp_path, capsys, monkeypatch
):
    from planets_mlops.app import cli

    v1 = new_version(mlflow_client, model_name, tmp_path, "a", "kfp-a")
    new_version(mlflow_client, model_name, tmp_path, "b", "kfp-b")
    assert cli.main(["models", "promote", "--model", model_name, "--version", v1, "--reason", "first"]) == 0
    assert "production of" in capsys.readouterr().out
    code = cli.main(
        ["models", "promote", "--model", model_name, "--version", "2", "--expect", "none", "--reason", "late"]
    )
    assert code == 1 and "names version 1, not none" in capsys.readouterr().err
    assert cli.main(["models", "show", "--model", model_name, "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == "1" and [m["why"] for m in shown["moves"]] == ["first"]
    dead = f"http://127.0.0.1:{free_port()}"
    assert cli.main(["models", "list", "--tracking-uri", dead, "--model", model_name]) == 3
    assert dead in capsys.readouterr().err


def test_cli_rollback_redeploys_the_previous_versions_bento(
    mlflow_client, model_name, tmp_path, capsys, monkeypatch
):
    """No Kubernetes API server runs here: the deploy logic talks to the FAKE cluster of
    ``tests/test_deploy_apply`` (the API boundary only) and a recording smoke-test predictor."""
    from planets_mlops.app import cli
    from planets_mlops.deploy import apply as deploy_apply
    from tests.pure.test_deploy_apply import FakeCluster, Predictor, env_of

    cluster = FakeCluster()
    monkeypatch.setattr(deploy_apply, "KubernetesApi", lambda: cluster)
    monkeypatch.setattr(deploy_apply, "http_predict", Predictor())
    for tag in ("a", "b"):
        version = new_version(mlflow_client, model_name, tmp_path, tag, f"kfp-{tag}")
        mlflow_client.set_model_version_tag(
            model_name, version, "planets.bento_tag", f"planets_classifier:{tag}"
        )
        mlflow_client.set_model_version_tag(
            model_name, version, "planets.bento_uri", f"gs://b/bentos/{tag}.bento"
        )
    reg.move_alias(mlflow_client, model_name, "production", "1", expected=None, why="first")
    reg.move_alias(mlflow_client, model_name, "production", "2", expected="1", why="gate")
    capsys.readouterr()
    code = cli.main(["models", "rollback", "--model", model_name, "--deploy", "-o", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["move"]["to_version"] == "1" and result["deployed"]["bento_tag"] == "planets_classifier:a"
    assert env_of(cluster.deployment())["BENTO_URI"] == "gs://b/bentos/a.bento"
    assert result["release"]["deployed"]["revision"] == result["deployed"]["revision"]
    info = reg.version_info(mlflow_client, model_name, "1")
    assert info["tags"]["planets.deployed_revision"] == str(result["deployed"]["revision"])


def test_an_unreadable_move_record_is_never_overwritten(mlflow_client, model_name, tmp_path):
    """Issue 26, defect 9: the next sequence was the count of readable records plus one, so
    one unreadable record made the next promotion overwrite the newest one."""
    v1 = new_version(mlflow_client, model_name, tmp_path, "a", "kfp-a")
    v2 = new_version(mlflow_client, model_name, tmp_path, "b", "kfp-b")
    reg.move_alias(mlflow_client, model_name, "production", v1, expected=None, why="first")
    mlflow_client.set_registered_model_tag(model_name, f"{reg.MOVE_TAG}000002", "{damaged")
    move = reg.move_alias(mlflow_client, model_name, "production", v2, expected="1", why="second")
    assert move.sequence == 3
    tags = mlflow_client.get_registered_model(model_name).tags
    assert tags[f"{reg.MOVE_TAG}000002"] == "{damaged"  # still there, for whoever investigates
    assert json.loads(tags[f"{reg.MOVE_TAG}000003"])["why"] == "second"
    assert [r["why"] for r in reg.moves(mlflow_client, model_name)] == ["first", "second"]


def test_a_holder_whose_lock_was_taken_over_cannot_move_the_alias(mlflow_client, model_name, tmp_path):
    """Issue 26, weak point: a holder stalled past the lock's lifetime undid another
    promotion while both reported success. The fencing token refuses the stalled one."""
    v1 = new_version(mlflow_client, model_name, tmp_path, "a", "kfp-a")
    v2 = new_version(mlflow_client, model_name, tmp_path, "b", "kfp-b")
    taken_over: list[reg.Move] = []

    def stall_past_the_lifetime() -> None:
        time.sleep(0.3)  # the lock (ttl 0.2 s) expires; another promoter takes it over
        taken_over.append(
            reg.move_alias(mlflow_client, model_name, "production", v2, expected=None, why="the other")
        )

    with pytest.raises(PromotionConflictError, match="took it over"):
        reg.move_alias(
            mlflow_client, model_name, "production", v1, expected=None, why="stalled",
            lock=reg.LockSettings(ttl_s=0.2), before_move=stall_past_the_lifetime,
        )  # fmt: skip
    assert [m.to_version for m in taken_over] == [v2]
    assert reg.alias_version(mlflow_client, model_name, "production") == v2
    assert [r["why"] for r in reg.moves(mlflow_client, model_name)] == ["the other"]
